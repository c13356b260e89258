// Tests of internal/web/static/js/textarea.js in Node: its pure functions, and
// bindTextarea driven through a minimal fake <textarea> (no overlay: the
// overlay needs layout, which the browser tests cover) with a real client
// against the fake server.
import test from 'node:test'
import assert from 'node:assert/strict'

import { bindTextarea, mapSelection, inputOp, caretAfter, cpToUtf16Many, wellFormed, peerColor, peerLabel } from '../static/js/textarea.js'
import { connect } from '../static/js/client.js'
import { apply } from '../static/js/ot.js'
import { FakeServer } from './fake-server.mjs'

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
async function waitFor (what, cond, timeout = 3000) {
  const deadline = Date.now() + timeout
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

test('mapSelection moves the caret through others\' edits, in UTF-16 units', () => {
  const old = 'a😀b|c'
  const caret = { start: 4, end: 4, direction: 'none' } // before "|" (😀 is 2 units)
  // Insert before the caret: it moves.
  let s = mapSelection(old, 'xx' + old, ['xx'], caret)
  assert.deepEqual(s, { start: 6, end: 6, direction: 'none' })
  // Insert exactly at the caret: the caret stays before it.
  s = mapSelection(old, 'a😀bZ|c', [3, 'Z'], caret)
  assert.deepEqual(s, { start: 4, end: 4, direction: 'none' })
  // Emoji inserted before: two units.
  s = mapSelection(old, '👍🏽' + old, ['👍🏽'], caret)
  assert.deepEqual(s, { start: 8, end: 8, direction: 'none' })
  // A backward selection stays backward; deleting inside shrinks it.
  s = mapSelection('0123456789', '01236789', [4, { d: 2 }], { start: 2, end: 8, direction: 'backward' })
  assert.deepEqual(s, { start: 2, end: 6, direction: 'backward' })
  // A range does not grow from inserts at its edges.
  s = mapSelection('abcd', 'aXbcYd', [1, 'X', 2, 'Y'], { start: 1, end: 3, direction: 'forward' })
  assert.deepEqual(s, { start: 2, end: 4, direction: 'forward' })
})

test('inputOp uses the caret to place ambiguous typing', () => {
  assert.deepEqual(inputOp('aa', 'aaa', 1), ['a'])
  assert.deepEqual(inputOp('aa', 'aaa', 3), [2, 'a'])
  assert.deepEqual(inputOp('a😀', 'a😀😀', 3), [1, '😀'])
  assert.deepEqual(inputOp('abc', 'ac', 1), [1, { d: 1 }])
})

test('caretAfter, cpToUtf16Many, wellFormed, peer labels', () => {
  assert.equal(caretAfter('xy😀z', [2, '😀']), 4)
  assert.equal(caretAfter('abc', [1, { d: 2 }]), 1)
  assert.equal(caretAfter('a', []), 0)
  const m = cpToUtf16Many('a😀b👍🏽c', [0, 1, 2, 3, 4, 5, 6, 99])
  assert.deepEqual([...m.entries()].sort((x, y) => x[0] - y[0]), [[0, 0], [1, 1], [2, 3], [3, 4], [4, 6], [5, 8], [6, 9], [99, 9]])
  assert.equal(wellFormed('a\ud83db'), 'a\ufffdb')
  assert.equal(wellFormed('a😀b'), 'a😀b')
  assert.equal(peerColor({ color: '#abc' }), '#abc')
  assert.match(peerColor({ color: 'url(x)', client: 'c1' }), /^#/)
  assert.equal(peerLabel({ name: '', user: 'u' }), 'u')
  assert.equal(peerLabel({}), 'Anonymous')
})

// ----- a fake DOM: just what bindTextarea uses without an overlay

class FakeTarget {
  constructor () { this.listeners = new Map() }
  addEventListener (type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set())
    this.listeners.get(type).add(fn)
  }

  removeEventListener (type, fn) { this.listeners.get(type)?.delete(fn) }
  dispatch (type, props = {}) {
    const e = { type, defaultPrevented: false, preventDefault () { this.defaultPrevented = true }, ...props }
    for (const fn of [...(this.listeners.get(type) || [])]) fn(e)
    return e
  }
}

class FakeTextarea extends FakeTarget {
  constructor (doc) {
    super()
    this.ownerDocument = doc
    this._value = ''
    this.selectionStart = this.selectionEnd = 0
    this.selectionDirection = 'none'
    this.scrollTop = this.scrollLeft = 0
    this.valueWrites = 0
  }

  get value () { return this._value }
  set value (v) {
    // As browsers do: line breaks normalized, caret to the end, scroll reset.
    this._value = String(v).replace(/\r\n?/g, '\n')
    this.selectionStart = this.selectionEnd = this._value.length
    this.scrollTop = 0
    this.valueWrites++
  }

  setSelectionRange (s, e, dir = 'none') {
    const n = this._value.length
    this.selectionStart = Math.min(s, n)
    this.selectionEnd = Math.max(this.selectionStart, Math.min(e, n))
    this.selectionDirection = dir
  }

  focus () { this.ownerDocument.activeElement = this }

  // type replaces the selection with text, as a user's keystroke does.
  type (text, { composing = false } = {}) {
    const v = this._value
    this._value = v.slice(0, this.selectionStart) + text + v.slice(this.selectionEnd)
    this.selectionStart = this.selectionEnd = this.selectionStart + text.length
    this.dispatch('input', { isComposing: composing })
  }

  backspace () {
    const v = this._value
    if (this.selectionStart === this.selectionEnd) {
      const n = this.selectionStart >= 2 && /[\udc00-\udfff]/.test(v[this.selectionStart - 1]) ? 2 : 1
      this._value = v.slice(0, this.selectionStart - n) + v.slice(this.selectionEnd)
      this.selectionStart = this.selectionEnd = this.selectionStart - n
    } else {
      this._value = v.slice(0, this.selectionStart) + v.slice(this.selectionEnd)
      this.selectionEnd = this.selectionStart
    }
    this.dispatch('input', {})
  }
}

class FakeDocument extends FakeTarget {
  constructor () {
    super()
    this.activeElement = null
    this.defaultView = undefined
  }
}

async function setup (text = '') {
  const server = new FakeServer()
  server.createDoc('t', text)
  const opts = { WebSocket: server.WebSocket, minBackoff: 2, maxBackoff: 20, selectionThrottle: 1 }
  const a = connect('http://x', 't', { ...opts, name: 'A' })
  const b = connect('http://x', 't', { ...opts, name: 'B' })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  const doc = new FakeDocument()
  const ta = new FakeTextarea(doc)
  ta.focus()
  const unbind = bindTextarea(a, ta, {})
  const settled = () => waitFor('settled', () => a.pending === 0 && b.pending === 0 && a.rev === server.doc('t').durableRev && b.rev === a.rev && server.doc('t').unsent.length === 0)
  const done = () => { unbind(); a.close(); b.close() }
  return { server, a, b, ta, doc, settled, done }
}

test('typing becomes ops; others\' edits keep the caret and the scroll', async () => {
  const { a, b, ta, settled, done } = await setup('hello world')
  assert.equal(ta.value, 'hello world')
  ta.setSelectionRange(5, 5)
  ta.type(',')
  ta.type(' dear')
  assert.equal(a.text, 'hello, dear world')
  await settled()
  assert.equal(b.text, 'hello, dear world')
  // b edits before and after a's caret.
  ta.scrollTop = 40
  b.edit(['😀 '])
  b.edit([19, '!'])
  await settled()
  assert.equal(ta.value, '😀 hello, dear world!')
  assert.equal(ta.selectionStart, 14) // 11 + 3 UTF-16 units ("😀 ")
  assert.equal(ta.selectionEnd, 14)
  assert.equal(ta.scrollTop, 40)
  // Typing after the emoji counts code points.
  ta.type('X')
  assert.equal(a.text, '😀 hello, dearX world!')
  await settled()
  assert.equal(b.text, a.text)
  // A selection range survives an insert inside it (and grows).
  ta.setSelectionRange(3, 8, 'backward')
  b.edit([4, '--'])
  await settled()
  assert.equal(ta.value, '😀 he--llo, dearX world!')
  assert.deepEqual([ta.selectionStart, ta.selectionEnd, ta.selectionDirection], [3, 10, 'backward'])
  done()
})

test('the local selection reaches the others', async () => {
  const { a, b, ta, doc, settled, done } = await setup('abc😀def')
  ta.setSelectionRange(2, 5, 'forward')
  doc.dispatch('selectionchange')
  await waitFor('b sees a', () => b.peers.get(a.client)?.sel.length === 1)
  assert.deepEqual(b.peers.get(a.client).sel, [{ anchor: 2, head: 4 }])
  ta.setSelectionRange(1, 1)
  ta.dispatch('keyup')
  await waitFor('b sees a move', () => b.peers.get(a.client).sel[0].head === 1)
  await settled()
  done()
})

test('composition: nothing is sent until it ends; others\' edits wait and merge', async () => {
  const { a, b, ta, settled, done } = await setup('ab')
  ta.setSelectionRange(1, 1)
  ta.dispatch('compositionstart')
  ta.type('n', { composing: true })
  ta.type('i', { composing: true })
  assert.equal(a.text, 'ab')
  b.edit(['<'])
  b.edit([3, '>'])
  await waitFor('a has b\'s edits', () => a.text === '<ab>')
  assert.equal(ta.value, 'anib') // not touched during the composition
  // The IME replaces its text with the result.
  ta.setSelectionRange(1, 3)
  ta.type('你', { composing: true })
  ta.dispatch('compositionend')
  assert.equal(a.text, '<a你b>')
  assert.equal(ta.value, '<a你b>')
  assert.equal(ta.selectionStart, 3)
  await settled()
  assert.equal(b.text, '<a你b>')
  done()
})

test('undo and redo keys go to the client, the caret follows', async () => {
  const { a, b, ta, settled, done } = await setup('')
  for (const ch of 'hi there') ta.type(ch)
  await settled()
  b.edit(['> '])
  await settled()
  ta.setSelectionRange(0, 0)
  const e = ta.dispatch('keydown', { key: 'z', ctrlKey: true })
  assert.ok(e.defaultPrevented)
  assert.equal(a.text, '> ')
  assert.equal(ta.value, '> ')
  ta.dispatch('keydown', { key: 'Z', ctrlKey: true, shiftKey: true })
  assert.equal(ta.value, '> hi there')
  assert.equal(ta.selectionStart, 10)
  const e2 = ta.dispatch('beforeinput', { inputType: 'historyUndo' })
  assert.ok(e2.defaultPrevented)
  assert.equal(ta.value, '> ')
  await settled()
  assert.equal(b.text, '> ')
  done()
})

test('backspace over an emoji deletes one code point', async () => {
  const { a, ta, settled, done } = await setup('x😀y')
  ta.setSelectionRange(3, 3)
  ta.backspace()
  assert.equal(a.text, 'xy')
  await settled()
  done()
})

test('lone surrogates never reach an op; CRLF text is normalized by an edit', async () => {
  const { a, b, ta, settled, done } = await setup('a\r\nb')
  // The textarea cannot hold \r: the binding makes the document match it
  // (not an undo step).
  assert.equal(ta.value, 'a\nb')
  assert.equal(a.text, 'a\nb')
  assert.equal(a.undo(), false)
  await settled()
  assert.equal(b.text, 'a\nb')
  ta.setSelectionRange(3, 3)
  ta.type('\ud83d')
  assert.equal(a.text, 'a\nb\ufffd')
  assert.equal(ta.value, 'a\nb\ufffd')
  await settled()
  done()
})

test('only a changed value is written', async () => {
  const { b, ta, settled, done } = await setup('abc')
  const writes = ta.valueWrites
  b.setSelection([{ anchor: 1, head: 1 }])
  await sleep(20)
  assert.equal(ta.valueWrites, writes)
  b.edit(['x'])
  await settled()
  assert.equal(ta.valueWrites, writes + 1)
  assert.equal(apply('abc', ['x']), ta.value)
  done()
})
