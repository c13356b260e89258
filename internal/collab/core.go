package collab

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// This file is the pure part of a document: a deterministic state machine
// with no goroutines, no clock, no locks and no I/O. The driver (driver.go)
// feeds it events and does what each ready asks. Keep it that way: a test
// (TestCoreIsPure) checks its imports and calls.

// lifecycle is where a document is in its life.
type lifecycle int

const (
	stateOpen    lifecycle = iota // taking joins and ops
	stateClosing                  // finishing what was accepted, then closing every connection
	stateDone                     // finished: the driver exits
	stateFailed                   // a commit failed: every connection was sent to resync
)

func (s lifecycle) String() string {
	return [...]string{"open", "closing", "done", "failed"}[s]
}

// coreConfig is the part of Config the core uses.
type coreConfig struct {
	SnapshotEvery    int64
	HistoryInMemory  int
	MaxLag           int64
	CatchUpMax       int64
	MaxInsertBytes   int
	MaxDocBytes      int
	WorkPerToken     int64
	MaxWork          int64         // part-revisions one op may be transformed through (a connection's burst of tokens)
	MaxClients       int           // connections per document (0: unlimited)
	HelloPeers       int           // peers listed in a hello
	PresenceCrowd    int           // above this many connections, selections wait for a presence tick
	PresenceInterval time.Duration // the tick, for up to 10×PresenceCrowd connections; longer beyond
	CommitLinger     time.Duration // how long the next append may wait for the ops just-acked clients send next (0: never)
	FanOutPace       time.Duration // per connection: how long an append made right after another waits for more ops (0: never)
	FanOutPaceFrom   int           // the fewest connections a document is paced with
	MaxConflicts     int           // commits in a row lost to other writers before the document fails (0: no bound)
	// RemotePresence: this node tells other nodes of its participants
	// and shows theirs (presence.go); Node names it, and the
	// participants of a node not heard of for PresenceTTL expire.
	RemotePresence bool
	Node           string
	PresenceTTL    time.Duration
	// TurnWait: how long this node holds its next commit to a document
	// when another node asks for a turn (it lost a race for it); 0: it
	// never does (no other writer).
	TurnWait time.Duration
	// OtherWriters: other nodes write to the store and hear this one's
	// signals (a Broker).
	OtherWriters bool
}

// source is what the core knows of a client source, for exactly-once.
type source struct {
	seq uint64 // the newest sequence number known committed (or pending)
	rev int64  // its revision
	// mine: this core committed seq itself and has seen no record of the
	// source from elsewhere since, so the source's later seqs are new. A seq
	// learned from the store or another writer says nothing about later
	// ones, which may have been committed elsewhere.
	mine bool
}

// client is a connection as the core sees it.
type client struct {
	id      string
	info    ClientInfo
	joined  bool  // its hello was sent
	joinRev int64 // the revision of its hello: it hears of every later one by broadcast
	sel     []ot.Selection
	parked  []*parked // messages waiting for a read or a lookup, in order
	// fwdTicket: a join asking for a revision ahead of the core waits for
	// the forward read with this number (0: none asked for).
	fwdTicket int
	// left: the connection is gone, but ops it sent still wait to be
	// committed.
	left bool
	// announced: others were told of its join (see tryHello).
	announced bool
	// selQueued: its selection waits for the next presence tick.
	selQueued bool
	// awaitSeq: its resend of this seq was deduplicated against another
	// connection's pending op, whose outcome answers it too.
	awaitSeq uint64
	// floor: no message still to come from it is based on a revision
	// before this (a client's revisions only go forward), so history older
	// than every client's floor need not stay in memory.
	floor int64
}

// parked is a message that waits for history or an exactly-once lookup.
type parked struct {
	msg     ClientMessage
	now     time.Time
	charged bool // its work was billed
	paid    int  // tokens taken for its work when it was read
	looked  bool // the lookup of its (source, seq) came back
	found   bool
	rev     int64
	err     error
}

