package collab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// input is one item in a driver's inbox: a core event, with what the
// driver itself needs for a join (the connection's outbox and where to
// answer Connect).
type input struct {
	ev      event
	box     *outbox
	limiter *rate.Limiter
	reply   chan *Error
}

// driver runs one open document: a goroutine that feeds the core its
// events one at a time and does the I/O each ready asks for. Nothing slow
// happens on it: commits go to the group committer, reads, lookups and
// snapshots to goroutines of their own, and all of them come back as
// events; so one client's stale op or a large snapshot never holds up the
// others' ops.
type driver struct {
	m  *Manager
	id string

	// Set before loaded is closed; read-only after.
	loaded  chan struct{}
	loadErr error
	core    *core
	typ     doctype.Type // the document's type (its clients parse ops with it)

	joining int // guarded by m.mu: Connects between acquire and the driver taking their join

	inbox  chan input
	quit   chan struct{} // closed when run returns
	result chan error    // the outstanding append's outcome (at most one)

	// head is the core's head revision after the last step: the reading
	// goroutines estimate a message's work from it.
	head atomic.Int64
	// work is the document's work budget, which its connections share
	// (Config.DocWorkPerSecond).
	work *rate.Limiter

	remoteMu       sync.Mutex
	remoteRecords  []storage.Record
	remoteFrom     []string // the nodes that committed remoteRecords
	remotePresence []PresenceUpdate
	signals        []Signal
	remoteReady    chan struct{}

	// Owned by the run goroutine.
	boxes    map[string]*outbox
	limiters map[string]*rate.Limiter
	replies  map[string]chan *Error
	idle     timer     // unloads the document when it has been idle this long
	turn     uint64    // steps done (outboxes note the last that queued to them)
	queued   []*outbox // the outboxes this step queued to (reused)
	presence timer     // the presence tick the core asked for
	beat     timer     // the next presence heartbeat (with a PresenceBroker)
	yield    timer     // the end of a turn held for another writer
	linger   timer     // the commit linger the core asked for
	lostAt   time.Time // when the first of the commits lost to another writer since the last that went in came back
	done     bool
}

func newDriver(m *Manager, id string) *driver {
	return &driver{
		m:           m,
		id:          id,
		loaded:      make(chan struct{}),
		inbox:       make(chan input, 16), // 40 bytes a slot, per open document: a sender beyond it waits its turn
		quit:        make(chan struct{}),
		result:      make(chan error, 1),
		remoteReady: make(chan struct{}, 1),
		work:        rate.NewLimiter(rate.Limit(m.cfg.DocWorkPerSecond), int(m.cfg.DocWorkBurst)),
		boxes:       map[string]*outbox{},
		limiters:    map[string]*rate.Limiter{},
		replies:     map[string]chan *Error{},
	}
}

// load reads the document (metadata and the text at its head, from the
// newest snapshot plus the records after it) and builds its core.
func (d *driver) load(ctx context.Context) error {
	doc, rope, err := storage.Load(ctx, d.m.store, d.id)
	if err != nil {
		return err
	}
	snap, err := d.m.store.Snapshot(ctx, d.id, doc.Head)
	if err != nil {
		return err
	}
	d.typ = doc.DocType()
	d.core, err = newCore(d.m.cfg.core(), doc, rope, snap.Rev)
	return err
}

// post queues in for the driver; false if it has finished.
func (d *driver) post(in input) bool {
	select {
	case d.inbox <- in:
		return true
	case <-d.quit:
		return false
	}
}

// pushRemote takes records from the broker without ever blocking it: they
// pile up here and the driver takes them all at its next turn.
func (d *driver) pushRemote(node string, recs []storage.Record) {
	d.remoteMu.Lock()
	d.remoteRecords = append(d.remoteRecords, recs...)
	if node != "" && !slices.Contains(d.remoteFrom, node) {
		d.remoteFrom = append(d.remoteFrom, node)
	}
	d.remoteMu.Unlock()
	d.wake()
}

