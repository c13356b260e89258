package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
)

// Options configure a Store. The zero value of every field but Dir has a
// default suited to a small server.
type Options struct {
	// Dir is the data directory. Required.
	Dir string
	// Logger receives Badger's warnings and errors. Default: slog.Default().
	Logger *slog.Logger
	// MemTableSize is the size of each of the two memtables. It also bounds
	// one durable write to 15% of it (Commit splits larger groups).
	// Default 16 MiB (Badger's is 64 MiB x 5).
	MemTableSize int64
	// BlockCacheSize and IndexCacheSize bound Badger's caches. Default
	// 16 MiB each (Badger's block cache is 256 MiB, its index cache
	// unbounded).
	BlockCacheSize, IndexCacheSize int64
	// GCInterval is how often value-log garbage collection runs. Default 5
	// minutes; negative disables it.
	GCInterval time.Duration
	// ReadOnly opens the directory without writing to it (offline tools).
	ReadOnly bool
	// SyncEvery chooses what a write that returns has promised. 0 (the
	// default): it is on disk (fsynced). Above 0: it is in the operating
	// system's hands (Badger's write-ahead log and value log are
	// memory-mapped files), which a killed process cannot lose but a
	// machine that loses power can, and the store syncs every SyncEvery
	// (and at Close).
	SyncEvery time.Duration
	// Existing refuses a directory that holds no Tandem data yet (with
	// ErrNotTandem) instead of making one: for tools that read.
	Existing bool
	// GCAllowed, if set, is asked before each value-log garbage collection:
	// it rewrites value-log files, which needs free space (see package
	// spaceguard).
	GCAllowed func() bool
}

// Store is a storage.Store on Badger. Every write is synced to disk before
// it returns, unless Options.SyncEvery says otherwise.
type Store struct {
	db    *badger.DB
	log   *slog.Logger
	owned bool // Close closes db (Open); OpenDB leaves it to its owner
	empty bool // opened read-only with no Tandem data in it
	// closed is closed by Close when the database is not owned (it stays
	// open, but the Store is not).
	closed chan struct{}

	// maxBatchBytes and maxBatchEntries keep one transaction under Badger's
	// limits (15% of a memtable), so ErrTxnTooBig never splits an append.
	maxBatchBytes   int
	maxBatchEntries int

	// lifecycle serializes creates and deletes, so that the sweep of a
	// deleted document's remnants never races a new document's first writes.
	lifecycle sync.Mutex

	chg changes // the change log's cursors (changes.go)

	closeOnce sync.Once
	stopGC    chan struct{} // stops the value-log GC and the background sync
	syncDone  chan struct{} // nil unless Options.SyncEvery
	gcDone    chan struct{}
	closeErr  error
}

// Errors of Open, besides Badger's own.
var (
	// ErrNotTandem: Options.Existing, and the directory holds no Tandem
	// data (no Badger database, or one without Tandem's format version).
	ErrNotTandem = errors.New("badgerstore: not a Tandem data directory")
	// ErrUncleanShutdown: a read-only open of a database that was not
	// closed cleanly (a crash or a kill), which only a read-write open
	// recovers.
	ErrUncleanShutdown = errors.New("badgerstore: the database was not closed cleanly and a read-only open cannot recover it")
)

