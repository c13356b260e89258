// Tests for internal/web/static/js/unicode.js: node --test internal/web/jstest/

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpLength, cpToUtf16, utf16ToCp, opFromDiff } from '../static/js/unicode.js'
import { apply, checkOp, normalize } from '../static/js/ot.js'

const J = JSON.stringify

const FAMILY = '👨\u200d👩\u200d👧' // man ZWJ woman ZWJ girl: 5 code points, 8 UTF-16 units
const CODER = '👩\u200d💻' // 3 code points, 5 units
const FR = '🇫🇷' // two regional indicators: 2 code points, 4 units
const JP = '🇯🇵'
const E_ACUTE = 'e\u0301' // e + combining acute: 2 code points
const A_UML = 'a\u0308'

// ---------------------------------------------------------------------------
// cpLength, cpToUtf16, utf16ToCp

test('cpLength counts code points', () => {
  const cases = [
    ['', 0], ['abc', 3], ['😀', 1], ['😀🎉𝄞', 3], ['漢字かな', 4],
    [FAMILY, 5], [CODER, 3], [FR, 2], [FR + JP, 4], [E_ACUTE, 2], [A_UML + E_ACUTE, 4],
    ['a😀b', 3], ['\n\t"', 3],
    // A lone surrogate counts as one code point, as for...of does.
    ['\ud83d', 1], ['a\ude00', 2], ['\ude00\ud83d', 2]
  ]
  for (const [s, n] of cases) {
    assert.equal(cpLength(s), n, J(s))
    assert.equal(cpLength(s), [...s].length, `${J(s)} vs for...of`)
  }
})

test('cpToUtf16 and utf16ToCp on emoji, CJK, combining marks, ZWJ families and flags', () => {
  const s = 'a😀漢' + FAMILY + FR + E_ACUTE + 'z'
  // code point offset -> UTF-16 index
  const expected = [
    [0, 0], [1, 1], [2, 3], [3, 4], // a 😀 漢
    [4, 6], [5, 7], [6, 9], [7, 10], [8, 12], // 👨 ZWJ 👩 ZWJ 👧
    [9, 14], [10, 16], // 🇫 🇷
    [11, 17], [12, 18], [13, 19] // e ◌́ z, end
  ]
  assert.equal(s.length, 19)
  assert.equal(cpLength(s), 13)
  for (const [cp, index] of expected) {
    assert.equal(cpToUtf16(s, cp), index, `cpToUtf16(${cp})`)
    assert.equal(utf16ToCp(s, index), cp, `utf16ToCp(${index})`)
  }
  // Inside a surrogate pair rounds down.
  for (const [inside, cp] of [[2, 1], [5, 3], [8, 5], [11, 7], [13, 8], [15, 9]]) {
    assert.equal(utf16ToCp(s, inside), cp, `utf16ToCp(${inside}) inside a pair`)
  }
  // Out of range clamps.
  assert.equal(cpToUtf16(s, -1), 0)
  assert.equal(cpToUtf16(s, 99), s.length)
  assert.equal(utf16ToCp(s, -5), 0)
  assert.equal(utf16ToCp(s, 99), 13)
  assert.equal(cpToUtf16('', 0), 0)
  assert.equal(utf16ToCp('', 0), 0)
  // Lone surrogates are one code point each.
  assert.equal(cpToUtf16('\ud83dx\ude00y', 3), 3)
  assert.equal(utf16ToCp('\ud83dx\ude00y', 3), 3)
})

test('cpToUtf16 and utf16ToCp reject non-strings and non-integers', () => {
  assert.throws(() => cpLength(null), TypeError)
  assert.throws(() => cpToUtf16(42, 0), TypeError)
  assert.throws(() => cpToUtf16('abc', 1.5), TypeError)
  assert.throws(() => utf16ToCp('abc', '1'), TypeError)
  assert.throws(() => utf16ToCp(undefined, 0), TypeError)
})

// ---------------------------------------------------------------------------
// opFromDiff

