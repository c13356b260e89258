package collab

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tandemdocs/tandem/internal/clientstate"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/ot/rich"
	"github.com/tandemdocs/tandem/protocol"
)

// simConn is one WebSocket between a client and a server: FIFO each way,
// with delays drawn per frame. It is the server's Conn (the outbox hands
// it frames); the client sends through it too.
type simConn struct {
	w      *world
	id     string
	client *simClient
	server *simServer
	inc    int // the server's incarnation it was made with

	clientUp bool // the client still reads it
	serverUp bool // the server still writes it (has not closed it)
	// lastToClient and lastToServer keep each direction FIFO: a frame
	// arrives no earlier than the one sent before it.
	lastToClient, lastToServer time.Duration
	inFlight                   int // frames on the wire, both ways
}

// Send is the transport: the frame reaches the client after the network's
// delay (and the client's slowness); written is called once the client has
// read it, which is what lets the outbox send more.
func (c *simConn) Send(frame []byte, written func()) error {
	w := c.w
	if !c.serverUp || !c.clientUp {
		written()
		return nil
	}
	d := w.netDelay() + c.client.readDelay()
	c.lastToClient = max(w.now+d, c.lastToClient)
	c.inFlight++
	w.at(c.lastToClient-w.now, nil, func() {
		c.inFlight--
		if c.clientUp && c.client.conn == c {
			c.client.receive(c, frame)
		}
		written()
	})
	return nil
}

// Close is the server closing the connection: the close frame follows the
// frames sent before it.
func (c *simConn) Close(code int, reason string) {
	w := c.w
	if !c.serverUp {
		return
	}
	c.serverUp = false
	c.lastToClient = max(w.now+w.netDelay(), c.lastToClient)
	c.inFlight++
	w.at(c.lastToClient-w.now, nil, func() {
		c.inFlight--
		if c.client.conn == c {
			c.client.closed(c, code, reason)
		}
	})
	// The server's end is gone; it does not hear of the client again.
	if s := c.server; s.incarnation == c.inc {
		delete(s.conns, c.id)
	}
}

// broken: the server's process died; the client sees the connection reset.
func (c *simConn) broken() {
	w := c.w
	if !c.serverUp {
		return
	}
	c.serverUp = false
	c.inFlight++
	w.at(w.netDelay(), nil, func() {
		c.inFlight--
		if c.client.conn == c {
			c.client.closed(c, 1006, "connection reset")
		}
	})
}

// toServer sends a frame from the client.
func (c *simConn) toServer(frame []byte) {
	w := c.w
	s := c.server
	c.lastToServer = max(w.now+w.netDelay(), c.lastToServer)
	c.inFlight++
	w.at(c.lastToServer-w.now, s, func() {
		c.inFlight--
		if c.serverUp && s.incarnation == c.inc {
			s.receive(c, frame)
		}
	})
}

// simClient is one editor: the real client state machine (package
// clientstate, the part of package client that is not I/O), typing at
// random, going away and coming back.
type simClient struct {
	w    *world
	idx  int
	name string
	key  string
	rng  *rand.Rand // its own, so that its edits do not shift the world's draws

	st      *clientstate.State
	conn    *simConn
	helloed bool
	dialed  bool // a dial is scheduled or under way

	offlineUntil time.Duration
	slowUntil    time.Duration
	edits        int

	// lastAck is the newest op acknowledged; dup, a stale copy of it sent
	// again (a retransmission) whose answer is still to come.
	lastAck, dup struct {
		seq uint64
		rev int64
	}
}

func newSimClient(w *world, i int) *simClient {
	c := &simClient{w: w, idx: i, name: fmt.Sprintf("c%d", i+1), key: fmt.Sprintf("sim-key-%d-%d", w.seed, i),
		rng: rand.New(rand.NewPCG(w.seed, uint64(i)+1))}
	c.reset()
	return c
}

// reset is a client that reloads: its local state is gone (its unacked
// edits with it), its key stays.
func (c *simClient) reset() {
	var seq uint64
	if c.st != nil {
		// The key's newest seq is kept with the key (the browser client
		// stores both): a reloaded client that started again from 1 would
		// have its new ops taken for its old ones.
		seq = c.st.Seq
	}
	c.st = clientstate.New(c.key)
	c.st.Seq = seq
	c.st.Jitter = func(n int64) int64 { return c.w.rng.Int64N(n + 1) }
}