// Open opens (or creates) the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgerstore: no directory given")
	}
	if opts.Existing {
		if _, err := os.Stat(filepath.Join(opts.Dir, badger.ManifestFilename)); err != nil {
			return nil, fmt.Errorf("%w: %s has no Badger MANIFEST", ErrNotTandem, opts.Dir)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemTableSize <= 0 {
		opts.MemTableSize = 16 << 20
	}
	if opts.BlockCacheSize <= 0 {
		opts.BlockCacheSize = 16 << 20
	}
	if opts.IndexCacheSize <= 0 {
		opts.IndexCacheSize = 16 << 20
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = 5 * time.Minute
	}
	if err := removeTornFiles(opts.Dir, opts.Logger); err != nil {
		return nil, fmt.Errorf("badgerstore: open %s: %w", opts.Dir, err)
	}
	bopts := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(opts.SyncEvery <= 0).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithReadOnly(opts.ReadOnly).
		WithLogger(logAdapter{opts.Logger})
	db, err := badger.Open(bopts)
	if err != nil {
		if errors.Is(err, badger.ErrTruncateNeeded) || strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()) {
			// (Badger wraps it with %+v, not %w.)
			return nil, fmt.Errorf("%w: %s: %v", ErrUncleanShutdown, opts.Dir, err)
		}
		if bytes.Contains([]byte(err.Error()), []byte("Cannot acquire directory lock")) {
			return nil, fmt.Errorf("badgerstore: open %s: the directory is in use by another process (a running server?): stop it, or take an online backup instead: %w", opts.Dir, err)
		}
		return nil, fmt.Errorf("badgerstore: open %s: %w", opts.Dir, err)
	}
	s, err := start(db, opts, true)
	if err == nil && opts.Existing && s.empty {
		s.Close()
		return nil, fmt.Errorf("%w: %s holds no format version", ErrNotTandem, opts.Dir)
	}
	return s, err
}

// OpenDB makes a Store of a Badger database the caller opened (with its
// own options: encryption, in-memory mode, another logger). The database
// must be Tandem's alone, or new. Close stops the Store's background work
// but leaves the database open: its owner closes it. Options.Dir,
// MemTableSize, the cache sizes and ReadOnly are the database's own and
// ignored here; SyncEvery is honoured only if the database does not sync
// its writes.
func OpenDB(db *badger.DB, opts Options) (*Store, error) {
	if db == nil || db.IsClosed() {
		return nil, errors.New("badgerstore: no open database given")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = 5 * time.Minute
	}
	bo := db.Opts()
	opts.MemTableSize, opts.ReadOnly = bo.MemTableSize, bo.ReadOnly
	if bo.SyncWrites || bo.InMemory {
		opts.SyncEvery = 0
	}
	return start(db, opts, false)
}

// start checks the database's format and starts the background work.
func start(db *badger.DB, opts Options, owned bool) (*Store, error) {
	s := &Store{
		db:              db,
		log:             opts.Logger,
		owned:           owned,
		maxBatchBytes:   int(opts.MemTableSize) / 10,
		maxBatchEntries: int(opts.MemTableSize) / 10 / 128,
		stopGC:          make(chan struct{}),
		gcDone:          make(chan struct{}),
		closed:          make(chan struct{}),
	}
	fail := func(err error) (*Store, error) {
		if owned {
			db.Close()
		}
		return nil, err
	}
	if err := s.checkFormat(opts.ReadOnly); err != nil {
		return fail(err)
	}
	if err := s.openChanges(); err != nil {
		return fail(err)
	}
	if opts.GCInterval > 0 && !opts.ReadOnly && !db.Opts().InMemory {
		go s.runGC(opts.GCInterval, opts.GCAllowed)
	} else {
		close(s.gcDone)
	}
	if opts.SyncEvery > 0 && !opts.ReadOnly {
		s.syncDone = make(chan struct{})
		go s.runSync(opts.SyncEvery)
	}
	return s, nil
}

// runSync syncs what the writes since the last sync left with the
// operating system (Options.SyncEvery).
func (s *Store) runSync(every time.Duration) {
	defer close(s.syncDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			if err := s.db.Sync(); err != nil {
				s.log.Error("background sync", "err", err)
			}
		}
	}
}

// checkFormat writes the format version into a new directory and refuses a
// directory of another version or of another program.
func (s *Store) checkFormat(readOnly bool) error {
	var version []byte
	empty := true
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		switch {
		case err == nil:
			version, err = item.ValueCopy(nil)
			return err
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: read format version: %w", err)
	}
	switch {
	case version != nil && string(version) != FormatVersion:
		return fmt.Errorf("badgerstore: data format version %q, this build reads %q", version, FormatVersion)
	case version != nil:
		return nil
	case !empty:
		return errors.New("badgerstore: the directory holds a Badger database that is not Tandem's (no format version key)")
	case readOnly:
		s.empty = true
		return nil
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte(FormatVersion)) })
}

