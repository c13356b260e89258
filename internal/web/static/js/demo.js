// The Tandem demo application: the document list at "/" and the editor at
// "/d/{id}" (one page, routed here by location.pathname). It uses the client
// library (client.js, textarea.js, unicode.js) exactly as any application
// would; see docs/client.md.

const $ = (id) => document.getElementById(id)

// ---------------------------------------------------------------- storage

function usableStorage(kind) {
  try {
    const s = window[kind]
    s.setItem('tandem.probe', '1')
    s.removeItem('tandem.probe')
    return s
  } catch {
    return null // disabled (privacy settings) or full
  }
}
const local = usableStorage('localStorage')

// ---------------------------------------------------------------- access

// On a server that requires access tokens the page is opened with its
// token in the address's fragment (/d/{id}#token=…, what `tandem token
// --link` prints): a fragment never reaches a server or its logs. The page
// keeps the token in a cookie for this site until it expires (the server
// reads the tandem_token cookie on every request and WebSocket, so fetch
// and the client need nothing more) and takes it out of the address bar,
// so that a copied link does not share it.
function tokenClaims (tok) {
  try {
    const b64 = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    const c = JSON.parse(atob(b64 + '='.repeat((4 - b64.length % 4) % 4)))
    return c && typeof c === 'object' && typeof c.exp === 'number' ? c : null
  } catch {
    return null
  }
}

function readTokenCookie () {
  const m = /(?:^|;\s*)tandem_token=([^;]+)/.exec(document.cookie)
  return m ? decodeURIComponent(m[1]) : null
}

function takeToken () {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (m) {
    const tok = decodeURIComponent(m[1])
    const claims = tokenClaims(tok)
    if (claims) {
      const maxAge = Math.max(0, Math.floor(claims.exp - Date.now() / 1000))
      document.cookie = `tandem_token=${encodeURIComponent(tok)}; path=/; max-age=${maxAge}; samesite=strict` +
        (location.protocol === 'https:' ? '; secure' : '')
    }
    history.replaceState(null, '', location.pathname + location.search)
    // (An expired one is not kept, but is known: the page says it expired.)
    return claims ? { token: tok, claims } : { token: null, claims: null, invalid: true }
  }
  const token = readTokenCookie()
  return { token, claims: token ? tokenClaims(token) : null }
}
const access = takeToken()

// The role the token gives on a document, as the server decides it (the
// best grant that matches: the id, an id prefix ending in *, or *).
function roleFor (claims, doc) {
  const rank = { read: 1, write: 2, admin: 3 }
  let best = 0
  for (const g of Array.isArray(claims?.docs) ? claims.docs : []) {
    const id = String(g?.id ?? '')
    const match = id === '*' || id === doc || (id.endsWith('*') && doc.startsWith(id.slice(0, -1)))
    if (match && (rank[g.role] ?? 0) > best) best = rank[g.role]
  }
  return ['none', 'read', 'write', 'admin'][best]
}

// mayCreate reports whether the token lets its holder create documents: a
// write grant on every id, or on an id prefix (the server's newDocID).
function mayCreate (claims) {
  if (!claims) return true
  return (Array.isArray(claims.docs) ? claims.docs : []).some((g) =>
    (g?.role === 'write' || g?.role === 'admin') && String(g?.id ?? '').endsWith('*'))
}

const tokenExpired = () => access.claims && access.claims.exp * 1000 <= Date.now()

// expiryMessage says the link expired; keeps: whether an editor is open
// whose edits this browser keeps meanwhile.
function expiryMessage (keeps = false) {
  const at = new Date(access.claims.exp * 1000).toLocaleString()
  return `Your access link expired (${at}). Ask for a fresh link` + (keeps ? '; edits you make meanwhile are kept in this browser.' : '.')
}

const NEEDS_TOKEN = 'This server needs an access link: open the address you were given (it ends in #token=…; `tandem token --link` makes one).'

// ---------------------------------------------------------------- identity

const PALETTE = ['#e11d48', '#db2777', '#9333ea', '#4f46e5', '#2563eb', '#0891b2',
  '#0d9488', '#16a34a', '#65a30d', '#ca8a04', '#ea580c', '#b45309']
const NAMES = ['Ada', 'Alan', 'Grace', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis',
  'Radia', 'Edsger', 'Frances', 'Donald', 'Hedy', 'Tim', 'Katherine', 'John', 'Sophie', 'Niklaus']

const pick = (a) => a[Math.floor(Math.random() * a.length)]
const validColor = (c) => typeof c === 'string' && /^#[0-9a-fA-F]{6}$/.test(c)

// The user's name and colour, kept in localStorage: the same in every tab
// and every document of this browser.
function loadIdentity () {
  let name = local?.getItem('tandem.name')?.trim()
  let color = local?.getItem('tandem.color')
  if (!name) name = pick(NAMES)
  if (!validColor(color)) color = pick(PALETTE)
  local?.setItem('tandem.name', name)
  local?.setItem('tandem.color', color)
  return { name, color }
}
let me = loadIdentity()
if (access.claims) {
  // With a token, others see the name and colour it carries (the server
  // takes them from it): show the same here, not editable.
  const sub = String(access.claims.sub ?? '')
  me = { name: String(access.claims.name || sub || 'Anonymous').slice(0, 40), color: validColor(access.claims.color) ? access.claims.color : colorFor(sub) }
}

function setupIdentityControls (onChange) {
  const nameIn = $('my-name')
  const colorIn = $('my-color')
  nameIn.value = me.name
  colorIn.value = me.color
  if (access.claims) {
    nameIn.readOnly = true
    colorIn.disabled = true
    nameIn.title = colorIn.title = 'Set by your access link'
  }
  const swatch = colorIn.parentElement
  const paintSwatch = () => {
    swatch.style.setProperty('--swatch', colorIn.value)
    swatch.style.setProperty('--swatch-ink', inkOn(colorIn.value))
    swatch.dataset.initials = initials(nameIn.value || me.name)
  }
  paintSwatch()
  const commit = () => {
    const name = nameIn.value.trim().slice(0, 40) || me.name
    const color = validColor(colorIn.value) ? colorIn.value.toLowerCase() : me.color
    nameIn.value = name
    paintSwatch()
    if (name === me.name && color === me.color) return
    me = { name, color }
    local?.setItem('tandem.name', name)
    local?.setItem('tandem.color', color)
    onChange?.()
  }
  nameIn.addEventListener('change', commit)
  nameIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); nameIn.blur() }
    if (e.key === 'Escape') { nameIn.value = me.name; nameIn.blur() }
  })
  colorIn.addEventListener('input', paintSwatch)
  nameIn.addEventListener('input', paintSwatch)
  colorIn.addEventListener('change', commit)
}