function check (before, after, hint, want) {
  const op = opFromDiff(before, after, hint)
  const what = `opFromDiff(${J(before)}, ${J(after)}, ${hint})`
  checkOp(op)
  assert.equal(J(normalize(op)), J(op), `${what}: not normalized: ${J(op)}`)
  assert.equal(apply(before, op), after, `${what} = ${J(op)} does not give after`)
  if (want !== undefined) assert.equal(J(op), J(want), what)
  return op
}

test('opFromDiff: plain inserts, deletes and replacements', () => {
  check('', '', undefined, [])
  check('abc', 'abc', undefined, [])
  check('', 'abc', undefined, ['abc'])
  check('abc', '', undefined, [{ d: 3 }])
  check('abc', 'abXc', undefined, [2, 'X'])
  check('abc', 'Xabc', undefined, ['X'])
  check('abc', 'abcX', undefined, [3, 'X'])
  check('abcd', 'ad', undefined, [1, { d: 2 }])
  check('abcd', 'aXYd', undefined, [1, { d: 2 }, 'XY'])
  check('hello world', 'hello brave new world', undefined, [6, 'brave new '])
})

test('opFromDiff: positions count code points before the change', () => {
  check('😀漢a', '😀漢Xa', undefined, [2, 'X'])
  check('😀漢a', '😀漢a🎉', undefined, [3, '🎉'])
  check(FAMILY + 'x', FAMILY + 'yx', undefined, [5, 'y'])
  check(FR + FR, FR + 'x' + FR, undefined, [2, 'x'])
  check(E_ACUTE + 'b', E_ACUTE + '字b', undefined, [2, '字'])
  check('😀😀😀', '😀😀', undefined, [2, { d: 1 }])
})

test('opFromDiff: changes inside emoji sequences never split a surrogate pair', () => {
  // 👨 U+1F468, 👩 U+1F469 and 👦 U+1F466 share their high surrogate: the
  // UTF-16 common prefix ends inside a pair and must be cut back.
  check('😀', '😁', undefined, [{ d: 1 }, '😁'])
  check('a😀b', 'a😁b', undefined, [1, { d: 1 }, '😁'])
  check(FAMILY, '👨\u200d👦\u200d👧', undefined, [2, { d: 1 }, '👦'])
  // Insert, delete and replace in the middle of the ZWJ family.
  check(FAMILY, '👨\u200d🐶\u200d👩\u200d👧', undefined, [2, '🐶\u200d'])
  check(FAMILY, '👨👩\u200d👧', undefined, [1, { d: 1 }])
  check(FAMILY, '👨\u200d👧', undefined, [2, { d: 2 }])
  check(FAMILY, '👨\u200d👩', undefined, [3, { d: 2 }])
  check(FAMILY, '👨\u200d👩\u200d👦', undefined, [4, { d: 1 }, '👦'])
  check(FAMILY, '👩\u200d👩\u200d👧', undefined, [{ d: 1 }, '👩'])
  check(FAMILY, '👨x\u200d👩\u200d👧', undefined, [1, 'x'])
  // Flags: 🇫🇷 → 🇫🇮 changes only the second regional indicator (same high
  // surrogate as the first); inserting between them cuts the flag in code
  // points, never in UTF-16 units.
  check(FR, '🇫🇮', undefined, [1, { d: 1 }, '🇮'])
  check(FR, '🇫x🇷', undefined, [1, 'x'])
  check(FR + JP, FR + '🇯🇵🇯🇵', undefined, [4, '🇯🇵'])
  check(FR + JP, JP, undefined, [{ d: 2 }])
  // Combining marks are code points of their own.
  check(E_ACUTE, 'e\u0300', undefined, [1, { d: 1 }, '\u0300'])
  check(E_ACUTE, 'e', undefined, [1, { d: 1 }])
  check('e', E_ACUTE, undefined, [1, '\u0301'])
  check(A_UML + E_ACUTE, 'a' + E_ACUTE, undefined, [1, { d: 1 }])
  // CJK.
  check('漢字', '漢か字', undefined, [1, 'か'])
  check('漢字かな', '漢な', undefined, [1, { d: 2 }])
  // A pair replaced where both strings differ only in the low surrogate, with
  // a common suffix that also starts with a low surrogate.
  check('😀😀', '😁😀', undefined, [{ d: 1 }, '😁'])
  check('x😀😀', 'x😀😁😀', undefined, [2, '😁'])
})