func (s *Store) runGC(every time.Duration, allowed func() bool) {
	defer close(s.gcDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			for (allowed == nil || allowed()) && s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// Close stops garbage collection and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopGC)
		<-s.gcDone
		if s.syncDone != nil {
			<-s.syncDone
			if err := s.db.Sync(); err != nil {
				s.log.Error("final sync", "err", err)
			}
		}
		if s.owned {
			s.closeErr = s.db.Close()
		} else {
			close(s.closed)
		}
	})
	return s.closeErr
}

// DB exposes the underlying database to this module's tooling (backup,
// verification); callers must not write to it.
func (s *Store) DB() *badger.DB { return s.db }

// wrap turns Badger's errors into the store's.
func wrap(err error) error {
	if errors.Is(err, badger.ErrDBClosed) {
		return fmt.Errorf("%w: %v", storage.ErrClosed, err)
	}
	return err
}

func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if s.isClosed() {
		return storage.ErrClosed
	}
	return wrap(s.db.View(fn))
}

// update runs fn in a read-write transaction, retrying it when a concurrent
// transaction changed what it read.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	for {
		if s.isClosed() {
			return storage.ErrClosed
		}
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return wrap(err)
		}
	}
}

func getDoc(txn *badger.Txn, id string) (docValue, error) {
	item, err := txn.Get(docKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return docValue{}, fmt.Errorf("%w: document %s", storage.ErrNotFound, id)
	}
	if err != nil {
		return docValue{}, fmt.Errorf("document %s: %w", id, err)
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return docValue{}, fmt.Errorf("document %s: %w", id, err)
	}
	d, err := decodeDoc(id, b)
	if err == nil && d.Deleted {
		return docValue{}, fmt.Errorf("%w: document %s", storage.ErrNotFound, id)
	}
	return d, err
}

func setDoc(txn *badger.Txn, d docValue) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return txn.Set(docKey(d.ID), b)
}

// CreateDocument implements storage.Store.
func (s *Store) CreateDocument(ctx context.Context, doc storage.Document, text string) error {
	if err := storage.CheckID(doc.ID); err != nil {
		return err
	}
	created := doc.Created.UTC()
	if created.IsZero() {
		created = time.Now().UTC()
	}
	return s.create(ctx, docValue{ID: doc.ID, Title: doc.Title, Created: created, Updated: created, Type: doc.Type}, text, nil, storage.ChangeCreate)
}