// wake tells the run loop that something is waiting under remoteMu.
func (d *driver) wake() {
	select {
	case d.remoteReady <- struct{}{}:
	default:
	}
}

// pushPresence takes another node's presence update, like pushRemote.
func (d *driver) pushPresence(u PresenceUpdate) {
	d.remoteMu.Lock()
	if len(d.remotePresence) < maxRemoteBacklog {
		d.remotePresence = append(d.remotePresence, u)
	} // else dropped: the next heartbeats repair it
	d.remoteMu.Unlock()
	d.wake()
}

// pushSignal takes another node's signal, like pushRemote.
func (d *driver) pushSignal(s Signal) {
	if s.Node == d.m.cfg.Node {
		return
	}
	d.remoteMu.Lock()
	if len(d.signals) < maxRemoteBacklog && !slices.Contains(d.signals, s) {
		d.signals = append(d.signals, s)
	}
	d.remoteMu.Unlock()
	d.wake()
}

// signaled acts on another node's signal.
func (d *driver) signaled(s Signal) {
	m := d.m
	switch s.Kind {
	case SignalTurn:
		d.step(evTurnAsked{Node: s.Node})
	case SignalRestored:
		d.step(evRemoteRestored{Client: s.Client, Rev: s.Rev})
	case SignalTitle:
		// The store says the title (the last rename stored wins, whatever
		// order the signals come in).
		m.io.Go(func() {
			if doc, err := m.store.Document(context.Background(), d.id); err == nil {
				d.post(input{ev: evTitle{Title: doc.Title}})
			}
		})
	case SignalDeleted:
		m.io.Go(func() {
			if _, err := m.store.Document(context.Background(), d.id); errors.Is(err, storage.ErrNotFound) {
				m.DocumentDeleted(context.Background(), d.id)
			}
		})
	}
}

// maxRemoteBacklog bounds the presence updates and signals waiting for a
// busy document (the heartbeats and the compare-and-swap repair what is
// dropped).
const maxRemoteBacklog = 1024

func (d *driver) run(writeErr error) {
	defer d.m.running.Done()
	defer close(d.quit)
	if b := d.m.cfg.Broker; b != nil {
		defer b.Subscribe(d.id, d.pushRemote)()
		defer b.SubscribeSignals(d.id, d.pushSignal)()
	}
	if p := d.m.cfg.Presence; p != nil {
		defer p.SubscribePresence(d.id, d.pushPresence)()
		d.beat.arm(d.m.cfg.PresenceHeartbeat)
	}
	d.head.Store(d.core.headRev)
	if writeErr != nil {
		d.step(evWritable{Err: writeErr})
	}
	d.armIdle()
	for !d.done {
		select {
		case in := <-d.inbox:
			d.received(in)
		case err := <-d.result:
			d.commitDone(err)
		case <-d.remoteReady:
			d.takeRemote()
		case <-d.yield.C:
			d.yield.C = nil
			d.step(evYieldOver{})
		case <-d.beat.C:
			d.beat.C = nil
			d.step(evPresenceBeat{Now: d.m.cfg.Now()})
			if !d.done {
				d.beat.arm(d.m.cfg.PresenceHeartbeat)
			}
		case <-d.presence.C:
			d.presence.C = nil
			d.step(evPresenceTick{})
		case <-d.linger.C:
			d.linger.C = nil
			d.step(evLingerTick{})
		case <-d.idle.C:
			d.idle.C = nil
			if d.core.idle() && d.m.release(d) {
				d.step(evShutdown{Code: CloseGoingAway, Reason: "document unloaded", Snapshot: true})
			}
		}
		d.armIdle()
	}
	d.m.detach(d)
	d.idle.stop()
	d.presence.stop()
	d.linger.stop()
	d.beat.stop()
	d.yield.stop()
}

