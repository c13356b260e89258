// Tests for internal/web/static/js/ot.js: node --test internal/web/jstest/
//
// - golden vectors: every case of ot/testdata/vectors.json (computed by the
//   npm package ot-text-unicode 4.0.0, which the Go engine also matches) must
//   give JSON-identical results;
// - rejection of every kind of malformed input, with the right error code;
// - tables mirrored from ot/ot_test.go (same inputs, same expected outputs);
// - seeded random properties over emoji, ZWJ sequences, flags, CJK and
//   combining marks, with an independent code point array model.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import * as ot from '../static/js/ot.js'

const {
  apply, transform, compose, invert, normalize, checkOp,
  transformPosition, transformSelection, baseLen, targetLen, isNoop
} = ot

const J = JSON.stringify

// deepFreeze makes every input read-only, so that a function modifying the
// ops it is given throws (ES modules are strict mode).
function deepFreeze (x) {
  if (x !== null && typeof x === 'object') {
    for (const v of Object.values(x)) deepFreeze(v)
    Object.freeze(x)
  }
  return x
}

function throwsCode (fn, code, what) {
  assert.throws(fn, err => {
    assert.ok(err instanceof Error, `${what}: threw a non-Error ${err}`)
    assert.equal(err.code, code, `${what}: error code (message: ${err.message})`)
    return true
  }, what)
}

// ---------------------------------------------------------------------------
// Golden vectors.

const vectors = JSON.parse(readFileSync(new URL('../../../ot/testdata/vectors.json', import.meta.url), 'utf8'))
deepFreeze(vectors)
const KINDS = ['transform', 'compose', 'apply', 'normalize', 'transformPosition', 'invert']

function caseName (kind, i, c) {
  return `${kind}[${i}]${c.name ? ` (${c.name})` : ''}`
}

test('golden vectors: source and size', t => {
  assert.match(vectors.about.source, /^ot-text-unicode@4\.0\.0 /)
  let total = 0
  for (const kind of KINDS) {
    assert.ok(Array.isArray(vectors[kind]) && vectors[kind].length > 0, `no ${kind} cases`)
    total += vectors[kind].length
  }
  t.diagnostic(`${total} golden cases: ${KINDS.map(k => `${k}=${vectors[k].length}`).join(' ')}`)
})

test('golden transform (left and right)', t => {
  for (const [i, c] of vectors.transform.entries()) {
    const name = caseName('transform', i, c)
    const left = transform(c.op1, c.op2, 'left')
    const right = transform(c.op1, c.op2, 'right')
    assert.equal(J(left), J(c.left), `${name} left`)
    assert.equal(J(right), J(c.right), `${name} right`)
    assert.equal(apply(apply(c.doc, c.op2), left), c.check, `${name} check`)
  }
  t.diagnostic(`${vectors.transform.length} cases`)
})

test('golden compose', t => {
  for (const [i, c] of vectors.compose.entries()) {
    const name = caseName('compose', i, c)
    assert.equal(apply(c.doc, c.a), c.mid, `${name} mid`)
    assert.equal(apply(c.mid, c.b), c.final, `${name} sequential`)
    const got = compose(c.a, c.b)
    assert.equal(J(got), J(c.result), `${name} result`)
    assert.equal(apply(c.doc, got), c.final, `${name} final`)
  }
  t.diagnostic(`${vectors.compose.length} cases`)
})

test('golden apply', t => {
  for (const [i, c] of vectors.apply.entries()) {
    assert.equal(J(apply(c.doc, c.op)), J(c.result), caseName('apply', i, c))
  }
  t.diagnostic(`${vectors.apply.length} cases`)
})

test('golden normalize', t => {
  for (const [i, c] of vectors.normalize.entries()) {
    const name = caseName('normalize', i, c)
    assert.equal(J(normalize(c.op)), J(c.result), name)
    assert.equal(J(normalize(c.result)), J(c.result), `${name} idempotent`)
  }
  t.diagnostic(`${vectors.normalize.length} cases`)
})

test('golden transformPosition (side left)', t => {
  for (const [i, c] of vectors.transformPosition.entries()) {
    assert.equal(J(transformPosition(c.pos, c.op, 'left')), J(c.result), caseName('transformPosition', i, c))
  }
  t.diagnostic(`${vectors.transformPosition.length} cases`)
})

