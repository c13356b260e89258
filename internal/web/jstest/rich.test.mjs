// Tests for internal/web/static/js/rich.js: node --test internal/web/jstest/
//
// - the cases of ot/rich/testdata/vectors.json, computed by the Go type
//   (which TestAgainstRichText holds to npm rich-text 4.1.0): apply,
//   transform both ways, compose, invert and both cursor transforms must
//   give the same JSON;
// - toQuill/fromQuill round trips over emoji and embeds;
// - rejection of malformed ops with the Go type's codes.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import * as rich from '../static/js/rich.js'

const J = JSON.stringify

function deepFreeze (x) {
  if (x !== null && typeof x === 'object') {
    for (const v of Object.values(x)) deepFreeze(v)
    Object.freeze(x)
  }
  return x
}

const vectors = JSON.parse(readFileSync(new URL('../../../ot/rich/testdata/vectors.json', import.meta.url), 'utf8'))

test('the Go type\'s vectors', () => {
  assert.ok(vectors.length >= 100)
  for (const [i, v] of vectors.entries()) {
    const { doc, a, b, pos } = deepFreeze(v)
    const ctx = `case ${i}: doc ${J(doc)} a ${J(a)} b ${J(b)}`
    assert.equal(J(rich.apply(doc, a)), J(v.applyA), `apply: ${ctx}`)
    assert.equal(J(rich.transform(a, b, 'left')), J(v.left), `transform left: ${ctx}`)
    assert.equal(J(rich.transform(a, b, 'right')), J(v.right), `transform right: ${ctx}`)
    const b2 = rich.transform(b, a, 'right')
    assert.equal(J(rich.compose(a, b2)), J(v.compose), `compose: ${ctx}`)
    assert.equal(J(rich.invert(a, doc)), J(v.invert), `invert: ${ctx}`)
    assert.equal(rich.transformPosition(pos, a, 'right'), v.cursorOwn, `cursor own: ${ctx}`)
    assert.equal(rich.transformPosition(pos, a, 'left'), v.cursorOther, `cursor other: ${ctx}`)
    // Convergence both ways.
    const left = rich.apply(rich.apply(doc, b), rich.transform(a, b, 'left'))
    const right = rich.apply(rich.apply(doc, a), rich.transform(b, a, 'right'))
    assert.equal(J(left), J(right), `convergence: ${ctx}`)
  }
})

test('toQuill and fromQuill convert at the editor\'s edge', () => {
  const doc = deepFreeze([{ insert: 'a😀b' }, { insert: { image: 'https://x/i.png' } }, { insert: '🇫🇷\n' }])
  const op = deepFreeze([{ retain: 1 }, { delete: 1 }, { retain: 2, attributes: { bold: true } }, { insert: '漢' }, { delete: 2 }])
  const q = rich.toQuill(op, doc)
  assert.equal(J(q), J([{ retain: 1 }, { delete: 2 }, { retain: 2, attributes: { bold: true } }, { insert: '漢' }, { delete: 4 }]))
  assert.equal(J(rich.fromQuill(q, doc)), J(op))
  assert.throws(() => rich.fromQuill([{ retain: 2 }], doc), { code: 'bad_component' }) // inside 😀
})

test('malformed ops are refused with the Go type\'s codes', () => {
  const cases = [
    [{}, 'bad_json'],
    [[{ retain: 0 }], 'empty_component'],
    [[{ insert: '' }], 'empty_component'],
    [[{ retain: 1.5 }], 'bad_component'],
    [[{ retain: 1, delete: 1 }], 'bad_component'],
    [[{ delete: 1, attributes: { bold: true } }], 'bad_component'],
    [[{ insert: 'a', attributes: { bold: null } }], 'null_in_insert'],
    [[{ insert: {} }], 'bad_embed'],
    [[{ insert: { a: 1, b: 2 } }], 'bad_embed'],
    [[{ insert: 'a', attributes: { x: [1] } }], 'bad_attribute'],
    [[{ insert: 'a', attributes: { '': true } }], 'bad_attribute'],
    [[{ insert: '\ud83d' }], 'bad_component']
  ]
  for (const [op, code] of cases) assert.throws(() => rich.normalize(op), { code }, J(op))
  assert.throws(() => rich.apply([{ insert: 'ab' }], [{ retain: 3, attributes: { bold: true } }]), { code: 'past_end' })
  assert.throws(() => rich.apply([{ retain: 1 }], []), { code: 'not_document' })
})
