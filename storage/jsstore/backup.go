package jsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/backupfile"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// A cluster's documents are backed up in a single node's format: they are
// copied (storage.Copy, which checks every revision applies) into a
// temporary Badger store, whose backup is the file. So one format serves
// both, a cluster's backup restores into a single node and a single node's
// into a cluster (tandem restore --nats copies the other way), and the
// tools that read backups need no cluster. The cost is a temporary copy of
// the documents on the local disk, in $TMPDIR.

// Backup writes a full backup of every document to w (since must be 0: a
// cluster takes no incremental backups), in badgerstore's backup format.
// It returns the version to pass as since to an incremental backup of a
// single node restored from it.
func (s *Store) Backup(ctx context.Context, w io.Writer, since uint64) (uint64, error) {
	if since != 0 {
		return 0, errors.New("a cluster takes full backups only")
	}
	_, next, err := BackupTo(ctx, s, w, nil, slog.Default())
	return next, err
}

// FullBackupsOnly says Backup refuses incremental backups (before any
// byte is written).
func (*Store) FullBackupsOnly() bool { return true }

// BackupTo writes a full backup of src's documents to w, calling progress
// (if set) after each document, and returns how many it wrote and the
// backup's version.
func BackupTo(ctx context.Context, src *Store, w io.Writer, progress func(docs int), log *slog.Logger) (docs int, next uint64, err error) {
	dst, _, cleanup, err := badgerstore.OpenTemp("cluster-backup", log)
	if err != nil {
		return 0, 0, err
	}
	defer cleanup()
	err = storage.CopyAll(ctx, dst, src, func(id string, _ storage.CopyResult, err error) error {
		if err != nil {
			return err
		}
		docs++
		if progress != nil {
			progress(docs)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var tr backupfile.Tracker
	if next, err = dst.Backup(ctx, ctxWriter{ctx, io.MultiWriter(w, &tr)}, 0); err != nil {
		return 0, 0, err
	}
	t, err := tr.Finish()
	if err == nil {
		err = t.Check(badgerstore.FormatVersion)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("the backup written is not whole: %w", err)
	}
	return docs, next, nil
}

// ctxWriter stops a long write when ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
