package badgerstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
)

// The change log: chgPrefix+<cursor> -> changeValue JSON, written in the
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

type changeValue struct {
	Kind  storage.ChangeKind `json:"kind"`
	Doc   string             `json:"doc"`
	From  int64              `json:"from,omitempty"`
	To    int64              `json:"to,omitempty"`
	Title string             `json:"title,omitempty"`
	Type  string             `json:"type,omitempty"`
	Time  time.Time          `json:"time"`
}

// changes hands out cursors and tells waiters when the readable part of
// the log grows. Cursors are taken before a transaction and settled after
// it, written or not: transactions commit in any order, and a reader sees
// only up to the watermark below which none is in flight.
type changes struct {
	mu sync.Mutex
	wm *storage.Watermark
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
	s.chg.wm = storage.NewWatermark(last)
	return nil
}

// logged runs fn in a read-write transaction with n cursors to log its
// changes under (fn may use fewer: the rest are gaps).
func (s *Store) logged(n int, fn func(txn *badger.Txn, first uint64) error) error {
	s.chg.mu.Lock()
	first := s.chg.wm.Take(n)
	s.chg.mu.Unlock()
	defer func() {
		s.chg.mu.Lock()
		s.chg.wm.Finish(first, n)
		s.chg.mu.Unlock()
	}()
	return s.update(func(txn *badger.Txn) error { return fn(txn, first) })
}

func setChange(txn *badger.Txn, cursor uint64, c storage.Change) error {
	b, err := json.Marshal(changeValue{Kind: c.Kind, Doc: c.DocID, From: c.From, To: c.To, Title: c.Title, Type: c.Type, Time: c.Time.UTC()})
	if err != nil {
		return err
	}
	return txn.Set(changeKey(cursor), b)
}

// ChangeLog implements storage.ChangeLogger.
func (s *Store) ChangeLog() storage.ChangeLog { return changeLog{s} }

type changeLog struct{ s *Store }

func (l changeLog) stable() (uint64, <-chan struct{}) {
	l.s.chg.mu.Lock()
	defer l.s.chg.mu.Unlock()
	return l.s.chg.wm.Stable()
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
			var v changeValue
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
				return fmt.Errorf("%w: change %d: %v", storage.ErrCorrupt, cursor, err)
			}
			out = append(out, storage.Change{Cursor: cursor, Kind: v.Kind, DocID: v.Doc, From: v.From, To: v.To, Title: v.Title, Type: v.Type, Time: v.Time})
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
			var v changeValue
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
				return fmt.Errorf("%w: change %d: %v", storage.ErrCorrupt, cursor, err)
			}
			if cursor > stable || !v.Time.Before(before) {
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
