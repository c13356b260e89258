// Tests of the CodeMirror binding's position conversions (code points ↔
// CodeMirror's UTF-16 changes), in Node with the vendored CodeMirror state
// package. The binding itself runs in the real-browser tests
// (internal/web/browser_codemirror_test.go).
import test from 'node:test'
import assert from 'node:assert/strict'

import { EditorState } from '../static/js/vendor/codemirror.js'
import { opToChanges, changesToOp } from '../static/js/codemirror.js'
import { apply } from '../static/js/ot.js'

const PIECES = ['a', 'b', 'é', '😀', '👍🏽', '中文', '\n', ' ', '🇯🇵', 'e\u0301']

function randomText (n) {
  let s = ''
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(Math.random() * PIECES.length)]
  return s
}

// randomChanges returns up to three non-overlapping CodeMirror changes on
// doc, at UTF-16 positions that never split a surrogate pair.
function randomChanges (doc) {
  const bounds = [0]
  for (let i = 0; i < doc.length; i++) {
    const c = doc.charCodeAt(i)
    if (!(c >= 0xdc00 && c <= 0xdfff)) bounds.push(i)
  }
  bounds.push(doc.length)
  const picks = [...new Set(Array.from({ length: 2 + Math.floor(Math.random() * 5) }, () => bounds[Math.floor(Math.random() * bounds.length)]))].sort((a, b) => a - b)
  const changes = []
  for (let i = 0; i + 1 < picks.length; i += 2) {
    changes.push({ from: picks[i], to: Math.random() < 0.5 ? picks[i] : picks[i + 1], insert: Math.random() < 0.7 ? randomText(1 + Math.floor(Math.random() * 3)) : '' })
  }
  return changes
}

test('changesToOp: a CodeMirror change as an op in code points', () => {
  for (let round = 0; round < 2000; round++) {
    const doc = randomText(Math.floor(Math.random() * 12))
    const tr = EditorState.create({ doc }).update({ changes: randomChanges(doc) })
    const op = changesToOp(doc, tr.changes)
    assert.equal(apply(doc, op), tr.newDoc.toString(), `doc ${JSON.stringify(doc)} op ${JSON.stringify(op)}`)
  }
})

test('opToChanges: an op as CodeMirror changes in UTF-16', () => {
  for (let round = 0; round < 2000; round++) {
    const doc = randomText(Math.floor(Math.random() * 12))
    const want = EditorState.create({ doc }).update({ changes: randomChanges(doc) })
    const op = changesToOp(doc, want.changes)
    const got = EditorState.create({ doc }).update({ changes: opToChanges(doc, op) })
    assert.equal(got.newDoc.toString(), want.newDoc.toString())
  }
  // Deletes that carry their text, and a trailing skip.
  const doc = 'a😀b中c'
  const tr = EditorState.create({ doc }).update({ changes: opToChanges(doc, [1, { d: '😀' }, 'X', 1, { d: 1 }, 1]) })
  assert.equal(tr.newDoc.toString(), 'aXbc')
})

test('changesToOp: lone surrogates are not sent', () => {
  const tr = EditorState.create({ doc: 'ab' }).update({ changes: { from: 1, insert: '\ud83d' } })
  assert.deepEqual(changesToOp('ab', tr.changes), [1, '\ufffd'])
})
