// An in-process fake of Tandem's WebSocket server (docs/protocol.md) for the
// client tests: a FakeWebSocket class to pass as options.WebSocket, and a
// server that speaks the protocol as internal/collab/hub.go does: ops transformed
// against everything committed after their base revision, one by one;
// exactly-once by (src, seq) with the hub's rules for acknowledging a
// resubmission; acks and broadcasts only after a (simulated, delayed) commit;
// catch-up hellos or text hellos; selections moved to the durable revision;
// batched frames; and knobs to drop connections (1006, 4001, 1001), refuse
// connections, compact history, rate-limit and delay.

import { createHash, randomBytes } from 'node:crypto'
import { appendFileSync } from 'node:fs'
import { lookup } from '../static/js/doctypes.js'

// TANDEM_FAKE_FRAMES names a file every frame the fake sends is appended
// to: TestFakeServerSpeaksTheProtocol (internal/web) checks them against
// package protocol and the real server's frames.
const framesOut = process.env.TANDEM_FAKE_FRAMES

const rnd = (a, b) => a + Math.floor(Math.random() * (b - a + 1))

export class FakeServer {
  constructor (opts = {}) {
    this.docs = new Map()
    this.catchUpMax = opts.catchUpMax ?? 5000
    this.latency = opts.latency ?? (() => rnd(0, 2)) // ms, each way
    this.commitDelay = opts.commitDelay ?? (() => rnd(0, 2))
    this.down = false // refuse connections (they end with 1006)
    this.forceText = false // text hellos only
    this.rateLimit = 0 // refuse the next n ops with rate_limited
    this.storageFull = 0 // refuse the next n ops with storage_full
    this.onOp = null // (conn, msg) => 'drop-before' | 'drop-after' | undefined
    this.nextClient = 1
    this.connections = 0
    this.refused = 0 // connections refused for good (1008)
    this.stats = { ops: 0, dups: 0, acks: 0, textHellos: 0, catchUps: 0, kills: 0 }
    const server = this
    this.WebSocket = class extends FakeWebSocket {
      constructor (url) { super(server, url) }
    }
  }

  createDoc (id, text = '', title = '', doctype = 'plain') {
    const type = lookup(doctype)
    if (text === '' && doctype !== 'plain') text = type.empty
    const doc = {
      id,
      title,
      doctype,
      type,
      head: text,
      headRev: 0,
      durable: text,
      durableRev: 0,
      log: [], // records 1..headRev: {rev, op, src, seq, client, user, time}
      oldest: 0, // history before this revision is compacted
      sources: new Map(), // src → {seq, rev}: the newest
      submissions: new Map(), // `${src} ${seq}` → rev: the store's lookup
      clients: new Map(),
      unsent: [],
      committing: false
    }
    this.docs.set(id, doc)
    return doc
  }

  doc (id) { return this.docs.get(id) }

  // rename changes a document's title and tells everyone in it.
  rename (id, title) {
    const d = this.docs.get(id)
    d.title = title
    for (const c of d.clients.values()) this._send(c, { type: 'title', title })
  }

  compact (id) {
    const d = this.docs.get(id)
    d.oldest = d.durableRev
  }

  // kill ends a connection from the server side. 1006: as a broken network
  // (queued messages are lost); 4001: resync (queue dropped); others flush
  // what is queued first.
  kill (conn, code = 1006, reason = '') {
    if (conn.gone) return
    this.stats.kills++
    if (code !== 1006 && code !== 4001) this._flush(conn)
    conn.queue = []
    this._leave(conn)
    conn.ws._serverClose(code, reason)
  }

  killAll (id, code = 1006) {
    const d = this.docs.get(id)
    for (const c of [...d.clients.values()]) this.kill(c, code)
  }

  // ----- connections

