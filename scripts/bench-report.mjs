// Renders the JSON results of scripts/bench.sh as the table in
// BENCHMARKS.md (between the "results" markers).
import { readFileSync, writeFileSync, readdirSync } from 'node:fs'
import os from 'node:os'

const [dir, file, baseline, head] = process.argv.slice(2)
const load = (name) => { try { return JSON.parse(readFileSync(`${dir}/${name}.json`, 'utf8')) } catch { return null } }
const names = [...new Set(readdirSync(dir).filter(f => f.endsWith('.json') && !f.startsWith('regression-')).map(f => f.replace(/^(tandem|tandem_os|tandem_memory|sharedb)-/, '').replace(/\.json$/, '')))]
const order = ['closed-2', 'closed-10', 'closed-50', 'open-200x5', 'open-500x1', 'open-1000x1', 'docs-1000x4', 'docs-1000x4-presence', 'docs-5000x2', 'join-2000', 'idle-10000']
names.sort((a, b) => order.indexOf(a) - order.indexOf(b))

const num = (x, d = 0) => x == null ? '–' : Number(x).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
function describe (r) {
  if (r.mode === 'idle') return `${r.docs} doc × ${r.clients_per_doc} conns`
  const who = `${r.docs > 1 ? `${r.docs} docs × ` : ''}${r.clients_per_doc} client${r.clients_per_doc > 1 ? 's' : ''}`
  return (r.mode === 'closed' ? `${who}, closed loop` : `${who} × ${r.rate}/s`) + (r.presence ? ', caret after every edit' : '')
}
function cell (r) {
  if (!r) return '–'
  if (r.mode === 'idle') {
    const kb = r.server_kb_per_connection != null ? `, ${num(r.server_kb_per_connection, 1)} kB/conn` : ''
    return `${num(r.connections)} connected in ${num(r.seconds, 2)} s${kb}, RSS ${num(r.server_rss_mb)} MB`
  }
  const offered = r.mode === 'closed' ? '' : ` of ${num(r.docs * r.clients_per_doc * r.rate)}`
  const conv = r.converged === false ? ' **not converged**' : ''
  const lost = r.lost_connections ? `; **${num(r.lost_connections)} connections closed as too slow**` : ''
  const gen = r.load_generator_cpu_percent > 90 ? ` (load generator at ${num(r.load_generator_cpu_percent)}%: bound by it)` : ''
  const errs = Object.keys(r.errors || {}).length ? ` errors: ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ')}` : ''
  return `${num(r.committed_ops_per_sec)}${offered} ops/s, ack p99 ${num(r.submit_to_ack.p99_ms, 1)} ms, seen p99 ${num(r.submit_to_seen.p99_ms, 1)} ms; CPU ${num(r.server_cpu_percent)}%, RSS ${num(r.server_rss_mb)} MB${gen}${lost}${conv}${errs}`
}

let table = '| load | Tandem, `--durability fsync` (the default) | Tandem, `os` | Tandem, `memory` (like for like) | ShareDB 7 (in memory) |\n|---|---|---|---|---|\n'
for (const n of names) {
  const t = load(`tandem-${n}`); const o = load(`tandem_os-${n}`); const m = load(`tandem_memory-${n}`); const s = load(`sharedb-${n}`)
  table += `| ${describe(t || o || m || s)} | ${cell(t)} | ${cell(o)} | ${cell(m)} | ${cell(s)} |\n`
}
const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
const machine = `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`
const stamp = `Measured ${new Date().toISOString().slice(0, 10)} at commit \`${head}\` on ${machine}, Node ${process.version}; ` +
  'server on CPU 0, `tandem bench` on CPU 1.\n\n'

// The regression check: the same loads on a build of the baseline commit
// and on this one, interleaved.
const runs = readdirSync(dir).filter(f => /^regression-.*\.json$/.test(f))
const warnings = []
let check = ''
if (runs.length) {
  const loads = [...new Set(runs.map(f => f.replace(/^regression-(baseline|head)-/, '').replace(/-\d+\.json$/, '')))].sort((a, b) => order.indexOf(a) - order.indexOf(b))
  check = `Measured ${new Date().toISOString().slice(0, 10)} on ${machine}: this build (\`${head}\`) and a build of \`${baseline}\`, ` +
    'each with its defaults, alternating, three runs each (a warning needs the medians 1.5× apart and every run of this build slower than every run of the baseline).\n\n| load | build | committed | ack p50 | ack p99 | server CPU | load generator |\n|---|---|---|---|---|---|---|\n'
  for (const l of loads) {
    const p50 = { baseline: [], head: [] }; const p99 = { baseline: [], head: [] }
    for (const build of ['baseline', 'head']) {
      for (const f of runs.filter(f => f.startsWith(`regression-${build}-${l}-`)).sort()) {
        const r = JSON.parse(readFileSync(`${dir}/${f}`, 'utf8'))
        p50[build].push(r.submit_to_ack.p50_ms); p99[build].push(r.submit_to_ack.p99_ms)
        const offered = r.docs * r.clients_per_doc * r.rate
        check += `| ${describe(r)} | ${build === 'head' ? `this (\`${head}\`)` : `\`${baseline}\``} | ${num(r.committed_ops_per_sec)} of ${num(offered)} ops/s | ${num(r.submit_to_ack.p50_ms, 1)} ms | ${num(r.submit_to_ack.p99_ms, 1)} ms | ${num(r.server_cpu_percent)}% | ${num(r.load_generator_cpu_percent)}% |\n`
      }
    }
    const med = (a) => a.length ? [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)] : null
    for (const [what, m] of [['p50', p50], ['p99', p99]]) {
      const b = med(m.baseline); const h = med(m.head)
      // A regression is a median 1.5× the baseline's (and 1 ms more: below
      // that, the clock's grain and the disk decide) with every run of this
      // build slower than every run of the baseline: runs on a shared
      // machine vary by more than 1.5× now and then.
      if (b != null && h != null && h > 1.5 * b + 1 && Math.min(...m.head) > Math.max(...m.baseline)) {
        warnings.push(`${l}: ack ${what} ${num(h, 1)} ms, the baseline's ${num(b, 1)} ms`)
      }
    }
  }
  check += warnings.length ? `\n**Slower than the baseline:** ${warnings.join('; ')}.\n` : '\nNo load is slower than the baseline (by the rule above).\n'
}

let doc = readFileSync(file, 'utf8')
function replace (begin, end, text) {
  const i = doc.indexOf(begin); const j = doc.indexOf(end)
  if (i < 0 || j < 0) throw new Error(`${file} has no ${begin} markers`)
  doc = doc.slice(0, i + begin.length) + '\n' + text + doc.slice(j)
}
if (names.length) replace('<!-- results: generated by scripts/bench.sh -->', '<!-- end of results -->', stamp + table)
if (runs.length) replace('<!-- regression: generated by scripts/bench.sh -->', '<!-- end of regression -->', check)
writeFileSync(file, doc)
for (const w of warnings) console.error(`REGRESSION: ${w}`)