test('golden invert', t => {
  for (const [i, c] of vectors.invert.entries()) {
    const name = caseName('invert', i, c)
    const got = invert(c.op, c.doc)
    assert.equal(J(got), J(c.result), name)
    assert.equal(apply(c.doc, c.op), c.after, `${name} after`)
    assert.equal(apply(c.after, got), c.doc, `${name} round trip`)
  }
  t.diagnostic(`${vectors.invert.length} cases`)
})

// ---------------------------------------------------------------------------
// Rejections.

const MALFORMED = [
  ['null op', null],
  ['undefined op', undefined],
  ['object op', { d: 1 }],
  ['string op', 'abc'],
  ['zero skip', [0, 'a']],
  ['negative skip', [-1, 'a']],
  ['negative zero skip', [-0, 'a']],
  ['fractional skip', [1.5, 'a']],
  ['NaN skip', [NaN, 'a']],
  ['infinite skip', [Infinity, 'a']],
  ['huge skip', [2 ** 40 + 1, 'a']],
  ['empty insert', ['']],
  ['zero delete', [{ d: 0 }]],
  ['negative delete', [{ d: -3 }]],
  ['fractional delete', [{ d: 1.5 }]],
  ['huge delete', [{ d: 2 ** 53 }]],
  ['empty delete text', [{ d: '' }]],
  ['delete null', [{ d: null }]],
  ['delete bool', [{ d: true }]],
  ['delete array', [{ d: [1] }]],
  ['unknown key', [{ x: 1 }]],
  ['extra key', [{ d: 1, e: 2 }]],
  ['insert object', [{ i: 'a' }]],
  ['empty object', [{}]],
  ['null component', [null]],
  ['undefined component', [undefined]],
  ['nested array', [[1]]],
  ['bool', [true]],
  ['bigint', [1n, 'a']],
  ['lone high surrogate', ['\ud83d']],
  ['lone low surrogate', ['\ude00']],
  ['high then letter', ['\ud83dx']],
  ['high then high', ['\ud83d\ud83d']],
  ['low then high', ['\ude00\ud83d']],
  ['lone surrogate after pair', ['😀\ud83d']],
  ['surrogate in delete', [{ d: '\ud83d' }]],
  ['lone surrogate later in op', [1, 'ok', { d: 'a\ude00' }]],
  ['malformed after valid', [1, 'a', 0]]
]

test('every function rejects malformed ops with invalid_op', () => {
  const good = [1, 'x']
  for (const [name, bad] of MALFORMED) {
    const calls = {
      checkOp: () => checkOp(bad),
      normalize: () => normalize(bad),
      apply: () => apply('abcdef', bad),
      'transform op': () => transform(bad, good, 'left'),
      'transform other': () => transform(good, bad, 'right'),
      'compose a': () => compose(bad, good),
      'compose b': () => compose(good, bad),
      invert: () => invert(bad, 'abcdef'),
      transformPosition: () => transformPosition(1, bad, 'left'),
      transformSelection: () => transformSelection({ anchor: 1, head: 2 }, bad, 'left'),
      baseLen: () => baseLen(bad),
      targetLen: () => targetLen(bad),
      isNoop: () => isNoop(bad)
    }
    for (const [fn, call] of Object.entries(calls)) throwsCode(call, 'invalid_op', `${fn}: ${name}`)
  }
})

test('bad sides, positions, selections and documents are invalid_op', () => {
  for (const side of [undefined, 'LEFT', 0, 1, 'up', null]) {
    throwsCode(() => transform([1, 'a'], ['b'], side), 'invalid_op', `transform side ${side}`)
    throwsCode(() => transformPosition(1, ['b'], side), 'invalid_op', `transformPosition side ${side}`)
    throwsCode(() => transformSelection({ anchor: 1, head: 1 }, ['b'], side), 'invalid_op', `transformSelection side ${side}`)
  }
  for (const pos of [1.5, NaN, '1', null, undefined, Infinity]) {
    throwsCode(() => transformPosition(pos, ['b'], 'left'), 'invalid_op', `position ${pos}`)
    throwsCode(() => transformSelection({ anchor: pos, head: 1 }, ['b'], 'left'), 'invalid_op', `anchor ${pos}`)
    throwsCode(() => transformSelection({ anchor: 1, head: pos }, ['b'], 'left'), 'invalid_op', `head ${pos}`)
  }
  throwsCode(() => transformSelection(null, ['b'], 'left'), 'invalid_op', 'null selection')
  throwsCode(() => transformSelection(3, ['b'], 'left'), 'invalid_op', 'number selection')
  throwsCode(() => apply(null, ['b']), 'invalid_op', 'apply to null')
  throwsCode(() => invert(['b'], 42), 'invalid_op', 'invert on a number')
})

