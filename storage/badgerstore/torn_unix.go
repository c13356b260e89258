//go:build unix

package badgerstore

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// removeTornMemtables deletes 0-byte memtable files from dir. Badger creates
// a memtable file and then sizes it; a process killed in between leaves an
// empty file that makes the next Open fail ("Create a new file",
// dgraph-io/badger#2207) and read-only opens fail until a read-write one
// has run. An empty memtable holds nothing, so removing it loses nothing.
//
// It only touches the directory while holding Badger's own directory lock
// exclusively, so it never races a running server creating a memtable.
func removeTornMemtables(dir string, log *slog.Logger) error {
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil || len(mems) == 0 {
		return err
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
			log.Warn("removing an empty memtable file left by a crash", "file", m)
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	return nil
}
