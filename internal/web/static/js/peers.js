// How other participants are shown: their colour, a readable ink for text
// on it, and their label. Shared by the editor bindings (textarea.js,
// codemirror.js). No dependencies.

// Colours for peers that did not choose one.
const PALETTE = ['#e91e63', '#3f51b5', '#009688', '#ff9800', '#9c27b0', '#4caf50', '#f44336', '#2196f3']

/** peerColor returns the peer's CSS colour when it is a plain one (hex,
 * rgb/hsl or a name: never anything that could inject CSS), else one from
 * a palette, chosen by its client id. */
export function peerColor (peer) {
  const c = typeof peer.color === 'string' ? peer.color.trim() : ''
  if (/^#[0-9a-fA-F]{3,8}$/.test(c) || /^(rgb|rgba|hsl|hsla)\([\d\s.,%/]+\)$/.test(c) || /^[a-zA-Z]{3,20}$/.test(c)) return c
  let h = 0
  for (const ch of String(peer.client || '')) h = (h * 31 + ch.charCodeAt(0)) >>> 0
  return PALETTE[h % PALETTE.length]
}

/** peerLabel is the name shown next to the peer's caret. */
export function peerLabel (peer) {
  return (peer.name || peer.user || 'Anonymous').slice(0, 60)
}

/** inkOn returns '#000' or '#fff', whichever reads better on the colour
 * hex (#rgb or #rrggbb; anything else gets white). A yellow label gets
 * black text. */
export function inkOn (hex) {
  let m = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/i.exec(hex)
  if (m) m = [0, m[1] + m[1], m[2] + m[2], m[3] + m[3]]
  else m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})(?:[0-9a-f]{2})?$/i.exec(hex)
  if (!m) return '#fff'
  // WCAG relative luminance; black wins above the crossover (~0.18).
  const lin = v => {
    const c = parseInt(v, 16) / 255
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4
  }
  const L = 0.2126 * lin(m[1]) + 0.7152 * lin(m[2]) + 0.0722 * lin(m[3])
  return L > 0.179 ? '#000' : '#fff'
}
