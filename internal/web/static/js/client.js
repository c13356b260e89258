// Tandem's browser client: the protocol of docs/protocol.md as a ShareDB-style
// state machine, with reconnection, exactly-once resubmission, offline edits,
// presence and undo/redo. No dependencies; runs in browsers and in Node (pass
// options.WebSocket there). docs/client.md is the contract.
//
// This module is the protocol (ops, acks, catch-up, text hellos, presence)
// and its I/O; its parts are modules of their own: docstate.js (the pure OT
// state machine of the document: what the user sees, the server's document,
// the pending edits), doctypes.js (the document types, plain and rich text:
// nothing here depends on which), transport.js (the WebSocket, reconnection
// and backoff), undo.js (the undo history), localstate.js (what survives a
// reload), keys.js (source keys). The browser glue (online/offline, page
// hide and show) is installBrowserHandlers, at the end, and can be left out.
//
// Positions and lengths are Unicode code points everywhere, for both types.
//
// Types. options.type ('plain' or 'rich') says what the client edits; left
// out, the client takes the type the server's hello announces (plain until
// then). A client of one type connected to a document of another stops with
// error 'unsupported_type'.
//
// Exactly once. A source id (src) and a per-source sequence number (seq) name
// every op. The source belongs to a secret key the client makes (at least 128
// random bits): the client sends the key, the server derives the source from
// it and refuses a source given without its key, so nobody who merely sees
// our src (every op carries it) can submit as us. Key and seq survive
// reconnects, and reloads when options.storage is given:
// an op's seq is written to storage, together with the op, before the op is
// first sent, so a reload can never reuse a seq for different content. After a
// reconnect the client asks for the ops after `rev`; an op in that catch-up
// with our src and the in-flight seq is the ack of the in-flight op; if none
// is, the in-flight op is resent with the same seq, and the server
// acknowledges it once whether or not it had committed it before.
//
// Text hellos. When the server answers a reconnect with the whole document
// (history too long to send, compacted, or the server is behind us), the
// pending edits cannot be transformed op by op: there is no history. Then:
//
//  1. If an op is in flight (it may have been committed before the
//     connection dropped) the client resends it with its seq and its *own*
//     base revision, and waits for the server's verdict, holding the new
//     server text aside meanwhile (ops from others are applied to it, not to
//     the user's view). The server answers exactly one of:
//       - ack with a revision <= the hello's: it was committed before; the
//         hello's text includes it;
//       - ack with a later revision: it was committed now, properly
//         transformed by the server against the history since its base;
//       - rev_too_old / rev_ahead / invalid_op: it was not committed, and
//         cannot be.
//     Whichever it is, it is never applied twice.
//  2. The edits that are still not in the server's text (the in-flight op
//     when it was not committed, plus the buffer) are then rebased onto the
//     server's text by transforming them against a diff (base → server text):
//     a line-then-character diff, so concurrent changes elsewhere in the
//     document do not move them. The user's view becomes the server's text
//     with the edits re-applied, and those edits go to the server as a new op.
//     When the server's text differs from our base (someone else edited
//     meanwhile) the client emits an 'error' {code: 'rebased'}: the merge is
//     a best effort, so the user is told to check. If even that fails, the
//     user's whole view is resubmitted as one edit against the server text and
//     'error' {code: 'conflict'} says so. The document is never silently
//     different from what the user sees.
//     (When the server committed the in-flight op "now", the client does not
//     know the form the server gave it, so it first reconnects for the text,
//     which then contains it, and rebases only the buffer.)
//
// Selections. setSelection() takes selections in text (local) coordinates.
// The server wants them at a server revision: with nothing pending that is
// text at rev; with local edits pending the client maps them back to base
// through the inverse of the pending edits (a caret inside text the user just
// typed lands at the start of that insertion, and the server moves it past
// the insertion again when the op commits, since the author's carets take the
// right side), and sends the exact selection again once the edits are
// acknowledged. Nothing is sent before hello or while a text hello's verdict
// is awaited. Sends are throttled to one per selectionThrottle ms.

import { diffOp } from './diff.js'
import { plain, lookup } from './doctypes.js'
import { DocState } from './docstate.js'
import { newKey, validKey, uuid } from './keys.js'
import { UndoHistory } from './undo.js'
import { LocalState } from './localstate.js'
import { Transport, wsUrl } from './transport.js'

// The public API of the module, as before it was split.
export { diffOp, newKey, uuid, wsUrl }

export const PROTOCOL_VERSION = 2

const DEFAULTS = {
  minBackoff: 250,
  maxBackoff: 5000,
  selectionThrottle: 50,
  undoMergeInterval: 500, // ms: consecutive typing within this is one undo step
  maxUndo: 500, // undo steps kept (each is transformed past every later op)
  rateLimitPause: 1000, // ms before resending an op refused with rate_limited
  storageFullPause: 5000, // ms before resending an op refused with storage_full
  helloTimeout: 10000, // ms from open to hello before giving up on a connection
  ackTimeout: 20000, // ms without an ack for the op in flight before reconnecting
  persistDelay: 500, // ms: debounce of storage writes that are not critical
  leaseTtl: 60000, // ms: how long another instance's claim on the stored state holds
  maxFrameBytes: 1000000, // the server accepts frames up to 1 MiB
  storagePrefix: 'tandem:'
}