// editMyName lets the user change their name: in the top bar's field, or
// on a phone (where the top bar has no room for it) in a prompt.
function editMyName () {
  const input = $('my-name')
  if (input.readOnly) return // set by the access link
  if (input.getClientRects().length > 0) { input.focus(); return }
  const name = prompt('Your name, as the others here see it:', input.value)
  if (name === null) return
  input.value = name
  input.dispatchEvent(new Event('change'))
}

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

async function api (path, opts = {}) {
  const res = await fetch(path, {
    ...opts,
    headers: { Accept: 'application/json', ...(opts.body ? { 'Content-Type': 'application/json' } : {}) }
  })
  let body = null
  try { body = await res.json() } catch { /* empty or not JSON */ }
  if (!res.ok) {
    throw new ApiError(res.status, body?.error?.code ?? 'http', body?.error?.message ?? `${res.status} ${res.statusText}`)
  }
  return body
}

function el (tag, props = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v
    else if (k === 'style') Object.assign(e.style, v)
    else if (k === 'dataset') Object.assign(e.dataset, v)
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else e.setAttribute(k, v)
  }
  for (const c of children) if (c != null) e.append(c)
  return e
}

const docTitle = (t) => (t && t.trim()) || 'Untitled document'

function relTime (date) {
  const d = new Date(date)
  const s = (Date.now() - d.getTime()) / 1000
  if (!isFinite(s)) return ''
  if (s < 45) return 'just now'
  if (s < 90) return 'a minute ago'
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`
  if (s < 5400) return 'an hour ago'
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`
  if (s < 86400 * 7) return `${Math.round(s / 86400)} days ago`
  return d.toLocaleDateString()
}

