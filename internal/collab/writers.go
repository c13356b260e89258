package collab

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tandemdocs/tandem/storage"
)

// ---------------------------------------------------------------------------
// Other writers.

// turnAsked: another writer lost a race for the document and asks for a
// turn. Optimistic compare-and-swap has no turns of its own: a node whose
// clients keep commits coming wins every race against a node that must
// first read what it missed, whose clients then wait for seconds (and
// resync past MaxConflicts). So the others hold their next append until
// the asker's commit arrives, or TurnWait at most. A node that lost its
// own last race does not hold: it is competing for a turn itself.
func (c *core) turnAsked(node string) {
	if c.cfg.TurnWait <= 0 || node == c.cfg.Node || c.lostInRow > 0 || c.state != stateOpen {
		return
	}
	if !slices.Contains(c.yieldTo, node) {
		c.yieldTo = append(c.yieldTo, node)
	}
	if !c.yielding {
		// One wait for every node that asks meanwhile: a node never
		// holds for longer than TurnWait at a time.
		c.yielding = true
		c.out.YieldTick = c.cfg.TurnWait
	}
}

// turnsTaken: the nodes in from committed (the broker said so); once all
// the nodes this core holds for have, it goes on.
func (c *core) turnsTaken(from []string) {
	if !c.yielding || len(from) == 0 {
		return
	}
	c.yieldTo = slices.DeleteFunc(c.yieldTo, func(n string) bool { return slices.Contains(from, n) })
	if len(c.yieldTo) == 0 {
		c.yielding = false
		c.flush()
	}
}

// catchUpRemote reads what other writers committed, when the core knows
// there is some and is not committing (a commit outcome settles it first).
func (c *core) catchUpRemote() {
	if c.remoteHead <= c.durableRev || c.committing || c.readingFwd || c.state == stateFailed {
		return
	}
	c.readForward()
}

func (c *core) readForward() {
	c.readingFwd = true
	c.fwdIssued++
	c.out.Read = append(c.out.Read, readRequest{Forward: true, From: c.durableRev, To: -1})
}

// noteRemote records that revision rev exists in the store, and reads up
// to it when it can.
func (c *core) noteRemote(rev int64) {
	if c.readingFwd {
		c.pushedWhileReading = max(c.pushedWhileReading, rev)
	}
	c.remoteHead = max(c.remoteHead, rev)
	c.catchUpRemote()
}

// remote takes records committed elsewhere, pushed by a broker.
func (c *core) remote(recs []storage.Record) {
	for len(recs) > 0 && recs[0].Rev <= c.durableRev {
		recs = recs[1:]
	}
	if len(recs) == 0 {
		return
	}
	last := recs[len(recs)-1].Rev
	if c.committing || c.readingFwd || recs[0].Rev != c.durableRev+1 || last-recs[0].Rev+1 != int64(len(recs)) {
		c.noteRemote(last) // a gap, or a commit to settle first: read instead
		return
	}
	c.applyRemote(recs)
	c.drain()
	c.flush()
}

func (c *core) forwardRead(ev evRecords) {
	c.readingFwd = false
	c.fwdDone++
	resolving := c.resolving
	c.resolving = false
	if ev.Err != nil {
		switch {
		case resolving:
			c.fail(fmt.Errorf("read the records of a conflicting writer: %w", ev.Err))
		case errors.Is(ev.Err, storage.ErrCompacted):
			// The store no longer has what this core missed (it fell
			// further behind than the history retained): only a reload
			// from the newest snapshot catches it up. Its clients resync.
			c.fail(fmt.Errorf("catch up with other writers: %w", ev.Err))
		default:
			c.out.Errs = append(c.out.Errs, fmt.Errorf("read records from %d: %w", ev.From, ev.Err))
			c.remoteHead = c.durableRev // do not loop on a failing read
			c.flush()                   // what waited for the read goes on (a conflict reads again)
		}
		return
	}
	if resolving {
		c.committing, c.nInflight = false, 0
	}
	recs := ev.Records
	for len(recs) > 0 && recs[0].Rev <= c.durableRev {
		recs = recs[1:]
	}
	if len(recs) > 0 && recs[0].Rev != c.durableRev+1 {
		c.fail(fmt.Errorf("%w: records from %d start at %d", storage.ErrCorrupt, c.durableRev, recs[0].Rev))
		return
	}
	if len(recs) > 0 {
		c.applyRemote(recs)
	} else if resolving {
		// The conflict's records were not there to read: retry the append
		// as it was (the store answers the same conflict if it persists).
		c.out.Errs = append(c.out.Errs, fmt.Errorf("commit conflict at %d but no records after it", c.durableRev))
	}
	// The read went to the store's head: only what was pushed since is
	// newer.
	c.remoteHead = max(c.durableRev, c.pushedWhileReading)
	c.pushedWhileReading = 0
	c.drain()
	c.flush()
	c.catchUpRemote()
}