/** connect opens a client for document docId on the server at baseUrl
 * ("http://host:port", "https://host/prefix", "" for the page's own origin). */
export function connect (baseUrl, docId, options = {}) {
  return new TandemClient(baseUrl, docId, options)
}

// ---------------------------------------------------------------------------

function utf8Length (s) {
  if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(s).length
  return s.length * 3
}

function cleanSel (sels, len) {
  if (!Array.isArray(sels)) return []
  const out = []
  for (const s of sels) {
    if (!s || typeof s !== 'object') continue
    let { anchor, head } = s
    if (!Number.isInteger(anchor) || !Number.isInteger(head)) continue
    anchor = Math.max(0, Math.min(anchor, len))
    head = Math.max(0, Math.min(head, len))
    out.push({ anchor, head })
    if (out.length === 64) break
  }
  return out
}

export class TandemClient {
  constructor (baseUrl, docId, options = {}) {
    if (typeof docId !== 'string' || docId === '') throw new TypeError('tandem: docId must be a non-empty string')
    this.docId = docId
    this.baseUrl = baseUrl || ''
    this.options = { ...DEFAULTS, ...options }
    const WS = options.WebSocket || globalThis.WebSocket
    if (typeof WS !== 'function') throw new Error('tandem: no WebSocket implementation; pass options.WebSocket')

    let type = null
    if (options.type !== undefined && options.type !== null) {
      type = lookup(options.type)
      if (!type) throw new TypeError(`tandem: unknown document type ${JSON.stringify(options.type)} (plain or rich)`)
    }
    this._typeChosen = !!type // else the hello's doctype decides
    this._s = new DocState(type || plain)
    this.status = 'connecting'
    /** Map client-id → {client, user, name, color, sel} (sel in this.text's code points). */
    this.peers = new Map()
    /** This connection's client id (from hello). */
    this.client = null
    this.title = ''
    this.src = null // our source id: derived by the server from _srcKey, learned from hello
    this._srcKey = null // the secret that owns src (kept with the unsent edits)

    this._seq = 0 // the last seq allocated
    this._limbo = null // awaiting the verdict on the in-flight op after a text hello
    this._listeners = new Map()
    this._helloDone = false
    this._forceText = false
    this._catchingUp = false
    this._timers = new Map()
    const o = this.options
    this._t = new Transport({
      WebSocket: WS, baseUrl: this.baseUrl, docId, minBackoff: o.minBackoff, maxBackoff: o.maxBackoff,
      helloTimeout: o.helloTimeout, getToken: o.getToken, token: o.token
    }, {
      params: () => {
        const p = { key: this._srcKey, user: o.user, name: o.name, color: o.color }
        if (this._s.rev !== null && !this._forceText) p.rev = this._s.rev
        return p
      },
      frame: data => this._onFrame(data),
      closed: (code, reason, gen) => this._onClose(code, reason, gen),
      status: s => (s === undefined ? this.status : this._setStatus(s)),
      error: (code, message) => this._error(code, message),
      noHello: () => this._resync(false, 'no hello')
    })
    this._closed = false
    this._myClients = new Set() // this client's connection ids, old ones included

    this._selection = null // our selections, in text coordinates
    this._selSentAt = -Infinity
    this._selDirty = false
    this._selApprox = false

    this._newHistory()

    this._storage = options.storage || null
    this._instance = uuid()
    this._persistOK = false
    this._srcSwitch = false
    this._storageWarned = false
    this._load()
    if (options.browser !== false) this._removeBrowserHandlers = installBrowserHandlers(this)
    this._open()
  }

  /** The document as the user sees it: the server's plus the local edits
   * not yet acknowledged. A string for plain text, a Delta (an array of
   * inserts) for rich text. */
  get doc () { return this._s.doc }
  /** text is doc (the name from when every document was plain text). */
  get text () { return this._s.doc }
  /** The last server revision applied (null before the first hello). */
  get rev () { return this._s.rev }
  /** The document type's name: 'plain' or 'rich'. */
  get type () { return this._s.type.name }

  _newHistory () {
    this._history = new UndoHistory({ mergeInterval: this.options.undoMergeInterval, max: this.options.maxUndo, type: this._s.type })
  }

  // The current connection and its generation (transport.js).
  get _ws () { return this._t.ws }
  get _gen () { return this._t.gen }

  /** Local ops (edits) not yet acknowledged by the server. */
  get pending () { return this._s.pending }

  // The pending edits (docstate.js).
  get _inflight () { return this._s.inflight }
  get _buffer () { return this._s.buffer }

  /** Whether this client keeps its unsent edits in options.storage (false
   * without storage, or when another tab of the same document holds it). */
  get persistent () { return this._persistOK }

  /** connected is true from the server's hello to the connection's end:
   * peers and selections are live only then (status can still say
   * 'connected' while a dropped connection's events are delivered). */
  get connected () { return this._helloDone && !this._closed }

  get canUndo () { return this._history.canUndo }
  get canRedo () { return this._history.canRedo }

  // ----- events

