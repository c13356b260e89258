// Package spaceguard keeps a store from writing when the disk under it is
// nearly full.
//
// An embedded store that runs out of disk does not always fail cleanly:
// Badger writes its memtable through a memory-mapped file, and the kernel
// answers a write to a mapped page with no space behind it with SIGBUS,
// which kills the process (and kills it again at every restart on the still
// full disk). So writes must stop before the disk is full, as etcd raises
// its NOSPACE alarm: a Guard wraps a storage.Store, measures the free space
// of the data directory's filesystem every so often, and while it is below
// a threshold (large enough for the store's next memtable flush and
// value-log file) refuses every write with storage.ErrNoSpace without
// touching the store. Reads go on. When space comes back, writes resume.
//
// Measuring every so often is not enough on its own: a fast writer can
// fill the reserve between two measurements. So the Guard also accounts
// for what each write will put on disk (its bytes, times WriteFactor for
// the store's log, value log and tables) against the room measured last:
// a write that would not fit is refused before it reaches the store, and
// the space is measured again at once. Writes can only use up what was
// measured free above the reserve, however fast they come.
//
// A Guard started on a disk that is already too full opens the store
// read-only (a read-write open writes a lock file and may replay and flush
// its log), serves reads, and reopens it read-write once there is room.
package spaceguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdocs/tandem/storage"
)

// Opener opens the guarded store, read-only or not.
type Opener func(readOnly bool) (storage.Store, error)

// Backuper is implemented by stores that take online backups; a Guard
// passes it through (a backup only reads).
type Backuper interface {
	Backup(ctx context.Context, w io.Writer, since uint64) (next uint64, err error)
}

// FreeFunc reports the free space, in bytes, available to an unprivileged
// writer on the filesystem that holds dir.
type FreeFunc func(dir string) (uint64, error)

// Free is the FreeFunc of the running system (statfs).
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Options configure a Guard.
type Options struct {
	// Dir is the data directory (its filesystem is the one measured).
	Dir string
	// MinFree is the free space below which writes stop.
	MinFree uint64
	// Every is how often the free space is measured (1s).
	Every time.Duration
	// WriteFactor is how many bytes of disk a byte written may take before
	// the next measurement (3: Badger's write-ahead log, its value log,
	// and the table a memtable flush writes).
	WriteFactor int
	// Open opens the store.
	Open Opener
	// OnChange is told when writes stop (with the reason) and resume
	// (nil), from the Guard's goroutine.
	OnChange func(err error)
	// Free measures free space (Free).
	Free FreeFunc
	// Logger (slog.Default()).
	Logger *slog.Logger
}

// Guard is a storage.Store that refuses writes while the disk is nearly
// full. Run must be running for it to notice changes.
type Guard struct {
	opts Options

	mu       sync.RWMutex // held for reading by every call, for writing by a reopen
	store    storage.Store
	readOnly bool

	stateMu sync.Mutex
	err     error // nil while writes are allowed
	// room is what the writes since the last measurement may still use:
	// the free space then, above MinFree, less their estimated sizes.
	room int64
}

var _ storage.Store = (*Guard)(nil)

// Open measures the free space and opens the store: read-write when there is
// room (or read-only if that fails for lack of space), read-only when there
// is not.
func Open(opts Options) (*Guard, error) {
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Free == nil {
		opts.Free = Free
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WriteFactor <= 0 {
		opts.WriteFactor = 3
	}
	g := &Guard{opts: opts}
	room, low := g.measure()
	g.room = room
	var err error
	if low == nil {
		g.store, err = opts.Open(false)
		if err != nil && isNoSpace(err) {
			low = fmt.Errorf("%w: opening the store: %v", storage.ErrNoSpace, err)
		} else if err != nil {
			return nil, err
		}
	}
	if low != nil {
		g.store, err = opts.Open(true)
		if err != nil {
			return nil, fmt.Errorf("disk nearly full (%v), and the store cannot be opened read-only: %w", low, err)
		}
		g.readOnly = true
		opts.Logger.Error("disk nearly full: serving reads only until there is room", "dir", opts.Dir, "reason", low)
	}
	g.err = low
	return g, nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		// Badger wraps some errors as text only.
		strings.Contains(err.Error(), "no space left on device") || strings.Contains(err.Error(), "disk quota exceeded")
}

// measure returns nil if there is room for writes, or why not, and the
// room above the reserve.
func (g *Guard) measure() (room int64, low error) {
	free, err := g.opts.Free(g.opts.Dir)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", storage.ErrNoSpace, err)
	}
	if free < g.opts.MinFree {
		return 0, fmt.Errorf("%w: %d MiB free on the data directory's disk, below the %d MiB kept in reserve", storage.ErrNoSpace, free>>20, g.opts.MinFree>>20)
	}
	return int64(min(free-g.opts.MinFree, 1<<62)), nil
}