func (c *simClient) readDelay() time.Duration {
	if c.w.now < c.slowUntil {
		return c.w.between(20*time.Millisecond, 200*time.Millisecond)
	}
	return 0
}

// dial connects to a server the load balancer picks.
func (c *simClient) dial() {
	w := c.w
	c.dialed = false
	if c.conn != nil || w.now < c.offlineUntil {
		return
	}
	var up []*simServer
	for _, s := range w.servers {
		if s.up {
			up = append(up, s)
		}
	}
	if len(up) == 0 {
		c.redial(w.between(50*time.Millisecond, 300*time.Millisecond))
		return
	}
	s := up[w.rng.IntN(len(up))]
	w.conns++
	if c.st.Rev >= 0 {
		w.stats.Reconnects++
	}
	conn := &simConn{w: w, id: fmt.Sprintf("%s.%d", c.name, w.conns), client: c, server: s, inc: s.incarnation, clientUp: true, serverUp: true}
	c.conn, c.helloed = conn, false
	info := ClientInfo{Key: c.key, Source: SourceOf(c.key), User: c.name, Name: c.name, Color: "#000", LastRev: c.st.Rev}
	w.note(func() string {
		return fmt.Sprintf("%s dials %s as %s from revision %d", c.name, s.name, conn.id, info.LastRev)
	})
	conn.inFlight++
	w.at(w.netDelay(), s, func() {
		conn.inFlight--
		if s.incarnation != conn.inc || !conn.clientUp {
			if !conn.clientUp {
				return
			}
			conn.serverUp = false
			if c.conn == conn {
				c.closed(conn, 1006, "connection refused")
			}
			return
		}
		s.join(conn, info)
	})
}

func (c *simClient) redial(after time.Duration) {
	if c.dialed {
		return
	}
	c.dialed = true
	c.w.at(after, nil, c.dial)
}

// drop ends the connection from the client's side (a network failure, a
// tab put to sleep); the server notices a while later.
func (c *simClient) drop(why string) {
	w := c.w
	conn := c.conn
	if conn == nil {
		return
	}
	w.stats.Drops++
	w.note(func() string { return fmt.Sprintf("%s drops %s (%s)", c.name, conn.id, why) })
	c.disconnected()
	conn.clientUp = false
	s := conn.server
	conn.inFlight++
	w.at(w.between(time.Millisecond, 500*time.Millisecond), s, func() {
		conn.inFlight--
		if s.incarnation == conn.inc && conn.serverUp {
			conn.serverUp = false
			s.leave(conn)
		}
	})
	c.redial(w.between(time.Millisecond, 300*time.Millisecond))
}

func (c *simClient) disconnected() {
	c.conn, c.helloed = nil, false
	c.dup.seq = 0 // its answer is lost with the connection
	c.st.Connected = false
}

// closed: the server closed the connection (or it broke).
func (c *simClient) closed(conn *simConn, code int, reason string) {
	w := c.w
	w.note(func() string { return fmt.Sprintf("%s: %s closed: %d %s", c.name, conn.id, code, reason) })
	conn.clientUp = false
	c.disconnected()
	c.redial(w.between(time.Millisecond, 500*time.Millisecond))
}

func (c *simClient) goOffline(d time.Duration) {
	c.offlineUntil = max(c.offlineUntil, c.w.now+d)
	c.w.note(func() string { return fmt.Sprintf("%s goes offline for %v", c.name, d) })
	c.drop("offline")
	c.dialed = false
	c.redial(d)
}

func (c *simClient) slowFor(d time.Duration) {
	c.slowUntil = c.w.now + d
	c.w.note(func() string { return fmt.Sprintf("%s reads slowly for %v", c.name, d) })
}

// comeBack: a quiet period: back online, reading at full speed.
func (c *simClient) comeBack() {
	c.offlineUntil, c.slowUntil = 0, 0
	if c.conn == nil {
		c.dialed = false
		c.redial(c.w.between(0, 50*time.Millisecond))
	}
}

