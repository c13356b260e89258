package collab

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Conn is the transport under one client connection (a WebSocket session,
// say). It is all a Manager needs of a connection; implementations must be
// safe for use from several goroutines.
type Conn interface {
	// Send hands one frame to the transport and must not block. The
	// transport calls written once the frame is on the wire (or will never
	// be, because the connection is gone), from any goroutine, even from
	// inside Send. An error means the frame was not taken: the connection
	// is closed for resync.
	Send(frame []byte, written func()) error
	// Close ends the connection with a WebSocket close code and reason,
	// after the frames already handed over.
	Close(code int, reason string)
}

// ErrQueueFull is what an outbox reports when a message does not fit: the
// connection is closed with CloseResync, so nothing is ever silently lost.
var ErrQueueFull = errors.New("collab: connection queue full")

// outbox is a connection's outbound queue: the policy every transport gets.
// Messages wait here; at most maxInFlight frames are in the transport at a
// time, and whatever has queued up meanwhile goes out as one frame (a JSON
// array when there are several), so a busy document costs a slow reader one
// frame per burst, not one per op. Past its bounds the connection is
// closed for resync rather than a message dropped.
//
// It has no goroutine of its own: frames are handed over by whoever queues
// a message when the transport has room, or by the transport's written
// callback when room comes back.
type outbox struct {
	conn     Conn
	onFail   func() // the transport refused a frame (it has closed the connection)
	maxMsgs  int
	maxBytes int

	depth *queueDepth // shared by a Manager's outboxes; may be nil
	// writtenFn is o.written as a func value made once (a method value
	// made per frame would be an allocation per frame).
	writtenFn func()
	turn      uint64 // the driver's own: the step that last queued here

	mu       sync.Mutex
	queue    [][]byte
	bytes    int
	inFlight int
	pumping  bool // one goroutine hands frames over at a time: keeps them in order
	again    bool // room came back while pumping
	closing  *closeRequest
	closed   bool
}

// maxInFlight is how many frames may be in the transport at once. Keeping
// it small leaves a slow reader's backlog here, where the bounds apply and
// messages batch. A message may itself be a JSON array of messages (a
// batch the document encoded once for many connections).
const maxInFlight = 2

func newOutbox(conn Conn, maxMsgs, maxBytes int, onFail func()) *outbox {
	o := &outbox{conn: conn, maxMsgs: maxMsgs, maxBytes: maxBytes, onFail: onFail}
	o.writtenFn = o.written
	return o
}

// queueDepth totals the messages and bytes waiting in outboxes (a gauge:
// a growing total means readers cannot keep up).
type queueDepth struct {
	msgs, bytes atomic.Int64
	// sentFrames and sentMsgs count what went to the transports: their
	// ratio is how well messages batch (each frame is a write).
	sentFrames, sentMsgs atomic.Int64
}

func (d *queueDepth) add(msgs, bytes int) {
	if d != nil {
		d.msgs.Add(int64(msgs))
		d.bytes.Add(int64(bytes))
	}
}

// emptied subtracts the whole queue; o.mu is held.
func (o *outbox) emptied() {
	o.depth.add(-len(o.queue), -o.bytes)
}

// push queues msg and hands what it can to the transport. It returns
// ErrQueueFull when the queue is over its bounds (the caller closes the
// connection for resync); after a close, messages are discarded (the
// client reconnects and catches up anyway).
func (o *outbox) push(msg []byte) error {
	if err := o.enqueue(msg); err != nil {
		return err
	}
	o.pump()
	return nil
}

// enqueue is push without handing anything to the transport: a document
// queues all of an event's messages for a connection, then pumps once, so
// that they leave in one frame (a commit of k ops costs a reader one
// write, not k).
func (o *outbox) enqueue(msg []byte) error {
	o.mu.Lock()
	if o.closed || o.closing != nil {
		o.mu.Unlock()
		return nil
	}
	// An empty queue takes any message: a hello larger than maxBytes could
	// never be sent otherwise.
	if len(o.queue) > 0 && (len(o.queue) >= o.maxMsgs || o.bytes+len(msg) > o.maxBytes) {
		o.mu.Unlock()
		return ErrQueueFull
	}
	o.queue = append(o.queue, msg)
	o.bytes += len(msg)
	o.depth.add(1, len(msg))
	o.mu.Unlock()
	return nil
}

// written is the transport's callback for a frame it is done with.
func (o *outbox) written() {
	o.mu.Lock()
	if o.inFlight > 0 {
		o.inFlight--
	}
	o.mu.Unlock()
	o.pump()
}

// pump hands queued messages to the transport while it has room, and
// carries out a close asked for meanwhile. Only one goroutine pumps at a
// time (the others leave a note in again), so frames keep their order.
func (o *outbox) pump() {
	o.mu.Lock()
	if o.pumping {
		o.again = true
		o.mu.Unlock()
		return
	}
	o.pumping = true
	for {
		o.again = false
		if o.closing != nil {
			o.mu.Unlock()
			o.finishClose()
			return
		}
		if o.closed || o.inFlight >= maxInFlight || len(o.queue) == 0 {
			if o.again {
				continue
			}
			break
		}
		frame := o.take()
		o.inFlight++
		o.mu.Unlock()
		err := o.conn.Send(frame, o.writtenFn)
		o.mu.Lock()
		if err != nil && o.closing == nil {
			o.closing = &closeRequest{code: CloseResync, reason: "could not send: reconnect and catch up", failed: true}
		}
	}
	o.pumping = false
	o.mu.Unlock()
}

// take returns the queued messages as one frame; o.mu is held.
func (o *outbox) take() []byte {
	o.emptied()
	if o.depth != nil {
		o.depth.sentFrames.Add(1)
		o.depth.sentMsgs.Add(int64(len(o.queue)))
	}
	if len(o.queue) == 1 {
		frame := o.queue[0]
		o.queue[0] = nil
		o.queue, o.bytes = o.queue[:0], 0
		return frame
	}
	frame := make([]byte, 0, o.bytes+len(o.queue)+1)
	frame = append(frame, '[')
	for i, m := range o.queue {
		if i > 0 {
			frame = append(frame, ',')
		}
		if m[0] == '[' {
			// A batch of messages (presence): spliced in, so that a
			// frame is always one flat array.
			m = m[1 : len(m)-1]
		}
		frame = append(frame, m...)
		o.queue[i] = nil
	}
	o.queue, o.bytes = o.queue[:0], 0
	return append(frame, ']')
}

type closeRequest struct {
	code   int
	reason string
	failed bool // closed because the transport refused a frame
}

// close ends the connection: a resync close is immediate (the client is
// behind anyway; what is queued goes with the connection, and the client
// learns why from the code); other closes hand over what is queued first,
// so that acks reach the client before it is told to go. It reports false
// if the outbox was closing already.
func (o *outbox) close(code int, reason string) bool {
	o.mu.Lock()
	if o.closed || o.closing != nil {
		o.mu.Unlock()
		return false
	}
	o.closing = &closeRequest{code: code, reason: reason}
	if o.pumping {
		o.mu.Unlock() // the pumping goroutine closes after its frame
		return true
	}
	o.pumping = true
	o.mu.Unlock()
	o.finishClose()
	return true
}

// finishClose runs with o.pumping set, by the one goroutine pumping.
func (o *outbox) finishClose() {
	o.mu.Lock()
	req := o.closing
	var frame []byte
	if req.code != CloseResync && len(o.queue) > 0 {
		frame = o.take()
	}
	o.emptied()
	o.queue, o.bytes = nil, 0
	o.closed = true
	o.mu.Unlock()
	if frame != nil {
		o.conn.Send(frame, func() {})
	}
	o.conn.Close(req.code, req.reason)
	if req.failed && o.onFail != nil {
		o.onFail()
	}
	o.mu.Lock()
	o.pumping = false
	o.mu.Unlock()
}
