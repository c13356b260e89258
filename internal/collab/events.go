package collab

import (
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// An event is one input to a document's core. The driver turns everything
// that happens to an open document into events (a client joins, a frame
// arrives, a write or a read completes, another writer commits, a timer
// fires) and feeds them to the core one at a time; time comes in with the
// events that need it.
type event interface{ isEvent() }

// evJoin: a connection wants to join. The core answers with a hello (now,
// or once the history it needs has been read) and a joinOutcome.
type evJoin struct {
	Client string // connection id, unique within the Manager
	Info   ClientInfo
}

// evLeave: the connection is gone.
type evLeave struct{ Client string }

// evMessage: a parsed frame from a connection, in the order received.
type evMessage struct {
	Client string
	Msg    ClientMessage
	Now    time.Time
	// Paid: tokens the reading goroutine already took for the message's
	// work, from its estimate of the distance to the head.
	Paid int
}

// evOverflow: the connection's outbound queue overflowed (a slow reader):
// the core closes it for resync and tells the others it left.
type evOverflow struct{ Client string }

// evCommitted: the outcome of the in-flight append. Conflict means another
// writer moved the head first: nothing of the append was written.
type evCommitted struct {
	Err      error
	Conflict bool
}

// evRecords: the answer to a readRequest.
type evRecords struct {
	Forward bool
	From    int64
	Records []storage.Record
	Err     error
}

// evLookup: the answer to a lookupRequest.
type evLookup struct {
	Source string
	Seq    uint64
	Rev    int64
	Found  bool
	Err    error
}

// evRemote: records another writer committed (from a Broker), unprompted.
// They may overlap what the core knows, or leave a gap it must read.
type evRemote struct {
	Records []storage.Record
	From    []string // the nodes that committed them, when known
}

// evTitle: the document's title changed (durably): everyone in it hears.
type evTitle struct{ Title string }

// evSnapshotSaved: the snapshot asked for is durable (or failed).
type evSnapshotSaved struct {
	Rev int64
	Err error
}

// evWritable: whether the store may take writes (the free-space guard).
// A non-nil Err refuses submits with storage_full until it clears.
type evWritable struct{ Err error }

// evShutdown: stop taking ops; once what is pending is durable and
// delivered, close every connection with Code and finish. Snapshot asks for
// a final snapshot (not for a deleted document).
type evShutdown struct {
	Code     int
	Reason   string
	Snapshot bool
}

// evPresenceTick: the time asked for by ready.PresenceTick has passed: send the selections that waited for it.
type evPresenceTick struct{}

// evLingerTick: the commit linger asked for (ready.CommitLinger) is over.
type evLingerTick struct{}

// evTurnAsked: another writer (Node) lost a commit race for the document
// and asks for a turn.
type evTurnAsked struct{ Node string }

// evYieldOver: the turn held for another writer is over.
type evYieldOver struct{}

// evRemoteRestored: a client of another node restored revision Rev.
type evRemoteRestored struct {
	Client string
	Rev    int64
}

func (evRemoteRestored) isEvent() {}

func (evTurnAsked) isEvent() {}
func (evYieldOver) isEvent() {}

func (evLingerTick) isEvent() {}

func (evPresenceTick) isEvent()  {}
func (evJoin) isEvent()          {}
func (evLeave) isEvent()         {}
func (evOverflow) isEvent()      {}
func (evMessage) isEvent()       {}
func (evCommitted) isEvent()     {}
func (evRecords) isEvent()       {}
func (evLookup) isEvent()        {}
func (evRemote) isEvent()        {}
func (evSnapshotSaved) isEvent() {}
func (evWritable) isEvent()      {}
func (evShutdown) isEvent()      {}
func (evTitle) isEvent()         {}

// ready is what the core asks its driver to do after an event. The driver
// does it in this order: Append, Read, Lookups, Snapshot (all started, none
// awaited), Publish, Messages, Closes, Joined, then Done. Nothing in
// Messages concerns a record that is not durable: the core only speaks of
// records whose commit it has seen succeed.
type ready struct {
	// Append goes to the group committer; its outcome comes back as
	// evCommitted. The core has at most one outstanding.
	Append *storage.Append
	// Read asks for records; the answer comes back as evRecords. At most
	// one backward (history) and one forward (catch-up) read are
	// outstanding.
	Read []readRequest
	// Lookups ask the exactly-once index; answers come back as evLookup.
	Lookups []lookupRequest
	// Snapshot is saved outside the group commit; evSnapshotSaved follows.
	Snapshot *storage.Snapshot
	// Publish: records this core committed, for other writers (Broker).
	Publish []storage.Record
	// Messages to send, in order.
	Messages []outgoing
	// Closes to make after the messages.
	Closes []closing
	// Joined: joins that completed (hello sent) or were refused.
	Joined []joinOutcome
	// Done: the document is finished; the driver saves Snapshot (if any)
	// and exits.
	Done bool
	// Refused: the codes of the errors sent (for metrics).
	Refused []string
	// Charges bill connections for work done (see core.charge).
	Charges []charge
	// Errs are failures for the driver to log (the core has no logger).
	Errs []error
	// Distances: for each op accepted, the revisions it was transformed
	// through; FanOut: for each record broadcast, the connections it went
	// to (both for metrics; valid until the next step).
	Distances []int64
	FanOut    []int
	// PresenceTick asks for evPresenceTick after this long (0: not):
	// selections in a crowded document wait for it.
	PresenceTick time.Duration
	// CommitLinger asks for evLingerTick after this long (0: not): the
	// next append waits for it or for the ops it expects.
	CommitLinger time.Duration
	// Presence, if set, goes to the other nodes (PresenceBroker).
	Presence *PresenceUpdate
	// Signals go to the other writers (Broker.Signal): a turn asked for,
	// a restore relayed.
	Signals []Signal
	// YieldTick asks for evYieldOver after this long (0: not): the end
	// of a turn held for another writer.
	YieldTick time.Duration
}

type charge struct {
	Client string
	Tokens int
	At     time.Time
}

// readRequest asks for the records with From < Rev <= To; To < 0 means up
// to the document's head in the store (a forward read after a conflict or
// a remote commit).
type readRequest struct {
	Forward  bool
	From, To int64
}

type lookupRequest struct {
	Source string
	Seq    uint64
}

type outgoing struct {
	To  string // connection id
	Msg []byte
}

type closing struct {
	Client string
	Code   int
	Reason string
}

type joinOutcome struct {
	Client string
	Err    *Error // nil: joined, hello sent
}

// committed is a record as the core keeps it: with the connection that
// submitted it ("" for records read from the store or from other writers)
// and the document's length after it, for checking the span of ops based on
// that revision.
type committed struct {
	storage.Record
	Client string
	Len    int
	// Orig and Base are the op as its client submitted it and the revision
	// it was based on, kept while the record is not durable: if another
	// writer commits first, the core submits it again on top of their
	// records.
	Orig doctype.Op
	Base int64
	Span int
}

// opBytes estimates the size of an op: its text and a few bytes per
// component.
func opBytes(op doctype.Op) int { return 8*op.Parts() + op.InsertedBytes() }

// lenDelta is how much op changes a document's length in code points.
func lenDelta(op doctype.Op) int { return op.LenChange() }