// create stores a new document v at revision v.Oldest (its head) with
// text there and the exactly-once entries subs, under a new generation.
// The entries go first, in batches; the document appears with its
// metadata and snapshot in one last synced write, so a crash before it
// leaves only keys that no document claims (swept by the next create of
// the id, reported by Verify).
func (s *Store) create(ctx context.Context, v docValue, text string, subs []storage.Submission, kind storage.ChangeKind) error {
	if !utf8.ValidString(text) || !utf8.ValidString(v.Title) {
		return fmt.Errorf("%w: document %s: title and text must be valid UTF-8", storage.ErrInvalid, v.ID)
	}
	if err := storage.CheckCreate(storage.Document{ID: v.ID, Type: v.Type}, text); err != nil {
		return err
	}
	snap := []byte(text)
	if entrySize(len(v.ID)+20, snap)+1024 > s.maxBatchBytes || len(snap) >= maxValueBytes {
		return fmt.Errorf("%w: document %s: text of %d bytes is larger than one write allows (%d)", storage.ErrInvalid, v.ID, len(snap), s.maxBatchBytes)
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if _, err := s.Document(ctx, v.ID); err == nil {
		return fmt.Errorf("%w: document %s", storage.ErrExists, v.ID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	// Remnants of a delete that crashed half way must not leak into a new
	// document with the same id.
	if err := s.sweep(v.ID, 0, 0, false); err != nil {
		return err
	}
	v.Head, v.Gen = v.Oldest, newGen()
	for len(subs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(subs), s.maxBatchEntries/2)
		wb := s.db.NewWriteBatch()
		for _, sub := range subs[:n] {
			if err := wb.Set(subKey(v.ID, v.Gen, sub.Source, sub.Seq), binary.BigEndian.AppendUint64(nil, uint64(sub.Rev))); err != nil {
				wb.Cancel()
				return fmt.Errorf("document %s: exactly-once index: %w", v.ID, wrap(err))
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("document %s: exactly-once index: %w", v.ID, wrap(err))
		}
		subs = subs[n:]
	}
	return s.logged(1, func(txn *badger.Txn, cursor uint64) error {
		if _, err := getDoc(txn, v.ID); err == nil {
			return fmt.Errorf("%w: document %s", storage.ErrExists, v.ID)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := setDoc(txn, v); err != nil {
			return err
		}
		if err := setChange(txn, cursor, storage.Change{Kind: kind, DocID: v.ID, To: v.Head, Title: v.Title, Type: v.Type, Time: time.Now()}); err != nil {
			return err
		}
		return txn.Set(revKey(snpPrefix, v.ID, v.Gen, v.Oldest), snap)
	})
}

// Document implements storage.Store.
func (s *Store) Document(ctx context.Context, id string) (storage.Document, error) {
	if err := storage.CheckID(id); err != nil {
		return storage.Document{}, err
	}
	var d docValue
	err := s.view(func(txn *badger.Txn) (err error) {
		d, err = getDoc(txn, id)
		return err
	})
	return d.document(), err
}

// ListDocuments implements storage.Store.
func (s *Store) ListDocuments(ctx context.Context, opts storage.ListOptions) ([]storage.Document, string, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	var docs []storage.Document
	next := ""
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: docPrefix, PrefetchValues: true, PrefetchSize: min(limit+1, 100)})
		defer it.Close()
		start := docPrefix
		if opts.After != "" {
			start = append(docKey(opts.After), 0)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(docPrefix):])
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("document %s: %w", id, err)
			}
			d, err := decodeDoc(id, b)
			if err != nil {
				return err
			}
			if d.Deleted {
				continue
			}
			if len(docs) == limit {
				next = docs[len(docs)-1].ID
				return nil
			}
			docs = append(docs, d.document())
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return docs, next, nil
}

// SetTitle implements storage.Store.
func (s *Store) SetTitle(ctx context.Context, id, title string) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	return s.logged(1, func(txn *badger.Txn, cursor uint64) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		d.Title = title
		if err := setChange(txn, cursor, storage.Change{Kind: storage.ChangeRename, DocID: id, Title: title, Time: time.Now()}); err != nil {
			return err
		}
		return setDoc(txn, d)
	})
}

// DeleteDocument implements storage.Store. The metadata is replaced by a
// deletion marker first, in one durable write, so the document is gone at
// once; its history is swept after. A crash mid-sweep leaves only keys of a
// generation no live document has, which the next CreateDocument with the
// same id sweeps before it writes. The marker is a live key rather than a
// tombstone, so that it survives Badger's compactions and reaches
// incremental backups (Restore then drops what it deleted).
func (s *Store) DeleteDocument(ctx context.Context, id string) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	err := s.logged(1, func(txn *badger.Txn, cursor uint64) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		if err := setChange(txn, cursor, storage.Change{Kind: storage.ChangeDelete, DocID: id, Time: time.Now()}); err != nil {
			return err
		}
		return setDoc(txn, docValue{ID: id, Gen: d.Gen, Deleted: true})
	})
	if err != nil {
		return err
	}
	return s.sweep(id, 0, 0, false)
}