// applyRemote makes records committed elsewhere (durableRev+1 onward)
// durable here: they are broadcast, selections move through them, and the
// pending ops are submitted again on top of them, in order, except those
// that they show were committed already (the same source and seq: a client
// that moved between servers); the clients of those get their ack with the
// record.
func (c *core) applyRemote(recs []storage.Record) {
	pending := append([]committed(nil), c.log[c.durableRev-c.logStart:]...)
	if len(pending) > 0 {
		// The noops found on top of the pending ops wait for them under
		// their new revisions (set below), not the old ones, which the
		// remote records now hold.
		for i := range c.noops {
			c.noops[i].moving = true
		}
	}
	c.log = c.log[:c.durableRev-c.logStart]
	c.headRev = c.durableRev
	done := map[lookupRequest]bool{}
	for _, r := range recs {
		if err := c.durable.Apply(r.Op); err != nil {
			c.fail(fmt.Errorf("%w: revision %d from another writer does not apply: %v", storage.ErrCorrupt, r.Rev, err))
			return
		}
		rec := committed{Record: r, Len: c.durable.Len()}
		c.log = append(c.log, rec)
		c.durableRev, c.headRev = r.Rev, r.Rev
		c.snapOpBytes += opBytes(r.Op)
		if r.Source != "" {
			done[lookupRequest{Source: r.Source, Seq: r.Seq}] = true
			delete(c.absent, r.Source)
			if s, known := c.sources[r.Source]; !known || r.Seq >= s.seq {
				c.sources[r.Source] = source{seq: r.Seq, rev: r.Rev}
			}
		}
		c.broadcast(&rec)
	}
	// An op another writer committed (its client resent it there) is
	// acknowledged by that broadcast: whatever this core found of it is
	// no answer any more.
	c.noops = slices.DeleteFunc(c.noops, func(n noop) bool { return done[lookupRequest{Source: n.source, Seq: n.seq}] })
	defer c.releaseNoops()
	if len(pending) == 0 {
		for _, r := range recs {
			if err := c.head.Apply(r.Op); err != nil {
				c.fail(fmt.Errorf("revision %d does not apply to the head: %w", r.Rev, err))
				return
			}
		}
	} else {
		if !c.resetHead() {
			return
		}
		for _, p := range pending {
			if p.Source != "" && done[lookupRequest{Source: p.Source, Seq: p.Seq}] {
				continue // committed elsewhere: acknowledged by the broadcast above
			}
			rec, e := c.accept(p.Orig, p.Base, p.Span)
			if e != nil || rec.Op.IsNoop() {
				// Not committed after all: what the core believed of the
				// source included this op (push): forget it, so that a
				// resend is looked up afresh, not acknowledged with the
				// revision it had before the conflict (someone else's).
				if s, ok := c.sources[p.Source]; ok && s.seq == p.Seq {
					delete(c.sources, p.Source)
				}
			}
			if e != nil {
				e.Seq, e.HasSeq = p.Seq, true
				c.tellSource(p.Client, p.Source, e)
				continue
			}
			if rec.Op.IsNoop() {
				c.refuseNoop(p.Client, p.Source, p.Seq)
				continue
			}
			rec.Client, rec.Record.Source, rec.Record.Seq, rec.Record.User, rec.Record.Time = p.Client, p.Source, p.Seq, p.User, p.Time
			c.push(&rec)
		}
		// The pending ops have new revisions: a noop found on top of them
		// waits for all of them.
		for i := range c.noops {
			if c.noops[i].moving {
				c.noops[i].at, c.noops[i].moving = c.headRev, false
			}
		}
	}
	c.afterDurable()
}
