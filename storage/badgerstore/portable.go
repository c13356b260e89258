package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
)

var _ storage.Portable = (*Store)(nil)

// ImportDocument implements storage.Portable. The exactly-once entries are
// written first, in batches, under the new generation; the document
// appears with its metadata and base snapshot in one last synced write, so
// a crash before it leaves only keys that no document claims (swept by the
// next create of the id, reported by Verify).
func (s *Store) ImportDocument(ctx context.Context, doc storage.Document, text string, subs []storage.Submission) error {
	if err := storage.CheckImport(doc, subs); err != nil {
		return err
	}
	if !utf8.ValidString(text) || !utf8.ValidString(doc.Title) {
		return fmt.Errorf("%w: document %s: title and text must be valid UTF-8", storage.ErrInvalid, doc.ID)
	}
	if len(text) >= maxValueBytes || entrySize(len(doc.ID)+20, []byte(text))+1024 > s.maxBatchBytes {
		return fmt.Errorf("%w: document %s: text of %d bytes is larger than one write allows (%d)", storage.ErrInvalid, doc.ID, len(text), s.maxBatchBytes)
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if _, err := s.Document(ctx, doc.ID); err == nil {
		return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if err := s.sweep(doc.ID, 0, 0, false); err != nil {
		return err
	}
	v := docValue{ID: doc.ID, Title: doc.Title, Created: doc.Created.UTC(), Updated: doc.Updated.UTC(),
		Head: doc.Oldest, Oldest: doc.Oldest, Gen: newGen()}
	for len(subs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(subs), s.maxBatchEntries/2)
		wb := s.db.NewWriteBatch()
		for _, sub := range subs[:n] {
			if err := wb.Set(subKey(doc.ID, v.Gen, sub.Source, sub.Seq), binary.BigEndian.AppendUint64(nil, uint64(sub.Rev))); err != nil {
				wb.Cancel()
				return fmt.Errorf("document %s: import the exactly-once index: %w", doc.ID, wrap(err))
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("document %s: import the exactly-once index: %w", doc.ID, wrap(err))
		}
		subs = subs[n:]
	}
	err := s.update(func(txn *badger.Txn) error {
		if _, err := getDoc(txn, doc.ID); err == nil {
			return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := setDoc(txn, v); err != nil {
			return err
		}
		return txn.Set(revKey(snpPrefix, doc.ID, v.Gen, v.Oldest), []byte(text))
	})
	if err != nil {
		return fmt.Errorf("document %s: import: %w", doc.ID, err)
	}
	return nil
}

// Submissions implements storage.Portable.
func (s *Store) Submissions(ctx context.Context, id string, upTo int64) ([]storage.Submission, error) {
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	var out []storage.Submission
	err := s.view(func(txn *badger.Txn) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		scope := genScope(subPrefix, id, d.Gen)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: scope, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()[len(scope):]
			if len(k) < 1 || len(k) != 1+int(k[0])+8 {
				return fmt.Errorf("%w: document %s: exactly-once key of %d bytes", storage.ErrCorrupt, id, len(k))
			}
			sub := storage.Submission{Source: string(k[1 : 1+k[0]]), Seq: binary.BigEndian.Uint64(k[1+k[0]:])}
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("%w: document %s: exactly-once entry for %q/%d is %d bytes", storage.ErrCorrupt, id, sub.Source, sub.Seq, len(v))
				}
				sub.Rev = int64(binary.BigEndian.Uint64(v))
				return nil
			})
			if err != nil {
				return err
			}
			if sub.Rev <= upTo {
				out = append(out, sub)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("document %s: exactly-once index: %w", id, err)
	}
	return out, nil
}
