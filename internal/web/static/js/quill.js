// Binds a Tandem client of a rich-text document (client.js, type 'rich') to
// a Quill 2 editor: the user's changes become ops, others' ops become Quill
// changes that keep the user's selection where it belongs, others' carets
// and selections are quill-cursors with name labels, and undo/redo go
// through the client's own undo (others' edits are never undone).
// docs/client.md is the contract.
//
//   import { Quill, QuillCursors } from '/js/vendor/quill.js'
//   import { bindQuill, quillOptions } from '/js/quill.js'
//   Quill.register('modules/cursors', QuillCursors)
//   const quill = new Quill(host, quillOptions({ theme: 'snow', modules: { toolbar: … } }))
//   const unbind = bindQuill(client, quill)
//
// Units. Tandem counts code points, Quill UTF-16 units: the conversion is
// here (rich.js's toQuill and fromQuill), against the document the op
// applies to. Quill's document always ends with a newline; a Tandem
// document need not (a new one is empty). The binding shows such a document
// with Quill's extra newline and, the first time the user's change reaches
// that newline (formatting the last line), makes it real with an edit that
// is not an undo step.
//
// Undo. Leave Quill's history to itself: quillOptions binds Ctrl/Cmd+Z,
// Ctrl/Cmd+Shift+Z and Ctrl+Y to the client's undo and redo before Quill's
// own history sees them, and bindQuill clears that history as it goes.

import { toQuill, fromQuill, baseLen, length } from './rich.js'
import { peerColor, peerLabel } from './peers.js'

/** quillOptions returns Quill options (merged with yours) whose undo and
 * redo keys go to the bound client's undo. bindQuill connects them. */
export function quillOptions (options = {}) {
  const modules = options.modules || {}
  const keyboard = modules.keyboard || {}
  const own = (name) => ({
    handler () {
      const c = this.quill.__tandem
      if (c) c[name]()
      return false
    }
  })
  return {
    ...options,
    modules: {
      ...modules,
      // Quill's own history stays (its module is core), but holds nothing
      // the user can reach: the keys are bound to the client's.
      history: { delay: 0, maxStack: 1, userOnly: true, ...(modules.history || {}) },
      keyboard: {
        ...keyboard,
        bindings: {
          ...(keyboard.bindings || {}),
          tandemUndo: { key: 'z', shortKey: true, shiftKey: false, ...own('undo') },
          tandemRedo: { key: 'z', shortKey: true, shiftKey: true, ...own('redo') },
          tandemRedoY: { key: 'y', ctrlKey: true, ...own('redo') }
        }
      }
    }
  }
}

// UTF-16 units of doc's first cp code points (an embed is one unit).
function unitsAt (doc, cp) {
  let u = 0
  for (const c of doc) {
    if (cp <= 0) break
    if (typeof c.insert !== 'string') { u++; cp--; continue }
    const s = c.insert
    let i = 0
    while (i < s.length && cp > 0) {
      const code = s.charCodeAt(i)
      i += code >= 0xd800 && code <= 0xdbff && i + 1 < s.length ? 2 : 1
      cp--
    }
    u += i
  }
  return u + Math.max(0, cp) // past the end: Quill's extra newline
}

// Code points of doc's first `units` UTF-16 units (a split pair counts whole).
function cpAt (doc, units) {
  let cp = 0
  for (const c of doc) {
    if (units <= 0) break
    if (typeof c.insert !== 'string') { units--; cp++; continue }
    const s = c.insert
    let i = 0
    while (i < s.length && units > 0) {
      const code = s.charCodeAt(i)
      const w = code >= 0xd800 && code <= 0xdbff && i + 1 < s.length ? 2 : 1
      i += w
      units -= w
      cp++
    }
  }
  return cp + Math.max(0, units)
}

// Where a change leaves the caret: after its last insert, or where its
// last delete was (Quill units).
function caretAfterChange (ops) {
  let at = 0
  let caret = null
  for (const c of ops) {
    if (typeof c.retain === 'number') at += c.retain
    else if (typeof c.delete === 'number') caret = at
    else { at += typeof c.insert === 'string' ? c.insert.length : 1; caret = at }
  }
  return caret
}