const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`

let toastTimer
function toast (msg, ms = 2200, action = null) {
  const t = $('toast')
  t.replaceChildren(msg)
  if (action) {
    t.append(' ', el('button', { type: 'button', class: 'toast-action', onclick: () => { t.hidden = true; action.run() } }, action.label))
  }
  t.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { t.hidden = true }, ms)
}

function initials (name) {
  const parts = [...(name || '?').trim()].join('').split(/\s+/).filter(Boolean)
  const first = (p) => [...p][0] ?? ''
  return ((first(parts[0] ?? '?') + (parts.length > 1 ? first(parts[parts.length - 1]) : '')) || '?').toUpperCase()
}

// A readable text colour on the given background.
function inkOn (hex) {
  if (!validColor(hex)) return '#fff'
  const n = parseInt(hex.slice(1), 16)
  const r = n >> 16, g = (n >> 8) & 255, b = n & 255
  return (0.299 * r + 0.587 * g + 0.114 * b) > 170 ? '#111827' : '#fff'
}

// A stable colour for a user seen only in the history.
function colorFor (s) {
  let h = 0
  for (const c of s || '') h = (h * 31 + c.codePointAt(0)) >>> 0
  return PALETTE[h % PALETTE.length]
}

// The documents this browser created or opened, newest first (the open-mode
// list).
const KNOWN = 'tandem.docs'
function remembered () {
  try {
    const v = JSON.parse(local?.getItem(KNOWN) ?? '[]')
    return Array.isArray(v) ? v.filter((d) => d && typeof d.id === 'string') : []
  } catch {
    return []
  }
}
function remember (id, title) {
  const list = [{ id, title: title ?? '', at: Date.now() }, ...remembered().filter((d) => d.id !== id)].slice(0, 200)
  try { local?.setItem(KNOWN, JSON.stringify(list)) } catch {}
}
function forgetAllBut (ids) {
  const keep = new Set(ids)
  try { local?.setItem(KNOWN, JSON.stringify(remembered().filter((d) => keep.has(d.id)))) } catch {}
}

// ---------------------------------------------------------------- list page

async function showList () {
  $('list-view').hidden = false
  document.title = 'Tandem'
  setupIdentityControls()

  const form = $('new-doc')
  if (!mayCreate(access.claims)) form.hidden = true
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const btn = $('new-btn')
    btn.disabled = true
    $('list-error').hidden = true
    try {
      const title = $('new-title').value.trim()
      // A formatted (rich-text) document unless the user asked for
      // Markdown / plain text.
      const type = $('new-type').value === 'plain' ? 'plain' : 'rich'
      const doc = await api('/api/docs', { method: 'POST', body: JSON.stringify(title ? { title, type } : { type }) })
      remember(doc.id, doc.title)
      location.assign('/d/' + encodeURIComponent(doc.id))
    } catch (err) {
      $('list-error').textContent = `Could not create the document: ${err.message}`
      $('list-error').hidden = false
      btn.disabled = false
    }
  })

  // Open mode (no access link): the list is this browser's own documents,
  // those it opened or created; the server lists everything to everyone
  // there, which is no way to meet a shared address. With a link: what
  // it opens.
  const mine = !access.claims
  const docs = []
  let next = null
  const render = () => {
    const list = $('doc-list')
    docs.sort((a, b) => new Date(b.updated) - new Date(a.updated))
    list.replaceChildren(...docs.map((d) => el('li', {},
      el('a', { href: '/d/' + encodeURIComponent(d.id), class: 'doc-link' },
        el('span', { class: 'doc-icon', 'aria-hidden': 'true', title: d.type === 'rich' ? 'Formatted document' : 'Markdown / plain text' }, d.type === 'rich' ? 'A' : '¶'),
        el('span', { class: 'doc-name' }, docTitle(d.title)),
        el('span', { class: 'doc-meta' }, d.offline ? 'kept in this browser' : `${d.type === 'rich' ? 'Formatted' : 'Markdown'} · edited ${relTime(d.updated)}`)))))
    $('list-empty').hidden = docs.length > 0
    $('list-more').hidden = !next
  }
  const load = async () => {
    const q = new URLSearchParams({ limit: '200' })
    const known = mine ? remembered() : []
    if (mine) q.set(known.length > 0 ? 'ids' : 'limit', known.length > 0 ? known.map((d) => d.id).join(',') : '1') // with none known, only whether the server lets us in
    else if (next) q.set('after', next)
    try {
      const r = await api('/api/docs?' + q)
      if (!mine || known.length > 0) docs.push(...r.docs)
      next = mine ? null : r.next || null
      if (mine && known.length > 0) forgetAllBut(r.docs.map((d) => d.id)) // deleted meanwhile
      render()
    } catch (err) {
      if (err.status === undefined && known.length > 0 && docs.length === 0) {
        // No answer (offline, or the server is down): the documents this
        // browser knows, from its own list; they open with what it kept.
        docs.push(...known.map((d) => ({ id: d.id, title: d.title, updated: new Date(d.at || 0).toISOString(), offline: true })))
        render()
        $('list-error').textContent = 'The server cannot be reached: these are the documents this browser remembers. They open with the edits it kept.'
        $('list-error').hidden = false
        return
      }
      $('list-error').textContent = err.status === 401
        ? (tokenExpired() ? expiryMessage() : NEEDS_TOKEN)
        : `Could not list the documents: ${err.message}`
      $('list-error').hidden = false
    }
  }
  $('list-more').addEventListener('click', load)
  if (mine) {
    $('docs-heading').textContent = 'Your documents'
    $('list-empty').textContent = 'Documents you create or open in this browser are listed here. Create one above, or open an address someone shared with you.'
  }
  await load()
  if (!isTouch()) $('new-title').focus()
}

// ---------------------------------------------------------------- editor page

async function openEditor (id) {
  $('editor-view').hidden = false
  $('doc-head').hidden = false
  document.body.classList.add('editing')

  const textarea = $('editor')
  const overlay = $('overlay')
  const shareUrl = location.origin + '/d/' + encodeURIComponent(id)
  $('share-url').value = shareUrl
  $('copy-url').addEventListener('click', () => copyLink(shareUrl))
  $('share-url').addEventListener('focus', (e) => e.target.select())

  const meta = api('/api/docs/' + encodeURIComponent(id)).then((d) => {
    showTitle(d.title)
    remember(id, d.title)
    return d
  }, (err) => {
    if (err.status === 404) showMissing()
    if (err.status === 401) refused(tokenExpired() ? expiryMessage(client?.rev != null) : (access.invalid ? 'That access link is not valid. ' : '') + NEEDS_TOKEN)
    if (err.status === 403) refused('Your access link does not open this document.')
    return null
  })
  // refused: the server will not let this page in. Say so, and stop
  // saying "Connecting…" and "Loading the document…" (nothing is coming).
  let blocked = false
  const refused = (msg) => {
    banner(msg)
    if (client?.rev != null) return // an editor with the document: it stays, and keeps the edits
    blocked = true
    client?.close()
    $('conn').dataset.status = 'closed'
    $('conn-text').textContent = 'Not connected'
    $('retry').hidden = true
    $('editor').placeholder = ''
    for (const h of [$('cm'), $('rich')]) h.removeAttribute('aria-busy')
  }
  const readOnly = access.claims && roleFor(access.claims, id) === 'read'
  if (readOnly) {
    $('doc-title').after(el('span', { class: 'tag view-only', title: 'Your access link lets you read this document, not edit it' }, 'View only'))
  }

  let client = null
  let unbind = null
  let lib
  // CodeMirror by default; ?editor=textarea uses the dependency-free
  // textarea binding instead.
  const mode = new URLSearchParams(location.search).get('editor') === 'textarea' ? 'textarea' : 'codemirror'
  try {
    const [clientMod, textareaMod, unicodeMod, typesMod, cmMod, cm] = await Promise.all([
      import('/js/client.js'), import('/js/textarea.js'), import('/js/unicode.js'), import('/js/doctypes.js'),
      mode === 'codemirror' ? import('/js/codemirror.js') : null,
      mode === 'codemirror' ? import('/js/vendor/codemirror.js') : null])
    lib = { connect: clientMod.connect, bindTextarea: textareaMod.bindTextarea, ...unicodeMod, doctype: typesMod.lookup, tandem: cmMod?.tandem, cm }
  } catch (err) {
    banner(`The editor could not load: ${err.message}`)
    throw err
  }
  // The surface is the document type's: Quill for a formatted document,
  // CodeMirror (or the textarea) for Markdown / plain text. The client
  // knows the type from the server's hello, or from the edits this browser
  // kept (a reload offline).
  const surfaces = new Map()
  let current = null
  const surfaceFor = (type) => {
    if (!surfaces.has(type)) {
      surfaces.set(type, type === 'rich' ? quillSurface($('rich'), lib)
        : mode === 'codemirror' ? codeMirrorSurface($('cm'), lib) : textareaSurface(textarea, overlay, lib))
    }
    return surfaces.get(type)
  }
  const surface = {
    get view () { return current?.view ?? null },
    get quill () { return current?.quill ?? null },
    bind (c, readOnly) {
      current = surfaceFor(c.type)
      document.body.dataset.doctype = c.type
      $('preview-toggle').hidden = c.type === 'rich'
      if (c.type === 'rich') preview.set(false, false)
      return current.bind(c, readOnly)
    },
    focus () { current?.focus() },
    freeze () { current?.freeze() },
    shown: () => current ? current.shown() : null,
    setCaret (at) { current?.setCaret(at) },
    jump (cp) { current?.jump(cp) }
  }
  // Downloads of the document as it is on the server.
  const exportUrl = (format) => `/api/docs/${encodeURIComponent(id)}/export?format=${format}`
  $('download-html').href = exportUrl('html')
  $('download-md').href = exportUrl('markdown')

  // ---- connection indicator
  const conn = $('conn')
  let pendingSince = 0
  let statusTimer = null
  const openedAt = performance.now()
  const renderStatus = () => {
    if (!client || blocked) return
    const st = client.status
    const n = client.pending
    if (n === 0) pendingSince = 0
    else if (!pendingSince) pendingSince = performance.now()
    let text
    switch (st) {
      case 'connected':
        // "Saving" only when an edit takes a while: no flicker per keystroke.
        // A reader saves nothing: say what the page is instead.
        text = readOnly ? 'Connected · view only' : n > 0 && performance.now() - pendingSince > 600 ? 'Saving…' : 'Connected · saved'
        break
      case 'connecting':
        // After a reload with the server down, the first connection can
        // hang: say so after a few seconds, and offer Retry.
        text = !navigator.onLine ? 'Offline' : performance.now() - openedAt > 4000 ? 'Connecting… (the server does not answer)' : 'Connecting…'
        break
      case 'reconnecting': text = 'Reconnecting…'; break
      case 'offline': text = 'Offline'; break
      default: text = 'Disconnected'
    }
    if (st !== 'connected' && n > 0) {
      // What matters is where the changes are, not how many keystrokes.
      text += client.persistent ? ' — your changes are saved on this device' : ' — keep this tab open: your changes are sent when the connection returns'
    }
    $('retry').hidden = st !== 'reconnecting' && st !== 'offline' && !(st === 'connecting' && performance.now() - openedAt > 4000)
    $('undo').disabled = readOnly || !client.canUndo
    $('redo').disabled = readOnly || !client.canRedo
    if (conn.dataset.status !== st) conn.dataset.status = st
    if (conn.dataset.pending !== String(n)) conn.dataset.pending = String(n)
    const label = $('conn-text')
    if (label.textContent !== text) label.textContent = text
    conn.title = `revision ${client.rev ?? '–'}, ${plural(n, 'edit')} not yet acknowledged`
  }

  // ---- participants
  let peersKey = ''
  let lastPeers = [] // the others as last seen online: kept, greyed, while this tab is not connected
  const renderPeers = () => {
    if (!client) return
    const people = [{ me: true, name: me.name, color: me.color }]
    // (connected, not status: a dropped connection empties the peers
    // before the status changes, and they must stay listed, greyed.)
    const online = client.connected
    if (online) {
      lastPeers = []
      for (const [cid, p] of client.peers) lastPeers.push({ cid, name: p.name || p.user || 'Anonymous', color: validColor(p.color) ? p.color : colorFor(cid) })
    }
    for (const p of lastPeers) people.push(online ? p : { ...p, stale: true })
    // Presence events come with every caret move: redraw only on a change.
    const key = JSON.stringify(people)
    if (key === peersKey) return
    peersKey = key
    $('people-count').textContent = String(people.length)
    $('people').replaceChildren(...people.map((p) => el('li', {
      class: 'person' + (p.me ? ' is-me' : '') + (p.stale ? ' stale' : ''),
      title: p.me ? 'You: tap to change your name (your colour is at the top right)' : p.stale ? `${p.name} was here when the connection dropped` : `Jump to ${p.name}'s cursor`,
      dataset: p.cid ? { client: p.cid } : {},
      onclick: p.me ? editMyName : () => jumpTo(p.cid)
    },
    el('span', { class: 'avatar', style: { background: p.color, color: inkOn(p.color) } }, initials(p.name)),
    el('span', { class: 'person-name' }, p.name),
    p.me ? el('span', { class: 'tag' }, 'you') : null)))
  }
  const jumpTo = (cid) => {
    const p = client?.peers.get(cid)
    const sel = p?.sel?.[0]
    if (sel) surface.jump(sel.head)
  }

  // ---- the client and the binding
  const start = () => {
    // localStorage keeps the unsent edits across reloads and restarts; the
    // client leases it to one tab per document (another tab of the same
    // document works without keeping them).
    const opts = { name: me.name, color: me.color, user: me.name, storage: local ?? undefined }
    if (access.claims) {
      // Asked before every connection: an expired link is said so, and
      // the client keeps the unsent edits until a fresh one comes.
      opts.getToken = () => {
        if (tokenExpired()) throw new Error(expiryMessage())
        return readTokenCookie() ?? access.token
      }
    }
    const c = lib.connect(location.origin, id, opts)
    client = c
    c.on('status', () => { renderStatus(); renderPeers(); if (c.status === 'connected') bind(c) })
    c.on('title', showTitle)
    // The title kept with the unsent edits: right after a reload offline.
    if (c.title) showTitle(c.title)
    c.on('restored', (e) => toast(`${e.name || 'Someone'} restored an earlier version (revision ${e.rev}).`, 8000, { label: 'Show history', run: () => hist.open() }))
    c.on('text', () => { renderStatus(); onHistoryText(); preview.update() })
    c.on('synced', renderStatus)
    c.on('presence', renderPeers)
    c.on('error', onClientError)
    // Text restored from storage (a reload, possibly offline) is editable at
    // once; a client without it waits for the server's text, so that the
    // textarea never shows an empty document in between.
    if (c.rev !== null) bind(c)
    renderStatus()
    renderPeers()
    // For tests and the console: the client, the editor, and what it shows.
    window.tandem = {
      id,
      client: c,
      textarea,
      mode,
      get view () { return surface.view },
      get quill () { return surface.quill },
      shown: () => surface.shown(),
      setCaret: (at) => surface.setCaret(at)
    }
  }
  let bound = null
  const bind = (c) => {
    if (bound === c || client !== c) return
    bound = c
    unbind = surface.bind(c, !!readOnly)
  }
  // The document was deleted while open: keep what was on screen, read
  // only, with a way to take it away.
  const deleted = () => {
    const text = surface.shown()
    if (!text) return showMissing()
    surface.freeze()
    const b = $('editor-error')
    b.replaceChildren(
      'This document was deleted. Its text as you last saw it stays here until you leave: ',
      el('button', { type: 'button', class: 'ghost', onclick: () => copyText(text, 'Text copied.') }, 'Copy the text'))
    b.hidden = false
    $('conn').hidden = $('retry').hidden = true
  }
  const onClientError = (e) => {
    switch (e?.code) {
      case 'not_found': deleted(); break
      case 'too_large': toast('That edit is too large for this document (256 KiB per edit, 8 MiB per document).', 5000); break
      case 'forbidden': refused(readOnly ? 'Your access link lets you read this document, not edit it.' : 'The server refused the connection from this page (origin not allowed).'); break
      case 'token': refused(tokenExpired() ? expiryMessage(client?.rev != null) : e.message); break
      case 'rebased':
      case 'conflict':
      case 'storage': toast(e.message, 8000); break
      default: console.warn('tandem:', e)
    }
  }
  // Reconnect under a new name or colour: the edits not yet sent stay in
  // the storage and the new connection sends them.
  setupIdentityControls(() => {
    if (!client) return
    const old = client
    client = null // no status from the old client
    unbind?.()
    unbind = null
    old.close()
    start()
  })
  statusTimer = setInterval(renderStatus, 250)
  $('retry').addEventListener('click', () => client?.retry())
  if (!readOnly) setupRename(id, () => client)

  // ---- undo and redo: the client's (own edits only), never the
  // textarea's. bindTextarea maps Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z, Ctrl+Y and
  // the browser's Edit menu to them; these are the toolbar's buttons.
  const undo = () => { client?.undo(); renderStatus() }
  const redo = () => { client?.redo(); renderStatus() }
  $('undo').addEventListener('click', () => { undo(); surface.focus() })
  $('redo').addEventListener('click', () => { redo(); surface.focus() })

  // Unsent edits are kept in localStorage, but not by a second tab of the
  // same document (the client leases the storage to one): ask first.
  const keepsEdits = () => Boolean(client?.persistent)
  addEventListener('beforeunload', (e) => {
    if (client && client.pending > 0 && client.status !== 'connected' && !keepsEdits()) {
      e.preventDefault()
      e.returnValue = ''
    }
  })

  // ---- history
  // History entries name users; those here now keep their colours.
  const colorOf = (user) => {
    if (user === me.name) return me.color
    for (const p of client?.peers.values() ?? []) if ((p.name || p.user) === user && validColor(p.color)) return p.color
    return colorFor(user)
  }
  const hist = setupHistory(id, () => client, lib, surface, colorOf)
  const preview = setupPreview(() => client)
  const onHistoryText = () => hist.onText()

  start()
  meta.then((d) => { if (d === null && !$('missing-view').hidden) { clearInterval(statusTimer); unbind?.(); client?.close() } })
}

