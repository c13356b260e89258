// Generates ../vectors.json: reference vectors for the Go engine in package ot,
// computed by ShareDB's text type, the npm package ot-text-unicode (pinned to
// 4.0.0 in package.json / package-lock.json).
//
//   cd ot/testdata/gen && npm ci && node gen.mjs
//
// The output is deterministic: every random choice comes from a seeded PRNG
// (mulberry32), never from Math.random. Running the script twice gives the
// same bytes.
//
// Output layout (see README.md): one JSON object with an "about" entry and an
// array per kind. Every case sits on one line and is written by JSON.stringify
// without indentation, so every op inside a case is byte for byte what
// JSON.stringify gives for that op alone; the Go test compares
// (ot.Op).MarshalJSON against those raw bytes.
//
// All positions and lengths are Unicode code points, as in text-unicode, so
// every string is handled with Array.from (code point aware), never with
// String.prototype.length or .slice on UTF-16 units.

import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { strict as assert } from 'node:assert'
import otu from 'ot-text-unicode'

const { type } = otu
const here = dirname(fileURLToPath(import.meta.url))

const PKG_VERSION = JSON.parse(
  readFileSync(join(here, 'node_modules/ot-text-unicode/package.json'), 'utf8')).version
assert.equal(PKG_VERSION, '4.0.0', 'ot-text-unicode must be exactly 4.0.0 (run npm ci)')

const SEED = 0x7a4d3e11
const RANDOM_CASES = 400 // per kind

// ---------------------------------------------------------------------------
// PRNG

function mulberry32 (a) {
  return function () {
    a |= 0
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rand = mulberry32(SEED)
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)) // inclusive
const chance = p => rand() < p
const pick = xs => xs[Math.floor(rand() * xs.length)]

// ---------------------------------------------------------------------------
// Alphabet. Units are what a user types: some are one code point, some are
// several (combining marks, flags, a ZWJ family). Ops are generated in code
// points, so they freely cut through multi-code-point units.

const GROUPS = [
  // [weight, units]
  [30, ['a', 'b', 'c', 'x', 'y', 'z', 'H', 'Q', '0', '7', ' ', '.']],
  [6, ['\n']],
  // Characters JSON has opinions about: quote, backslash, the control
  // characters with short escapes (\t \r \b \f) and without (\u0001,
  // \u001f), HTML-sensitive characters (Go's json.Marshal escapes those by
  // default, JSON.stringify does not), '/', DEL, and U+2028 (Go's
  // encoding/json escapes it, JSON.stringify does not).
  [5, ['"', '\\', '\t', '\r', '\b', '\f', '\u0001', '\u001f', '<', '>', '&', '/', '\u007f', '\u2028']],
  [10, ['漢', '字', 'か', 'な', 'é']],
  [10, ['😀', '🎉', '𝄞']],
  [5, ['👨\u200d👩\u200d👧']], // man ZWJ woman ZWJ girl: 5 code points
  [5, ['e\u0301', 'a\u0308']], // combining acute / diaeresis
  [5, ['🇫🇷']] // two regional indicators
]
const TOTAL_WEIGHT = GROUPS.reduce((s, [w]) => s + w, 0)

function randUnit () {
  let r = rand() * TOTAL_WEIGHT
  for (const [w, units] of GROUPS) {
    if (r < w) return pick(units)
    r -= w
  }
  return GROUPS[0][1][0]
}

function randText (minUnits, maxUnits) {
  let s = ''
  const n = randInt(minUnits, maxUnits)
  for (let i = 0; i < n; i++) s += randUnit()
  return s
}

const randDoc = () => chance(0.06) ? '' : randText(1, 14)

// ---------------------------------------------------------------------------
// Helpers

const cpLen = s => Array.from(s).length
const cpSlice = (s, a, b) => Array.from(s).slice(a, b).join('')
const clone = x => JSON.parse(JSON.stringify(x))
const dlen = d => typeof d === 'number' ? d : cpLen(d)

