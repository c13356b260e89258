package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/backupfile"
)

// Backup writes a consistent backup of the whole store to w: every key
// version newer than or equal to since (0 for a full backup), all read at
// one timestamp while commits go on. It returns the version to pass as since
// to the next, incremental, backup.
//
// The file is Badger's own backup format (length-prefixed protobuf KV lists),
// so Badger's `badger restore` command restores it too.
func (s *Store) Backup(ctx context.Context, w io.Writer, since uint64) (next uint64, err error) {
	if s.isClosed() {
		return 0, fmt.Errorf("backup: %w", storage.ErrClosed)
	}
	// One producer goroutine means one read transaction, so one timestamp;
	// DB.Backup would spread ranges over several transactions taken at
	// different times.
	stream := s.db.NewStream()
	stream.NumGo = 1
	stream.SinceTs = max(since, 1) - 1 // Badger's iterator skips versions <= SinceTs; since itself is wanted (badger#2060)
	stream.LogPrefix = "tandem backup"
	last, err := stream.Backup(w, since)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", wrap(err))
	}
	next = last + 1
	if last < since {
		// Nothing changed since: the next backup starts where this one did.
		next = since
	}
	if err := backupfile.WriteTrailer(w, backupfile.Trailer{Format: FormatVersion, Since: since, Next: next, Time: time.Now().UTC()}); err != nil {
		return 0, fmt.Errorf("backup: trailer: %w", err)
	}
	return next, nil
}

// Restore loads backup files, a full one followed by incremental ones in the
// order they were taken, into dir, which must be empty or not exist. The
// result is a store that Open accepts.
func Restore(dir string, logger *slog.Logger, backups ...io.Reader) error {
	if len(backups) == 0 {
		return errors.New("restore: no backup given")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("restore: %s is not empty: restore into a new directory", dir)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("restore: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	db, err := badger.Open(badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithLogger(logAdapter{logger}))
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", dir, err)
	}
	for i, r := range backups {
		if err := load(db, r); err != nil {
			db.Close()
			return fmt.Errorf("restore: backup %d of %d: %w (is it a Tandem backup file, whole?)", i+1, len(backups), err)
		}
	}
	if err := reconcile(db); err != nil {
		db.Close()
		return fmt.Errorf("restore: %w", err)
	}
	var format []byte
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err != nil {
			return err
		}
		format, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		db.Close()
		if errors.Is(err, badger.ErrKeyNotFound) {
			return errors.New("restore: the files hold no Tandem data (no format version key): not a Tandem backup, or empty")
		}
		return fmt.Errorf("restore: %w", err)
	}
	if string(format) != FormatVersion {
		db.Close()
		return fmt.Errorf("restore: backup of data format %q, this build reads %q", format, FormatVersion)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("restore: close %s: %w", dir, err)
	}
	// Check what was restored is a Tandem store of a version we read.
	s, err := Open(Options{Dir: dir, Logger: logger, GCInterval: -1})
	if err != nil {
		return fmt.Errorf("restore: the restored data is not a usable store: %w", err)
	}
	return s.Close()
}

// load runs Badger's Load, which panics on some malformed input (a length
// prefix it trusts); a damaged or foreign file must be an error.
func load(db *badger.DB, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed backup data: %v", p)
		}
	}()
	fr := backupfile.NewReader(r)
	if err := db.Load(fr, 16); err != nil {
		return err
	}
	t, err := fr.Trailer()
	if err != nil {
		return err
	}
	return t.Check(FormatVersion)
}

// reconcile deletes, after loading backups, every key that no live document
// claims: keys of deleted documents and of earlier generations of an id, and
// records and snapshots outside a document's retained range. An incremental
// backup carries deletions only as tombstones, and Badger drops tombstones
// when it compacts its levels, so deletions made between two backups may be
// missing from the incremental file; what they deleted is recognizable all
// the same.
func reconcile(db *badger.DB) error {
	docs := map[string]docValue{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: docPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(docPrefix):])
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			d, err := decodeDoc(id, b)
			if err != nil {
				return err
			}
			if !d.Deleted {
				docs[id] = d
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	stale := func(prefix, key, value []byte) bool {
		id, gen, ok := splitKey(prefix, key)
		d, live := docs[id]
		if !ok || !live || d.Gen != gen {
			return true
		}
		switch {
		case bytes.Equal(prefix, recPrefix):
			rev := revOf(key)
			return rev <= d.Oldest || rev > d.Head
		case bytes.Equal(prefix, snpPrefix):
			rev := revOf(key)
			return rev < d.Oldest || rev > d.Head
		default: // exactly-once entries outlive compaction
			return len(value) != 8 || int64(binary.BigEndian.Uint64(value)) > d.Head
		}
	}
	for _, prefix := range [][]byte{recPrefix, snpPrefix, subPrefix} {
		var doomed [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				var value []byte
				if bytes.Equal(prefix, subPrefix) {
					var err error
					if value, err = item.ValueCopy(nil); err != nil {
						return err
					}
				}
				if stale(prefix, item.Key(), value) {
					doomed = append(doomed, item.KeyCopy(nil))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		wb := db.NewWriteBatch()
		for _, k := range doomed {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
	}
	return nil
}