test('too_long: skips and deletes past the end of the document', () => {
  const cases = [
    ['', [1]],
    ['abc', [4]],
    ['abc', [2, { d: 2 }]],
    ['abc', [3, 'x', 1]],
    ['abc', [{ d: 'abc' }, { d: 1 }]],
    ['😀', [2]], // one code point, two UTF-16 units
    ['😀😀', [1, { d: 2 }]],
    ['👨\u200d👩\u200d👧', [5, { d: 1 }]],
    ['🇫🇷', [{ d: 3 }]]
  ]
  for (const [doc, op] of cases) {
    throwsCode(() => apply(doc, op), 'too_long', `apply(${J(doc)}, ${J(op)})`)
    throwsCode(() => invert(op, doc), 'too_long', `invert(${J(op)}, ${J(doc)})`)
  }
  // Exactly to the end is fine.
  assert.equal(apply('😀😀', [1, { d: 1 }]), '😀')
  assert.equal(apply('👨\u200d👩\u200d👧', [5, '!']), '👨\u200d👩\u200d👧!')
})

test('delete_mismatch: a delete carrying text the document does not hold', () => {
  const cases = [
    ['abc', [{ d: 'abd' }]],
    ['abc', [1, { d: 'c' }]],
    ['😀', [{ d: '😁' }]], // same high surrogate
    ['🇫🇷', [{ d: '🇫🇮' }]], // same first regional indicator
    ['e\u0301', [{ d: 'é' }]], // NFD in the document, NFC in the op
    ['👨\u200d👩\u200d👧', [{ d: '👨\u200d👩\u200d👦' }]],
    ['ab', [{ d: 'a' }, { d: 'c' }]] // unnormalized: each delete is checked
  ]
  for (const [doc, op] of cases) {
    throwsCode(() => apply(doc, op), 'delete_mismatch', `apply(${J(doc)}, ${J(op)})`)
    throwsCode(() => invert(op, doc), 'delete_mismatch', `invert(${J(op)}, ${J(doc)})`)
  }
})

test('malformed ops are reported before length errors', () => {
  throwsCode(() => apply('', [5, '']), 'invalid_op', 'apply')
  throwsCode(() => invert([{ d: 'zz' }, { d: 0 }], 'ab'), 'invalid_op', 'invert')
})

test('errors are Error objects with a message', () => {
  try {
    apply('abc', [{ d: 'x' }])
    assert.fail('no error')
  } catch (err) {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'delete_mismatch')
    assert.match(err.message, /"x"/)
  }
})

// ---------------------------------------------------------------------------
// Tables mirrored from ot/ot_test.go.

test('Go TestApply table', () => {
  const cases = [
    ['', [], ''],
    ['abc', ['x'], 'xabc'],
    ['abc', [3, 'x'], 'abcx'],
    ['a😀b', [1, { d: 1 }], 'ab'],
    ['a😀b', [2, '漢'], 'a😀漢b'],
    ['e\u0301x', [1, { d: '\u0301' }], 'ex'],
    ['abc', [4], 'too_long'],
    ['abc', [2, { d: 2 }], 'too_long'],
    ['abc', [{ d: 'abd' }], 'delete_mismatch'],
    ['abc', [0], 'invalid_op'],
    ['abc', [''], 'invalid_op']
  ]
  for (const [doc, op, want] of cases) {
    if (['too_long', 'delete_mismatch', 'invalid_op'].includes(want)) {
      throwsCode(() => apply(doc, op), want, `apply(${J(doc)}, ${J(op)})`)
    } else {
      assert.equal(apply(doc, op), want, `apply(${J(doc)}, ${J(op)})`)
    }
  }
})

