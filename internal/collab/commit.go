package collab

import (
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// ---------------------------------------------------------------------------
// Committing.

// flush hands the pending records to the committer as one append, if none
// is outstanding.
func (c *core) flush() {
	if c.headRev == c.durableRev {
		// Nothing pending (any more: ops can be dropped, or committed by
		// another writer): nothing to wait for.
		c.lingering, c.lingerOver = false, false
		return
	}
	if c.committing || c.readingFwd || c.state == stateFailed {
		return
	}
	if c.yielding && c.state == stateOpen {
		return // another writer's turn: its commit, or the end of the wait, flushes
	}
	// One append is outstanding at a time, so the clients acked by the
	// last one send their next ops while the next one is already being
	// written, and each append carries half the clients (two cohorts
	// that alternate). Waiting a moment for the ops the acked clients
	// are expected to send puts them all in one append: more ops per
	// synced write. It is given up (and not tried for a while) when the
	// clients do not answer that fast.
	//
	//
	// Every commit costs each connection of the document a frame (a
	// write), however few ops it carries: with many connections those
	// writes, not the disk, bound the document, and a document that
	// commits every op alone falls behind for good (its clients' ops
	// then come one per ack, each alone). So a document with many
	// connections makes at most one append per fan-out pace (see pace):
	// under load each frame carries the ops of a pace, and an op that
	// comes after a quiet pace is appended at once.
	if c.paceWait && c.state == stateOpen {
		return
	}
	if n := c.headRev - c.durableRev; c.cfg.CommitLinger > 0 && c.state == stateOpen && !c.lingerOver && c.lingerSkip == 0 && n < c.expect {
		if !c.lingering {
			c.lingering = true
			c.out.CommitLinger = c.cfg.CommitLinger
		}
		return
	}
	if c.lingerSkip > 0 {
		c.lingerSkip--
	}
	c.lingering, c.lingerOver, c.expect = false, false, 0
	if pace := c.pace(); pace > 0 && c.state == stateOpen {
		c.paceWait = true
		c.out.CommitLinger = pace
	}
	pending := c.log[c.durableRev-c.logStart:]
	c.committing, c.nInflight = true, len(pending)
	app := &storage.Append{DocID: c.id, Head: c.durableRev, Records: make([]storage.Record, len(pending))}
	for i, r := range pending {
		app.Records[i] = r.Record
	}
	c.out.Append = app
}

func (c *core) committed(ev evCommitted) {
	if !c.committing || ev.Conflict || ev.Err != nil {
		c.notCommitted(ev)
		return
	}
	recs := c.log[c.durableRev-c.logStart:][:c.nInflight]
	c.committing, c.nInflight = false, 0
	c.lostInRow = 0
	for i := range recs {
		r := &recs[i]
		if err := c.durable.Apply(r.Op); err != nil {
			c.fail(fmt.Errorf("revision %d does not apply to the durable text: %w", r.Rev, err))
			return
		}
		r.Orig = doctype.Op{}
		c.durableRev = r.Rev
		c.snapOpBytes += opBytes(r.Op)
		c.broadcast(r)
		c.out.Publish = append(c.out.Publish, r.Record)
	}
	if len(c.selQueue) > 0 && len(c.clients) <= c.cfg.PresenceCrowd {
		// The carets held for this commit (see selection), moved through
		// it by broadcast.
		c.flushPresence()
	}
	c.afterDurable()
	c.releaseNoops()
	c.catchUpRemote()
	// The next append waits for what is pending plus an op from each
	// client just acked (see flush).
	c.expect = c.headRev - c.durableRev + int64(ackedClients(c, recs))
	c.flush()
}

// notCommitted handles a commit outcome that is not a success: none was
// outstanding, another writer won, or the store failed.
func (c *core) notCommitted(ev evCommitted) {
	switch {
	case !c.committing:
		c.out.Errs = append(c.out.Errs, errors.New("commit outcome with no append outstanding"))
		return
	case ev.Conflict:
		c.lostInRow++
		if c.cfg.MaxConflicts > 0 && c.lostInRow >= c.cfg.MaxConflicts {
			// Other writers keep winning: give up rather than loop; the
			// clients resync (and resend what was not committed).
			c.fail(fmt.Errorf("%d commits in a row lost to other writers", c.lostInRow))
			return
		}
		// Someone else committed first: read what they wrote, then submit
		// ours again on top of it, and ask the others for a turn.
		if c.cfg.TurnWait > 0 {
			c.out.Signals = append(c.out.Signals, Signal{Kind: SignalTurn})
		}
		c.resolving = true
		c.readForward()
		return
	case errors.Is(ev.Err, storage.ErrNoSpace):
		c.rollBack(ev.Err)
		return
	case ev.Err != nil:
		recs := c.log[c.durableRev-c.logStart:][:c.nInflight]
		c.fail(fmt.Errorf("commit revisions %d..%d: %w", recs[0].Rev, recs[len(recs)-1].Rev, ev.Err))
	}
}

// maxFanOutPace bounds the fan-out pace (see flush) however many
// connections a document has.
const maxFanOutPace = 20 * time.Millisecond

// pace is the least time between two appends of the document: FanOutPace
// per connection, up to maxFanOutPace; 0 for a document of a few
// connections, where the frames cost little.
func (c *core) pace() time.Duration {
	n := len(c.clients)
	if c.cfg.FanOutPace <= 0 || n < c.cfg.FanOutPaceFrom {
		return 0
	}
	return min(time.Duration(n)*c.cfg.FanOutPace, maxFanOutPace)
}

// ackedClients counts the connections, still here, whose ops recs are.
func ackedClients(c *core, recs []committed) int {
	n := 0
	for i, r := range recs {
		if cl := c.byID[r.Client]; cl == nil || cl.left {
			continue
		}
		dup := false
		for _, o := range recs[:i] {
			if o.Client == r.Client {
				dup = true
				break
			}
		}
		if !dup {
			n++
		}
	}
	return n
}

// afterDurable runs when the durable revision moved: snapshot if due, and
// keep the in-memory history bounded.
func (c *core) afterDurable() {
	c.maybeSnapshot()
	c.trimLog()
}

// broadcast sends a durable record: an ack to its source's connections, the
// op (encoded once) to everyone else; and moves every selection through it.
func (c *core) broadcast(r *committed) {
	var msg, ack []byte
	sent := 0
	for _, cl := range c.clients {
		if !cl.joined || cl.left {
			continue
		}
		sent++
		// The ack goes to the connection that submitted the op; every
		// other connection gets the op, even one of the same source:
		// one that resent it takes an op with its source and in-flight
		// seq as the ack (docs/protocol.md), and one that never had it
		// (a client that reloaded) needs its content.
		if r.Client != "" && cl.id == r.Client {
			if ack == nil {
				ack = encodeAck(r.Seq, r.Rev)
			}
			c.send(cl, ack)
		} else if !injectBroadcastEarly || r.Client == "" {
			if msg == nil {
				msg = encodeOp(r)
			}
			c.send(cl, msg)
		}
		for i, s := range cl.sel {
			cl.sel[i] = c.typ.TransformSelection(s, r.Op, sideFor(cl, r))
		}
	}
	c.moveRemotes(r)
	c.out.FanOut = append(c.out.FanOut, sent)
}

// trimLog bounds the durable records kept in memory: at most
// HistoryInMemory, and fewer when every client's next message is based
// later (their floors), down to minHistory, so that a document whose
// editors keep up holds about a hundred records, not a thousand. Every
// record a pending op was based on stays (it may be submitted again after
// a conflict). Older records are read from the store when a late op or a
// reconnect needs them. It trims once a quarter more have piled up, so
// the copy is amortized.
func (c *core) trimLog() {
	if c.readingBack {
		return
	}
	keep := int64(c.cfg.HistoryInMemory)
	least := min(keep, minHistory)
	if c.durableRev-c.logStart <= least+least/4 {
		return
	}
	newStart := c.durableRev - keep
	if floor := c.oldestFloor(); floor > newStart {
		newStart = min(floor, c.durableRev-least)
	}
	for _, r := range c.log[c.durableRev-c.logStart:] {
		newStart = min(newStart, r.Base)
	}
	drop := newStart - c.logStart
	if drop <= 0 || drop < (c.durableRev-newStart)/4 {
		return
	}
	c.logStartLen = c.log[drop-1].Len
	c.log = append(c.log[:0:0], c.log[drop:]...)
	c.logStart = newStart
}

// minHistory is the fewest durable records a document keeps in memory
// (when HistoryInMemory allows): a short reconnect catches up from them
// without a read.
const minHistory = 100

// oldestFloor is the earliest revision a message still to come from a
// client may be based on (the head when there are no clients).
func (c *core) oldestFloor() int64 {
	floor := c.durableRev
	for _, cl := range c.clients {
		switch {
		case cl.joined:
			floor = min(floor, cl.floor)
		case cl.info.LastRev >= 0:
			floor = min(floor, cl.info.LastRev)
		}
	}
	return floor
}

// rollBack handles an append the store refused for lack of disk space
// without writing anything: every pending op is dropped from the head and
// its client answered storage_full (it keeps the op and resends it, with
// the same seq, when the server takes edits again). Nothing else changes;
// the connections stay open.
func (c *core) rollBack(err error) {
	pending := c.log[c.durableRev-c.logStart:]
	c.log = c.log[:c.durableRev-c.logStart]
	c.headRev, c.committing, c.nInflight = c.durableRev, false, 0
	if !c.resetHead() {
		return
	}
	// An op found to do nothing on top of the dropped ones may do
	// something without them: it is refused for now too, and sent again.
	for _, n := range c.noops {
		c.tellSource(n.client, n.source, &Error{Code: CodeStorageFull, Message: fmt.Sprintf("the server is not taking edits: %v; keep the op and resend it later", err), Seq: n.seq, HasSeq: true})
	}
	c.noops = c.noops[:0]
	for _, p := range pending {
		// What the core believed of the source included this op: forget
		// it, so that the resend is looked up afresh.
		delete(c.sources, p.Source)
		delete(c.absent, p.Source)
		c.tellSource(p.Client, p.Source, &Error{Code: CodeStorageFull, Message: fmt.Sprintf("the server is not taking edits: %v; keep the op and resend it later", err), Seq: p.Seq, HasSeq: true})
	}
}

// tellSource answers a pending op that will not be committed (now): its
// connection, and every other connection of its source whose resend of the
// op waits for this one's outcome (see duplicate) and would otherwise never
// hear of it.
func (c *core) tellSource(client, source string, e *Error) {
	for _, cl := range c.clients {
		if cl.joined && !cl.left && (cl.id == client || source != "" && cl.info.Source == source && cl.awaitSeq == e.Seq) {
			cl.awaitSeq = 0
			c.sendError(cl, e)
		}
	}
}

// noop is an op that came to nothing, waiting for revision at to be
// durable before its client is told.
type noop struct {
	client string
	source string
	seq    uint64
	at     int64
	moving bool // the pending ops it waits for are being renumbered (applyRemote)
}

// refuseNoop answers an op that others' edits reduced to nothing, once the
// head it was transformed to is durable.
func (c *core) refuseNoop(client, source string, seq uint64) {
	c.noops = append(c.noops, noop{client: client, source: source, seq: seq, at: c.headRev})
	c.releaseNoops()
}

// releaseNoops tells the clients of the noops whose revision is durable.
func (c *core) releaseNoops() {
	kept := c.noops[:0]
	for _, n := range c.noops {
		if n.moving || n.at > c.durableRev {
			kept = append(kept, n)
			continue
		}
		c.tellSource(n.client, n.source, &Error{Code: CodeInvalidOp, Seq: n.seq, HasSeq: true,
			Message: "nothing to commit: edits committed before it already did what this op does (drop it)"})
	}
	c.noops = kept
}

// resetHead makes the head a copy of the durable text (the pending ops
// are to be dropped or submitted again); false if the document failed.
func (c *core) resetHead() bool {
	head, err := c.typ.NewDocument(c.durable.Content())
	if err != nil {
		c.fail(err)
		return false
	}
	c.head = head
	return true
}

// fail handles a failed commit: the head is ahead of the disk and cannot be
// trusted, so every client is sent to resync (it will resubmit what was not
// acknowledged, and exactly-once sorts out what did reach the disk) and the
// document is reloaded from the store by the next connection.
func (c *core) fail(err error) {
	c.out.Errs = append(c.out.Errs, fmt.Errorf("document failed; clients resync: %w", err))
	c.state = stateFailed
	for _, cl := range c.clients {
		if cl.left {
			continue
		}
		if cl.joined {
			c.out.Closes = append(c.out.Closes, closing{Client: cl.id, Code: CloseResync, Reason: "server error: reconnect and catch up"})
		} else {
			c.out.Joined = append(c.out.Joined, joinOutcome{Client: cl.id, Err: protoErr(CodeInternal, "document %s failed; retry", c.id)})
		}
	}
	c.clients, c.byID = nil, map[string]*client{}
	c.out.Done = true
}
