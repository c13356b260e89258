// Tandem's OT engine for the browser: plain-text operational transformation
// with exactly the semantics of the Go engine in package ot (ot/transform.go,
// ot/op.go), which is wire-compatible with ShareDB's text-unicode type (npm
// ot-text-unicode v4). No dependencies, no build step.
//
// Ops are arrays as on the wire: a positive integer skips that many code
// points, a non-empty string inserts it, {d: N} deletes N code points and
// {d: "text"} deletes that text (apply checks the document holds it). Every
// position and length counts Unicode code points, never UTF-16 units.
//
// Every function accepts any well-formed op, normalized or not, never
// modifies it, and returns a new normalized op (adjacent components of one
// kind merged, no trailing skip). Bad input throws an Error whose `code`
// property is:
//
//   "invalid_op"      malformed op: not an array; a skip or delete count that
//                     is not a positive integer (at most 2^40, as the server's
//                     decoder requires); an empty insert or delete text; an
//                     object other than {d: ...}; a string holding a lone
//                     UTF-16 surrogate; an unknown side; a position that is
//                     not an integer
//   "too_long"        the op skips or deletes past the end of the document
//   "delete_mismatch" a delete carries text the document does not hold there

const SKIP = 1
const INSERT = 2
const DELETE = 3

// Counts above this are rejected, as the Go decoder rejects them
// (ot/json.go maxLen): no document comes near it, and sums stay exact.
const MAX_COUNT = 2 ** 40

function otError (code, message) {
  const err = new Error(message)
  err.code = code
  return err
}

const invalid = message => otError('invalid_op', message)

// ---------------------------------------------------------------------------
// Code points in JS strings.

// Code points in s, or -1 if s holds a lone surrogate.
function checkedCount (s) {
  const len = s.length
  let n = 0
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c >= 0xdc00) return -1 // low surrogate without a high one before it
      const d = i + 1 < len ? s.charCodeAt(i + 1) : 0
      if (d < 0xdc00 || d > 0xdfff) return -1 // high surrogate without a low one
      i++
    }
    n++
  }
  return n
}

// Code points in s (a lone surrogate counts as one).
function countCp (s, from = 0, to = s.length) {
  let n = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < to) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n++
  }
  return n
}

// The UTF-16 index n code points after index i in s, or -1 if s ends first.
// A lone surrogate counts as one code point.
function advance (s, i, n) {
  const len = s.length
  for (; n > 0; n--) {
    if (i >= len) return -1
    const c = s.charCodeAt(i++)
    if (c >= 0xd800 && c <= 0xdbff && i < len) {
      const d = s.charCodeAt(i)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
  }
  return i
}

const SURROGATE = /[\ud800-\udfff]/g

// advanceDoc is advance for documents, which can be long: it jumps over runs
// without surrogates with a native regexp search (instant on the one-byte
// strings V8 uses for Latin-1 text) and steps one code point at a time near
// surrogates, in stretches that grow while surrogates stay dense.
function advanceDoc (s, i, n) {
  const len = s.length
  let stretch = 32
  while (n > 0) {
    if (n > stretch) {
      SURROGATE.lastIndex = i
      const next = SURROGATE.test(s) ? SURROGATE.lastIndex - 1 : len
      if (next - i >= n) return i + n
      stretch = next - i < stretch ? Math.min(stretch * 2, 1 << 16) : 32
      n -= next - i
      i = next
    }
    for (let k = Math.min(n, stretch); k > 0; k--, n--) {
      if (i >= len) return -1
      const c = s.charCodeAt(i++)
      if (c >= 0xd800 && c <= 0xdbff && i < len) {
        const d = s.charCodeAt(i)
        if (d >= 0xdc00 && d <= 0xdfff) i++
      }
    }
  }
  return i
}

// ---------------------------------------------------------------------------
// Components. Internally an op is an array of {k, n, s}: kind, length in code
// points, and text (the insert, the deleted text, or '' for skips and counted
// deletes).

function describe (c) {
  try {
    return JSON.stringify(c) ?? String(c)
  } catch {
    return String(c)
  }
}

function checkCount (n, what, i) {
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) {
    throw invalid(`component ${i}: ${what} must be a positive integer, got ${describe(n)}`)
  }
  if (n > MAX_COUNT) throw invalid(`component ${i}: ${what} ${n} is too large`)
}

