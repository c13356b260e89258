package spaceguard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
	"github.com/tandemdocs/tandem/storage/spaceguard"
	"github.com/tandemdocs/tandem/storage/storagetest"
)

// readOnlyStore refuses writes, as a store opened read-only does.
type readOnlyStore struct{ storage.Store }

var errReadOnly = errors.New("read-only")

func (readOnlyStore) CreateDocument(context.Context, storage.Document, string) error {
	return errReadOnly
}

type disk struct {
	free  atomic.Uint64
	mem   *memstore.Store
	mu    sync.Mutex
	opens []bool // readOnly of each open
}

func (d *disk) open(readOnly bool) (storage.Store, error) {
	d.mu.Lock()
	d.opens = append(d.opens, readOnly)
	d.mu.Unlock()
	if readOnly {
		return readOnlyStore{nopCloser{d.mem}}, nil
	}
	return nopCloser{d.mem}, nil
}

// nopCloser keeps the memstore open across reopens.
type nopCloser struct{ storage.Store }

func (nopCloser) Close() error { return nil }

func newGuard(t *testing.T, free uint64, changes *[]error) (*spaceguard.Guard, *disk) {
	t.Helper()
	d := &disk{mem: memstore.New()}
	d.free.Store(free)
	g, err := spaceguard.Open(spaceguard.Options{
		Dir:      "/data",
		MinFree:  100,
		Open:     d.open,
		Free:     func(string) (uint64, error) { return d.free.Load(), nil },
		OnChange: func(err error) { *changes = append(*changes, err) },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, d
}

func TestGuardStopsAndResumesWrites(t *testing.T) {
	ctx := context.Background()
	var changes []error
	g, d := newGuard(t, 1000, &changes)
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, "x"); err != nil {
		t.Fatal(err)
	}
	d.free.Store(50)
	g.Check()
	if err := g.Writable(); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("Writable with 50 bytes free: %v", err)
	}
	writes := map[string]error{
		"create": g.CreateDocument(ctx, storage.Document{ID: "b"}, ""),
		"commit": func() error {
			_, err := g.Commit(ctx, []storage.Append{{DocID: "a", Records: []storage.Record{{Rev: 1}}}})
			return err
		}(),
		"snapshot": g.SaveSnapshot(ctx, "a", storage.Snapshot{Rev: 0, Text: "x"}),
		"compact":  g.Compact(ctx, "a", 0),
		"delete":   g.DeleteDocument(ctx, "a"),
	}
	for what, err := range writes {
		if !errors.Is(err, storage.ErrNoSpace) {
			t.Errorf("%s on a full disk: %v, want ErrNoSpace", what, err)
		}
	}
	if doc, err := g.Document(ctx, "a"); err != nil || doc.ID != "a" {
		t.Fatalf("read on a full disk: %+v %v", doc, err)
	}
	if h, _ := d.mem.Document(ctx, "a"); h.Head != 0 {
		t.Fatalf("something was written: %+v", h)
	}
	d.free.Store(1000)
	g.Check()
	if err := g.CreateDocument(ctx, storage.Document{ID: "b"}, ""); err != nil {
		t.Fatalf("create after space came back: %v", err)
	}
	if len(changes) != 2 || changes[0] == nil || changes[1] != nil {
		t.Fatalf("OnChange calls: %v", changes)
	}
}

// TestGuardStartsReadOnly: on a full disk the store is opened read-only
// and reopened for writing when there is room.
func TestGuardStartsReadOnly(t *testing.T) {
	ctx := context.Background()
	var changes []error
	g, d := newGuard(t, 10, &changes)
	if err := g.Writable(); err == nil {
		t.Fatal("writable on a full disk")
	}
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, ""); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("create: %v", err)
	}
	d.free.Store(1000)
	g.Check()
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, ""); err != nil {
		t.Fatalf("create after the reopen: %v", err)
	}
	if len(d.opens) != 2 || !d.opens[0] || d.opens[1] {
		t.Fatalf("opens %v, want read-only then read-write", d.opens)
	}
}

// TestGuardConformance: with room, a Guard is the store it wraps.
func TestGuardConformance(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		g, err := spaceguard.Open(spaceguard.Options{
			Dir:     t.TempDir(),
			MinFree: 1,
			Open:    func(bool) (storage.Store, error) { return memstore.New(), nil },
			Every:   time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		return g
	})
}