  on (event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set())
    this._listeners.get(event).add(fn)
    return this
  }

  off (event, fn) {
    const set = this._listeners.get(event)
    if (set) set.delete(fn)
    return this
  }

  _emit (event, ...args) {
    const set = this._listeners.get(event)
    if (!set) return
    for (const fn of [...set]) {
      try {
        fn(...args)
      } catch (err) {
        // A listener's bug must not break the state machine; report it.
        setTimeout(() => { throw err }, 0)
      }
    }
  }

  // _trace reports the state machine's decisions to options.trace (for
  // debugging and tests).
  _trace (what, detail) {
    if (typeof this.options.trace === 'function') {
      try { this.options.trace(what, detail) } catch {}
    }
  }

  _error (code, message, reason) {
    this._emit('error', reason === undefined ? { code, message } : { code, message, reason })
  }

  _setStatus (s) {
    if (this.status === s) return
    this.status = s
    this._emit('status', s)
  }

  // ----- timers

  _timer (name, ms, fn) {
    this._clearTimer(name)
    const t = setTimeout(() => {
      this._timers.delete(name)
      fn()
    }, Math.max(0, ms))
    this._timers.set(name, t)
  }

  _clearTimer (name) {
    const t = this._timers.get(name)
    if (t !== undefined) {
      clearTimeout(t)
      this._timers.delete(name)
    }
  }

  // ----- the public API

  /** edit applies a local edit (an op on this.doc, in the document type's
   * format) at once and sends it. It throws (an Error with the type's code:
   * invalid_op, too_long, delete_mismatch for plain text, past_end and the
   * others of rich.js for rich text) if op does not apply to this.doc. With {undoable: false} the edit does not become
   * an undo step (undo passes over it, as over others' edits). */
  edit (op, { undoable = true } = {}) {
    this._localEdit(op, undoable ? 'edit' : 'silent')
  }

  /** setSelection sets this client's selections ([{anchor, head}] in code
   * points of this.doc), sent to the others (throttled). */
  setSelection (sels) {
    if (this._closed) return
    if (sels && !Array.isArray(sels)) sels = [sels]
    this._selection = cleanSel(sels, this._s.len)
    this._selDirty = true
    this._scheduleSel()
  }

  /** undo undoes this client's last edit (still in place after others'
   * edits); false if there is nothing to undo. */
  undo () {
    const op = this._history.nextUndo()
    if (op) this._localEdit(op, 'undo')
    return !!op
  }

  redo () {
    const op = this._history.nextRedo()
    if (op) this._localEdit(op, 'redo')
    return !!op
  }

  /** announceRestore tells the others in the document that this client
   * restored revision rev (after making the edit that does it): their
   * clients emit 'restored'. Best effort: false when not connected. */
  announceRestore (rev) {
    if (!this._ws || !this._helloDone || !Number.isInteger(rev) || rev < 0 || this._s.rev === null) return false
    try {
      this._ws.send(JSON.stringify({ type: 'restored', rev: Math.min(rev, this._s.rev) }))
      return true
    } catch {
      return false
    }
  }

  /** retry connects at once when the client is waiting to reconnect (a
   * "Retry now" button, the page coming back into view): the backoff
   * starts over. False if it is connected or closed. */
  retry () {
    if (this._closed || this._helloDone) return false
    this._dropSocket() // an attempt that hangs is abandoned
    this._t.now()
    return true
  }

  /** close ends the client: the connection is closed, unsent edits stay in
   * storage for the next client of this document. */
  close () {
    if (this._closed) return
    this._persistNow()
    this._closed = true
    for (const name of [...this._timers.keys()]) this._clearTimer(name)
    if (this._leaseTimer) clearInterval(this._leaseTimer)
    this._releaseLease()
    this._dropSocket()
    this._t.close()
    if (this._removeBrowserHandlers) this._removeBrowserHandlers()
    this._setStatus('closed')
  }

  // ----- local edits

  _localEdit (op, origin) {
    const done = this._s.local(op) // throws on an op that does not apply
    if (!done) return
    op = done.op
    const t = this._s.type
    this._history.record(op, done.inverse, origin)
    for (const p of this.peers.values()) p.sel = p.sel.map(s => t.transformSelection(s, op, 'left'))
    if (this._selection) this._selection = this._selection.map(s => t.transformSelection(s, op, 'right'))
    this._persistSoon()
    this._emit('text', this._s.doc, { remote: false, op, origin })
    this._sendInflight()
  }

  // _externalChange updates everything that lives in the document's
  // coordinates after op (made by someone else, or by a resync) was applied
  // to the document.
  _externalChange (op, info) {
    const t = this._s.type
    for (const p of this.peers.values()) {
      const side = info.author !== undefined && p.client === info.author ? 'right' : 'left'
      p.sel = p.sel.map(s => t.transformSelection(s, op, side))
    }
    if (this._selection) this._selection = this._selection.map(s => t.transformSelection(s, op, 'left'))
    this._history.transform(op)
    this._persistSoon()
    this._emit('text', this._s.doc, { remote: true, op, origin: info.origin, client: info.author })
  }

  // ----- the connection

  _open () { this._t.open() }

  // _dropSocket forgets the current connection (closing it if open) and
  // what belonged to it.
  _dropSocket () {
    this._t.drop()
    this._helloDone = false
    this._limbo = null
    this._clearTimer('ack')
    this._clearTimer('rate')
    if (this.peers.size > 0) {
      this.peers = new Map()
      this._emit('presence', this.peers)
    }
  }

  _scheduleReconnect () { this._t.later() }

  // _resync drops the connection and reconnects (without rev when noRev:
  // the server then sends the text).
  _resync (noRev, why) {
    if (this._closed) return
    if (noRev) this._forceText = true
    this._trace('resync', why)
    this._dropSocket()
    this._scheduleReconnect()
  }

  _stop (code, message) {
    this._error(code, message)
    this.close()
  }

  _onClose (code, reason, gen) {
    const inf = this._inflight
    const sentHere = inf && inf.conn === gen
    this._dropSocket()
    if (this._closed) return
    if (code === 4004) {
      this._stop('not_found', reason || 'the document does not exist')
      return
    }
    if (code === 1008) {
      // A refusal that reconnecting the same way cannot cure (an over-long
      // name, say); the error before it said why. A refused source was
      // handled there already (a new source, and a new connection).
      this._stop('refused', `The server refused the connection (${reason || 'policy'}).`)
      return
    }
    if (code === 1009 && sentHere && this._inflight === inf) {
      this._dropInflight('too_large', 'an edit was too large to send and was undone')
    }
    this._scheduleReconnect()
  }

  _onFrame (data) {
    if (typeof data !== 'string') {
      if (data instanceof ArrayBuffer) data = new TextDecoder().decode(data)
      else data = String(data)
    }
    let msg
    try {
      msg = JSON.parse(data)
    } catch {
      this._resync(false, 'unparseable frame')
      return
    }
    const msgs = Array.isArray(msg) ? msg : [msg]
    const gen = this._gen
    for (const m of msgs) {
      if (gen !== this._gen || this._closed) return
      this._onMessage(m)
    }
  }

  _onMessage (m) {
    if (!m || typeof m !== 'object') return this._resync(false, 'bad message')
    if (!this._helloDone) {
      if (m.type === 'hello') return this._onHello(m)
      if (m.type === 'error') return this._onError(m)
      return this._resync(false, 'message before hello')
    }
    switch (m.type) {
      case 'ack': return this._onAck(m)
      case 'op': return this._onOp(m, false)
      case 'sel': return this._onSel(m)
      case 'join': return this._onJoin(m)
      case 'leave': return this._onLeave(m)
      case 'restored':
        if (typeof m.client === 'string' && Number.isInteger(m.rev)) {
          const p = this.peers.get(m.client)
          this._emit('restored', { client: m.client, rev: m.rev, name: p ? (p.name || p.user || '') : '' })
        }
        return
      case 'title':
        if (typeof m.title === 'string' && m.title !== this.title) {
          this.title = m.title
          this._persistSoon()
          this._emit('title', m.title)
        }
        return
      case 'error': return this._onError(m)
      case 'hello': return this._resync(false, 'second hello')
      default: // unknown messages are ignored (forward compatibility)
    }
  }

  _onHello (m) {
    if (!Number.isInteger(m.rev) || m.rev < 0) return this._resync(true, 'bad hello')
    const doctype = typeof m.doctype === 'string' ? m.doctype : 'plain'
    if (doctype !== this._s.type.name) {
      const t = lookup(doctype)
      if (!t || this._typeChosen || this._s.rev !== null || this._s.inflight) {
        // Stop rather than reconnect forever (the document would never
        // arrive in a form this client edits).
        this._error('unsupported_type', `this is a ${doctype} document; this editor edits ${this._s.type.name === 'plain' ? 'plain' : this._s.type.name} text (read it with the API: /api/docs/${encodeURIComponent(this.docId || '')}/export)`)
        this.close()
        return
      }
      // The first hello of a client that let the server decide.
      this._typeChosen = true
      this._s = new DocState(t)
      this._newHistory()
      if (this._local) this._local.type = t
    }
    this._t.hello()
    const gen = this._gen
    this._helloDone = true
    this.client = typeof m.client === 'string' ? m.client : null
    if (this.client) this._myClients.add(this.client)
    if (typeof m.title === 'string' && m.title !== this.title) {
      this.title = m.title
      this._emit('title', m.title)
    }
    if (typeof m.src === 'string' && m.src !== '' && m.src !== this.src) {
      this.src = m.src // derived from our key: the seqs we counted stay ours
      this._persistNow()
    }
    const peers = Array.isArray(m.peers) ? m.peers : []
    if (Array.isArray(m.ops) && Number.isInteger(m.from)) {
      if (this._s.rev === null || m.from !== this._s.rev) return this._resync(true, `catch-up from ${m.from}, at ${this._s.rev}`)
      this._catchingUp = true
      try {
        for (const o of m.ops) {
          this._onOp(o, true)
          if (gen !== this._gen) return
        }
      } finally {
        this._catchingUp = false
      }
      if (this._s.rev !== m.rev) return this._resync(true, `catch-up ended at ${this._s.rev}, hello says ${m.rev}`)
      this._forceText = false
      this._setPeers(peers)
    } else if (this._s.type.isDocument(m[this._s.type.field])) {
      const content = m[this._s.type.field]
      this._forceText = false
      if (!this._inflight) {
        this._replaceText(content, m.rev)
        this._setPeers(peers)
      } else if (this._s.rev === null) {
        this._rebaseOnto(content, m.rev, peers)
        if (gen !== this._gen) return
      } else {
        // See "Text hellos" above: ask the server about the in-flight op.
        this._limbo = { text: content, rev: m.rev, helloRev: m.rev, peers: peers.map(p => ({ ...p, sel: cleanSel(p.sel, Infinity) })) }
        this._trace('limbo', { rev: this._s.rev, helloRev: m.rev, seq: this._inflight.seq })
        this._inflight.conn = 0
        this._sendInflight()
      }
    } else {
      return this._resync(true, `hello without ${this._s.type.field} or ops`)
    }
    this._setStatus('connected')
    if (gen !== this._gen || this._limbo) return
    this._afterSync()
  }

  // _afterSync runs once the connection is usable: sends what waits.
  _afterSync () {
    this._sendInflight()
    if (this._selection) this._selDirty = true
    this._scheduleSel()
    if (!this._inflight) this._emit('synced')
    this._persistSoon()
  }

  // _replaceText takes the server's document when nothing is pending.
  _replaceText (doc, rev) {
    const op = this._s.replace(doc, rev)
    if (!op) {
      this._persistSoon()
      return
    }
    this._externalChange(op, { origin: 'resync' })
  }

  // _rebaseOnto re-expresses the pending edits (relative to _base) on the
  // server's text at rev, by transforming them against a diff.
  _rebaseOnto (serverDoc, rev, peers) {
    this._trace('rebase', { rev, pending: this.pending })
    const r = this._s.rebase(serverDoc, rev)
    this._limbo = null
    if (r.change) this._externalChange(r.change, { origin: 'resync' })
    this._setPeers(peers)
    this._persistNow()
    if (r.conflict) {
      this._error('conflict', 'The connection could not catch up and your unsent edits could not be merged with the others\' changes: your version of the document was sent as one edit. Check the document.')
    } else if (!this._s.type.isNoop(r.pendingBefore) && r.moved) {
      this._error('rebased', `The connection could not catch up on the edit history: your ${r.count} unsent edit(s) were re-applied to the latest version of the document. Check them.`)
    }
  }

  _onOp (m, catchUp) {
    if (!Number.isInteger(m.rev) || !Array.isArray(m.op)) return this._resync(false, 'bad op message')
    if (this._limbo) return this._limboOp(m)
    if (m.rev !== this._s.rev + 1) return this._resync(false, `op at rev ${m.rev}, client at ${this._s.rev}`)
    const inf = this._inflight
    if (inf && inf.seq !== null && m.src === this.src && m.seq === inf.seq) {
      // Our in-flight op, committed (in a catch-up): its ack.
      return this._onAck({ type: 'ack', seq: m.seq, rev: m.rev })
    }
    let s
    try {
      s = this._s.remote(m.op, m.rev)
    } catch (err) {
      return this._resync(true, `op ${m.rev} does not apply: ${err.message}`)
    }
    this._externalChange(s, { origin: 'remote', author: m.client })
  }

  _onAck (m) {
    if (this._limbo) return this._limboAck(m)
    const inf = this._inflight
    if (!inf || inf.seq === null || m.seq !== inf.seq) {
      if (Number.isInteger(m.rev) && this._s.rev !== null && m.rev <= this._s.rev) return // a stale duplicate
      return this._resync(false, `unexpected ack ${m.seq}`)
    }
    if (m.rev !== this._s.rev + 1) return this._resync(false, `ack at rev ${m.rev}, client at ${this._s.rev}`)
    let consistent
    try {
      consistent = this._s.acked(m.rev)
    } catch (err) {
      return this._resync(true, `acknowledged op does not apply: ${err.message}`)
    }
    this._clearTimer('ack')
    this._clearTimer('rate')
    // Cannot happen unless state was corrupted: never let it stand.
    if (!consistent) return this._resync(true, 'document and base differ after ack')
    // Not critical: a state that still shows the op in flight is resolved
    // by the catch-up after a reload (which holds the op as ours).
    this._persistSoon()
    if (this._catchingUp) return
    this._sendInflight()
    if (!this._inflight) {
      this._emit('synced')
      if (this._selApprox) {
        this._selDirty = true
        this._scheduleSel()
      }
    }
  }

  // ----- text hello verdicts (see the top of the file)

  _limboOp (m) {
    const L = this._limbo
    if (m.rev !== L.rev + 1) return this._resync(false, `op at rev ${m.rev}, server text at ${L.rev}`)
    const t = this._s.type
    try {
      L.text = t.apply(L.text, m.op)
    } catch (err) {
      return this._resync(true, `op ${m.rev} does not apply: ${err.message}`)
    }
    L.rev = m.rev
    for (const p of L.peers) {
      const side = p.client === m.client ? 'right' : 'left'
      p.sel = p.sel.map(s => t.transformSelection(s, m.op, side))
    }
  }

  _limboAck (m) {
    const L = this._limbo
    const inf = this._inflight
    if (!inf || m.seq !== inf.seq || !Number.isInteger(m.rev)) return this._resync(false, `unexpected ack ${m.seq}`)
    let base1
    try {
      // Whatever the verdict, the in-flight op is committed: what is left
      // pending is the buffer, relative to base1.
      base1 = this._s.committedAside()
    } catch (err) {
      return this._resync(true, `in-flight op does not apply: ${err.message}`)
    }
    this._clearTimer('ack')
    this._clearTimer('rate')
    this._trace('verdict', m.rev <= L.helloRev ? 'committed before' : 'committed now')
    if (m.rev === this._s.rev + 1 && this._inflight) {
      // Committed right on its base, unchanged: base1 is the server's text at
      // m.rev, so the buffer is based on a real revision and the server can
      // transform it exactly. Ask again, about it.
      this._s.rev = m.rev
      if (m.rev === L.rev + 1) {
        L.text = base1
        L.rev = m.rev
      }
      this._sendInflight()
    } else if (m.rev <= L.helloRev) {
      // Committed before the hello: the server's text holds it.
      this._rebaseOnto(L.text, L.rev, L.peers)
      this._afterSync()
    } else if (m.rev === L.rev + 1) {
      // Committed now, in a form the server chose: fetch the text holding it.
      this._s.rev = null
      this._limbo = null
      this._persistNow()
      this._resync(true, 'in-flight op committed after a text hello')
    } else {
      this._s.rev = null
      this._limbo = null
      this._persistNow()
      this._resync(true, `ack at rev ${m.rev}, server text at ${L.rev}`)
    }
  }

  _limboRejected () {
    const L = this._limbo
    this._trace('verdict', 'not committed')
    this._clearTimer('ack')
    this._clearTimer('rate')
    this._inflight.conn = 0
    this._rebaseOnto(L.text, L.rev, L.peers)
    this._afterSync()
  }

  // ----- sending

  _sendInflight () {
    const inf = this._inflight
    const ws = this._ws
    if (!inf || !ws || !this._helloDone || inf.conn === this._gen || this._s.rev === null || this._closed) return
    if (inf.seq === null) {
      // Never sent: it can take the buffer along (after offline editing,
      // the whole session's edits go as one op, transformed exactly by the
      // server).
      this._s.absorbBuffer()
      if (this._s.type.isNoop(inf.op)) {
        // Edits that cancelled out: the server takes no empty op.
        this._s.inflight = null
        this._emit('synced')
        return
      }
      if (this._srcSwitch) {
        // Another instance took over this document's stored state (and
        // source): continue under a source of our own.
        this._srcSwitch = false
        this._newSource()
        this._resync(false, 'source switch')
        return
      }
      inf.seq = this._nextSeq()
      // Critical: the op is stored with its seq before it can reach the
      // server, so that a reload resends this op under this seq, never
      // another one.
      this._persistNow()
    }
    const msg = JSON.stringify({ type: 'op', rev: this._s.rev, seq: inf.seq, op: inf.op })
    if (msg.length * 3 > this.options.maxFrameBytes && utf8Length(msg) > this.options.maxFrameBytes) {
      if (this._limbo) {
        this._limboRejected()
        return
      }
      this._dropInflight('too_large', 'an edit was too large to send and was undone')
      return
    }
    try {
      ws.send(msg)
    } catch {
      this._resync(false, 'send failed')
      return
    }
    inf.conn = this._gen
    this._timer('ack', this.options.ackTimeout, () => this._resync(false, 'no ack'))
  }

  _nextSeq () {
    let stored = 0
    if (this._persistOK) {
      try {
        stored = this._local.readSeq(this._srcKey)
      } catch {}
    }
    this._seq = Math.max(this._seq, stored) + 1
    return this._seq
  }

  // _dropInflight undoes the in-flight op locally (the server refused it for
  // good) and tells the user.
  _dropInflight (code, message, reason) {
    const inf = this._inflight
    if (!inf) return
    let undo
    try {
      undo = this._s.dropInflight()
    } catch {
      this._inflight.conn = 0
      this._resync(true, 'cannot undo a refused op')
      return
    }
    this._clearTimer('ack')
    this._clearTimer('rate')
    this._externalChange(undo, { origin: 'revert' })
    this._persistNow()
    this._error(code, message, reason)
    this._sendInflight()
    if (!this._inflight) this._emit('synced')
  }

  _onError (m) {
    const code = typeof m.code === 'string' ? m.code : 'error'
    const message = typeof m.message === 'string' ? m.message : code
    const inf = this._inflight
    const forInflight = !!inf && inf.seq !== null && m.seq === inf.seq
    switch (code) {
      case 'storage_full':
        // The server takes no edits until its disk has room: keep the op
        // (and everything typed meanwhile) and try again later.
        if (forInflight) {
          inf.conn = 0
          this._clearTimer('ack')
          const p = this.options.storageFullPause
          this._error(code, message)
          this._timer('rate', p + Math.random() * p, () => this._sendInflight())
        }
        return
      case 'rate_limited':
        if (forInflight) {
          inf.conn = 0
          this._clearTimer('ack')
          // The server's hint (when its budget has the tokens) if it gave one.
          const p = Number.isFinite(m.retryAfter) && m.retryAfter > 0 ? m.retryAfter : this.options.rateLimitPause
          this._timer('rate', p + Math.random() * p / 4, () => this._sendInflight())
        } else if (m.seq === undefined) {
          this._selDirty = true
          this._timer('sel', this.options.rateLimitPause, () => this._flushSelection())
        }
        return
      case 'too_far_behind':
        // Too much work for the server to transform from where it was
        // based: catch up (reconnect with rev) and send it again, rebased.
        if (forInflight) {
          inf.conn = 0
          this._clearTimer('ack')
          this._resync(false, code)
        }
        return
      case 'rev_ahead':
      case 'rev_too_old':
      case 'invalid_op':
      case 'too_large':
      case 'rejected': // the application's rules refused it (m.reason says which)
        if (forInflight && this._limbo) {
          // The verdict: it was not committed.
          this._limboRejected()
          return
        }
        if (forInflight && code === 'invalid_op' && this._s.type.isNoop(inf.op)) {
          // Others' edits took away everything our op did, and the server
          // had not committed it: nothing is lost, go on.
          this._clearTimer('ack')
          this._s.promoteBuffer()
          this._persistNow()
          this._sendInflight()
          if (!this._inflight) this._emit('synced')
          return
        }
        if (forInflight && (code === 'invalid_op' || code === 'too_large' || code === 'rejected')) {
          this._dropInflight(code, `The server refused an edit (${message}); it was undone.`, typeof m.reason === 'string' ? m.reason : undefined)
          if (code === 'invalid_op') this._resync(false, 'invalid_op')
          return
        }
        if (forInflight) inf.conn = 0
        if (forInflight || code === 'rev_ahead') this._resync(code !== 'invalid_op', code)
        return
      case 'source_denied':
        // Our key was refused (stored by an older client?): continue under
        // a new source; unsent edits go as new ops.
        this._error(code, message)
        this._newSource()
        if (inf) {
          inf.seq = null
          inf.conn = 0
        }
        this._persistNow()
        this._resync(false, 'source denied')
        return
      case 'not_found':
      case 'forbidden':
        this._stop(code, message)
        return
      case 'internal':
        if (forInflight) inf.conn = 0
        this._error(code, message)
        this._resync(false, 'internal')
        return
      case 'bad_seq':
      case 'bad_message': // servers before bad_seq answered a stale seq so
        this._error(code, message)
        if (forInflight) {
          // The server has a newer seq from our source and never committed
          // this one (a lost storage write?): continue under a new source.
          this._newSource()
          inf.seq = null
          inf.conn = 0
          this._persistNow()
          this._resync(false, 'bad seq')
        }
        return
      default:
        this._error(code, message)
    }
  }

  // ----- presence

  _scheduleSel () {
    if (!this._selDirty || this._closed) return
    const wait = this._selSentAt + this.options.selectionThrottle - Date.now()
    if (wait <= 0) this._flushSelection()
    else if (!this._timers.has('sel')) this._timer('sel', wait, () => this._flushSelection())
  }

  _flushSelection () {
    if (!this._selDirty || !this._selection || !this._ws || !this._helloDone || this._limbo || this._s.rev === null) return
    let sel, approx
    try {
      ({ sel, approx } = this._s.toServer(this._selection))
    } catch {
      return
    }
    try {
      this._ws.send(JSON.stringify({ type: 'sel', rev: this._s.rev, sel }))
    } catch {
      return
    }
    this._selSentAt = Date.now()
    this._selDirty = false
    this._selApprox = approx
  }

  // _toLocal maps selections at rev (the server's coordinates) into the
  // document.
  _toLocal (sels) {
    return cleanSel(this._s.toLocal(cleanSel(sels, Infinity)), this._s.len)
  }

  _setPeers (list) {
    const peers = new Map()
    for (const p of list) {
      if (!p || typeof p.client !== 'string' || this._myClients.has(p.client)) continue
      peers.set(p.client, {
        client: p.client,
        user: String(p.user ?? ''),
        name: String(p.name ?? ''),
        color: String(p.color ?? ''),
        sel: this._toLocal(p.sel)
      })
    }
    this.peers = peers
    this._emit('presence', this.peers)
  }

  _onSel (m) {
    if (typeof m.client !== 'string' || this._myClients.has(m.client)) return
    if (this._limbo) {
      let p = this._limbo.peers.find(x => x.client === m.client)
      if (!p) this._limbo.peers.push(p = { client: m.client })
      p.sel = cleanSel(m.sel, Infinity)
      return
    }
    let p = this.peers.get(m.client)
    if (!p) {
      p = { client: m.client, user: '', name: '', color: '', sel: [] }
      this.peers.set(m.client, p)
    }
    // The server sends a selection at its latest revision, which is ours:
    // every op before it has reached us.
    p.sel = m.rev === this._s.rev ? this._toLocal(m.sel) : cleanSel(m.sel, this._s.len)
    this._emit('presence', this.peers)
  }

  _onJoin (m) {
    if (typeof m.client !== 'string' || this._myClients.has(m.client)) return
    const p = { client: m.client, user: String(m.user ?? ''), name: String(m.name ?? ''), color: String(m.color ?? ''), sel: [] }
    if (this._limbo) {
      this._limbo.peers = this._limbo.peers.filter(x => x.client !== m.client)
      this._limbo.peers.push(p)
      return
    }
    this.peers.set(m.client, p)
    this._emit('presence', this.peers)
  }

  _onLeave (m) {
    if (this._limbo) {
      this._limbo.peers = this._limbo.peers.filter(x => x.client !== m.client)
      return
    }
    if (this.peers.delete(m.client)) this._emit('presence', this.peers)
  }

  // ----- storage

  _releaseLease () {
    if (this._local && this._persistOK) this._local.releaseLease()
  }

  _renewLease () {
    if (!this._persistOK || this._closed) return
    if (!this._local.renewLease()) {
      // Someone else claimed it (two tabs raced, or this one slept past the
      // lease): stop writing the shared state and leave the shared source.
      this._persistOK = false
      this._srcSwitch = true
    }
  }

  _load () {
    const st = this._storage
    if (st) this._local = new LocalState(st, this.options.storagePrefix, this.docId, this._instance, this.options.leaseTtl, this._s.type)
    if (st && this._local.claimLease()) {
      this._persistOK = true
      const every = Math.max(1000, Math.floor(this.options.leaseTtl / 3))
      this._leaseTimer = setInterval(() => this._renewLease(), every)
      if (this._leaseTimer && typeof this._leaseTimer.unref === 'function') this._leaseTimer.unref()
      const stored = lookup(this._local.storedType())
      if (stored && !this._typeChosen && stored !== this._s.type) {
        // A reload of a client that lets the server decide: the unsent
        // edits kept are of the document's type.
        this._s = new DocState(stored)
        this._local.type = stored
        this._newHistory()
      }
      const { record: r, lost } = this._local.load()
      if (lost) setTimeout(() => this._error('storage', 'The unsent edits kept for this document could not be read and were dropped.'), 0)
      // v1 (protocol 1) kept a source without a key: its unsent edits are
      // kept, but go under a new source as never sent.
      const v1 = r && r.v === 1 && typeof r.src === 'string' && r.src !== ''
      if (r && ((r.v === 2 && validKey(r.key)) || v1)) {
        if (v1) {
          this._newSource()
        } else {
          this._srcKey = r.key
          this.src = typeof r.src === 'string' ? r.src : null
          this._seq = Number.isInteger(r.seq) ? r.seq : 0
          this._seq = Math.max(this._seq, this._local.readSeq(r.key))
        }
        if (r.base !== null && r.base !== undefined && this._s.type.isDocument(r.base)) {
          try {
            const rev = Number.isInteger(r.rev) ? r.rev : null
            const inflight = r.inflight && Array.isArray(r.inflight.op)
              ? { op: r.inflight.op, seq: !v1 && Number.isInteger(r.inflight.seq) ? r.inflight.seq : null, count: r.inflight.count }
              : null
            const buffer = inflight && r.buffer && Array.isArray(r.buffer.op) ? r.buffer : null
            this._s.restore(r.base, rev, inflight, buffer)
            if (typeof r.title === 'string') this.title = r.title
          } catch {
            setTimeout(() => this._error('storage', 'The unsent edits kept for this document could not be read and were dropped.'), 0)
          }
        }
      }
    }
    if (!this._srcKey) this._newSource()
  }

  // _newSource starts a new source: a new secret key (the server derives
  // the source id from it and tells it in hello), its seqs from 1.
  _newSource () {
    this._srcKey = newKey()
    this.src = null
    this._seq = 0
  }

  _record () {
    const inf = this._inflight
    return {
      key: this._srcKey,
      src: this.src,
      seq: this._seq,
      rev: this._s.rev,
      title: this.title,
      inflight: inf ? { op: inf.op, seq: inf.seq, count: inf.count } : null,
      buffer: this._buffer ? { op: this._buffer.op, count: this._buffer.count } : null,
      time: Date.now()
    }
  }

  _persistSoon () {
    if (!this._persistOK || this._timers.has('persist')) return
    this._timer('persist', this.options.persistDelay, () => this._persistNow())
  }

  _persistNow () {
    this._clearTimer('persist')
    if (!this._persistOK || this._closed) return
    this._local.writeSeq(this._srcKey, this._seq)
    try {
      this._local.save(this._record(), this._s.base)
    } catch (err) {
      if (!this._storageWarned) {
        this._storageWarned = true
        this._error('storage', `Unsent edits cannot be kept in this browser's storage (${err && err.message ? err.message : err}); they are lost if the page is closed while offline.`)
      }
    }
  }
}

