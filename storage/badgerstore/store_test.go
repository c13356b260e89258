package badgerstore_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
	"github.com/tandemdocs/tandem/storage/storagetest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTemp(t *testing.T) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store { return openTemp(t) })
}

// TestConformanceOpenDB runs the suite on a database the caller opened
// itself, in memory: OpenDB takes it as it is.
func TestConformanceOpenDB(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := badgerstore.OpenDB(db, badgerstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