// sweep deletes, when upTo is 0, every record, snapshot and exactly-once
// entry under id, of any generation; otherwise generation gen's records
// with revision <= upTo and snapshots below it (or up to it). It writes in
// transactions small enough for Badger.
func (s *Store) sweep(id string, gen uint64, upTo int64, keepSnapshotAtUpTo bool) error {
	type scope struct {
		prefix []byte
		limit  []byte // exclusive; nil: the whole prefix
	}
	var scopes []scope
	if upTo == 0 {
		for _, p := range [][]byte{recPrefix, snpPrefix, subPrefix} {
			scopes = append(scopes, scope{prefix: docScope(p, id)})
		}
	} else {
		scopes = append(scopes, scope{genScope(recPrefix, id, gen), revKey(recPrefix, id, gen, upTo+1)})
		snapLimit := upTo + 1
		if keepSnapshotAtUpTo {
			snapLimit = upTo
		}
		scopes = append(scopes, scope{genScope(snpPrefix, id, gen), revKey(snpPrefix, id, gen, snapLimit)})
	}
	for _, sc := range scopes {
		for {
			var keys [][]byte
			err := s.view(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: sc.prefix})
				defer it.Close()
				for it.Rewind(); it.Valid() && len(keys) < s.maxBatchEntries; it.Next() {
					k := it.Item().KeyCopy(nil)
					if sc.limit != nil && bytes.Compare(k, sc.limit) >= 0 {
						break
					}
					keys = append(keys, k)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("document %s: sweep: %w", id, err)
			}
			if len(keys) == 0 {
				break
			}
			wb := s.db.NewWriteBatch()
			for _, k := range keys {
				if err := wb.Delete(k); err != nil {
					wb.Cancel()
					return fmt.Errorf("document %s: sweep: %w", id, wrap(err))
				}
			}
			if err := wb.Flush(); err != nil {
				return fmt.Errorf("document %s: sweep: %w", id, wrap(err))
			}
		}
	}
	return nil
}

// pending is one append's encoded writes.
type pending struct {
	index   int // into the appends
	id      string
	head    int64 // expected
	newHead int64
	updated time.Time
	snap    *storage.Snapshot
	entries []kv
	bytes   int
}

// kv is an entry of an append. Its key is completed in the transaction,
// once the document's generation is read: genScope(prefix, id, gen)+tail.
type kv struct{ prefix, tail, v []byte }

func (e kv) key(id string, gen uint64) []byte { return append(genScope(e.prefix, id, gen), e.tail...) }

// valueThreshold is Badger's default: larger values go to the value log,
// and a transaction counts only a 12-byte pointer for them.
const valueThreshold = 1 << 20

// maxValueBytes bounds one value (a snapshot of the largest document): it
// must fit in one value-log file with room to spare.
const maxValueBytes = 48 << 20

// entrySize estimates what an entry counts against Badger's transaction
// limit (Entry.estimateSizeAndSetThreshold), with a margin.
func entrySize(keyLen int, v []byte) int {
	if len(v) < valueThreshold {
		return keyLen + len(v) + 32
	}
	return keyLen + 12 + 32
}

