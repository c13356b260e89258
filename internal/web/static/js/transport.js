// The browser client's connection to a document: one WebSocket at a time,
// opened with a fresh token when the page gives one, reconnected with
// jittered exponential backoff (starting over once a connection proved
// stable), given up when no hello comes in time, and held while the
// browser says it is offline. It knows nothing of ops: frames go to the
// client (client.js), which says when a connection is usable (hello) and
// when to drop it. No dependencies.

/** wsUrl builds the WebSocket address of a document. */
export function wsUrl (baseUrl, docId, params = {}) {
  let base = baseUrl
  if (!base) {
    if (typeof location === 'undefined') throw new Error('tandem: no baseUrl and no location')
    base = location.origin
  }
  const u = new URL(base, typeof location !== 'undefined' ? location.href : undefined)
  if (u.protocol === 'https:') u.protocol = 'wss:'
  else if (u.protocol === 'http:') u.protocol = 'ws:'
  const prefix = u.pathname.replace(/\/+$/, '')
  u.pathname = `${prefix}/api/docs/${encodeURIComponent(docId)}/ws`
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  }
  u.search = q.toString()
  u.hash = ''
  return u.toString()
}

export function isOffline () {
  return typeof navigator !== 'undefined' && navigator && navigator.onLine === false
}

export class Transport {
  /** o: {WebSocket, baseUrl, docId, minBackoff, maxBackoff, helloTimeout,
   * getToken, token}. on: the client's side:
   *   params()            the query of the next connection (key, rev, user…)
   *   frame(data)         a frame of the current connection
   *   closed(code, reason, gen) the connection gen closed (it is dropped)
   *   status()/status(s)  the client's status, read and set (the transport
   *                       sets offline, connecting and reconnecting)
   *   error(code, message)
   *   noHello()           no hello within helloTimeout */
  constructor (o, on) {
    this.o = o
    this.on = on
    this.ws = null
    this.gen = 0 // counts connections: a frame of an older one is ignored
    this.attempt = 0
    this.everConnected = false
    this._token = null
    this._asking = false // a getToken call is under way
    this._timers = new Map()
    this._closed = false
  }

  _timer (name, ms, fn) {
    this._clear(name)
    this._timers.set(name, setTimeout(() => { this._timers.delete(name); fn() }, ms))
  }

  _clear (name) {
    const t = this._timers.get(name)
    if (t !== undefined) clearTimeout(t)
    this._timers.delete(name)
  }

  /** open connects now, unless a connection is open or the browser is
   * offline (then it waits for 'online', or maxBackoff). */
  open () {
    this._clear('reconnect')
    if (this._closed || this.ws) return
    const o = this.o
    if (isOffline()) {
      this.on.status('offline')
      this._timer('reconnect', o.maxBackoff, () => this.open())
      return
    }
    if (typeof o.getToken === 'function' && !this._asking) {
      // A fresh token for every connection: the server closes a session
      // whose token expired (4003) and refuses an expired one.
      this._asking = true
      Promise.resolve().then(() => o.getToken()).then(tok => {
        this._token = typeof tok === 'string' ? tok : null
        if (!this._closed && !this.ws) this._dial()
        this._asking = false
      }, err => {
        this._asking = false
        this.on.error('token', String(err && err.message ? err.message : err))
        this.later()
      })
      return
    }
    this._dial()
  }

  _dial () {
    const params = this.on.params()
    const token = this._token || this.o.token
    if (token) params.token = token
    let ws
    try {
      ws = new this.o.WebSocket(wsUrl(this.o.baseUrl, this.o.docId, params))
    } catch (err) {
      this.on.error('connect', String(err && err.message ? err.message : err))
      this.later()
      return
    }
    const gen = ++this.gen
    this.ws = ws
    if (this.on.status() === 'offline') this.on.status(this.everConnected ? 'reconnecting' : 'connecting')
    // A socket can hang while connecting (a network that is going away):
    // the time to hello counts from here.
    this._timer('hello', this.o.helloTimeout, () => this.on.noHello())
    ws.onopen = () => {}
    ws.onmessage = e => {
      if (gen === this.gen) this.on.frame(e.data)
    }
    ws.onclose = e => {
      if (gen !== this.gen) return
      this.drop()
      this.on.closed(e.code, e.reason, gen)
    }
    ws.onerror = () => {}
  }

  /** hello notes that the connection is usable: the backoff starts over
   * once it has stayed up a while. */
  hello () {
    this._clear('hello')
    this.everConnected = true
    this._timer('stable', 3000, () => { this.attempt = 0 })
  }

  /** send sends a frame on the current connection; false without one or
   * when the socket refuses. */
  send (data) {
    if (!this.ws) return false
    try {
      this.ws.send(data)
      return true
    } catch {
      return false
    }
  }

  /** drop forgets the current connection, closing it if open. */
  drop () {
    const ws = this.ws
    this.ws = null
    this.gen++
    this._clear('hello')
    this._clear('stable')
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null
      try { ws.close(1000, 'client') } catch {}
    }
  }

  /** later reconnects after the backoff. */
  later () {
    if (this._closed) return
    if (isOffline()) this.on.status('offline')
    else this.on.status(this.everConnected ? 'reconnecting' : 'connecting')
    const o = this.o
    const ceiling = Math.min(o.maxBackoff, o.minBackoff * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    const delay = ceiling / 2 + Math.random() * ceiling / 2
    this._timer('reconnect', delay, () => this.open())
  }

  /** now drops whatever connection there is and connects at once, the
   * backoff started over. */
  now () {
    this.attempt = 0
    this.drop()
    this.open()
  }

  /** offline: the browser says the network is gone. The socket is
   * probably dead already: do not wait to find out. */
  offline () {
    this.drop()
    this.on.status('offline')
    this._timer('reconnect', this.o.maxBackoff, () => this.open())
  }

  close () {
    this._closed = true
    for (const name of [...this._timers.keys()]) this._clear(name)
    this.drop()
  }
}