test('Go TestTransformPosition table', () => {
  const op = [2, 'xy', 2, { d: 3 }] // "abcdefgh" becomes "abxycdh"
  assert.equal(apply('abcdefgh', op), 'abxycdh')
  const cases = [
    [0, 0, 0], [1, 1, 1], [2, 2, 4], [3, 5, 5], [4, 6, 6],
    [5, 6, 6], [6, 6, 6], [7, 6, 6], [8, 7, 7], [-3, 0, 0]
  ]
  for (const [pos, left, right] of cases) {
    assert.equal(transformPosition(pos, op, 'left'), left, `TransformPosition(${pos}, Left)`)
    assert.equal(transformPosition(pos, op, 'right'), right, `TransformPosition(${pos}, Right)`)
  }
})

test('Go TestTransformSelection table', () => {
  const cases = [
    ['caret left stays', { anchor: 2, head: 2 }, [2, 'x'], 'left', { anchor: 2, head: 2 }],
    ['caret right moves', { anchor: 2, head: 2 }, [2, 'x'], 'right', { anchor: 3, head: 3 }],
    ['range start insert outside', { anchor: 2, head: 4 }, [2, 'x'], 'left', { anchor: 3, head: 5 }],
    ['range end insert outside', { anchor: 2, head: 4 }, [4, 'x'], 'right', { anchor: 2, head: 4 }],
    ['backward range', { anchor: 4, head: 2 }, [2, 'x'], 'left', { anchor: 5, head: 3 }],
    ['inside insert grows', { anchor: 2, head: 4 }, [3, 'xy'], 'left', { anchor: 2, head: 6 }],
    ['replaced range collapses', { anchor: 5, head: 6 }, [5, { d: 1 }, 'xy'], 'left', { anchor: 5, head: 5 }]
  ]
  for (const [name, sel, op, side, want] of cases) {
    assert.deepEqual(transformSelection(deepFreeze(sel), op, side), want, name)
  }
})

test('Go TestUnmarshalNormalizes table (the normalizing part)', () => {
  const cases = [
    [[], []],
    [[1, 'a'], [1, 'a']],
    [[3], []],
    [[1, 2, 'a', 'b', 4], [3, 'ab']],
    [[{ d: 1 }, { d: 2 }], [{ d: 3 }]],
    [[{ d: 'a' }, { d: 'b' }], [{ d: 'ab' }]],
    [[{ d: 'a' }, { d: 2 }], [{ d: 3 }]],
    [['\ud83d\ude00'], ['😀']],
    [['<&>\u2028'], ['<&>\u2028']]
  ]
  for (const [op, want] of cases) assert.equal(J(normalize(deepFreeze(op))), J(want), J(op))
})

test('transform and compose accept unnormalized ops, as the Go engine does', () => {
  assert.equal(J(transform([1, 1, 'a', 'b', 2], [1, 'x', 3], 'left')), J([3, 'ab']))
  assert.equal(J(transform([{ d: 'a' }, { d: 'b' }], [], 'left')), J([{ d: 'ab' }]))
  assert.equal(J(compose(['a', 'b'], [1, { d: 1 }, 1, 5])), J(['a']))
  assert.equal(J(compose([{ d: 'a' }, { d: 1 }], [])), J([{ d: 2 }]))
})

test('deletes keep their text as in text-unicode', () => {
  // Transform and compose split and keep delete text; merging a counted and
  // a texted delete drops the text.
  assert.equal(J(transform([{ d: 'a😀b' }], [1, 'X'], 'left')), J([{ d: 'a' }, 1, { d: '😀b' }]))
  assert.equal(J(compose([1, { d: '😀' }], [{ d: 'a' }, { d: 'b' }])), J([{ d: 'a😀b' }]))
  assert.equal(J(compose([1, { d: 1 }], [{ d: 'a' }])), J([{ d: 2 }]))
  assert.equal(J(normalize([{ d: 'x' }, { d: 1 }, { d: 'y' }])), J([{ d: 3 }]))
})

