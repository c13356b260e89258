package collab

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/storage"
)

// committed is a record as the hub keeps it: with the connection that
// submitted it.
type committed struct {
	storage.Record
	Client string
}

// client is a connection as its hub sees it.
type client struct {
	id      string
	conn    Conn
	info    ClientInfo
	sel     []ot.Selection // at the hub's durable revision
	gone    bool
	limiter *limiter
	// joinRev is the durable revision of the client's hello: it gets every
	// later revision by broadcast (an ack for its source's ops).
	joinRev int64
}

// send queues msg; a connection that cannot take it is closed for resync.
// It reports whether the message was queued.
func (c *client) send(msg []byte) bool {
	if c.gone {
		return false
	}
	if err := c.conn.Send(msg); err != nil {
		c.gone = true
		c.conn.Close(CloseResync, "outbound queue full: reconnect and catch up")
		return false
	}
	return true
}

// source is what the hub remembers of a client source for exactly-once.
type source struct {
	seq uint64 // the newest sequence number committed (or being committed)
	rev int64  // its revision
	// mine: this hub committed seq itself, so the source's later seqs are
	// new. A seq learned from the store says nothing about later ones,
	// which an earlier incarnation of the hub may have committed.
	mine bool
}

// hub serializes everything that happens to one open document on one
// goroutine: submits are transformed, applied and handed to the group
// committer in order; once a write is durable the hub acknowledges its
// authors and broadcasts to everyone else. Nothing is sent about a record
// before it is on disk.
//
// The hub keeps two ropes: head, with every accepted op, against which new
// ops are validated, and durable, with the ops on disk, from which joining
// clients get their text. Ops between the two are in flight (one append at
// the committer) or unsent (waiting for it to return, to go in the next
// append).
type hub struct {
	m  *Manager
	id string

	// Set up by the creator before run starts; read-only after ready.
	ready   chan struct{}
	loadErr error
	refs    int // guarded by m.mu

	inbox chan func()
	quit  chan struct{} // closed when run returns

	doc        storage.Document
	head       *ot.Rope
	headRev    int64
	durable    *ot.Rope
	durableRev int64

	log      []committed // records logStart+1 .. headRev
	logStart int64
	inflight []committed
	unsent   []committed
	result   chan error // the in-flight append's outcome
	lastSnap int64

	clients map[string]*client
	sources map[string]source

	idleGen  int
	stopping bool
	closeFor func() // set by shutdown: run when nothing is pending
	dead     bool   // a commit failed or the document is gone: no more ops
}

func newHub(m *Manager, id string) *hub {
	return &hub{
		m:       m,
		id:      id,
		ready:   make(chan struct{}),
		inbox:   make(chan func(), 1024),
		quit:    make(chan struct{}),
		result:  make(chan error, 1),
		clients: map[string]*client{},
		sources: map[string]source{},
	}
}

// load reads the document: metadata and text at its head, from the newest
// snapshot plus the records after it.
func (h *hub) load(ctx context.Context) error {
	doc, rope, err := storage.Load(ctx, h.m.store, h.id)
	if err != nil {
		return err
	}
	durable, err := ot.NewRope(rope.String())
	if err != nil {
		return err
	}
	h.doc, h.head, h.durable = doc, rope, durable
	h.headRev, h.durableRev, h.logStart = doc.Head, doc.Head, doc.Head
	snap, err := h.m.store.Snapshot(ctx, h.id, doc.Head)
	if err != nil {
		return err
	}
	h.lastSnap = snap.Rev
	return nil
}

// post queues fn to run on the hub's goroutine; false if the hub is gone.
func (h *hub) post(fn func()) bool {
	select {
	case h.inbox <- fn:
		return true
	case <-h.quit:
		return false
	}
}

func (h *hub) run() {
	defer h.m.running.Done()
	defer close(h.quit)
	for {
		select {
		case fn := <-h.inbox:
			fn()
		case err := <-h.result:
			h.committed(err)
		}
		if h.finished() {
			return
		}
	}
}

// finished reports whether the hub's goroutine can end, doing the final
// work if so.
func (h *hub) finished() bool {
	pending := len(h.inflight) > 0 || len(h.unsent) > 0
	switch {
	case h.closeFor != nil && !pending:
		h.finalSnapshot()
		h.closeFor()
		return true
	case h.dead && !pending && h.m.refs(h) == 0:
		return true
	}
	return false
}

// join adds a client: it gets hello, the others get join.
func (h *hub) join(c *client) error {
	if h.dead || h.stopping {
		h.m.unref(h)
		return protoErr(CodeInternal, "document %s is closing; retry", h.id)
	}
	hello, err := h.hello(c)
	if err != nil {
		h.m.unref(h)
		h.maybeIdle() // the Connect may have loaded the document
		return err
	}
	if err := c.conn.Send(hello); err != nil {
		h.m.unref(h)
		h.maybeIdle()
		return protoErr(CodeInternal, "could not send hello: %v", err)
	}
	c.joinRev = h.durableRev
	join := encodeJoin(c)
	for _, o := range h.clients {
		o.send(join)
	}
	h.clients[c.id] = c
	h.idleGen++
	return nil
}