test('opFromDiff: caretHint places an ambiguous change at the caret', () => {
  // Typing "a" in "aa": the caret after the edit says where.
  check('aa', 'aaa', 1, ['a'])
  check('aa', 'aaa', 2, [1, 'a'])
  check('aa', 'aaa', 3, [2, 'a'])
  check('aa', 'aaa', undefined, [2, 'a']) // no hint: as far right as possible
  // Backspace or delete in "aaa": the caret is where the text was.
  check('aaa', 'aa', 0, [{ d: 1 }])
  check('aaa', 'aa', 1, [1, { d: 1 }])
  check('aaa', 'aa', 2, [2, { d: 1 }])
  // Pasting "ab" in "xab" at 1 or at 3.
  check('xab', 'xabab', 3, [1, 'ab'])
  check('xab', 'xabab', 5, [3, 'ab'])
  // Emoji: the hint is in UTF-16 units, the op in code points.
  check('😀😀', '😀😀😀', 2, ['😀'])
  check('😀😀', '😀😀😀', 4, [1, '😀'])
  check('😀😀', '😀😀😀', 6, [2, '😀'])
  check('😀😀😀', '😀😀', 0, [{ d: 1 }])
  check('😀😀😀', '😀😀', 2, [1, { d: 1 }])
  check(FR, FR + FR, 4, [FR]) // a flag pasted before a flag
  check(FR, FR + FR, 8, [2, FR])
  check(FR + FR, FR, 0, [{ d: 2 }])
  check(FR + FR, FR, 4, [2, { d: 2 }])
  // 🇫🇷🇫🇷 → 🇫🇷 by deleting the middle "🇷🇫": the caret between them says so.
  check(FR + FR, FR, 2, [1, { d: 2 }])
  // Extending the family by ZWJ + 👧: three placements, in code points.
  check(FAMILY, FAMILY + '\u200d👧', 8, [3, '\u200d👧'])
  check(FAMILY, FAMILY + '\u200d👧', 9, [4, '👧\u200d'])
  check(FAMILY, FAMILY + '\u200d👧', 11, [5, '\u200d👧'])
  // A hint inside a surrogate pair, or out of range, still gives a minimal
  // op that keeps pairs whole.
  check('😀😀', '😀😀😀', 3, ['😀'])
  check('😀😀', '😀😀😀', 5, [1, '😀'])
  check('aa', 'aaa', -4, ['a'])
  check('aa', 'aaa', 99, [2, 'a'])
  // The hint never makes the op bigger than the minimal one.
  check('abc', 'abcX', 0, [3, 'X'])
  check('abcdef', 'abXdef', 0, [2, { d: 1 }, 'X'])
  check('😀', '😁', 0, [{ d: 1 }, '😁'])
  // A null hint is no hint.
  check('aa', 'aaa', null, [2, 'a'])
  assert.throws(() => opFromDiff('aa', 'aaa', 1.5), TypeError)
  assert.throws(() => opFromDiff('aa', 5), TypeError)
})

// ---------------------------------------------------------------------------
// Random properties.

