package badgerstore

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// OpenTemp opens a new Store in a temporary directory (under $TMPDIR,
// named after what it is for); cleanup closes it and removes the
// directory. Tools and cluster backups copy documents into one to write
// them in this format.
func OpenTemp(purpose string, log *slog.Logger) (s *Store, dir string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "tandem-"+purpose+"-")
	if err != nil {
		return nil, "", nil, fmt.Errorf("temporary directory: %w", err)
	}
	dir = filepath.Join(tmp, "data")
	s, err = Open(Options{Dir: dir, Logger: log, GCInterval: -1})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, "", nil, fmt.Errorf("temporary store: %w", err)
	}
	return s, dir, func() { s.Close(); os.RemoveAll(tmp) }, nil
}