// received takes an event from a connection.
func (d *driver) received(in input) {
	switch ev := in.ev.(type) {
	case evJoin:
		d.m.joined(d)
		d.boxes[ev.Client] = in.box
		d.limiters[ev.Client] = in.limiter
		d.replies[ev.Client] = in.reply
	case evLeave:
		delete(d.boxes, ev.Client)
		delete(d.limiters, ev.Client)
	}
	d.step(in.ev)
}

// commitDone takes the outcome of the document's append.
func (d *driver) commitDone(err error) {
	out := commitOutcome(err)
	switch {
	case out.Conflict && d.lostAt.IsZero():
		d.lostAt = time.Now()
	case !out.Conflict && out.Err == nil && !d.lostAt.IsZero():
		d.m.cfg.Observer.Retried(time.Since(d.lostAt))
		d.lostAt = time.Time{}
	case out.Err != nil:
		d.lostAt = time.Time{}
	}
	d.step(out)
}

// takeRemote takes what other nodes sent (records, presence, signals).
func (d *driver) takeRemote() {
	d.remoteMu.Lock()
	recs, from, updates, signals := d.remoteRecords, d.remoteFrom, d.remotePresence, d.signals
	d.remoteRecords, d.remoteFrom, d.remotePresence, d.signals = nil, nil, nil, nil
	d.remoteMu.Unlock()
	for _, s := range signals {
		d.signaled(s)
	}
	if len(recs) > 0 {
		d.step(evRemote{Records: recs, From: from})
	}
	now := d.m.cfg.Now()
	for _, u := range updates {
		d.step(evRemotePresence{Update: u, Now: now})
	}
}

func commitOutcome(err error) evCommitted {
	if errors.Is(err, storage.ErrConflict) {
		return evCommitted{Conflict: true}
	}
	return evCommitted{Err: err}
}

// armIdle starts the idle timer when the document has nothing to do, and
// stops it otherwise.
func (d *driver) armIdle() {
	if d.done || !d.core.idle() {
		d.idle.stop()
		return
	}
	if d.idle.C == nil {
		d.idle.arm(d.m.cfg.IdleTimeout)
	}
}

// timer is one of a driver's one-shot timers: C is nil unless it is armed
// (a select on it then waits forever), and set to nil by whoever receives
// from it.
type timer struct {
	t *time.Timer
	C <-chan time.Time
}

func (t *timer) arm(d time.Duration) {
	if t.t == nil {
		t.t = time.NewTimer(d)
	} else {
		t.t.Reset(d)
	}
	t.C = t.t.C
}

func (t *timer) stop() {
	if t.t != nil {
		t.t.Stop()
	}
	t.C = nil
}

// step feeds ev to the core and does what it asks.
func (d *driver) step(ev event) {
	rd := d.core.step(ev)
	d.head.Store(d.core.headRev)
	d.do(rd)
}

