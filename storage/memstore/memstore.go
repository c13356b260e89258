// Package memstore is an in-memory [storage.Store], for fast tests of the
// layers above storage.
//
// It keeps everything in maps behind one mutex and passes the conformance
// suite in package storagetest. Where the Store contract says a write is
// durable when a method returns, here "durable" means "in memory": visible to
// every later call on the same Store, and gone when the process exits or the
// Store is closed. Do not use it to keep documents.
//
// Values are copied on the way in and on the way out (ops, record slices), so
// callers never share memory with the store. Times are kept in UTC without
// their monotonic clock reading, as a store that encodes them would return
// them.
//
// Beyond what the contract requires, it rejects with ErrInvalid what a
// durable store could not encode or would later fail to read back: malformed
// ops (see [doctype.Op.Check]) and text or snapshots that are not valid UTF-8.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/storage"
)

// Store is an in-memory storage.Store. The zero Store is not usable; call
// New.
type Store struct {
	mu     sync.RWMutex
	closed bool
	docs   map[string]*document
	ids    []string // the keys of docs, sorted
	log    changeLog
}

var _ storage.Portable = (*Store)(nil)

type document struct {
	meta storage.Document
	// recs holds revisions meta.Oldest+1..meta.Head: recs[i].Rev ==
	// meta.Oldest+1+i.
	recs []storage.Record
	// snaps is sorted by Rev, one per revision; there is always one at
	// meta.Oldest.
	snaps []storage.Snapshot
	subs  map[submission]int64
}

type submission struct {
	source string
	seq    uint64
}

// New returns an empty store.
func New() *Store {
	s := &Store{docs: make(map[string]*document)}
	s.log = changeLog{s: s, positions: map[string]uint64{}, notify: make(chan struct{})}
	return s
}

// lock takes the lock (shared unless write) and checks ctx and that the store
// is open. On success the caller must call the returned unlock.
func (s *Store) lock(ctx context.Context, write bool) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if write {
		s.mu.Lock()
		unlock = s.mu.Unlock
	} else {
		s.mu.RLock()
		unlock = s.mu.RUnlock
	}
	if s.closed {
		unlock()
		return nil, storage.ErrClosed
	}
	return unlock, nil
}

// doc returns the document id; s.mu is held.
func (s *Store) doc(id string) (*document, error) {
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	d, ok := s.docs[id]
	if !ok {
		return nil, fmt.Errorf("%w: document %s", storage.ErrNotFound, id)
	}
	return d, nil
}

// CreateDocument implements storage.Store.
func (s *Store) CreateDocument(ctx context.Context, doc storage.Document, text string) error {
	if err := storage.CheckID(doc.ID); err != nil {
		return err
	}
	created := utc(doc.Created)
	return s.create(ctx, storage.Document{ID: doc.ID, Title: doc.Title, Created: created, Updated: created, Type: doc.Type}, text, nil, storage.ChangeCreate)
}

// ImportDocument implements storage.Portable.
func (s *Store) ImportDocument(ctx context.Context, doc storage.Document, text string, subs []storage.Submission) error {
	if err := storage.CheckImport(doc, subs); err != nil {
		return err
	}
	meta := storage.Document{ID: doc.ID, Title: doc.Title, Created: utc(doc.Created), Updated: utc(doc.Updated), Head: doc.Oldest, Oldest: doc.Oldest, Type: doc.Type}
	return s.create(ctx, meta, text, subs, storage.ChangeRestore)
}

func (s *Store) create(ctx context.Context, meta storage.Document, text string, subs []storage.Submission, kind storage.ChangeKind) error {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := storage.CheckCreate(meta, text); err != nil {
		return err
	}
	if _, ok := s.docs[meta.ID]; ok {
		return fmt.Errorf("%w: document %s", storage.ErrExists, meta.ID)
	}
	d := &document{
		meta:  meta,
		snaps: []storage.Snapshot{{Rev: meta.Oldest, Content: text}},
		subs:  make(map[submission]int64),
	}
	for _, sub := range subs {
		d.subs[submission{sub.Source, sub.Seq}] = sub.Rev
	}
	s.docs[meta.ID] = d
	i, _ := slices.BinarySearch(s.ids, meta.ID)
	s.ids = slices.Insert(s.ids, i, meta.ID)
	s.log.add(storage.Change{Kind: kind, DocID: meta.ID, To: meta.Head, Title: meta.Title, Type: meta.Type, Time: time.Now()})
	return nil
}

