package collab

import (
	"fmt"
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
