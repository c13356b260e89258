// Replays a recorded trace through ot-text-unicode's apply on plain strings
// (what a ShareDB server does per op) and prints ns per patch, as the peer
// number for ot's BenchmarkReplay. Usage:
//   node bench.mjs [../../../../shared/traces/seph-blog1.json.gz]
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import textUnicode from 'ot-text-unicode'

const { type } = textUnicode
const path = process.argv[2] ?? new URL('../../../../shared/traces/seph-blog1.json.gz', import.meta.url).pathname
const trace = JSON.parse(gunzipSync(readFileSync(path)).toString('utf8'))
const ops = []
for (const txn of trace.txns) {
  for (const [pos, del, ins] of txn.patches) {
    const op = []
    if (pos > 0) op.push(pos)
    if (del > 0) op.push({ d: del })
    if (ins !== '') op.push(ins)
    ops.push(op)
  }
}
for (let run = 0; run < 3; run++) {
  let doc = trace.startContent
  const t0 = process.hrtime.bigint()
  for (const op of ops) doc = type.apply(doc, op)
  const ns = Number(process.hrtime.bigint() - t0)
  if (doc !== trace.endContent) throw Error('replay did not reach endContent')
  console.log(`ot-text-unicode apply: ${ops.length} patches, ${(ns / ops.length).toFixed(0)} ns/patch`)
}
