package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
)

// The change log: chgPrefix+<cursor> -> encodeChange's bytes, written in the
// transaction of the write it records; posPrefix+<reader> -> the reader's
// cursor; trimmedKey -> the newest cursor Trim dropped.
var (
	chgPrefix  = []byte("c/")
	posPrefix  = []byte("p/")
	trimmedKey = []byte("m/changes-trimmed")
)

func changeKey(cursor uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, chgPrefix...), cursor)
}

// A change's value: a version byte (1), the kind's index in changeKinds,
// from, to and the time (Unix nanoseconds) as varints, then the document
// id, the title and the type, each length-prefixed. Binary, not JSON: it
// is written with every append of the group commit.
var changeKinds = [...]storage.ChangeKind{storage.ChangeCommit, storage.ChangeCreate, storage.ChangeDelete, storage.ChangeRename, storage.ChangeRestore}

func encodeChange(c storage.Change) []byte {
	k := 0
	for i, kind := range changeKinds {
		if kind == c.Kind {
			k = i
		}
	}
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+3+len(c.DocID)+len(c.Title)+len(c.Type))
	b = append(b, 1, byte(k))
	b = binary.AppendVarint(b, c.From)
	b = binary.AppendVarint(b, c.To)
	b = binary.AppendVarint(b, c.Time.UnixNano())
	for _, s := range []string{c.DocID, c.Title, c.Type} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeChange(cursor uint64, b []byte) (storage.Change, error) {
	bad := func(what string) (storage.Change, error) {
		return storage.Change{}, fmt.Errorf("%w: change %d: %s", storage.ErrCorrupt, cursor, what)
	}
	if len(b) < 2 || b[0] != 1 || int(b[1]) >= len(changeKinds) {
		return bad("unknown version or kind")
	}
	c := storage.Change{Cursor: cursor, Kind: changeKinds[b[1]]}
	b = b[2:]
	var ints [3]int64
	for i := range ints {
		v, n := binary.Varint(b)
		if n <= 0 {
			return bad("truncated")
		}
		ints[i], b = v, b[n:]
	}
	c.From, c.To, c.Time = ints[0], ints[1], time.Unix(0, ints[2]).UTC()
	var strs [3]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return bad("truncated")
		}
		strs[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	c.DocID, c.Title, c.Type = strs[0], strs[1], strs[2]
	return c, nil
}

// changes hands out cursors and tells waiters when the readable part of
// the log grows. Cursors are taken before a transaction and settled after
// it, written or not: transactions commit in any order, and a reader sees
// only up to the watermark below which none is in flight.
type changes struct {
	mu sync.Mutex
	wm *watermark
}

// openChanges finds the newest cursor in the log.
func (s *Store) openChanges() error {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: chgPrefix, Reverse: true})
		defer it.Close()
		it.Seek(changeKey(^uint64(0)))
		if it.Valid() {
			last = binary.BigEndian.Uint64(it.Item().Key()[len(chgPrefix):])
		}
		item, err := txn.Get(trimmedKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) == 8 {
				last = max(last, binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("badgerstore: read the change log: %w", err)
	}
	s.chg.wm = newWatermark(last)
	return nil
}

// logged runs fn in a read-write transaction with n cursors to log its
// changes under (fn may use fewer: the rest are gaps).
func (s *Store) logged(n int, fn func(txn *badger.Txn, first uint64) error) error {
	s.chg.mu.Lock()
	first := s.chg.wm.take(n)
	s.chg.mu.Unlock()
	defer func() {
		s.chg.mu.Lock()
		s.chg.wm.finish(first, n)
		s.chg.mu.Unlock()
	}()
	return s.update(func(txn *badger.Txn) error { return fn(txn, first) })
}

func setChange(txn *badger.Txn, cursor uint64, c storage.Change) error {
	return txn.Set(changeKey(cursor), encodeChange(c))
}

// ChangeLog implements storage.ChangeLogger.
func (s *Store) ChangeLog() storage.ChangeLog { return changeLog{s} }

type changeLog struct{ s *Store }

func (l changeLog) stable() (uint64, <-chan struct{}) {
	l.s.chg.mu.Lock()
	defer l.s.chg.mu.Unlock()
	return l.s.chg.wm.settled()
}