type core struct {
	cfg   coreConfig
	id    string
	title string
	state lifecycle

	closeCode     int
	closeReason   string
	closeSnapshot bool

	typ        doctype.Type
	head       doctype.Document // every accepted op
	headRev    int64
	durable    doctype.Document // the durable ops only: what joining clients get
	durableRev int64
	oldest     int64 // the store retains revisions oldest+1..

	// log holds records logStart+1..headRev: durable ones, then pending.
	log         []committed
	logStart    int64
	logStartLen int // the document's length at logStart

	// noops: ops that others' edits reduced to nothing (a stale delete of
	// text already deleted). They are not committed (no empty revision);
	// each is refused with invalid_op once the revision it was transformed
	// to is durable, so that its client has the ops that undid it first and
	// drops it quietly.
	noops []noop

	nInflight  int  // the first nInflight pending records are in the outstanding append
	committing bool // an append is outstanding (or its conflict is being resolved)
	resolving  bool // the append conflicted: waiting for the other writer's records

	clients   []*client // in join order: output is deterministic
	announced int       // clients whose presence others see
	selQueue  []*client // selections waiting for the presence tick, in order
	tickAsked bool      // a presence tick is on its way

	// Other nodes' participants (presence.go), in arrival order.
	remotes       []*remotePeer
	remoteShown   int   // those this node's clients were told of
	remoteWaiting bool  // some wait for a revision this node has not reached
	toldPeers     bool  // the other nodes were told of participants of this node
	beatHead      int64 // the durable revision the last heartbeat told them

	// Commit linger (see flush): the ops the next append waits for, and
	// whether that is worth it lately.
	expect     int64
	lingering  bool          // the next append waits (a linger tick was asked for)
	lingerOver bool          // the tick came: append what there is
	lingerSkip int           // appends to make without lingering, after a linger that waited in vain
	paceWait   bool          // an append was made less than the fan-out pace ago (see flush): the next waits for the tick
	xform      [2]doctype.Op // accept's buffers
	lostInRow  int           // commits lost to other writers since the last one that went in
	yielding   bool          // other writers asked for a turn: the next append waits for their commits (or TurnWait)
	yieldTo    []string      // the nodes that asked
	byID       map[string]*client
	sources    map[string]source
	// absent: per source, a seq the store's index said was not committed
	// (so a message resent after an error needs no second lookup). If
	// another writer commits it meanwhile, the conflict shows it.
	absent  map[string]uint64
	lookups map[lookupRequest]bool // outstanding

	readingBack bool
	backFrom    int64
	histErr     error // while draining after a failed history read
	readingFwd  bool
	remoteHead  int64 // the newest revision known committed elsewhere
	// pushedWhileReading: the newest revision heard of while a forward
	// read was under way (the read may not include it).
	pushedWhileReading int64
	fwdIssued, fwdDone int // forward reads asked for and answered

	lastSnap     int64
	snapOpBytes  int // op bytes since the last snapshot
	snapshotting bool

	writeErr error
	out      ready
}

// newCore returns the core of a document loaded at doc.Head as text, whose
// newest snapshot is at lastSnap.
func newCore(cfg coreConfig, doc storage.Document, text doctype.Document, lastSnap int64) (*core, error) {
	typ := doc.DocType()
	durable, err := typ.NewDocument(text.Content())
	if err != nil {
		return nil, err
	}
	return &core{
		cfg:         cfg,
		typ:         typ,
		id:          doc.ID,
		title:       doc.Title,
		head:        text,
		headRev:     doc.Head,
		durable:     durable,
		durableRev:  doc.Head,
		oldest:      doc.Oldest,
		logStart:    doc.Head,
		logStartLen: text.Len(),
		byID:        map[string]*client{},
		sources:     map[string]source{},
		absent:      map[string]uint64{},
		lookups:     map[lookupRequest]bool{},
		lastSnap:    lastSnap,
		remoteHead:  doc.Head,
	}, nil
}