function mulberry32 (seed) {
  return function () {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const UNITS = [
  'a', 'b', 'a', 'b', ' ', '\n', '漢', '字', '😀', '😁', '🎉', '𝄞',
  FAMILY, CODER, '👨', '👩', '\u200d', FR, JP, '🇫', '🇷', E_ACUTE, A_UML, '\u0301'
]

test('random: positions map both ways like an Array.from model', () => {
  const rand = mulberry32(11)
  for (let iter = 0; iter < 300; iter++) {
    let s = ''
    for (let n = Math.floor(rand() * 12); n > 0; n--) s += UNITS[Math.floor(rand() * UNITS.length)]
    const cps = Array.from(s)
    assert.equal(cpLength(s), cps.length)
    let index = 0
    for (let cp = 0; cp <= cps.length; cp++) {
      assert.equal(cpToUtf16(s, cp), index, `${J(s)} cp ${cp}`)
      assert.equal(utf16ToCp(s, index), cp, `${J(s)} index ${index}`)
      if (cp < cps.length) {
        if (cps[cp].length === 2) assert.equal(utf16ToCp(s, index + 1), cp, `${J(s)} inside pair at ${index + 1}`)
        index += cps[cp].length
      }
    }
  }
})

// The size of the smallest single-region change, in code points.
function minimalCost (before, after) {
  const b = Array.from(before)
  const a = Array.from(after)
  const min = Math.min(b.length, a.length)
  let pre = 0
  while (pre < min && b[pre] === a[pre]) pre++
  let suf = 0
  while (suf < min - pre && b[b.length - 1 - suf] === a[a.length - 1 - suf]) suf++
  return b.length + a.length - 2 * (pre + suf)
}

function cost (op) {
  let n = 0
  for (const c of op) {
    if (typeof c === 'string') n += Array.from(c).length
    else if (typeof c === 'object') n += c.d
  }
  return n
}

test('random: opFromDiff gives minimal ops, and recovers typed and deleted text at the caret', () => {
  const rand = mulberry32(2024)
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1))
  const text = (lo, hi) => {
    let s = ''
    for (let n = int(lo, hi); n > 0; n--) s += UNITS[Math.floor(rand() * UNITS.length)]
    return s
  }
  for (let iter = 0; iter < 3000; iter++) {
    const before = text(0, 8)
    const b = Array.from(before)
    const p = int(0, b.length)
    const kind = iter % 3
    let after, want
    if (kind === 0) { // typing or pasting at p: the caret ends after the text
      const t = text(1, 3)
      after = b.slice(0, p).join('') + t + b.slice(p).join('')
      want = p > 0 ? [p, t] : [t]
      const caret = cpToUtf16(after, p + Array.from(t).length)
      assert.equal(J(check(before, after, caret)), J(want), `insert ${J(t)} at ${p} in ${J(before)}`)
    } else if (kind === 1 && p < b.length) { // deleting at p: the caret stays at p
      const k = int(1, b.length - p)
      after = b.slice(0, p).join('') + b.slice(p + k).join('')
      want = p > 0 ? [p, { d: k }] : [{ d: k }]
      assert.equal(J(check(before, after, cpToUtf16(after, p))), J(want), `delete ${k} at ${p} in ${J(before)}`)
    } else { // any replacement, any hint (even inside a pair or out of range)
      const k = int(0, b.length - p)
      after = b.slice(0, p).join('') + text(0, 3) + b.slice(p + k).join('')
    }
    for (const hint of [undefined, int(-1, after.length + 1)]) {
      const op = check(before, after, hint)
      assert.equal(cost(op), minimalCost(before, after), `opFromDiff(${J(before)}, ${J(after)}, ${hint}) = ${J(op)} is not minimal`)
    }
  }
})

test('random: long texts (block comparison, sparse and dense surrogates)', () => {
  const rand = mulberry32(99)
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1))
  const runs = ['a'.repeat(300), 'xy'.repeat(200), '漢字'.repeat(150), '😀'.repeat(200), FAMILY, FR, E_ACUTE, 'b']
  const text = (lo, hi) => {
    let s = ''
    for (let n = int(lo, hi); n > 0; n--) s += runs[Math.floor(rand() * runs.length)]
    return s
  }
  for (let iter = 0; iter < 60; iter++) {
    const before = text(2, 12)
    const b = Array.from(before)
    const p = int(0, b.length)
    const k = int(0, Math.min(b.length - p, 600))
    const t = iter % 3 === 0 ? '' : text(0, 2).slice(0, 2 * int(1, 300)).replace(/[\ud800-\udbff]$/, '')
    const after = b.slice(0, p).join('') + t + b.slice(p + k).join('')
    for (const hint of [undefined, cpToUtf16(after, p + Array.from(t).length), int(0, after.length)]) {
      const op = check(before, after, hint)
      assert.equal(cost(op), minimalCost(before, after), `iteration ${iter}: not minimal: ${J(op).slice(0, 200)}`)
    }
    // Positions in long texts map like the model.
    const cps = Array.from(after)
    const at = int(0, cps.length)
    const index = cps.slice(0, at).join('').length
    assert.equal(cpToUtf16(after, at), index)
    assert.equal(utf16ToCp(after, index), at)
    assert.equal(cpLength(after), cps.length)
  }
})