// send hands a frame to the connection, noting an op's send in the truth.
func (c *simClient) send(frame []byte, isOp bool) {
	if c.conn == nil || !c.helloed {
		return
	}
	if isOp {
		c.w.truth.sent(c.st.Src, c.st.InSeq, c.st.Rev, *c.st.Inflight)
	}
	c.w.note(func() string { return fmt.Sprintf("%s sends %s", c.name, frame) })
	c.conn.toServer(frame)
}

// think is the user: an edit or a selection now and then, online or not.
func (c *simClient) think() {
	w := c.w
	defer w.at(w.between(20*time.Millisecond, 400*time.Millisecond), nil, c.think)
	if w.calm || c.st.Text == nil {
		return
	}
	if c.rng.IntN(5) == 0 {
		if c.helloed {
			n := c.st.Text.Len()
			a, b := c.rng.IntN(n+1), c.rng.IntN(n+1)
			c.send(c.st.SelectionFrame([]ot.Selection{{Anchor: a, Head: b}}), false)
		}
		return
	}
	op := c.randomOp()
	if op.IsNoop() {
		return
	}
	w.stats.Edits++
	c.edits++
	frame, err := c.st.Edit(op)
	if err != nil {
		w.fail("%s: edit %s: %v", c.name, op.AppendJSON(nil), err)
		return
	}
	if frame != nil {
		c.send(frame, true)
	}
}

// randomOp is an edit of the local text: an insert, a delete, or (rich
// text) a format, at a random place.
func (c *simClient) randomOp() doctype.Op {
	r := c.rng
	n := c.st.Text.Len()
	tag := string(rune('a'+c.idx)) + fmt.Sprint(c.edits%10)
	if c.st.Type.Name() != "rich" {
		pos := r.IntN(n + 1)
		if n > 0 && (r.IntN(3) == 0 || n > 300) {
			pos = r.IntN(n)
			k := 1 + r.IntN(min(n-pos, 8))
			return doctype.PlainOp(skipThen(pos, ot.Delete(k)))
		}
		return doctype.PlainOp(skipThen(pos, ot.Insert(tag)))
	}
	// A rich document ends with its newline: edits stay before it.
	body := n - 1
	pos := r.IntN(body + 1)
	var d rich.Delta
	if pos > 0 {
		d = append(d, rich.Retain(pos, nil))
	}
	switch k := r.IntN(4); {
	case body-pos > 0 && (k == 0 || n > 300):
		d = append(d, rich.Delete(1+r.IntN(min(body-pos, 8))))
	case body-pos > 0 && k == 1:
		attrs := rich.MakeAttrs(rich.Attr{Key: "bold", Value: rich.Bool(true)})
		if r.IntN(2) == 0 {
			attrs = rich.MakeAttrs(rich.Attr{Key: "bold", Value: rich.Null()}, rich.Attr{Key: "color", Value: rich.String("#f00")})
		}
		d = append(d, rich.Retain(1+r.IntN(min(body-pos, 8)), attrs))
	default:
		var attrs rich.Attrs
		if r.IntN(3) == 0 {
			attrs = rich.MakeAttrs(rich.Attr{Key: "italic", Value: rich.Bool(true)})
		}
		d = append(d, rich.Insert(tag, attrs))
	}
	d, err := rich.Normalize(d)
	if err != nil {
		panic(err)
	}
	return doctype.RichOp(d)
}

func skipThen(pos int, c ot.Component) ot.Op {
	if pos > 0 {
		return ot.Op{ot.Skip(pos), c}
	}
	return ot.Op{c}
}

// receive handles a frame from the server: each message is checked
// against the truth first, then given to the client's state machine.
func (c *simClient) receive(conn *simConn, frame []byte) {
	w := c.w
	msgs, err := protocol.ParseFrame(frame)
	if err != nil {
		w.fail("%s: the server sent a malformed frame: %v: %.200s", c.name, err, frame)
		return
	}
	for _, m := range msgs {
		if c.conn != conn {
			return // closed while handling this frame
		}
		if !c.helloed {
			c.hello(m)
			continue
		}
		c.handle(m)
		if w.failure != nil {
			return
		}
	}
}

