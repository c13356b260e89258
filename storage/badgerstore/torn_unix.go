//go:build unix

package badgerstore

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// removeTornFiles deletes 0-byte memtable and value-log files from dir.
// Badger creates such a file and then sizes it; a process killed in between
// leaves an empty file that makes the next Open fail ("Create a new file",
// dgraph-io/badger#2207), and read-only opens fail until a read-write one
// has run. An empty file holds nothing and nothing points into it (no entry
// was written to it), so removing it loses nothing; Badger creates it anew.
//
// It only touches the directory while holding Badger's own directory lock
// exclusively, so it never races a running server creating a file.
func removeTornFiles(dir string, log *slog.Logger) error {
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return err
	}
	vlogs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		return err
	}
	mems = append(mems, vlogs...)
	if len(mems) == 0 {
		return nil
	}
	// Badger removes its LOCK file on a clean close and creates it on open.
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil // a read-only directory, say: leave it to Badger
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil // in use: Badger's Open reports it
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for _, m := range mems {
		if fi, err := os.Stat(m); err == nil && fi.Size() == 0 {
			log.Warn("removing an empty file left by a crash while Badger created it", "file", m)
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	return nil
}
