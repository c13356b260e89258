package collab

import (
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// ---------------------------------------------------------------------------
// Messages.

func (c *core) message(ev evMessage) {
	cl := c.byID[ev.Client]
	if cl == nil || cl.left {
		return
	}
	p := &parked{msg: ev.Msg, now: ev.Now, paid: ev.Paid}
	if !cl.joined || len(cl.parked) > 0 || !c.handle(cl, p) {
		cl.parked = append(cl.parked, p)
	}
}

// handle processes one message and reports false if it must wait (it asked
// for what it needs).
func (c *core) handle(cl *client, p *parked) bool {
	switch p.msg.Type {
	case "op":
		if e, ok := c.submit(cl, p); !ok {
			return false
		} else if e != nil {
			e.Seq, e.HasSeq = p.msg.Seq, true
			c.sendError(cl, e)
		}
	case "sel":
		if e, ok := c.selection(cl, p); !ok {
			return false
		} else if e != nil {
			c.sendError(cl, e)
		}
	case "restored":
		c.restored(cl, p.msg.Rev)
		return true
	}
	cl.floor = max(cl.floor, p.msg.Rev) // (an op's or a selection's base)
	return true
}

// restored tells everyone else that cl restored an old version (an
// ordinary op, sent on its own), for their history.
func (c *core) restored(cl *client, rev int64) {
	switch {
	case cl.info.ReadOnly:
		c.sendError(cl, protoErr(CodeForbidden, "this connection may read the document, not restore it"))
	case rev > c.durableRev:
		c.sendError(cl, protoErr(CodeRevAhead, "restored revision %d, the document is at %d", rev, c.durableRev))
	default:
		c.sendOthers(cl, encodeRestored(cl.id, rev))
		if c.cfg.OtherWriters { // their clients are told too
			c.out.Signals = append(c.out.Signals, Signal{Kind: SignalRestored, Client: cl.id, Rev: rev})
		}
	}
}

// drainClient handles cl's parked messages until one must wait again.
func (c *core) drainClient(cl *client) {
	for len(cl.parked) > 0 && c.byID[cl.id] == cl {
		if !c.handle(cl, cl.parked[0]) {
			return
		}
		cl.parked[0] = nil
		cl.parked = cl.parked[1:]
	}
	if cl.left && c.byID[cl.id] == cl {
		c.remove(cl)
	}
}

// drain retries every waiting join and message.
func (c *core) drain() {
	for _, cl := range append([]*client(nil), c.clients...) {
		if c.byID[cl.id] != cl {
			continue
		}
		if !cl.joined && !cl.left {
			c.tryHello(cl)
		} else {
			c.drainClient(cl)
		}
	}
}

// charge bills the client for an op's or a selection's work: one token per
// WorkPerToken revisions it must be transformed through, per range. The
// reading goroutine took its estimate before the message came here (so a
// client cannot queue up expensive work it has not paid for); the core
// bills what the estimate missed (the head moved since). The driver takes
// that from the connection's budget, into debt if need be, so that its
// next frames wait until it is repaid.
func (c *core) charge(cl *client, p *parked, distance int64, ranges int64) {
	if p.charged {
		return
	}
	p.charged = true
	if extra := workTokens(distance, ranges, c.cfg.WorkPerToken) - int64(p.paid); extra > 0 {
		c.out.Charges = append(c.out.Charges, charge{Client: cl.id, Tokens: int(min(extra, 1<<20)), At: p.now})
	}
}

// workTokens is the price of transforming ranges positions (or one op)
// through distance revisions.
func workTokens(distance, ranges, perToken int64) int64 {
	return max(distance, 0) * max(ranges, 1) / perToken
}

// submit takes one op: deduplicated by (source, seq), transformed against
// every op after its base revision, applied to the head, and queued for
// the commit. It reports ok=false when it must wait for history or a
// lookup; otherwise a nil error means accepted (the ack comes when the
// record is durable), or the error to send.
func (c *core) submit(cl *client, p *parked) (*Error, bool) {
	m := &p.msg
	if e := c.cannotEdit(cl); e != nil {
		return e, true
	}
	if dup, e, ok := c.duplicate(cl, p); !ok {
		return nil, false
	} else if dup || e != nil {
		return e, true
	}
	if e := c.refusal(m); e != nil {
		return e, true
	}
	c.charge(cl, p, c.headRev-m.Rev, int64(m.Op.Parts()))
	if m.Rev < c.logStart {
		if c.histErr != nil {
			return c.historyError(m.Rev), true
		}
		c.readHistory(m.Rev)
		return nil, false
	}
	rec, e := c.accept(m.Op, m.Rev, m.Span)
	if e != nil {
		return e, true
	}
	c.out.Distances = append(c.out.Distances, c.headRev-m.Rev)
	if rec.Op.IsNoop() {
		c.refuseNoop(cl.id, cl.info.Source, m.Seq)
		return nil, true
	}
	rec.Client = cl.id
	rec.Record.Source, rec.Record.Seq, rec.Record.User, rec.Record.Time = cl.info.Source, m.Seq, cl.info.User, p.now
	c.push(&rec)
	if injectBroadcastEarly {
		c.sendOthers(cl, encodeOp(&rec))
	}
	c.flush()
	return nil, true
}

// cannotEdit is why cl may not edit now, if it may not.
func (c *core) cannotEdit(cl *client) *Error {
	switch {
	case c.state != stateOpen:
		return protoErr(CodeInternal, "document is closing; resubmit after reconnecting")
	case cl.info.ReadOnly:
		return protoErr(CodeForbidden, "this connection may read the document, not edit it")
	}
	return nil
}

// refusal is why an op that is not a duplicate cannot be taken now, if it
// cannot.
func (c *core) refusal(m *ClientMessage) *Error {
	switch {
	case m.Op.Parts() == 0:
		// Checked after the duplicate check: a resent op that the client
		// transformed to nothing may have been committed before.
		return protoErr(CodeInvalidOp, "empty op: nothing to commit")
	case c.writeErr != nil:
		return protoErr(CodeStorageFull, "the server is not taking edits: %v; keep the op and resend it later", c.writeErr)
	case m.Rev > c.durableRev:
		return protoErr(CodeRevAhead, "op based on revision %d, the document is at %d", m.Rev, c.durableRev)
	case c.durableRev-m.Rev > c.cfg.MaxLag:
		return protoErr(CodeRevTooOld, "op based on revision %d, more than %d behind %d: resync", m.Rev, c.cfg.MaxLag, c.durableRev)
	case (c.headRev-m.Rev)*int64(m.Op.Parts()) > c.cfg.MaxWork:
		// The head moved on since the reading goroutine priced it: still
		// more work than any budget holds.
		return protoErr(CodeTooFarBehind, "this op is %d revisions behind: catch up (reconnect with rev) and send it again", c.headRev-m.Rev)
	}
	return nil
}

// accept transforms op (based on rev, spanning span code points) to the
// head and applies it there; the caller fills in who and when.
func (c *core) accept(op doctype.Op, rev int64, span int) (committed, *Error) {
	if n := c.lenAt(rev); span > n {
		return committed{}, protoErr(CodeInvalidOp, "op spans %d code points; the document at revision %d has %d", span, rev, n)
	}
	orig := op
	// Through the history in two buffers the core keeps, so that an op
	// transformed through many revisions allocates once (the clone).
	hist := c.log[rev-c.logStart:]
	side := ot.Left // the op committed later goes after, on a tie (as the clients do)
	if injectWrongSide {
		side = ot.Right
	}
	for i, r := range hist {
		buf, err := c.typ.TransformAppend(c.xform[i%2], op, r.Op, side)
		if err != nil {
			return committed{}, protoErr(CodeInvalidOp, "%v", err)
		}
		c.xform[i%2], op = buf, buf
	}
	if len(hist) > 0 {
		op = op.Clone()
		c.xform[0].Scrub() // (no text kept alive by the buffers)
		c.xform[1].Scrub()
	}
	inserted := op.InsertedBytes()
	if inserted > c.cfg.MaxInsertBytes {
		return committed{}, protoErr(CodeTooLarge, "op inserts %d bytes, at most %d", inserted, c.cfg.MaxInsertBytes)
	}
	if c.head.Size()+inserted > c.cfg.MaxDocBytes {
		return committed{}, protoErr(CodeTooLarge, "the document would exceed %d bytes", c.cfg.MaxDocBytes)
	}
	if err := c.head.Apply(op); err != nil {
		return committed{}, protoErr(CodeInvalidOp, "%v", err)
	}
	return committed{Record: storage.Record{Rev: c.headRev + 1, Op: op}, Len: c.head.Len(), Orig: orig, Base: rev, Span: span}, nil
}

// lenAt returns the document's length at a revision in the log.
func (c *core) lenAt(rev int64) int {
	if rev == c.logStart {
		return c.logStartLen
	}
	return c.log[rev-c.logStart-1].Len
}

// selection stores and broadcasts cl's selection, moved to the durable
// revision.
func (c *core) selection(cl *client, p *parked) (*Error, bool) {
	m := p.msg
	if m.Rev > c.durableRev {
		return protoErr(CodeRevAhead, "selection at revision %d, the document is at %d", m.Rev, c.durableRev), true
	}
	if c.durableRev-m.Rev > c.cfg.MaxLag {
		return protoErr(CodeRevTooOld, "selection at revision %d, more than %d behind %d", m.Rev, c.cfg.MaxLag, c.durableRev), true
	}
	c.charge(cl, p, c.durableRev-m.Rev, int64(len(m.Sel)))
	if m.Rev < c.logStart {
		if c.histErr != nil {
			return c.historyError(m.Rev), true
		}
		c.readHistory(m.Rev)
		return nil, false
	}
	since := c.log[m.Rev-c.logStart : c.durableRev-c.logStart]
	n := c.durable.Len()
	sel := make([]ot.Selection, len(m.Sel))
	for i, s := range m.Sel {
		s = clampSelection(s, c.lenAt(m.Rev))
		for j := range since {
			s = c.typ.TransformSelection(s, since[j].Op, sideFor(cl, &since[j]))
		}
		sel[i] = clampSelection(s, n)
	}
	cl.sel = sel
	switch {
	case !cl.announced:
	case len(c.clients) > c.cfg.PresenceCrowd:
		c.queueSelection(cl)
	case c.committing || c.headRev > c.durableRev:
		// An editor sends its caret right after each edit: held until
		// the edit in flight is durable, it leaves in the same frame as
		// the op (flushPresence after the broadcast), one write per peer
		// instead of two. The presence tick is the bound if no commit
		// comes.
		c.queueSelection(cl)
	default:
		c.sendOthers(cl, encodeSel(cl.id, c.durableRev, sel))
		c.tellPeer(cl)
	}
	return nil, true
}

// queueSelection holds cl's selection for the next presence tick. In a
// crowded document a caret that moves with every keystroke would cost
// every peer a message per keystroke; instead each peer gets one frame
// per tick with the latest selection of everyone who moved (encoded once),
// so presence traffic is bounded by peers × ticks, however fast people
// type.
func (c *core) queueSelection(cl *client) {
	if !cl.selQueued {
		cl.selQueued = true
		c.selQueue = append(c.selQueue, cl)
	}
	if !c.tickAsked {
		c.tickAsked = true
		// Each tick sends up to HelloPeers selections to every
		// connection: beyond ten crowds the interval grows with the
		// connections, so a document's presence traffic stops growing.
		c.out.PresenceTick = c.cfg.PresenceInterval * time.Duration(max(1, len(c.clients)/(10*c.cfg.PresenceCrowd)))
	}
}

// flushPresence sends the queued selections, at the durable revision,
// to every joined client: one frame, the same for everyone but the
// movers themselves, who get it without their own.
func (c *core) flushPresence() {
	c.tickAsked = false
	var parts [][]byte
	movers := map[*client]int{}
	for _, cl := range c.selQueue {
		cl.selQueued = false
		if cl.announced && !cl.left {
			movers[cl] = len(parts)
			parts = append(parts, encodeSel(cl.id, c.durableRev, cl.sel))
			c.tellPeer(cl)
		}
	}
	c.selQueue = c.selQueue[:0]
	if len(parts) == 0 {
		return
	}
	all := encodeBatch(parts, -1)
	for _, o := range c.clients {
		if !o.joined || o.left {
			continue
		}
		if i, moved := movers[o]; !moved {
			c.send(o, all)
		} else if len(parts) > 1 {
			c.send(o, encodeBatch(parts, i))
		}
	}
}

func clampSelection(s ot.Selection, n int) ot.Selection {
	return ot.Selection{Anchor: max(0, min(s.Anchor, n)), Head: max(0, min(s.Head, n))}
}

// sideFor: an author's caret moves past its own insert; others' stay
// before it.
func sideFor(cl *client, r *committed) ot.Side { return sideOf(cl.info.Source, r) }