func (c *simClient) hello(m protocol.Message) {
	w := c.w
	if m.Type == "error" {
		w.note(func() string { return fmt.Sprintf("%s: join refused: %s: %s", c.name, m.Code, m.Message) })
		switch m.Code {
		case CodeRevTooOld:
			c.resync()
		case CodeRevAhead:
			// The client has seen a revision this server's store does not
			// have: something acknowledged or broadcast was lost.
			w.fail("%s: join refused: %s: %s", c.name, m.Code, m.Message)
		}
		return
	}
	if m.Type != "hello" {
		w.fail("%s: the first message is %q, not a hello", c.name, m.Type)
		return
	}
	if m.Rev > w.truth.head() {
		w.fail("%s: hello at revision %d, the store's head is %d", c.name, m.Rev, w.truth.head())
		return
	}
	if m.Text != nil || m.Delta != nil {
		got := string(m.Delta)
		if m.Text != nil {
			got = *m.Text
		}
		if want, ok := w.truth.recent[m.Rev]; ok && !sameContent(w, got, want) {
			w.fail("%s: hello's text at revision %d is %q, the store's is %q", c.name, m.Rev, got, want)
			return
		}
	}
	for _, o := range m.Ops {
		c.checkOp(o)
	}
	w.note(func() string {
		return fmt.Sprintf("%s: hello at revision %d (%d ops, text %v)", c.name, m.Rev, len(m.Ops), m.Text != nil || m.Delta != nil)
	})
	notices, err := c.st.Hello(m)
	c.notices(notices)
	if errors.Is(err, clientstate.ErrResync) {
		c.resync()
		return
	}
	if err != nil {
		w.fail("%s: hello: %v", c.name, err)
		return
	}
	c.helloed, c.st.Connected = true, true
	if frame, _ := c.st.Resend(); frame != nil {
		c.send(frame, true)
	} else if w.cfg.Drops && !w.calm && c.lastAck.seq != 0 && c.lastAck.seq == c.st.Seq && w.chance(0.3) {
		c.sendStaleDuplicate()
	}
}

// sendStaleDuplicate sends the newest acknowledged op again, as it was
// first sent (a retransmission arriving late, a client that lost the
// ack's effect): the server must answer it with its original revision and
// never apply it twice. After a restart only the store's exactly-once index
// knows it.
func (c *simClient) sendStaleDuplicate() {
	w := c.w
	ss := w.truth.sends[srcSeq{c.st.Src, c.lastAck.seq}]
	if len(ss) == 0 {
		return
	}
	first := ss[0]
	frame := fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":`, first.base, c.lastAck.seq)
	frame = append(first.op.AppendJSON(frame), '}')
	c.dup = c.lastAck
	w.note(func() string { return fmt.Sprintf("%s sends a stale duplicate %s", c.name, frame) })
	c.conn.toServer(frame)
}

// sameContent compares two contents of the document's type (a rich
// document's Delta JSON is compared as parsed).
func sameContent(w *world, a, b string) bool {
	if a == b {
		return true
	}
	da, err1 := w.typ.NewDocument(a)
	db, err2 := w.typ.NewDocument(b)
	return err1 == nil && err2 == nil && da.Content() == db.Content()
}

// resync: the client cannot catch up from its revision (the history was
// compacted, or the server sent the text while an op was in flight): it
// reloads, losing its unacknowledged edits, as a browser tab would.
func (c *simClient) resync() {
	w := c.w
	w.stats.Resyncs++
	w.note(func() string { return c.name + " resyncs (reloads)" })
	if c.conn != nil {
		c.conn.clientUp = false
		conn := c.conn
		s := conn.server
		w.at(w.netDelay(), s, func() {
			if s.incarnation == conn.inc && conn.serverUp {
				conn.serverUp = false
				s.leave(conn)
			}
		})
	}
	c.disconnected()
	c.reset()
	c.redial(w.between(time.Millisecond, 100*time.Millisecond))
}

// checkOp checks a broadcast op against the truth: a client hears only
// of durable revisions.
func (c *simClient) checkOp(m protocol.Message) {
	w := c.w
	r, ok := w.truth.record(m.Rev)
	if !ok {
		w.fail("%s heard of revision %d, which is not in the store (head %d)", c.name, m.Rev, w.truth.head())
		return
	}
	if r.Source != m.Src || r.Seq != m.Seq {
		w.fail("%s heard of revision %d as (%.6s, %d); the store has (%.6s, %d)", c.name, m.Rev, m.Src, m.Seq, r.Source, r.Seq)
		return
	}
	op, _, err := w.typ.ParseOp(m.Op)
	if err != nil {
		w.fail("%s: op at %d: %v", c.name, m.Rev, err)
		return
	}
	if !bytes.Equal(op.AppendJSON(nil), r.Op.AppendJSON(nil)) {
		w.fail("%s heard of revision %d as %s; the store has %s", c.name, m.Rev, m.Op, r.Op.AppendJSON(nil))
	}
}