function showTitle (title) {
  $('doc-title').textContent = docTitle(title)
  document.title = `${docTitle(title)} · Tandem`
}

// setupRename makes the title editable: a click (or Enter on it) turns it
// into a field; Enter or leaving the field renames the document for
// everyone (PATCH), Escape cancels.
function setupRename (id, getClient) {
  const h1 = $('doc-title')
  const input = $('doc-title-input')
  h1.classList.add('renamable')
  h1.tabIndex = 0
  h1.title = 'Rename'
  h1.setAttribute('role', 'button')
  const begin = () => {
    input.value = getClient()?.title ?? h1.textContent
    h1.hidden = true
    input.hidden = false
    input.focus()
    input.select()
  }
  let busy = false
  const end = async (save) => {
    if (input.hidden || busy) return
    const title = input.value.trim()
    const old = getClient()?.title ?? ''
    if (save && title !== old) {
      busy = true
      try {
        const d = await api('/api/docs/' + encodeURIComponent(id), { method: 'PATCH', body: JSON.stringify({ title }) })
        showTitle(d.title)
        remember(id, d.title)
      } catch (err) {
        toast(`Could not rename the document: ${err.message}`, 5000)
      }
      busy = false
    }
    input.hidden = true
    h1.hidden = false
  }
  h1.addEventListener('click', begin)
  h1.addEventListener('keydown', (e) => { if (e.key === 'Enter') begin() })
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); end(true) }
    if (e.key === 'Escape') { e.preventDefault(); end(false) }
  })
  input.addEventListener('blur', () => end(true))
}

