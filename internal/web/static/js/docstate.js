// The OT state machine of one document on a client, for any document type
// (doctypes.js): what the user sees, the server's document under it, and
// the local edits between them. Pure: no socket, no timers, no window, no
// storage; client.js drives it and does the I/O.
//
// `doc` is what the user sees. `rev` is the last server revision applied and
// `base` the document at `rev`. The local edits not yet acknowledged are
// `inflight` (one op, sent with the next seq) and `buffer` (edits made
// meanwhile, composed into one op), so that
// doc = apply(base, compose(inflight, buffer)). An incoming op is
// transformed against inflight then buffer (the local ops on the left, the
// server's on the right) before it is applied to doc; the op itself applies
// to base. An ack applies inflight to base and makes the buffer the next
// inflight.
//
// Every method either completes or throws leaving the state as it was.

export class DocState {
  constructor (type) {
    this.type = type
    this.doc = type.empty
    this.base = type.empty
    this.rev = null
    this.len = 0 // type.length(doc)
    this.inflight = null // {op, seq (null until first sent), count, conn (generation it was sent on)}
    this.buffer = null // {op, count}
  }

  /** pending is the number of local edits not yet acknowledged. */
  get pending () {
    return (this.inflight ? this.inflight.count : 0) + (this.buffer ? this.buffer.count : 0)
  }

  /** pendingOp is the op from base to doc. */
  pendingOp () {
    if (!this.inflight) return []
    if (!this.buffer) return this.inflight.op
    return this.type.compose(this.inflight.op, this.buffer.op)
  }

  /** restore sets the state read from storage: the document at rev, and the
   * pending ops on it. Throws if they do not apply. */
  restore (base, rev, inflight, buffer) {
    const t = this.type
    let doc = base
    let inf = null
    let buf = null
    if (inflight) {
      inf = { op: t.normalize(inflight.op), seq: inflight.seq, count: inflight.count || 1, conn: 0 }
      doc = t.apply(doc, inf.op)
      if (buffer) {
        buf = { op: t.normalize(buffer.op), count: buffer.count || 1 }
        doc = t.apply(doc, buf.op)
      }
    }
    this.rev = rev
    this.base = base
    this.doc = doc
    this.inflight = inf
    this.buffer = buf
    this.len = t.length(doc)
  }

  /** local applies the user's edit op (on doc) and queues it. It returns
   * {op (normalized), inverse}, or null for an op that changes nothing. */
  local (op) {
    const t = this.type
    op = t.normalize(op)
    if (t.isNoop(op)) return null
    const before = this.doc
    const after = t.apply(before, op)
    const inverse = t.invert(op, before)
    if (!this.inflight) {
      this.base = before
      this.inflight = { op, seq: null, count: 1, conn: 0 }
    } else if (!this.buffer) {
      this.buffer = { op, count: 1 }
    } else {
      this.buffer = { op: t.compose(this.buffer.op, op), count: this.buffer.count + 1 }
    }
    this.doc = after
    this.len += t.lengthChange(op)
    return { op, inverse }
  }

  /** remote applies op, the server's revision rev (the next one), and
   * returns it as applied to doc (transformed past the pending edits). */
  remote (op, rev) {
    const t = this.type
    const inf = this.inflight
    let s = op
    let infOp, bufOp
    if (inf) {
      infOp = t.transform(inf.op, s, 'left')
      s = t.transform(s, inf.op, 'right')
    }
    if (this.buffer) {
      bufOp = t.transform(this.buffer.op, s, 'left')
      s = t.transform(s, this.buffer.op, 'right')
    }
    const doc = t.apply(this.doc, s)
    const base = inf ? t.apply(this.base, op) : doc
    if (inf) inf.op = infOp
    if (this.buffer) this.buffer.op = bufOp
    this.rev = rev
    this.doc = doc
    this.base = base
    this.len += t.lengthChange(s)
    return s
  }

  /** acked commits the in-flight op at rev: the buffer becomes the next
   * in-flight op. False (and the state reset to doc, with no revision) if
   * base and doc disagree with nothing pending: corrupt state must never
   * stand. */
  acked (rev) {
    const base = this.type.apply(this.base, this.inflight.op)
    this.rev = rev
    this.base = base
    this.promoteBuffer()
    if (!this.inflight && !this.type.equal(this.base, this.doc)) {
      this.base = this.doc
      this.rev = null
      return false
    }
    return true
  }