// parse checks op and returns its internal form.
function parse (op, what = 'op') {
  if (!Array.isArray(op)) throw invalid(`${what} must be an array, got ${describe(op)}`)
  const out = new Array(op.length)
  for (let i = 0; i < op.length; i++) {
    const c = op[i]
    switch (typeof c) {
      case 'number':
        checkCount(c, 'skip', i)
        out[i] = { k: SKIP, n: c, s: '' }
        break
      case 'string': {
        if (c.length === 0) throw invalid(`component ${i}: empty insert`)
        const n = checkedCount(c)
        if (n < 0) throw invalid(`component ${i}: insert holds a lone UTF-16 surrogate`)
        out[i] = { k: INSERT, n, s: c }
        break
      }
      case 'object': {
        if (c === null || Array.isArray(c)) throw invalid(`component ${i}: unknown component ${describe(c)}`)
        const keys = Object.keys(c)
        if (keys.length !== 1 || keys[0] !== 'd') {
          throw invalid(`component ${i}: unknown object ${describe(c)}: a delete is {d: N} or {d: "text"}`)
        }
        const d = c.d
        if (typeof d === 'string') {
          if (d.length === 0) throw invalid(`component ${i}: empty delete`)
          const n = checkedCount(d)
          if (n < 0) throw invalid(`component ${i}: deleted text holds a lone UTF-16 surrogate`)
          out[i] = { k: DELETE, n, s: d }
        } else {
          checkCount(d, 'delete', i)
          out[i] = { k: DELETE, n: d, s: '' }
        }
        break
      }
      default:
        throw invalid(`component ${i}: unknown component ${describe(c)}`)
    }
  }
  return out
}

function isNormalized (comps) {
  for (let i = 1; i < comps.length; i++) {
    if (comps[i - 1].k === comps[i].k) return false
  }
  return comps.length === 0 || comps[comps.length - 1].k !== SKIP
}

// Builder appends components with text-unicode's merge rules (the Go
// engine's builder): components of one kind merge; two deletes that both
// carry their text stay a delete with text, otherwise the text is dropped.
class Builder {
  constructor () {
    this.op = []
  }

  push (k, n, s) {
    if (n === 0) return
    const op = this.op
    const last = op.length > 0 ? op[op.length - 1] : null
    if (last === null || last.k !== k) {
      op.push({ k, n, s })
      return
    }
    switch (k) {
      case SKIP:
        last.n += n
        break
      case INSERT:
        last.s += s
        last.n += n
        break
      case DELETE:
        last.s = last.s !== '' && s !== '' ? last.s + s : ''
        last.n += n
        break
    }
  }

  pushC (c) {
    this.push(c.k, c.n, c.s)
  }

  // The built op, trailing skip dropped.
  done () {
    const op = this.op
    if (op.length > 0 && op[op.length - 1].k === SKIP) op.pop()
    return op
  }
}

function normal (comps) {
  if (isNormalized(comps)) return comps
  const b = new Builder()
  for (const c of comps) b.pushC(c)
  return b.done()
}

function toWire (comps) {
  const out = new Array(comps.length)
  for (let i = 0; i < comps.length; i++) {
    const c = comps[i]
    out[i] = c.k === SKIP ? c.n : c.k === INSERT ? c.s : { d: c.s !== '' ? c.s : c.n }
  }
  return out
}

// Taker reads an op component by component, splitting components on demand
// (text-unicode's makeTake, the Go engine's taker).
class Taker {
  constructor (op) {
    this.op = op
    this.idx = 0 // next component
    this.off = 0 // code points of op[idx] already taken
    this.uoff = 0 // UTF-16 units of op[idx].s already taken
  }

  // Up to n code points' worth of the next component, or all of it when
  // n < 0 or when it is of kind whole (never a skip). Past the end of the op:
  // an endless skip (n of it), or null when n < 0.
  take (n, whole) {
    if (this.idx === this.op.length) return n < 0 ? null : { k: SKIP, n, s: '' }
    const c = this.op[this.idx]
    const rem = c.n - this.off
    if (n < 0 || rem <= n || (c.k === whole && whole !== SKIP)) {
      const part = { k: c.k, n: rem, s: c.s === '' || this.uoff === 0 ? c.s : c.s.slice(this.uoff) }
      this.idx++
      this.off = 0
      this.uoff = 0
      return part
    }
    let s = ''
    if (c.s !== '') {
      const end = advance(c.s, this.uoff, n)
      s = c.s.slice(this.uoff, end)
      this.uoff = end
    }
    this.off += n
    return { k: c.k, n, s }
  }

  peekKind () {
    return this.idx === this.op.length ? 0 : this.op[this.idx].k
  }
}

function checkSide (side) {
  if (side !== 'left' && side !== 'right') {
    throw invalid(`side must be 'left' or 'right', got ${describe(side)}`)
  }
}

