package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// Appends (the compare-and-swap publish on the document's subject) and the
// exactly-once index that follows them (SUBS).

type indexJob struct {
	id, gen string
	recs    []record
}

// Commit implements storage.Store. Each append is its own publish (a
// compare-and-swap on its document's log); they are made in order, so two
// appends to one document in one call both succeed when the second builds
// on the first.
func (s *Store) Commit(ctx context.Context, appends []storage.Append) ([]error, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	results := make([]error, len(appends))
	committed := 0
	for i, a := range appends {
		results[i] = s.append(ctx, a)
		if results[i] == nil {
			committed++
		}
		if errors.Is(results[i], storage.ErrClosed) && committed == 0 {
			return nil, results[i]
		}
	}
	return results, nil
}

func (s *Store) append(ctx context.Context, a storage.Append) error {
	if err := storage.CheckAppend(a); err != nil {
		return err
	}
	var gen string
	var seq uint64
	if t, ok := s.cachedTail(a.DocID); ok && t.head == a.Head && a.Snapshot == nil {
		// At the head this node last saw: publish at once; if another
		// writer moved it, the publish is refused (a conflict).
		gen, seq = t.gen, t.seq
	} else {
		d, m, tailSeq, err := s.document(ctx, a.DocID)
		if err != nil {
			return err
		}
		if a.Head != d.Head {
			return fmt.Errorf("%w: document %s: append expects head %d, the head is %d", storage.ErrConflict, a.DocID, a.Head, d.Head)
		}
		if a.Snapshot != nil && a.Snapshot.Rev < d.Oldest {
			return fmt.Errorf("%w: document %s: snapshot at revision %d is older than the retained history (from %d)", storage.ErrInvalid, a.DocID, a.Snapshot.Rev, d.Oldest)
		}
		gen, seq = m.Gen, tailSeq
	}
	e := entry{Records: make([]record, len(a.Records))}
	for i, r := range a.Records {
		e.Records[i] = record{Rev: r.Rev, Op: r.Op.AppendJSON(nil), Source: r.Source, Seq: r.Seq, User: r.User, Time: r.Time.UTC().Round(0)}
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: document %s: %v", storage.ErrInvalid, a.DocID, err)
	}
	subject := s.logSubject(a.DocID, gen)
	var ack *jetstream.PubAck
	err = untilAnswered(ctx, func() (err error) {
		ack, err = s.js.Publish(ctx, subject, body,
			jetstream.WithExpectLastSequencePerSubject(seq),
			jetstream.WithMsgID(fmt.Sprintf("%s.%s.%d.%s", a.DocID, gen, a.Head+1, s.writer)))
		return err
	})
	if err != nil {
		s.forgetTail(a.DocID)
		var apiErr *jetstream.APIError
		switch {
		case wrongLast(err):
			if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
				// A replicated stream refuses while another writer's
				// append to the subject is still being replicated: wait
				// until it is readable, so that the caller, reading what
				// beat it, finds it.
				s.awaitTailPast(ctx, a.DocID, gen, seq)
			}
			return fmt.Errorf("%w: document %s: another writer appended at head %d first", storage.ErrConflict, a.DocID, a.Head)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errDuplicateInProcess:
			// An earlier publish of this append is still being stored.
			return fmt.Errorf("%w: document %s: an append at head %d is being stored", storage.ErrConflict, a.DocID, a.Head)
		}
		return fmt.Errorf("document %s: publish: %w", a.DocID, wrap(err))
	}
	if ack.Duplicate {
		s.forgetTail(a.DocID)
		// The same id within the window: a publish of this append was
		// stored before. Reading the log says what it holds.
		return fmt.Errorf("%w: document %s: a commit at head %d was already stored", storage.ErrConflict, a.DocID, a.Head)
	}
	s.noteTail(a.DocID, tailCache{gen: gen, head: e.Records[len(e.Records)-1].Rev, seq: ack.Sequence})
	select {
	case s.indexq <- indexJob{a.DocID, gen, e.Records}:
	default:
		// The indexer is behind: a lookup indexes from the log.
	}
	if snap := a.Snapshot; snap != nil {
		// Where its tail starts is known from this publish, unless the
		// snapshot is older than the append (then it is looked for).
		var from uint64
		switch first, last := e.Records[0].Rev, e.Records[len(e.Records)-1].Rev; {
		case snap.Rev == last:
			from = ack.Sequence + 1
		case snap.Rev >= first-1:
			from = ack.Sequence
		}
		if err := s.putSnapshot(ctx, a.DocID, gen, *snap, from); err != nil {
			return err
		}
	}
	return nil
}

// indexer writes the exactly-once entries of committed records, in commit
// order, until the store closes.
func (s *Store) indexer() {
	defer s.wg.Done()
	for job := range s.indexq {
		if s.indexCtx.Err() != nil {
			continue // closed: drain without writing
		}
		ctx, cancel := context.WithTimeout(s.indexCtx, s.timeout)
		err := s.index(ctx, job.id, job.gen, job.recs)
		cancel()
		_ = err // a lookup repairs what failed here
	}
}

// index writes the exactly-once entries of recs and moves the document's
// watermark past them.
func (s *Store) index(ctx context.Context, id, gen string, recs []record) error {
	for _, r := range recs {
		if r.Source == "" {
			continue
		}
		k := subKey(id, gen, r.Source, r.Seq)
		err := untilAnswered(ctx, func() error { _, err := s.subs.Create(ctx, k, []byte(strconv.FormatInt(r.Rev, 10))); return err })
		if err != nil && !wrongLast(err) {
			return fmt.Errorf("document %s: exactly-once index: %w", id, wrap(err))
		}
	}
	// The watermark only moves over a contiguous run: records indexed
	// past a gap (a job dropped, another node's commit not indexed yet)
	// are indexed again by the lookup that repairs the gap.
	first, last := recs[0].Rev, recs[len(recs)-1].Rev
	return s.updateMeta(ctx, id, func(m *meta) error {
		if m.Gen == gen && m.Indexed >= first-1 && m.Indexed < last {
			m.Indexed = last
		}
		return nil
	})
}

// LookupSubmission implements storage.Store.
func (s *Store) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer done()
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return 0, false, err
	}
	if source == "" || len(source) > storage.MaxSourceLen {
		return 0, false, nil
	}
	if err := s.catchUpIndex(ctx, id, d, m); err != nil {
		return 0, false, err
	}
	var e jetstream.KeyValueEntry
	err = untilAnswered(ctx, func() (err error) { e, err = s.subs.Get(ctx, subKey(id, m.Gen, source, seq)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("document %s: exactly-once index: %w", id, wrap(err))
	}
	rev, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: document %s: exactly-once entry", storage.ErrCorrupt, id)
	}
	return rev, true, nil
}

// catchUpIndex indexes the records the exactly-once index is behind on: a
// writer that died between the log and the index, an indexer behind.
func (s *Store) catchUpIndex(ctx context.Context, id string, d storage.Document, m meta) error {
	if m.Indexed >= d.Head {
		return nil
	}
	var recs []record
	start := uint64(1)
	if _, v, ok, err := s.snapshotAt(ctx, id, m.Gen, m.Indexed); err != nil {
		return err
	} else if ok {
		start = v.From
	}
	if err := s.scan(ctx, id, m.Gen, start, func(r record, _ uint64, _ bool) bool {
		if r.Rev > m.Indexed {
			recs = append(recs, r)
		}
		return true
	}); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	return s.index(ctx, id, m.Gen, recs)
}
