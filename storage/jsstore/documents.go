package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// Document metadata in the DOCS bucket: create, read, list, rename,
// delete.

// getMeta reads a document's metadata and its entry's revision.
func (s *Store) getMeta(ctx context.Context, id string) (meta, uint64, error) {
	if err := storage.CheckID(id); err != nil {
		return meta{}, 0, err
	}
	var e jetstream.KeyValueEntry
	err := untilAnswered(ctx, func() (err error) { e, err = s.docs.Get(ctx, key(id)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return meta{}, 0, fmt.Errorf("%w: document %s", storage.ErrNotFound, id)
	}
	if err != nil {
		return meta{}, 0, fmt.Errorf("document %s: %w", id, wrap(err))
	}
	var m meta
	if err := json.Unmarshal(e.Value(), &m); err != nil || m.ID != id || m.Gen == "" {
		return meta{}, 0, fmt.Errorf("%w: document %s: metadata", storage.ErrCorrupt, id)
	}
	return m, e.Revision(), nil
}

// putMeta writes m over the entry at revision rev (compare-and-swap),
// retrying change on a conflict.
func (s *Store) updateMeta(ctx context.Context, id string, change func(*meta) error) error {
	for {
		m, rev, err := s.getMeta(ctx, id)
		if err != nil {
			return err
		}
		if err := change(&m); err != nil {
			return err
		}
		b, _ := json.Marshal(m)
		err = untilAnswered(ctx, func() error { _, err := s.docs.Update(ctx, key(id), b, rev); return err })
		if err == nil {
			return nil
		}
		if !wrongLast(err) {
			return fmt.Errorf("document %s: %w", id, wrap(err))
		}
	}
}

func (s *Store) document(ctx context.Context, id string) (storage.Document, meta, uint64, error) {
	m, _, err := s.getMeta(ctx, id)
	if err != nil {
		return storage.Document{}, meta{}, 0, err
	}
	head, seq, updated, err := s.tail(ctx, id, m.Gen)
	if err != nil {
		return storage.Document{}, meta{}, 0, err
	}
	if seq == 0 {
		// No commit yet: the document is where it was created (0) or
		// imported (Oldest).
		head, updated = m.Oldest, m.Created
		if !m.Base.IsZero() {
			updated = m.Base
		}
	}
	if head < m.Oldest {
		return storage.Document{}, meta{}, 0, fmt.Errorf("%w: document %s: head %d before the oldest revision %d", storage.ErrCorrupt, id, head, m.Oldest)
	}
	s.noteTail(id, tailCache{gen: m.Gen, head: head, seq: seq})
	return storage.Document{ID: id, Title: m.Title, Created: m.Created, Updated: updated, Head: head, Oldest: m.Oldest, Type: m.Type}, m, seq, nil
}

// CreateDocument implements storage.Store.
func (s *Store) CreateDocument(ctx context.Context, doc storage.Document, text string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := storage.CheckCreate(doc, text); err != nil {
		return err
	}
	m := meta{ID: doc.ID, Title: doc.Title, Created: doc.Created.UTC().Round(0), Gen: newGen(), Type: doc.Type}
	// The snapshot first: a document is visible only with its text.
	sv, _ := json.Marshal(snapValue{Text: text, From: 1})
	if err := untilAnswered(ctx, func() error { _, err := s.snaps.Put(ctx, snapKey(doc.ID, m.Gen, 0), sv); return err }); err != nil {
		return fmt.Errorf("document %s: snapshot: %w", doc.ID, wrap(err))
	}
	b, _ := json.Marshal(m)
	if err := untilAnswered(ctx, func() error { _, err := s.docs.Create(ctx, key(doc.ID), b); return err }); err != nil {
		s.snaps.Purge(ctx, snapKey(doc.ID, m.Gen, 0))
		if wrongLast(err) {
			return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
		}
		return fmt.Errorf("document %s: %w", doc.ID, wrap(err))
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeCreate, Doc: doc.ID, Title: doc.Title, Type: doc.Type, Time: time.Now()})
}

// Document implements storage.Store.
func (s *Store) Document(ctx context.Context, id string) (storage.Document, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return storage.Document{}, err
	}
	defer done()
	d, _, _, err := s.document(ctx, id)
	return d, err
}

// ListDocuments implements storage.Store.
func (s *Store) ListDocuments(ctx context.Context, opts storage.ListOptions) ([]storage.Document, string, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, "", err
	}
	defer done()
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	var ids []string
	lister, err := s.docs.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return []storage.Document{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("list documents: %w", wrap(err))
	}
	for k := range lister.Keys() {
		if id := unkey(k); id > opts.After {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]storage.Document, 0, min(limit, len(ids)))
	next := ""
	for i, id := range ids {
		if len(out) == limit {
			next = ids[i-1]
			break
		}
		d, _, _, err := s.document(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, next, nil
}

// DeleteDocument implements storage.Store.
func (s *Store) DeleteDocument(ctx context.Context, id string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	m, rev, err := s.getMeta(ctx, id)
	if err != nil {
		return err
	}
	s.forgetTail(id)
	if err := s.docs.Purge(ctx, key(id), jetstream.LastRevision(rev)); err != nil {
		if wrongLast(err) {
			return fmt.Errorf("%w: document %s changed while being deleted", storage.ErrConflict, id)
		}
		return fmt.Errorf("document %s: %w", id, wrap(err))
	}
	// What belonged to the generation goes; a new document of the id has
	// another.
	if err := s.log.Purge(ctx, jetstream.WithPurgeSubject(s.logSubject(id, m.Gen))); err != nil {
		return fmt.Errorf("document %s: purge the log: %w", id, wrap(err))
	}
	for _, kv := range []jetstream.KeyValue{s.snaps, s.subs} {
		if err := purgePrefix(ctx, kv, scope(id, m.Gen)); err != nil {
			return fmt.Errorf("document %s: %w", id, err)
		}
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeDelete, Doc: id, Time: time.Now()})
}

// keysWithPrefix lists a bucket's keys that start with prefix.
func keysWithPrefix(ctx context.Context, kv jetstream.KeyValue, prefix string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, wrap(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

func purgePrefix(ctx context.Context, kv jetstream.KeyValue, prefix string) error {
	keys, err := keysWithPrefix(ctx, kv, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := kv.Purge(ctx, k); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// SetTitle implements storage.Store.
func (s *Store) SetTitle(ctx context.Context, id, title string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := s.updateMeta(ctx, id, func(m *meta) error { m.Title = title; return nil }); err != nil {
		return err
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeRename, Doc: id, Title: title, Time: time.Now()})
}
