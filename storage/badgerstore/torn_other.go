//go:build !unix

package badgerstore

import "log/slog"

// removeTornFiles is a no-op where Badger's directory lock cannot be
// taken from here: Open then fails once after a crash at the wrong moment.
func removeTornFiles(dir string, log *slog.Logger) error { return nil }