// step feeds one event to the core and returns what the driver must do:
// the core's own ready, valid until the next step (a pointer, not a copy:
// the driver's goroutine stack stays small).
func (c *core) step(ev event) *ready {
	// The messages' and the metrics' slices keep their capacity from step
	// to step (the driver is done with a ready before the next step): no
	// allocation per op for them. (The messages are cleared so that the
	// frames they held can go.)
	clear(c.out.Messages)
	msgs, dists, fanOut := c.out.Messages[:0], c.out.Distances[:0], c.out.FanOut[:0]
	c.out = ready{} // (cleared in place: a literal would be a copy in this frame)
	c.out.Messages, c.out.Distances, c.out.FanOut = msgs, dists, fanOut
	if c.state == stateDone || c.state == stateFailed {
		// Joins still waiting get an answer; everything else is moot.
		if j, ok := ev.(evJoin); ok {
			c.out.Joined = append(c.out.Joined, joinOutcome{Client: j.Client, Err: protoErr(CodeInternal, "document %s is closing; retry", c.id)})
		}
		return &c.out
	}
	// The events of every op first; the others in stepOther.
	switch ev := ev.(type) {
	case evMessage:
		c.message(ev)
	case evCommitted:
		c.committed(ev)
	default:
		c.stepOther(ev)
	}
	c.placeWaiting()
	c.finishIfClosing()
	if c.state == stateDone || c.state == stateFailed {
		c.presenceGone()
	}
	return &c.out
}

// stepOther handles the events that are not an op's.
func (c *core) stepOther(ev event) {
	switch ev := ev.(type) {
	case evJoin:
		c.join(ev)
	case evLeave:
		c.leave(ev.Client, false)
	case evOverflow:
		c.leave(ev.Client, true)
	case evRecords:
		if ev.Forward {
			c.forwardRead(ev)
		} else {
			c.historyRead(ev)
		}
	case evLookup:
		c.lookedUp(ev)
	case evRemote:
		c.remote(ev.Records)
		c.turnsTaken(ev.From)
	case evSnapshotSaved:
		c.snapshotSaved(ev)
	case evWritable:
		c.writeErr = ev.Err
	case evTitle:
		c.title = ev.Title
		c.sendOthers(nil, encodeTitle(ev.Title))
	case evShutdown:
		c.shutdown(ev)
	case evPresenceTick:
		c.flushPresence()
	case evRemotePresence:
		c.remotePresence(ev)
	case evPresenceBeat:
		c.presenceBeat(ev.Now)
	case evTurnAsked:
		c.turnAsked(ev.Node)
	case evRemoteRestored:
		c.sendOthers(nil, encodeRestored(ev.Client, ev.Rev))
	case evYieldOver:
		if c.yielding {
			c.yielding, c.yieldTo = false, nil
			c.flush()
		}
	case evLingerTick:
		if c.paceWait {
			c.paceWait = false
			c.flush()
			break
		}
		// (A tick for a wait that already ended with an append is moot.)
		if c.lingering {
			if c.headRev > c.durableRev {
				// Waited in vain (the clients do not answer that fast):
				// do not wait for a while.
				c.lingerSkip = 16
			}
			c.lingerOver = true
			c.flush()
		}
	default:
		panic(fmt.Sprintf("collab: unknown event %T", ev))
	}
}

// idle reports whether the document has no clients and nothing under way:
// it may be unloaded.
func (c *core) idle() bool {
	return c.state == stateOpen && len(c.clients) == 0 && !c.committing && c.headRev == c.durableRev &&
		!c.readingBack && !c.readingFwd && len(c.lookups) == 0
}

func (c *core) send(to *client, msg []byte) {
	c.out.Messages = append(c.out.Messages, outgoing{To: to.id, Msg: msg})
}

// sendOthers sends msg to every joined client but except.
func (c *core) sendOthers(except *client, msg []byte) {
	for _, o := range c.clients {
		if o != except && o.joined && !o.left {
			c.send(o, msg)
		}
	}
}

func (c *core) sendError(to *client, e *Error) {
	c.out.Refused = append(c.out.Refused, e.Code)
	c.send(to, EncodeError(e))
}

