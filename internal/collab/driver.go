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

// driver runs one open document: it feeds the core its events one at a
// time and does the I/O each ready asks for. Nothing slow happens on it:
// commits go to the group committer, reads, lookups and snapshots to
// goroutines of their own, and all of them come back as events; so one
// client's stale op or a large snapshot never holds up the others' ops.
//
// A driver has no goroutine of its own while it has nothing to do: an
// event (a message, a commit's outcome, a timer) starts one that takes
// events until none is left, and ends. Most open documents are quiet most
// of the time, and a goroutine parked per document would cost each its
// stack (8 kB: a step through transform, apply, commit and fan-out is
// deep), 40 MB for 5,000 documents. Events are taken one at a time by at
// most one goroutine (sched), so the core sees them in one order, as
// before.
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
	quit   chan struct{} // closed when the driver has finished
	result chan error    // the outstanding append's outcome (at most one)

	// sched is idle (0), or a goroutine is taking events (1), or one is
	// and more came since it last looked (2). It stays above 0 once the
	// driver has finished.
	sched atomic.Int32

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

	// Owned by whichever goroutine holds sched.
	unsubscribe []func() // the broker's and presence's subscriptions
	boxes       map[string]*outbox
	limiters    map[string]*rate.Limiter
	replies     map[string]chan *Error
	idle        timer     // unloads the document when it has been idle this long
	turn        uint64    // steps done (outboxes note the last that queued to them)
	queued      []*outbox // the outboxes this step queued to (reused)
	presence    timer     // the presence tick the core asked for
	beat        timer     // the next presence heartbeat (with a PresenceBroker)
	yield       timer     // the end of a turn held for another writer
	linger      timer     // the commit linger the core asked for
	lostAt      time.Time // when the first of the commits lost to another writer since the last that went in came back
	done        bool
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
		d.kick()
		return true
	case <-d.quit:
		return false
	}
}

// commitDone is the group committer's callback with the outcome of the
// document's append.
func (d *driver) commitDone(err error) {
	d.result <- err // never blocks: at most one append is outstanding
	d.kick()
}

// kick makes sure a goroutine takes the driver's events: it starts one if
// none is running, or tells the running one to look again before it ends.
// Whoever queues an event kicks after queuing it, so none is left behind.
func (d *driver) kick() {
	for {
		switch d.sched.Load() {
		case 0:
			if d.sched.CompareAndSwap(0, 1) {
				go d.drain()
				return
			}
		case 1:
			if d.sched.CompareAndSwap(1, 2) {
				return
			}
		default:
			return
		}
	}
}

// drain takes events until there are none, then ends (unless kicked
// meanwhile, when it looks again).
func (d *driver) drain() {
	for {
		d.sched.Store(1)
		for !d.done && d.next() {
			d.armIdle()
		}
		if d.done {
			d.finish() // sched stays at 1: no goroutine starts again
			return
		}
		if d.sched.CompareAndSwap(1, 0) {
			return
		}
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

// wake tells the driver that something is waiting under remoteMu.
func (d *driver) wake() {
	select {
	case d.remoteReady <- struct{}{}:
	default:
	}
	d.kick()
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

// start begins the driver's life, on the goroutine that loaded it, and
// takes the events that came meanwhile.
func (d *driver) start(writeErr error) {
	d.sched.Store(1)
	if b := d.m.cfg.Broker; b != nil {
		d.unsubscribe = append(d.unsubscribe, b.Subscribe(d.id, d.pushRemote), b.SubscribeSignals(d.id, d.pushSignal))
	}
	if p := d.m.cfg.Presence; p != nil {
		d.unsubscribe = append(d.unsubscribe, p.SubscribePresence(d.id, d.pushPresence))
		d.arm(&d.beat, d.m.cfg.PresenceHeartbeat)
	}
	d.head.Store(d.core.headRev)
	if writeErr != nil {
		d.step(evWritable{Err: writeErr})
	}
	d.armIdle()
	d.drain()
}

// next takes one event, if there is one: a timer that is due first, then
// whatever has come on the channels.
func (d *driver) next() bool {
	switch {
	case d.yield.due():
		d.step(evYieldOver{})
	case d.beat.due():
		d.step(evPresenceBeat{Now: d.m.cfg.Now()})
		if !d.done {
			d.arm(&d.beat, d.m.cfg.PresenceHeartbeat)
		}
	case d.presence.due():
		d.step(evPresenceTick{})
	case d.linger.due():
		d.step(evLingerTick{})
	case d.idle.due():
		if d.core.idle() && d.m.release(d) {
			d.step(evShutdown{Code: CloseGoingAway, Reason: "document unloaded", Snapshot: true})
		}
	default:
		select {
		case in := <-d.inbox:
			d.received(in)
		case err := <-d.result:
			d.committed(err)
		case <-d.remoteReady:
			d.takeRemote()
		default:
			return false
		}
	}
	return true
}

// finish ends the driver's life once its core is done.
func (d *driver) finish() {
	d.m.detach(d)
	d.idle.stop()
	d.presence.stop()
	d.linger.stop()
	d.beat.stop()
	d.yield.stop()
	for i := len(d.unsubscribe) - 1; i >= 0; i-- {
		d.unsubscribe[i]()
	}
	close(d.quit)
	d.m.running.Done()
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

// committed takes the outcome of the document's append.
func (d *driver) committed(err error) {
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
	if !d.idle.armed {
		d.arm(&d.idle, d.m.cfg.IdleTimeout)
	}
}

// timer is one of a driver's one-shot timers. Armed, it kicks the driver
// when its time comes; the driver then finds it due. Each arming is a
// generation: a firing of an earlier one (stopped or armed again since)
// is not due.
type timer struct {
	t     *time.Timer
	armed bool
	gen   uint64        // owned by the driver
	fired atomic.Uint64 // the generation whose time has come
}

func (d *driver) arm(t *timer, after time.Duration) {
	if t.t != nil {
		t.t.Stop()
	}
	t.gen++
	t.armed = true
	gen := t.gen
	t.t = time.AfterFunc(after, func() {
		t.fired.Store(gen)
		d.kick()
	})
}

// due reports (once) whether the timer is armed and its time has come.
func (t *timer) due() bool {
	if t.armed && t.fired.Load() == t.gen {
		t.armed = false
		return true
	}
	return false
}

func (t *timer) stop() {
	if t.t != nil {
		t.t.Stop()
	}
	t.armed = false
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
		d.arm(&d.linger, rd.CommitLinger)
	}
	if rd.PresenceTick > 0 {
		d.arm(&d.presence, rd.PresenceTick)
	}
	if rd.YieldTick > 0 {
		d.arm(&d.yield, rd.YieldTick)
	}
	if rd.Append != nil {
		if !m.committer.submit(&commitReq{app: *rd.Append, done: d.commitDone}) {
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