// ---- the editing surfaces: CodeMirror, or the plain textarea

// textareaSurface edits in the page's <textarea> (textarea.js).
function textareaSurface (textarea, overlay, lib) {
  textarea.hidden = false
  textarea.readOnly = true // until the client has the text: never an empty document in between
  return {
    view: null,
    bind (c, readOnly) {
      const unbind = lib.bindTextarea(c, textarea, { overlay })
      textarea.readOnly = readOnly
      textarea.placeholder = 'Start typing…'
      if (textarea.disabled) {
        const focus = document.activeElement === document.body
        textarea.disabled = false
        if (focus && !isTouch()) textarea.focus()
      }
      return unbind
    },
    focus () { textarea.focus() },
    freeze () { textarea.readOnly = true },
    shown: () => textarea.value,
    setCaret (at) {
      textarea.focus()
      textarea.setSelectionRange(at, at)
    },
    jump (cp) {
      const at = lib.cpToUtf16(textarea.value, Math.min(cp, lib.cpLength(textarea.value)))
      textarea.focus()
      textarea.setSelectionRange(at, at)
      textarea.dispatchEvent(new Event('select'))
    }
  }
}

// codeMirrorSurface edits in CodeMirror 6 (codemirror.js), with Markdown
// highlighting.
function codeMirrorSurface (host, lib) {
  const cm = lib.cm
  $('editor').hidden = true
  $('overlay').hidden = true
  host.hidden = false
  host.setAttribute('aria-busy', 'true')
  const ro = new cm.Compartment()
  const s = {
    view: null,
    freeze () { s.view?.dispatch({ effects: ro.reconfigure([cm.EditorState.readOnly.of(true), cm.EditorView.editable.of(false)]) }) },
    bind (c, readOnly) {
      host.removeAttribute('aria-busy')
      host.replaceChildren()
      const view = new cm.EditorView({
        parent: host,
        state: cm.EditorState.create({
          doc: c.text,
          extensions: [
            lib.tandem(c),
            cm.EditorView.lineWrapping,
            cm.highlightSpecialChars(),
            cm.drawSelection(),
            cm.dropCursor(),
            cm.rectangularSelection(),
            cm.highlightActiveLine(),
            cm.highlightSelectionMatches(),
            new cm.LanguageSupport(cm.markdownLanguage),
            // Markdown's own style: headings bold and larger (CodeMirror's
            // default underlines them, like links), emphasis, code, links,
            // quotes, and the markup characters muted.
            cm.syntaxHighlighting(MARKDOWN_STYLE(cm)),
            cm.keymap.of([...cm.defaultKeymap, ...cm.searchKeymap, cm.indentWithTab]),
            cm.placeholder('Start typing…'),
            ro.of([cm.EditorState.readOnly.of(readOnly), cm.EditorView.editable.of(!readOnly)]),
            cm.EditorView.contentAttributes.of({ 'aria-label': 'Document text', spellcheck: 'true', autocapitalize: 'sentences' })
          ]
        })
      })
      s.view = view
      if (document.activeElement === document.body && !isTouch()) view.focus()
      return () => {
        view.destroy()
        if (s.view === view) s.view = null
      }
    },
    focus () { s.view?.focus() },
    shown: () => s.view ? s.view.state.doc.toString() : null,
    setCaret (at) {
      s.view.focus()
      s.view.dispatch({ selection: { anchor: at } })
    },
    jump (cp) {
      const view = s.view
      if (!view) return
      const text = view.state.doc.toString()
      const at = lib.cpToUtf16(text, Math.min(cp, lib.cpLength(text)))
      view.dispatch({ selection: { anchor: at }, scrollIntoView: true })
      view.focus()
    }
  }
  return s
}