// Asserts op passes text-unicode's checkOp and is valid on doc: it does not
// run past the end, and every delete that carries text carries the text that
// is really there.
function assertValidOn (op, doc) {
  type.checkOp(op)
  // checkOp lets adjacent inserts or deletes through; the vectors only use
  // normalized ops outside the normalize kind.
  assert.equal(JSON.stringify(T.normalize(op)), JSON.stringify(op), `op ${JSON.stringify(op)} is not normalized`)
  const cps = Array.from(doc)
  let pos = 0
  for (const c of op) {
    if (typeof c === 'number') pos += c
    else if (typeof c === 'object') {
      if (typeof c.d === 'string') {
        assert.equal(cps.slice(pos, pos + dlen(c.d)).join(''), c.d,
          `delete text mismatch in ${JSON.stringify(op)} on ${JSON.stringify(doc)}`)
      }
      pos += dlen(c.d)
    }
  }
  assert.ok(pos <= cps.length, `op ${JSON.stringify(op)} too long for ${JSON.stringify(doc)}`)
}

// The library functions can modify the ops they are given (normalize and
// invertWithDoc merge deletes into the caller's objects), so every call gets a
// fresh copy and inputs are recorded before any call.
const T = {
  apply: (doc, op) => type.apply(doc, clone(op)),
  transform: (a, b, side) => type.transform(clone(a), clone(b), side),
  compose: (a, b) => type.compose(clone(a), clone(b)),
  normalize: op => type.normalize(clone(op)),
  transformPosition: (pos, op) => type.transformPosition(pos, clone(op)),
  invertWithDoc: (op, doc) => type.invertWithDoc(clone(op), doc)
}

// Random raw components walking doc. deleteMode: 'num' -> {d:N}, 'str' ->
// {d:"text"}, 'mixed' -> either, per component. The result is NOT normalized.
function randComponents (doc, deleteMode) {
  const n = cpLen(doc)
  const comps = []
  let pos = 0
  const steps = randInt(0, 6)
  for (let i = 0; i < steps; i++) {
    const r = rand()
    const left = n - pos
    if (r < 0.35 && left > 0) {
      const k = randInt(1, Math.min(left, 5))
      comps.push(k)
      pos += k
    } else if (r < 0.65 && left > 0) {
      const k = randInt(1, Math.min(left, 4))
      const asText = deleteMode === 'str' || (deleteMode === 'mixed' && chance(0.5))
      comps.push({ d: asText ? cpSlice(doc, pos, pos + k) : k })
      pos += k
    } else {
      comps.push(randText(1, 3))
    }
  }
  return comps
}

const randDeleteMode = () => pick(['num', 'str', 'mixed'])

// A random op valid on doc, normalized by text-unicode itself.
function randOp (doc, deleteMode = randDeleteMode()) {
  const op = T.normalize(randComponents(doc, deleteMode))
  assertValidOn(op, doc)
  return op
}

// Turns a normalized op into an equivalent, unnormalized one whose
// components are each valid: split skips, inserts and deletes (at code point
// boundaries; a split delete may change between {d:N} and {d:"text"}), and
// add trailing skips.
function denormalize (op) {
  const out = []
  for (const c of op) {
    const len = typeof c === 'number' ? c : typeof c === 'string' ? cpLen(c) : dlen(c.d)
    if (len < 2 || !chance(0.6)) {
      out.push(c)
      continue
    }
    const at = randInt(1, len - 1)
    if (typeof c === 'number') {
      out.push(at, c - at)
    } else if (typeof c === 'string') {
      out.push(cpSlice(c, 0, at), cpSlice(c, at))
    } else {
      const parts = typeof c.d === 'number'
        ? [at, c.d - at]
        : [cpSlice(c.d, 0, at), cpSlice(c.d, at)]
      for (const p of parts) {
        // A string part may be turned into its count; a count stays a count.
        out.push({ d: typeof p === 'string' && chance(0.3) ? cpLen(p) : p })
      }
    }
  }
  const trailing = randInt(0, 2)
  for (let i = 0; i < trailing; i++) out.push(randInt(1, 4))
  return out
}

