package web

import (
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/tandemdocs/tandem/collab"
)

// sessionConn adapts a melody session to collab.Conn. Messages the hub sends
// are queued here and written by one goroutine per session: whatever is
// waiting when it wakes goes out as one frame (a JSON array when there are
// several), so a busy document costs its readers one frame per burst, not
// one per op.
//
// Nothing is dropped silently: when this queue or melody's buffer behind it
// is full, the connection is closed with CloseResync and the client catches
// up after reconnecting.
type sessionConn struct {
	s        *melody.Session
	maxMsgs  int
	maxBytes int

	wmu sync.Mutex // held while taking and writing a frame: keeps frames in order

	mu       sync.Mutex
	inFlight int // frames handed to melody and not yet written
	queue    [][]byte
	bytes    int
	closing  bool
	wake     chan struct{}
	done     chan struct{}
	doneOnce sync.Once
}

func newSessionConn(s *melody.Session, maxMsgs, maxBytes int) *sessionConn {
	c := &sessionConn{s: s, maxMsgs: maxMsgs, maxBytes: maxBytes, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.writeLoop()
	return c
}

// Send implements collab.Conn.
func (c *sessionConn) Send(msg []byte) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return errClosing
	}
	// An empty queue takes any message: one larger than maxBytes (a big
	// hello) could never be sent otherwise.
	if len(c.queue) > 0 && (len(c.queue) >= c.maxMsgs || c.bytes+len(msg) > c.maxBytes) {
		c.mu.Unlock()
		return collab.ErrQueueFull
	}
	c.queue = append(c.queue, msg)
	c.bytes += len(msg)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

var errClosing = errors.New("web: connection closing")

// take returns the queued messages as one frame.
func (c *sessionConn) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch len(c.queue) {
	case 0:
		return nil
	case 1:
		frame := c.queue[0]
		c.queue[0] = nil
		c.queue, c.bytes = c.queue[:0], 0
		return frame
	}
	frame := make([]byte, 0, c.bytes+len(c.queue)+1)
	frame = append(frame, '[')
	for i, m := range c.queue {
		if i > 0 {
			frame = append(frame, ',')
		}
		frame = append(frame, m...)
		c.queue[i] = nil
	}
	c.queue, c.bytes = c.queue[:0], 0
	return append(frame, ']')
}

func (c *sessionConn) writeLoop() {
	for {
		select {
		case <-c.wake:
			if !c.flush(false) {
				return
			}
		case <-c.done:
			return
		}
	}
}

// maxInFlight is how many frames may wait in melody's buffer. Keeping it
// small leaves the backlog of a slow reader in this connection's queue,
// where QueueMessages and QueueBytes bound it, and lets it batch.
const maxInFlight = 2

// flush writes what is queued as one frame, unless maxInFlight frames are
// still unwritten (force ignores that, for the last flush before a close).
// It returns false if the session is gone.
func (c *sessionConn) flush(force bool) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	busy := c.inFlight >= maxInFlight
	c.mu.Unlock()
	if busy && !force {
		return true // sent() wakes the writer when melody has written one
	}
	if frame := c.take(); frame != nil {
		c.mu.Lock()
		c.inFlight++
		c.mu.Unlock()
		// melody keeps the slice: take always hands out a fresh one.
		return c.s.Write(frame) == nil
	}
	return true
}

// sent is called (from melody's writer) when a frame has been written.
func (c *sessionConn) sent() {
	c.mu.Lock()
	if c.inFlight > 0 {
		c.inFlight--
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close implements collab.Conn. A resync close is immediate: the client is
// behind anyway, and melody's buffer may be full, where a queued close frame
// would be dropped. Other closes first flush what is queued, so that acks
// reach the client before it is told to go.
func (c *sessionConn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.mu.Unlock()
	if code == collab.CloseResync {
		go c.forceClose(code, reason) // never block the hub on a stuck socket
		return
	}
	c.finish()
	c.flush(true)
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
	c.queue, c.bytes = nil, 0
	c.mu.Unlock()
	c.finish()
	ws := c.s.WebsocketConnection()
	// The close frame queues behind what the socket holds: give a reader
	// that is merely slow the time to drain and learn why it was dropped.
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
	ws.Close()
}

// stop ends the writer when the session is gone.
func (c *sessionConn) stop() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.finish()
}

// finish stops the writer goroutine.
func (c *sessionConn) finish() { c.doneOnce.Do(func() { close(c.done) }) }
