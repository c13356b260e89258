// Binds a Tandem client (client.js) to a CodeMirror 6 editor: the user's
// transactions become ops, others' ops become transactions that keep the
// user's selection where it belongs, others' carets and selections are
// decorations with name labels, and undo/redo go through the client's own
// undo (others' edits are never undone). docs/client.md is the contract.
//
//   import { EditorView, EditorState } from '/js/vendor/codemirror.js'
//   import { tandem } from '/js/codemirror.js'
//   const view = new EditorView({ parent, state: EditorState.create({ doc: client.text, extensions: [tandem(client), …] }) })
//
// Leave CodeMirror's own history out: undo is the client's. CodeMirror
// counts UTF-16 units and Tandem code points; the conversion is here.
//
// The vendored bundle (vendor/codemirror.js, built by
// scripts/vendor/build.sh) is the CodeMirror this module imports. An
// application that bundles its own CodeMirror maps that path to a module
// re-exporting the same names from @codemirror/state and @codemirror/view
// (two copies of @codemirror/state in one page do not work together).

import { EditorView, Decoration, WidgetType, ViewPlugin, keymap, StateEffect, Annotation, Transaction, EditorSelection, Prec } from './vendor/codemirror.js'
import { normalize, isNoop } from './ot.js'
import { advanceCp, cpBetween, caretAfter, opFromDiff } from './unicode.js'
import { peerColor, peerLabel, inkOn } from './peers.js'

// Marks the transactions the binding makes from others' ops.
const fromTandem = Annotation.define()
// Asks the binding to redraw others' carets (their presence changed).
const presenceChanged = StateEffect.define()

/** opToChanges turns op (code points, on old) into CodeMirror changes
 * (UTF-16 positions in old). */
export function opToChanges (old, op) {
  const changes = []
  let u = 0
  for (const c of op) {
    if (typeof c === 'number') u = advanceCp(old, u, c)
    else if (typeof c === 'string') changes.push({ from: u, insert: c })
    else {
      const n = typeof c.d === 'number' ? c.d : [...c.d].length
      const end = advanceCp(old, u, n)
      changes.push({ from: u, to: end })
      u = end
    }
  }
  return changes
}

/** changesToOp turns a CodeMirror ChangeSet (on old, UTF-16) into an op in
 * code points. Lone surrogates in inserted text become U+FFFD: no op may
 * carry them. */
export function changesToOp (old, changes) {
  const op = []
  let at = 0
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    if (fromA > at) op.push(cpBetween(old, at, fromA))
    const ins = wellFormed(inserted.toString())
    if (ins) op.push(ins)
    if (toA > fromA) op.push({ d: cpBetween(old, fromA, toA) })
    at = toA
  })
  return normalize(op)
}

function wellFormed (s) {
  if (typeof s.toWellFormed === 'function') return s.toWellFormed()
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
}

/** toHex returns a #rrggbb for any CSS colour, through the browser's own
 * parser (peerColor lets names and rgb()/hsl() through). */