// ---------------------------------------------------------------------------
// Case builders. Each returns the recorded case object; the field order here
// is the order in the file.

function transformCase (doc, op1, op2, name) {
  assertValidOn(op1, doc)
  assertValidOn(op2, doc)
  const left = T.transform(op1, op2, 'left')
  const right = T.transform(op1, op2, 'right')
  const check = T.apply(T.apply(doc, op2), left)
  // Sanity: text-unicode converges (TP1).
  assert.equal(T.apply(T.apply(doc, op1), T.transform(op2, op1, 'right')), check)
  return { ...(name ? { name } : {}), doc, op1, op2, left, right, check }
}

function composeCase (doc, a, b, name) {
  assertValidOn(a, doc)
  const mid = T.apply(doc, a)
  assertValidOn(b, mid)
  const result = T.compose(a, b)
  const final = T.apply(doc, result)
  assert.equal(T.apply(mid, b), final)
  return { ...(name ? { name } : {}), doc, a, b, mid, result, final }
}

function applyCase (doc, op, name) {
  assertValidOn(op, doc)
  return { ...(name ? { name } : {}), doc, op, result: T.apply(doc, op) }
}

function normalizeCase (op, name) {
  // Every component must be valid on its own (checkOp rejects a lone skip
  // as trailing, so test skips as [skip, "x"]).
  for (const c of op) type.checkOp(typeof c === 'number' ? [c, 'x'] : [c])
  return { ...(name ? { name } : {}), op, result: T.normalize(op) }
}

function transformPositionCase (doc, pos, op, name) {
  assertValidOn(op, doc)
  return { ...(name ? { name } : {}), doc, pos, op, result: T.transformPosition(pos, op) }
}

function invertCase (doc, op, name) {
  assertValidOn(op, doc)
  const result = T.invertWithDoc(op, doc)
  const after = T.apply(doc, op)
  assertValidOn(result, after)
  assert.equal(T.apply(after, result), doc)
  return { ...(name ? { name } : {}), doc, op, after, result }
}

// ---------------------------------------------------------------------------
// Hand-written edge cases.

const FAM = '👨\u200d👩\u200d👧' // 5 code points
const FR = '🇫🇷' // 2 code points

