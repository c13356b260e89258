// Tests of the document types behind the client (internal/web/static/js/doctypes.js):
// the rich diff (what a text hello rebases pending edits against, and what
// local storage writes) turns a into b exactly, and a rebase through it
// converges. Run: node --test internal/web/jstest/
import test from 'node:test'
import assert from 'node:assert/strict'

import { plain, rich, lookup } from '../static/js/doctypes.js'
import * as R from '../static/js/rich.js'

const ALPHABET = ['a', 'b', 'c', 'é', '😀', '👍🏽', '中', '\n', ' ', '\ufffc']
const FORMATS = [{ bold: true }, { italic: true }, { bold: null }, { link: 'https://example.com/' }, { header: 1 }, { list: 'bullet' }]

// A small seeded generator: the same cases every run.
function rng (seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
}

function randomEdit (doc, rnd) {
  const len = R.length(doc)
  const pos = Math.floor(rnd() * (len + 1))
  const lead = pos > 0 ? [{ retain: pos }] : []
  const x = rnd()
  if (len > pos && x < 0.3) return [...lead, { delete: 1 + Math.floor(rnd() * Math.min(3, len - pos)) }]
  if (len > pos && x < 0.55) return [...lead, { retain: 1 + Math.floor(rnd() * Math.min(6, len - pos)), attributes: FORMATS[Math.floor(rnd() * FORMATS.length)] }]
  if (x < 0.62) return [...lead, { insert: { image: `https://example.com/${Math.floor(rnd() * 3)}.png` } }]
  let s = ''
  for (let i = 1 + Math.floor(rnd() * 3); i > 0; i--) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)]
  const c = { insert: s }
  if (rnd() < 0.4) c.attributes = { ...FORMATS[Math.floor(rnd() * 2)] }
  return [...lead, c]
}

test('lookup', () => {
  assert.equal(lookup('plain'), plain)
  assert.equal(lookup('rich'), rich)
  assert.equal(lookup('html'), null)
  assert.equal(plain.field, 'text')
  assert.equal(rich.field, 'delta')
})

test('rich diff: exact, small, and a rebase through it converges', () => {
  const rnd = rng(7)
  for (let i = 0; i < 3000; i++) {
    let a = [{ insert: 'start\n' }]
    for (let k = 0; k < 6; k++) a = R.apply(a, randomEdit(a, rnd))
    let b = a
    let c = a
    for (let k = 0; k < 3; k++) b = R.apply(b, randomEdit(b, rnd))
    for (let k = 0; k < 3; k++) c = R.apply(c, randomEdit(c, rnd))
    const D = rich.diff(a, b)
    assert.deepEqual(R.apply(a, D), b, `diff(${JSON.stringify(a)}, ${JSON.stringify(b)}) = ${JSON.stringify(D)}`)
    assert.deepEqual(rich.diff(a, a), [])
    const P = rich.diff(a, c)
    assert.deepEqual(R.apply(a, P), c)
    // What docstate.js's rebase does: the pending edits P against the
    // server's change D, both ways, meet.
    const x = R.apply(b, R.transform(P, D, 'left'))
    const y = R.apply(c, R.transform(D, P, 'right'))
    assert.deepEqual(x, y)
  }
})

test('rich diff of a long document with one keystroke: one retain and the insert', () => {
  const doc = []
  for (let i = 0; i < 500; i++) doc.push({ insert: `line ${i} ` }, { insert: 'bold', attributes: { bold: true } }, { insert: '\n' })
  const a = R.normalize(doc)
  const at = 1234
  const b = R.apply(a, [{ retain: at }, { insert: 'x' }])
  const D = rich.diff(a, b)
  assert.equal(D.length, 2)
  assert.equal(D[0].retain, at)
  assert.deepEqual(R.apply(a, D), b)
})

test('typing shapes (undo merges typing)', () => {
  assert.deepEqual(rich.typing([{ retain: 3 }, { insert: 'x', attributes: { bold: true } }]), { kind: 'insert', pos: 3, text: 'x' })
  assert.deepEqual(rich.typing([{ delete: 1 }]), { kind: 'delete', pos: 0 })
  assert.equal(rich.typing([{ retain: 3, attributes: { bold: true } }]), null)
  assert.deepEqual(plain.typing([3, '😀']), { kind: 'insert', pos: 3, text: '😀' })
  assert.equal(plain.lengthChange([2, 'ab', { d: 3 }]), -1)
  assert.equal(rich.lengthChange([{ retain: 2 }, { insert: 'ab' }, { insert: { image: 'x' } }, { delete: 1 }]), 2)
})
