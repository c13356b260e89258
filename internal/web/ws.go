package web

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/tandemdocs/tandem/internal/collab"
)

// sessionConn adapts a melody session to collab.Conn: it hands frames to
// melody and tells collab when melody has written them. The queueing,
// batching and slow-consumer policy are collab's (its outbox keeps at most
// two frames in melody's channel of 4, so melody never drops one).
//
// It is also everything a session carries (melody's only session key,
// keyConn): one small struct per connection rather than a map of boxed
// values, and no *http.Request kept for the connection's life.
type sessionConn struct {
	s *melody.Session // set when the connection is hijacked, before client

	doc      string
	info     collab.ClientInfo
	expires  time.Time     // the token's; zero without one
	opened   time.Time     // when the WebSocket was asked for
	reqID    string        // the upgrade request's id, for the logs
	upgraded chan struct{} // closed once the connection is hijacked

	mu      sync.Mutex
	written []func() // one per frame handed to melody, in order
	closing bool

	expiry *time.Timer // closes the session when its token expires; set before Connect

	client atomic.Pointer[collab.Client] // once joined
	// active is when the client last sent a frame (unix nanoseconds; at
	// first, when it connected): the idle go first when the server is full.
	active atomic.Int64
}

func newSessionConn(doc string, info collab.ClientInfo, expires time.Time, reqID string) *sessionConn {
	c := &sessionConn{doc: doc, info: info, expires: expires, reqID: reqID, opened: time.Now(), upgraded: make(chan struct{})}
	c.active.Store(c.opened.UnixNano())
	return c
}

// log is the session's logger, made when something is logged (a logger
// with attributes kept per connection costs every connection memory).
func (c *sessionConn) log(base *slog.Logger) *slog.Logger {
	args := []any{"req", c.reqID, "doc", c.doc}
	if c.info.User != "" {
		args = append(args, "user", c.info.User)
	}
	if cl := c.client.Load(); cl != nil {
		args = append(args, "client", cl.ID())
	}
	return base.With(args...)
}

// Send implements collab.Conn.
func (c *sessionConn) Send(frame []byte, written func()) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return errClosing
	}
	c.written = append(c.written, written)
	c.mu.Unlock()
	// melody keeps the slice: collab hands out a fresh one per frame.
	if err := c.s.Write(frame); err != nil {
		c.sent()
		return err
	}
	return nil
}

var errClosing = errors.New("web: connection closing")

// sent is called (from melody's writer) when a frame has been written.
func (c *sessionConn) sent() {
	c.mu.Lock()
	if len(c.written) == 0 {
		c.mu.Unlock()
		return
	}
	done := c.written[0]
	c.written[0] = nil
	c.written = c.written[1:]
	c.mu.Unlock()
	done()
}

// Close implements collab.Conn. A resync close is immediate: the client is
// behind anyway, and melody's buffer may be full, where a queued close frame
// would be dropped. Other closes go behind the frames already handed over,
// so that acks reach the client before it is told to go.
func (c *sessionConn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.mu.Unlock()
	if code == collab.CloseResync {
		go c.forceClose(code, reason) // never block the document on a stuck socket
		return
	}
	c.s.CloseWithMsg(melody.FormatCloseMessage(code, reason))
	// If melody's buffer was full the close frame was dropped: force it.
	time.AfterFunc(2*time.Second, func() {
		if !c.s.IsClosed() {
			c.forceClose(code, reason)
		}
	})
}

// closeWait bounds the wait for a forced close frame to get through.
const closeWait = 5 * time.Second

// forceClose writes a close frame directly on the connection (safe from any
// goroutine) and closes it; melody's read loop then ends and the session's
// disconnect handler runs.
func (c *sessionConn) forceClose(code int, reason string) {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	ws := c.s.WebsocketConnection()
	// The close frame queues behind what the socket holds: give a reader
	// that is merely slow the time to drain and learn why it was dropped.
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
	ws.Close()
}

// stop marks the session gone: frames still owed a written call get it, so
// collab's outbox never waits for a dead connection.
func (c *sessionConn) stop() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Lock()
	c.closing = true
	pending := c.written
	c.written = nil
	c.mu.Unlock()
	for _, done := range pending {
		done()
	}
}