// ---------------------------------------------------------------------------
// The API.

/** checkOp throws an invalid_op Error unless every component of op is well
 * formed. It does not require op to be normalized. */
export function checkOp (op) {
  parse(op)
}

/** normalize checks op and returns its normalized form: adjacent components
 * of one kind merged, the trailing skip dropped. */
export function normalize (op) {
  return toWire(normal(parse(op)))
}

/** baseLen is the length of the shortest document op applies to: the sum of
 * its skips and deletes. */
export function baseLen (op) {
  let n = 0
  for (const c of parse(op)) if (c.k !== INSERT) n += c.n
  return n
}

/** targetLen is the length of the document op makes from a document of
 * baseLen(op) code points: the sum of its skips and inserts. */
export function targetLen (op) {
  let n = 0
  for (const c of parse(op)) if (c.k !== DELETE) n += c.n
  return n
}

/** isNoop reports whether op changes nothing (it holds only skips). */
export function isNoop (op) {
  for (const c of parse(op)) if (c.k !== SKIP) return false
  return true
}

/** apply applies op to doc and returns the new document. It throws
 * invalid_op, too_long (a skip or delete past the end of doc) or
 * delete_mismatch (a delete carrying text doc does not hold there). */
export function apply (doc, op) {
  if (typeof doc !== 'string') throw invalid(`document must be a string, got ${describe(doc)}`)
  const comps = parse(op)
  const parts = []
  let i = 0 // UTF-16 index into doc
  let pos = 0 // code points of doc consumed
  for (let ci = 0; ci < comps.length; ci++) {
    const c = comps[ci]
    if (c.k === INSERT) {
      parts.push(c.s)
      continue
    }
    const j = advanceDoc(doc, i, c.n)
    if (j < 0) {
      throw otError('too_long', `component ${ci} (${c.k === SKIP ? 'skip' : 'delete'} ${c.n} at ${pos}) ends past the end of a ${pos + countCp(doc, i)}-code-point document`)
    }
    if (c.k === SKIP) {
      if (j > i) parts.push(doc.slice(i, j))
    } else if (c.s !== '' && (j - i !== c.s.length || !doc.startsWith(c.s, i))) {
      throw otError('delete_mismatch', `component ${ci} deletes ${JSON.stringify(c.s)} at ${pos}, the document holds ${JSON.stringify(doc.slice(i, j))}`)
    }
    i = j
    pos += c.n
  }
  if (i < doc.length) parts.push(i === 0 ? doc : doc.slice(i))
  return parts.length === 1 ? parts[0] : parts.join('')
}

/** transform returns op rebased onto other, an op applied concurrently to the
 * same document. side 'left' puts op's insert first where both insert at one
 * place, 'right' puts other's first. Two sites converge:
 *   apply(apply(doc, a), transform(b, a, 'right')) === apply(apply(doc, b), transform(a, b, 'left'))
 * Ops are taken as followed by an endless skip, as in text-unicode. */
export function transform (op, other, side) {
  checkSide(side)
  const op1 = normal(parse(op, 'op'))
  const op2 = normal(parse(other, 'other op'))
  const b = new Builder()
  const t = new Taker(op1)
  for (const c2 of op2) {
    switch (c2.k) {
      case SKIP:
        for (let length = c2.n; length > 0;) {
          const c1 = t.take(length, INSERT)
          b.pushC(c1)
          if (c1.k !== INSERT) length -= c1.n
        }
        break
      case INSERT:
        if (side === 'left' && t.peekKind() === INSERT) b.pushC(t.take(-1, 0))
        b.push(SKIP, c2.n, '')
        break
      case DELETE:
        for (let length = c2.n; length > 0;) {
          const c1 = t.take(length, INSERT)
          if (c1.k === INSERT) b.pushC(c1)
          else length -= c1.n // skipped text, or text both ops delete
        }
        break
    }
  }
  for (let c1; (c1 = t.take(-1, 0)) !== null;) b.pushC(c1)
  return toWire(b.done())
}

// The part [from, to) of delete component c.
function sliceDelete (c, from, to) {
  if (c.s === '') return { k: DELETE, n: to - from, s: '' }
  const i = advance(c.s, 0, from)
  const j = advance(c.s, i, to - from)
  return { k: DELETE, n: to - from, s: c.s.slice(i, j) }
}

/** compose returns one op doing a then b:
 *   apply(doc, compose(a, b)) === apply(apply(doc, a), b) */