test('baseLen, targetLen and isNoop count code points', () => {
  const op = [2, '😀🇫🇷', { d: 'e\u0301' }, 1, { d: 3 }, '漢']
  assert.equal(baseLen(op), 2 + 2 + 1 + 3)
  assert.equal(targetLen(op), 2 + 3 + 1 + 1)
  assert.equal(baseLen([]), 0)
  assert.equal(targetLen(['👨\u200d👩\u200d👧']), 5)
  assert.equal(isNoop([]), true)
  assert.equal(isNoop([3]), true)
  assert.equal(isNoop([1, 2]), true)
  assert.equal(isNoop([1, 'a']), false)
  assert.equal(isNoop([{ d: 1 }]), false)
  // Applied to a longer document, op changes the length by targetLen - baseLen.
  const doc = 'ab' + 'e\u0301' + 'xyzw' + 'tail😀'
  assert.equal([...apply(doc, op)].length, [...doc].length - baseLen(op) + targetLen(op))
})

test('results are fresh values: inputs are never modified nor shared', () => {
  const a = deepFreeze([1, { d: 'bc' }, 'x'])
  const b = deepFreeze([2, { d: 1 }, 'y'])
  transform(a, b, 'left')
  compose(a, [1, { d: 'x' }])
  invert(a, 'abcd')
  const n = normalize(a)
  assert.notEqual(n, a)
  assert.notEqual(n[1], a[1])
  n[1].d = 'zz' // the result is the caller's to change
  assert.equal(a[1].d, 'bc')
})

// ---------------------------------------------------------------------------
// Seeded random properties.

function mulberry32 (seed) {
  return function () {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Units a user types: ASCII, JSON-escaped characters, CJK, astral emoji, a
// ZWJ family (5 code points), flags (2), combining marks (2), and loose
// ZWJ / combining code points. Ops cut through all of them.
const UNITS = [
  'a', 'b', 'c', 'x', ' ', '\n', '"', '\\', '<', '&', '\u2028',
  '漢', '字', 'か', 'é',
  '😀', '🎉', '𝄞', '😁',
  '👨\u200d👩\u200d👧', '👩\u200d💻',
  '🇫🇷', '🇯🇵',
  'e\u0301', 'a\u0308', '\u0301', '\u200d'
]

function makeRandom (seed) {
  const rand = mulberry32(seed)
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1))
  const pick = xs => xs[Math.floor(rand() * xs.length)]
  const text = (lo, hi) => {
    let s = ''
    for (let n = int(lo, hi); n > 0; n--) s += pick(UNITS)
    return s
  }
  // A random op valid on doc, often unnormalized (adjacent components of one
  // kind, a trailing skip); deletes carry their text half of the time.
  const op = doc => {
    const cps = Array.from(doc)
    const out = []
    let pos = 0
    for (let steps = int(0, 8); steps > 0; steps--) {
      const r = rand()
      const left = cps.length - pos
      if (r < 0.35 && left > 0) {
        const k = int(1, Math.min(left, 6))
        out.push(k)
        pos += k
      } else if (r < 0.65 && left > 0) {
        const k = int(1, Math.min(left, 5))
        out.push({ d: rand() < 0.5 ? cps.slice(pos, pos + k).join('') : k })
        pos += k
      } else {
        out.push(text(1, 3))
      }
    }
    return out
  }
  return { rand, int, pick, text, op }
}

// Reference model: apply on an array of code points, written independently
// of ot.js.
function modelApply (doc, op) {
  const cps = Array.from(doc)
  const out = []
  let pos = 0
  for (const c of op) {
    if (typeof c === 'number') {
      out.push(...cps.slice(pos, pos + c))
      pos += c
    } else if (typeof c === 'string') {
      out.push(c)
    } else {
      const n = typeof c.d === 'string' ? Array.from(c.d).length : c.d
      if (typeof c.d === 'string') assert.equal(cps.slice(pos, pos + n).join(''), c.d)
      pos += n
    }
    assert.ok(pos <= cps.length, 'model: op too long')
  }
  return out.join('') + cps.slice(pos).join('')
}