// ---------------------------------------------------------------------------
// Joining and leaving.

func (c *core) join(ev evJoin) {
	if c.state != stateOpen {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeInternal, "document %s is closing; retry", c.id)})
		return
	}
	if c.cfg.MaxClients > 0 && len(c.clients) >= c.cfg.MaxClients {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeDocumentFull, "document %s has %d connections, the most it takes; try again later", c.id, len(c.clients))})
		return
	}
	if _, dup := c.byID[ev.Client]; dup {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeInternal, "connection %s joined twice", ev.Client)})
		return
	}
	cl := &client{id: ev.Client, info: ev.Info}
	if _, known := c.sources[cl.info.Source]; !known && cl.info.KeyIssued {
		// A key issued just now: its source has committed nothing.
		c.sources[cl.info.Source] = source{mine: true}
	}
	c.clients = append(c.clients, cl)
	c.byID[cl.id] = cl
	c.tryHello(cl)
}

// tryHello sends cl its hello if the core has what it needs, and reports
// whether it did; otherwise it has asked for it (a read) and tries again
// when it comes.
func (c *core) tryHello(cl *client) bool {
	if c.state != stateOpen {
		c.leave(cl.id, false)
		return false
	}
	from := cl.info.LastRev
	if from > c.durableRev {
		// The client saw a revision another writer committed and this core
		// has not heard of yet: catch up first, with a forward read that
		// starts after the join, so that the client's view never goes back.
		if cl.fwdTicket == 0 {
			cl.fwdTicket = c.fwdIssued + 1
			c.noteRemote(from)
		}
		if c.fwdDone < cl.fwdTicket {
			return false
		}
	}
	catchUp := from >= 0 && from <= c.durableRev && c.durableRev-from <= c.cfg.CatchUpMax && from >= c.oldest
	if catchUp && from < c.logStart && c.histErr == nil {
		c.readHistory(from)
		return false
	}
	catchUp = catchUp && from >= c.logStart
	var ops []committed
	if catchUp {
		ops = c.log[from-c.logStart : c.durableRev-c.logStart]
		catchUp = catchUpBytes(ops) <= max(c.durable.Size(), 256<<10)
	}
	c.send(cl, c.hello(cl, catchUp, ops))
	cl.joined = true
	cl.joinRev = c.durableRev
	cl.floor = c.durableRev
	if r := cl.info.LastRev; r >= 0 && r < cl.floor {
		cl.floor = r // it may resend ops based on where it was
	}
	// Presence is announced for the first HelloPeers participants only: in
	// a crowded document the others are counted in hellos, and their
	// joins, leaves and selections go to nobody, so a crowd of n costs
	// O(n × HelloPeers) presence traffic, not O(n²).
	if c.announced+c.remoteShown < c.cfg.HelloPeers {
		cl.announced = true
		c.announced++
		c.sendOthers(cl, encodeJoin(cl.peer()))
		c.tellPeer(cl)
	}
	c.out.Joined = append(c.out.Joined, joinOutcome{Client: cl.id})
	c.drainClient(cl)
	return true
}

