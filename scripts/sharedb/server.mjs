// ShareDB 7, in memory, with the ot-text-unicode type, over WebSockets:
// what `tandem bench --protocol sharedb` compares Tandem with. Usage:
//   node server.mjs [port]      (default 8090)
import http from 'node:http'
import ShareDB from 'sharedb'
import otText from 'ot-text-unicode'
import WebSocketJSONStream from '@teamwork/websocket-json-stream'
import { WebSocketServer } from 'ws'

ShareDB.types.register(otText.type)
const backend = new ShareDB() // the in-memory database and pub/sub
const server = http.createServer()
const wss = new WebSocketServer({ server })
wss.on('connection', (ws) => backend.listen(new WebSocketJSONStream(ws)))
const port = Number(process.argv[2] || 8090)
server.listen(port, '127.0.0.1', () => console.log(`sharedb listening on ws://127.0.0.1:${port} (pid ${process.pid})`))
