// Binds a Tandem client (client.js) to a <textarea>: the user's input becomes
// ops, others' ops update the value without moving the user's caret or
// scrolling, and others' carets and selections are drawn over the textarea.
// No dependencies. docs/client.md is the contract.
//
// Positions: the textarea counts UTF-16 units, Tandem counts code points
// (unicode.js converts). The pure functions exported below hold the logic
// that does not need a DOM (and are tested in Node).

import { transform, compose, isNoop, transformSelection } from './ot.js'
import { cpToUtf16, utf16ToCp, opFromDiff, caretAfter } from './unicode.js'
import { peerColor, peerLabel, inkOn } from './peers.js'

export { peerColor, peerLabel, caretAfter }

/** wellFormed replaces lone UTF-16 surrogates (which no op may carry) with
 * U+FFFD. */
export function wellFormed (s) {
  if (typeof s.toWellFormed === 'function') return s.toWellFormed()
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
}

/** inputOp returns the op (code points) turning the textarea's previous
 * value into its new one; caret is the UTF-16 caret position after the input
 * (it places the change where the user typed when the diff is ambiguous). */
export function inputOp (before, after, caret) {
  return opFromDiff(before, after, caret)
}

/** mapSelection moves a textarea selection (UTF-16 start/end/direction in
 * oldValue) through op (code points, oldValue → newValue) and returns it in
 * UTF-16 units of newValue. side is as in ot.transformSelection: 'left' keeps
 * a caret before text inserted exactly at it (others' typing does not push
 * the user's caret). */
export function mapSelection (oldValue, newValue, op, sel, side = 'left') {
  const backward = sel.direction === 'backward'
  const s = utf16ToCp(oldValue, sel.start)
  const e = utf16ToCp(oldValue, sel.end)
  const t = transformSelection(backward ? { anchor: e, head: s } : { anchor: s, head: e }, op, side)
  const a = cpToUtf16(newValue, t.anchor)
  const h = cpToUtf16(newValue, t.head)
  return { start: Math.min(a, h), end: Math.max(a, h), direction: sel.direction === 'none' && a === h ? 'none' : (h < a ? 'backward' : 'forward') }
}

/** cpToUtf16Many converts many code point offsets of s in one pass; the
 * result maps each offset to its UTF-16 index. */
export function cpToUtf16Many (s, offsets) {
  const sorted = [...new Set(offsets)].sort((a, b) => a - b)
  const out = new Map()
  let i = 0
  let cp = 0
  for (const target of sorted) {
    while (cp < target && i < s.length) {
      const c = s.charCodeAt(i++)
      if (c >= 0xd800 && c <= 0xdbff && i < s.length) {
        const d = s.charCodeAt(i)
        if (d >= 0xdc00 && d <= 0xdfff) i++
      }
      cp++
    }
    out.set(target, i)
  }
  return out
}

// The computed styles a mirror copies so that it lays text out exactly as the
// textarea does.
const MIRRORED = [
  'direction', 'fontStyle', 'fontVariant', 'fontWeight', 'fontStretch', 'fontSize', 'fontSizeAdjust',
  'lineHeight', 'fontFamily', 'fontFeatureSettings', 'fontVariationSettings', 'fontKerning', 'textAlign',
  'textTransform', 'textIndent', 'textRendering', 'letterSpacing', 'wordSpacing', 'tabSize', 'MozTabSize',
  'whiteSpace', 'wordBreak', 'overflowWrap', 'wordWrap', 'hyphens',
  'paddingTop', 'paddingRight', 'paddingBottom', 'paddingLeft'
]

/** Mirror measures where text positions of a textarea are drawn: a hidden div
 * with the textarea's font, padding, width and wrapping, holding its text.
 * Coordinates are relative to the textarea's padding box, unscrolled. */