// Commit implements storage.Store. Appends are encoded first, then written
// in as few synced transactions as Badger's size limit allows (one for a
// normal group), each append whole in one of them.
func (s *Store) Commit(ctx context.Context, appends []storage.Append) ([]error, error) {
	if s.isClosed() {
		return nil, storage.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	results := make([]error, len(appends))
	var batch []pending
	size := 0
	committed := false
	// write commits batch; after a failure, everything not yet committed
	// fails with it, so that err != nil still means nothing was written.
	write := func(rest []storage.Append) error {
		err := s.commitBatch(batch, results)
		if err == nil {
			committed = true
			return nil
		}
		for _, p := range batch {
			results[p.index] = err
		}
		for i := len(appends) - len(rest); i < len(appends); i++ {
			results[i] = err
		}
		return err
	}
	for i, a := range appends {
		p, err := s.encodeAppend(i, a)
		if err != nil {
			results[i] = err
			continue
		}
		if len(batch) > 0 && (size+p.bytes > s.maxBatchBytes || entriesOf(batch)+len(p.entries) > s.maxBatchEntries) {
			if err := write(appends[i:]); err != nil {
				if !committed {
					return nil, err
				}
				return results, nil
			}
			batch, size = batch[:0], 0
		}
		batch = append(batch, p)
		size += p.bytes
	}
	if len(batch) > 0 {
		if err := write(nil); err != nil && !committed {
			return nil, err
		}
	}
	return results, nil
}

func entriesOf(batch []pending) int {
	n := 0
	for _, p := range batch {
		n += len(p.entries) + 1
	}
	return n
}

func (s *Store) encodeAppend(i int, a storage.Append) (pending, error) {
	if err := storage.CheckID(a.DocID); err != nil {
		return pending{}, err
	}
	if len(a.Records) == 0 {
		return pending{}, fmt.Errorf("%w: document %s: append of no records", storage.ErrInvalid, a.DocID)
	}
	p := pending{index: i, id: a.DocID, head: a.Head, newHead: a.Head + int64(len(a.Records))}
	for j, r := range a.Records {
		if want := a.Head + 1 + int64(j); r.Rev != want {
			return pending{}, fmt.Errorf("%w: document %s: record %d has revision %d, want %d", storage.ErrInvalid, a.DocID, j, r.Rev, want)
		}
		if len(r.Source) > storage.MaxSourceLen {
			return pending{}, fmt.Errorf("%w: document %s: revision %d: source id longer than %d bytes", storage.ErrInvalid, a.DocID, r.Rev, storage.MaxSourceLen)
		}
		if err := r.Op.Check(); err != nil {
			return pending{}, fmt.Errorf("%w: document %s: revision %d: %v", storage.ErrInvalid, a.DocID, r.Rev, err)
		}
		v, err := encodeRecord(r)
		if err != nil {
			return pending{}, fmt.Errorf("%w: document %s: revision %d: %v", storage.ErrInvalid, a.DocID, r.Rev, err)
		}
		p.add(recPrefix, binary.BigEndian.AppendUint64(nil, uint64(r.Rev)), v)
		if r.Source != "" {
			tail := append([]byte{byte(len(r.Source))}, r.Source...)
			tail = binary.BigEndian.AppendUint64(tail, r.Seq)
			p.add(subPrefix, tail, binary.BigEndian.AppendUint64(nil, uint64(r.Rev)))
		}
		p.updated = r.Time.UTC()
	}
	if a.Snapshot != nil {
		if a.Snapshot.Rev < 0 || a.Snapshot.Rev > p.newHead {
			return pending{}, fmt.Errorf("%w: document %s: snapshot at revision %d past the new head %d", storage.ErrInvalid, a.DocID, a.Snapshot.Rev, p.newHead)
		}
		p.snap = a.Snapshot
		p.add(snpPrefix, binary.BigEndian.AppendUint64(nil, uint64(a.Snapshot.Rev)), []byte(a.Snapshot.Content))
	}
	if p.bytes > s.maxBatchBytes || len(p.entries) >= s.maxBatchEntries {
		return pending{}, fmt.Errorf("%w: document %s: append of %d bytes is larger than one write allows (%d)", storage.ErrInvalid, a.DocID, p.bytes, s.maxBatchBytes)
	}
	return p, nil
}

func (p *pending) add(prefix, tail, v []byte) {
	p.entries = append(p.entries, kv{prefix, tail, v})
	p.bytes += entrySize(len(prefix)+len(p.id)+9+len(tail), v)
}

// commitBatch writes batch in one synced transaction. It reads every
// document's head in the transaction, so a concurrent commit to one of them
// aborts it (Badger's conflict detection), and then it is run again: a
// compare-and-swap per append.
func (s *Store) commitBatch(batch []pending, results []error) error {
	return s.logged(len(batch), func(txn *badger.Txn, cursor uint64) error {
		heads := make(map[string]docValue, len(batch))
		for _, p := range batch {
			results[p.index] = nil
			d, ok := heads[p.id]
			if !ok {
				var err error
				if d, err = getDoc(txn, p.id); err != nil {
					results[p.index] = err
					continue
				}
			}
			if d.Head != p.head {
				results[p.index] = fmt.Errorf("%w: document %s: append at revision %d, head is %d", storage.ErrConflict, p.id, p.head, d.Head)
				continue
			}
			for _, e := range p.entries {
				if err := txn.Set(e.key(p.id, d.Gen), e.v); err != nil {
					return fmt.Errorf("document %s: %w", p.id, err)
				}
			}
			if err := setChange(txn, cursor, storage.Change{Kind: storage.ChangeCommit, DocID: p.id, From: p.head, To: p.newHead, Time: p.updated}); err != nil {
				return fmt.Errorf("document %s: change log: %w", p.id, err)
			}
			cursor++
			d.Head = p.newHead
			d.Updated = p.updated
			heads[p.id] = d
			if err := setDoc(txn, d); err != nil {
				return fmt.Errorf("document %s: %w", p.id, err)
			}
		}
		return nil
	})
}

// Records implements storage.Store.
func (s *Store) Records(ctx context.Context, id string, from, to int64) ([]storage.Record, error) {
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	var recs []storage.Record
	err := s.view(func(txn *badger.Txn) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		if from < 0 || from > to || to > d.Head {
			return fmt.Errorf("%w: document %s: records (%d, %d] outside 0..%d", storage.ErrInvalid, id, from, to, d.Head)
		}
		if from < d.Oldest {
			return fmt.Errorf("%w: document %s: records after %d asked for, history starts at %d", storage.ErrCompacted, id, from, d.Oldest)
		}
		recs = make([]storage.Record, 0, to-from)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: genScope(recPrefix, id, d.Gen), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		want := from + 1
		for it.Seek(revKey(recPrefix, id, d.Gen, from+1)); it.Valid() && want <= to; it.Next() {
			item := it.Item()
			if rev := revOf(item.Key()); rev != want {
				return fmt.Errorf("%w: document %s: revision %d missing (found %d)", storage.ErrCorrupt, id, want, rev)
			}
			var rec storage.Record
			err := item.Value(func(v []byte) error {
				var err error
				rec, err = decodeRecord(d.document().DocType(), id, item.Key(), v)
				return err
			})
			if err != nil {
				return err
			}
			recs = append(recs, rec)
			want++
		}
		if want <= to {
			return fmt.Errorf("%w: document %s: revision %d missing (head %d)", storage.ErrCorrupt, id, want, d.Head)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// Snapshot implements storage.Store.
func (s *Store) Snapshot(ctx context.Context, id string, rev int64) (storage.Snapshot, error) {
	if err := storage.CheckID(id); err != nil {
		return storage.Snapshot{}, err
	}
	var snap storage.Snapshot
	err := s.view(func(txn *badger.Txn) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		if rev < 0 || rev > d.Head {
			return fmt.Errorf("%w: document %s: snapshot at or before %d asked for, head is %d", storage.ErrInvalid, id, rev, d.Head)
		}
		if rev < d.Oldest {
			return fmt.Errorf("%w: document %s: snapshot at or before %d asked for, history starts at %d", storage.ErrCompacted, id, rev, d.Oldest)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: genScope(snpPrefix, id, d.Gen), Reverse: true})
		defer it.Close()
		it.Seek(revKey(snpPrefix, id, d.Gen, rev))
		if !it.Valid() {
			return fmt.Errorf("%w: document %s: no snapshot at or before revision %d", storage.ErrNotFound, id, rev)
		}
		item := it.Item()
		snap.Rev = revOf(item.Key())
		b, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("document %s: snapshot %d: %w", id, snap.Rev, err)
		}
		if !utf8.Valid(b) {
			return fmt.Errorf("%w: document %s: snapshot at revision %d is not valid UTF-8", storage.ErrCorrupt, id, snap.Rev)
		}
		snap.Content = string(b)
		return nil
	})
	return snap, err
}

// SaveSnapshot implements storage.Store.
func (s *Store) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	if !utf8.ValidString(snap.Content) {
		return fmt.Errorf("%w: document %s: snapshot text is not valid UTF-8", storage.ErrInvalid, id)
	}
	return s.update(func(txn *badger.Txn) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		if snap.Rev < d.Oldest || snap.Rev > d.Head {
			return fmt.Errorf("%w: document %s: snapshot at %d outside the history %d..%d", storage.ErrInvalid, id, snap.Rev, d.Oldest, d.Head)
		}
		return txn.Set(revKey(snpPrefix, id, d.Gen, snap.Rev), []byte(snap.Content))
	})
}

