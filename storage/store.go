package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
)

// Errors returned by stores, wrapped with the document (and revision) they
// concern; test for them with errors.Is.
var (
	// ErrNotFound: no such document, or no snapshot at or before a revision.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists: CreateDocument with an id already in use.
	ErrExists = errors.New("storage: document already exists")
	// ErrConflict: an append whose expected head is not the document's head.
	ErrConflict = errors.New("storage: revision conflict")
	// ErrCompacted: records asked for are older than the document retains.
	ErrCompacted = errors.New("storage: revisions compacted")
	// ErrInvalid: a malformed argument (bad id, revisions out of order).
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrCorrupt: stored data that cannot be decoded or does not add up.
	ErrCorrupt = errors.New("storage: corrupt data")
	// ErrClosed: a call on a closed store.
	ErrClosed = errors.New("storage: store is closed")
	// ErrNoSpace: a write refused because the disk is (nearly) full; nothing
	// was written. Retry when there is room (see package spaceguard).
	ErrNoSpace = errors.New("storage: not enough free disk space")
)

// MaxIDLen bounds document ids, which are also parts of keys.
const MaxIDLen = 128

// MaxSourceLen bounds a record's Source (client source ids are UUIDs, 36
// bytes). A longer one makes its append fail with ErrInvalid.
const MaxSourceLen = 255

// CheckID reports whether id can name a document: 1 to MaxIDLen bytes of
// letters, digits, '-', '_' and '.'.
func CheckID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: document id must be 1 to %d bytes, got %d", ErrInvalid, MaxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: document id %q has a character other than letters, digits, '-', '_', '.'", ErrInvalid, id)
		}
	}
	return nil
}

// Document is a document's metadata. Revision 0 is the document as created;
// each committed record adds one revision.
type Document struct {
	ID      string
	Title   string
	Created time.Time
	// Updated is the commit time of the head record (Created at revision 0).
	Updated time.Time
	// Head is the revision of the newest record: the number of records ever
	// committed to the document.
	Head int64
	// Oldest is the revision the retained history starts from: records
	// Oldest+1..Head are kept. 0 unless the log was compacted.
	Oldest int64
	// Type is the document's type (doctype.PlainName or RichName), fixed
	// at creation; "" (documents stored before types existed) is plain.
	Type string
}

// DocType returns the document's type.
func (d Document) DocType() doctype.Type { return doctype.MustLookup(d.Type) }

// Record is one committed operation: the op that took the document from
// revision Rev-1 to Rev.
type Record struct {
	Rev int64
	Op  doctype.Op // of the document's type
	// Source identifies the submitting client across reconnects; Seq numbers
	// its ops. Together they make a submission idempotent (see
	// Store.LookupSubmission). An empty Source opts out; a Source is at most
	// MaxSourceLen bytes.
	Source string
	Seq    uint64
	User   string
	Time   time.Time
}

// Snapshot is a whole document at a revision.
type Snapshot struct {
	Rev int64
	// Content is the document in its type's form (doctype.Document's
	// Content): the text of a plain document, the Delta JSON of a rich one.
	Content string
}

// Append asks for records to be added to one document on top of revision
// Head. Records[i].Rev must be Head+1+i.
type Append struct {
	DocID   string
	Head    int64
	Records []Record
	// Snapshot, if not nil, is saved in the same durable write; its Rev is at
	// most the new head.
	Snapshot *Snapshot
}

// ListOptions pages through documents in id order.
type ListOptions struct {
	// After is the id to continue after (the previous page's next token);
	// "" starts at the beginning.
	After string
	// Limit is the most documents returned; <= 0 means 100.
	Limit int
}

// Store persists Tandem's documents: metadata, the op log at dense
// revisions, snapshots, and the exactly-once index.
//
// Implementations are safe for concurrent use. Every method that writes
// returns only once what it wrote is durable (on disk, fsynced), so a caller
// may acknowledge it to a client. Errors wrap the sentinels above and name
// the document and revision concerned; corrupt data is an error, never a
// panic. After Close, methods return ErrClosed.
type Store interface {
	// CreateDocument stores doc at revision 0 with its initial content (in
	// the form of doc's type: see Snapshot.Content). doc.Head and
	// doc.Oldest are ignored; doc.Type must be a known type (ErrInvalid).
	// ErrExists if the id is taken.
	CreateDocument(ctx context.Context, doc Document, content string) error
	// Document returns a document's metadata. ErrNotFound if there is none.
	Document(ctx context.Context, id string) (Document, error)
	// ListDocuments returns a page of documents in id order and the token
	// for the next page ("" after the last).
	ListDocuments(ctx context.Context, opts ListOptions) (docs []Document, next string, err error)
	// DeleteDocument removes a document with its history, snapshots and
	// exactly-once entries. ErrNotFound if there is none.
	DeleteDocument(ctx context.Context, id string) error
	// SetTitle changes a document's title (durably, like every write);
	// nothing else of it changes. ErrNotFound if there is none.
	SetTitle(ctx context.Context, id, title string) error

	// Commit writes appends, possibly to many documents, in one durable
	// write: the group commit. Each append is a compare-and-swap on its
	// document's head: results[i] is nil when appends[i] was committed, or an
	// error wrapping ErrConflict (the head moved), ErrNotFound or ErrInvalid,
	// in which case nothing of that append was written, or the I/O error
	// that kept it from being written where other appends of the call were.
	// A non-nil err means nothing was committed at all. No two records ever
	// share a revision and revisions never have gaps.
	Commit(ctx context.Context, appends []Append) (results []error, err error)

	// Records returns the records with from < Rev <= to, in order. It fails
	// with ErrCompacted if from is older than the document retains, and
	// ErrInvalid if to is past the head or from > to.
	Records(ctx context.Context, id string, from, to int64) ([]Record, error)

	// Snapshot returns the newest snapshot with Rev <= rev.
	Snapshot(ctx context.Context, id string, rev int64) (Snapshot, error)
	// SaveSnapshot stores a snapshot at a committed revision.
	SaveSnapshot(ctx context.Context, id string, snap Snapshot) error

	// LookupSubmission returns the revision at which the op submitted as
	// (source, seq) was committed to the document, and false if it was not.
	// Entries outlive compaction and restarts.
	LookupSubmission(ctx context.Context, id, source string, seq uint64) (rev int64, found bool, err error)

	// Compact drops records with Rev <= before, after making sure a snapshot
	// at before exists, so that loading and history at retained revisions
	// keep working. Exactly-once entries are kept.
	Compact(ctx context.Context, id string, before int64) error

	// Close releases the store. It does not cancel calls in flight.
	Close() error
}