// Writable returns nil while writes are allowed, or why they are not.
func (g *Guard) Writable() error {
	g.stateMu.Lock()
	defer g.stateMu.Unlock()
	return g.err
}

// Run measures the free space every Options.Every until ctx ends, stopping
// and resuming writes as it crosses the threshold.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.Check()
	}
}

// Check measures the free space once and acts on it.
func (g *Guard) Check() {
	room, low := g.measure()
	if low == nil && g.isReadOnly() {
		if err := g.reopen(); err != nil {
			low = fmt.Errorf("%w: reopening the store for writing: %v", storage.ErrNoSpace, err)
		}
	}
	g.stateMu.Lock()
	was := g.err
	g.err, g.room = low, room
	g.stateMu.Unlock()
	g.changed(was, low)
}

// reserve takes n bytes (a write's estimate, before the WriteFactor) from
// the room measured last; when they do not fit it measures again, and
// refuses the write if they still do not.
func (g *Guard) reserve(n int64) error {
	n *= int64(g.opts.WriteFactor)
	g.stateMu.Lock()
	if err := g.err; err != nil {
		g.stateMu.Unlock()
		return err
	}
	if n <= g.room {
		g.room -= n
		g.stateMu.Unlock()
		return nil
	}
	g.stateMu.Unlock()
	// Out of room since the last measurement: measure now. (Writes that
	// raced here each measure; statfs is cheap.)
	room, low := g.measure()
	g.stateMu.Lock()
	was := g.err
	g.err, g.room = low, room
	var err error
	switch {
	case low != nil:
		err = low
	case n > room:
		err = fmt.Errorf("%w: this write needs %d KiB of the %d KiB free above the reserve", storage.ErrNoSpace, n>>10, room>>10)
	default:
		g.room -= n
	}
	g.stateMu.Unlock()
	g.changed(was, low)
	return err
}

// changed logs and reports a change between writable (nil) and not.
func (g *Guard) changed(was, low error) {
	switch {
	case was == nil && low != nil:
		g.opts.Logger.Error("disk nearly full: writes stopped (edits are refused with storage_full and kept by clients)", "dir", g.opts.Dir, "reason", low)
	case was != nil && low == nil:
		g.opts.Logger.Info("disk has room again: writes resumed", "dir", g.opts.Dir)
	default:
		return
	}
	if g.opts.OnChange != nil {
		g.opts.OnChange(low)
	}
}

func (g *Guard) isReadOnly() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.readOnly
}

// reopen swaps the read-only store for a read-write one, once every call
// in progress has returned.
func (g *Guard) reopen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.readOnly {
		return nil
	}
	if err := g.store.Close(); err != nil {
		return fmt.Errorf("close the read-only store: %w", err)
	}
	s, err := g.opts.Open(false)
	if err != nil {
		// Back to reading, at least.
		if ro, rerr := g.opts.Open(true); rerr == nil {
			g.store = ro
		}
		return err
	}
	g.store, g.readOnly = s, false
	g.opts.Logger.Info("store reopened for writing", "dir", g.opts.Dir)
	return nil
}

// write runs fn on the store unless writes are stopped or the estimated
// bytes of the write do not fit in the room left.
func (g *Guard) write(bytes int64, fn func(storage.Store) error) error {
	if err := g.reserve(bytes); err != nil {
		return err
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.readOnly {
		return fmt.Errorf("%w: the store is open read-only", storage.ErrNoSpace)
	}
	return fn(g.store)
}

func (g *Guard) read() (storage.Store, func()) {
	g.mu.RLock()
	return g.store, g.mu.RUnlock
}

// CreateDocument implements storage.Store.
func (g *Guard) CreateDocument(ctx context.Context, doc storage.Document, text string) error {
	return g.write(overhead+int64(len(text)+len(doc.Title)), func(s storage.Store) error { return s.CreateDocument(ctx, doc, text) })
}

// Document implements storage.Store.
func (g *Guard) Document(ctx context.Context, id string) (storage.Document, error) {
	s, done := g.read()
	defer done()
	return s.Document(ctx, id)
}

// ListDocuments implements storage.Store.
func (g *Guard) ListDocuments(ctx context.Context, opts storage.ListOptions) ([]storage.Document, string, error) {
	s, done := g.read()
	defer done()
	return s.ListDocuments(ctx, opts)
}

// DeleteDocument implements storage.Store.
func (g *Guard) DeleteDocument(ctx context.Context, id string) error {
	return g.write(overhead, func(s storage.Store) error { return s.DeleteDocument(ctx, id) })
}

// SetTitle implements storage.Store.
func (g *Guard) SetTitle(ctx context.Context, id, title string) error {
	return g.write(overhead+int64(len(title)), func(s storage.Store) error { return s.SetTitle(ctx, id, title) })
}

// Commit implements storage.Store.
func (g *Guard) Commit(ctx context.Context, appends []storage.Append) (results []error, err error) {
	err = g.write(commitBytes(appends), func(s storage.Store) error {
		results, err = s.Commit(ctx, appends)
		return err
	})
	return results, err
}

// overhead is what a write costs on disk besides its text: keys, headers,
// index entries (an estimate on the safe side).
const overhead = 512

// commitBytes estimates what appends write: each record's op, its keys
// and exactly-once entry, and any snapshot's text.
func commitBytes(appends []storage.Append) int64 {
	n := int64(0)
	for _, a := range appends {
		for _, r := range a.Records {
			n += overhead + int64(len(r.Source)+len(r.User))
			n += 16*int64(r.Op.Parts()) + int64(r.Op.InsertedBytes())
		}
		if a.Snapshot != nil {
			n += overhead + int64(len(a.Snapshot.Content))
		}
	}
	return n
}

// Records implements storage.Store.
func (g *Guard) Records(ctx context.Context, id string, from, to int64) ([]storage.Record, error) {
	s, done := g.read()
	defer done()
	return s.Records(ctx, id, from, to)
}

// Snapshot implements storage.Store.
func (g *Guard) Snapshot(ctx context.Context, id string, rev int64) (storage.Snapshot, error) {
	s, done := g.read()
	defer done()
	return s.Snapshot(ctx, id, rev)
}

// SaveSnapshot implements storage.Store.
func (g *Guard) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	return g.write(overhead+int64(len(snap.Content)), func(s storage.Store) error { return s.SaveSnapshot(ctx, id, snap) })
}

