// The browser client's document types: the one interface client.js,
// docstate.js, undo.js and localstate.js use, so that none of them switches
// on a type. The server's registry is Go's ot/doctype; the names and the
// hello field that carries a document's content are the same.
//
// A type is a plain object:
//
//   name                  'plain' | 'rich' (hello's "doctype")
//   field                 hello's key for the content ('text' | 'delta')
//   empty                 the empty document
//   isDocument(x)         x has a document's shape (a hello's content)
//   apply(doc, op)        the document op makes; throws on an op that does not apply
//   transform(op, other, side), compose(a, b), invert(op, doc), normalize(op), isNoop(op)
//   transformSelection(sel, op, side), transformPosition(pos, op, side)
//   length(doc)           code points (an embed is 1)
//   lengthChange(op)      what op does to a document's length
//   diff(a, b)            an op turning document a into b (kept small where
//                         a and b differ little: it rebases edits after a text hello)
//   equal(a, b)           whether two documents are the same
//   typing(op)            {kind: 'insert'|'delete', pos, text?} when op types or
//                         erases one character (undo merges such edits), else null
//
// Positions and lengths are code points everywhere, as on the wire.

import * as ot from './ot.js'
import * as rich from './rich.js'
import { cpLength } from './unicode.js'
import { diffOp } from './diff.js'

function plainLengthChange (op) {
  let n = 0
  for (const c of op) {
    if (typeof c === 'string') n += cpLength(c)
    else if (typeof c === 'object' && c !== null) n -= typeof c.d === 'number' ? c.d : cpLength(c.d)
  }
  return n
}

function plainTyping (op) {
  let pos = 0
  let i = 0
  if (typeof op[0] === 'number') { pos = op[0]; i = 1 }
  if (op.length !== i + 1) return null
  const c = op[i]
  if (typeof c === 'string') return cpLength(c) === 1 ? { kind: 'insert', pos, text: c } : null
  if (typeof c === 'object' && c !== null && (c.d === 1 || (typeof c.d === 'string' && cpLength(c.d) === 1))) {
    return { kind: 'delete', pos }
  }
  return null
}

/** plain is the plain-text type (ot.js): a document is a string. */
export const plain = Object.freeze({
  name: 'plain',
  field: 'text',
  empty: '',
  isDocument: x => typeof x === 'string',
  apply: ot.apply,
  transform: ot.transform,
  compose: ot.compose,
  invert: ot.invert,
  normalize: ot.normalize,
  isNoop: ot.isNoop,
  transformSelection: ot.transformSelection,
  transformPosition: ot.transformPosition,
  length: cpLength,
  lengthChange: plainLengthChange,
  diff: diffOp,
  equal: (a, b) => a === b,
  typing: plainTyping
})

const OBJECT_CHAR = '\ufffc'

// The text of a rich document with each embed as U+FFFC: what the plain
// diff runs on (an embed and U+FFFC both count 1).
function projection (doc) {
  let s = ''
  for (const c of doc) s += typeof c.insert === 'string' ? c.insert : OBJECT_CHAR
  return s
}

// pieces walks a rich document a code point (or an embed) at a time.
function pieces (doc) {
  let i = 0
  let off = 0
  return () => {
    while (i < doc.length) {
      const c = doc[i]
      if (typeof c.insert !== 'string') { i++; off = 0; return { insert: c.insert, attributes: c.attributes } }
      if (off >= c.insert.length) { i++; off = 0; continue }
      const cp = c.insert.codePointAt(off)
      const ch = String.fromCodePoint(cp)
      off += ch.length
      return { insert: ch, attributes: c.attributes }
    }
    return null
  }
}

function attrChange (from, to) {
  const out = {}
  let any = false
  for (const k of Object.keys(to || {})) if (!from || from[k] !== to[k]) { out[k] = to[k]; any = true }
  for (const k of Object.keys(from || {})) if (!to || to[k] === undefined) { out[k] = null; any = true }
  return any ? out : null
}

