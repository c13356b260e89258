// Package web is Tandem's HTTP front end: the REST API and the WebSocket
// endpoint (Echo routes), and a thin adapter from melody sessions to
// collab.Conn.
//
// The adapter only hands frames to melody and reports when melody has
// written them; the outbound queue, the batching of waiting messages into
// one frame and the slow-consumer policy are collab's (its outbox keeps at
// most two frames in melody's buffer, so melody never drops one, and closes
// a connection that falls too far behind with collab.CloseResync). melody's
// Broadcast is never used: documents keep their own client sets.
package web