const edges = {
  transform: [
    ['empty both', 'abc', [], []],
    ['empty doc empty ops', '', [], []],
    ['empty vs insert', 'abc', [], [1, 'x']],
    ['insert vs empty', 'abc', [1, 'x'], []],
    ['same position insert at start', '', ['a'], ['b']],
    ['same position insert middle', 'abcd', [2, 'X'], [2, 'Y']],
    ['same position insert at end', 'ab', [2, 'X'], [2, 'Y']],
    ['same position emoji inserts', FAM, ['😀'], ['🎉']],
    ['same position insert after emoji', '😀🎉', [1, '🇫🇷'], [1, 'e\u0301']],
    ['identical inserts', 'ab', [1, 'q'], [1, 'q']],
    ['overlapping deletes', 'abcdef', [1, { d: 3 }], [2, { d: 3 }]],
    ['overlapping deletes reversed', 'abcdef', [2, { d: 3 }], [1, { d: 3 }]],
    ['overlapping deletes with text', 'a😀c漢ef', [1, { d: '😀c漢' }], [2, { d: 'c漢e' }]],
    ['overlapping text vs count deletes', 'a😀c漢ef', [1, { d: '😀c漢' }], [2, { d: 3 }]],
    ['identical deletes', 'abc', [{ d: 'abc' }], [{ d: 'abc' }]],
    ['identical count deletes', 'abc', [{ d: 3 }], [{ d: 3 }]],
    ['delete contains other delete', 'abcdefg', [1, { d: 5 }], [2, { d: 2 }]],
    ['delete inside other delete', 'abcdefg', [2, { d: 'cd' }], [1, { d: 'bcdef' }]],
    ['delete vs insert inside it', 'abcdef', [1, { d: 4 }], [3, 'XY']],
    ['insert inside delete vs delete', 'abcdef', [3, 'XY'], [1, { d: 4 }]],
    ['delete text vs emoji insert inside it', 'a😀bc', [{ d: 'a😀bc' }], [2, '🎉']],
    ['delete vs insert at its start', 'abc', [1, { d: 2 }], [1, 'Z']],
    ['delete vs insert at its end', 'abc', [1, { d: 2 }], [3, 'Z']],
    ['insert then delete vs insert', 'abc', ['x', { d: 2 }], ['y']],
    ['delete then insert vs insert', 'abc', [{ d: 1 }, 'x'], ['y']],
    ['delete then insert vs delete then insert', 'abc', [{ d: 1 }, 'x'], [{ d: 1 }, 'y']],
    ['ops end before doc end', 'abcdefghij', [1, 'x'], [3, { d: 1 }]],
    ['ops end before doc end reversed', 'abcdefghij', [3, { d: 1 }], [1, 'x']],
    ['emoji at boundaries', '😀a🎉', [1, 'x', 1, { d: '🎉' }], [{ d: '😀' }, 1, 'y']],
    ['flag split by insert vs delete half', FR, [1, '|'], [{ d: '🇫' }]],
    ['flag halves deleted both sides', FR, [{ d: '🇫' }], [1, { d: '🇷' }]],
    ['zwj family cut', FAM, [2, { d: 1 }], [1, '!', 3, { d: 1 }]],
    ['zwj family deleted vs insert inside', FAM, [{ d: FAM }], [3, '😀']],
    ['combining mark split', 'e\u0301a\u0308', [1, 'X'], [1, { d: '\u0301a' }]],
    ['insert at end of doc both', 'a😀', [2, '漢'], [2, '字']],
    ['multi component vs multi component', 'abcdefghij', [1, 'x', 2, { d: 2 }, 'y', 1, { d: 1 }], [2, { d: 3 }, 'zz', 2, 'w']],
    ['escapes', 'a"b', [1, '\\"\n\t\u2028<&>'], [2, '\u0001\u007f']]
  ],
  compose: [
    ['empty both', 'abc', [], []],
    ['empty then insert', '', [], ['hi']],
    ['insert then empty', '', ['hi'], []],
    ['insert then delete all of it', 'abc', ['xyz'], [{ d: 3 }]],
    ['insert then delete part of it', 'abc', ['x😀z'], [1, { d: '😀' }]],
    ['insert then count delete part of it', 'abc', ['x😀z'], [1, { d: 1 }]],
    ['delete then insert same text', 'ab', [{ d: 'ab' }], ['ab']],
    ['delete then delete', 'abcdef', [1, { d: 'bc' }], [1, { d: 'de' }]],
    ['text delete then count delete adjacent', 'abcdef', [1, { d: 'bc' }], [1, { d: 2 }]],
    ['count delete then text delete adjacent', 'abcdef', [1, { d: 2 }], [1, { d: 'de' }]],
    ['insert inside insert', '', ['abcd'], [2, 'XY']],
    ['a ends before doc end, b longer', 'abcdefgh', [1, 'x'], [6, { d: 2 }, 'y']],
    ['b ends before a ends', 'abcdefgh', [1, 'x', 4, { d: 1 }], [1, 'y']],
    ['emoji insert then insert after it', '', ['😀'], [1, '🎉']],
    ['zwj family inserted then cut', '', [FAM], [1, { d: 1 }]],
    ['flag then half deleted', 'x', [1, FR], [1, { d: '🇫' }]],
    ['deletes around insert', 'abcdef', [2, { d: 2 }], [1, { d: 1 }, 'Q', { d: 1 }]],
    ['insert then delete spanning insert and doc', 'abc', [1, 'XY'], [{ d: 'aX' }, 1, { d: 'bc' }]],
    ['escapes', '', ['"\\'], [2, '\t\u2028<>&\u0001']]
  ],
  apply: [
    ['empty doc empty op', '', []],
    ['empty op', 'abc', []],
    ['insert into empty doc', '', ['😀']],
    ['delete whole doc', 'a😀b', [{ d: 3 }]],
    ['delete whole doc with text', 'a😀b', [{ d: 'a😀b' }]],
    ['delete emoji between emoji', '😀😀😀', [1, { d: '😀' }]],
    ['op ends before doc end', 'abcdef', [1, { d: 1 }]],
    ['insert at end', '漢字', [2, 'かな']],
    ['skip whole doc then insert', FAM, [5, '!']],
    ['cut zwj family', FAM, [1, { d: 1 }, 1, { d: '\u200d' }]],
    ['insert inside flag', FR, [1, ' ']],
    ['delete combining mark', 'e\u0301', [1, { d: '\u0301' }]],
    ['escapes', 'x', ['"\\\n\t\r\b\f\u0001\u001f\u007f<>&\u2028\u2029/']],
    ['delete escapes', '"\\\t<>&\u2028', [{ d: '"\\\t<>&\u2028' }]]
  ],
  normalize: [
    ['empty', []],
    ['lone skip', [3]],
    ['adjacent skips only', [1, 2]],
    ['already normal', [2, 'a', { d: 1 }]],
    ['adjacent inserts', ['a', 'b']],
    ['adjacent emoji inserts', ['😀', '🎉', FAM]],
    ['adjacent count deletes', [{ d: 1 }, { d: 2 }]],
    ['adjacent text deletes', [{ d: 'a' }, { d: '😀' }]],
    ['count then text delete', [{ d: 1 }, { d: 'x' }]],
    ['text then count delete', [{ d: 'x' }, { d: 1 }]],
    ['text count text deletes', [{ d: 'x' }, { d: 1 }, { d: 'y' }]],
    ['skips around insert with trailing skips', [1, 1, 'x', 2, 3]],
    ['insert delete insert kept in order', ['a', { d: 1 }, 'b']],
    ['delete insert delete kept in order', [{ d: 'a' }, 'b', { d: 'c' }]],
    ['trailing skip after delete', [{ d: 2 }, 5]],
    ['split flag insert', ['🇫', '🇷']],
    ['split family delete text', [{ d: '👨\u200d' }, { d: '👩\u200d👧' }]]
  ],
  transformPosition: [
    ['empty op', 'abc', 2, []],
    ['pos 0 insert at 0', 'abc', 0, ['x']],
    ['insert at cursor', 'abc', 2, [2, 'xy']],
    ['insert before cursor', 'abc', 2, [1, 'xy']],
    ['insert after cursor', 'abc', 1, [2, 'xy']],
    ['emoji insert before cursor', 'abc', 3, [1, '😀' + FAM]],
    ['cursor inside delete', 'abcdef', 3, [1, { d: 4 }]],
    ['cursor at delete start', 'abcdef', 1, [1, { d: 4 }]],
    ['cursor at delete end', 'abcdef', 5, [1, { d: 4 }]],
    ['cursor after delete', 'abcdef', 6, [1, { d: 'bcde' }]],
    ['cursor inside delete followed by insert', 'abcdef', 3, [1, { d: 4 }, 'XY']],
    ['delete then insert at cursor', 'abcdef', 1, [{ d: 1 }, 'XY']],
    ['insert then delete spanning cursor', 'abcdef', 2, ['Q', { d: 3 }]],
    ['cursor at end past op', 'abcdef', 6, [1, 'x']],
    ['cursor in zwj family', FAM, 3, [1, { d: 3 }]],
    ['cursor in flag', FR, 1, ['🇫🇷']]
  ],
  invert: [
    ['empty op', 'abc', []],
    ['empty doc insert', '', ['😀']],
    ['count delete', '😀a', [{ d: 2 }]],
    ['text delete', '😀a', [{ d: '😀a' }]],
    ['skip text delete insert', 'abc', [1, { d: 'b' }, 'c']],
    ['op ends before doc end', 'abcdefg', [1, { d: 2 }]],
    ['insert and count deletes mixed', 'a漢b字c', [{ d: 1 }, 'x', 1, { d: 'b' }, 1, { d: 1 }]],
    ['delete then insert', 'ab', [{ d: 1 }, 'Z']],
    ['insert then delete', 'ab', ['Z', { d: 1 }]],
    ['cut zwj family', FAM, [1, { d: 2 }, '!']],
    ['delete flag half', FR, [{ d: 1 }]],
    ['escapes', '"\\\t<>&\u2028', [1, { d: 3 }, '\u0001\n']]
  ]
}

