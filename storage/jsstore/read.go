package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// Reading records back from the log: scans of a document's subject from a
// sequence, in bulk.

// scan calls f with the log's records of a document, in order, from the
// message at sequence from on, until f returns false or the log's end.
// f's ends says whether r is the last record of its message.
func (s *Store) scan(ctx context.Context, id, gen string, from uint64, f func(r record, seq uint64, ends bool) bool) error {
	subject := s.logSubject(id, gen)
	for seq := max(from, 1); ; seq++ {
		var msg *jetstream.RawStreamMsg
		err := untilAnswered(ctx, func() (err error) {
			msg, err = s.log.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("document %s: log: %w", id, wrap(err))
		}
		var e entry
		if err := json.Unmarshal(msg.Data, &e); err != nil {
			return fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, msg.Sequence)
		}
		for i, r := range e.Records {
			if !f(r, msg.Sequence, i == len(e.Records)-1) {
				return nil
			}
		}
		seq = msg.Sequence
	}
}

// bulkRead: a read of more records than this streams the messages
// through a consumer instead of one request per message (a cold open, a
// backup, a client far behind).
const bulkRead = 32

// scanBulk is scan through an ordered consumer: the messages come in
// batches, without a request each. f must return false at the record it
// needs last: the consumer does not say where the log ends, so a read
// past it waits for a second before it ends.
func (s *Store) scanBulk(ctx context.Context, id, gen string, from uint64, f func(r record, seq uint64, ends bool) bool) error {
	cons, err := s.js.OrderedConsumer(ctx, s.log.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.logSubject(id, gen)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	})
	if err != nil {
		return fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	for {
		n, done, err := s.fetch(ctx, cons, id, f)
		switch {
		case err != nil:
			return err
		case done || n == 0: // f is done, or the end of the log
			return nil
		}
	}
}

// fetch passes f the records of one batch of cons's messages (n: how many
// messages); done when f returned false.
func (s *Store) fetch(ctx context.Context, cons jetstream.Consumer, id string, f func(r record, seq uint64, ends bool) bool) (n int, done bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	batch, err := cons.Fetch(256, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, false, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	for msg := range batch.Messages() {
		n++
		meta, err := msg.Metadata()
		if err != nil {
			return n, false, fmt.Errorf("document %s: log: %w", id, err)
		}
		var e entry
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			return n, false, fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, meta.Sequence.Stream)
		}
		for i, r := range e.Records {
			if !f(r, meta.Sequence.Stream, i == len(e.Records)-1) {
				return n, true, nil
			}
		}
	}
	switch err := batch.Error(); {
	case ctx.Err() != nil:
		return n, false, fmt.Errorf("document %s: log: %w", id, ctx.Err())
	case err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded):
		return n, false, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	return n, false, nil
}

// Records implements storage.Store.
func (s *Store) Records(ctx context.Context, id string, from, to int64) ([]storage.Record, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	if err := storage.CheckRecordsRange(id, from, to); err != nil {
		return nil, err
	}
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := storage.CheckRecords(d, from, to); err != nil {
		return nil, err
	}
	return s.records(ctx, id, m, from, to)
}

func (s *Store) records(ctx context.Context, id string, m meta, from, to int64) ([]storage.Record, error) {
	gen, t := m.Gen, doctype.MustLookup(m.Type)
	out := make([]storage.Record, 0, to-from)
	if from == to {
		return out, nil
	}
	start := s.startAfter(id, gen, from)
	if start == 0 {
		start = 1
		if _, v, ok, err := s.snapshotAt(ctx, id, gen, from); err != nil {
			return nil, err
		} else if ok {
			start = v.From
		}
	}
	var endSeq uint64 // the message ending exactly at to, if the read ended there
	var decodeErr error
	collect := func(r record, seq uint64, ends bool) bool {
		if r.Rev > from && r.Rev <= to {
			rec, err := r.record(t)
			if err != nil {
				decodeErr = fmt.Errorf("document %s: %w", id, err)
				return false
			}
			out = append(out, rec)
		}
		if r.Rev == to && ends {
			endSeq = seq
		}
		return r.Rev < to
	}
	var err error
	if to-from > bulkRead {
		err = s.scanBulk(ctx, id, gen, start, collect)
		if err != nil && unanswered(err) && ctx.Err() == nil {
			// No consumer now (a stream between leaders): a message at a
			// time, each sent again until answered.
			out, endSeq, decodeErr = out[:0], 0, nil
			err = s.scan(ctx, id, gen, start, collect)
		}
	} else {
		err = s.scan(ctx, id, gen, start, collect)
	}
	if err == nil && decodeErr != nil {
		return nil, decodeErr
	}
	if err == nil && endSeq > 0 {
		s.noteEnd(id, gen, tailEnd{to, endSeq})
	}
	if err != nil {
		return nil, err
	}
	for i, r := range out {
		if r.Rev != from+1+int64(i) {
			return nil, fmt.Errorf("%w: document %s: the log has revision %d where %d belongs", storage.ErrCorrupt, id, r.Rev, from+1+int64(i))
		}
	}
	if int64(len(out)) != to-from {
		return nil, fmt.Errorf("%w: document %s: the log holds %d of revisions %d..%d", storage.ErrCorrupt, id, len(out), from+1, to)
	}
	return out, nil
}
