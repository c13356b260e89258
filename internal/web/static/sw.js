// The demo's service worker: it keeps the application shell (the page, its
// style sheet and modules) so that the editor opens without the server,
// with the edits it keeps in this browser's storage, and sends them when
// the server is back. Online, everything comes from the network as
// always (a new deployment is never hidden behind a cache); the cache is
// only the fallback. The API and WebSockets are never cached.

const CACHE = 'tandem-shell-v2'
const SHELL = [
  '/', '/css/demo.css',
  '/js/demo.js', '/js/client.js', '/js/ot.js', '/js/rich.js', '/js/unicode.js', '/js/peers.js',
  '/js/docstate.js', '/js/doctypes.js',
  '/js/diff.js', '/js/keys.js', '/js/undo.js', '/js/localstate.js', '/js/transport.js',
  '/js/textarea.js', '/js/codemirror.js', '/js/quill.js',
  '/js/vendor/codemirror.js', '/js/vendor/preview.js', '/js/vendor/quill.js', '/js/vendor/quill.css'
]

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()))
})

self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()))
})

self.addEventListener('fetch', (e) => {
  const req = e.request
  const url = new URL(req.url)
  if (req.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return
  const page = req.mode === 'navigate' && (url.pathname === '/' || /^\/d\/[^/]+\/?$/.test(url.pathname))
  if (!page && !url.pathname.startsWith('/js/') && !url.pathname.startsWith('/css/')) return
  e.respondWith((async () => {
    const cache = await caches.open(CACHE)
    try {
      const res = await fetch(req)
      // Keep the newest copy; every editor address is the same page.
      if (res.ok) cache.put(page ? '/' : req, res.clone())
      return res
    } catch (err) {
      const hit = await cache.match(page ? '/' : req, { ignoreSearch: page })
      if (hit) return hit
      throw err
    }
  })())
})