// LookupSubmission implements storage.Store.
func (s *Store) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	if err := storage.CheckID(id); err != nil {
		return 0, false, err
	}
	if source == "" || len(source) > storage.MaxSourceLen {
		return 0, false, nil
	}
	var rev int64
	found := false
	err := s.view(func(txn *badger.Txn) error {
		d, err := getDoc(txn, id)
		if err != nil {
			return err
		}
		item, err := txn.Get(subKey(id, d.Gen, source, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%w: document %s: exactly-once entry for %q/%d is %d bytes", storage.ErrCorrupt, id, source, seq, len(v))
			}
			rev, found = int64(binary.BigEndian.Uint64(v)), true
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("document %s: lookup %q/%d: %w", id, source, seq, err)
	}
	return rev, found, nil
}

// Compact implements storage.Store: it writes the text at before as a
// snapshot and moves the document's Oldest to before in one durable write,
// then sweeps the records and snapshots older than that.
func (s *Store) Compact(ctx context.Context, id string, before int64) error {
	if err := storage.CheckID(id); err != nil {
		return err
	}
	var doc docValue
	err := s.view(func(txn *badger.Txn) (err error) {
		doc, err = getDoc(txn, id)
		return err
	})
	if err != nil {
		return err
	}
	if before < 0 || before > doc.Head {
		return fmt.Errorf("%w: document %s: compact before %d, head is %d", storage.ErrInvalid, id, before, doc.Head)
	}
	if before > doc.Oldest {
		text, err := storage.ContentAt(ctx, s, id, before)
		if err != nil {
			return fmt.Errorf("document %s: compact: %w", id, err)
		}
		err = s.update(func(txn *badger.Txn) error {
			d, err := getDoc(txn, id)
			if err != nil {
				return err
			}
			if d.Gen != doc.Gen {
				return fmt.Errorf("%w: document %s was deleted and created again", storage.ErrConflict, id)
			}
			if before <= d.Oldest {
				return nil
			}
			if err := txn.Set(revKey(snpPrefix, id, d.Gen, before), []byte(text)); err != nil {
				return err
			}
			d.Oldest = before
			return setDoc(txn, d)
		})
		if err != nil {
			return fmt.Errorf("document %s: compact: %w", id, err)
		}
	}
	if before == 0 {
		return nil
	}
	return s.sweep(id, doc.Gen, before, true)
}

// logAdapter sends Badger's log to slog; Badger's info chatter goes to debug.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Errorf(f string, args ...any) {
	a.l.Error("badger: " + trimNL(fmt.Sprintf(f, args...)))
}
func (a logAdapter) Warningf(f string, args ...any) {
	a.l.Warn("badger: " + trimNL(fmt.Sprintf(f, args...)))
}
func (a logAdapter) Infof(f string, args ...any) {
	a.l.Debug("badger: " + trimNL(fmt.Sprintf(f, args...)))
}
func (a logAdapter) Debugf(f string, args ...any) {
	a.l.Debug("badger: " + trimNL(fmt.Sprintf(f, args...)))
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// isClosed reports whether the Store was closed (or its database was).
func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return s.db.IsClosed()
	}
}
