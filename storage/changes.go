package storage

import (
	"context"
	"fmt"
	"time"
)

// ChangeKind says what a Change records.
type ChangeKind string

// The kinds of change. A restore of an earlier version of a document is
// an ordinary commit (the history view submits the op that goes back).
const (
	ChangeCommit ChangeKind = "commit" // records From+1..To were committed
	ChangeCreate ChangeKind = "create" // the document was created (at revision To)
	ChangeDelete ChangeKind = "delete" // the document and its history were deleted
	ChangeRename ChangeKind = "rename" // its title changed to Title
	// ChangeRestore: the document was imported whole at revision To (a
	// restore from a backup, or a copy from another store).
	ChangeRestore ChangeKind = "restore"
)

// Change is one entry of a store's change log: something that happened to
// a document, written in the same durable write as the thing itself.
type Change struct {
	// Cursor orders the log: every change has a larger cursor than the
	// ones readable before it. Cursors may skip numbers (a write that
	// failed, or a crash, leaves a gap); they are never reused.
	Cursor uint64
	Kind   ChangeKind
	DocID  string
	// From and To: a commit added the records with From < Rev <= To
	// (read them with Store.Records); a create is the document at
	// revision To, a restore at revision To.
	From, To int64
	// Title: the title a create or a rename gave.
	Title string
	// Type: the document's type, on a create.
	Type string
	Time time.Time
}

// ChangeLog is a store's server-wide log of changes, in the order they
// became durable: what a change feed, webhooks and the library's commit
// hooks read. A change is readable only once everything before it is:
// a reader that remembers the last cursor it handled and asks for what
// comes after it misses nothing and sees nothing twice, across restarts
// of the reader and of the store. After a crash, a change is in the log if
// and only if what it records is in the store.
//
// The log is bounded by Trim (the operator's retention): asking for
// changes after a cursor older than what was trimmed fails with
// ErrCompacted, so a reader knows it missed some and can resynchronize
// (read the documents whole).
type ChangeLog interface {
	// Changes returns up to limit changes (<= 0: 100) with Cursor > after,
	// oldest first; none if there are none yet.
	Changes(ctx context.Context, after uint64, limit int) ([]Change, error)
	// Wait returns nil once a change with Cursor > after is readable, or
	// ctx's error when it ends first.
	Wait(ctx context.Context, after uint64) error
	// Last returns the cursor of the newest readable change (0: none).
	Last(ctx context.Context) (uint64, error)
	// Trim drops the changes made before the given time. It returns the
	// cursor of the oldest change kept (past the newest if none is).
	Trim(ctx context.Context, before time.Time) (kept uint64, err error)
	// Position returns the cursor a named reader saved (false if none).
	Position(ctx context.Context, reader string) (cursor uint64, found bool, err error)
	// SetPosition durably saves a named reader's cursor (webhook
	// endpoints keep theirs here, so a restart resumes where they were).
	SetPosition(ctx context.Context, reader string, cursor uint64) error
}

// HistoryBound is a ChangeLog that is the documents' history itself (the
// cluster's: its commits are the op log's messages): it is bounded by the
// documents' retention and deletions, and its Trim does nothing.
type HistoryBound interface {
	BoundByHistory() bool
}

// ChangeLogger is a Store that keeps a ChangeLog.
type ChangeLogger interface {
	ChangeLog() ChangeLog
}

// ChangeLogOf returns s's change log, or nil when it keeps none.
func ChangeLogOf(s Store) ChangeLog {
	if l, ok := s.(ChangeLogger); ok {
		return l.ChangeLog()
	}
	return nil
}

// MaxReaderLen bounds a ChangeLog reader's name.
const MaxReaderLen = 200

// CheckReader reports whether name can name a change log reader.
func CheckReader(name string) error {
	if name == "" || len(name) > MaxReaderLen {
		return fmt.Errorf("%w: reader name must be 1 to %d bytes", ErrInvalid, MaxReaderLen)
	}
	return nil
}
