// Random identifiers of the browser client: a source's secret key (the
// server derives the public source id from it: docs/protocol.md, Sources)
// and instance ids. No dependencies.

// newKey returns a source key: 128 random bits in hex (the server derives
// the public source id from it; see docs/protocol.md).
export function newKey () {
  const b = new Uint8Array(16)
  const c = globalThis.crypto
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b)
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256)
  return Array.from(b, x => x.toString(16).padStart(2, '0')).join('')
}

export function validKey (k) {
  return typeof k === 'string' && /^[A-Za-z0-9_-]{22,128}$/.test(k)
}

/** uuid returns a random UUID (crypto.randomUUID where the page may use it:
 * it is missing outside secure contexts). */
export function uuid () {
  const c = globalThis.crypto
  if (c && typeof c.randomUUID === 'function') {
    try { return c.randomUUID() } catch {}
  }
  const b = new Uint8Array(16)
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b)
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256)
  b[6] = (b[6] & 0x0f) | 0x40
  b[8] = (b[8] & 0x3f) | 0x80
  const h = Array.from(b, x => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
