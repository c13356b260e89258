// The public API of Tandem's client (docs/client.md is the contract).
import type { Op, Selection } from './ot.js'
import type { Delta } from './rich.js'

export const PROTOCOL_VERSION: 2

export type DocType = 'plain' | 'rich'
export type Status = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed'

/** A localStorage-like store for what survives a reload. */
export interface StorageLike {
  getItem (key: string): string | null
  setItem (key: string, value: string): void
  removeItem (key: string): void
}

export interface ClientOptions {
  /** What this client edits; left out, the server's hello decides. */
  type?: DocType
  name?: string
  color?: string
  user?: string
  /** Keeps the source key, seq, revision, document and unsent edits across reloads. */
  storage?: StorageLike
  /** An access token (servers with --auth-secret). */
  token?: string
  /** Asked before every connection. */
  getToken?: () => string | Promise<string>
  /** A WebSocket constructor (Node: the `ws` package, or Node 22's global). */
  WebSocket?: unknown
  minBackoff?: number
  maxBackoff?: number
  selectionThrottle?: number
  undoMergeInterval?: number
  maxUndo?: number
  ackTimeout?: number
  /** false leaves out the page handlers (online/offline, page hide/show). */
  browser?: boolean
  trace?: (...args: unknown[]) => void
}

export interface Peer {
  client: string
  user: string
  name: string
  color: string
  sel: Selection[]
}

export interface ClientError {
  /** The protocol's codes (docs/protocol.md), and 'refused', 'rebased',
   * 'conflict', 'storage', 'connect', 'unsupported_type'; 'refused' is the
   * server refusing the connection (1008), 'rejected' an op the
   * application refused (reason says why). */
  code: string
  message: string
  /** Why the application refused an op (code 'rejected'). */
  reason?: string
}

export interface TextEvent {
  remote: boolean
  op: Op | Delta
  origin: 'edit' | 'undo' | 'redo' | 'remote' | 'resync' | 'revert'
  client?: string
}

export interface Events {
  text: (doc: string | Delta, e: TextEvent) => void
  status: (status: Status) => void
  presence: (peers: Map<string, Peer>) => void
  title: (title: string) => void
  restored: (e: { client: string; name: string; rev: number }) => void
  error: (e: ClientError) => void
  synced: () => void
}

export class TandemClient {
  constructor (baseUrl: string, docId: string, options?: ClientOptions)
  /** The document as the user sees it: a string (plain) or a Delta (rich). */
  readonly doc: string | Delta
  readonly text: string | Delta
  readonly type: DocType
  readonly rev: number
  readonly status: Status
  readonly pending: number
  readonly connected: boolean
  readonly persistent: boolean
  readonly canUndo: boolean
  readonly canRedo: boolean
  readonly peers: Map<string, Peer>
  readonly src: string
  readonly title: string
  edit (op: Op | Delta, options?: { undoable?: boolean }): void
  setSelection (sels: Selection[]): void
  undo (): void
  redo (): void
  announceRestore (rev: number): void
  retry (): boolean
  close (): void
  on<E extends keyof Events> (event: E, fn: Events[E]): this
  off<E extends keyof Events> (event: E, fn: Events[E]): this
}

/** Opens a client for document docId on the server at baseUrl
 * ("https://host", "https://host/prefix", "" for the page's origin). */
export function connect (baseUrl: string, docId: string, options?: ClientOptions): TandemClient

/** Adds the page handlers (online/offline, page hide/show); returns a
 * function that removes them. */
export function installBrowserHandlers (client: TandemClient): () => void

export function newKey (): string
export function uuid (): string
export function wsUrl (baseUrl: string, docId: string, params?: Record<string, string>): string
export function diffOp (a: string, b: string): Op
