package collab

import (
	"fmt"
)

// ---------------------------------------------------------------------------
// Sources: exactly once. A (source, seq) is committed at most once; a
// resend of one committed is acknowledged with its revision, from memory
// (sources), the pending log, or the store's index (a lookup).

// push appends an accepted record to the log as the new head.
func (c *core) push(rec *committed) {
	c.headRev = rec.Rev
	c.log = append(c.log, *rec)
	if rec.Source != "" {
		// Resubmitted after a conflict, an op can be older than what the
		// other writer's records showed of its source: keep the newest.
		if s, known := c.sources[rec.Source]; !known || rec.Seq >= s.seq {
			c.sources[rec.Source] = source{seq: rec.Seq, rev: rec.Rev, mine: true}
		}
		delete(c.absent, rec.Source)
	}
}

// duplicate handles an op the client's source submitted before (a
// resubmission after a reconnect or a lost ack): it is acknowledged with
// its original revision, now if this connection will not hear of that
// revision by broadcast, and not applied again. ok=false: it waits for a
// lookup.
func (c *core) duplicate(cl *client, p *parked) (dup bool, e *Error, ok bool) {
	src, seq := cl.info.Source, p.msg.Seq
	for _, r := range c.log[c.durableRev-c.logStart:] {
		if r.Source == src && r.Seq == seq {
			if r.Client == cl.id {
				// Every op message gets one answer, and this one's ack
				// answers the first.
				return false, protoErr(CodeBadSeq, "seq %d is already in flight on this connection: wait for its ack", seq), true
			}
			// A resend from a new connection: the commit's broadcast
			// answers it (the op, with its source and seq), and so does
			// a refusal of the pending op (tellSource).
			cl.awaitSeq = seq
			return true, nil, true
		}
	}
	s, known := c.sources[src]
	switch {
	case known && seq == s.seq && s.rev > 0: // rev 0: nothing committed yet
		c.ackDuplicate(cl, seq, s.rev)
		return true, nil, true
	case known && (seq > s.seq || s.rev == 0) && s.mine:
		return false, nil, true
	}
	if !p.looked && c.absent[src] == seq && seq != 0 { // 0: no entry
		p.looked = true // the store's index said so already
	}
	switch {
	case !p.looked:
		key := lookupRequest{Source: src, Seq: seq}
		if !c.lookups[key] {
			c.lookups[key] = true
			c.out.Lookups = append(c.out.Lookups, key)
		}
		return false, nil, false
	case p.err != nil:
		return false, protoErr(CodeInternal, "could not check for a resubmission"), true
	case p.found:
		c.ackDuplicate(cl, seq, p.rev)
		return true, nil, true
	case known && seq < s.seq:
		return false, protoErr(CodeBadSeq, "seq %d is older than %d, the newest from this source, and was never committed", seq, s.seq), true
	}
	return false, nil, true
}

// ackDuplicate acknowledges a resubmitted op committed at rev. A connection
// gets one message per revision: one that joined before rev was durable
// gets the ack by broadcast (already, or when it is durable or heard of),
// and that ack answers the resend. It is not refused when it came first:
// a client resends right after its hello, and the broadcast ack can cross
// the resend on the wire.
func (c *core) ackDuplicate(cl *client, seq uint64, rev int64) {
	if rev <= cl.joinRev {
		c.send(cl, encodeAck(seq, rev))
		return
	}
	if rev > c.durableRev {
		// Committed by another writer at a revision not heard of yet (or
		// by this core's own append, whose outcome is on its way).
		c.noteRemote(rev)
	}
}

func (c *core) lookedUp(ev evLookup) {
	key := lookupRequest{Source: ev.Source, Seq: ev.Seq}
	delete(c.lookups, key)
	if ev.Err != nil {
		c.out.Errs = append(c.out.Errs, fmt.Errorf("exactly-once lookup of %s/%d: %w", ev.Source, ev.Seq, ev.Err))
	}
	if ev.Err == nil && ev.Found {
		if s, known := c.sources[ev.Source]; !known || ev.Seq > s.seq {
			c.sources[ev.Source] = source{seq: ev.Seq, rev: ev.Rev}
		}
	}
	if ev.Err == nil && !ev.Found {
		c.absent[ev.Source] = ev.Seq
	}
	for _, cl := range c.clients {
		if len(cl.parked) == 0 {
			continue
		}
		p := cl.parked[0]
		if p.msg.Type == "op" && !p.looked && cl.info.Source == ev.Source && p.msg.Seq == ev.Seq {
			p.looked, p.found, p.rev, p.err = true, ev.Found, ev.Rev, ev.Err
		}
	}
	c.drain()
}
