package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

const restoreUsage = `usage: tandem restore --in FULL [--in INCR ...] --data-dir NEW
       tandem restore --data-dir NEW FULL [INCR ...]
       tandem restore --nats URL [--nats-replicas N] [--skip-existing] FULL [INCR ...]

Restores backup files into a new data directory: a full backup, then its
incremental backups in the order they were taken. NEW must not exist or be
empty; then run 'tandem serve --data-dir NEW'. Restore never touches a
directory that holds anything, so it cannot overwrite a store.

--nats loads the backup (of a single node or of a cluster) into a cluster,
one document at a time, while it serves. It refuses, writing nothing, if
any of the backup's documents exists in the cluster; --skip-existing loads
the others (and continues a restore that was cut short: a document whose
copy failed is removed again). Every revision is checked to apply as it is
copied.

The environment can set --data-dir (TANDEM_DATA_DIR) and --nats
(TANDEM_NATS).
`

func restoreCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newToolFlags("restore", restoreUsage, stderr)
	var in fileList
	fs.Var(&in, "in", "a backup file; repeat it: the full backup first, then the incrementals in order")
	dataDir := fs.String("data-dir", "", "the new data directory (must not exist, or be empty)")
	nf := addNATSFlags(fs)
	replicas := fs.Int("nats-replicas", 0, "with --nats: replicas of the stream and buckets if they are created (0: keep those that exist, 1 for new ones)")
	skip := fs.Bool("skip-existing", false, "with --nats: leave documents the cluster has as they are, and load the others")
	fs.fromEnv("data-dir", "TANDEM_DATA_DIR")
	fs.exclusive = []string{"data-dir", "nats"}
	if err := fs.parse(args); err != nil {
		return err
	}
	files := append(in, fs.Args()...)
	switch {
	case len(files) == 0:
		return errors.New("restore: no backup file: give --in FILE (the full backup first, then incrementals)")
	case *dataDir != "" && *nf.url != "":
		return errors.New("restore: give either --data-dir (a new single node) or --nats (a cluster), not both")
	case *nf.url != "":
		if *replicas < 0 || *replicas > 5 {
			return errors.New("restore: --nats-replicas must be 0 to 5")
		}
		return restoreCluster(ctx, nf, *replicas, *skip, files, stderr)
	case *dataDir == "":
		return errors.New("restore: --data-dir NEW is required (a new or empty directory), or --nats URL for a cluster")
	case *skip || *replicas != 0:
		return errors.New("restore: --skip-existing and --nats-replicas go with --nats")
	}
	start := time.Now()
	infos, err := checkBackupFiles(files)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	existed := false
	switch entries, err := os.ReadDir(*dataDir); {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("restore: %s is not empty: restore into a new or empty directory (restore never overwrites a store)", *dataDir)
	case err == nil:
		existed = true
	case errors.Is(err, os.ErrNotExist):
	default:
		if fi, serr := os.Stat(*dataDir); serr == nil && !fi.IsDir() {
			return fmt.Errorf("restore: %s is a file, not a directory", *dataDir)
		}
		return fmt.Errorf("restore: %w", err)
	}
	log := toolLogger(stderr)
	if err := restoreFiles(*dataDir, files, log); err != nil {
		// Leave the directory as it was: absent, or empty.
		if existed {
			if entries, rerr := os.ReadDir(*dataDir); rerr == nil {
				for _, e := range entries {
					os.RemoveAll(filepath.Join(*dataDir, e.Name()))
				}
			}
		} else {
			os.RemoveAll(*dataDir)
		}
		return fmt.Errorf("restore: %w", err)
	}
	docs := -1
	if s, err := badgerstore.Open(badgerstore.Options{Dir: *dataDir, Logger: log, ReadOnly: true, GCInterval: -1}); err == nil {
		docs, _ = storage.CountDocuments(ctx, s)
		s.Close()
	}
	last := infos[len(infos)-1]
	fmt.Fprintf(stderr, "restore: %d documents from %s into %s in %v; the last backup was taken %s (next incremental: --since %d)\n",
		docs, plural(len(files), "backup file"), *dataDir, time.Since(start).Round(time.Millisecond), last.Time.Format(time.RFC3339), last.Next)
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
