package collab

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tandemdocs/tandem/storage"
)

// simServer is one Tandem node in the simulator: the real core of the
// document, played by a deterministic driver. It does what driver.go does
// with each ready (the same order, the same outboxes), except that every
// write, read and message is an action the world schedules, so that the
// seed decides when each completes and whether the node is still alive
// then.
type simServer struct {
	w    *world
	name string
	cfg  Config

	up          bool
	incarnation int           // a crash starts a new one: what the old one started never completes
	pausedUntil time.Duration // stopped (SIGSTOP) until then
	core        *core
	boxes       map[string]*outbox
	conns       map[string]*simConn
	pendingIO   int // writes, reads, lookups and snapshots under way
	timerGen    map[string]uint64
}

func newSimServer(w *world, i int) *simServer {
	s := &simServer{w: w, name: fmt.Sprintf("n%d", i+1), up: true, timerGen: map[string]uint64{}}
	cfg := Config{
		Node:            s.name,
		SnapshotEvery:   w.cfg.SnapshotEvery,
		HistoryInMemory: w.cfg.HistoryInMemory,
		MaxLag:          w.cfg.MaxLag,
		CatchUpMax:      w.cfg.CatchUpMax,
		QueueMessages:   w.cfg.QueueMessages,
		CommitLinger:    2 * time.Millisecond,
		FanOutPace:      time.Millisecond,
		IdleTimeout:     time.Second,
	}
	cfg.setDefaults()
	s.cfg = cfg
	s.boxes, s.conns = map[string]*outbox{}, map[string]*simConn{}
	return s
}

// multi: other nodes write the same document.
func (s *simServer) multi() bool { return len(s.w.servers) > 1 }

func (s *simServer) coreConfig() coreConfig {
	cc := s.cfg.core()
	if s.multi() {
		cc.OtherWriters, cc.RemotePresence = true, true
		cc.TurnWait = 25 * time.Millisecond
		cc.PresenceTTL = 3 * s.cfg.PresenceHeartbeat
	}
	return cc
}

// load reads the document and builds its core, as driver.load does.
func (s *simServer) load() error {
	w := s.w
	doc, rope, err := storage.Load(bgCtx, w.store, w.doc)
	if err != nil {
		return err
	}
	snap, err := w.store.Snapshot(bgCtx, w.doc, doc.Head)
	if err != nil {
		return err
	}
	c, err := newCore(s.coreConfig(), doc, rope, snap.Rev)
	if err != nil {
		return err
	}
	s.core = c
	w.note(func() string { return fmt.Sprintf("%s loads the document at revision %d", s.name, doc.Head) })
	if w.store.diskFull() {
		s.step(evWritable{Err: storage.ErrNoSpace})
	}
	return nil
}

// step feeds ev to the core and does what it asks.
func (s *simServer) step(ev event) {
	if s.core == nil {
		return
	}
	s.do(s.core.step(ev))
}

// after runs fn on this server after d, unless it crashed or its document
// was unloaded meanwhile.
func (s *simServer) after(d time.Duration, fn func()) {
	inc, c := s.incarnation, s.core
	s.w.at(d, s, func() {
		if s.incarnation == inc && s.core == c && c != nil {
			fn()
		}
	})
}

// arm is one of the driver's timers: a newer arming replaces it.
func (s *simServer) arm(name string, d time.Duration, fire func()) {
	s.timerGen[name]++
	gen := s.timerGen[name]
	s.after(d, func() {
		if s.timerGen[name] == gen {
			fire()
		}
	})
}

// io starts one store operation: it runs on the disk after a delay (even
// while the server is stopped: the kernel finishes it), and its outcome
// comes back to the server's core as an event.
func (s *simServer) io(d time.Duration, do func() event) {
	w := s.w
	inc, c := s.incarnation, s.core
	s.pendingIO++
	w.at(d, nil, func() {
		if s.incarnation != inc {
			return // the process died before the call reached the disk
		}
		ev := do()
		w.at(w.between(0, time.Millisecond), s, func() {
			if s.incarnation != inc {
				return
			}
			s.pendingIO--
			if s.core == c {
				s.step(ev)
			}
		})
	})
}

func (s *simServer) diskDelay() time.Duration {
	if s.w.chance(0.05) {
		return s.w.between(10*time.Millisecond, 200*time.Millisecond)
	}
	return s.w.between(100*time.Microsecond, 3*time.Millisecond)
}

