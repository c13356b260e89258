// Package web is Tandem's HTTP front end: the REST API and the WebSocket
// endpoint (Echo routes), and the adapter from melody sessions to
// collab.Conn.
//
// The adapter queues each connection's messages and writes whatever is
// waiting as one frame (a JSON array when there are several). melody drops
// a message silently when its buffer is full; here that closes the
// connection with collab.CloseResync instead, so a client never misses an op
// without knowing. melody's Broadcast is never used: hubs keep their own
// per-document client sets.
package web
