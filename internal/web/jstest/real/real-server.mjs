// The browser client against a real Tandem server (not the fake): run by
// the tandem package's TestJSClientAgainstServer, which starts the server
// (its CheckOp hook rejects ops that insert "spam") and checks what this
// prints against the server's documents. Node 20 needs
// --experimental-websocket. Usage: node real-server.mjs BASE_URL
import assert from 'node:assert/strict'
import { connect } from '../../static/js/client.js'
import { cpLength } from '../../static/js/unicode.js'

const base = process.argv[2]
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
setTimeout(() => { console.error('real-server.mjs: timed out'); process.exit(1) }, 120000).unref()

async function waitFor (what, cond, timeout = 60000) {
  const deadline = Date.now() + timeout
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

function open (doc, opts = {}) {
  const c = connect(base, doc, { WebSocket: globalThis.WebSocket, browser: false, minBackoff: 5, maxBackoff: 50, ...opts })
  c.errors = []
  c.on('error', (e) => c.errors.push(e))
  return c
}

const settled = (cs) => cs.every((c) => c.status === 'connected' && c.pending === 0) && cs.every((c) => c.rev === cs[0].rev)

const out = {}

// Plain text: three clients type at random places at once, one of them
// dropping its connection now and then; all converge, and every token
// typed is there exactly once.
{
  const cs = [open('js-plain'), open('js-plain'), open('js-plain')]
  await waitFor('connected', () => cs.every((c) => c.connected))
  const tokens = []
  for (let i = 0; i < 60; i++) {
    for (const [k, c] of cs.entries()) {
      const tok = `<${k}.${i}>`
      tokens.push(tok)
      const len = cpLength(c.doc)
      // At a boundary between tokens, so that none splits another.
      const cuts = [0, len]
      for (let j = 0; j < c.doc.length; j++) if (c.doc[j] === '>') cuts.push(cpLength(c.doc.slice(0, j + 1)))
      const pos = cuts[Math.floor(Math.random() * cuts.length)]
      c.edit(pos > 0 ? [pos, tok] : [tok])
    }
    if (i % 15 === 7) cs[1]._ws?.close() // a dropped connection: resent with the same seq
    if (i % 10 === 0) await sleep(2)
  }
  await waitFor('plain clients to settle', () => settled(cs))
  for (const c of cs) assert.equal(c.doc, cs[0].doc)
  for (const tok of tokens) assert.equal(cs[0].doc.split(tok).length, 2, `${tok} is not there exactly once`)
  out.plain = cs[0].doc
  out.plainRev = cs[0].rev
  for (const c of cs) c.close()
}

// Rich text: two clients type and format at once.
{
  const a = open('js-rich', { type: 'rich' })
  const b = open('js-rich', { type: 'rich' })
  await waitFor('connected', () => a.connected && b.connected)
  for (let i = 0; i < 20; i++) {
    a.edit([{ insert: 'a' + (i % 10) }])
    b.edit([{ retain: 1, attributes: { bold: i % 2 === 0 ? true : null } }])
    if (i % 5 === 0) await sleep(2)
  }
  await waitFor('rich clients to settle', () => settled([a, b]))
  assert.deepEqual(a.doc, b.doc)
  out.rich = a.doc
  a.close(); b.close()
}

// The application's rule: an op with "spam" is rejected, with its
// reason, and undone; the next edit goes through.
{
  const c = open('js-rules')
  await waitFor('connected', () => c.connected)
  const before = c.doc
  c.edit([cpLength(c.doc), ' spam'])
  await waitFor('the rejection', () => c.errors.some((e) => e.code === 'rejected'))
  const e = c.errors.find((e) => e.code === 'rejected')
  assert.equal(e.reason, 'moderated')
  await waitFor('the undo', () => c.doc === before && c.pending === 0)
  c.edit([cpLength(c.doc), ' ham'])
  await waitFor('settled', () => settled([c]))
  out.rules = c.doc
  c.close()
}

console.log(JSON.stringify(out))
process.exit(0)