// hello builds the first message for cl: the durable state (the text, or
// the ops after cl's last revision), the peers and their selections.
func (c *core) hello(cl *client, catchUp bool, ops []committed) []byte {
	size := 256
	if !catchUp {
		size += c.durable.Size()
	}
	b := append(make([]byte, 0, size), `{"type":"hello","protocol":`...)
	b = appendInt(b, ProtocolVersion)
	b = appendField(b, "doc")
	b = appendString(b, c.id)
	b = appendField(b, "title")
	b = appendString(b, c.title)
	b = appendField(b, "client")
	b = appendString(b, cl.id)
	b = appendField(b, "src")
	b = appendString(b, cl.info.Source)
	if cl.info.Key != "" && cl.info.KeyIssued {
		b = appendField(b, "key")
		b = appendString(b, cl.info.Key)
	}
	b = appendField(b, "doctype")
	b = appendString(b, c.typ.Name())
	b = appendField(b, "rev")
	b = appendInt(b, c.durableRev)
	if catchUp {
		b = appendField(b, "from")
		b = appendInt(b, cl.info.LastRev)
		b = appendField(b, "ops")
		b = append(b, '[')
		for i := range ops {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendObject(b, func(b []byte) []byte { return appendOpFields(b, &ops[i]) })
		}
		b = append(b, ']')
	} else {
		b = appendContent(b, c.typ, c.durable)
	}
	b = appendField(b, "peers")
	b = append(b, '[')
	// A hello lists the announced peers, this node's and other nodes' (at
	// most HelloPeers); the others come as a count.
	listed, more := 0, 0
	list := func(announced bool, p Peer, sel []ot.Selection) {
		if !announced || listed >= c.cfg.HelloPeers {
			more++
			return
		}
		if listed > 0 {
			b = append(b, ',')
		}
		listed++
		b = appendObject(b, func(b []byte) []byte {
			b = appendPeerFields(b, p)
			b = appendField(b, "sel")
			return appendSelections(b, sel)
		})
	}
	for _, p := range c.clients {
		if p != cl && p.joined && !p.left {
			list(p.announced, p.peer(), p.sel)
		}
	}
	for _, rp := range c.remotes {
		sel := rp.sel
		if !rp.at {
			sel = nil // placed when this node reaches its revision
		}
		list(rp.shown, rp.peer, sel)
	}
	b = append(b, ']')
	if more > 0 {
		b = appendField(b, "more")
		b = appendInt(b, int64(more))
	}
	return append(b, '}')
}

// catchUpBytes estimates the size of ops in a hello: past the text's size,
// sending the text is cheaper.
func catchUpBytes(ops []committed) int {
	n := 0
	for _, r := range ops {
		n += 96 + opBytes(r.Op)
	}
	return n
}

// leave removes a client; overflow closes its connection for resync first
// (its queue overflowed: it missed messages). Ops it sent that wait for a
// lookup or history are still committed (as they would have been had they
// not waited): the client is kept, out of sight, until they are done.
func (c *core) leave(id string, overflow bool) {
	cl := c.byID[id]
	if cl == nil || cl.left {
		return
	}
	if overflow {
		c.out.Closes = append(c.out.Closes, closing{Client: id, Code: CloseResync, Reason: "outbound queue full: reconnect and catch up"})
	}
	if !cl.joined {
		c.remove(cl)
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: id, Err: protoErr(CodeInternal, "connection closed before it joined")})
		return
	}
	if cl.announced {
		cl.announced = false
		c.announced--
		c.sendOthers(cl, encodeLeave(id))
		c.tellLeft(id)
	}
	cl.parked = slices.DeleteFunc(cl.parked, func(p *parked) bool { return p.msg.Type != "op" })
	if len(cl.parked) > 0 {
		cl.left = true
		return
	}
	c.remove(cl)
}

func (c *core) remove(cl *client) {
	delete(c.byID, cl.id)
	c.clients = slices.DeleteFunc(c.clients, func(o *client) bool { return o == cl })
}

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