// Document implements storage.Store.
func (s *Store) Document(ctx context.Context, id string) (storage.Document, error) {
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return storage.Document{}, err
	}
	defer unlock()
	d, err := s.doc(id)
	if err != nil {
		return storage.Document{}, err
	}
	return d.meta, nil
}

// SetTitle implements storage.Store.
func (s *Store) SetTitle(ctx context.Context, id, title string) error {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := s.doc(id)
	if err != nil {
		return err
	}
	d.meta.Title = title
	s.log.add(storage.Change{Kind: storage.ChangeRename, DocID: id, Title: title, Time: time.Now()})
	return nil
}

// ListDocuments implements storage.Store.
func (s *Store) ListDocuments(ctx context.Context, opts storage.ListOptions) ([]storage.Document, string, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	i, found := slices.BinarySearch(s.ids, opts.After)
	if found {
		i++
	}
	end := min(i+limit, len(s.ids))
	docs := make([]storage.Document, 0, end-i)
	for _, id := range s.ids[i:end] {
		docs = append(docs, s.docs[id].meta)
	}
	next := ""
	if end < len(s.ids) {
		next = s.ids[end-1]
	}
	return docs, next, nil
}

// DeleteDocument implements storage.Store.
func (s *Store) DeleteDocument(ctx context.Context, id string) error {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.doc(id); err != nil {
		return err
	}
	delete(s.docs, id)
	if i, ok := slices.BinarySearch(s.ids, id); ok {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	s.log.add(storage.Change{Kind: storage.ChangeDelete, DocID: id, Time: time.Now()})
	return nil
}

// Commit implements storage.Store. The appends are applied in order, each
// seeing those before it: two appends to one document in one call both
// succeed when the second builds on the first's new head.
func (s *Store) Commit(ctx context.Context, appends []storage.Append) ([]error, error) {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	results := make([]error, len(appends))
	for i, a := range appends {
		results[i] = s.append(a)
	}
	return results, nil
}

// append applies one append; s.mu is held for writing.
func (s *Store) append(a storage.Append) error {
	if err := storage.CheckAppend(a); err != nil {
		return err
	}
	d, err := s.doc(a.DocID)
	if err != nil {
		return err
	}
	if a.Head != d.meta.Head {
		return fmt.Errorf("%w: document %s: append expects head %d, the head is %d", storage.ErrConflict, a.DocID, a.Head, d.meta.Head)
	}
	if a.Snapshot != nil && a.Snapshot.Rev < d.meta.Oldest {
		return fmt.Errorf("%w: document %s: snapshot at revision %d is older than the retained history (from %d)", storage.ErrInvalid, a.DocID, a.Snapshot.Rev, d.meta.Oldest)
	}
	for _, r := range a.Records {
		r.Op = r.Op.Clone()
		r.Time = utc(r.Time)
		d.recs = append(d.recs, r)
		if r.Source != "" {
			key := submission{r.Source, r.Seq}
			if _, dup := d.subs[key]; !dup {
				d.subs[key] = r.Rev
			}
		}
	}
	last := d.recs[len(d.recs)-1]
	d.meta.Head = last.Rev
	d.meta.Updated = last.Time
	if a.Snapshot != nil {
		d.putSnapshot(*a.Snapshot)
	}
	s.log.add(storage.Change{Kind: storage.ChangeCommit, DocID: a.DocID, From: a.Head, To: last.Rev, Time: last.Time})
	return nil
}

// Records implements storage.Store.
func (s *Store) Records(ctx context.Context, id string, from, to int64) ([]storage.Record, error) {
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	if err := storage.CheckRecordsRange(id, from, to); err != nil {
		return nil, err
	}
	d, err := s.doc(id)
	if err != nil {
		return nil, err
	}
	if err := storage.CheckRecords(d.meta, from, to); err != nil {
		return nil, err
	}
	src := d.recs[from-d.meta.Oldest : to-d.meta.Oldest]
	out := make([]storage.Record, len(src))
	for i, r := range src {
		r.Op = r.Op.Clone()
		out[i] = r
	}
	return out, nil
}

// Snapshot implements storage.Store.
func (s *Store) Snapshot(ctx context.Context, id string, rev int64) (storage.Snapshot, error) {
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()
	if err := storage.CheckID(id); err != nil {
		return storage.Snapshot{}, err
	}
	if rev < 0 {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: snapshot at negative revision %d", storage.ErrInvalid, id, rev)
	}
	d, err := s.doc(id)
	if err != nil {
		return storage.Snapshot{}, err
	}
	snap, ok := d.snapshotAt(rev)
	if !ok {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: no snapshot at or before revision %d", storage.ErrNotFound, id, rev)
	}
	return snap, nil
}

// SaveSnapshot implements storage.Store.
func (s *Store) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := storage.CheckID(id); err != nil {
		return err
	}
	if !utf8.ValidString(snap.Content) {
		return fmt.Errorf("%w: document %s: snapshot at revision %d is not valid UTF-8", storage.ErrInvalid, id, snap.Rev)
	}
	d, err := s.doc(id)
	if err != nil {
		return err
	}
	if err := storage.CheckSnapshotRev(d.meta, snap.Rev); err != nil {
		return err
	}
	d.putSnapshot(snap)
	return nil
}

