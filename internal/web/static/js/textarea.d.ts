import type { TandemClient } from './client.js'

/** Binds a plain-text client to a <textarea>: typing becomes ops, remote
 * ops update it keeping the caret, others' carets are drawn on overlay.
 * Returns a function that unbinds. */
export function bindTextarea (client: TandemClient, textarea: HTMLTextAreaElement, options?: { overlay?: HTMLElement | null }): () => void
