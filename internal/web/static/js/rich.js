// Tandem's rich-text OT for the browser: Quill's Delta with the semantics
// of the Go type in package ot/rich (and so of ShareDB's rich-text 4.1.0),
// counted in Unicode code points as on Tandem's wire. No dependencies, no
// build step. The cases of ot/rich/testdata/vectors.json, computed by the
// Go type, are its tests (internal/web/jstest/rich.test.mjs).
//
// An op is an array of components as Quill writes them: {insert: "text" |
// {embed: value}, attributes?}, {retain: n, attributes?} (a null attribute
// removes the key), {delete: n}. Lengths here count code points (an embed
// is 1); Quill counts UTF-16 units, so toQuill and fromQuill convert an op
// at the editor's edge, given the document it applies to.
//
// Functions never modify their inputs and return canonical ops: adjacent
// equal runs merged, an insert before a delete at one place, no trailing
// plain retain, attribute keys sorted. Bad input throws an Error whose
// `code` is the Go type's: "bad_json", "empty_component", "bad_component",
// "bad_embed", "bad_attribute", "null_in_insert", "not_document",
// "past_end".

function richError (code, message) {
  const err = new Error(message)
  err.code = code
  return err
}

const isObject = x => x !== null && typeof x === 'object' && !Array.isArray(x)

// Code points of a string (an embed is 1).
function cpLen (s) {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n++
  }
  return n
}

// UTF-16 index n code points after index i of s.
function advance (s, i, n) {
  while (n > 0 && i < s.length) {
    const c = s.charCodeAt(i++)
    if (c >= 0xd800 && c <= 0xdbff && i < s.length) {
      const d = s.charCodeAt(i)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n--
  }
  return i
}

function lenOf (c) {
  if (typeof c.delete === 'number') return c.delete
  if (typeof c.retain === 'number') return c.retain
  return typeof c.insert === 'string' ? cpLen(c.insert) : 1
}

const kindOf = c => (c.insert !== undefined ? 'insert' : typeof c.delete === 'number' ? 'delete' : 'retain')

function sortedAttrs (a) {
  if (!isObject(a)) return undefined
  const keys = Object.keys(a).sort()
  if (keys.length === 0) return undefined
  const out = {}
  for (const k of keys) out[k] = a[k]
  return out
}

function attrsEqual (a, b) {
  const ka = a ? Object.keys(a) : []
  const kb = b ? Object.keys(b) : []
  if (ka.length !== kb.length) return false
  for (const k of ka) if (!Object.prototype.hasOwnProperty.call(b, k) || b[k] !== a[k]) return false
  return true
}

// checkComponent throws what the Go type would refuse.
function checkComponent (c, i, doc) {
  if (!isObject(c)) throw richError('bad_json', `component ${i} is not an object`)
  const kinds = ['insert', 'retain', 'delete'].filter(k => c[k] !== undefined)
  if (kinds.length !== 1) throw richError('bad_component', `component ${i}: one of insert, retain or delete`)
  for (const k of Object.keys(c)) {
    if (k !== kinds[0] && k !== 'attributes') throw richError('bad_component', `component ${i}: unknown key ${k}`)
  }
  const kind = kinds[0]
  if (doc && kind !== 'insert') throw richError('not_document', `component ${i} is a ${kind}: a document holds only inserts`)
  if (kind === 'retain' || kind === 'delete') {
    const n = c[kind]
    if (n === 0) throw richError('empty_component', `component ${i}: ${kind} 0`)
    if (!Number.isInteger(n) || n < 0) throw richError('bad_component', `component ${i}: ${kind} must be a positive integer`)
    if (n > 2 ** 40) throw richError('past_end', `component ${i}: ${kind} ${n}`)
    if (kind === 'delete' && c.attributes !== undefined && c.attributes !== null) throw richError('bad_component', `component ${i}: a delete has no attributes`)
  } else if (typeof c.insert === 'string') {
    if (c.insert === '') throw richError('empty_component', `component ${i}: empty insert`)
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(c.insert)) {
      throw richError('bad_component', `component ${i}: a lone surrogate`)
    }
  } else if (!isObject(c.insert) || Object.keys(c.insert).length !== 1) {
    throw richError('bad_embed', `component ${i}: an insert is a string or a one-key object`)
  } else if (JSON.stringify(c.insert).length > 64 * 1024) {
    throw richError('bad_embed', `component ${i}: embed too large`)
  }
  if (c.attributes !== undefined && c.attributes !== null) {
    if (!isObject(c.attributes)) throw richError('bad_attribute', `component ${i}: attributes must be an object`)
    const keys = Object.keys(c.attributes)
    if (keys.length > 32) throw richError('bad_attribute', `component ${i}: more than 32 attributes`)
    for (const k of keys) {
      const v = c.attributes[k]
      if (k === '' || new TextEncoder().encode(k).length > 64) throw richError('bad_attribute', `component ${i}: attribute key of 1 to 64 bytes`)
      if (v === null) {
        if (kind === 'insert') throw richError('null_in_insert', `component ${i}: an insert's attribute is null`)
        continue
      }
      if (typeof v === 'number' ? !(Math.abs(v) <= 2 ** 53) : typeof v !== 'string' && typeof v !== 'boolean') {
        throw richError('bad_attribute', `component ${i}: attribute ${k}: a string, number or boolean`)
      }
      if (JSON.stringify(v).length > 2048) throw richError('bad_attribute', `component ${i}: attribute ${k} too large`)
    }
  }
}