// ---------------------------------------------------------------------------
// Random cases.

function posNearBoundaries (op, n) {
  if (chance(0.5)) return randInt(0, n)
  const bounds = [0, n]
  let pre = 0
  for (const c of op) {
    bounds.push(pre)
    if (typeof c === 'number') pre += c
    else if (typeof c === 'object') pre += dlen(c.d)
    bounds.push(pre)
  }
  const b = pick(bounds) + pick([-1, 0, 0, 1])
  return Math.max(0, Math.min(n, b))
}

const random = {
  transform: () => {
    const doc = randDoc()
    return transformCase(doc, randOp(doc), randOp(doc))
  },
  compose: () => {
    const doc = randDoc()
    const a = randOp(doc)
    return composeCase(doc, a, randOp(T.apply(doc, a)))
  },
  apply: () => {
    const doc = randDoc()
    return applyCase(doc, randOp(doc))
  },
  normalize: () => {
    const doc = randDoc()
    let op
    if (chance(0.5)) {
      op = denormalize(randOp(doc))
    } else {
      // Raw components straight from the walker, with mixed deletes and an
      // extra trailing skip now and then.
      op = randComponents(doc, 'mixed')
      if (chance(0.3)) op.push(randInt(1, 3))
    }
    return normalizeCase(op)
  },
  transformPosition: () => {
    const doc = randDoc()
    const op = randOp(doc)
    return transformPositionCase(doc, posNearBoundaries(op, cpLen(doc)), op)
  },
  invert: () => {
    const doc = randDoc()
    return invertCase(doc, randOp(doc))
  }
}