  _accept (ws) {
    const u = new URL(ws.url)
    const m = u.pathname.match(/^\/api\/docs\/([^/]+)\/ws$/)
    if (this.down || !m) {
      ws._serverClose(1006, '')
      return
    }
    const id = decodeURIComponent(m[1])
    const q = u.searchParams
    // Sources are owned by keys, as on the server: a source without its key
    // is refused; without either, the server issues a key.
    let key = q.get('key') || ''
    const issued = !key
    if (issued) key = randomBytes(16).toString('hex')
    const src = sourceOf(key)
    if (!/^[A-Za-z0-9_-]{22,128}$/.test(key) || (q.get('src') && q.get('src') !== src) || (issued && q.get('src'))) {
      ws._deliver(JSON.stringify({ type: 'error', code: 'source_denied', message: 'source without its key' }))
      ws._serverClose(1008, 'source_denied')
      return
    }
    if ((q.get('user') || '').length > 256 || (q.get('name') || '').length > 256 || (q.get('color') || '').length > 64) {
      this.refused++
      ws._deliver(JSON.stringify({ type: 'error', code: 'bad_message', message: 'user, name or color too long' }))
      ws._serverClose(1008, 'bad_message')
      return
    }
    const conn = {
      id: `c${this.nextClient++}`,
      ws,
      docId: id,
      src,
      user: q.get('user') || '',
      name: q.get('name') || '',
      color: q.get('color') || '',
      sel: [],
      queue: [],
      timer: null,
      gone: false,
      joinRev: 0
    }
    ws.conn = conn
    const doc = this.docs.get(id)
    if (!doc) {
      ws._deliver(JSON.stringify({ type: 'error', code: 'not_found', message: `no document ${id}` }))
      conn.gone = true
      ws._serverClose(4004, 'not_found')
      return
    }
    this.connections++
    const hello = { type: 'hello', protocol: 2, doc: id, title: doc.title, client: conn.id, src: conn.src, doctype: doc.doctype || 'plain', rev: doc.durableRev }
    if (issued) hello.key = key
    const from = q.has('rev') ? parseInt(q.get('rev'), 10) : -1
    if (!this.forceText && from >= 0 && from <= doc.durableRev && from >= doc.oldest && doc.durableRev - from <= this.catchUpMax) {
      hello.from = from
      hello.ops = doc.log.slice(from, doc.durableRev).map(r => recordFields(r))
      this.stats.catchUps++
    } else {
      hello[doc.type.field] = doc.durable
      this.stats.textHellos++
    }
    hello.peers = [...doc.clients.values()].filter(c => !c.gone).map(c => ({ client: c.id, user: c.user, name: c.name, color: c.color, sel: c.sel }))
    ws._deliver(JSON.stringify(hello))
    conn.joinRev = doc.durableRev
    for (const o of doc.clients.values()) this._send(o, { type: 'join', client: conn.id, user: conn.user, name: conn.name, color: conn.color })
    doc.clients.set(conn.id, conn)
  }

  _leave (conn) {
    if (conn.gone) return
    conn.gone = true
    const doc = this.docs.get(conn.docId)
    if (!doc || !doc.clients.has(conn.id)) return
    doc.clients.delete(conn.id)
    for (const o of doc.clients.values()) this._send(o, { type: 'leave', client: conn.id })
  }

  _send (conn, msg) {
    if (conn.gone) return
    conn.queue.push(msg)
    if (!conn.timer) conn.timer = setTimeout(() => this._flush(conn), this.latency())
  }

  _flush (conn) {
    clearTimeout(conn.timer)
    conn.timer = null
    if (conn.queue.length === 0) return
    const q = conn.queue
    conn.queue = []
    conn.ws._deliver(JSON.stringify(q.length === 1 ? q[0] : q))
  }