// Quill's line formats that exclude each other: a Delta can give a line
// several (two people, one a heading, the other a list item, at once);
// Quill shows the one it applied last, which depends on the order ops
// reached it. blockFixes finds the lines op (applied, code points) touched
// that hold more than one, so that every Quill shows the same one.
const BLOCK_FORMATS = ['header', 'list', 'blockquote', 'code-block']

function blockFixes (doc, op) {
  const spans = [] // [start, end) in doc of the components that carry attributes
  let at = 0
  for (const c of op) {
    if (typeof c.delete === 'number') continue
    const n = typeof c.retain === 'number' ? c.retain : typeof c.insert === 'string' ? [...c.insert].length : 1
    if (c.attributes) spans.push([at, at + n])
    at += n
  }
  const fixes = []
  if (spans.length === 0) return fixes
  let pos = 0
  for (const c of doc) {
    if (typeof c.insert !== 'string') { pos++; continue }
    const blocks = c.attributes ? BLOCK_FORMATS.filter((k) => c.attributes[k] !== undefined).length : 0
    if (blocks < 2) { pos += [...c.insert].length; continue }
    for (const ch of c.insert) {
      if (ch === '\n' && spans.some(([a, b]) => pos >= a && pos < b)) fixes.push({ pos, attributes: c.attributes })
      pos++
    }
  }
  return fixes
}

// A document may hold embeds Quill has no blot for (the server takes any
// one-key embed: {mention: …} from another app). Quill drops
// those, and its document would then be shorter than the client's. So the
// binding registers a blot for each unknown key before Quill sees it: an
// inline, uneditable "[key]" whose value stays as it came (written as
// text, never markup).
// Quill's own formula (it needs KaTeX, and throws without it) and video (a
// third-party frame) are shown the same way.
const SHOWN_AS_NAMES = new Set(['formula', 'video'])
const registered = new Set()

function ensureEmbeds (Q, ops) {
  for (const c of ops) {
    if (c.insert === undefined || typeof c.insert === 'string' || c.insert === null) continue
    const key = Object.keys(c.insert)[0]
    if (!key || registered.has(key) || (Q.imports['formats/' + key] && !SHOWN_AS_NAMES.has(key))) continue
    registered.add(key)
    const Embed = Q.imports['blots/embed']
    let h = 0
    for (const ch of key) h = (h * 31 + ch.codePointAt(0)) >>> 0
    class OtherEmbed extends Embed {
      static blotName = key
      static tagName = 'SPAN'
      // A class of its own: Quill finds a node's blot by its class.
      static className = 'ql-tandem-embed-' + key.replace(/[^a-zA-Z0-9-]/g, '').slice(0, 24) + '-' + h.toString(36)
      static create (value) {
        const node = super.create(value)
        node.setAttribute('data-value', JSON.stringify(value))
        node.setAttribute('title', key)
        node.classList.add('ql-tandem-embed')
        node.textContent = '[' + key + ']'
        return node
      }

      static value (node) {
        try {
          return JSON.parse(node.getAttribute('data-value'))
        } catch {
          return null
        }
      }
    }
    Q.register(OtherEmbed, true)
  }
}

/** bindQuill connects client (a rich-text client) and quill until the
 * returned function is called. readOnly disables the editor (a reader). */
