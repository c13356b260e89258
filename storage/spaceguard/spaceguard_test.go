package spaceguard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
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
		MinFree:  1 << 20,
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
	g, d := newGuard(t, 10<<20, &changes)
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, "x"); err != nil {
		t.Fatal(err)
	}
	d.free.Store(50 << 10)
	g.Check()
	if err := g.Writable(); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("Writable with 50 KiB free: %v", err)
	}
	writes := map[string]error{
		"create": g.CreateDocument(ctx, storage.Document{ID: "b"}, ""),
		"commit": func() error {
			_, err := g.Commit(ctx, []storage.Append{{DocID: "a", Records: []storage.Record{{Rev: 1}}}})
			return err
		}(),
		"snapshot": g.SaveSnapshot(ctx, "a", storage.Snapshot{Rev: 0, Content: "x"}),
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
	d.free.Store(10 << 20)
	g.Check()
	if err := g.CreateDocument(ctx, storage.Document{ID: "b"}, ""); err != nil {
		t.Fatalf("create after space came back: %v", err)
	}
	if len(changes) != 2 || changes[0] == nil || changes[1] != nil {
		t.Fatalf("OnChange calls: %v", changes)
	}
}

// consuming is a store whose commits use up the fake disk's free space,
// by the bytes of text they write.
type consuming struct {
	storage.Store
	free *atomic.Uint64
}

func (c consuming) Commit(ctx context.Context, appends []storage.Append) ([]error, error) {
	for _, a := range appends {
		for _, r := range a.Records {
			if n := r.Op.InsertedBytes(); n > 0 {
				c.free.Add(^uint64(n - 1))
			}
		}
	}
	return c.Store.Commit(ctx, appends)
}

// TestGuardCannotBeOutrun (issue 19): writes as fast as they come, with no
// periodic measurement at all (Run is not running: as if every write came
// before the next tick), never take the disk into the reserve. Each write
// is accounted for against the room measured last, and one that does not
// fit measures again and is refused if it still does not.
func TestGuardCannotBeOutrun(t *testing.T) {
	ctx := context.Background()
	const minFree = 1 << 20
	var free atomic.Uint64
	free.Store(minFree + 1<<20) // 1 MiB above the reserve
	var measured atomic.Int64
	mem := memstore.New()
	g, err := spaceguard.Open(spaceguard.Options{Dir: "/data", MinFree: minFree,
		Open:   func(bool) (storage.Store, error) { return consuming{nopCloser{mem}, &free}, nil },
		Free:   func(string) (uint64, error) { measured.Add(1); return free.Load(), nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, ""); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 20<<10)
	written := 0
	for rev := int64(1); ; rev++ {
		_, err := g.Commit(ctx, []storage.Append{{DocID: "a", Head: rev - 1, Records: []storage.Record{{Rev: rev, Op: doctype.PlainOp(ot.Op{ot.Insert(text)})}}}})
		if errors.Is(err, storage.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		written += len(text)
		if rev > 1000 {
			t.Fatal("the guard never refused a write")
		}
	}
	if f := free.Load(); f < minFree {
		t.Fatalf("the writes took the disk %d KiB into the reserve", (minFree-f)>>10)
	}
	if measured.Load() < 3 {
		t.Fatalf("the free space was measured %d times: a write that does not fit measures again first", measured.Load())
	}
	t.Logf("%d KiB written of the 1 MiB above the reserve, %d measurements", written>>10, measured.Load())
}

// TestGuardStartsReadOnly: on a full disk the store is opened read-only
// and reopened for writing when there is room.
func TestGuardStartsReadOnly(t *testing.T) {
	ctx := context.Background()
	var changes []error
	g, d := newGuard(t, 10<<10, &changes)
	if err := g.Writable(); err == nil {
		t.Fatal("writable on a full disk")
	}
	if err := g.CreateDocument(ctx, storage.Document{ID: "a"}, ""); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("create: %v", err)
	}
	d.free.Store(10 << 20)
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