func (s *simServer) do(rd *ready) {
	w := s.w
	c := s.core
	for _, err := range rd.Errs {
		w.note(func() string { return fmt.Sprintf("%s logs: %v", s.name, err) })
	}
	if rd.CommitLinger > 0 {
		s.arm("linger", rd.CommitLinger, func() { s.step(evLingerTick{}) })
	}
	if rd.PresenceTick > 0 {
		s.arm("presence", rd.PresenceTick, func() { s.step(evPresenceTick{}) })
	}
	if rd.YieldTick > 0 {
		s.arm("yield", rd.YieldTick, func() { s.step(evYieldOver{}) })
	}
	if a := rd.Append; a != nil {
		app := *a
		w.note(func() string {
			return fmt.Sprintf("%s appends revisions %d..%d", s.name, app.Head+1, app.Head+int64(len(app.Records)))
		})
		if w.bugs.AckBeforeDurable {
			// The bug: the outcome is reported before the write is made.
			s.after(0, func() { s.step(evCommitted{}) })
			s.pendingIO++
			inc := s.incarnation
			w.at(s.diskDelay(), nil, func() {
				if s.incarnation == inc {
					s.pendingIO--
					w.store.commit(app, s)
				}
			})
		} else {
			s.io(s.diskDelay(), func() event { return commitOutcome(w.store.commit(app, s)) })
		}
	}
	for _, r := range rd.Read {
		s.io(s.diskDelay(), func() event { return s.read(r) })
	}
	for _, l := range rd.Lookups {
		s.io(s.diskDelay(), func() event {
			rev, found, err := w.store.LookupSubmission(bgCtx, w.doc, l.Source, l.Seq)
			return evLookup{Source: l.Source, Seq: l.Seq, Rev: rev, Found: found, Err: err}
		})
	}
	if snap := rd.Snapshot; snap != nil && !rd.Done {
		s.io(s.diskDelay(), func() event {
			err := w.store.SaveSnapshot(bgCtx, w.doc, *snap)
			return evSnapshotSaved{Rev: snap.Rev, Err: err}
		})
	}
	if len(rd.Publish) > 0 {
		recs := append([]storage.Record(nil), rd.Publish...)
		s.toOthers(func(o *simServer) {
			if w.cfg.LoseRemote && w.chance(0.2) {
				return // lost on the way: the other node finds the gap
			}
			o.step(evRemote{Records: recs, From: []string{s.name}})
		})
	}
	for _, sig := range rd.Signals {
		sig.Node = s.name
		s.toOthers(func(o *simServer) {
			switch sig.Kind {
			case SignalTurn:
				o.step(evTurnAsked{Node: sig.Node})
			case SignalRestored:
				o.step(evRemoteRestored{Client: sig.Client, Rev: sig.Rev})
			}
		})
	}
	if p := rd.Presence; p != nil {
		u := *p
		s.toOthers(func(o *simServer) { o.step(evRemotePresence{Update: u, Now: w.clock()}) })
	}
	var overflowed []string
	var queued []*outbox
	for _, m := range rd.Messages {
		box := s.boxes[m.To]
		if box == nil {
			continue
		}
		if err := box.enqueue(m.Msg); err != nil {
			if w.bugs.DropSlow {
				continue // the bug: the message is gone, the connection stays
			}
			w.stats.Overflows++
			w.note(func() string { return fmt.Sprintf("%s: %s's queue overflows: closed for resync", s.name, m.To) })
			box.close(CloseResync, "outbound queue full: reconnect and catch up")
			delete(s.boxes, m.To)
			overflowed = append(overflowed, m.To)
			continue
		}
		if len(queued) == 0 || queued[len(queued)-1] != box {
			queued = append(queued, box)
		}
	}
	for _, box := range queued {
		box.pump()
	}
	for _, cl := range rd.Closes {
		if box := s.boxes[cl.Client]; box != nil {
			box.close(cl.Code, cl.Reason)
			delete(s.boxes, cl.Client)
		}
	}
	for _, j := range rd.Joined {
		if j.Err == nil {
			continue
		}
		// What Connect's caller does with a refused join: the error, then
		// the close.
		if box := s.boxes[j.Client]; box != nil {
			box.push(EncodeError(j.Err))
			box.close(ClosePolicy, j.Err.Code)
			delete(s.boxes, j.Client)
		}
	}
	if rd.Done {
		if snap := rd.Snapshot; snap != nil {
			if err := w.store.SaveSnapshot(bgCtx, w.doc, *snap); err != nil {
				w.note(func() string { return fmt.Sprintf("%s: final snapshot: %v", s.name, err) })
			}
		}
		w.note(func() string { return fmt.Sprintf("%s's document is done (%s)", s.name, c.state) })
		s.core = nil
		for _, id := range slices.Sorted(maps.Keys(s.boxes)) { // (map order is random: the seed must decide)
			s.boxes[id].close(CloseGoingAway, "document closed")
			delete(s.boxes, id)
		}
		return
	}
	for _, id := range overflowed {
		s.step(evOverflow{Client: id})
	}
	if s.core == c && w.cfg.Unload && c.idle() {
		s.arm("idle", s.cfg.IdleTimeout, s.unloadIfIdle)
	}
}