// Builder: quill-delta's push and chop.
class Builder {
  constructor () { this.ops = [] }
  push (c) {
    const attributes = sortedAttrs(c.attributes)
    const op = {}
    const kind = kindOf(c)
    op[kind] = c[kind]
    if (attributes) op.attributes = attributes
    let idx = this.ops.length
    let last = this.ops[idx - 1]
    if (last) {
      if (kind === 'delete' && typeof last.delete === 'number') {
        this.ops[idx - 1] = { delete: last.delete + op.delete }
        return this
      }
      if (typeof last.delete === 'number' && kind === 'insert') {
        idx--
        last = this.ops[idx - 1]
        if (!last) {
          this.ops.unshift(op)
          return this
        }
      }
      if (attrsEqual(op.attributes, last.attributes)) {
        if (typeof op.insert === 'string' && typeof last.insert === 'string') {
          this.ops[idx - 1] = Object.assign({ insert: last.insert + op.insert }, last.attributes ? { attributes: last.attributes } : {})
          return this
        }
        if (typeof op.retain === 'number' && typeof last.retain === 'number') {
          this.ops[idx - 1] = Object.assign({ retain: last.retain + op.retain }, last.attributes ? { attributes: last.attributes } : {})
          return this
        }
      }
    }
    this.ops.splice(idx, 0, op)
    return this
  }
  retain (n, attributes) { if (n > 0) this.push(attributes ? { retain: n, attributes } : { retain: n }); return this }
  delete (n) { if (n > 0) this.push({ delete: n }); return this }
  done () {
    const last = this.ops[this.ops.length - 1]
    if (last && typeof last.retain === 'number' && !last.attributes) this.ops.pop()
    return this.ops
  }
}

// Iter walks an op a piece at a time; past the end it yields retains.
class Iter {
  constructor (ops) { this.ops = ops; this.i = 0; this.off = 0; this.offU = 0 }
  hasNext () { return this.i < this.ops.length }
  peekLen () { return this.i < this.ops.length ? lenOf(this.ops[this.i]) - this.off : Infinity }
  peekKind () { return this.i < this.ops.length ? kindOf(this.ops[this.i]) : 'retain' }
  next (n = Infinity) {
    if (this.i >= this.ops.length) return { retain: n }
    const c = this.ops[this.i]
    const left = lenOf(c) - this.off
    if (n >= left) n = left
    const kind = kindOf(c)
    const out = {}
    if (kind === 'insert' && typeof c.insert === 'string') {
      const end = advance(c.insert, this.offU, n)
      out.insert = this.off === 0 && n === left ? c.insert : c.insert.slice(this.offU, end)
      this.offU = end
    } else {
      out[kind] = kind === 'insert' ? c.insert : n
    }
    if (c.attributes) out.attributes = c.attributes
    if (n === left) { this.i++; this.off = 0; this.offU = 0 } else { this.off += n }
    return out
  }
}

function composeAttrs (a, b, keepNull) {
  const out = {}
  if (a) for (const k of Object.keys(a)) if (a[k] !== undefined) out[k] = a[k]
  if (b) {
    for (const k of Object.keys(b)) {
      if (b[k] === null && !keepNull) delete out[k]
      else out[k] = b[k]
    }
  }
  return Object.keys(out).length ? out : undefined
}