func (l changeLog) Changes(ctx context.Context, after uint64, limit int) ([]storage.Change, error) {
	if limit <= 0 {
		limit = 100
	}
	stable, _ := l.stable()
	var out []storage.Change
	err := l.s.view(func(txn *badger.Txn) error {
		if trimmed, err := readTrimmed(txn); err != nil {
			return err
		} else if after < trimmed {
			return fmt.Errorf("%w: changes after %d were trimmed up to %d", storage.ErrCompacted, after, trimmed)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: chgPrefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(changeKey(after + 1)); it.Valid() && len(out) < limit; it.Next() {
			cursor := binary.BigEndian.Uint64(it.Item().Key()[len(chgPrefix):])
			if cursor > stable {
				break
			}
			var c storage.Change
			err := it.Item().Value(func(b []byte) (err error) { c, err = decodeChange(cursor, b); return err })
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("change log: %w", err)
	}
	return out, nil
}

func readTrimmed(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(trimmedKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	var t uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: change log trim marker of %d bytes", storage.ErrCorrupt, len(v))
		}
		t = binary.BigEndian.Uint64(v)
		return nil
	})
	return t, err
}

func (l changeLog) Wait(ctx context.Context, after uint64) error {
	for {
		if l.s.isClosed() {
			return storage.ErrClosed
		}
		stable, moved := l.stable()
		if stable > after {
			// A cursor settled by a failed write is a gap: wait on unless
			// a change is there to read.
			if cs, err := l.Changes(ctx, after, 1); err != nil || len(cs) > 0 {
				return err
			}
			after = stable
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.s.stopGC:
			return storage.ErrClosed
		}
	}
}

func (l changeLog) Last(ctx context.Context) (uint64, error) {
	stable, _ := l.stable()
	var last uint64
	err := l.s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: chgPrefix, Reverse: true})
		defer it.Close()
		for it.Seek(changeKey(stable)); it.Valid(); it.Next() {
			last = binary.BigEndian.Uint64(it.Item().Key()[len(chgPrefix):])
			return nil
		}
		return nil
	})
	return last, err
}

// Trim implements storage.ChangeLog. It deletes in batches small enough
// for one transaction; the trim marker goes first, so a crash part way
// leaves no change readable that a reader could mistake for complete.
func (l changeLog) Trim(ctx context.Context, before time.Time) (uint64, error) {
	stable, _ := l.stable()
	var doomed [][]byte
	var kept uint64 = stable + 1
	err := l.s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: chgPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			cursor := binary.BigEndian.Uint64(it.Item().Key()[len(chgPrefix):])
			var c storage.Change
			err := it.Item().Value(func(b []byte) (err error) { c, err = decodeChange(cursor, b); return err })
			if err != nil {
				return err
			}
			if cursor > stable || !c.Time.Before(before) {
				kept = cursor
				return nil
			}
			doomed = append(doomed, it.Item().KeyCopy(nil))
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(doomed) == 0 {
		return kept, err
	}
	last := binary.BigEndian.Uint64(doomed[len(doomed)-1][len(chgPrefix):])
	err = l.s.update(func(txn *badger.Txn) error {
		return txn.Set(trimmedKey, binary.BigEndian.AppendUint64(nil, last))
	})
	if err != nil {
		return 0, fmt.Errorf("change log: trim: %w", err)
	}
	wb := l.s.db.NewWriteBatch()
	for _, k := range doomed {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return 0, fmt.Errorf("change log: trim: %w", wrap(err))
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("change log: trim: %w", wrap(err))
	}
	return kept, nil
}

func (l changeLog) Position(ctx context.Context, reader string) (uint64, bool, error) {
	if err := storage.CheckReader(reader); err != nil {
		return 0, false, err
	}
	var c uint64
	found := false
	err := l.s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte{}, posPrefix...), reader...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%w: reader %q's position is %d bytes", storage.ErrCorrupt, reader, len(v))
			}
			c, found = binary.BigEndian.Uint64(v), true
			return nil
		})
	})
	return c, found, err
}

func (l changeLog) SetPosition(ctx context.Context, reader string, cursor uint64) error {
	if err := storage.CheckReader(reader); err != nil {
		return err
	}
	return l.s.update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, posPrefix...), reader...), binary.BigEndian.AppendUint64(nil, cursor))
	})
}

// watermark tracks which cursors of a log are settled while writes that
// were given cursors finish in any order: a reader may only see up to the
// highest cursor below which no write is still in flight, or it would
// remember a cursor and then miss an earlier one that lands late. The zero
// value is not usable; see newWatermark.
type watermark struct {
	next    uint64   // the next cursor to hand out
	pending []uint64 // handed out, not finished: ascending
	stable  uint64   // every cursor <= stable is finished
	notify  chan struct{}
}

// newWatermark starts after last, the newest cursor already settled.
func newWatermark(last uint64) *watermark {
	return &watermark{next: last + 1, stable: last, notify: make(chan struct{})}
}

// take hands out n consecutive cursors, the first of which it returns.
// The caller must finish each (written or not). Not safe for concurrent
// use: callers hold their own lock.
func (w *watermark) take(n int) uint64 {
	first := w.next
	for i := range uint64(n) {
		w.pending = append(w.pending, first+i)
	}
	w.next += uint64(n)
	return first
}

// finish settles cursors first..first+n-1.
func (w *watermark) finish(first uint64, n int) {
	kept := w.pending[:0]
	for _, c := range w.pending {
		if c < first || c >= first+uint64(n) {
			kept = append(kept, c)
		}
	}
	w.pending = kept
	stable := w.next - 1
	if len(w.pending) > 0 {
		stable = w.pending[0] - 1
	}
	if stable > w.stable {
		w.stable = stable
		close(w.notify)
		w.notify = make(chan struct{})
	}
}

// settled returns the highest settled cursor and a channel closed when it
// next moves.
func (w *watermark) settled() (uint64, <-chan struct{}) { return w.stable, w.notify }
