// Type-checked (tsc --noEmit) against the package's declarations by
// TestNPMPackage: the public API as a TypeScript application uses it.
import { connect, type TandemClient, type Peer, type ClientError } from '@tandemdocs/client'
import { apply, transform, type Op } from '@tandemdocs/client/ot'
import { compose, type Delta } from '@tandemdocs/client/rich'

const client: TandemClient = connect('https://docs.example', 'notes', { type: 'plain', name: 'Ann', browser: false })
client.on('text', (doc, e) => { const o: string = e.origin; void doc; void o })
client.on('error', (e: ClientError) => { const r: string | undefined = e.reason; void r })
client.on('presence', (peers: Map<string, Peer>) => { for (const p of peers.values()) void p.sel })
const op: Op = [3, 'hi', { d: 1 }]
client.edit(op)
const text: string = apply('abcd', transform(op, [1, 'x'], 'left'))
const d: Delta = compose([{ insert: 'a' }], [{ retain: 1, attributes: { bold: true } }])
client.setSelection([{ anchor: 1, head: 2 }])
const n: number = client.rev + client.pending
void text; void d; void n
client.close()
