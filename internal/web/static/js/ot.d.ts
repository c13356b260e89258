// Plain-text ops: ShareDB text-unicode ops, positions in code points.
// A positive integer skips, a non-empty string inserts, {d: N} or
// {d: "text"} deletes.
export type Component = number | string | { d: number | string }
export type Op = Component[]
export type Side = 'left' | 'right'
export interface Selection { anchor: number; head: number }

export function checkOp (op: unknown): void
export function normalize (op: Op): Op
export function baseLen (op: Op): number
export function targetLen (op: Op): number
export function isNoop (op: Op): boolean
export function apply (doc: string, op: Op): string
export function transform (op: Op, other: Op, side: Side): Op
export function compose (a: Op, b: Op): Op
export function invert (op: Op, doc: string): Op
export function transformPosition (pos: number, op: Op, side: Side): number
export function transformSelection (sel: Selection, op: Op, side: Side): Selection
