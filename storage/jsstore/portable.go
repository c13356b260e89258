package jsstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// importWindow bounds the exactly-once entries an import has in flight.
const importWindow = 256

// ImportDocument implements storage.Portable. The snapshot and the
// exactly-once entries are written first, under a new generation; the
// document appears with its metadata, last. Until its first commit it has
// no message on the log, and its metadata says its head (Oldest) and that
// revision's time (Base).
func (s *Store) ImportDocument(ctx context.Context, doc storage.Document, text string, subs []storage.Submission) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := storage.CheckImport(doc, subs); err != nil {
		return err
	}
	if err := storage.CheckCreate(doc, text); err != nil {
		return err
	}
	if _, _, err := s.getMeta(ctx, doc.ID); err == nil {
		return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	m := meta{ID: doc.ID, Title: doc.Title, Created: doc.Created.UTC().Round(0), Gen: newGen(),
		Oldest: doc.Oldest, Indexed: doc.Oldest, Base: doc.Updated.UTC().Round(0), Type: doc.Type}
	sv, _ := json.Marshal(snapValue{Text: text, From: 1})
	if err := untilAnswered(ctx, func() error { _, err := s.snaps.Put(ctx, snapKey(doc.ID, m.Gen, m.Oldest), sv); return err }); err != nil {
		return fmt.Errorf("document %s: snapshot: %w", doc.ID, wrap(err))
	}
	// The entries go as asynchronous publishes to the bucket's subjects,
	// a window at a time: one request each would take minutes for a long
	// history.
	for len(subs) > 0 {
		n := min(len(subs), importWindow)
		acks := make([]jetstream.PubAckFuture, 0, n)
		for _, sub := range subs[:n] {
			f, err := s.js.PublishAsync(s.subsKV+subKey(doc.ID, m.Gen, sub.Source, sub.Seq), []byte(strconv.FormatInt(sub.Rev, 10)))
			if err != nil {
				return fmt.Errorf("document %s: import the exactly-once index: %w", doc.ID, wrap(err))
			}
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("document %s: import the exactly-once index: %w", doc.ID, wrap(err))
			case <-ctx.Done():
				return fmt.Errorf("document %s: import the exactly-once index: %w", doc.ID, ctx.Err())
			}
		}
		subs = subs[n:]
	}
	b, _ := json.Marshal(m)
	if err := untilAnswered(ctx, func() error { _, err := s.docs.Create(ctx, key(doc.ID), b); return err }); err != nil {
		purgePrefix(ctx, s.snaps, scope(doc.ID, m.Gen))
		purgePrefix(ctx, s.subs, scope(doc.ID, m.Gen))
		if wrongLast(err) {
			return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
		}
		return fmt.Errorf("document %s: %w", doc.ID, wrap(err))
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeRestore, Doc: doc.ID, Rev: doc.Oldest, Title: doc.Title, Type: doc.Type, Time: time.Now()})
}

// Submissions implements storage.Portable. It first indexes what the index
// is behind on, then reads the document's entries in one pass (a watch of
// the bucket's keys under the document).
func (s *Store) Submissions(ctx context.Context, id string, upTo int64) ([]storage.Submission, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return nil, err
	}
	if upTo < 1 {
		return nil, nil // no entry is at a revision before 1; a copy of an uncompacted document asks for these
	}
	if err := s.catchUpIndex(ctx, id, d, m); err != nil {
		return nil, err
	}
	prefix := scope(id, m.Gen)
	w, err := s.subs.WatchFiltered(ctx, []string{prefix + ">"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("document %s: exactly-once index: %w", id, wrap(err))
	}
	defer w.Stop()
	var out []storage.Submission
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, fmt.Errorf("document %s: exactly-once index: %w", id, ctx.Err())
		}
		if e == nil {
			return out, nil // the end of what was stored when the watch began
		}
		src, seq, ok := strings.Cut(strings.TrimPrefix(e.Key(), prefix), ".")
		source, herr := hex.DecodeString(src)
		n, serr := strconv.ParseUint(seq, 10, 64)
		rev, rerr := strconv.ParseInt(string(e.Value()), 10, 64)
		if !ok || herr != nil || serr != nil || rerr != nil {
			return nil, fmt.Errorf("%w: document %s: exactly-once entry %s", storage.ErrCorrupt, id, e.Key())
		}
		if rev <= upTo {
			out = append(out, storage.Submission{Source: string(source), Seq: n, Rev: rev})
		}
	}
}