  _receive (conn, data) {
    if (conn.gone) return
    let m
    try {
      m = JSON.parse(data)
    } catch {
      return this._send(conn, { type: 'error', code: 'bad_message', message: 'not JSON' })
    }
    if (m.type === 'op') this._submit(conn, m)
    else if (m.type === 'sel') this._select(conn, m)
    else if (m.type === 'restored') {
      const d = this.docs.get(conn.docId)
      for (const c of d.clients.values()) if (c !== conn) this._send(c, { type: 'restored', client: conn.id, rev: m.rev })
    } else this._send(conn, { type: 'error', code: 'bad_message', message: `unknown type ${m.type}` })
  }

  _error (conn, code, message, seq) {
    const e = { type: 'error', code, message }
    if (seq !== undefined) e.seq = seq
    this._send(conn, e)
  }

  _submit (conn, m) {
    const doc = this.docs.get(conn.docId)
    if (this.rateLimit > 0) {
      this.rateLimit--
      return this._error(conn, 'rate_limited', 'slow down', m.seq)
    }
    if (this.storageFull > 0) {
      this.storageFull--
      return this._error(conn, 'storage_full', 'the disk is nearly full', m.seq)
    }
    const hook = this.onOp ? this.onOp(conn, m) : undefined
    if (hook === 'drop-before') return this.kill(conn, 1006)
    // Exactly once (hub.duplicate).
    const s = doc.sources.get(conn.src)
    if (!(s && m.seq > s.seq)) {
      if (s && m.seq === s.seq) {
        this.stats.dups++
        if (s.rev <= conn.joinRev) this._send(conn, { type: 'ack', seq: m.seq, rev: s.rev })
        return
      }
      const rev = doc.submissions.get(`${conn.src} ${m.seq}`)
      if (rev !== undefined) {
        this.stats.dups++
        if (rev <= conn.joinRev) this._send(conn, { type: 'ack', seq: m.seq, rev })
        return
      }
      if (s) return this._error(conn, 'bad_seq', `seq ${m.seq} is older than ${s.seq}`, m.seq)
    }
    if (!Number.isInteger(m.rev) || m.rev < 0) return this._error(conn, 'bad_message', 'bad rev', m.seq)
    if (!Array.isArray(m.op) || doc.type.isNoop(m.op)) return this._error(conn, 'invalid_op', 'empty op: nothing to commit', m.seq)
    if (m.rev > doc.durableRev) return this._error(conn, 'rev_ahead', `op based on revision ${m.rev}, the document is at ${doc.durableRev}`, m.seq)
    if (m.rev < doc.oldest) return this._error(conn, 'rev_too_old', `revision ${m.rev} is no longer retained`, m.seq)
    let op = m.op
    let head
    try {
      for (const r of doc.log.slice(m.rev, doc.headRev)) op = doc.type.transform(op, r.op, 'left')
      head = doc.type.apply(doc.head, op)
    } catch (err) {
      return this._error(conn, 'invalid_op', err.message, m.seq)
    }
    doc.head = head
    doc.headRev++
    const rec = { rev: doc.headRev, op, src: conn.src, seq: m.seq, client: conn.id, user: conn.user, time: Date.now() }
    doc.log.push(rec)
    doc.sources.set(conn.src, { seq: m.seq, rev: rec.rev })
    doc.submissions.set(`${conn.src} ${m.seq}`, rec.rev)
    doc.unsent.push(rec)
    this.stats.ops++
    this._scheduleCommit(doc)
    if (hook === 'drop-after') this.kill(conn, 1006)
  }

  _scheduleCommit (doc) {
    if (doc.committing) return
    doc.committing = true
    setTimeout(() => {
      doc.committing = false
      const recs = doc.unsent
      doc.unsent = []
      for (const r of recs) {
        doc.durable = doc.type.apply(doc.durable, r.op)
        doc.durableRev = r.rev
        this._broadcast(doc, r)
      }
      if (doc.unsent.length > 0) this._scheduleCommit(doc)
    }, this.commitDelay())
  }