function transformAttrs (a, b, priority) {
  if (!a || Object.keys(a).length === 0 || !priority) return b
  const out = {}
  if (b) for (const k of Object.keys(b)) if (!(k in a)) out[k] = b[k]
  return Object.keys(out).length ? out : undefined
}

function invertAttrs (attr, base) {
  const out = {}
  attr = attr || {}
  base = base || {}
  for (const k of Object.keys(base)) if (attr[k] !== undefined && base[k] !== attr[k]) out[k] = base[k]
  for (const k of Object.keys(attr)) if (base[k] === undefined && attr[k] !== base[k]) out[k] = null
  return Object.keys(out).length ? out : undefined
}

/** checkOp throws if op is not a well-formed op. */
export function checkOp (op) {
  if (!Array.isArray(op)) throw richError('bad_json', 'an op must be an array')
  op.forEach((c, i) => checkComponent(c, i, false))
}

/** checkDocument throws if doc is not a document (inserts only). */
export function checkDocument (doc) {
  if (!Array.isArray(doc)) throw richError('bad_json', 'a document must be an array')
  doc.forEach((c, i) => checkComponent(c, i, true))
}

/** normalize returns op's canonical form. */
export function normalize (op) {
  checkOp(op)
  const b = new Builder()
  for (const c of op) b.push(c)
  return b.done()
}

/** baseLen is the code points op's retains and deletes cover. */
export function baseLen (op) {
  let n = 0
  for (const c of op) if (kindOf(c) !== 'insert') n += lenOf(c)
  return n
}

/** length is a document's length in code points. */
export function length (doc) {
  let n = 0
  for (const c of doc) if (kindOf(c) !== 'delete') n += lenOf(c)
  return n
}

function composeRaw (a, b) {
  const ai = new Iter(a)
  const bi = new Iter(b)
  const out = new Builder()
  while (ai.hasNext() || bi.hasNext()) {
    if (bi.peekKind() === 'insert') {
      out.push(bi.next())
    } else if (ai.peekKind() === 'delete') {
      out.push(ai.next())
    } else if (!bi.hasNext()) {
      out.push(ai.next())
    } else {
      const n = Math.min(ai.peekLen(), bi.peekLen())
      const ac = ai.next(n)
      const bc = bi.next(n)
      if (typeof bc.retain === 'number') {
        const c = typeof ac.retain === 'number' ? { retain: n } : { insert: ac.insert }
        const attributes = composeAttrs(ac.attributes, bc.attributes, typeof ac.retain === 'number')
        if (attributes) c.attributes = attributes
        out.push(c)
      } else if (typeof ac.retain === 'number') {
        out.push(bc)
      }
    }
  }
  return out.done()
}

/** compose returns the op that does a then b. */
export function compose (a, b) {
  checkOp(a)
  checkOp(b)
  return composeRaw(a, b)
}

/** apply returns doc with op applied; a retain or delete past the end
 * throws "past_end". */
export function apply (doc, op) {
  checkDocument(doc)
  checkOp(op)
  if (baseLen(op) > length(doc)) throw richError('past_end', `op covers ${baseLen(op)} code points, the document has ${length(doc)}`)
  return composeRaw(doc, op)
}

/** transform returns op rebased onto other: with side 'left' other wins
 * ties (its insert first, its value for an attribute both set), as
 * rich-text's transform(op, other, 'left'). */
export function transform (op, other, side) {
  checkOp(op)
  checkOp(other)
  if (side !== 'left' && side !== 'right') throw richError('bad_json', `side must be 'left' or 'right', not ${side}`)
  const priority = side === 'left'
  const ti = new Iter(other)
  const oi = new Iter(op)
  const out = new Builder()
  while (ti.hasNext() || oi.hasNext()) {
    if (ti.peekKind() === 'insert' && (priority || oi.peekKind() !== 'insert')) {
      out.retain(lenOf(ti.next()))
    } else if (oi.peekKind() === 'insert') {
      out.push(oi.next())
    } else if (!ti.hasNext()) {
      out.push(oi.next())
    } else {
      const n = Math.min(ti.peekLen(), oi.peekLen())
      const tc = ti.next(n)
      const oc = oi.next(n)
      if (typeof tc.delete === 'number') continue
      if (typeof oc.delete === 'number') out.push(oc)
      else out.retain(n, transformAttrs(tc.attributes, oc.attributes, priority))
    }
  }
  return out.done()
}