func (c *simClient) handle(m protocol.Message) {
	w := c.w
	at := c.st.Rev
	w.note(func() string {
		return fmt.Sprintf("%s (at %d) gets %s rev=%d seq=%d client=%s sel=%v code=%s op=%s", c.name, at, m.Type, m.Rev, m.Seq, m.Client, m.Sel, m.Code, m.Op)
	})
	switch m.Type {
	case "op":
		c.checkOp(m)
	case "sel":
		if m.Rev > c.st.Rev {
			// A selection is sent at the revision its connection has
			// seen: never ahead of the client's.
			w.fail("%s got a selection at revision %d, ahead of its %d", c.name, m.Rev, c.st.Rev)
		}
	}
	if w.failure != nil {
		return
	}
	if d := c.dup; d.seq != 0 && m.Seq == d.seq && (c.st.Inflight == nil || c.st.InSeq != d.seq) {
		switch m.Type {
		case "ack":
			// The duplicate's answer: the revision it was committed as.
			c.dup.seq = 0
			if m.Rev != d.rev {
				w.fail("%s: a duplicate of seq %d (revision %d) was acknowledged as revision %d", c.name, d.seq, d.rev, m.Rev)
			}
			return
		case "error":
			c.dup.seq = 0 // refused (too old to check): answered, not applied
			return
		}
	}
	conn := c.conn
	r, err := c.st.Handle(m)
	c.notices(r.Notices)
	if w.failure != nil {
		return
	}
	var se *clientstate.ServerError
	switch {
	case errors.As(err, &se):
		switch se.Code {
		case CodeRevTooOld:
			c.resync()
		case CodeInternal:
			c.drop("refused: " + se.Message)
		default:
			w.fail("%s: op %d refused for good: %s: %s", c.name, se.Seq, se.Code, se.Message)
		}
		return
	case err != nil:
		w.fail("%s: %v", c.name, err)
		return
	}
	if r.Frame != nil {
		c.send(r.Frame, true)
	}
	if r.RetryAfter > 0 {
		pause, seq := r.RetryAfter, c.st.InSeq
		w.at(pause, nil, func() {
			if c.conn == conn && c.helloed {
				if f := c.st.RetryFrame(seq); f != nil {
					c.send(f, true)
				}
			}
		})
	}
	if r.CatchUp {
		c.drop("too far behind: catch up")
	}
}

// notices checks what the client was told: an ack must be of a revision in
// the store that is this client's submission.
func (c *simClient) notices(ns []clientstate.Notice) {
	w := c.w
	for _, n := range ns {
		switch n.Kind {
		case clientstate.Acked:
			w.stats.Acks++
			c.lastAck.seq, c.lastAck.rev = n.Seq, n.Rev
			r, ok := w.truth.record(n.Rev)
			if !ok || r.Source != c.st.Src || r.Seq != n.Seq {
				w.fail("%s: seq %d acknowledged as revision %d, which the store does not have as (%.6s, %d) (head %d)", c.name, n.Seq, n.Rev, c.st.Src, n.Seq, w.truth.head())
				return
			}
			w.truth.acked[srcSeq{c.st.Src, n.Seq}] = n.Rev
		case clientstate.Remote:
			w.stats.Remotes++
		}
	}
}

// unsettled says what this client is still waiting for, or "".
func (c *simClient) unsettled(head int64) string {
	switch {
	case c.conn == nil || !c.helloed:
		return c.name + " is not connected"
	case c.conn.inFlight > 0:
		return c.name + " has frames on the wire"
	case !c.st.Synced():
		return fmt.Sprintf("%s has edits not acknowledged (seq %d in flight)", c.name, c.st.InSeq)
	case c.st.Rev != head:
		return fmt.Sprintf("%s is at revision %d, the store at %d", c.name, c.st.Rev, head)
	}
	return ""
}

// peerIDs lists the participants the client shows.
func (c *simClient) peerIDs() []string {
	var ids []string
	for id := range c.st.Peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