export class Mirror {
  constructor (textarea) {
    this.ta = textarea
    const doc = textarea.ownerDocument
    this.doc = doc
    // A zero-size fixed box: the mirror inside it never makes the page scroll.
    this.box = doc.createElement('div')
    this.box.setAttribute('aria-hidden', 'true')
    Object.assign(this.box.style, { position: 'fixed', top: '0', left: '0', width: '0', height: '0', overflow: 'hidden', visibility: 'hidden', pointerEvents: 'none', zIndex: '-1' })
    this.div = doc.createElement('div')
    Object.assign(this.div.style, { position: 'absolute', top: '0', left: '0', border: '0', margin: '0', boxSizing: 'content-box', overflow: 'hidden', height: 'auto', visibility: 'hidden' })
    this.node = doc.createTextNode('')
    this.tail = doc.createTextNode('\u200b') // gives a trailing newline its line
    this.div.append(this.node, this.tail)
    this.box.append(this.div)
    doc.body.append(this.box)
    this.text = null
    this.styleKey = ''
  }

  // sync copies the textarea's layout and text when they changed.
  sync (text) {
    const cs = this.doc.defaultView.getComputedStyle(this.ta)
    const padL = parseFloat(cs.paddingLeft) || 0
    const padR = parseFloat(cs.paddingRight) || 0
    const width = Math.max(0, this.ta.clientWidth - padL - padR)
    let key = width + '|'
    for (const p of MIRRORED) key += (cs[p] || '') + '|'
    if (key !== this.styleKey) {
      this.styleKey = key
      for (const p of MIRRORED) if (cs[p]) this.div.style[p] = cs[p]
      if (!cs.whiteSpace || cs.whiteSpace === 'normal') this.div.style.whiteSpace = 'pre-wrap'
      this.div.style.width = width + 'px'
    }
    if (text !== this.text) {
      this.text = text
      this.node.data = text
    }
    this.origin = this.div.getBoundingClientRect()
    this.lineHeight = parseFloat(cs.lineHeight) || (parseFloat(cs.fontSize) || 16) * 1.2
    this.padTop = parseFloat(cs.paddingTop) || 0
    this.padLeft = padL
  }

  _rects (node, start, end) {
    const r = this.doc.createRange()
    r.setStart(node, start)
    r.setEnd(node, end)
    return Array.from(r.getClientRects())
  }

  _rel (r) {
    return { x: r.left - this.origin.left, y: r.top - this.origin.top, w: r.width, h: r.height, r: r.right - this.origin.left }
  }

  /** caret returns {x, y, h} for UTF-16 index pos. */
  caret (pos) {
    const t = this.text
    pos = Math.max(0, Math.min(pos, t.length))
    const code = i => t.charCodeAt(i)
    if (pos < t.length && t[pos] !== '\n') {
      const end = pos + (code(pos) >= 0xd800 && code(pos) <= 0xdbff && pos + 1 < t.length ? 2 : 1)
      const rs = this._rects(this.node, pos, end)
      if (rs.length > 0) {
        const r = this._rel(rs[0])
        return { x: r.x, y: r.y, h: r.h }
      }
    }
    if (pos > 0 && t[pos - 1] !== '\n') {
      const start = pos - (code(pos - 1) >= 0xdc00 && code(pos - 1) <= 0xdfff && pos > 1 ? 2 : 1)
      const rs = this._rects(this.node, start, pos)
      if (rs.length > 0) {
        const r = this._rel(rs[rs.length - 1])
        return { x: r.r, y: r.y, h: r.h }
      }
    }
    // At the start of a line that is empty or the last one.
    const rs = pos < t.length ? this._rects(this.node, pos, pos + 1) : this._rects(this.tail, 0, 1)
    if (rs.length > 0) {
      const r = this._rel(rs[0])
      return { x: r.x, y: r.y, h: r.h }
    }
    if (pos > 0) {
      const prev = this._rects(this.node, pos - 1, pos)
      if (prev.length > 0) {
        const r = this._rel(prev[prev.length - 1])
        return { x: this.padLeft, y: r.y + r.h, h: r.h }
      }
    }
    return { x: this.padLeft, y: this.padTop, h: this.lineHeight }
  }