// lenAt returns the document's length at a revision in the log.
func (c *core) lenAt(rev int64) int {
	if rev == c.logStart {
		return c.logStartLen
	}
	return c.log[rev-c.logStart-1].Len
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

// ---------------------------------------------------------------------------
// History.

// readHistory asks for the records from rev to the start of the log.
func (c *core) readHistory(from int64) {
	if c.readingBack {
		return // the drain after it asks again for what is still missing
	}
	c.readingBack, c.backFrom = true, from
	c.out.Read = append(c.out.Read, readRequest{From: from, To: c.logStart})
}

func (c *core) historyError(rev int64) *Error {
	if errors.Is(c.histErr, storage.ErrCompacted) {
		return protoErr(CodeRevTooOld, "revision %d is no longer retained: resync", rev)
	}
	return protoErr(CodeInternal, "could not read history")
}

func (c *core) historyRead(ev evRecords) {
	c.readingBack = false
	err := ev.Err
	if err == nil && (ev.From != c.backFrom || int64(len(ev.Records)) != c.logStart-ev.From) {
		err = fmt.Errorf("%w: history read of %d..%d returned %d records", storage.ErrCorrupt, ev.From, c.logStart, len(ev.Records))
	}
	if err == nil {
		recs := make([]committed, len(ev.Records))
		n := c.logStartLen
		for i := len(ev.Records) - 1; i >= 0; i-- {
			r := ev.Records[i]
			if r.Rev != ev.From+1+int64(i) {
				err = fmt.Errorf("%w: history read: record %d where %d was expected", storage.ErrCorrupt, r.Rev, ev.From+1+int64(i))
				break
			}
			recs[i] = committed{Record: r, Len: n}
			n -= lenDelta(r.Op)
		}
		if err == nil {
			c.log = append(recs, c.log...)
			c.logStart, c.logStartLen = ev.From, n
		}
	}
	if err != nil {
		if !errors.Is(err, storage.ErrCompacted) {
			c.out.Errs = append(c.out.Errs, fmt.Errorf("read history from %d: %w", ev.From, err))
		}
		// Everything waiting for history gets its answer now; later
		// requests try the read again.
		c.histErr = err
		c.drain()
		c.histErr = nil
		return
	}
	c.drain()
}

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

// ---------------------------------------------------------------------------
// Snapshots, shutdown.

// maybeSnapshot asks for a snapshot of the durable text when one is due:
// SnapshotEvery revisions since the last, carrying at least a sixteenth of
// the text's size in ops (so a large document is not copied whole for a
// few keystrokes), or, whatever their size, SnapshotEvery × max(20, one
// per 64 KiB of text) revisions (so loading replays a bounded number of
// records: 2,000 for a small document, 8,000 for a 5 MiB one). It is
// saved outside the group commit, after the ops it covers are durable.
func (c *core) maybeSnapshot() {
	since := c.durableRev - c.lastSnap
	if c.snapshotting || since < c.cfg.SnapshotEvery {
		return
	}
	size := c.durable.Size()
	stretch := max(20, int64(size>>16))
	if c.snapOpBytes*16 < size && since < stretch*c.cfg.SnapshotEvery {
		return
	}
	c.snapshotting = true
	c.snapOpBytes = 0
	c.out.Snapshot = &storage.Snapshot{Rev: c.durableRev, Content: c.durable.Content()}
}

func (c *core) snapshotSaved(ev evSnapshotSaved) {
	c.snapshotting = false
	if ev.Err != nil {
		c.out.Errs = append(c.out.Errs, fmt.Errorf("snapshot at %d: %w", ev.Rev, ev.Err))
		return
	}
	c.lastSnap = max(c.lastSnap, ev.Rev)
	c.maybeSnapshot() // one may have come due while this one was saved
}

func (c *core) shutdown(ev evShutdown) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closeCode, c.closeReason, c.closeSnapshot = ev.Code, ev.Reason, ev.Snapshot
	// Waiting joins and messages are refused now, not after the commit.
	c.drain()
}

// finishIfClosing ends a closing document once nothing is pending: every
// connection is closed with the shutdown's code (after the acks and ops
// already queued for it) and a final snapshot is saved.
func (c *core) finishIfClosing() {
	if c.state != stateClosing || c.committing || c.headRev != c.durableRev {
		return
	}
	for _, cl := range c.clients {
		if cl.left {
			continue
		}
		if cl.joined {
			c.out.Closes = append(c.out.Closes, closing{Client: cl.id, Code: c.closeCode, Reason: c.closeReason})
		} else {
			c.out.Joined = append(c.out.Joined, joinOutcome{Client: cl.id, Err: protoErr(CodeInternal, "document %s is closing; retry", c.id)})
		}
	}
	c.clients, c.byID = nil, map[string]*client{}
	if c.closeSnapshot && c.durableRev != c.lastSnap {
		c.out.Snapshot = &storage.Snapshot{Rev: c.durableRev, Content: c.durable.Content()}
	}
	c.state = stateDone
	c.out.Done = true
}