// hello builds the first message for c: the durable state (the text, or
// the ops after c's last revision), the peers and their selections.
func (h *hub) hello(c *client) ([]byte, error) {
	b := append(make([]byte, 0, 256+h.durable.ByteLen()), `{"type":"hello","protocol":`...)
	b = appendInt(b, ProtocolVersion)
	b = appendField(b, "doc")
	b = appendString(b, h.id)
	b = appendField(b, "title")
	b = appendString(b, h.doc.Title)
	b = appendField(b, "client")
	b = appendString(b, c.id)
	b = appendField(b, "src")
	b = appendString(b, c.info.Source)
	b = appendField(b, "rev")
	b = appendInt(b, h.durableRev)

	var ops []committed
	catchUp := false
	if from := c.info.LastRev; from >= 0 && from <= h.durableRev && h.durableRev-from <= h.m.cfg.CatchUpMax {
		var err error
		ops, err = h.records(from, h.durableRev)
		catchUp = err == nil && catchUpBytes(ops) <= max(h.durable.ByteLen(), 256<<10)
	}
	if catchUp {
		b = appendField(b, "from")
		b = appendInt(b, c.info.LastRev)
		b = appendField(b, "ops")
		b = append(b, '[')
		for i, r := range ops {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendObject(b, func(b []byte) []byte { return appendOpFields(b, r) })
		}
		b = append(b, ']')
	} else {
		b = appendField(b, "text")
		b = appendString(b, h.durable.String())
	}
	b = appendField(b, "peers")
	b = append(b, '[')
	first := true
	for _, p := range h.clients {
		if p.gone {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendObject(b, func(b []byte) []byte {
			b = appendPeerFields(b, p)
			b = appendField(b, "sel")
			return appendSelections(b, p.sel)
		})
	}
	b = append(b, ']', '}')
	return b, nil
}

// catchUpBytes estimates the size of ops in a hello: past the text's size,
// sending the text is cheaper.
func catchUpBytes(ops []committed) int {
	n := 0
	for _, r := range ops {
		n += 96
		for _, c := range r.Op {
			n += 8 + len(c.Text())
		}
	}
	return n
}

// records returns the committed records with from < Rev <= to, from memory
// or the store.
func (h *hub) records(from, to int64) ([]committed, error) {
	if from >= h.logStart {
		return h.log[from-h.logStart : to-h.logStart], nil
	}
	recs, err := h.m.store.Records(context.Background(), h.id, from, h.logStart)
	if err != nil {
		return nil, err
	}
	out := make([]committed, 0, to-from)
	for _, r := range recs {
		out = append(out, committed{Record: r})
	}
	return append(out, h.log[:to-h.logStart]...), nil
}

func (h *hub) leave(c *client) {
	if _, ok := h.clients[c.id]; !ok {
		return
	}
	delete(h.clients, c.id)
	c.gone = true
	h.m.unref(h)
	leave := encodeLeave(c.id)
	for _, o := range h.clients {
		o.send(leave)
	}
	h.maybeIdle()
}

func (h *hub) handle(c *client, m ClientMessage) {
	if c.gone {
		return
	}
	switch m.Type {
	case "op":
		if err := h.submit(c, m); err != nil {
			err.Seq, err.HasSeq = m.Seq, true
			c.send(EncodeError(err))
		}
	case "sel":
		if err := h.select_(c, m); err != nil {
			c.send(EncodeError(err))
		}
	}
}

// submit takes one op from c: deduplicated by (source, seq), transformed
// against every op committed after its base revision, one by one, applied,
// and queued for the group commit. The ack and broadcast come when the write
// is durable.
func (h *hub) submit(c *client, m ClientMessage) *Error {
	if h.dead || h.stopping {
		return protoErr(CodeInternal, "document is closing; resubmit after reconnecting")
	}
	if done, err := h.duplicate(c, m.Seq); done || err != nil {
		return err
	}
	if m.Rev > h.durableRev {
		return protoErr(CodeRevAhead, "op based on revision %d, the document is at %d", m.Rev, h.durableRev)
	}
	since, err := h.records(m.Rev, h.headRev)
	if err != nil {
		if errors.Is(err, storage.ErrCompacted) {
			return protoErr(CodeRevTooOld, "revision %d is no longer retained: resync", m.Rev)
		}
		h.m.log.Error("read records", "doc", h.id, "from", m.Rev, "err", err)
		return protoErr(CodeInternal, "could not read history")
	}
	op := m.Op
	for _, r := range since {
		if op, err = ot.Transform(op, r.Op, ot.Left); err != nil {
			return protoErr(CodeInvalidOp, "%v", err)
		}
	}
	inserted := 0
	for _, comp := range op {
		if comp.Kind() == ot.KindInsert {
			inserted += len(comp.Text())
		}
	}
	if inserted > h.m.cfg.MaxInsertBytes {
		return protoErr(CodeTooLarge, "op inserts %d bytes, at most %d", inserted, h.m.cfg.MaxInsertBytes)
	}
	if h.head.ByteLen()+inserted > h.m.cfg.MaxDocBytes {
		return protoErr(CodeTooLarge, "the document would exceed %d bytes", h.m.cfg.MaxDocBytes)
	}
	if err := h.head.Apply(op); err != nil {
		return protoErr(CodeInvalidOp, "%v", err)
	}
	h.headRev++
	rec := committed{
		Record: storage.Record{Rev: h.headRev, Op: op, Source: c.info.Source, Seq: m.Seq, User: c.info.User, Time: h.m.cfg.Now()},
		Client: c.id,
	}
	h.log = append(h.log, rec)
	h.unsent = append(h.unsent, rec)
	h.sources[c.info.Source] = source{seq: m.Seq, rev: rec.Rev, mine: true}
	h.flush()
	return nil
}

// duplicate handles an op the client submitted before (a resubmission after
// a reconnect or a lost ack): it is acknowledged with its original revision,
// now if that is durable or when it becomes so, and not applied again. A
// connection gets one ack per revision: one that joined before the revision
// was durable gets it from broadcast (already, or when it becomes durable),
// so the resubmission is not acknowledged a second time.
func (h *hub) duplicate(c *client, seq uint64) (bool, *Error) {
	src := c.info.Source
	s, known := h.sources[src]
	if known && seq > s.seq && s.mine {
		return false, nil
	}
	if known && seq == s.seq {
		if s.rev <= c.joinRev {
			c.send(encodeAck(seq, s.rev))
		} // else: broadcast acknowledges it to every connection of src
		return true, nil
	}
	rev, found, err := h.m.store.LookupSubmission(context.Background(), h.id, src, seq)
	if err != nil {
		h.m.log.Error("exactly-once lookup", "doc", h.id, "src", src, "seq", seq, "err", err)
		return true, protoErr(CodeInternal, "could not check for a resubmission")
	}
	if found {
		if !known || seq > s.seq {
			h.sources[src] = source{seq: seq, rev: rev}
		}
		if rev <= c.joinRev {
			c.send(encodeAck(seq, rev))
		}
		return true, nil
	}
	if known && seq < s.seq {
		return true, protoErr(CodeBadMessage, "seq %d is older than %d, the newest from this source, and was never committed", seq, s.seq)
	}
	return false, nil
}

// flush hands the unsent records to the group committer as one append, if
// none is in flight.
func (h *hub) flush() {
	if len(h.inflight) > 0 || len(h.unsent) == 0 {
		return
	}
	h.inflight, h.unsent = h.unsent, nil
	app := storage.Append{DocID: h.id, Head: h.durableRev, Records: make([]storage.Record, len(h.inflight))}
	for i, r := range h.inflight {
		app.Records[i] = r.Record
	}
	if h.headRev-h.lastSnap >= h.m.cfg.SnapshotEvery {
		app.Snapshot = &storage.Snapshot{Rev: h.headRev, Text: h.head.String()}
	}
	if !h.m.committer.submit(&commitReq{app: app, result: h.result}) {
		h.result <- errors.New("group committer stopped")
	}
}

// committed handles the outcome of the in-flight append.
func (h *hub) committed(err error) {
	recs := h.inflight
	h.inflight = nil
	if err != nil {
		h.fail(fmt.Errorf("commit revisions %d..%d: %w", recs[0].Rev, recs[len(recs)-1].Rev, err))
		return
	}
	for _, r := range recs {
		if err := h.durable.Apply(r.Op); err != nil {
			h.fail(fmt.Errorf("revision %d does not apply to the durable text: %w", r.Rev, err))
			return
		}
		h.durableRev = r.Rev
		h.broadcast(r)
	}
	if last := recs[len(recs)-1].Rev; last-h.lastSnap >= h.m.cfg.SnapshotEvery {
		h.lastSnap = last
	}
	h.trimLog()
	h.flush()
	h.maybeIdle()
}

// broadcast sends a durable record: an ack to its source's connections, the
// op (encoded once) to everyone else; and moves every cursor through it.
func (h *hub) broadcast(r committed) {
	msg := encodeOp(r)
	var ack []byte
	for _, c := range h.clients {
		side := ot.Left
		if c.info.Source == r.Source && r.Source != "" {
			side = ot.Right // an author's caret moves past its own insert
			if ack == nil {
				ack = encodeAck(r.Seq, r.Rev)
			}
			c.send(ack)
		} else {
			c.send(msg)
		}
		for i, s := range c.sel {
			c.sel[i] = ot.TransformSelection(s, r.Op, side)
		}
	}
	h.sweepGone()
}

// sweepGone removes clients whose connection was closed for resync.
func (h *hub) sweepGone() {
	for id, c := range h.clients {
		if c.gone {
			delete(h.clients, id)
			h.m.unref(h)
			leave := encodeLeave(id)
			for _, o := range h.clients {
				o.send(leave)
			}
		}
	}
}

// trimLog keeps HistoryInMemory durable records in memory.
func (h *hub) trimLog() {
	keep := h.m.cfg.HistoryInMemory
	durableInLog := int(h.durableRev - h.logStart)
	if durableInLog <= 2*keep {
		return
	}
	drop := durableInLog - keep
	h.log = append(h.log[:0:0], h.log[drop:]...)
	h.logStart += int64(drop)
}

// select_ stores and broadcasts c's selection, moved to the durable
// revision.
func (h *hub) select_(c *client, m ClientMessage) *Error {
	if m.Rev > h.durableRev {
		return protoErr(CodeRevAhead, "selection at revision %d, the document is at %d", m.Rev, h.durableRev)
	}
	since, err := h.records(m.Rev, h.durableRev)
	if errors.Is(err, storage.ErrCompacted) {
		return protoErr(CodeRevTooOld, "revision %d is no longer retained", m.Rev)
	}
	if err != nil {
		h.m.log.Error("read records", "doc", h.id, "from", m.Rev, "err", err)
		return protoErr(CodeInternal, "could not read history")
	}
	n := h.durable.Len()
	sel := make([]ot.Selection, len(m.Sel))
	for i, s := range m.Sel {
		for _, r := range since {
			side := ot.Left
			if r.Source == c.info.Source {
				side = ot.Right
			}
			s = ot.TransformSelection(s, r.Op, side)
		}
		sel[i] = ot.Selection{Anchor: min(s.Anchor, n), Head: min(s.Head, n)}
	}
	c.sel = sel
	msg := encodeSel(c.id, h.durableRev, sel)
	for _, o := range h.clients {
		if o != c {
			o.send(msg)
		}
	}
	h.sweepGone()
	return nil
}

// fail handles a failed commit: the head is ahead of the disk and cannot be
// trusted, so every client is sent to resync (it will resubmit what was not
// acknowledged, and exactly-once sorts out what did reach the disk) and the
// document is reloaded from the store by the next connection.
func (h *hub) fail(err error) {
	h.m.log.Error("document failed; clients resync", "doc", h.id, "err", err)
	h.dead = true
	h.unsent = nil
	h.m.detach(h)
	for _, c := range h.clients {
		c.gone = true
		c.conn.Close(CloseResync, "server error: reconnect and catch up")
	}
}

// maybeIdle arms the idle timer when the document has no clients and
// nothing pending.
func (h *hub) maybeIdle() {
	if len(h.clients) > 0 || len(h.inflight) > 0 || len(h.unsent) > 0 || h.dead || h.stopping {
		return
	}
	h.idleGen++
	gen := h.idleGen
	time.AfterFunc(h.m.cfg.IdleTimeout, func() {
		h.post(func() {
			if gen != h.idleGen || len(h.clients) > 0 || h.stopping || h.dead {
				return
			}
			if h.m.release(h) {
				h.stopping = true
				h.closeFor = func() {}
			}
		})
	})
}

// shutdown stops taking ops; once what is pending is durable and
// broadcast, the hub writes a final snapshot, closes every connection with
// code and exits.
func (h *hub) shutdown(code int, reason string, done chan struct{}) {
	h.stopping = true
	h.m.detach(h)
	h.closeFor = func() {
		for _, c := range h.clients {
			if !c.gone {
				c.gone = true
				c.conn.Close(code, reason)
			}
		}
		if done != nil {
			close(done)
		}
	}
}

func (h *hub) finalSnapshot() {
	if h.dead || h.durableRev == h.lastSnap {
		return
	}
	err := h.m.store.SaveSnapshot(context.Background(), h.id, storage.Snapshot{Rev: h.durableRev, Text: h.durable.String()})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		h.m.log.Warn("final snapshot", "doc", h.id, "rev", h.durableRev, "err", err)
		return
	}
	h.lastSnap = h.durableRev
}

func appendInt(b []byte, n int64) []byte {
	return fmt.Appendf(b, "%d", n)
}

// limiter is a token bucket.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
}

func newLimiter(rate, burst float64, now time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, tokens: burst, last: now}
}

func (l *limiter) allow(now time.Time) bool {
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