// quillSurface edits a formatted (rich-text) document in Quill 2
// (quill.js), with a toolbar; a reader gets the document without toolbar
// or caret. Quill and the binding load when the first rich document opens.
const TOOLBAR = [
  [{ header: [1, 2, 3, false] }],
  ['bold', 'italic', 'underline', 'strike', 'code'],
  ['link', 'image'],
  [{ list: 'bullet' }, { list: 'ordered' }],
  ['blockquote', 'code-block'],
  ['clean']
]
let quillLib = null
async function loadQuill () {
  if (quillLib) return quillLib
  const [v, b, r] = await Promise.all([import('/js/vendor/quill.js'), import('/js/quill.js'), import('/js/rich.js')])
  v.Quill.register('modules/cursors', v.QuillCursors)
  if (!document.querySelector('link[data-quill]')) {
    document.head.append(el('link', { rel: 'stylesheet', href: '/js/vendor/quill.css', dataset: { quill: '1' } }))
  }
  quillLib = { Quill: v.Quill, bindQuill: b.bindQuill, quillOptions: b.quillOptions, toQuill: r.toQuill }
  return quillLib
}

// An image is inserted by its address (never uploaded: Tandem stores
// documents, not files); only http(s) addresses are taken.
function imageByUrl () {
  const url = (prompt('Address of the image (https://…)') || '').trim()
  if (!url) return
  if (!/^https?:\/\//i.test(url)) { toast('An image address starts with https://', 4000); return }
  const r = this.quill.getSelection(true)
  this.quill.insertEmbed(r.index, 'image', url, 'user')
  this.quill.setSelection(r.index + 1, 0, 'user')
}

function quillSurface (host, lib) {
  $('editor').hidden = true
  $('overlay').hidden = true
  $('cm').hidden = true
  host.hidden = false
  host.setAttribute('aria-busy', 'true')
  const s = {
    view: null,
    quill: null,
    client: null,
    bind (c, readOnly) {
      let unbind = null
      let cancelled = false
      loadQuill().then((q) => {
        if (cancelled) return
        host.removeAttribute('aria-busy')
        host.replaceChildren()
        const mount = el('div', { class: 'quill-mount' })
        host.append(mount)
        const quill = new q.Quill(mount, q.quillOptions({
          theme: 'snow',
          placeholder: readOnly ? '' : 'Start writing…',
          modules: {
            toolbar: readOnly ? false : { container: TOOLBAR, handlers: { image: imageByUrl } },
            cursors: { hideDelayMs: 2500, hideSpeedMs: 300, transformOnTextChange: false }
          }
        }))
        quill.root.setAttribute('aria-label', 'Document text')
        s.quill = quill
        s.client = c
        s.toQuill = q.toQuill
        const off = q.bindQuill(c, quill, { readOnly })
        unbind = () => {
          off()
          host.replaceChildren()
          if (s.quill === quill) s.quill = null
        }
        if (!readOnly && document.activeElement === document.body && !isTouch()) quill.focus()
      }, (err) => banner(`The editor could not load: ${err.message}`))
      return () => {
        cancelled = true
        unbind?.()
      }
    },
    focus () { s.quill?.focus() },
    freeze () { s.quill?.enable(false) },
    shown: () => s.quill ? s.quill.getText() : null,
    setCaret (at) {
      s.quill.focus()
      s.quill.setSelection(at, 0, 'user')
    },
    jump (cp) {
      if (!s.quill || !s.client) return
      // Quill counts UTF-16 units: the units of the first cp code points.
      const at = s.toQuill([{ retain: cp }], s.client.doc)[0]?.retain ?? 0
      s.quill.setSelection(Math.min(at, s.quill.getLength() - 1), 0, 'user')
      s.quill.focus()
    }
  }
  return s
}

// The Markdown highlighting of the CodeMirror surface.
const MARKDOWN_STYLE = (cm) => cm.HighlightStyle.define([
  { tag: cm.tags.heading1, fontWeight: '700', fontSize: '1.3em' },
  { tag: cm.tags.heading2, fontWeight: '700', fontSize: '1.15em' },
  { tag: [cm.tags.heading3, cm.tags.heading4, cm.tags.heading5, cm.tags.heading6], fontWeight: '700' },
  { tag: cm.tags.emphasis, fontStyle: 'italic' },
  { tag: cm.tags.strong, fontWeight: '700' },
  { tag: cm.tags.strikethrough, textDecoration: 'line-through' },
  { tag: cm.tags.link, color: '#4f46e5' },
  { tag: cm.tags.url, color: '#6b7280' },
  { tag: cm.tags.monospace, fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace', fontSize: '.92em' },
  { tag: cm.tags.quote, color: '#4b5563', fontStyle: 'italic' },
  { tag: [cm.tags.processingInstruction, cm.tags.meta, cm.tags.contentSeparator, cm.tags.list], color: '#9ca3af' }
])

// ---- the Markdown preview

// setupPreview renders the text as Markdown beside it, when the reader
// turns it on. The text is other people's: marked's HTML goes through
// DOMPurify before it reaches the page (and the page's CSP forbids inline
// script besides).
function setupPreview (getClient) {
  const pane = $('preview')
  const toggle = $('preview-toggle')
  toggle.hidden = false
  let lib = null
  let frame = 0
  const render = async () => {
    frame = 0
    const c = getClient()
    if (pane.hidden || !c) return
    if (c.type !== 'plain') return
    lib ||= await loadPreview()
    pane.replaceChildren(lib.render(c.text))
  }
  const api = {
    update () {
      if (!pane.hidden && !frame) frame = requestAnimationFrame(render)
    },
    // set shows or hides the preview; keep remembers the choice.
    set (on, keep = true) {
      pane.hidden = !on
      toggle.setAttribute('aria-pressed', String(on))
      toggle.classList.toggle('active', on)
      if (keep) try { local?.setItem('tandem.preview', on ? '1' : '0') } catch {}
      if (on) api.update()
      else pane.replaceChildren()
    }
  }
  toggle.addEventListener('click', () => api.set(pane.hidden))
  api.set(local?.getItem('tandem.preview') === '1')
  return api
}

let previewLib = null
async function loadPreview () {
  if (previewLib) return previewLib
  const { Marked, DOMPurify } = await import('/js/vendor/preview.js')
  const marked = new Marked({ gfm: true, async: false })
  // Links leave the page in a new tab, without telling the other site
  // where they came from.
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer nofollow')
    }
  })
  previewLib = {
    render: (text) => DOMPurify.sanitize(marked.parse(text), {
      RETURN_DOM_FRAGMENT: true,
      FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select'],
      FORBID_ATTR: ['style']
    })
  }
  return previewLib
}

// A phone or tablet: focusing an editor raises the on-screen keyboard, so
// the page does not do it on its own.
const isTouch = () => matchMedia('(pointer: coarse)').matches

