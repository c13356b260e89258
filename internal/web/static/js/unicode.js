// UTF-16 ↔ code point position mapping for editor positions, and the op that
// turns one editor value into another. Browsers index strings in UTF-16 code
// units; Tandem's ops (see ot.js) count Unicode code points. No dependencies.
//
// A lone surrogate (which a JS string can hold) counts as one code point, as
// the iteration of a string by for...of does.

const isHigh = c => c >= 0xd800 && c <= 0xdbff
const isLow = c => c >= 0xdc00 && c <= 0xdfff

function checkString (s, what) {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string, got ${typeof s}`)
}

function checkInt (n, what) {
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new TypeError(`${what} must be an integer, got ${String(n)}`)
}

const SURROGATE = /[\ud800-\udfff]/g

// opFromDiff compares long texts BLOCK UTF-16 units at a time.
const BLOCK = 256

// nextSurrogate returns the index of the first surrogate at or after i in s,
// or s.length: a native regexp search, instant on the one-byte strings V8
// uses for Latin-1 text.
function nextSurrogate (s, i) {
  SURROGATE.lastIndex = i
  return SURROGATE.test(s) ? SURROGATE.lastIndex - 1 : s.length
}

// Code points in s[from, to); to must not split a surrogate pair. Runs
// without surrogates are jumped over; near surrogates it steps, in stretches
// that grow while surrogates stay dense.
function count (s, from, to) {
  let n = 0
  let i = from
  let stretch = 32
  while (i < to) {
    const next = nextSurrogate(s, i)
    if (next >= to) return n + to - i
    stretch = next - i < stretch ? Math.min(stretch * 2, 1 << 16) : 32
    n += next - i
    i = next
    for (let k = stretch; k > 0 && i < to; k--) {
      if (isHigh(s.charCodeAt(i++)) && i < to && isLow(s.charCodeAt(i))) i++
      n++
    }
  }
  return n
}

// splits reports whether UTF-16 index i falls between the two halves of a
// surrogate pair in s.
const splits = (s, i) => i > 0 && i < s.length && isHigh(s.charCodeAt(i - 1)) && isLow(s.charCodeAt(i))

/** cpLength returns the number of code points in s. */
export function cpLength (s) {
  checkString(s, 'text')
  return count(s, 0, s.length)
}

/** cpToUtf16 returns the UTF-16 index of code point offset cp in s. An offset
 * below 0 gives 0, one beyond the end of s gives s.length. */
export function cpToUtf16 (s, cp) {
  checkString(s, 'text')
  checkInt(cp, 'code point offset')
  return advanceCp(s, 0, cp)
}

/** cpBetween returns the number of code points in s between the UTF-16
 * indices from and to (from <= to, neither splitting a surrogate pair). */
export function cpBetween (s, from, to) {
  checkString(s, 'text')
  return count(s, from, to)
}

/** advanceCp returns the UTF-16 index n code points after UTF-16 index i
 * in s (at most s.length). */
export function advanceCp (s, i, n) {
  const len = s.length
  let stretch = 32
  while (n > 0 && i < len) {
    const next = nextSurrogate(s, i)
    if (next - i >= n) return i + n
    stretch = next - i < stretch ? Math.min(stretch * 2, 1 << 16) : 32
    n -= next - i
    i = next
    for (let k = stretch; k > 0 && n > 0 && i < len; k--, n--) {
      if (isHigh(s.charCodeAt(i++)) && i < len && isLow(s.charCodeAt(i))) i++
    }
  }
  return i
}

/** utf16ToCp returns the code point offset of UTF-16 index `index` in s. An
 * index inside a surrogate pair rounds down (to the code point the pair
 * forms); an index below 0 gives 0, one beyond the end of s gives
 * cpLength(s). */
export function utf16ToCp (s, index) {
  checkString(s, 'text')
  checkInt(index, 'UTF-16 index')
  let i = Math.max(0, Math.min(index, s.length))
  if (splits(s, i)) i--
  return count(s, 0, i)
}

/** opFromDiff returns the op (code points, see ot.js) that turns before into
 * after: one region replaced, found by the longest common prefix and suffix,
 * as [skip, {d: count}, "insert"] with the empty parts left out ([] when the
 * strings are equal). Deletes carry their count, not their text.
 *
 * The region never splits a surrogate pair. When the change could be placed
 * in several ways (typing "a" in "aa"), caretHint, the UTF-16 caret position
 * in after (after the edit, as an editor reports it), picks the placement
 * that ends the inserted text at the caret (or, for a pure deletion, puts it
 * at the caret). Without a hint the change goes as far right as it can. The
 * hint never makes the op bigger: it only chooses between minimal ones. */
export function opFromDiff (before, after, caretHint) {
  checkString(before, 'before')
  checkString(after, 'after')
  if (before === after) return []
  const bl = before.length
  const al = after.length
  const minLen = Math.min(bl, al)

  // Longest common prefix, and longest common suffix not limited by it:
  // blocks compared natively first, then unit by unit.
  let prefix = 0
  while (prefix + BLOCK <= minLen && after.startsWith(before.slice(prefix, prefix + BLOCK), prefix)) prefix += BLOCK
  while (prefix < minLen && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++
  let fullSuffix = 0
  while (fullSuffix + BLOCK <= minLen && before.endsWith(after.slice(al - fullSuffix - BLOCK, al - fullSuffix), bl - fullSuffix)) fullSuffix += BLOCK
  while (fullSuffix < minLen && before.charCodeAt(bl - 1 - fullSuffix) === after.charCodeAt(al - 1 - fullSuffix)) fullSuffix++
  const suffix = Math.min(fullSuffix, minLen - prefix)
  const del = bl - prefix - suffix // UTF-16 units replaced in before
  const ins = al - prefix - suffix // and in after

  // Every p in [lo, prefix] places a minimal change at p: before[0, p) and
  // after[0, p) are equal, and so are the remaining suffixes.
  const lo = prefix - (fullSuffix - suffix)
  const ok = p => !splits(before, p) && !splits(after, p) && !splits(before, p + del) && !splits(after, p + ins)
  let target = prefix
  if (caretHint !== undefined && caretHint !== null) {
    checkInt(caretHint, 'caretHint')
    target = Math.max(lo, Math.min(prefix, Math.max(0, Math.min(caretHint, al)) - ins))
  }
  let p = -1
  for (let d = 0; d <= 4 && p < 0; d++) {
    if (target - d >= lo && ok(target - d)) p = target - d
    else if (d > 0 && target + d <= prefix && ok(target + d)) p = target + d
  }
  let s
  if (p >= 0) {
    s = prefix + suffix - p
  } else {
    // No minimal placement keeps surrogate pairs whole (the strings differ
    // inside a pair, "😀" → "😁"): widen the region to whole code points.
    p = target
    s = prefix + suffix - p
    while (splits(before, p) || splits(after, p)) p--
    while (splits(before, bl - s) || splits(after, al - s)) s--
  }

  const op = []
  const skip = count(before, 0, p)
  if (skip > 0) op.push(skip)
  const deleted = count(before, p, bl - s)
  if (deleted > 0) op.push({ d: deleted })
  if (al - s > p) op.push(after.slice(p, al - s))
  return op
}

/** caretAfter returns the UTF-16 position in newValue just after the last
 * change op makes (where a caret goes after an undo or redo). */
export function caretAfter (newValue, op) {
  let pos = 0 // code points of the new document
  let end = 0
  for (const c of op) {
    if (typeof c === 'number') pos += c
    else if (typeof c === 'string') {
      pos += [...c].length
      end = pos
    } else end = pos
  }
  return cpToUtf16(newValue, end)
}
