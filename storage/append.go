package storage

import (
	"fmt"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot/doctype"
)

// CheckAppend checks what can be checked of an append without its
// document: records numbered from Head+1, sources no longer than
// MaxSourceLen, well-formed ops, and a snapshot within the new head and in
// valid UTF-8. Stores call it first; the error wraps ErrInvalid.
func CheckAppend(a Append) error {
	if err := CheckID(a.DocID); err != nil {
		return err
	}
	if len(a.Records) == 0 {
		return fmt.Errorf("%w: document %s: append at head %d has no records", ErrInvalid, a.DocID, a.Head)
	}
	if a.Head < 0 {
		return fmt.Errorf("%w: document %s: append at negative head %d", ErrInvalid, a.DocID, a.Head)
	}
	for i, r := range a.Records {
		if want := a.Head + 1 + int64(i); r.Rev != want {
			return fmt.Errorf("%w: document %s: record %d of an append at head %d has revision %d, want %d", ErrInvalid, a.DocID, i, a.Head, r.Rev, want)
		}
		if len(r.Source) > MaxSourceLen {
			return fmt.Errorf("%w: document %s: revision %d: source longer than %d bytes", ErrInvalid, a.DocID, r.Rev, MaxSourceLen)
		}
		if err := r.Op.Check(); err != nil {
			return fmt.Errorf("%w: document %s: revision %d: %v", ErrInvalid, a.DocID, r.Rev, err)
		}
	}
	if snap := a.Snapshot; snap != nil {
		newHead := a.Head + int64(len(a.Records))
		if snap.Rev < 0 || snap.Rev > newHead {
			return fmt.Errorf("%w: document %s: snapshot at revision %d outside 0..%d", ErrInvalid, a.DocID, snap.Rev, newHead)
		}
		if !utf8.ValidString(snap.Content) {
			return fmt.Errorf("%w: document %s: snapshot at revision %d is not valid UTF-8", ErrInvalid, a.DocID, snap.Rev)
		}
	}
	return nil
}

// The checks of a request against a document's revisions that every store
// makes the same way, with the same errors.

// CheckRecordsRange checks a Records(from, to) request on its own (before
// the document is read).
func CheckRecordsRange(id string, from, to int64) error {
	if from < 0 || from > to {
		return fmt.Errorf("%w: document %s: records from %d to %d", ErrInvalid, id, from, to)
	}
	return nil
}

// CheckRecords checks a Records(from, to) request against doc: to at most
// its head, from not older than it retains.
func CheckRecords(doc Document, from, to int64) error {
	switch {
	case to > doc.Head:
		return fmt.Errorf("%w: document %s: records to %d, past the head %d", ErrInvalid, doc.ID, to, doc.Head)
	case from < doc.Oldest:
		return fmt.Errorf("%w: document %s: records from %d, older than the retained history (from %d)", ErrCompacted, doc.ID, from, doc.Oldest)
	}
	return nil
}

// CheckSnapshotRev checks a SaveSnapshot at rev against doc.
func CheckSnapshotRev(doc Document, rev int64) error {
	switch {
	case rev < 0 || rev > doc.Head:
		return fmt.Errorf("%w: document %s: snapshot at revision %d outside 0..%d", ErrInvalid, doc.ID, rev, doc.Head)
	case rev < doc.Oldest:
		return fmt.Errorf("%w: document %s: snapshot at revision %d is older than the retained history (from %d)", ErrCompacted, doc.ID, rev, doc.Oldest)
	}
	return nil
}

// CheckCompact checks a Compact(before) against doc.
func CheckCompact(doc Document, before int64) error {
	if before < 0 || before > doc.Head {
		return fmt.Errorf("%w: document %s: compact before %d, outside 0..%d", ErrInvalid, doc.ID, before, doc.Head)
	}
	return nil
}

// CheckCreate checks a document about to be created with content: its id,
// its type, and that content is a document of that type. Stores call it
// in CreateDocument and ImportDocument; the error wraps ErrInvalid.
func CheckCreate(doc Document, content string) error {
	if err := CheckID(doc.ID); err != nil {
		return err
	}
	t, err := doctype.Lookup(doc.Type)
	if err != nil {
		return fmt.Errorf("%w: document %s: %v", ErrInvalid, doc.ID, err)
	}
	if _, err := t.NewDocument(content); err != nil {
		return fmt.Errorf("%w: document %s: its content is not a %s document: %v", ErrInvalid, doc.ID, t.Name(), err)
	}
	return nil
}
