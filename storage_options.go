package tandem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/collab/natsbroker"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
	"github.com/tandemdocs/tandem/storage/jsstore"
	"github.com/tandemdocs/tandem/storage/memstore"
	"github.com/tandemdocs/tandem/storage/spaceguard"
)

// Storage says where a Server keeps its documents: one of Badger,
// BadgerDB, Memory and JetStream.
type Storage interface {
	open(ctx context.Context, log *slog.Logger, writable func(error)) (*opened, error)
}

// opened is a storage, open.
type opened struct {
	store    storage.Store
	guard    *spaceguard.Guard // Badger in a directory: the free-space guard
	broker   collab.Broker     // a cluster's commit fan-out
	presence collab.PresenceBroker
	badger   bool   // Badger's figures are worth exporting
	dir      string // the data directory, if any
	close    func() error
}

// Durability is what an acknowledged edit has survived.
type Durability string

const (
	// Fsync (the default): an edit is acknowledged once it is on disk.
	Fsync Durability = "fsync"
	// OS: once the operating system has it, which a killed process
	// cannot lose but a machine that loses power can; the store syncs
	// every SyncInterval.
	OS Durability = "os"
)

// Badger keeps documents in an embedded Badger database in a directory
// (created if missing), behind a guard that stops writes (and tells
// clients storage_full) while the disk is nearly full.
type Badger struct {
	Dir          string
	Durability   Durability    // Fsync by default
	SyncInterval time.Duration // with OS (1s)
	// MinFreeSpace: writes stop below this much free space on Dir's disk
	// (256 MiB); CheckEvery is how often it is measured (1s).
	MinFreeSpace uint64
	CheckEvery   time.Duration
}

func (b Badger) open(ctx context.Context, log *slog.Logger, writable func(error)) (*opened, error) {
	if b.Dir == "" {
		return nil, errors.New("tandem: Badger storage needs a Dir")
	}
	// The directory must exist for its disk to be measured.
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	var syncEvery time.Duration
	switch b.Durability {
	case "", Fsync:
	case OS:
		syncEvery = b.SyncInterval
		if syncEvery <= 0 {
			syncEvery = time.Second
		}
	default:
		return nil, fmt.Errorf("tandem: durability %q: want fsync or os", b.Durability)
	}
	if b.MinFreeSpace == 0 {
		b.MinFreeSpace = 256 << 20
	}
	var guard atomic.Pointer[spaceguard.Guard] // for Badger's GC goroutine
	g, err := spaceguard.Open(spaceguard.Options{
		Dir:     b.Dir,
		MinFree: b.MinFreeSpace,
		Every:   b.CheckEvery,
		Logger:  log,
		Open: func(readOnly bool) (storage.Store, error) {
			return badgerstore.Open(badgerstore.Options{Dir: b.Dir, Logger: log, ReadOnly: readOnly, SyncEvery: syncEvery,
				GCAllowed: func() bool { g := guard.Load(); return g != nil && g.Writable() == nil }})
		},
		OnChange: writable,
	})
	if err != nil {
		return nil, err
	}
	guard.Store(g)
	return &opened{store: g, guard: g, badger: true, dir: b.Dir, close: g.Close}, nil
}

// BadgerDB keeps documents in a Badger database the application opened
// (its own options: encryption, in-memory mode). It must be Tandem's
// alone. The Server does not close it, and does not watch its disk.
type BadgerDB struct {
	DB *badger.DB
}

func (b BadgerDB) open(ctx context.Context, log *slog.Logger, _ func(error)) (*opened, error) {
	s, err := badgerstore.OpenDB(b.DB, badgerstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return &opened{store: s, badger: true, close: s.Close}, nil
}

// Memory keeps documents in memory only: they are gone when the Server
// closes. For tests, demos and throwaway sessions.
type Memory struct{}

func (Memory) open(ctx context.Context, log *slog.Logger, _ func(error)) (*opened, error) {
	s := memstore.New()
	return &opened{store: s, close: s.Close}, nil
}

// JetStream makes the Server a node of a cluster: documents live in NATS
// JetStream, shared by every node, and commits and presence fan out
// between the nodes over Conn (docs/cluster.md). The Server does not close
// Conn.
type JetStream struct {
	Conn *nats.Conn
	// Replicas of the streams and buckets when they are created (1; use
	// 3 in production).
	Replicas int
	// Timeout of one JetStream request (30s).
	Timeout time.Duration
}

func (j JetStream) open(ctx context.Context, log *slog.Logger, _ func(error)) (*opened, error) {
	if j.Conn == nil {
		return nil, errors.New("tandem: JetStream storage needs a Conn")
	}
	// A cluster coming up (NATS started with the nodes) has no JetStream
	// leader for a few seconds: wait for it, saying so.
	var store *jsstore.Store
	var err error
	for attempt := 1; ; attempt++ {
		store, err = jsstore.Open(ctx, jsstore.Options{Conn: j.Conn, Replicas: j.Replicas, Timeout: j.Timeout})
		if err == nil || !jsstore.Unavailable(err) || ctx.Err() != nil {
			break
		}
		log.Warn("waiting for JetStream", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	nb := natsbroker.New(j.Conn, "tandem", log)
	return &opened{store: store, broker: nb, presence: nb, close: store.Close}, nil
}