  /** committedAside commits the in-flight op to base without moving rev
   * (a text hello's verdict: the revision comes from elsewhere). */
  committedAside () {
    const base = this.type.apply(this.base, this.inflight.op)
    this.base = base
    this.promoteBuffer()
    return base
  }

  /** promoteBuffer makes the buffer the in-flight op (never sent). */
  promoteBuffer () {
    this.inflight = this.buffer ? { op: this.buffer.op, seq: null, count: this.buffer.count, conn: 0 } : null
    this.buffer = null
  }

  /** absorbBuffer folds the buffer into an in-flight op that was never
   * sent, so that it goes as one op. */
  absorbBuffer () {
    const inf = this.inflight
    if (!inf || inf.seq !== null || !this.buffer) return
    inf.op = this.type.compose(inf.op, this.buffer.op)
    inf.count += this.buffer.count
    this.buffer = null
  }

  /** replace takes the server's document at rev when nothing is pending,
   * and returns the op that turned doc into it (null when equal). */
  replace (doc, rev) {
    const t = this.type
    const old = this.doc
    this.rev = rev
    this.base = doc
    if (t.equal(old, doc)) return null
    const op = t.diff(old, doc)
    this.doc = doc
    this.len = t.length(doc)
    return op
  }

  /** rebase re-expresses the pending edits (relative to base) on the
   * server's document at rev, by transforming them against a diff. It
   * returns {change (what happened to doc), pendingBefore (the edits as
   * they were), conflict (the merge failed: doc was resubmitted whole),
   * moved (the server's document was not our base)}. */
  rebase (serverDoc, rev) {
    const t = this.type
    const oldBase = this.base
    const oldDoc = this.doc
    const P = this.pendingOp()
    const count = this.pending
    let P2, D2, newDoc
    let conflict = false
    try {
      const D = t.diff(oldBase, serverDoc)
      P2 = t.transform(P, D, 'left')
      D2 = t.transform(D, P, 'right')
      newDoc = t.apply(serverDoc, P2)
      if (!t.equal(t.apply(oldDoc, D2), newDoc)) throw new Error('rebase diverged')
    } catch {
      conflict = true
      P2 = t.diff(serverDoc, oldDoc)
      D2 = []
      newDoc = oldDoc
    }
    this.rev = rev
    this.base = serverDoc
    this.inflight = t.isNoop(P2) ? null : { op: t.normalize(P2), seq: null, count: Math.max(1, count), conn: 0 }
    this.buffer = null
    this.doc = newDoc
    this.len = t.length(newDoc)
    return { change: t.isNoop(D2) ? null : D2, pendingBefore: P, count, conflict, moved: !t.equal(oldBase, serverDoc) }
  }

  /** dropInflight undoes the in-flight op (the server refused it for good)
   * and returns the op that did it to doc. */
  dropInflight () {
    const t = this.type
    const inf = this.inflight
    const inv = t.invert(inf.op, this.base)
    let undo = inv
    let rest = null
    if (this.buffer) {
      undo = t.transform(inv, this.buffer.op, 'right')
      rest = { op: t.transform(this.buffer.op, inv, 'left'), seq: null, count: this.buffer.count, conn: 0 }
    }
    const doc = t.apply(this.doc, undo)
    this.inflight = rest && !t.isNoop(rest.op) ? rest : null
    this.buffer = null
    this.doc = doc
    this.len += t.lengthChange(undo)
    if (!this.inflight) this.base = this.doc
    return undo
  }

  /** toServer maps selections in doc to base (the server's coordinates at
   * rev): exact with nothing pending, else approximate (a caret inside
   * text just typed lands at the start of it). Returns {sel, approx}. */
  toServer (sels) {
    if (!this.inflight) return { sel: sels, approx: false }
    const inv = this.type.invert(this.pendingOp(), this.base)
    return { sel: sels.map(s => this.type.transformSelection(s, inv, 'left')), approx: true }
  }

  /** toLocal maps selections at rev into doc. */
  toLocal (sels) {
    if (!this.inflight) return sels
    const P = this.pendingOp()
    return sels.map(s => this.type.transformSelection(s, P, 'left'))
  }
}
