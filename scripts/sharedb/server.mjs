// ShareDB 7, in memory, with the ot-text-unicode type, over WebSockets:
// what `tandem bench --protocol sharedb` compares Tandem with. Usage:
//   node server.mjs [port]      (default 8090)
import http from 'node:http'
import ShareDB from 'sharedb'
import otText from 'ot-text-unicode'
import WebSocketJSONStream from '@teamwork/websocket-json-stream'
import { WebSocketServer } from 'ws'

ShareDB.types.register(otText.type)
const backend = new ShareDB({ presence: true, doNotForwardSendPresenceErrorsToClient: true }) // the in-memory database and pub/sub; presence for --presence
const server = http.createServer()
const wss = new WebSocketServer({ server })
wss.on('connection', (ws) => {
  const stream = new WebSocketJSONStream(ws)
  // A reply to a client that has gone (a presence broadcast racing its
  // close) is an error on the stream: not the server's end.
  stream.on('error', () => {})
  backend.listen(stream)
})
const port = Number(process.argv[2] || 8090)
server.listen(port, '127.0.0.1', () => console.log(`sharedb listening on ws://127.0.0.1:${port} (pid ${process.pid})`))