function assertNormalized (op, what) {
  assert.ok(Array.isArray(op), `${what}: not an array`)
  for (let i = 0; i < op.length; i++) {
    const c = op[i]
    const kind = typeof c === 'number' ? 's' : typeof c === 'string' ? 'i' : 'd'
    if (kind === 's') assert.ok(Number.isInteger(c) && c > 0, `${what}: bad skip`)
    if (kind === 'i') assert.ok(c.length > 0, `${what}: empty insert`)
    if (kind === 'd') {
      assert.deepEqual(Object.keys(c), ['d'], `${what}: bad delete`)
      assert.ok(typeof c.d === 'string' ? c.d.length > 0 : Number.isInteger(c.d) && c.d > 0, `${what}: bad delete`)
    }
    if (i > 0) {
      const prev = typeof op[i - 1] === 'number' ? 's' : typeof op[i - 1] === 'string' ? 'i' : 'd'
      assert.notEqual(prev, kind, `${what}: adjacent components of one kind in ${J(op)}`)
    }
  }
  if (op.length > 0) assert.notEqual(typeof op[op.length - 1], 'number', `${what}: trailing skip in ${J(op)}`)
  checkOp(op)
}

test('random properties: convergence, compose, invert, positions', () => {
  const r = makeRandom(0x5eed)
  const N = 3000
  for (let i = 0; i < N; i++) {
    const doc = r.rand() < 0.05 ? '' : r.text(0, 14)
    const a = deepFreeze(r.op(doc))
    const b = deepFreeze(r.op(doc))
    const ctx = `case ${i}: doc=${J(doc)} a=${J(a)} b=${J(b)}`
    const len = Array.from(doc).length

    const da = apply(doc, a)
    const db = apply(doc, b)
    assert.equal(da, modelApply(doc, a), `${ctx}: apply vs model`)
    assert.equal(db, modelApply(doc, b), `${ctx}: apply vs model`)
    assert.equal(Array.from(da).length, len - baseLen(a) + targetLen(a), `${ctx}: lengths`)

    // Convergence (TP1), both ways round.
    const bA = transform(b, a, 'right')
    const aB = transform(a, b, 'left')
    assert.equal(apply(da, bA), apply(db, aB), `${ctx}: diverged`)
    const bA2 = transform(b, a, 'left')
    const aB2 = transform(a, b, 'right')
    assert.equal(apply(da, bA2), apply(db, aB2), `${ctx}: diverged (other sides)`)

    // Compose equals sequential apply.
    const ab = compose(a, bA)
    assert.equal(apply(doc, ab), apply(da, bA), `${ctx}: compose`)
    const c = deepFreeze(r.op(da))
    assert.equal(apply(doc, compose(a, c)), apply(da, c), `${ctx}: compose with c=${J(c)}`)

    // Invert round-trips, and the inverse's inverse does a again.
    const inv = invert(a, doc)
    assert.equal(apply(da, inv), doc, `${ctx}: invert`)
    assert.equal(apply(doc, invert(inv, da)), da, `${ctx}: invert twice`)

    // Normalize keeps the effect.
    const na = normalize(a)
    assert.equal(apply(doc, na), da, `${ctx}: normalize`)
    assert.equal(J(normalize(na)), J(na), `${ctx}: normalize idempotent`)

    for (const [what, op] of [['transform right', bA], ['transform left', aB], ['compose', ab], ['invert', inv], ['normalize', na]]) {
      assertNormalized(op, `${ctx}: ${what}`)
    }

    // Positions and selections stay inside the document.
    const newLen = Array.from(da).length
    const pos = r.int(0, len)
    for (const side of ['left', 'right']) {
      const p = transformPosition(pos, a, side)
      assert.ok(p >= 0 && p <= newLen, `${ctx}: transformPosition(${pos}, ${side}) = ${p} outside [0, ${newLen}]`)
      const end = r.int(0, len)
      const sel = transformSelection({ anchor: pos, head: end }, a, side)
      const lo = Math.min(sel.anchor, sel.head)
      const hi = Math.max(sel.anchor, sel.head)
      assert.ok(lo >= 0 && hi <= newLen, `${ctx}: transformSelection(${pos}..${end}) = ${J(sel)}`)
      assert.equal(sel.anchor <= sel.head, pos <= end || sel.anchor === sel.head, `${ctx}: selection direction`)
    }
    // text-unicode's transformPosition is side 'left'; 'right' only differs
    // at an insert exactly at the position, and never goes before 'left'.
    assert.ok(transformPosition(pos, a, 'right') >= transformPosition(pos, a, 'left'), `${ctx}: right >= left`)
    // A caret in untouched text before the op's first change keeps its place.
    if (pos === 0 && (a.length === 0 || typeof a[0] === 'number')) {
      assert.equal(transformPosition(0, a, 'left'), 0)
    }
  }
})