  _broadcast (doc, r) {
    for (const c of doc.clients.values()) {
      let side = 'left'
      if (c.src === r.src) {
        side = 'right'
        this.stats.acks++
        this._send(c, { type: 'ack', seq: r.seq, rev: r.rev })
      } else {
        this._send(c, { type: 'op', ...recordFields(r) })
      }
      c.sel = c.sel.map(s => doc.type.transformSelection(s, r.op, side))
    }
  }

  _select (conn, m) {
    const doc = this.docs.get(conn.docId)
    if (m.rev > doc.durableRev) return this._error(conn, 'rev_ahead', 'selection ahead')
    if (m.rev < doc.oldest) return this._error(conn, 'rev_too_old', 'selection too old')
    const n = doc.type.length(doc.durable)
    const since = doc.log.slice(m.rev, doc.durableRev)
    conn.sel = (m.sel || []).map(s0 => {
      let s = s0
      for (const r of since) s = doc.type.transformSelection(s, r.op, r.src === conn.src ? 'right' : 'left')
      return { anchor: Math.min(s.anchor, n), head: Math.min(s.head, n) }
    })
    for (const o of doc.clients.values()) {
      if (o !== conn) this._send(o, { type: 'sel', client: conn.id, rev: doc.durableRev, sel: conn.sel })
    }
  }
}

function recordFields (r) {
  return { rev: r.rev, op: r.op, client: r.client, src: r.src, seq: r.seq, user: r.user, time: r.time }
}

// FakeWebSocket is the browser's WebSocket as the client uses it: onopen,
// onmessage({data}), onclose({code, reason}), send, close, readyState.
// Frames in each direction arrive in order, after the server's latency.
export class FakeWebSocket {
  constructor (server, url) {
    this.server = server
    this.url = url
    this.readyState = 0
    this.conn = null
    this._out = []
    this._outTimer = null
    this.onopen = this.onmessage = this.onclose = this.onerror = null
    setTimeout(() => {
      if (this.readyState !== 0) return
      if (server.down) {
        this._serverClose(1006, '')
        return
      }
      this.readyState = 1
      if (this.onopen) this.onopen({ type: 'open' })
      server._accept(this)
    }, server.latency())
  }

  send (data) {
    if (this.readyState !== 1) throw new Error('WebSocket is not open')
    this._out.push(String(data))
    if (!this._outTimer) {
      this._outTimer = setTimeout(() => {
        this._outTimer = null
        const out = this._out
        this._out = []
        for (const d of out) {
          if (this.readyState !== 1 || !this.conn || this.conn.gone) return
          this.server._receive(this.conn, d)
        }
      }, this.server.latency())
    }
  }

  close (code = 1000, reason = '') {
    if (this.readyState >= 2) return
    this.readyState = 2
    setTimeout(() => {
      if (this.conn) this.server._leave(this.conn)
      this.readyState = 3
      if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean: true })
    }, 0)
  }

  _deliver (frame) {
    if (this.readyState !== 1 || this._closing) return
    if (framesOut) appendFileSync(framesOut, frame + '\n')
    setTimeout(() => {
      if (this.readyState === 1 && this.onmessage) this.onmessage({ type: 'message', data: frame })
    }, 0)
  }

  _serverClose (code, reason) {
    if (this.readyState === 3 || this._closing) return
    this._closing = true
    setTimeout(() => {
      this.readyState = 3
      if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 })
    }, 0)
  }
}

export class MemoryStorage {
  constructor () { this.map = new Map() }
  getItem (k) { return this.map.has(k) ? this.map.get(k) : null }
  setItem (k, v) { this.map.set(k, String(v)) }
  removeItem (k) { this.map.delete(k) }
  get length () { return this.map.size }
  key (i) { return [...this.map.keys()][i] ?? null }
  clear () { this.map.clear() }
}

// sourceOf is collab.SourceOf: the source id a key owns.
export function sourceOf (key) {
  return createHash('sha256').update('tandem source\0' + key).digest('hex').slice(0, 32)
}