let probe = null
function toHex (color) {
  if (/^#[0-9a-f]{6}$/i.test(color) || typeof document === 'undefined') return color
  probe ||= document.createElement('canvas').getContext('2d')
  if (!probe) return color
  probe.fillStyle = '#000'
  probe.fillStyle = color
  return probe.fillStyle
}

// A peer's caret, with its name on a label that shows while the peer is
// active and fades when it stops (CSS), and on hover.
class CaretWidget extends WidgetType {
  constructor (client, color, name, active) {
    super()
    this.client = client
    this.color = color
    this.name = name
    this.active = active // the time of the peer's last move: a new one replays the label
  }

  eq (other) {
    return other.client === this.client && other.color === this.color && other.name === this.name && other.active === this.active
  }

  toDOM () {
    const caret = document.createElement('span')
    caret.className = 'cm-tandem-caret'
    caret.dataset.client = this.client
    caret.style.borderColor = this.color
    const label = document.createElement('span')
    label.className = 'cm-tandem-label'
    if (Date.now() - this.active < ACTIVE_MS) label.classList.add('cm-tandem-active')
    label.textContent = this.name
    label.style.background = this.color
    label.style.color = inkOn(toHex(this.color))
    caret.append('\u2060', label)
    return caret
  }

  ignoreEvent () { return true }
}

// How long a label stays after its peer's last move (then it fades).
const ACTIVE_MS = 2500

const theme = EditorView.baseTheme({
  '.cm-tandem-caret': {
    position: 'relative',
    borderLeft: '2px solid',
    marginLeft: '-1px',
    marginRight: '-1px',
    pointerEvents: 'auto'
  },
  // The label sits on the caret's own line, just after it: above the line
  // it would cover the line above (and be clipped on the first line).
  '.cm-tandem-label': {
    position: 'absolute',
    left: '2px',
    top: '-1px',
    padding: '0 4px',
    borderRadius: '0 3px 3px 0',
    font: '600 11px/16px system-ui, sans-serif',
    whiteSpace: 'nowrap',
    maxWidth: '9em',
    overflow: 'hidden',
    textOverflow: 'ellipsis',
    userSelect: 'none',
    pointerEvents: 'none',
    zIndex: '10',
    opacity: '0',
    transition: 'opacity .4s'
  },
  '.cm-tandem-label.cm-tandem-active': {
    animation: `cm-tandem-fade ${ACTIVE_MS}ms forwards`
  },
  '.cm-tandem-caret:hover .cm-tandem-label': { opacity: '1' },
  '@keyframes cm-tandem-fade': {
    '0%, 80%': { opacity: '1' },
    '100%': { opacity: '0' }
  },
  // Others' selections: a tint of their colour and a line under it, so
  // that they never look like the user's own.
  '.cm-tandem-selection': { borderBottom: '2px solid' }
})

/** tandem returns the CodeMirror extension that binds view to client. The
 * editor must start with the client's text (EditorState.create({doc:
 * client.text})); if it does not, the binding replaces it. */
export function tandem (client) {
  const plugin = ViewPlugin.fromClass(class {
    constructor (view) {
      this.view = view
      this.value = client.text // what the editor holds, as the client knows it
      this.self = false // inside our own client.edit
      this.lastSel = ''
      this.active = new Map() // peer client id → {key: its selections, at: when they last changed}
      this.decorations = this.build()
      this.onText = (text, info) => this.remote(text, info || {})
      this.onPresence = () => this.later(() => this.view.dispatch({ effects: presenceChanged.of(null) }))
      client.on('text', this.onText)
      client.on('presence', this.onPresence)
      if (view.state.doc.toString() !== client.text) {
        const old = view.state.doc.toString()
        this.value = old
        this.later(() => this.remote(client.text, { op: opFromDiff(old, client.text) }))
      }
    }

    // later runs a dispatch outside CodeMirror's update cycle (where
    // dispatching is not allowed).
    later (fn) {
      Promise.resolve().then(() => { if (this.view) fn() })
    }

    update (u) {
      let presence = false
      for (const tr of u.transactions) {
        if (tr.docChanged && !tr.annotation(fromTandem)) this.local(tr)
        if (tr.effects.some(e => e.is(presenceChanged))) presence = true
      }
      if (u.docChanged || presence) this.decorations = this.build()
      if (u.selectionSet || u.docChanged || u.focusChanged) this.reportSelection()
    }

    destroy () {
      client.off('text', this.onText)
      client.off('presence', this.onPresence)
      this.view = null
    }

    // local sends the user's change as an op.
    local (tr) {
      const op = changesToOp(this.value, tr.changes)
      if (isNoop(op)) return
      this.self = true
      try {
        client.edit(op)
      } finally {
        this.self = false
      }
      this.value = client.text
      if (tr.newDoc.length !== this.value.length) {
        // Something the client would not take (a lone surrogate): show
        // what it holds.
        const old = tr.newDoc.toString()
        this.later(() => this.remote(client.text, { force: true }))
      }
    }

    // remote shows a change the client made without the editor: another
    // person's op, an undo or redo, a resync.
    remote (text, info) {
      if (this.self || !this.view) return
      const view = this.view
      const old = this.value
      let base = old
      let op = Array.isArray(info.op) ? info.op : null
      if (info.force !== undefined || !op || view.state.doc.length !== base.length) {
        // The editor holds something else than the client thinks: diff
        // against what it really holds.
        base = view.state.doc.toString()
        op = opFromDiff(base, text)
      }
      const changes = opToChanges(base, op)
      this.value = text
      const spec = {
        changes,
        annotations: [fromTandem.of(true), Transaction.addToHistory.of(false)]
      }
      if (info.origin === 'undo' || info.origin === 'redo') {
        const at = caretAfter(text, op)
        spec.selection = EditorSelection.cursor(at)
        spec.scrollIntoView = true
      }
      try {
        view.dispatch(spec)
      } catch (err) {
        if (!/update is in progress/.test(String(err && err.message))) throw err
        this.value = old
        this.later(() => this.remote(text, info))
      }
    }

    reportSelection () {
      const view = this.view
      if (!view || !view.hasFocus || view.state.doc.length !== this.value.length) return
      const text = this.value
      const sels = view.state.selection.ranges.map(r => ({
        anchor: cpBetween(text, 0, r.anchor),
        head: cpBetween(text, 0, r.head)
      }))
      const key = JSON.stringify(sels)
      if (key === this.lastSel) return
      this.lastSel = key
      client.setSelection(sels)
    }

    // build draws every peer's selections and caret.
    build () {
      const text = this.value
      if (!this.view || this.view.state.doc.length !== text.length) return Decoration.none
      const now = Date.now()
      const ranges = []
      const seen = new Set()
      for (const p of client.peers.values()) {
        if (!Array.isArray(p.sel) || p.sel.length === 0) continue
        seen.add(p.client)
        const key = JSON.stringify(p.sel)
        let a = this.active.get(p.client)
        if (!a || a.key !== key) {
          a = { key, at: a ? now : 0 } // a peer's first selection is not a move
          this.active.set(p.client, a)
        }
        const color = peerColor(p)
        const name = peerLabel(p)
        for (const s of p.sel) {
          const anchor = Math.min(advanceCp(text, 0, s.anchor), text.length)
          const head = Math.min(advanceCp(text, 0, s.head), text.length)
          if (anchor !== head) {
            ranges.push(Decoration.mark({
              class: 'cm-tandem-selection',
              attributes: { style: `background-color: color-mix(in srgb, ${color} 22%, transparent); border-color: ${color}`, 'data-client': p.client }
            }).range(Math.min(anchor, head), Math.max(anchor, head)))
          }
          ranges.push(Decoration.widget({ widget: new CaretWidget(p.client, color, name, a.at), side: 1 }).range(head))
        }
      }
      for (const id of this.active.keys()) if (!seen.has(id)) this.active.delete(id)
      return Decoration.set(ranges, true)
    }
  }, { decorations: v => v.decorations })

  const undoRedo = Prec.high([
    keymap.of([
      { key: 'Mod-z', run: () => { client.undo(); return true }, preventDefault: true },
      { key: 'Mod-y', run: () => { client.redo(); return true }, preventDefault: true },
      { key: 'Mod-Shift-z', run: () => { client.redo(); return true }, preventDefault: true }
    ]),
    EditorView.domEventHandlers({
      // Undo and redo from menus and touch keyboards.
      beforeinput (e) {
        if (e.inputType === 'historyUndo') client.undo()
        else if (e.inputType === 'historyRedo') client.redo()
        else return false
        e.preventDefault()
        return true
      }
    })
  ])

  return [plugin, undoRedo, theme]
}
