// Installed beside the @tandemdocs/client tarball by TestNPMPackage: edits
// a document on the server at process.argv[2], as an application built
// with a bundler would import the client, and prints what it ends with.
import { connect, PROTOCOL_VERSION } from '@tandemdocs/client'
import { apply } from '@tandemdocs/client/ot'

const [base, docId] = process.argv.slice(2)
const client = connect(base, docId, { WebSocket: globalThis.WebSocket, browser: false, name: 'npm app' })
const fail = (why) => { console.error('app:', why); process.exit(1) }
setTimeout(() => fail('timed out'), 60000).unref()
client.on('error', (e) => console.error('app: error', e.code, e.message))

await new Promise((resolve) => client.on('status', (s) => { if (s === 'connected') resolve() }))
if (client.type !== 'plain') fail('type ' + client.type)
client.edit([apply(client.doc, []).length, ' from npm'])
await new Promise((resolve) => client.on('synced', resolve))
// Wait for the Go side's edit (it waits for ours), then report.
await new Promise((resolve) => {
  const check = () => { if (client.doc.includes('from go')) resolve() }
  client.on('text', check)
  check()
})
console.log(JSON.stringify({ protocol: PROTOCOL_VERSION, doc: client.doc, rev: client.rev }))
client.close()