export function compose (a, b) {
  const opA = normal(parse(a, 'first op'))
  const opB = normal(parse(b, 'second op'))
  const out = new Builder()
  const t = new Taker(opA)
  for (const c of opB) {
    switch (c.k) {
      case SKIP:
        for (let length = c.n; length > 0;) {
          const chunk = t.take(length, DELETE)
          out.pushC(chunk)
          if (chunk.k !== DELETE) length -= chunk.n
        }
        break
      case INSERT:
        out.pushC(c)
        break
      case DELETE:
        for (let offset = 0; offset < c.n;) {
          const chunk = t.take(c.n - offset, DELETE)
          switch (chunk.k) {
            case SKIP: // b deletes text that a kept
              out.pushC(sliceDelete(c, offset, offset + chunk.n))
              offset += chunk.n
              break
            case INSERT: // b deletes text that a inserted: neither remains
              offset += chunk.n
              break
            case DELETE: // a's delete stays
              out.pushC(chunk)
              break
          }
        }
        break
    }
  }
  for (let chunk; (chunk = t.take(-1, 0)) !== null;) out.pushC(chunk)
  return toWire(out.done())
}

/** invert returns the op that undoes op, given the document op applies to:
 *   apply(apply(doc, op), invert(op, doc)) === doc
 * The inverse's deletes carry their text. It throws as apply(doc, op) would. */
export function invert (op, doc) {
  if (typeof doc !== 'string') throw invalid(`document must be a string, got ${describe(doc)}`)
  const comps = parse(op)
  const b = new Builder()
  let i = 0
  let pos = 0
  for (let ci = 0; ci < comps.length; ci++) {
    const c = comps[ci]
    if (c.k === INSERT) {
      b.push(DELETE, c.n, c.s)
      continue
    }
    const j = advanceDoc(doc, i, c.n)
    if (j < 0) {
      throw otError('too_long', `component ${ci} (${c.k === SKIP ? 'skip' : 'delete'} ${c.n} at ${pos}) ends past the end of a ${pos + countCp(doc, i)}-code-point document`)
    }
    if (c.k === SKIP) {
      b.push(SKIP, c.n, '')
    } else {
      const text = doc.slice(i, j)
      if (c.s !== '' && text !== c.s) {
        throw otError('delete_mismatch', `component ${ci} deletes ${JSON.stringify(c.s)} at ${pos}, the document holds ${JSON.stringify(text)}`)
      }
      b.push(INSERT, c.n, text)
    }
    i = j
    pos += c.n
  }
  return toWire(b.done())
}

function checkPos (pos, what) {
  if (typeof pos !== 'number' || !Number.isInteger(pos)) {
    throw invalid(`${what} must be an integer, got ${describe(pos)}`)
  }
}

function position (pos, comps, side) {
  if (pos < 0) pos = 0
  let at = 0 // position in the original document reached by op
  for (const c of comps) {
    if (pos < at || (pos === at && side !== 'right')) break
    switch (c.k) {
      case SKIP:
        at += c.n
        break
      case INSERT:
        at += c.n
        pos += c.n
        break
      case DELETE:
        pos -= Math.min(c.n, pos - at)
        break
    }
  }
  return pos
}

/** transformPosition returns where pos (a code point offset into the document
 * op applies to) ends up in the document op makes. A position inside deleted
 * text moves to where the deletion was. Text inserted exactly at pos goes
 * after the position with side 'left' (text-unicode's transformPosition) and
 * before it with 'right' (a caret moving past its own user's typing). A
 * negative pos counts as 0. */
export function transformPosition (pos, op, side) {
  checkPos(pos, 'position')
  checkSide(side)
  return position(pos, parse(op), side)
}

/** transformSelection returns where {anchor, head} ends up in the document op
 * makes. A caret (anchor === head) moves as transformPosition moves it with
 * side. A range does not grow from text inserted at its edges (side matters
 * only for carets); a range whose text is all deleted collapses to a caret,
 * before any text inserted in its place. */
export function transformSelection (sel, op, side) {
  if (sel === null || typeof sel !== 'object') throw invalid(`selection must be {anchor, head}, got ${describe(sel)}`)
  const { anchor, head } = sel
  checkPos(anchor, 'anchor')
  checkPos(head, 'head')
  checkSide(side)
  const comps = parse(op)
  if (anchor === head) {
    const p = position(anchor, comps, side)
    return { anchor: p, head: p }
  }
  let start = Math.min(anchor, head)
  let end = Math.max(anchor, head)
  start = position(start, comps, 'right')
  end = position(end, comps, 'left')
  start = Math.min(start, end)
  return head < anchor ? { anchor: end, head: start } : { anchor: start, head: end }
}