/** transformPosition moves a position through op: with 'left' (another
 * user's op) it stays before text inserted exactly there, with 'right'
 * (one's own) it moves past it. */
export function transformPosition (pos, op, side) {
  const priority = side === 'left'
  pos = Math.max(0, pos)
  let offset = 0
  for (const c of op) {
    if (offset > pos) break
    const n = lenOf(c)
    const kind = kindOf(c)
    if (kind === 'delete') {
      pos -= Math.min(n, pos - offset)
      continue
    }
    if (kind === 'insert' && (offset < pos || !priority)) pos += n
    offset += n
  }
  return pos
}

/** transformSelection moves {anchor, head}: a caret as transformPosition,
 * a range without growing from inserts at its edges. */
export function transformSelection (sel, op, side) {
  if (sel.anchor === sel.head) {
    const p = transformPosition(sel.anchor, op, side)
    return { anchor: p, head: p }
  }
  let start = Math.min(sel.anchor, sel.head)
  let end = Math.max(sel.anchor, sel.head)
  start = transformPosition(start, op, 'right')
  end = transformPosition(end, op, 'left')
  start = Math.min(start, end)
  return sel.head < sel.anchor ? { anchor: end, head: start } : { anchor: start, head: end }
}

function slice (doc, start, end) {
  const it = new Iter(doc)
  const out = []
  for (let at = 0; at < end && it.hasNext();) {
    if (at < start) { at += lenOf(it.next(start - at)); continue }
    const c = it.next(end - at)
    out.push(c)
    at += lenOf(c)
  }
  return out
}

/** invert returns the op that undoes op applied to doc. */
export function invert (op, doc) {
  checkOp(op)
  checkDocument(doc)
  if (baseLen(op) > length(doc)) throw richError('past_end', 'op is longer than the document')
  const out = new Builder()
  let at = 0
  for (const c of op) {
    const kind = kindOf(c)
    const n = lenOf(c)
    if (kind === 'insert') {
      out.delete(n)
    } else if (kind === 'retain' && !c.attributes) {
      out.retain(n)
      at += n
    } else {
      for (const bc of slice(doc, at, at + n)) {
        if (kind === 'delete') out.push(bc)
        else out.retain(lenOf(bc), invertAttrs(c.attributes, bc.attributes))
      }
      at += n
    }
  }
  return out.done()
}

// UTF-16 units of the code points of doc from code point `at`, n of them.
function unitsOf (doc, at, n) {
  let u = 0
  const it = new Iter(doc)
  for (let pos = 0; it.hasNext() && pos < at + n;) {
    const c = it.next(pos < at ? at - pos : at + n - pos)
    if (pos >= at) u += typeof c.insert === 'string' ? c.insert.length : 1
    pos += lenOf(c)
  }
  return u
}

/** toQuill rewrites op (code points, on doc) in UTF-16 units for Quill. */
export function toQuill (op, doc) {
  const out = []
  let at = 0
  for (const c of op) {
    const kind = kindOf(c)
    if (kind === 'insert') { out.push(c); continue }
    const n = lenOf(c)
    const u = unitsOf(doc, at, n)
    at += n
    out.push(Object.assign({}, c, { [kind]: u }))
  }
  return out
}

/** fromQuill rewrites a Quill op (UTF-16 units, on doc) in code points; a
 * count that splits a surrogate pair throws "bad_component". */
export function fromQuill (op, doc) {
  const out = []
  const it = new Iter(doc)
  for (const c of op) {
    const kind = kindOf(c)
    if (kind === 'insert') { out.push(c); continue }
    let units = c[kind]
    let n = 0
    while (units > 0) {
      if (!it.hasNext()) { n += units; break } // past the end: apply refuses it
      const piece = it.next(1)
      units -= typeof piece.insert === 'string' ? piece.insert.length : 1
      n++
    }
    if (units < 0) throw richError('bad_component', 'a count splits a surrogate pair')
    out.push(Object.assign({}, c, { [kind]: n }))
  }
  return out
}
