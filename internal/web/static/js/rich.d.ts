// Rich-text ops: Quill Deltas, lengths in code points (npm rich-text
// 4.1.0's semantics). Quill itself counts UTF-16 units: toQuill and
// fromQuill convert.
import type { Side, Selection } from './ot.js'

export type Attributes = Record<string, unknown>
export type DeltaOp =
  | { insert: string | Record<string, unknown>; attributes?: Attributes }
  | { retain: number; attributes?: Attributes }
  | { delete: number }
export type Delta = DeltaOp[]

export function checkOp (op: unknown): void
export function checkDocument (doc: unknown): void
export function normalize (op: Delta): Delta
export function baseLen (op: Delta): number
export function length (doc: Delta): number
export function compose (a: Delta, b: Delta): Delta
export function apply (doc: Delta, op: Delta): Delta
export function transform (op: Delta, other: Delta, side: Side): Delta
export function transformPosition (pos: number, op: Delta, side: Side): number
export function transformSelection (sel: Selection, op: Delta, side: Side): Selection
export function invert (op: Delta, doc: Delta): Delta
export function toQuill (op: Delta, doc: Delta): Delta
export function fromQuill (op: Delta, doc: Delta): Delta
