package collab

import "time"

// Observer is told what the documents do, for metrics. Its methods are
// called from the documents' goroutines and the committer: they must be
// fast and safe for concurrent use. A nil Observer in Config observes
// nothing.
type Observer interface {
	// Committed: one durable write of the group commit, with the appends
	// and records it carried, and how long the store took.
	Committed(appends, records int, took time.Duration)
	// Refused: a client's message refused with an error code.
	Refused(code string)
	// Overflowed: a connection closed because it read too slowly.
	Overflowed()
	// SnapshotSaved: a snapshot of size bytes written, in took.
	SnapshotSaved(bytes int, took time.Duration)
	// Accepted: an op accepted after being transformed through distance
	// concurrent revisions.
	Accepted(distance int64)
	// Broadcast: a committed op sent to recipients connections (acks
	// included).
	Broadcast(recipients int)
	// Retried: a document's commit lost to another writer (a cluster)
	// and, after reading what it missed and transforming, was committed
	// took after the first loss.
	Retried(took time.Duration)
}

type nopObserver struct{}

func (nopObserver) Committed(int, int, time.Duration) {}
func (nopObserver) Refused(string)                    {}
func (nopObserver) Overflowed()                       {}
func (nopObserver) SnapshotSaved(int, time.Duration)  {}
func (nopObserver) Accepted(int64)                    {}
func (nopObserver) Broadcast(int)                     {}
func (nopObserver) Retried(time.Duration)             {}
