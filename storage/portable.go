package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Submission is one entry of the exactly-once index: the op submitted as
// (Source, Seq) was committed at revision Rev.
type Submission struct {
	Source string
	Seq    uint64
	Rev    int64
}

// Portable is a Store whose documents can be copied whole into another
// store, of the same kind or not: how a single node's backup is loaded
// into a cluster and a cluster's taken in a single node's format (see
// Copy). The copy keeps everything a client or a reader can observe:
// metadata, every retained revision with its author, source and time, the
// text at every retained revision, and the exactly-once index, including
// the entries of compacted revisions.
type Portable interface {
	Store
	// Submissions returns a document's exactly-once entries with
	// Rev <= upTo, in no particular order. ErrNotFound if there is no
	// such document.
	Submissions(ctx context.Context, id string, upTo int64) ([]Submission, error)
	// ImportDocument creates a document where a copy starts it: at
	// revision doc.Oldest, which is its head, with text as the text there
	// (the document's retained history starts from it), doc.Updated as
	// the time of that revision, and subs (each Rev <= doc.Oldest) in its
	// exactly-once index. doc.Head is ignored. The records after
	// doc.Oldest are then added with Commit. ErrExists if the id is
	// taken.
	ImportDocument(ctx context.Context, doc Document, text string, subs []Submission) error
}

// CheckImport checks ImportDocument's arguments the same way for every
// store.
func CheckImport(doc Document, subs []Submission) error {
	if err := CheckID(doc.ID); err != nil {
		return err
	}
	if doc.Oldest < 0 {
		return fmt.Errorf("%w: document %s: import at negative revision %d", ErrInvalid, doc.ID, doc.Oldest)
	}
	for _, s := range subs {
		if s.Source == "" || len(s.Source) > MaxSourceLen || s.Rev < 1 || s.Rev > doc.Oldest {
			return fmt.Errorf("%w: document %s: exactly-once entry %q/%d at revision %d (the import is at %d)",
				ErrInvalid, doc.ID, s.Source, s.Seq, s.Rev, doc.Oldest)
		}
	}
	return nil
}

// copyBatchBytes bounds the records of one append a copy makes (a NATS
// message is 1 MiB by default), and copySnapshotEvery how many revisions
// apart it leaves snapshots, so that opening the copy never replays much.
const (
	copyBatchBytes    = 256 << 10
	copySnapshotEvery = 1000
)

// CopyResult says what Copy copied.
type CopyResult struct {
	Doc         Document
	Records     int
	Submissions int
}