test('random properties: the text between two positions survives a concurrent op', () => {
  // A position is a point between code points: the code point before a
  // caret stays before it after any op that does not delete it.
  const r = makeRandom(77)
  for (let i = 0; i < 1000; i++) {
    const doc = r.text(1, 10)
    const cps = Array.from(doc)
    const pos = r.int(1, cps.length)
    // An op that inserts somewhere and does not touch cps[pos - 1].
    const at = r.int(0, cps.length)
    const ins = r.text(1, 2)
    const op = at === 0 ? [ins] : [at, ins]
    for (const side of ['left', 'right']) {
      const p = transformPosition(pos, op, side)
      const after = Array.from(apply(doc, op))
      assert.equal(after[p - 1 - (at === pos && side === 'right' ? Array.from(ins).length : 0)], cps[pos - 1], `doc=${J(doc)} op=${J(op)} pos=${pos} ${side}`)
    }
  }
})

test('long documents with runs of ASCII, CJK, emoji and lone surrogates: apply and invert match the model', () => {
  const r = makeRandom(4242)
  const runs = ['a'.repeat(100), 'xyz'.repeat(30), '漢字'.repeat(40), '😀'.repeat(50), '\ud83d', 'b\ude00', '👨\u200d👩\u200d👧', '🇫🇷', 'e\u0301']
  for (let i = 0; i < 150; i++) {
    let doc = ''
    for (let n = r.int(1, 12); n > 0; n--) doc += r.pick(runs)
    const cps = Array.from(doc)
    const op = []
    let pos = 0
    while (pos < cps.length && r.rand() < 0.8) {
      const k = r.int(1, Math.min(cps.length - pos, 150))
      if (r.rand() < 0.5) op.push(k)
      else op.push({ d: r.rand() < 0.5 ? k : cps.slice(pos, pos + k).join('') })
      pos += k
      if (r.rand() < 0.5) op.push(r.text(1, 3))
    }
    const ctx = `case ${i}: op=${J(op)}`
    const lone = s => /[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ''))
    if (op.some(c => typeof c === 'object' && typeof c.d === 'string' && lone(c.d))) {
      // A delete carrying a lone surrogate is malformed.
      throwsCode(() => apply(doc, op), 'invalid_op', ctx)
      continue
    }
    const out = apply(doc, op)
    assert.equal(out, modelApply(doc, op), ctx)
    const inv = invert(op, doc)
    if (inv.some(c => typeof c === 'string' && lone(c))) {
      // The op deleted a lone surrogate the document held (a server never
      // holds one): as in Go, the inverse re-inserts it and is malformed.
      throwsCode(() => checkOp(inv), 'invalid_op', ctx)
    } else {
      assert.equal(apply(out, inv), doc, ctx)
    }
    throwsCode(() => apply(doc, [cps.length + 1]), 'too_long', ctx)
    throwsCode(() => apply(doc, [cps.length, { d: 1 }]), 'too_long', ctx)
    assert.equal(apply(doc, [cps.length, '!']), doc + '!', ctx)
  }
})

test('long documents: apply, invert and transformPosition stay linear', () => {
  const unit = 'ab😀漢👨\u200d👩\u200d👧e\u0301🇫🇷 '
  const doc = unit.repeat(20000) // 300,000 code points
  const len = Array.from(doc).length
  // A keystroke near the end, many times, and an op with many components.
  let d = doc
  for (let i = 0; i < 50; i++) d = apply(d, [len - 7, 'x'])
  assert.equal(Array.from(d).length, len + 50)
  const many = []
  for (let i = 0; i < 5000; i++) many.push(40, { d: 2 }, '!')
  const out = apply(doc, many)
  assert.equal(apply(out, invert(many, doc)), doc)
  assert.equal(transformPosition(len, many, 'left'), len - 5000)
})