  /** range returns the rectangles ({x, y, w, h}) covering [start, end). */
  range (start, end) {
    const t = this.text
    start = Math.max(0, Math.min(start, t.length))
    end = Math.max(start, Math.min(end, t.length))
    if (start === end) return []
    const out = []
    const seen = new Set()
    for (const raw of this._rects(this.node, start, end)) {
      const r = this._rel(raw)
      if (r.h <= 0) continue
      const w = Math.max(r.w, 4) // a selected line break shows as a sliver
      const key = `${Math.round(r.x)},${Math.round(r.y)},${Math.round(w)},${Math.round(r.h)}`
      if (seen.has(key)) continue
      seen.add(key)
      out.push({ x: r.x, y: r.y, w, h: r.h })
    }
    return out
  }

  remove () {
    this.box.remove()
  }
}

/** bindTextarea binds client to textarea (and draws the others' carets in
 * overlay, an element the caller places over the textarea, if given). It
 * returns a function that undoes the binding. */
export function bindTextarea (client, textarea, { overlay = null } = {}) {
  const ta = textarea
  const doc = ta.ownerDocument
  const win = doc.defaultView
  let value = client.text // the value the client knows the textarea to hold
  let composing = false
  let held = null // others' changes held back during a composition: op from value to client.text
  let self = false // inside our own client.edit
  let lastSel = ''
  const cleanups = []
  const listen = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts)
    cleanups.push(() => target.removeEventListener(type, fn, opts))
  }

  const readSel = () => ({ start: ta.selectionStart, end: ta.selectionEnd, direction: ta.selectionDirection || 'none' })

  // setValue replaces the value (only if it changed), restoring the
  // selection and the scroll position.
  const setValue = (text, sel) => {
    const top = ta.scrollTop
    const left = ta.scrollLeft
    if (ta.value !== text) ta.value = text
    if (sel) {
      try { ta.setSelectionRange(sel.start, sel.end, sel.direction) } catch {}
    }
    ta.scrollTop = top
    ta.scrollLeft = left
    if (ta.value !== text) {
      // The textarea normalizes line breaks (\r\n and \r become \n): it cannot
      // show the document as it is, so make the document what it shows.
      const shown = ta.value
      value = text
      edit(opFromDiff(text, shown), { undoable: false })
      value = client.text
    }
  }

  const edit = (op, opts) => {
    if (isNoop(op)) return
    self = true
    try {
      client.edit(op, opts)
    } catch (err) {
      // The binding and the client disagree (a bug): show the client's text.
      self = false
      value = client.text
      setValue(value, null)
      throw err
    } finally {
      self = false
    }
  }

  const reportSelection = () => {
    if (composing || ta.value !== value) return
    const s = ta.selectionStart
    const e = ta.selectionEnd
    const backward = ta.selectionDirection === 'backward'
    const anchor = utf16ToCp(value, backward ? e : s)
    const head = utf16ToCp(value, backward ? s : e)
    const key = anchor + ':' + head
    if (key === lastSel) return
    lastSel = key
    client.setSelection([{ anchor, head }])
  }

  // flushLocal turns what the user changed in the textarea into an op.
  const flushLocal = () => {
    let after = ta.value
    const wf = wellFormed(after)
    if (wf !== after) {
      const sel = readSel()
      ta.value = wf
      try { ta.setSelectionRange(sel.start, sel.end, sel.direction) } catch {}
      after = wf
    }
    if (!held && value !== client.text) held = opFromDiff(value, client.text) // defensive
    if (after === value && !held) return
    const local = after === value ? [] : inputOp(value, after, ta.selectionEnd)
    if (!held) {
      value = after
      edit(local)
    } else {
      // Others' changes arrived while the user was composing: rebase the
      // user's change onto them, then show the result.
      const ext = held
      held = null
      const local2 = transform(local, ext, 'left')
      const ext2 = transform(ext, local, 'right')
      const sel = readSel()
      value = client.text
      edit(local2)
      value = client.text
      let mapped = null
      try { mapped = mapSelection(after, value, ext2, sel) } catch {}
      setValue(value, mapped)
    }
    lastSel = ''
    reportSelection()
    scheduleRender()
  }

  const onText = (text, info = {}) => {
    scheduleRender()
    if (self) return
    const op = Array.isArray(info.op) ? info.op : null
    if (composing) {
      // Changing the value would cancel the composition: hold it back.
      const ext = op || opFromDiff(value, text)
      held = held ? compose(held, ext) : ext
      return
    }
    if (ta.value !== value) {
      // Input the binding has not seen yet: merge it as after a composition.
      const ext = op || opFromDiff(value, text)
      held = held ? compose(held, ext) : ext
      flushLocal()
      return
    }
    const old = value
    value = text
    lastSel = '' // the positions moved: the next report must not be skipped
    let sel = null
    if (info.origin === 'undo' || info.origin === 'redo') {
      let c = null
      try { c = caretAfter(text, op || opFromDiff(old, text)) } catch {}
      if (c !== null) sel = { start: c, end: c, direction: 'none' }
    } else {
      try {
        sel = mapSelection(old, text, op || opFromDiff(old, text), readSel())
      } catch {
        try { sel = mapSelection(old, text, opFromDiff(old, text), readSel()) } catch {}
      }
    }
    const focused = doc.activeElement === ta
    setValue(text, sel)
    if (focused && doc.activeElement !== ta) ta.focus()
    if (info.origin === 'undo' || info.origin === 'redo') reportSelection()
  }

  // ----- DOM events

  listen(ta, 'input', e => {
    if (composing || e.isComposing) return
    flushLocal()
  })
  listen(ta, 'compositionstart', () => {
    composing = true
  })
  listen(ta, 'compositionend', () => {
    composing = false
    // Some browsers fire the final input after compositionend, others before.
    flushLocal()
  })
  listen(ta, 'beforeinput', e => {
    if (e.inputType === 'historyUndo' || e.inputType === 'historyRedo') {
      e.preventDefault()
      flushLocal()
      if (e.inputType === 'historyUndo') client.undo()
      else client.redo()
    }
  })
  listen(ta, 'keydown', e => {
    if (e.isComposing || e.altKey || !(e.ctrlKey || e.metaKey)) return
    const k = (e.key || '').toLowerCase()
    if (k === 'z' || (k === 'y' && e.ctrlKey && !e.metaKey)) {
      e.preventDefault()
      flushLocal()
      if (k === 'z' && !e.shiftKey) client.undo()
      else client.redo()
    }
  })
  for (const type of ['select', 'keyup', 'mouseup', 'focus', 'touchend']) listen(ta, type, reportSelection)
  listen(doc, 'selectionchange', () => {
    if (doc.activeElement === ta) reportSelection()
  })

  client.on('text', onText)
  cleanups.push(() => client.off('text', onText))

  // ----- remote carets

  let mirror = null
  let layer = null
  let frame = 0
  // A label shows while its peer is active and for LABEL_MS after: labels
  // always on would cover the line above everyone's caret.
  const LABEL_MS = 2500
  const moved = new Map() // client id → {key, at}
  let fadeTimer = null
  const raf = win && win.requestAnimationFrame ? win.requestAnimationFrame.bind(win) : fn => setTimeout(fn, 16)
  const caf = win && win.cancelAnimationFrame ? win.cancelAnimationFrame.bind(win) : clearTimeout

  function scheduleRender () {
    if (!overlay || frame) return
    frame = raf(() => {
      frame = 0
      render()
    })
  }

  function render () {
    if (!overlay || !overlay.isConnected || composing) return
    if (!mirror) mirror = new Mirror(ta)
    if (!layer) {
      const ov = win.getComputedStyle(overlay)
      if (ov.position === 'static') overlay.style.position = 'relative'
      overlay.style.pointerEvents = 'none'
      layer = doc.createElement('div')
      layer.className = 'tandem-layer'
      Object.assign(layer.style, { position: 'absolute', overflow: 'hidden', pointerEvents: 'none', margin: '0', padding: '0' })
      overlay.append(layer)
    }
    // The layer covers the textarea's padding box (its visible text area).
    const tr = ta.getBoundingClientRect()
    const or = overlay.getBoundingClientRect()
    Object.assign(layer.style, {
      left: (tr.left - or.left - overlay.clientLeft + ta.clientLeft + overlay.scrollLeft) + 'px',
      top: (tr.top - or.top - overlay.clientTop + ta.clientTop + overlay.scrollTop) + 'px',
      width: ta.clientWidth + 'px',
      height: ta.clientHeight + 'px'
    })
    const text = value
    mirror.sync(text)
    const peers = [...client.peers.values()].filter(p => Array.isArray(p.sel) && p.sel.length > 0)
    const now = Date.now()
    let nextFade = Infinity
    for (const p of peers) {
      const key = JSON.stringify(p.sel)
      const m = moved.get(p.client)
      if (!m || m.key !== key) moved.set(p.client, { key, at: m ? now : 0 })
      const until = moved.get(p.client).at + LABEL_MS
      if (until > now) nextFade = Math.min(nextFade, until)
    }
    const offsets = []
    for (const p of peers) for (const s of p.sel) offsets.push(s.anchor, s.head)
    const at = cpToUtf16Many(text, offsets)
    const sx = ta.scrollLeft
    const sy = ta.scrollTop
    const viewH = ta.clientHeight
    const frag = doc.createDocumentFragment()
    for (const p of peers) {
      const color = peerColor(p)
      for (const s of p.sel) {
        const a = at.get(s.anchor)
        const h = at.get(s.head)
        if (a === undefined || h === undefined) continue
        if (a !== h) {
          for (const r of mirror.range(Math.min(a, h), Math.max(a, h))) {
            if (r.y - sy + r.h < 0 || r.y - sy > viewH) continue
            const el = doc.createElement('div')
            el.className = 'tandem-selection'
            el.dataset.client = p.client
            Object.assign(el.style, {
              position: 'absolute', left: (r.x - sx) + 'px', top: (r.y - sy) + 'px', width: r.w + 'px', height: r.h + 'px',
              background: color, opacity: '0.25', borderRadius: '2px'
            })
            frag.append(el)
          }
        }
        const c = mirror.caret(h)
        const y = c.y - sy
        if (y + c.h < 0 || y > viewH) continue
        const caret = doc.createElement('div')
        caret.className = 'tandem-caret'
        caret.dataset.client = p.client
        Object.assign(caret.style, {
          position: 'absolute', left: (c.x - sx - 1) + 'px', top: y + 'px', width: '2px', height: c.h + 'px', background: color
        })
        frag.append(caret)
        const label = doc.createElement('div')
        // Idle: drawn, but not seen (its name stays there for assistive
        // technology and tests).
        if (moved.get(p.client).at + LABEL_MS <= now) label.style.opacity = '0'

        label.className = 'tandem-label'
        label.dataset.client = p.client
        label.textContent = peerLabel(p)
        const above = y >= 16
        Object.assign(label.style, {
          position: 'absolute', left: (c.x - sx - 1) + 'px', top: (above ? y - 16 : y + c.h) + 'px',
          height: '16px', lineHeight: '16px', padding: '0 4px', font: '600 11px/16px system-ui, sans-serif',
          color: inkOn(color), background: color, borderRadius: above ? '3px 3px 3px 0' : '0 3px 3px 3px',
          whiteSpace: 'nowrap', maxWidth: '12em', overflow: 'hidden', textOverflow: 'ellipsis'
        })
        frag.append(label)
      }
    }
    layer.replaceChildren(frag)
    clearTimeout(fadeTimer)
    if (nextFade < Infinity) fadeTimer = setTimeout(scheduleRender, nextFade - now + 20)
  }

  if (overlay) {
    const onPresence = () => scheduleRender()
    client.on('presence', onPresence)
    cleanups.push(() => client.off('presence', onPresence))
    listen(ta, 'scroll', scheduleRender)
    if (win) listen(win, 'resize', scheduleRender)
    if (win && typeof win.ResizeObserver === 'function') {
      const ro = new win.ResizeObserver(() => scheduleRender())
      ro.observe(ta)
      cleanups.push(() => ro.disconnect())
    }
    if (doc.fonts && doc.fonts.ready) doc.fonts.ready.then(() => scheduleRender(), () => {})
  }

  // ----- start

  if (ta.value !== value) setValue(value, { start: 0, end: 0, direction: 'none' })
  scheduleRender()

  return function unbind () {
    for (const fn of cleanups.splice(0)) fn()
    if (frame) caf(frame)
    frame = 0
    clearTimeout(fadeTimer)
    if (mirror) mirror.remove()
    if (layer) layer.remove()
    mirror = layer = null
  }
}