func (d *driver) do(rd *ready) {
	m := d.m
	for _, err := range rd.Errs {
		m.log.Error("document", "doc", d.id, "err", err)
	}
	for _, code := range rd.Refused {
		m.cfg.Observer.Refused(code)
	}
	for _, d := range rd.Distances {
		m.cfg.Observer.Accepted(d)
	}
	for _, n := range rd.FanOut {
		m.cfg.Observer.Broadcast(n)
	}
	if rd.CommitLinger > 0 {
		d.linger.arm(rd.CommitLinger)
	}
	if rd.PresenceTick > 0 {
		d.presence.arm(rd.PresenceTick)
	}
	if rd.YieldTick > 0 {
		d.yield.arm(rd.YieldTick)
	}
	if rd.Append != nil {
		if !m.committer.submit(&commitReq{app: *rd.Append, result: d.result}) {
			d.result <- errors.New("group committer stopped")
		}
	}
	// Off the loop, and counted: the Manager's Close waits for them before
	// the store may be closed.
	for _, r := range rd.Read {
		m.io.Go(func() { d.read(r) })
	}
	for _, l := range rd.Lookups {
		m.io.Go(func() {
			rev, found, err := m.store.LookupSubmission(context.Background(), d.id, l.Source, l.Seq)
			d.post(input{ev: evLookup{Source: l.Source, Seq: l.Seq, Rev: rev, Found: found, Err: err}})
		})
	}
	if s := rd.Snapshot; s != nil && !rd.Done {
		m.io.Go(func() {
			start := time.Now()
			err := m.store.SaveSnapshot(context.Background(), d.id, *s)
			if err == nil {
				m.cfg.Observer.SnapshotSaved(len(s.Content), time.Since(start))
			}
			d.post(input{ev: evSnapshotSaved{Rev: s.Rev, Err: err}})
		})
	}
	if len(rd.Publish) > 0 && m.cfg.Broker != nil {
		m.cfg.Broker.Publish(d.id, m.cfg.Node, rd.Publish)
	}
	if m.cfg.Broker != nil {
		for _, s := range rd.Signals {
			s.Node = m.cfg.Node
			m.cfg.Broker.Signal(d.id, s)
		}
	}
	if rd.Presence != nil && m.cfg.Presence != nil {
		m.cfg.Presence.PublishPresence(d.id, *rd.Presence)
	}
	for _, ch := range rd.Charges {
		if l := d.limiters[ch.Client]; l != nil {
			// Into debt if need be: the reading goroutine refuses the
			// connection's next frames until it is repaid.
			l.ReserveN(ch.At, min(ch.Tokens, l.Burst()))
		}
	}
	var overflowed []string
	// Each connection's messages of this step are queued, then pumped
	// once: they leave together.
	d.turn++
	for _, o := range rd.Messages {
		box := d.boxes[o.To]
		if box == nil {
			continue
		}
		if err := box.enqueue(o.Msg); err != nil {
			m.cfg.Observer.Overflowed()
			// Closed at once, so nothing more is queued behind the gap.
			box.close(CloseResync, "outbound queue full: reconnect and catch up")
			delete(d.boxes, o.To)
			overflowed = append(overflowed, o.To)
			continue
		}
		if box.turn != d.turn {
			box.turn = d.turn
			d.queued = append(d.queued, box)
		}
	}
	for i, box := range d.queued {
		box.pump()
		d.queued[i] = nil
	}
	d.queued = d.queued[:0]
	for _, c := range rd.Closes {
		if box := d.boxes[c.Client]; box != nil {
			box.close(c.Code, c.Reason)
			delete(d.boxes, c.Client)
		}
	}
	for _, j := range rd.Joined {
		if r := d.replies[j.Client]; r != nil {
			r <- j.Err
			delete(d.replies, j.Client)
		}
		if j.Err != nil {
			delete(d.boxes, j.Client)
			delete(d.limiters, j.Client)
		}
	}
	if rd.Done {
		d.done = true
		if s := rd.Snapshot; s != nil {
			err := m.store.SaveSnapshot(context.Background(), d.id, *s)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				m.log.Warn("final snapshot", "doc", d.id, "rev", s.Rev, "err", err)
			}
		}
		return
	}
	for _, id := range overflowed {
		d.step(evOverflow{Client: id})
	}
}

// read does a readRequest off the document's loop.
func (d *driver) read(r readRequest) {
	ctx := context.Background()
	to := r.To
	var err error
	if to < 0 {
		var doc storage.Document
		if doc, err = d.m.store.Document(ctx, d.id); err == nil {
			to = doc.Head
		}
	}
	var recs []storage.Record
	if err == nil && to > r.From {
		recs, err = d.m.store.Records(ctx, d.id, r.From, to)
	}
	if err != nil {
		err = fmt.Errorf("records %d..%d: %w", r.From, to, err)
	}
	d.post(input{ev: evRecords{Forward: r.Forward, From: r.From, Records: recs, Err: err}})
}
