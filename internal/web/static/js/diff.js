// A line-then-character diff of two texts as an op (code points, ot.js):
// what the client rebases pending edits against when the server sends a
// whole text instead of ops (client.js, "Text hellos").

import { normalize } from './ot.js'
import { cpLength, opFromDiff } from './unicode.js'

// lines splits s into lines, each with its '\n'.
function lines (s) {
  const out = []
  let i = 0
  while (i < s.length) {
    const j = s.indexOf('\n', i)
    if (j < 0) { out.push(s.slice(i)); break }
    out.push(s.slice(i, j + 1))
    i = j + 1
  }
  return out
}

// myers returns the edit script between arrays a and b as a list of
// [kind, count] with kind '=', '-' or '+', or null when more than maxD
// differences would be needed.
function myers (a, b, maxD) {
  const n = a.length
  const m = b.length
  const max = Math.min(n + m, maxD)
  const off = max + 1
  let v = new Int32Array(2 * max + 3)
  const trace = []
  let found = -1
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice())
    for (let k = -d; k <= d; k += 2) {
      let x
      if (k === -d || (k !== d && v[off + k - 1] < v[off + k + 1])) x = v[off + k + 1]
      else x = v[off + k - 1] + 1
      let y = x - k
      while (x < n && y < m && a[x] === b[y]) { x++; y++ }
      v[off + k] = x
      if (x >= n && y >= m) { found = d; break }
    }
    if (found >= 0) break
  }
  if (found < 0) return null
  v = null
  // Walk back.
  const steps = []
  let x = n
  let y = m
  for (let d = found; d > 0; d--) {
    const vd = trace[d] // v before round d
    const k = x - y
    let prevK
    if (k === -d || (k !== d && vd[off + k - 1] < vd[off + k + 1])) prevK = k + 1
    else prevK = k - 1
    const prevX = vd[off + prevK]
    const prevY = prevX - prevK
    while (x > prevX && y > prevY) { steps.push('='); x--; y-- }
    if (x === prevX) { steps.push('+'); y-- } else { steps.push('-'); x-- }
  }
  while (x > 0 && y > 0) { steps.push('='); x--; y-- }
  steps.reverse()
  const out = []
  for (const s of steps) {
    if (out.length > 0 && out[out.length - 1][0] === s) out[out.length - 1][1]++
    else out.push([s, 1])
  }
  return out
}

/** diffOp returns an op turning a into b: a line diff (Myers, bounded), each
 * changed block refined to its minimal character change, so that unrelated
 * changes far apart stay separate. Falls back to one replaced region
 * (unicode.opFromDiff) for very different texts. */
export function diffOp (a, b) {
  if (a === b) return []
  const la = lines(a)
  const lb = lines(b)
  let pre = 0
  while (pre < la.length && pre < lb.length && la[pre] === lb[pre]) pre++
  let suf = 0
  while (suf < la.length - pre && suf < lb.length - pre && la[la.length - 1 - suf] === lb[lb.length - 1 - suf]) suf++
  const ma = la.slice(pre, la.length - suf)
  const mb = lb.slice(pre, lb.length - suf)
  const script = (ma.length === 0 || mb.length === 0) ? null : myers(ma, mb, 400)
  const out = []
  const skip = s => { const n = cpLength(s); if (n > 0) out.push(n) }
  const change = (x, y) => {
    if (x === y) { skip(x); return }
    const sub = opFromDiff(x, y)
    out.push(...sub)
    let consumed = 0
    for (const c of sub) {
      if (typeof c === 'number') consumed += c
      else if (typeof c === 'object') consumed += typeof c.d === 'number' ? c.d : cpLength(c.d)
    }
    const rest = cpLength(x) - consumed
    if (rest > 0) out.push(rest)
  }
  skip(la.slice(0, pre).join(''))
  if (script === null) {
    change(ma.join(''), mb.join(''))
  } else {
    let i = 0
    let j = 0
    for (let s = 0; s < script.length; s++) {
      const [kind, count] = script[s]
      if (kind === '=') {
        skip(ma.slice(i, i + count).join(''))
        i += count
        j += count
        continue
      }
      // A run of deletions and insertions between equal runs.
      let del = 0
      let ins = 0
      while (s < script.length && script[s][0] !== '=') {
        if (script[s][0] === '-') del += script[s][1]
        else ins += script[s][1]
        s++
      }
      s--
      change(ma.slice(i, i + del).join(''), mb.slice(j, j + ins).join(''))
      i += del
      j += ins
    }
  }
  return normalize(out)
}
