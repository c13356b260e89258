// What the browser client keeps in a Storage (localStorage) for one
// document, so that unsent edits survive a reload and a restart: a small
// record written at every change (source key, seq, revision, the pending
// ops), the document's text at that revision apart, and a lease that lets
// one tab at a time write it. Works for any document type (doctypes.js):
// the record names its type, and a snapshot holds the document as the
// type's JSON (a string for plain text, a Delta for rich text).
//
// Keys, under prefix+docId: "" the record; ":snap:ID" a snapshot of the
// document the record names (with a delta from it in the record, so typing
// in a 1 MB document writes a few hundred bytes, not the document);
// ":seq:KEY" the newest seq of a source (written before an op is first
// sent); ":lease" the tab that writes.

import { plain } from './doctypes.js'

const sizeOf = doc => typeof doc === 'string' ? doc.length : JSON.stringify(doc).length

export class LocalState {
  constructor (storage, prefix, docId, instance, leaseTtl, type = plain) {
    this.st = storage
    this.prefix = prefix + docId
    this.instance = instance
    this.leaseTtl = leaseTtl
    this.type = type
    this.snap = null // {id, text, size, at}: the snapshot the stored record names
  }

  _key (suffix = '') { return this.prefix + suffix }

  /** claimLease takes the lease unless another live tab holds it. */
  claimLease () {
    const key = this._key(':lease')
    const now = Date.now()
    try {
      const cur = JSON.parse(this.st.getItem(key) || 'null')
      if (cur && cur.id !== this.instance && now - cur.t < this.leaseTtl) return false
      this.st.setItem(key, JSON.stringify({ id: this.instance, t: now }))
      return true
    } catch {
      return false
    }
  }

  holdsLease () {
    try {
      const cur = JSON.parse(this.st.getItem(this._key(':lease')) || 'null')
      return !!cur && cur.id === this.instance
    } catch {
      return false
    }
  }

  /** renewLease extends the lease; false if another tab took it. */
  renewLease () {
    if (!this.holdsLease()) return false
    try {
      this.st.setItem(this._key(':lease'), JSON.stringify({ id: this.instance, t: Date.now() }))
    } catch {}
    return true
  }

  releaseLease () {
    try {
      if (this.holdsLease()) this.st.removeItem(this._key(':lease'))
    } catch {}
  }

  readSeq (srcKey) {
    try {
      return parseInt(this.st.getItem(this._key(':seq:' + srcKey)) || '0', 10) || 0
    } catch {
      return 0
    }
  }

  writeSeq (srcKey, seq) {
    try {
      this.st.setItem(this._key(':seq:' + srcKey), String(seq))
    } catch {}
  }

  /** storedType is the type name of the stored record ('plain' for
   * records from before types), or null when there is none. */
  storedType () {
    try {
      const r = JSON.parse(this.st.getItem(this._key()) || 'null')
      return r && typeof r === 'object' ? (typeof r.type === 'string' ? r.type : 'plain') : null
    } catch {
      return null
    }
  }

  /** load returns the stored record with its document as `base` (version
   * 2's shape, which older clients wrote whole), or null; lost is true when
   * a record's document could not be read. A record of another type (its
   * `type`, 'plain' when absent) is returned with base null and lost false:
   * the client decides. Snapshots no record names (left by a crash between
   * two writes) are removed. */
  load () {
    let r = null
    let lost = false
    try {
      r = JSON.parse(this.st.getItem(this._key()) || 'null')
    } catch {}
    if (r && r.v === 3 && (r.type || 'plain') !== this.type.name) {
      r.base = null
      r.v = 2
    } else if (r && r.v === 3) {
      try {
        const snap = JSON.parse(this.st.getItem(this._key(':snap:' + r.snap)) || 'null')
        if (!snap || !this.type.isDocument(snap.text)) throw new Error('the stored document is missing')
        this.snap = { id: r.snap, text: snap.text, size: sizeOf(snap.text), at: Date.now() }
        r.base = Array.isArray(r.delta) ? this.type.apply(snap.text, r.delta) : snap.text
      } catch {
        r.base = null
        lost = true
      }
      r.v = 2
    }
    this._dropStaleSnapshots(this.snap ? this.snap.id : null)
    return { record: r, lost }
  }

  _dropStaleSnapshots (keep) {
    const prefix = this._key(':snap:')
    try {
      const stale = []
      for (let i = 0; i < this.st.length; i++) {
        const k = this.st.key(i)
        if (k && k.startsWith(prefix) && k !== prefix + keep) stale.push(k)
      }
      for (const k of stale) this.st.removeItem(k)
    } catch {}
  }

  /** save writes record (without its document) and text, the document at
   * record.rev. The document goes as a delta from the stored snapshot, or,
   * when that grows past an eighth of the document (or the snapshot is ten
   * minutes old), as a new snapshot, written before the record that names
   * it; the old one is removed after. Throws when the storage refuses. */
  save (record, text) {
    const rec = { ...record, v: 3, type: this.type.name, snap: null, delta: null }
    const snap = this.snap
    let delta = snap ? this.type.diff(snap.text, text) : null
    if (delta && (JSON.stringify(delta).length > Math.max(65536, snap.size / 8) || Date.now() - snap.at > 600000)) delta = null
    let old = null
    if (snap && delta) {
      rec.snap = snap.id
      rec.delta = delta.length ? delta : null
    } else {
      const id = `${record.rev ?? 'x'}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
      this.st.setItem(this._key(':snap:' + id), JSON.stringify({ text }))
      old = snap
      this.snap = { id, text, size: sizeOf(text), at: Date.now() }
      rec.snap = id
    }
    this.st.setItem(this._key(), JSON.stringify(rec))
    if (old) this.st.removeItem(this._key(':snap:' + old.id))
  }
}