export function bindQuill (client, quill, { readOnly = false } = {}) {
  if (client.type !== 'rich') throw new TypeError(`tandem: bindQuill needs a rich-text client, not ${client.type}`)
  let shown = client.doc // the document Quill shows (less its extra newline)
  let fromQuillNow = false // a change of the user's is going to the client
  let toQuillNow = false // a change of the client's is going to Quill
  quill.__tandem = client

  const Q = quill.constructor
  const show = () => {
    ensureEmbeds(Q, client.doc)
    toQuillNow = true
    try {
      quill.setContents(client.doc, 'api')
    } finally {
      toQuillNow = false
    }
    shown = client.doc
    quill.history.clear()
  }
  show()
  quill.enable(!readOnly)

  const sendSelection = () => {
    const r = quill.getSelection()
    if (!r) return
    client.setSelection({ anchor: cpAt(shown, r.index), head: cpAt(shown, r.index + r.length) })
  }

  const onQuillChange = (delta, _old, source) => {
    if (toQuillNow) return
    if (readOnly) { show(); return }
    let op
    try {
      op = fromQuill(delta.ops, shown)
    } catch {
      show() // a change Tandem cannot express (a split character): back to the document
      return
    }
    fromQuillNow = true
    try {
      const len = length(shown)
      if (baseLen(op) > len) client.edit(len > 0 ? [{ retain: len }, { insert: '\n' }] : [{ insert: '\n' }], { undoable: false })
      client.edit(op)
    } catch (err) {
      fromQuillNow = false
      show() // refused (a bound): Quill shows the document again
      console.warn('tandem: an edit was refused:', err && err.message)
      return
    } finally {
      fromQuillNow = false
    }
    shown = client.doc
    quill.history.clear()
    if (source === 'user') sendSelection()
  }

  const onText = (doc, info) => {
    if (fromQuillNow) return
    let delta
    try {
      delta = toQuill(info.op, shown)
    } catch {
      show()
      return
    }
    ensureEmbeds(Q, delta)
    toQuillNow = true
    try {
      quill.updateContents(delta, 'api')
    } finally {
      toQuillNow = false
    }
    shown = doc
    // The same line format in every Quill: the line's formats applied
    // again, in the Delta's (sorted) key order.
    const fixes = blockFixes(doc, info.op)
    if (fixes.length > 0) settleBlocks()
    for (const f of fixes) {
      const attrs = {}
      for (const k of BLOCK_FORMATS) if (f.attributes[k] !== undefined) attrs[k] = f.attributes[k]
      toQuillNow = true
      try {
        quill.updateContents([{ retain: unitsAt(doc, f.pos) }, { retain: 1, attributes: attrs }], 'silent')
      } finally {
        toQuillNow = false
      }
    }
    quill.history.clear()
    if (info.origin === 'undo' || info.origin === 'redo') {
      const at = caretAfterChange(delta)
      if (at !== null) quill.setSelection(at, 0, 'user')
    }
    drawPeers()
  }

  // A line left with two block formats is shown as one (above); a writer
  // also clears the others from the document, so that what everyone sees
  // is what the document holds (an export, a reload). Whoever does it
  // first wins; the same edit from several people converges.
  let settling = false
  const settleBlocks = () => {
    if (settling || readOnly) return
    settling = true
    queueMicrotask(() => {
      settling = false
      const op = []
      let at = 0
      let last = 0
      for (const c of client.doc) {
        const n = typeof c.insert === 'string' ? [...c.insert].length : 1
        const keys = c.attributes ? BLOCK_FORMATS.filter((k) => c.attributes[k] !== undefined) : []
        if (keys.length > 1 && typeof c.insert === 'string') {
          const clear = {}
          for (const k of keys.slice(0, -1)) clear[k] = null // the last applied is the one shown
          let i = 0
          for (const ch of c.insert) {
            if (ch === '\n') {
              if (at + i > last) op.push({ retain: at + i - last })
              op.push({ retain: 1, attributes: clear })
              last = at + i + 1
            }
            i++
          }
        }
        at += n
      }
      if (op.length === 0) return
      try {
        client.edit(op, { undoable: false })
      } catch (err) {
        console.warn('tandem: could not settle line formats:', err && err.message)
      }
    })
  }

  const onSelection = (range, _old, source) => {
    if (range && source === 'user') sendSelection()
  }

  const cursors = quill.getModule('cursors')
  const drawn = new Set()
  const drawPeers = () => {
    if (!cursors) return
    const seen = new Set()
    for (const p of client.peers.values()) {
      const sel = p.sel && p.sel[0]
      if (!sel) continue
      seen.add(p.client)
      cursors.createCursor(p.client, peerLabel(p), peerColor(p))
      const a = unitsAt(shown, Math.min(sel.anchor, sel.head))
      const b = unitsAt(shown, Math.max(sel.anchor, sel.head))
      cursors.moveCursor(p.client, { index: a, length: b - a })
    }
    for (const id of drawn) if (!seen.has(id)) cursors.removeCursor(id)
    drawn.clear()
    for (const id of seen) drawn.add(id)
  }
  const onPresence = () => drawPeers()

  quill.on('text-change', onQuillChange)
  quill.on('selection-change', onSelection)
  client.on('text', onText)
  client.on('presence', onPresence)
  drawPeers()

  return () => {
    quill.off('text-change', onQuillChange)
    quill.off('selection-change', onSelection)
    client.off('text', onText)
    client.off('presence', onPresence)
    if (cursors) cursors.clearCursors()
    if (quill.__tandem === client) quill.__tandem = null
  }
}