// LookupSubmission implements storage.Store.
func (g *Guard) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	s, done := g.read()
	defer done()
	return s.LookupSubmission(ctx, id, source, seq)
}

// Compact implements storage.Store.
func (g *Guard) Compact(ctx context.Context, id string, before int64) error {
	return g.write(overhead, func(s storage.Store) error { return s.Compact(ctx, id, before) })
}

// Backup passes an online backup through to the store, if it takes them.
func (g *Guard) Backup(ctx context.Context, w io.Writer, since uint64) (uint64, error) {
	s, done := g.read()
	defer done()
	b, ok := s.(Backuper)
	if !ok {
		return 0, errors.New("spaceguard: the store takes no backups")
	}
	return b.Backup(ctx, w, since)
}

// Close closes the store.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.store.Close()
}

// ChangeLog implements storage.ChangeLogger: the log of the store the
// Guard has open (it reopens it when the disk has room again).
func (g *Guard) ChangeLog() storage.ChangeLog { return guardLog{g} }

type guardLog struct{ g *Guard }

// with runs fn on the open store's change log.
func (l guardLog) with(fn func(storage.ChangeLog) error) error {
	s, done := l.g.read()
	defer done()
	cl := storage.ChangeLogOf(s)
	if cl == nil {
		return fmt.Errorf("%w: the store keeps no change log", storage.ErrInvalid)
	}
	return fn(cl)
}

func (l guardLog) Changes(ctx context.Context, after uint64, limit int) (cs []storage.Change, err error) {
	err = l.with(func(cl storage.ChangeLog) error { cs, err = cl.Changes(ctx, after, limit); return err })
	return cs, err
}

// Wait waits on the open store a second at a time: a reopen replaces it.
func (l guardLog) Wait(ctx context.Context, after uint64) error {
	for {
		s, done := l.g.read()
		done()
		cl := storage.ChangeLogOf(s)
		if cl == nil {
			return fmt.Errorf("%w: the store keeps no change log", storage.ErrInvalid)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cl.Wait(wctx, after)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func (l guardLog) Last(ctx context.Context) (c uint64, err error) {
	err = l.with(func(cl storage.ChangeLog) error { c, err = cl.Last(ctx); return err })
	return c, err
}

func (l guardLog) Trim(ctx context.Context, before time.Time) (kept uint64, err error) {
	err = l.g.write(0, func(s storage.Store) error {
		cl := storage.ChangeLogOf(s)
		if cl == nil {
			return fmt.Errorf("%w: the store keeps no change log", storage.ErrInvalid)
		}
		kept, err = cl.Trim(ctx, before)
		return err
	})
	return kept, err
}

func (l guardLog) Position(ctx context.Context, reader string) (c uint64, found bool, err error) {
	err = l.with(func(cl storage.ChangeLog) error { c, found, err = cl.Position(ctx, reader); return err })
	return c, found, err
}

func (l guardLog) SetPosition(ctx context.Context, reader string, cursor uint64) error {
	return l.g.write(overhead, func(s storage.Store) error {
		cl := storage.ChangeLogOf(s)
		if cl == nil {
			return fmt.Errorf("%w: the store keeps no change log", storage.ErrInvalid)
		}
		return cl.SetPosition(ctx, reader, cursor)
	})
}
