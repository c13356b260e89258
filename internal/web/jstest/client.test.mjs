// Tests of the browser client (internal/web/static/js/client.js) against an in-process
// fake of the server (fake-server.mjs). Run: node --test internal/web/jstest/
import test from 'node:test'
import assert from 'node:assert/strict'

import { connect, wsUrl, diffOp } from '../static/js/client.js'
import { apply, transformSelection } from '../static/js/ot.js'
import { cpLength } from '../static/js/unicode.js'
import * as rich from '../static/js/rich.js'
import { FakeServer, MemoryStorage, sourceOf } from './fake-server.mjs'

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (what, cond, timeout = 3000) {
  const deadline = Date.now() + timeout
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

const FAST = { minBackoff: 2, maxBackoff: 20, selectionThrottle: 5, rateLimitPause: 10, storageFullPause: 10, persistDelay: 5 }

function open (server, doc, opts = {}) {
  const log = []
  const c = connect('http://tandem.test', doc, { WebSocket: server.WebSocket, ...FAST, trace: (what, detail) => log.push([what, detail]), ...opts })
  c.log = log
  c.verdicts = () => log.filter(([w]) => w === 'verdict').map(([, d]) => d)
  c.errors = []
  c.on('error', e => c.errors.push(e))
  return c
}

function settled (server, docId, clients) {
  const d = server.doc(docId)
  return clients.every(c => c.status === 'connected' && c.pending === 0 && c.rev === d.durableRev && d.unsent.length === 0)
}

async function settle (server, docId, clients, timeout = 5000) {
  await waitFor('clients to settle', () => settled(server, docId, clients), timeout)
  const d = server.doc(docId)
  for (const c of clients) assert.deepEqual(c.doc, d.durable, `client ${c.client} diverged`)
}

// insertAt and deleteAt build ops in code points.
const insertAt = (pos, s) => pos > 0 ? [pos, s] : [s]
const deleteAt = (pos, n) => pos > 0 ? [pos, { d: n }] : [{ d: n }]

const ALPHABET = ['a', 'b', 'c', 'é', '😀', '👍🏽', '中', '\n', ' ']
function randomEdit (text) {
  const len = cpLength(text)
  if (len > 0 && Math.random() < 0.35) {
    const pos = Math.floor(Math.random() * len)
    return deleteAt(pos, 1 + Math.floor(Math.random() * Math.min(3, len - pos)))
  }
  let s = ''
  for (let i = 1 + Math.floor(Math.random() * 3); i > 0; i--) s += ALPHABET[Math.floor(Math.random() * ALPHABET.length)]
  return insertAt(Math.floor(Math.random() * (len + 1)), s)
}

// randomRichEdit types (with formatting), deletes, formats a range or
// inserts an embed in a rich document.
const FORMATS = [{ bold: true }, { italic: true }, { bold: null }, { link: 'https://example.com/' }, { header: 1 }, { list: 'bullet' }, { color: '#e11d48' }]
function randomRichEdit (doc) {
  const len = rich.length(doc)
  const pos = Math.floor(Math.random() * (len + 1))
  const lead = pos > 0 ? [{ retain: pos }] : []
  const x = Math.random()
  if (len > pos && x < 0.3) return [...lead, { delete: 1 + Math.floor(Math.random() * Math.min(3, len - pos)) }]
  if (len > pos && x < 0.55) return [...lead, { retain: 1 + Math.floor(Math.random() * Math.min(6, len - pos)), attributes: FORMATS[Math.floor(Math.random() * FORMATS.length)] }]
  if (x < 0.6) return [...lead, { insert: { image: 'https://example.com/i.png' } }]
  let s = ''
  for (let i = 1 + Math.floor(Math.random() * 3); i > 0; i--) s += ALPHABET[Math.floor(Math.random() * ALPHABET.length)]
  const c = { insert: s }
  if (Math.random() < 0.4) c.attributes = { ...FORMATS[Math.floor(Math.random() * 2)] }
  return [...lead, c]
}

// Every record in the server's log is unique by (src, seq).
function assertExactlyOnce (server, docId) {
  const seen = new Set()
  for (const r of server.doc(docId).log) {
    const k = `${r.src} ${r.seq}`
    assert.ok(!seen.has(k), `op ${k} committed twice`)
    seen.add(k)
  }
}

test('wsUrl', () => {
  assert.equal(wsUrl('http://h:8080', 'abc', { src: 's', rev: 3, user: '', name: 'Ann Lee' }), 'ws://h:8080/api/docs/abc/ws?src=s&rev=3&name=Ann+Lee')
  assert.equal(wsUrl('https://h/prefix/', 'a b', {}), 'wss://h/prefix/api/docs/a%20b/ws')
  assert.equal(wsUrl('http://h', 'x', { rev: 0 }), 'ws://h/api/docs/x/ws?rev=0')
})

test('diffOp keeps distant changes apart', () => {
  const a = 'one\ntwo\nthree\nfour\nfive\n'
  const b = 'ONE\ntwo\nthree\nfour\nfive!\n'
  const op = diffOp(a, b)
  assert.equal(apply(a, op), b)
  // Two separate regions, not one replacing the whole middle.
  assert.deepEqual(op, [{ d: 3 }, 'ONE', 20, '!'])
  for (let i = 0; i < 300; i++) {
    let x = ''
    let y = ''
    for (let j = 0; j < 20; j++) {
      const line = ALPHABET[Math.floor(Math.random() * ALPHABET.length)].repeat(1 + (j % 3)) + '\n'
      if (Math.random() < 0.8) x += line
      if (Math.random() < 0.8) y += Math.random() < 0.2 ? '😀' + line : line
    }
    assert.equal(apply(x, diffOp(x, y)), y)
  }
})

test('a rich-text document: a plain client says so and stops, no reconnect loop', async () => {
  const server = new FakeServer()
  server.createDoc('r', '', '', 'rich')
  const a = open(server, 'r', { name: 'A', type: 'plain' })
  const errors = []
  a.on('error', e => errors.push(e))
  await waitFor('closed', () => a.status === 'closed')
  assert.equal(errors.length, 1)
  assert.equal(errors[0].code, 'unsupported_type')
  assert.match(errors[0].message, /rich document/)
  // Closed for good: no timer left that could reconnect.
  assert.equal(a._timers.size, 0, 'it must not reconnect')
})

test('a client without a type takes the one the hello announces', async () => {
  const server = new FakeServer()
  server.createDoc('r', [{ insert: 'Hello\n' }], '', 'rich')
  const a = open(server, 'r')
  assert.equal(a.type, 'plain') // until the hello
  await waitFor('connected', () => a.status === 'connected')
  assert.equal(a.type, 'rich')
  assert.deepEqual(a.doc, [{ insert: 'Hello\n' }])
  a.edit([{ retain: 5, attributes: { bold: true } }])
  await settle(server, 'r', [a])
  assert.deepEqual(server.doc('r').durable, [{ insert: 'Hello', attributes: { bold: true } }, { insert: '\n' }])
  assert.throws(() => a.edit([{ retain: 99 }, { insert: 'x' }]), e => e.code === 'past_end')
  a.close()
  assert.throws(() => open(server, 'r', { type: 'html' }), /unknown document type/)
})

test('two clients converge; frames may be batched', async () => {
  const server = new FakeServer()
  server.createDoc('d', 'hello')
  const a = open(server, 'd', { name: 'A' })
  const b = open(server, 'd', { name: 'B' })
  const statuses = []
  a.on('status', s => statuses.push(s))
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  assert.equal(a.text, 'hello')
  assert.equal(a.rev, 0)
  assert.deepEqual(statuses, ['connected'])
  let synced = 0
  a.on('synced', () => synced++)
  const remote = []
  b.on('text', (t, info) => { if (info.remote) remote.push(info.op) })
  a.edit([5, ' world'])
  assert.equal(a.text, 'hello world')
  assert.equal(a.pending, 1)
  a.edit([{ d: 1 }, 'H'])
  a.edit([11, '!'])
  assert.equal(a.pending, 3)
  b.edit(['>> '])
  await settle(server, 'd', [a, b])
  assert.equal(a.text, '>> Hello world!')
  assert.ok(synced >= 1)
  assert.ok(remote.length >= 1)
  // a sent at most 2 ops: one in flight, the others composed into one.
  assert.ok(server.doc('d').log.filter(r => r.client === a.client).length <= 2)
  assert.ok(server.stats.ops <= 3)
  a.close()
  b.close()
  assert.equal(a.status, 'closed')
})

for (const [type, start, randomOp] of [['plain', 'start\n', randomEdit], ['rich', [{ insert: 'start\n' }], randomRichEdit]]) {
test(`convergence with random edits, disconnects, lost acks and text hellos (${type})`, async t => {
  const server = new FakeServer({ commitDelay: () => Math.floor(Math.random() * 4) })
  server.createDoc('r', start, '', type)
  const clients = []
  for (let i = 0; i < 4; i++) clients.push(open(server, 'r', { name: `u${i}`, type }))
  await waitFor('connected', () => clients.every(c => c.status === 'connected'))
  server.onOp = () => {
    const x = Math.random()
    if (x < 0.04) return 'drop-before'
    if (x < 0.08) return 'drop-after'
  }
  const deadline = Date.now() + 2500
  let edits = 0
  while (Date.now() < deadline) {
    for (const c of clients) {
      if (Math.random() < 0.7) {
        c.edit(randomOp(c.doc))
        edits++
      }
      if (Math.random() < 0.1) c.setSelection([{ anchor: 0, head: Math.floor(Math.random() * (c._s.len + 1)) }])
    }
    const x = Math.random()
    const d = server.doc('r')
    if (x < 0.03) {
      const conns = [...d.clients.values()]
      if (conns.length > 0) server.kill(conns[Math.floor(Math.random() * conns.length)], [1006, 4001, 1001][Math.floor(Math.random() * 3)])
    } else if (x < 0.04) {
      // Some reconnects get the text instead of the ops.
      server.catchUpMax = Math.random() < 0.5 ? 0 : 5000
    } else if (x < 0.045) {
      server.compact('r')
    }
    await sleep(Math.floor(Math.random() * 4))
  }
  server.onOp = null
  server.catchUpMax = 5000
  await settle(server, 'r', clients, 8000)
  assertExactlyOnce(server, 'r')
  // The log replays to the text.
  assert.ok(edits > 100, `only ${edits} edits`)
  assert.ok(server.stats.kills > 0)
  const verdicts = clients.flatMap(c => c.verdicts())
  t.diagnostic(`${edits} edits, ${server.stats.ops} ops, ${server.stats.kills} kills, ${server.stats.dups} resubmissions, ${server.stats.textHellos} text hellos, verdicts: ${verdicts.join(', ')}`)
  for (const c of clients) {
    assert.deepEqual(c.errors.filter(e => e.code !== 'rebased'), [])
    c.close()
  }
})
}

test('every insert lands exactly once despite drops before and after commit', async () => {
  const server = new FakeServer({ commitDelay: () => Math.floor(Math.random() * 6) })
  server.createDoc('u', '')
  const clients = [open(server, 'u'), open(server, 'u'), open(server, 'u')]
  await waitFor('connected', () => clients.every(c => c.status === 'connected'))
  server.onOp = () => {
    const x = Math.random()
    if (x < 0.08) return 'drop-before'
    if (x < 0.16) return 'drop-after'
  }
  let next = 0x4e00
  const typed = []
  const deadline = Date.now() + 1500
  while (Date.now() < deadline) {
    for (const c of clients) {
      const ch = String.fromCodePoint(next++)
      typed.push(ch)
      c.edit(insertAt(Math.floor(Math.random() * (cpLength(c.text) + 1)), ch))
    }
    if (Math.random() < 0.05) server.catchUpMax = Math.random() < 0.5 ? 0 : 5000
    if (Math.random() < 0.05) {
      const conns = [...server.doc('u').clients.values()]
      if (conns.length) server.kill(conns[0], 4001)
    }
    await sleep(Math.floor(Math.random() * 3))
  }
  server.onOp = null
  server.catchUpMax = 5000
  await settle(server, 'u', clients, 8000)
  assertExactlyOnce(server, 'u')
  const final = [...server.doc('u').durable]
  assert.equal(final.length, typed.length)
  assert.deepEqual([...final].sort(), [...typed].sort())
  for (const c of clients) c.close()
})

test('exactly once: connection lost with the op in flight, before the commit', async () => {
  const server = new FakeServer()
  server.createDoc('e', 'abc')
  const a = open(server, 'e')
  await waitFor('connected', () => a.status === 'connected')
  let n = 0
  server.onOp = () => (n++ === 0 ? 'drop-before' : undefined)
  a.edit([3, 'd'])
  await settle(server, 'e', [a])
  assert.equal(a.text, 'abcd')
  assert.equal(server.doc('e').log.length, 1)
  a.close()
})

test('exactly once: ack lost after the commit (catch-up acknowledges, text hello probes)', async () => {
  for (const catchUpMax of [5000, 0]) {
    const server = new FakeServer({ catchUpMax })
    server.createDoc('e', 'abc')
    const a = open(server, 'e')
    await waitFor('connected', () => a.status === 'connected')
    let n = 0
    server.onOp = () => (n++ === 0 ? 'drop-after' : undefined)
    a.edit([3, 'd'])
    await settle(server, 'e', [a])
    assert.equal(a.text, 'abcd')
    assert.equal(server.doc('e').log.length, 1, `catchUpMax ${catchUpMax}`)
    assert.deepEqual(a.verdicts(), catchUpMax === 0 ? ['committed before'] : [])
    assertExactlyOnce(server, 'e')
    assert.deepEqual(a.errors, [])
    a.close()
  }
})

test('exactly once: the old connection commits after the new one said hello', async () => {
  // The op is in the server's head but not yet durable when the client
  // reconnects: the hello does not hold it, the resubmission is not
  // acknowledged directly, and the commit's broadcast acknowledges it.
  const server = new FakeServer({ commitDelay: () => 60 })
  server.createDoc('e', 'abc')
  const a = open(server, 'e', { minBackoff: 1, maxBackoff: 2 })
  await waitFor('connected', () => a.status === 'connected')
  let n = 0
  server.onOp = () => (n++ === 0 ? 'drop-after' : undefined)
  a.edit([3, 'd'])
  a.edit([4, 'e'])
  await settle(server, 'e', [a])
  assert.equal(a.text, 'abcde')
  assert.ok(server.stats.dups >= 1)
  assertExactlyOnce(server, 'e')
  a.close()
})

test('offline edits are sent when the connection returns, and survive a reload', async () => {
  const server = new FakeServer()
  server.createDoc('o', 'one\ntwo\n')
  const storage = new MemoryStorage()
  const a = open(server, 'o', { storage })
  const b = open(server, 'o')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.down = true
  server.killAll('o')
  await waitFor('disconnected', () => a.status === 'reconnecting')
  a.edit(insertAt(0, 'ONE '))
  a.edit([12, 'three\n'])
  assert.equal(a.text, 'ONE one\ntwo\nthree\n')
  // Reload while offline: a new client with the same storage.
  a.close()
  const a2 = open(server, 'o', { storage })
  assert.equal(a2.text, 'ONE one\ntwo\nthree\n')
  assert.equal(a2.pending, 2)
  assert.equal(a2.src, a.src)
  server.down = false
  b.edit([4, '2 '])
  await settle(server, 'o', [a2, b])
  assert.equal(b.text, 'ONE one\n2 two\nthree\n')
  // The seq keeps counting for the source across reloads.
  const seqs = server.doc('o').log.filter(r => r.src === a.src).map(r => r.seq)
  const a3seqStart = Math.max(...seqs)
  a2.close()
  const a3 = open(server, 'o', { storage })
  await waitFor('connected', () => a3.status === 'connected')
  a3.edit(['!'])
  await settle(server, 'o', [a3, b])
  const last = server.doc('o').log.at(-1)
  assert.equal(last.src, a.src)
  assert.ok(last.seq > a3seqStart)
  a3.close()
  b.close()
})

test('a second instance on the same storage gets a source of its own', async () => {
  const server = new FakeServer()
  server.createDoc('t', '')
  const storage = new MemoryStorage()
  const a = open(server, 't', { storage })
  const b = open(server, 't', { storage })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  assert.notEqual(a.src, b.src)
  assert.ok(a.src && b.src)
  a.edit(['a'])
  b.edit(['b'])
  await settle(server, 't', [a, b])
  a.close()
  b.close()
})

test('text hello with pending edits: committed by the server when the history allows', async () => {
  const server = new FakeServer({ catchUpMax: 0 })
  server.createDoc('h', 'alpha\nbeta\ngamma\n')
  const a = open(server, 'h')
  const b = open(server, 'h')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.down = true
  for (const c of [...server.doc('h').clients.values()]) if (c.id === a.client) server.kill(c)
  await waitFor('a offline', () => a.status !== 'connected')
  a.edit([6, 'BETA ']) // "alpha\nBETA beta\n..."
  for (let i = 0; i < 5; i++) b.edit(insertAt(0, `${i}`))
  await settle(server, 'h', [b])
  server.down = false
  await settle(server, 'h', [a, b])
  assert.equal(a.text, '43210alpha\nBETA beta\ngamma\n')
  assert.deepEqual(a.verdicts(), ['committed now'])
  assert.deepEqual(a.errors, []) // exact: the server transformed it
  assertExactlyOnce(server, 'h')
  a.close()
  b.close()
})

test('text hello with pending edits after compaction: rebased on the text, the user told', async () => {
  const server = new FakeServer()
  server.createDoc('h', 'alpha\nbeta\ngamma\n')
  const a = open(server, 'h')
  const b = open(server, 'h')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.down = true
  for (const c of [...server.doc('h').clients.values()]) if (c.id === a.client) server.kill(c)
  await waitFor('a offline', () => a.status !== 'connected')
  a.edit([6, 'BETA '])
  a.edit([cpLength(a.text), 'delta\n'])
  b.edit(insertAt(0, 'ALPHA '))
  b.edit([cpLength(b.text) - 6, 'GAMMA '])
  await settle(server, 'h', [b])
  server.compact('h')
  server.down = false
  await settle(server, 'h', [a, b])
  assert.equal(a.text, 'ALPHA alpha\nBETA beta\nGAMMA gamma\ndelta\n')
  assert.deepEqual(a.verdicts(), ['not committed'])
  assert.deepEqual(a.errors.map(e => e.code), ['rebased'])
  assertExactlyOnce(server, 'h')
  a.close()
  b.close()
})

test('text hello: in-flight op committed before the drop, then the buffer', async () => {
  // The buffer is based on the in-flight op, which the server committed on
  // its own base, unchanged: the buffer goes to the server at that revision,
  // exactly transformed if the history is there, rebased on the text if not.
  for (const compacted of [false, true]) {
    const server = new FakeServer({ commitDelay: () => 0, catchUpMax: 0 })
    server.createDoc('h', 'x\ny\n')
    const a = open(server, 'h')
    const b = open(server, 'h')
    await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
    let n = 0
    server.onOp = conn => (conn.id === a.client && n++ === 0 ? 'drop-after' : undefined)
    server.down = true // the reconnect waits
    a.edit(insertAt(0, 'X')) // committed, ack lost
    await waitFor('a dropped', () => a.status !== 'connected')
    a.edit([cpLength(a.text), 'z\n']) // buffered offline
    await waitFor('b has X', () => b.text === 'Xx\ny\n')
    b.edit([3, 'Y'])
    await settle(server, 'h', [b])
    if (compacted) server.compact('h')
    server.down = false
    await settle(server, 'h', [a, b])
    assert.equal(a.text, 'Xx\nYy\nz\n')
    assert.deepEqual(a.verdicts(), ['committed before', compacted ? 'not committed' : 'committed now'])
    assert.deepEqual(a.errors.map(e => e.code), compacted ? ['rebased'] : [])
    assert.equal(server.doc('h').log.filter(r => r.src === a.src).length, 2)
    assertExactlyOnce(server, 'h')
    a.close()
    b.close()
  }
})

test('text hello: committed before the hello but transformed by the server; the buffer is rebased', async () => {
  const server = new FakeServer({ commitDelay: () => 5, catchUpMax: 0 })
  server.createDoc('h', 'x\ny\n')
  const a = open(server, 'h')
  const b = open(server, 'h')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  let n = 0
  server.onOp = conn => (conn.id === a.client && n++ === 0 ? 'drop-after' : undefined)
  server.down = true
  b.edit([2, 'Y']) // commits first: a's op is transformed past it
  await waitFor('b\'s op at the server', () => server.doc('h').headRev === 1)
  a.edit(insertAt(0, 'X'))
  await waitFor('a dropped', () => a.status !== 'connected')
  a.edit([cpLength(a.text), 'z\n'])
  await settle(server, 'h', [b])
  server.down = false
  await settle(server, 'h', [a, b])
  assert.equal(a.text, 'Xx\nYy\nz\n')
  assert.deepEqual(a.verdicts(), ['committed before'])
  assert.deepEqual(a.errors.map(e => e.code), ['rebased'])
  assertExactlyOnce(server, 'h')
  a.close()
  b.close()
})

test('stored edits against a server that is behind (restored from a backup): rebased, never lost', async () => {
  const storage = new MemoryStorage()
  const s1 = new FakeServer()
  s1.createDoc('k', 'one\n')
  const a = open(s1, 'k', { storage })
  await waitFor('connected', () => a.status === 'connected')
  a.edit([4, 'two\n'])
  await settle(s1, 'k', [a])
  s1.down = true
  s1.killAll('k')
  await waitFor('down', () => a.status !== 'connected')
  a.edit([8, 'three\n']) // unsent
  a.close()
  // The server comes back from an older backup: revision 0, another text.
  const s2 = new FakeServer()
  s2.createDoc('k', 'zero\none\n')
  const a2 = open(s2, 'k', { storage })
  assert.equal(a2.text, 'one\ntwo\nthree\n')
  await settle(s2, 'k', [a2])
  assert.equal(a2.text, 'zero\none\nthree\n')
  assert.deepEqual(a2.verdicts(), ['not committed'])
  assert.deepEqual(a2.errors.map(e => e.code), ['rebased'])
  a2.close()
})

test('rate_limited: the op is resent after a pause', async () => {
  const server = new FakeServer()
  server.createDoc('l', '')
  const a = open(server, 'l')
  await waitFor('connected', () => a.status === 'connected')
  server.rateLimit = 3
  a.edit(['abc'])
  await settle(server, 'l', [a])
  assert.equal(a.text, 'abc')
  assert.equal(server.doc('l').log.length, 1)
  assert.deepEqual(a.errors, [])
  a.close()
})

test('storage_full: the op is kept, edits go on, and it is resent once the server takes writes', async () => {
  const server = new FakeServer()
  server.createDoc('f', '')
  const a = open(server, 'f')
  await waitFor('connected', () => a.status === 'connected')
  server.storageFull = 2
  a.edit(['abc'])
  await waitFor('the refusal', () => a.errors.some(e => e.code === 'storage_full'))
  a.edit([3, 'd'])
  await settle(server, 'f', [a])
  assert.equal(a.text, 'abcd')
  assert.equal(server.doc('f').durable, 'abcd')
  assert.equal(server.doc('f').log.filter(r => r.src === a.src).length, server.doc('f').log.length)
  a.close()
})

test('sources: the client connects with a secret key, never a bare src; the server derives the src', async () => {
  const server = new FakeServer()
  server.createDoc('k', '')
  const urls = []
  const WS = class extends server.WebSocket {
    constructor (url) { super(url); urls.push(new URL(url)) }
  }
  const storage = new MemoryStorage()
  const a = open(server, 'k', { storage, WebSocket: WS })
  await waitFor('connected', () => a.status === 'connected')
  const key = urls[0].searchParams.get('key')
  assert.match(key, /^[0-9a-f]{32}$/)
  assert.equal(urls[0].searchParams.get('src'), null)
  assert.equal(a.src, sourceOf(key))
  a.edit(['x'])
  await settle(server, 'k', [a])
  a.close()
  // A reload keeps the key (and so the source).
  const a2 = open(server, 'k', { storage, WebSocket: WS })
  await waitFor('connected', () => a2.status === 'connected')
  assert.equal(urls.at(-1).searchParams.get('key'), key)
  assert.equal(a2.src, a.src)
  a2.close()
})

test('tokens: getToken is asked before every connection; an expired session (4003) reconnects with a fresh one', async () => {
  const server = new FakeServer()
  server.createDoc('t', 'x')
  const urls = []
  const WS = class extends server.WebSocket {
    constructor (url) { super(url); urls.push(new URL(url)) }
  }
  let n = 0
  const a = open(server, 't', { WebSocket: WS, getToken: async () => `tok-${++n}` })
  await waitFor('connected', () => a.status === 'connected')
  assert.equal(urls[0].searchParams.get('token'), 'tok-1')
  server.killAll('t', 4003)
  await waitFor('reconnected', () => urls.length === 2 && a.status === 'connected')
  assert.equal(urls[1].searchParams.get('token'), 'tok-2')
  a.edit(['!'])
  await settle(server, 't', [a])
  a.close()
  const b = open(server, 't', { WebSocket: WS, token: 'fixed' })
  await waitFor('connected', () => b.status === 'connected')
  assert.equal(urls.at(-1).searchParams.get('token'), 'fixed')
  b.close()
})

test('a protocol 1 record in storage: its unsent edits go out under a new source, as new ops', async () => {
  const server = new FakeServer()
  server.createDoc('v1', 'abc')
  const storage = new MemoryStorage()
  const probe = open(server, 'v1', { storage })
  const key = probe._local._key()
  probe.close()
  storage.removeItem(key + ':lease')
  storage.setItem(key, JSON.stringify({ v: 1, src: 'old-uuid-source', seq: 7, rev: 0, title: '', base: 'abc', inflight: { op: [3, '!'], seq: 7, count: 1 }, buffer: null, time: Date.now() }))
  const a = open(server, 'v1', { storage })
  assert.equal(a.text, 'abc!')
  await waitFor('connected', () => a.status === 'connected')
  await settle(server, 'v1', [a])
  assert.equal(server.doc('v1').durable, 'abc!')
  const log = server.doc('v1').log
  assert.equal(log.length, 1)
  assert.notEqual(log[0].src, 'old-uuid-source')
  assert.equal(log[0].seq, 1)
  a.close()
})

test('rev_too_old on an op: resync without rev, the edit survives', async () => {
  const server = new FakeServer()
  server.createDoc('l', 'base')
  const a = open(server, 'l')
  const b = open(server, 'l')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  // a's next op is based on a revision the server compacts before it arrives.
  server.latency = () => 5
  a.edit([4, '!'])
  b.edit(['>'])
  await sleep(1)
  server.compact('l')
  server.latency = () => 1
  await settle(server, 'l', [a, b])
  assert.ok(a.text.includes('!') && a.text.includes('>'))
  a.close()
  b.close()
})

test('not_found: closed with an error', async () => {
  const server = new FakeServer()
  const a = open(server, 'missing')
  await waitFor('closed', () => a.status === 'closed')
  assert.equal(a.errors[0].code, 'not_found')
})

test('title: from the hello, then renames as they come', async () => {
  const server = new FakeServer()
  server.createDoc('t', 'abc', 'First')
  const a = open(server, 't')
  const titles = []
  a.on('title', t => titles.push(t))
  await waitFor('connected', () => a.status === 'connected')
  assert.equal(a.title, 'First')
  server.rename('t', 'Second 📝')
  await waitFor('renamed', () => a.title === 'Second 📝')
  assert.deepEqual(titles, ['First', 'Second 📝'])
  a.close()
})

test('restored: announced to the others with the restorer\'s name', async () => {
  const server = new FakeServer()
  server.createDoc('h', 'abc')
  const a = open(server, 'h', { name: 'Ann' })
  const b = open(server, 'h', { name: 'Bob' })
  const heard = []
  b.on('restored', e => heard.push(e))
  await waitFor('both connected with presence', () => a.status === 'connected' && b.status === 'connected' && b.peers.size === 1)
  assert.equal(a.announceRestore(0), true)
  await waitFor('Bob heard', () => heard.length === 1)
  assert.deepEqual(heard[0], { client: a.client, rev: 0, name: 'Ann' })
  a.close()
  assert.equal(a.announceRestore(0), false)
  b.close()
})

test('a refusal reconnecting cannot cure (1008): closed with the error, no retries', async () => {
  const server = new FakeServer()
  server.createDoc('r', 'abc')
  const a = open(server, 'r', { name: 'n'.repeat(300) })
  await waitFor('closed', () => a.status === 'closed')
  assert.equal(a.errors[0].code, 'bad_message')
  assert.equal(a.errors.at(-1).code, 'refused')
  assert.equal(server.refused, 1)
})

test('too_large and invalid_op: the refused edit is undone locally and reported', async () => {
  const server = new FakeServer()
  server.createDoc('z', 'abc')
  const a = open(server, 'z', { maxFrameBytes: 200 })
  await waitFor('connected', () => a.status === 'connected')
  a.edit([3, 'x'.repeat(300)])
  await settle(server, 'z', [a])
  assert.equal(a.text, 'abc')
  assert.equal(a.errors[0].code, 'too_large')
  // invalid_op from the server
  server.onOp = (conn, m) => { m.op = [100, 'boom'] }
  a.edit(['1'])
  await waitFor('error', () => a.errors.length === 2)
  server.onOp = null
  await settle(server, 'z', [a])
  assert.equal(a.errors[1].code, 'invalid_op')
  assert.equal(a.text, 'abc')
  a.close()
})

test('presence: peers, selections moved through ops', async () => {
  const server = new FakeServer()
  server.createDoc('p', '0123456789')
  const a = open(server, 'p', { name: 'Ann', color: '#ff0000' })
  const b = open(server, 'p', { name: 'Bob', color: '#00ff00' })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  await waitFor('peers', () => a.peers.size === 1 && b.peers.size === 1)
  const pb = a.peers.get(b.client)
  assert.equal(pb.name, 'Bob')
  assert.equal(pb.color, '#00ff00')
  let presence = 0
  a.on('presence', () => presence++)
  b.setSelection([{ anchor: 5, head: 5 }])
  await waitFor('b caret at a', () => a.peers.get(b.client).sel.length === 1)
  assert.deepEqual(a.peers.get(b.client).sel, [{ anchor: 5, head: 5 }])
  assert.ok(presence > 0)
  // A local edit before b's caret moves it at once.
  a.edit(insertAt(0, 'xx'))
  assert.deepEqual(a.peers.get(b.client).sel, [{ anchor: 7, head: 7 }])
  // b types at its caret: its caret moves past its own insert.
  await settle(server, 'p', [a, b])
  b.edit([7, 'BB'])
  b.setSelection([{ anchor: 9, head: 9 }])
  await settle(server, 'p', [a, b])
  assert.deepEqual(a.peers.get(b.client).sel, [{ anchor: 9, head: 9 }])
  // A selection sent with edits pending is mapped back to the server's
  // revision and lands right once they commit.
  server.latency = () => 10
  b.edit(insertAt(0, 'abc'))
  b.setSelection([{ anchor: 2, head: 12 }]) // inside its own insert
  await sleep(60)
  server.latency = () => 1
  await settle(server, 'p', [a, b])
  await waitFor('exact selection', () => JSON.stringify(a.peers.get(b.client).sel) === JSON.stringify([{ anchor: 2, head: 12 }]))
  // Leave.
  b.close()
  await waitFor('leave', () => a.peers.size === 0)
  a.close()
})

test('presence: a selection arriving with local edits pending maps into local text', async () => {
  const server = new FakeServer()
  server.createDoc('p', 'abcdef')
  const a = open(server, 'p')
  const b = open(server, 'p')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.latency = () => 15
  a.edit(insertAt(0, 'XYZ')) // pending at a
  b.setSelection([{ anchor: 1, head: 4 }])
  await waitFor('sel', () => (a.peers.get(b.client)?.sel.length ?? 0) === 1, 2000)
  assert.deepEqual(a.peers.get(b.client).sel, [{ anchor: 4, head: 7 }])
  server.latency = () => 1
  await settle(server, 'p', [a, b])
  assert.deepEqual(a.peers.get(b.client).sel, [{ anchor: 4, head: 7 }])
  a.close()
  b.close()
})

test('undo undoes only the user\'s own edits, after concurrent remote edits; redo restores', async () => {
  const server = new FakeServer()
  server.createDoc('u', 'middle')
  const a = open(server, 'u')
  const b = open(server, 'u')
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  // a types "hello " one character at a time: one undo step.
  const word = 'hello '
  for (let i = 0; i < word.length; i++) a.edit(insertAt(i, word[i]))
  await settle(server, 'u', [a, b])
  b.edit(insertAt(0, '[B]'))
  b.edit([cpLength(b.text), '[/B]'])
  await settle(server, 'u', [a, b])
  assert.equal(a.text, '[B]hello middle[/B]')
  assert.ok(a.undo())
  assert.equal(a.text, '[B]middle[/B]')
  await settle(server, 'u', [a, b])
  b.edit([3, '+'])
  await settle(server, 'u', [a, b])
  assert.ok(a.redo())
  assert.equal(a.text, '[B]hello +middle[/B]')
  await settle(server, 'u', [a, b])
  // A deletion, then b edits inside the deleted range's neighbourhood.
  a.edit([9, { d: 7 }]) // delete "+middle"
  assert.equal(a.text, '[B]hello [/B]')
  await settle(server, 'u', [a, b])
  b.edit([3, '<'])
  await settle(server, 'u', [a, b])
  assert.ok(a.undo())
  assert.equal(a.text, '[B]<hello +middle[/B]')
  assert.ok(a.undo())
  assert.equal(a.text, '[B]<+middle[/B]')
  assert.equal(a.undo(), false)
  await settle(server, 'u', [a, b])
  assert.equal(b.text, '[B]<+middle[/B]')
  a.close()
  b.close()
})

test('undo: pauses and new lines split typing into steps; a new edit clears redo', async () => {
  const server = new FakeServer()
  server.createDoc('u', '')
  const a = open(server, 'u', { undoMergeInterval: 30 })
  await waitFor('connected', () => a.status === 'connected')
  a.edit(['a'])
  a.edit([1, 'b'])
  await sleep(50)
  a.edit([2, 'c'])
  a.edit([3, '\n'])
  a.edit([4, 'd'])
  assert.equal(a.text, 'abc\nd')
  a.undo()
  assert.equal(a.text, 'abc\n')
  a.undo()
  assert.equal(a.text, 'abc')
  a.undo()
  assert.equal(a.text, 'ab')
  a.redo()
  assert.equal(a.text, 'abc')
  a.edit(insertAt(0, 'x'))
  assert.equal(a.redo(), false)
  // Backspaces merge too.
  a.edit([3, { d: 1 }])
  a.edit([2, { d: 1 }])
  assert.equal(a.text, 'xa')
  a.undo()
  assert.equal(a.text, 'xabc')
  await settle(server, 'u', [a])
  a.close()
})

test('selection transform helper sides', () => {
  // Sanity check of the ot.js semantics the client relies on.
  assert.deepEqual(transformSelection({ anchor: 2, head: 2 }, [2, 'x'], 'left'), { anchor: 2, head: 2 })
  assert.deepEqual(transformSelection({ anchor: 2, head: 2 }, [2, 'x'], 'right'), { anchor: 3, head: 3 })
})

test('retry: connects at once instead of waiting out the backoff', async () => {
  const server = new FakeServer()
  server.createDoc('r', 'abc')
  const a = open(server, 'r', { minBackoff: 60000, maxBackoff: 60000 })
  await waitFor('connected', () => a.status === 'connected')
  assert.equal(a.retry(), false)
  server.down = true
  server.killAll('r')
  await waitFor('reconnecting', () => a.status === 'reconnecting')
  server.down = false
  // The backoff is a minute: only retry brings it back in time.
  assert.equal(a.retry(), true)
  await waitFor('connected again', () => a.status === 'connected')
  a.close()
})

test('storage: typing in a large document writes small records, and a reload restores it exactly', async () => {
  const server = new FakeServer()
  let big = ''
  for (let i = 0; big.length < 300000; i++) big += `line ${i} 😀 漢字\n`
  server.createDoc('big', big)
  const storage = new MemoryStorage()
  let written = 0
  const setItem = storage.setItem.bind(storage)
  storage.setItem = (k, v) => { written += String(v).length; setItem(k, v) }
  const a = open(server, 'big', { storage, persistDelay: 1 })
  await waitFor('connected', () => a.status === 'connected')
  await sleep(20)
  written = 0
  for (let i = 0; i < 40; i++) {
    a.edit([1000 + i, 'x'])
    await sleep(3) // each edit persisted on its own
  }
  await settle(server, 'big', [a])
  // Without the snapshot each write would carry the 300 kB text.
  assert.ok(written < 100000, `wrote ${written} characters for 40 keystrokes`)
  // Offline edits on top, then a reload: the same text and pending edits.
  server.down = true
  server.killAll('big')
  await waitFor('disconnected', () => a.status !== 'connected')
  a.edit([5, 'OFFLINE'])
  const want = a.text
  a.close()
  const a2 = open(server, 'big', { storage })
  assert.equal(a2.text, want)
  assert.equal(a2.pending, 1)
  server.down = false
  await settle(server, 'big', [a2])
  a2.close()
  // One snapshot is kept, the one the record names.
  const snaps = [...storage.map.keys()].filter(k => k.includes(':snap:'))
  assert.equal(snaps.length, 1, snaps.join(' '))
})

test('storage: a snapshot no record names (a crash between writes) is dropped; a missing one is reported', async () => {
  const server = new FakeServer()
  server.createDoc('c', 'hello')
  const storage = new MemoryStorage()
  const a = open(server, 'c', { storage })
  await waitFor('connected', () => a.status === 'connected')
  a.edit([5, '!'])
  await settle(server, 'c', [a])
  a.close()
  const snapKey = [...storage.map.keys()].find(k => k.includes(':snap:'))
  storage.setItem(snapKey.replace(/:snap:.*/, ':snap:orphan'), JSON.stringify({ text: 'x' }))
  const b = open(server, 'c', { storage })
  assert.equal(b.text, 'hello!')
  assert.ok(![...storage.map.keys()].some(k => k.endsWith(':snap:orphan')))
  b.close()
  storage.removeItem([...storage.map.keys()].find(k => k.includes(':snap:')))
  const c = open(server, 'c', { storage })
  await waitFor('the storage error', () => c.errors.some(e => e.code === 'storage'))
  await waitFor('connected with the server text', () => c.status === 'connected' && c.text === 'hello!')
  c.close()
})

// ----- rich text: the same state machine, the rich type

const plainText = doc => doc.map(c => typeof c.insert === 'string' ? c.insert : '\ufffc').join('')

test('rich: undo of one\'s own formatting leaves the other\'s typing and formatting', async () => {
  const server = new FakeServer()
  server.createDoc('ru', [{ insert: 'Hello world\n' }], '', 'rich')
  const a = open(server, 'ru', { type: 'rich' })
  const b = open(server, 'ru', { type: 'rich' })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  a.edit([{ retain: 11, attributes: { bold: true } }]) // bold "Hello world"
  b.edit([{ retain: 5 }, { insert: ',', attributes: { italic: true } }]) // inside a's range
  await settle(server, 'ru', [a, b])
  b.edit([{ retain: 12 }, { retain: 1, attributes: { header: 1 } }]) // b makes the line a heading
  await settle(server, 'ru', [a, b])
  assert.ok(a.undo())
  await settle(server, 'ru', [a, b])
  assert.deepEqual(b.doc, [
    { insert: 'Hello' }, { insert: ',', attributes: { italic: true } }, { insert: ' world' }, { insert: '\n', attributes: { header: 1 } }
  ])
  assert.ok(a.redo())
  await settle(server, 'ru', [a, b])
  assert.deepEqual(b.doc[0], { insert: 'Hello', attributes: { bold: true } })
  a.close()
  b.close()
})

test('rich: offline edits with formatting survive a reload and reach the server once', async () => {
  const server = new FakeServer()
  server.createDoc('ro', [{ insert: 'one\n' }], '', 'rich')
  const storage = new MemoryStorage()
  const a = open(server, 'ro', { storage, type: 'rich' })
  const b = open(server, 'ro', { type: 'rich' })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.down = true
  server.killAll('ro')
  await waitFor('disconnected', () => a.status === 'reconnecting')
  a.edit([{ insert: 'Title', attributes: { bold: true } }, { insert: '\n', attributes: { header: 1 } }])
  a.edit([{ retain: 6 }, { insert: { image: 'https://example.com/a.png' } }, { insert: ' 😀中' }])
  const want = a.doc
  a.close()
  const a2 = open(server, 'ro', { storage }) // no type: the stored record's
  assert.equal(a2.type, 'rich')
  assert.deepEqual(a2.doc, want)
  assert.equal(a2.pending, 2)
  server.down = false
  b.edit([{ retain: 3, attributes: { italic: true } }]) // "one" in italics, concurrently
  await settle(server, 'ro', [a2, b])
  assert.equal(plainText(b.doc), 'Title\n\ufffc 😀中one\n')
  assert.deepEqual(b.doc.find(c => c.insert === 'one'), { insert: 'one', attributes: { italic: true } })
  assertExactlyOnce(server, 'ro')
  a2.close()
  b.close()
})

test('rich: a text hello after compaction rebases the pending edits on the server\'s Delta', async () => {
  const server = new FakeServer()
  server.createDoc('rh', [{ insert: 'alpha\nbeta\ngamma\n' }], '', 'rich')
  const a = open(server, 'rh', { type: 'rich' })
  const b = open(server, 'rh', { type: 'rich' })
  await waitFor('connected', () => a.status === 'connected' && b.status === 'connected')
  server.down = true
  for (const c of [...server.doc('rh').clients.values()]) if (c.id === a.client) server.kill(c)
  await waitFor('a offline', () => a.status !== 'connected')
  a.edit([{ retain: 6 }, { retain: 4, attributes: { bold: true } }]) // bold "beta"
  a.edit([{ retain: 17 }, { insert: 'delta\n' }])
  b.edit([{ insert: 'ALPHA ' }])
  b.edit([{ retain: 17 }, { retain: 5, attributes: { italic: true } }]) // italic "gamma"
  await settle(server, 'rh', [b])
  server.compact('rh')
  server.down = false
  await settle(server, 'rh', [a, b])
  assert.deepEqual(a.doc, [
    { insert: 'ALPHA alpha\n' }, { insert: 'beta', attributes: { bold: true } }, { insert: '\n' },
    { insert: 'gamma', attributes: { italic: true } }, { insert: '\ndelta\n' }
  ])
  assert.deepEqual(a.errors.map(e => e.code), ['rebased'])
  a.close()
  b.close()
})
