package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// The change log is the log stream itself: its sequence is the cursor.
// Commits are already its messages, one per append, in the order
// JetStream stored them, on every node. Creations, deletions, renames and
// restores are messages on one more subject of the stream (changeSubject:
// three tokens, where a document's subject has four), published once the
// write they record is done: a node that dies between the two loses that
// one event (commits cannot be lost: they are the same message). There is
// no second log, and no trimming of its own: the log is the documents'
// history, bounded by their retention (--retain) and deletions. Readers'
// positions are a key-value bucket (CURSORS).

// changeSubject is the subject of the events that are not commits.
func (s *Store) changeSubject() string { return s.subject + "._changes" }

type changeEvent struct {
	Kind  storage.ChangeKind `json:"kind"`
	Doc   string             `json:"doc"`
	Rev   int64              `json:"rev,omitempty"`
	Title string             `json:"title,omitempty"`
	Type  string             `json:"type,omitempty"`
	Time  time.Time          `json:"time"`
}

// logChange publishes an event that is not a commit. A failure is
// returned to the caller of the write: it was made, its event was not.
func (s *Store) logChange(ctx context.Context, c changeEvent) error {
	b, _ := json.Marshal(c)
	err := untilAnswered(ctx, func() error { _, err := s.js.Publish(ctx, s.changeSubject(), b); return err })
	if err != nil {
		return fmt.Errorf("document %s: the change log: %w", c.Doc, wrap(err))
	}
	return nil
}

// ChangeLog implements storage.ChangeLogger.
func (s *Store) ChangeLog() storage.ChangeLog { return changeLog{s} }

type changeLog struct{ s *Store }

// last is the log stream's newest sequence.
func (l changeLog) last(ctx context.Context) (first, last uint64, err error) {
	var info *jetstream.StreamInfo
	err = untilAnswered(ctx, func() (err error) { info, err = l.s.log.Info(ctx); return err })
	if err != nil {
		return 0, 0, wrap(err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

func (l changeLog) Changes(ctx context.Context, after uint64, limit int) ([]storage.Change, error) {
	ctx, done, err := l.s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if limit <= 0 {
		limit = 100
	}
	_, last, err := l.last(ctx)
	if err != nil || after >= last {
		return nil, err
	}
	var cons jetstream.Consumer
	err = untilAnswered(ctx, func() (err error) {
		cons, err = l.s.js.OrderedConsumer(ctx, l.s.log.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{l.s.subject + ".>"},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    after + 1,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("change log: %w", wrap(err))
	}
	var out []storage.Change
	for len(out) < limit {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		batch, err := cons.Fetch(min(limit-len(out), 256), jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("change log: %w", wrap(err))
		}
		n := 0
		reached := false
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				cancel()
				return nil, fmt.Errorf("change log: %w", err)
			}
			c, ok, err := l.s.change(msg.Subject(), md.Sequence.Stream, msg.Data())
			if err != nil {
				cancel()
				return nil, err
			}
			if ok {
				out = append(out, c)
			}
			if md.Sequence.Stream >= last {
				reached = true
			}
		}
		berr := batch.Error()
		cancel()
		if berr != nil && !errors.Is(berr, nats.ErrTimeout) && !errors.Is(berr, context.DeadlineExceeded) {
			return nil, fmt.Errorf("change log: %w", wrap(berr))
		}
		if reached || n == 0 {
			break
		}
	}
	return out, nil
}

// change reads one message of the log as a change; false for a message
// that is none.
func (s *Store) change(subject string, seq uint64, data []byte) (storage.Change, bool, error) {
	if subject == s.changeSubject() {
		var e changeEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return storage.Change{}, false, fmt.Errorf("%w: change log message %d: %v", storage.ErrCorrupt, seq, err)
		}
		return storage.Change{Cursor: seq, Kind: e.Kind, DocID: e.Doc, To: e.Rev, Title: e.Title, Type: e.Type, Time: e.Time}, true, nil
	}
	// <subject>.<id with '.' as '~'>.<generation>
	rest, ok := strings.CutPrefix(subject, s.subject+".")
	if !ok {
		return storage.Change{}, false, nil
	}
	tok, _, ok := strings.Cut(rest, ".")
	if !ok {
		return storage.Change{}, false, nil
	}
	var e entry
	if err := json.Unmarshal(data, &e); err != nil || len(e.Records) == 0 {
		return storage.Change{}, false, fmt.Errorf("%w: log message %d", storage.ErrCorrupt, seq)
	}
	first, lastRec := e.Records[0], e.Records[len(e.Records)-1]
	return storage.Change{Cursor: seq, Kind: storage.ChangeCommit, DocID: strings.ReplaceAll(tok, "~", "."),
		From: first.Rev - 1, To: lastRec.Rev, Time: lastRec.Time}, true, nil
}

// Wait implements storage.ChangeLog: it listens on the log's subjects (any
// node's publish wakes it), then looks at the stream.
func (l changeLog) Wait(ctx context.Context, after uint64) error {
	sub, err := l.s.js.Conn().SubscribeSync(l.s.subject + ".>")
	if err != nil {
		return fmt.Errorf("change log: %w", err)
	}
	defer sub.Unsubscribe()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, l.s.timeout)
		_, last, err := l.last(lctx)
		cancel()
		if err != nil {
			return fmt.Errorf("change log: %w", err)
		}
		if last > after {
			return nil
		}
		// A message, or a second: the stream is looked at again either
		// way (a message published before the subscription is there).
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (l changeLog) Last(ctx context.Context) (uint64, error) {
	ctx, done, err := l.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	_, last, err := l.last(ctx)
	return last, err
}

// BoundByHistory implements storage.HistoryBound.
func (changeLog) BoundByHistory() bool { return true }

// Trim implements storage.ChangeLog: nothing to do, the log is the
// documents' history (see above). It returns the stream's first sequence.
func (l changeLog) Trim(ctx context.Context, before time.Time) (uint64, error) {
	ctx, done, err := l.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	first, _, err := l.last(ctx)
	return first, err
}

func positionKey(reader string) string {
	// Bucket keys take letters, digits, '-', '_', '=', '/' and '.'.
	var b strings.Builder
	for _, c := range []byte(reader) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02x", c)
		}
	}
	return b.String()
}

func (l changeLog) Position(ctx context.Context, reader string) (uint64, bool, error) {
	if err := storage.CheckReader(reader); err != nil {
		return 0, false, err
	}
	ctx, done, err := l.s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer done()
	var e jetstream.KeyValueEntry
	err = untilAnswered(ctx, func() (err error) { e, err = l.s.cursors.Get(ctx, positionKey(reader)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("change log: reader %q: %w", reader, wrap(err))
	}
	c, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: reader %q's position %q", storage.ErrCorrupt, reader, e.Value())
	}
	return c, true, nil
}

func (l changeLog) SetPosition(ctx context.Context, reader string, cursor uint64) error {
	if err := storage.CheckReader(reader); err != nil {
		return err
	}
	ctx, done, err := l.s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = untilAnswered(ctx, func() error {
		_, err := l.s.cursors.Put(ctx, positionKey(reader), []byte(strconv.FormatUint(cursor, 10)))
		return err
	})
	if err != nil {
		return fmt.Errorf("change log: reader %q: %w", reader, wrap(err))
	}
	return nil
}