const sameInsert = (a, b) => typeof a === 'string' ? a === b : typeof b !== 'string' && JSON.stringify(a) === JSON.stringify(b)

// richDiff is the op turning document a into b. Equal components at the
// start and the end are skipped whole (typing in a long document changes
// one or two of them); the rest is the plain text diff of the middle, with
// attribute changes where the text is the same.
function richDiff (a, b) {
  const same = (x, y) => x === y || JSON.stringify(x) === JSON.stringify(y)
  let i = 0
  while (i < a.length && i < b.length && same(a[i], b[i])) i++
  let j = 0
  while (j < a.length - i && j < b.length - i && same(a[a.length - 1 - j], b[b.length - 1 - j])) j++
  const middle = richDiffAll(a.slice(i, a.length - j), b.slice(i, b.length - j))
  const lead = rich.length(a.slice(0, i))
  return middle.length === 0 ? [] : rich.normalize(lead > 0 ? [{ retain: lead }, ...middle] : middle)
}

function richDiffAll (a, b) {
  const script = diffOp(projection(a), projection(b))
  const na = pieces(a)
  const nb = pieces(b)
  const out = []
  const push = c => out.push(c)
  const keep = n => {
    for (let k = 0; k < n; k++) {
      const x = na()
      const y = nb()
      if (!x || !y) return
      if (!sameInsert(x.insert, y.insert)) {
        push({ delete: 1 })
        push(y.attributes ? { insert: y.insert, attributes: y.attributes } : { insert: y.insert })
        continue
      }
      const ch = attrChange(x.attributes, y.attributes)
      push(ch ? { retain: 1, attributes: ch } : { retain: 1 })
    }
  }
  for (const c of script) {
    if (typeof c === 'number') {
      keep(c)
    } else if (typeof c === 'string') {
      for (let k = cpLength(c); k > 0; k--) {
        const y = nb()
        push(y.attributes ? { insert: y.insert, attributes: y.attributes } : { insert: y.insert })
      }
    } else {
      const n = typeof c.d === 'number' ? c.d : cpLength(c.d)
      for (let k = 0; k < n; k++) na()
      push({ delete: n })
    }
  }
  keep(Infinity) // the plain diff leaves out its trailing retain
  return rich.normalize(out)
}

function richTyping (op) {
  let pos = 0
  let i = 0
  if (op[0] && typeof op[0].retain === 'number' && !op[0].attributes) { pos = op[0].retain; i = 1 }
  if (op.length !== i + 1) return null
  const c = op[i]
  if (typeof c.insert === 'string') return cpLength(c.insert) === 1 ? { kind: 'insert', pos, text: c.insert } : null
  if (c.delete === 1) return { kind: 'delete', pos }
  return null
}

/** rich is the rich-text type (rich.js): a document is a Quill Delta of
 * inserts. */
export const rich_ = Object.freeze({
  name: 'rich',
  field: 'delta',
  empty: Object.freeze([]),
  isDocument: x => {
    try {
      rich.checkDocument(x)
      return true
    } catch {
      return false
    }
  },
  apply: rich.apply,
  transform: rich.transform,
  compose: rich.compose,
  invert: rich.invert,
  normalize: rich.normalize,
  isNoop: op => rich.normalize(op).length === 0,
  transformSelection: rich.transformSelection,
  transformPosition: rich.transformPosition,
  length: rich.length,
  lengthChange: op => {
    let n = 0
    for (const c of op) {
      if (typeof c.delete === 'number') n -= c.delete
      else if (typeof c.insert === 'string') n += cpLength(c.insert)
      else if (c.insert !== undefined) n++
    }
    return n
  },
  diff: richDiff,
  equal: (a, b) => a === b || JSON.stringify(a) === JSON.stringify(b),
  typing: richTyping
})

export { rich_ as rich }

const types = new Map([['plain', plain], ['rich', rich_]])

/** lookup returns the type named name, or null. */
export function lookup (name) {
  return types.get(name) || null
}