/** installBrowserHandlers connects client to the page: going online
 * reconnects at once, going offline drops the connection, a page coming
 * back into view retries, a page hidden writes the unsent edits and
 * releases the storage lease, a page restored from the back-forward cache
 * claims it again. It returns the function that removes them. connect
 * calls it unless options.browser is false; outside a browser it does
 * nothing. */
export function installBrowserHandlers (client) {
  if (typeof window === 'undefined' || typeof window.addEventListener !== 'function') return () => {}
  const onOnline = () => {
    if (client._closed || client._helloDone) return
    // Whatever was trying to connect while offline may hang: start over.
    client._dropSocket()
    client._t.now()
  }
  const onOffline = () => {
    if (client._closed) return
    client._dropSocket()
    client._t.offline()
  }
  const onVisible = () => {
    if (document.visibilityState === 'visible' && client.status === 'reconnecting') client.retry()
  }
  const onPageHide = () => {
    client._persistNow()
    client._releaseLease()
  }
  const onPageShow = e => {
    if (client._closed || !client._storage || !e || !e.persisted) return
    if (client._persistOK && !client._local.claimLease()) {
      client._persistOK = false
      client._srcSwitch = true
    }
  }
  window.addEventListener('online', onOnline)
  window.addEventListener('offline', onOffline)
  window.addEventListener('pagehide', onPageHide)
  window.addEventListener('pageshow', onPageShow)
  if (typeof document !== 'undefined') document.addEventListener('visibilitychange', onVisible)
  return () => {
    window.removeEventListener('online', onOnline)
    window.removeEventListener('offline', onOffline)
    window.removeEventListener('pagehide', onPageHide)
    window.removeEventListener('pageshow', onPageShow)
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', onVisible)
  }
}