// read does a readRequest, as driver.read does.
func (s *simServer) read(r readRequest) event {
	w := s.w
	to := r.To
	var err error
	if to < 0 {
		var doc storage.Document
		if doc, err = w.store.Document(bgCtx, w.doc); err == nil {
			to = doc.Head
		}
	}
	var recs []storage.Record
	if err == nil && to > r.From {
		recs, err = w.store.Records(bgCtx, w.doc, r.From, to)
	}
	if err != nil {
		err = fmt.Errorf("records %d..%d: %w", r.From, to, err)
	}
	return evRecords{Forward: r.Forward, From: r.From, Records: recs, Err: err}
}

// toOthers delivers something to the other nodes that have the document
// open, over the simulated network.
func (s *simServer) toOthers(deliver func(o *simServer)) {
	for _, o := range s.w.servers {
		if o == s || !o.up || o.core == nil {
			continue
		}
		o.after(s.w.netDelay(), func() { deliver(o) })
	}
}

// setWritable tells the core whether the disk has room (the free-space
// guard's gate).
func (s *simServer) setWritable() {
	var err error
	if s.w.store.diskFull() {
		err = storage.ErrNoSpace
	}
	s.step(evWritable{Err: err})
}

func (s *simServer) startBeat() {
	if !s.multi() {
		return
	}
	s.w.at(s.cfg.PresenceHeartbeat, s, func() {
		if s.up && s.core != nil {
			s.step(evPresenceBeat{Now: s.w.clock()})
		}
		s.startBeat()
	})
}

// join takes a connection that arrived: the document is loaded if need be,
// and the core hears of the join.
func (s *simServer) join(conn *simConn, info ClientInfo) {
	w := s.w
	if s.core == nil {
		if err := s.load(); err != nil {
			w.note(func() string { return fmt.Sprintf("%s cannot load: %v", s.name, err) })
			conn.Close(CloseTryAgainLater, "cannot load")
			return
		}
	}
	s.conns[conn.id] = conn
	s.boxes[conn.id] = newOutbox(conn, s.cfg.QueueMessages, s.cfg.QueueBytes, nil)
	s.timerGen["idle"]++ // not idle any more
	s.step(evJoin{Client: conn.id, Info: info})
}

// receive takes a frame from a connection, as Client.Handle does (without
// the rate budgets: the simulator's clients are well-behaved).
func (s *simServer) receive(conn *simConn, frame []byte) {
	box := s.boxes[conn.id]
	if box == nil || s.core == nil {
		return
	}
	var msg ClientMessage
	perr := parseClientMessage(&msg, s.w.typ, frame)
	if perr == nil && msg.Type == "op" {
		perr = checkOpSize(&msg, &s.cfg)
	}
	if perr != nil {
		s.w.fail("%s refused a frame of %s: %v: %s", s.name, conn.id, perr, frame)
		return
	}
	s.step(evMessage{Client: conn.id, Msg: msg, Now: s.w.clock()})
}

// leave: the connection is gone (the server noticed).
func (s *simServer) leave(conn *simConn) {
	delete(s.conns, conn.id)
	if box := s.boxes[conn.id]; box != nil {
		delete(s.boxes, conn.id)
		box.close(CloseGoingAway, "gone")
		s.step(evLeave{Client: conn.id})
	}
}

// crash kills the process: nothing it started completes, its connections
// break, and whatever was not durable is gone.
func (s *simServer) crash() {
	w := s.w
	w.stats.Crashes++
	w.note(func() string { return s.name + " crashes" })
	s.up = false
	s.incarnation++
	s.core, s.pendingIO, s.pausedUntil = nil, 0, 0
	for _, id := range slices.Sorted(maps.Keys(s.conns)) {
		s.conns[id].broken()
	}
	s.conns, s.boxes = map[string]*simConn{}, map[string]*outbox{}
}

func (s *simServer) restart() {
	if s.up {
		return
	}
	w := s.w
	s.up = true
	w.note(func() string { return s.name + " restarts" })
	if w.bugs.ForgetIndex {
		w.store.forgetUpTo = w.truth.head()
	}
}

// pause stops the process for d: it runs nothing, its timers and
// messages wait, and it wakes up with its old view of the document.
func (s *simServer) pause(d time.Duration) {
	w := s.w
	w.stats.Pauses++
	s.pausedUntil = w.now + d
	w.note(func() string { return fmt.Sprintf("%s stops for %v", s.name, d) })
}

// unloadIfIdle: the idle timer fired.
func (s *simServer) unloadIfIdle() {
	if c := s.core; c != nil && c.idle() && len(s.boxes) == 0 {
		s.w.stats.Unloads++
		s.step(evShutdown{Code: CloseGoingAway, Reason: "document unloaded", Snapshot: true})
	}
}
