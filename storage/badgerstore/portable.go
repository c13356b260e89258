package badgerstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
)

var _ storage.Portable = (*Store)(nil)

// ImportDocument implements storage.Portable.
func (s *Store) ImportDocument(ctx context.Context, doc storage.Document, text string, subs []storage.Submission) error {
	if err := storage.CheckImport(doc, subs); err != nil {
		return err
	}
	v := docValue{ID: doc.ID, Title: doc.Title, Created: doc.Created.UTC(), Updated: doc.Updated.UTC(), Oldest: doc.Oldest, Type: doc.Type}
	if err := s.create(ctx, v, text, subs, storage.ChangeRestore); err != nil {
		return fmt.Errorf("import: %w", err)
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