// LookupSubmission implements storage.Store.
func (s *Store) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return 0, false, err
	}
	defer unlock()
	d, err := s.doc(id)
	if err != nil {
		return 0, false, err
	}
	if source == "" || len(source) > storage.MaxSourceLen {
		return 0, false, nil
	}
	rev, ok := d.subs[submission{source, seq}]
	return rev, ok, nil
}

// Submissions implements storage.Portable.
func (s *Store) Submissions(ctx context.Context, id string, upTo int64) ([]storage.Submission, error) {
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d, err := s.doc(id)
	if err != nil {
		return nil, err
	}
	var out []storage.Submission
	for k, rev := range d.subs {
		if rev <= upTo {
			out = append(out, storage.Submission{Source: k.source, Seq: k.seq, Rev: rev})
		}
	}
	return out, nil
}

// Compact implements storage.Store. Compacting at or below the revision the
// history already starts from changes nothing. Snapshots older than before
// are dropped with the records.
func (s *Store) Compact(ctx context.Context, id string, before int64) error {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := s.doc(id)
	if err != nil {
		return err
	}
	if err := storage.CheckCompact(d.meta, before); err != nil {
		return err
	}
	if before <= d.meta.Oldest {
		return nil
	}
	text, err := d.textAt(before)
	if err != nil {
		return err
	}
	d.putSnapshot(storage.Snapshot{Rev: before, Content: text})
	d.recs = slices.Clone(d.recs[before-d.meta.Oldest:])
	i, _ := d.findSnapshot(before)
	d.snaps = slices.Clone(d.snaps[i:])
	d.meta.Oldest = before
	return nil
}

// Close implements storage.Store. Calls after the first return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.closed = true
	s.docs, s.ids = nil, nil
	return nil
}

// findSnapshot returns the index of the snapshot at rev, or where it would go.
func (d *document) findSnapshot(rev int64) (int, bool) {
	return slices.BinarySearchFunc(d.snaps, rev, func(s storage.Snapshot, rev int64) int {
		switch {
		case s.Rev < rev:
			return -1
		case s.Rev > rev:
			return 1
		}
		return 0
	})
}

// putSnapshot saves snap, replacing any at its revision.
func (d *document) putSnapshot(snap storage.Snapshot) {
	i, found := d.findSnapshot(snap.Rev)
	if found {
		d.snaps[i] = snap
	} else {
		d.snaps = slices.Insert(d.snaps, i, snap)
	}
}

// snapshotAt returns the newest snapshot at or before rev.
func (d *document) snapshotAt(rev int64) (storage.Snapshot, bool) {
	i, found := d.findSnapshot(rev)
	if found {
		return d.snaps[i], true
	}
	if i == 0 {
		return storage.Snapshot{}, false
	}
	return d.snaps[i-1], true
}