// Copy copies document id from src into dst, where it must not exist, as
// of src's head when the copy starts: metadata, the retained history, the
// exactly-once index, and snapshots (every copySnapshotEvery revisions
// and at the head). It checks what it copies: the records are dense and
// every op applies to the text before it, or the copy fails with
// ErrCorrupt naming the revision. A copy that fails removes what it wrote
// of the document from dst, so it can be tried again.
func Copy(ctx context.Context, dst, src Portable, id string) (res CopyResult, err error) {
	doc, err := src.Document(ctx, id)
	if err != nil {
		return res, fmt.Errorf("copy %s: %w", id, err)
	}
	res.Doc = doc
	base, err := src.Snapshot(ctx, id, doc.Oldest)
	if err != nil {
		return res, fmt.Errorf("copy %s: the text at revision %d: %w", id, doc.Oldest, err)
	}
	if base.Rev != doc.Oldest {
		return res, fmt.Errorf("%w: document %s: no snapshot at its oldest revision %d (the newest before it is %d)", ErrCorrupt, id, doc.Oldest, base.Rev)
	}
	rope, err := doc.DocType().NewDocument(base.Content)
	if err != nil {
		return res, fmt.Errorf("%w: document %s: snapshot at revision %d: %v", ErrCorrupt, id, base.Rev, err)
	}
	subs, err := src.Submissions(ctx, id, doc.Oldest)
	if err != nil {
		return res, fmt.Errorf("copy %s: exactly-once index: %w", id, err)
	}
	res.Submissions = len(subs)
	start := doc
	if doc.Head > doc.Oldest {
		start.Updated = doc.Created // the base revision's own time is not kept once compacted; a commit replaces it
	}
	if err := dst.ImportDocument(ctx, start, base.Content, subs); err != nil {
		return res, fmt.Errorf("copy %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			// Best effort: what is left is reported by the error.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if derr := dst.DeleteDocument(cctx, id); derr != nil && !errors.Is(derr, ErrNotFound) {
				err = fmt.Errorf("%w (and removing the partial copy failed: %v)", err, derr)
			}
		}
	}()
	const page = 1000
	at, snapAt := doc.Oldest, doc.Oldest
	var batch []Record
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		head := batch[len(batch)-1].Rev
		a := Append{DocID: id, Head: at, Records: batch}
		if head-snapAt >= copySnapshotEvery || head == doc.Head {
			a.Snapshot = &Snapshot{Rev: head, Content: rope.Content()}
			snapAt = head
		}
		results, err := dst.Commit(ctx, []Append{a})
		if err == nil {
			err = results[0]
		}
		if err != nil {
			return fmt.Errorf("copy %s: revisions %d..%d: %w", id, at+1, head, err)
		}
		res.Records += len(batch)
		at, batch, batchBytes = head, nil, 0
		return nil
	}
	for from := doc.Oldest; from < doc.Head; {
		to := min(from+page, doc.Head)
		recs, err := src.Records(ctx, id, from, to)
		if err != nil {
			return res, fmt.Errorf("copy %s: %w", id, err)
		}
		for i, r := range recs {
			if want := from + 1 + int64(i); r.Rev != want {
				return res, fmt.Errorf("%w: document %s: revision %d where %d belongs", ErrCorrupt, id, r.Rev, want)
			}
			// Flushed before r applies, the rope is the text at the
			// batch's end: the snapshot a flush may take.
			size := recordSize(r)
			if len(batch) > 0 && batchBytes+size > copyBatchBytes {
				if err := flush(); err != nil {
					return res, err
				}
			}
			if err := rope.Apply(r.Op); err != nil {
				return res, fmt.Errorf("%w: document %s: revision %d does not apply: %v", ErrCorrupt, id, r.Rev, err)
			}
			batch = append(batch, r)
			batchBytes += size
		}
		if int64(len(recs)) != to-from {
			return res, fmt.Errorf("%w: document %s: %d records for revisions %d..%d", ErrCorrupt, id, len(recs), from+1, to)
		}
		if err := flush(); err != nil {
			return res, err
		}
		from = to
	}
	got, err := dst.Document(ctx, id)
	if err != nil {
		return res, fmt.Errorf("copy %s: %w", id, err)
	}
	if got.Head != doc.Head || got.Oldest != doc.Oldest {
		return res, fmt.Errorf("copy %s: the copy has revisions %d..%d, the source %d..%d", id, got.Oldest, got.Head, doc.Oldest, doc.Head)
	}
	return res, nil
}

// recordSize estimates a record's encoded size.
func recordSize(r Record) int {
	return 96 + len(r.Source) + len(r.User) + 12*r.Op.Parts() + r.Op.InsertedBytes()
}

// CopyAll copies every document of src into dst. each is told of each
// document copied or failed; a document deleted from src meanwhile is
// skipped. It stops at the first error each returns.
func CopyAll(ctx context.Context, dst, src Portable, each func(id string, res CopyResult, err error) error) error {
	return EachDocument(ctx, src, func(d Document) error {
		res, err := Copy(ctx, dst, src, d.ID)
		if errors.Is(err, ErrCompacted) {
			// Retention compacted it while it was read: again, from its new
			// oldest revision.
			res, err = Copy(ctx, dst, src, d.ID)
		}
		if errors.Is(err, ErrNotFound) {
			if _, derr := src.Document(ctx, d.ID); errors.Is(derr, ErrNotFound) {
				return nil // deleted since the listing
			}
		}
		return each(d.ID, res, err)
	})
}
