// Package feed is Tandem's change feed as integrators see it: the store's
// change log (storage.ChangeLog) with each commit's ops read from the
// document's history, as JSON events with a cursor. The HTTP endpoint
// (GET /api/changes), the webhooks and the library's change hooks all
// read it through a Reader.
//
// # Guarantees
//
// An event is in the feed only once what it records is durable, and every
// durable change is in it, across crashes: delivery is at least once, and
// the cursor makes it exactly once for a reader that remembers the last
// cursor it handled. Events of one document come in revision order.
// Cursors increase but may skip numbers.
//
// The feed is bounded by the operator's retention (tandem serve
// --changes-retain): a reader that asks for events after a cursor that
// was trimmed gets ErrTrimmed, and should read the documents it cares
// about whole before following the feed again from its newest cursor.
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/storage"
)

// Kinds of event: the storage.ChangeKind values.
const (
	KindCommit  = string(storage.ChangeCommit)
	KindCreate  = string(storage.ChangeCreate)
	KindDelete  = string(storage.ChangeDelete)
	KindRename  = string(storage.ChangeRename)
	KindRestore = string(storage.ChangeRestore)
)

// Event is one entry of the feed.
type Event struct {
	Cursor uint64 `json:"cursor"`
	// Kind is commit, create, delete, rename or restore.
	Kind string `json:"kind"`
	Doc  string `json:"doc"`
	// Rev is the document's revision after the event: a commit's last
	// op, a created or restored document's revision.
	Rev int64 `json:"rev,omitempty"`
	// Title: a create's, restore's or rename's title.
	Title string `json:"title,omitempty"`
	// Type: a created or restored document's type (plain or rich).
	Type string    `json:"type,omitempty"`
	Time time.Time `json:"time"`
	// Ops: a commit's ops, in revision order.
	Ops []Op `json:"ops,omitempty"`
	// OpsMissing: the commit's ops are no longer in the document's
	// history (compacted by retention, or the document was deleted since):
	// read the document instead.
	OpsMissing bool `json:"opsMissing,omitempty"`
}

// Op is one committed op.
type Op struct {
	Rev    int64     `json:"rev"`
	User   string    `json:"user,omitempty"`
	Source string    `json:"source,omitempty"`
	Time   time.Time `json:"time"`
	// Op is the op in its document type's JSON form (docs/protocol.md).
	Op json.RawMessage `json:"op"`
}

// ErrTrimmed: the events after the cursor asked for were trimmed by
// retention.
var ErrTrimmed = errors.New("feed: events after this cursor were trimmed by retention")

// Reader reads the feed of one store.
type Reader struct {
	store storage.Store
	log   storage.ChangeLog
}

// NewReader returns a reader of store's feed, or nil if the store keeps
// no change log.
func NewReader(store storage.Store) *Reader {
	log := storage.ChangeLogOf(store)
	if log == nil {
		return nil
	}
	return &Reader{store: store, log: log}
}

// Log is the change log under the feed.
func (r *Reader) Log() storage.ChangeLog { return r.log }

// Read returns up to limit events after cursor after, of the documents
// allow accepts (nil: all), and the cursor to continue from: past every
// change looked at, including those allow refused. It does not wait:
// none may come back (see Wait).
func (r *Reader) Read(ctx context.Context, after uint64, limit int, allow func(doc string) bool) (events []Event, next uint64, err error) {
	if limit <= 0 {
		limit = 100
	}
	next = after
	changes, err := r.log.Changes(ctx, after, limit)
	if errors.Is(err, storage.ErrCompacted) {
		return nil, after, fmt.Errorf("%w (%v)", ErrTrimmed, err)
	}
	if err != nil {
		return nil, after, fmt.Errorf("feed: %w", err)
	}
	for _, c := range changes {
		next = c.Cursor
		if allow != nil && !allow(c.DocID) {
			continue
		}
		e := Event{Cursor: c.Cursor, Kind: string(c.Kind), Doc: c.DocID, Title: c.Title, Type: c.Type, Time: c.Time}
		switch c.Kind {
		case storage.ChangeCommit:
			e.Rev = c.To
			if e.Ops, err = r.ops(ctx, c); err != nil {
				return events, next, err
			}
			e.OpsMissing = e.Ops == nil
		case storage.ChangeCreate, storage.ChangeRestore:
			e.Rev = c.To
			if e.Type == "" {
				e.Type = "plain"
			}
		}
		events = append(events, e)
	}
	return events, next, nil
}

// ops reads a commit's records; nil when they are gone.
func (r *Reader) ops(ctx context.Context, c storage.Change) ([]Op, error) {
	recs, err := r.store.Records(ctx, c.DocID, c.From, c.To)
	switch {
	case errors.Is(err, storage.ErrCompacted), errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("feed: change %d: %w", c.Cursor, err)
	}
	// A document deleted and created again under its id has other
	// records at these revisions: the commit's own end with its time.
	if int64(len(recs)) != c.To-c.From || !recs[len(recs)-1].Time.Equal(c.Time) {
		return nil, nil
	}
	ops := make([]Op, len(recs))
	for i, rec := range recs {
		ops[i] = Op{Rev: rec.Rev, User: rec.User, Source: rec.Source, Time: rec.Time, Op: rec.Op.AppendJSON(nil)}
	}
	return ops, nil
}

// Wait returns once there may be events after cursor after, or ctx ends.
func (r *Reader) Wait(ctx context.Context, after uint64) error { return r.log.Wait(ctx, after) }

// Last returns the newest cursor: a reader that starts from it sees only
// what comes next.
func (r *Reader) Last(ctx context.Context) (uint64, error) { return r.log.Last(ctx) }

// Follow calls fn with each event after cursor after, in order, waiting
// for new ones, until ctx ends or fn returns an error (which Follow
// returns). allow filters documents as in Read.
func (r *Reader) Follow(ctx context.Context, after uint64, allow func(doc string) bool, fn func(Event) error) error {
	for {
		events, next, err := r.Read(ctx, after, 100, allow)
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
		}
		if next == after {
			if err := r.Wait(ctx, after); err != nil {
				return err
			}
		}
		after = next
	}
}