// textAt rebuilds the text at a retained revision.
func (d *document) textAt(rev int64) (string, error) {
	snap, ok := d.snapshotAt(rev)
	if !ok || snap.Rev < d.meta.Oldest {
		return "", fmt.Errorf("%w: document %s: no snapshot at or before revision %d in the retained history", storage.ErrCorrupt, d.meta.ID, rev)
	}
	rope, err := d.meta.DocType().NewDocument(snap.Content)
	if err != nil {
		return "", fmt.Errorf("%w: document %s: snapshot at revision %d: %v", storage.ErrCorrupt, d.meta.ID, snap.Rev, err)
	}
	for _, r := range d.recs[snap.Rev-d.meta.Oldest : rev-d.meta.Oldest] {
		if err := rope.Apply(r.Op); err != nil {
			return "", fmt.Errorf("%w: document %s: revision %d does not apply: %v", storage.ErrCorrupt, d.meta.ID, r.Rev, err)
		}
	}
	return rope.Content(), nil
}

// utc returns t in UTC without its monotonic clock reading, as it would come
// back from an encoding.
func utc(t time.Time) time.Time { return t.UTC() }

// ChangeLog implements storage.ChangeLogger. Changes are added under the
// store's write lock with the write they record, so their order is the
// order of the writes.
func (s *Store) ChangeLog() storage.ChangeLog { return &s.log }

type changeLog struct {
	s         *Store
	changes   []storage.Change // cursors ascending
	last      uint64           // the newest cursor handed out
	trimmed   uint64           // changes up to this cursor were trimmed
	positions map[string]uint64
	notify    chan struct{} // closed and replaced at each add
}

// add logs c; s.mu is held for writing.
func (l *changeLog) add(c storage.Change) {
	l.last++
	c.Cursor = l.last
	c.Time = utc(c.Time)
	l.changes = append(l.changes, c)
	close(l.notify)
	l.notify = make(chan struct{})
}

func (l *changeLog) Changes(ctx context.Context, after uint64, limit int) ([]storage.Change, error) {
	if limit <= 0 {
		limit = 100
	}
	unlock, err := l.s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if after < l.trimmed {
		return nil, fmt.Errorf("%w: changes after %d were trimmed up to %d", storage.ErrCompacted, after, l.trimmed)
	}
	i, _ := slices.BinarySearchFunc(l.changes, after+1, func(c storage.Change, cur uint64) int { return cmp.Compare(c.Cursor, cur) })
	return slices.Clone(l.changes[i:min(len(l.changes), i+limit)]), nil
}

func (l *changeLog) Wait(ctx context.Context, after uint64) error {
	for {
		unlock, err := l.s.lock(ctx, false)
		if err != nil {
			return err
		}
		last, notify := l.last, l.notify
		unlock()
		if last > after {
			return nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *changeLog) Last(ctx context.Context) (uint64, error) {
	unlock, err := l.s.lock(ctx, false)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return l.last, nil
}

func (l *changeLog) Trim(ctx context.Context, before time.Time) (uint64, error) {
	unlock, err := l.s.lock(ctx, true)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for n < len(l.changes) && l.changes[n].Time.Before(before) {
		n++
	}
	if n > 0 {
		l.trimmed = l.changes[n-1].Cursor
		l.changes = slices.Delete(l.changes, 0, n)
	}
	if len(l.changes) == 0 {
		return l.last + 1, nil
	}
	return l.changes[0].Cursor, nil
}

func (l *changeLog) Position(ctx context.Context, reader string) (uint64, bool, error) {
	if err := storage.CheckReader(reader); err != nil {
		return 0, false, err
	}
	unlock, err := l.s.lock(ctx, false)
	if err != nil {
		return 0, false, err
	}
	defer unlock()
	c, ok := l.positions[reader]
	return c, ok, nil
}

func (l *changeLog) SetPosition(ctx context.Context, reader string, cursor uint64) error {
	if err := storage.CheckReader(reader); err != nil {
		return err
	}
	unlock, err := l.s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	l.positions[reader] = cursor
	return nil
}