const builders = {
  transform: (name, doc, op1, op2) => transformCase(doc, op1, op2, name),
  compose: (name, doc, a, b) => composeCase(doc, a, b, name),
  apply: (name, doc, op) => applyCase(doc, op, name),
  normalize: (name, op) => normalizeCase(op, name),
  transformPosition: (name, doc, pos, op) => transformPositionCase(doc, pos, op, name),
  invert: (name, doc, op) => invertCase(doc, op, name)
}

const KINDS = ['transform', 'compose', 'apply', 'normalize', 'transformPosition', 'invert']
const out = {}
for (const kind of KINDS) {
  const cases = edges[kind].map(args => builders[kind](...args))
  for (let i = 0; i < RANDOM_CASES; i++) cases.push(random[kind]())
  out[kind] = cases
}

// ---------------------------------------------------------------------------
// Write.

const about = {
  source: `ot-text-unicode@${PKG_VERSION} (npm)`,
  generator: 'ot/testdata/gen/gen.mjs',
  regenerate: 'cd ot/testdata/gen && npm ci && node gen.mjs',
  seed: SEED,
  units: 'positions and lengths are Unicode code points',
  format: 'one case per line, each written by JSON.stringify without indentation: ops are stored as raw JSON values that are byte for byte JSON.stringify output'
}

let text = '{\n"about": ' + JSON.stringify(about)
for (const kind of KINDS) {
  text += `,\n${JSON.stringify(kind)}: [\n` + out[kind].map(c => JSON.stringify(c)).join(',\n') + '\n]'
}
text += '\n}\n'

// The file must parse back to what was generated.
assert.deepEqual(JSON.parse(text), { about, ...out })

const file = join(here, '..', 'vectors.json')
writeFileSync(file, text)
const counts = KINDS.map(k => `${k}=${out[k].length} (${edges[k].length} edge)`).join(' ')
console.log(`wrote ${file}: ${Buffer.byteLength(text)} bytes; ${counts}`)