function banner (msg) {
  const b = $('editor-error')
  b.textContent = msg
  b.hidden = false
}

function showMissing () {
  $('editor-view').hidden = true
  $('doc-head').hidden = true
  $('missing-view').hidden = false
  document.title = 'Not found · Tandem'
}

async function copyText (text, done) {
  try {
    await navigator.clipboard.writeText(text)
    toast(done)
  } catch {
    toast('The browser did not allow copying: select the text and press Ctrl+C.', 5000)
  }
}

async function copyLink (url) {
  try {
    await navigator.clipboard.writeText(url)
  } catch {
    // No clipboard API (an insecure origin): the old way.
    const input = $('share-url')
    input.focus()
    input.select()
    try { document.execCommand('copy') } catch { toast('Press Ctrl+C to copy the selected link.'); return }
  }
  toast('Link copied: send it to anyone who should edit with you.')
}

// ---------------------------------------------------------------- history

function setupHistory (id, getClient, lib, surface, colorOf) {
  const view = $('history-view')
  const wrap = $('editor-wrap')
  const slider = $('history-slider')
  const toggle = $('history-toggle')
  const changes = $('changes')
  const restoreBtn = $('history-restore')
  const path = '/api/docs/' + encodeURIComponent(id)
  const ops = new Map() // rev → record {rev, op, user, time}
  let open = false
  let head = 0
  let oldest = 0 // the oldest revision retained
  let start = 0 // the oldest revision loaded (the history may go further back)
  let sessions = [] // {from, to, who: [names], start, end, op}, oldest first
  let pos = -1 // the slider's position: 0 is revision `start`, i the end of sessions[i-1]
  let shownRev = -1
  let shownText = ''
  let reqSeq = 0
  let slideTimer = null
  let textTimer = null
  let confirming = false

  const fetchOps = async (from, to) => {
    for (let a = from; a < to;) {
      const b = Math.min(to, a + 1000)
      const r = await api(`${path}/ops?from=${a}&to=${b}`)
      for (const o of r.ops) ops.set(o.rev, o)
      head = Math.max(head, r.head)
      a = b
    }
  }

  // What a session did: characters inserted and deleted, and for a
  // formatted document, characters whose formatting changed.
  const describe = (op) => {
    let ins = 0
    let del = 0
    let fmt = 0
    for (const c of op || []) {
      if (typeof c === 'string') ins += lib.cpLength(c)
      else if (c && typeof c === 'object') {
        if (c.d !== undefined) del += typeof c.d === 'number' ? c.d : lib.cpLength(String(c.d))
        else if (typeof c.delete === 'number') del += c.delete
        else if (typeof c.insert === 'string') ins += lib.cpLength(c.insert)
        else if (c.insert !== undefined) ins++
        else if (typeof c.retain === 'number' && c.attributes) fmt += c.retain
      }
    }
    return [ins ? `+${ins}` : '', del ? `−${del}` : '', fmt ? `${fmt} formatted` : ''].filter(Boolean).join(' ') || 'no change'
  }
  // The document's type (doctypes.js), from the client.
  const type = () => lib.doctype(getClient()?.type ?? 'plain')
  const names = (who) => who.length <= 2 ? who.join(' and ') : `${who.slice(0, -1).join(', ')} and ${who[who.length - 1]}`

  // Sessions: a run of revisions with no pause of PAUSE between two of
  // them, whoever made them (two people typing at once make one session,
  // not a hundred one-keystroke entries). A restore point is only ever
  // the end of a session, never a half-typed interleaving.
  const buildSessions = () => {
    const PAUSE = Number(window.tandemHistoryPause) || 30000 // (tests shorten it)
    sessions = []
    let cur = null
    for (let r = start + 1; r <= head; r++) {
      const o = ops.get(r)
      if (!o) break
      const t = new Date(o.time).getTime()
      const who = o.user || 'someone'
      if (cur && t - cur.end < PAUSE) {
        cur.to = r
        cur.end = t
        cur.ops.push(o.op)
        if (!cur.who.includes(who)) cur.who.push(who)
      } else {
        cur = { from: r, to: r, start: t, end: t, who: [who], ops: [o.op] }
        sessions.push(cur)
      }
    }
    for (const x of sessions) {
      try { x.op = x.ops.reduce((a, b) => type().compose(a, b)) } catch { x.op = null }
      delete x.ops
    }
    slider.min = '0'
    slider.max = String(sessions.length)
  }
  const revAt = (i) => (i === 0 ? start : sessions[i - 1].to)

  const renderChanges = () => {
    const recent = sessions.slice(-40).reverse()
    changes.replaceChildren(...recent.map((x) => el('li', {
      class: 'change' + (shownRev >= x.from && shownRev <= x.to ? ' current' : ''),
      dataset: { from: String(x.from), to: String(x.to) },
      title: x.from === x.to ? `Revision ${x.to}` : `Revisions ${x.from}–${x.to}`,
      onclick: () => select(sessions.indexOf(x) + 1)
    },
    el('span', { class: 'dot', style: { background: colorOf(x.who[0]) } }),
    el('span', { class: 'change-who' }, names(x.who)),
    el('span', { class: 'change-what' }, describe(x.op)),
    el('time', { class: 'change-when', datetime: new Date(x.end).toISOString(), title: new Date(x.end).toLocaleString() }, relTime(x.end)))))
    $('changes-panel').hidden = !open || sessions.length === 0
  }

  // The text of a document of either type: a formatted document's
  // characters, an embed as U+FFFC.
  const textOf = (doc) => typeof doc === 'string' ? doc : doc.map((c) => typeof c.insert === 'string' ? c.insert : '\ufffc').join('')
  // An op of either type in plain text's form (a formatting change is a
  // retain: the text shows no mark for it).
  const plainForm = (op) => op.map((c) => {
    if (typeof c === 'number' || typeof c === 'string' || c?.d !== undefined) return c
    if (typeof c.retain === 'number') return c.retain
    if (typeof c.delete === 'number') return { d: c.delete }
    return typeof c.insert === 'string' ? c.insert : '\ufffc'
  })

  // The text of a version with what its session inserted and deleted
  // marked: before is the text the session started from (its deleted
  // words are shown struck through), text the version's.
  const renderText = (text, op, before) => {
    const pre = $('history-text')
    if (!op || before === null || text.length > 200000) {
      pre.replaceChildren(text)
      return
    }
    const old = Array.from(before)
    const out = []
    let p = 0
    let firstMark = null
    const keep = (n) => { if (n > 0) out.push(old.slice(p, p + n).join('')); p += n }
    for (const c of plainForm(op)) {
      if (typeof c === 'number') keep(c)
      else if (typeof c === 'string') {
        const m = el('ins', {}, c)
        out.push(m)
        firstMark ??= m
      } else if (c && typeof c === 'object') {
        const n = typeof c.d === 'number' ? c.d : lib.cpLength(c.d)
        const gone = old.slice(p, p + n).join('')
        p += n
        const m = el('del', { title: `deleted: ${gone}` }, gone)
        out.push(m)
        firstMark ??= m
      }
    }
    keep(old.length - p)
    pre.replaceChildren(...out)
    firstMark?.scrollIntoView({ block: 'nearest' })
  }
  // A version's document: the text of plain text, the Delta of a
  // formatted document.
  const fetchVersion = async (rev) => {
    const t = await api(`${path}/text?rev=${rev}`)
    return t.delta ?? t.text
  }

  const label = (i) => {
    if (i === 0) return start === 0 ? 'The document as created' : `The oldest version kept (revision ${start})`
    const x = sessions[i - 1]
    return `${new Date(x.end).toLocaleString()} · ${names(x.who)}`
  }

  // show displays the version at slider position i.
  const show = async (i) => {
    const my = ++reqSeq
    const rev = revAt(i)
    $('history-label').textContent = `Version ${i + 1} of ${sessions.length + 1}`
    $('history-meta').textContent = '· ' + label(i)
    cancelConfirm()
    try {
      const x = i > 0 ? sessions[i - 1] : null
      const [doc, before] = await Promise.all([fetchVersion(rev), x && x.op ? fetchVersion(x.from - 1).catch(() => null) : null])
      if (my !== reqSeq) return // a later request won
      shownRev = rev
      shownText = doc
      if (x) $('history-meta').textContent = `· ${label(i)} (${describe(x.op)}, revision${x.from === x.to ? '' : 's'} ${x.from === x.to ? x.to : x.from + '–' + x.to})`
      renderText(textOf(doc), x?.op ?? null, before === null ? null : textOf(before))
      restoreBtn.disabled = rev === head
      for (const li of changes.children) li.classList.toggle('current', rev >= Number(li.dataset.from) && rev <= Number(li.dataset.to))
    } catch (err) {
      if (my !== reqSeq) return
      $('history-meta').textContent = `· could not load: ${err.message}`
    }
  }

  const select = (i) => {
    pos = i
    slider.value = String(i)
    show(i)
  }

  const openHistory = async () => {
    open = true
    toggle.setAttribute('aria-pressed', 'true')
    toggle.classList.add('active')
    wrap.hidden = true
    view.hidden = false
    document.body.classList.add('history-open')
    try {
      const d = await api(path)
      head = d.rev
      oldest = d.oldest
      start = Math.max(oldest, head - 5000) // the last 5,000 revisions
      await fetchOps(start, head)
      buildSessions()
      renderChanges()
      select(sessions.length)
      slider.focus()
    } catch (err) {
      $('history-meta').textContent = `· could not load the history: ${err.message}`
    }
  }

  const closeHistory = () => {
    open = false
    reqSeq++
    clearTimeout(textTimer) // a refresh on its way must not show the panel again
    clearTimeout(slideTimer)
    cancelConfirm()
    toggle.setAttribute('aria-pressed', 'false')
    toggle.classList.remove('active')
    view.hidden = true
    wrap.hidden = false
    document.body.classList.remove('history-open')
    $('changes-panel').hidden = true
    surface.focus()
  }

  // Restoring asks first: it changes the document for everyone.
  const confirmBar = $('history-confirm')
  const cancelConfirm = () => {
    confirming = false
    confirmBar.hidden = true
    restoreBtn.hidden = false
    $('history-close').hidden = false
  }
  restoreBtn.addEventListener('click', () => {
    if (shownRev < 0 || confirming) return
    confirming = true
    $('history-confirm-text').textContent = `Make the document what it was at ${label(pos)}? Everyone here sees the change; Undo takes it back.`
    restoreBtn.hidden = true
    $('history-close').hidden = true // Cancel goes back; one row of buttons
    confirmBar.hidden = false
    $('history-confirm-yes').focus()
  })
  $('history-confirm-no').addEventListener('click', cancelConfirm)
  $('history-confirm-yes').addEventListener('click', () => {
    const client = getClient()
    if (!client || shownRev < 0) return
    const rev = shownRev
    // The edit from the document as it is to the version shown (an
    // ordinary edit: others' concurrent edits transform past it, and
    // Undo takes it back).
    const op = lib.doctype(client.type).diff(client.doc, shownText)
    if (op.length) client.edit(op)
    client.announceRestore(rev)
    closeHistory()
    toast(`Restored the version of ${label(pos)}.`, 8000, { label: 'Undo', run: () => client.undo() })
  })

  toggle.addEventListener('click', () => (open ? closeHistory() : openHistory()))
  $('history-close').addEventListener('click', closeHistory)
  slider.addEventListener('input', () => {
    clearTimeout(slideTimer)
    const i = Number(slider.value)
    pos = i
    $('history-label').textContent = `Version ${i + 1} of ${sessions.length + 1}`
    slideTimer = setTimeout(() => show(i), 60)
  })
  view.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeHistory() })

  return {
    // New revisions while the history is open: extend the sessions, and
    // follow them when the newest version is shown.
    onText () {
      if (!open) return
      clearTimeout(textTimer)
      textTimer = setTimeout(async () => {
        try {
          const r = await api(`${path}/ops?from=${head}`)
          if (!open) return
          for (const o of r.ops) ops.set(o.rev, o)
          if (r.head === head) return
          const following = pos === sessions.length
          head = r.head
          buildSessions()
          renderChanges()
          if (following) select(sessions.length)
          else $('history-label').textContent = `Version ${pos + 1} of ${sessions.length + 1}`
        } catch { /* the next change retries */ }
      }, 400)
    },
    open: openHistory
  }
}

// ---------------------------------------------------------------- routing

// The service worker keeps the page so that the editor opens offline,
// with the unsent edits this browser keeps (sw.js).
if ('serviceWorker' in navigator && (location.protocol === 'https:' || location.hostname === 'localhost' || location.hostname === '127.0.0.1')) {
  navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('tandem: no offline copy of the page:', err))
}

const route = location.pathname.match(/^\/d\/([A-Za-z0-9._-]+)\/?$/)
if (route) openEditor(route[1])
else showList()
