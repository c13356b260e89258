package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdocs/tandem/ot/doctype"
)

// Load reads a document's head state: its metadata and the document as its
// type holds it, built from the newest snapshot plus the records after it,
// never the whole history.
func Load(ctx context.Context, s Store, id string) (Document, doctype.Document, error) {
	doc, err := s.Document(ctx, id)
	if err != nil {
		return Document{}, nil, err
	}
	d, err := DocumentAt(ctx, s, doc, doc.Head)
	if err != nil {
		return Document{}, nil, err
	}
	return doc, d, nil
}

// ContentAt returns a document's content at revision rev (its text, or
// its Delta JSON: see Snapshot.Content): the nearest snapshot at or before
// rev plus the records after it. It fails with ErrCompacted for a
// revision older than the document retains and ErrInvalid past the head.
func ContentAt(ctx context.Context, s Store, id string, rev int64) (string, error) {
	doc, err := s.Document(ctx, id)
	if err != nil {
		return "", err
	}
	d, err := DocumentAt(ctx, s, doc, rev)
	if err != nil {
		return "", err
	}
	return d.Content(), nil
}

// DocumentAt builds doc at revision rev.
func DocumentAt(ctx context.Context, s Store, doc Document, rev int64) (doctype.Document, error) {
	switch {
	case rev < 0 || rev > doc.Head:
		return nil, fmt.Errorf("%w: document %s: revision %d outside 0..%d", ErrInvalid, doc.ID, rev, doc.Head)
	case rev < doc.Oldest:
		return nil, fmt.Errorf("%w: document %s: revision %d is older than the retained history (from %d)", ErrCompacted, doc.ID, rev, doc.Oldest)
	}
	snap, err := s.Snapshot(ctx, doc.ID, rev)
	if err != nil {
		return nil, fmt.Errorf("document %s: snapshot at or before %d: %w", doc.ID, rev, err)
	}
	rope, err := doc.DocType().NewDocument(snap.Content)
	if err != nil {
		return nil, fmt.Errorf("%w: document %s: snapshot at revision %d: %v", ErrCorrupt, doc.ID, snap.Rev, err)
	}
	if snap.Rev == rev {
		return rope, nil
	}
	recs, err := s.Records(ctx, doc.ID, snap.Rev, rev)
	if err != nil {
		return nil, err
	}
	for i, r := range recs {
		want := snap.Rev + 1 + int64(i)
		if r.Rev != want {
			return nil, fmt.Errorf("%w: document %s: expected revision %d, found %d", ErrCorrupt, doc.ID, want, r.Rev)
		}
		if err := rope.Apply(r.Op); err != nil {
			return nil, fmt.Errorf("%w: document %s: revision %d does not apply: %v", ErrCorrupt, doc.ID, r.Rev, err)
		}
	}
	if len(recs) != int(rev-snap.Rev) {
		return nil, fmt.Errorf("%w: document %s: %d records after snapshot %d, want %d", ErrCorrupt, doc.ID, len(recs), snap.Rev, rev-snap.Rev)
	}
	return rope, nil
}

// IsRetryable reports whether err is a conflict the caller can resolve by
// reloading the head and trying again.
func IsRetryable(err error) bool { return errors.Is(err, ErrConflict) }
