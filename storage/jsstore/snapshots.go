package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// Snapshots (the SNAPS bucket) and compaction.

// snapshotAt returns the newest snapshot at or before rev.
func (s *Store) snapshotAt(ctx context.Context, id, gen string, rev int64) (storage.Snapshot, snapValue, bool, error) {
	keys, err := keysWithPrefix(ctx, s.snaps, scope(id, gen))
	if err != nil {
		return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("document %s: snapshots: %w", id, err)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		r, err := strconv.ParseInt(keys[i][strings.LastIndexByte(keys[i], '.')+1:], 10, 64)
		if err != nil || r > rev {
			continue
		}
		var e jetstream.KeyValueEntry
		err = untilAnswered(ctx, func() (err error) { e, err = s.snaps.Get(ctx, keys[i]); return err })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("document %s: snapshot %d: %w", id, r, wrap(err))
		}
		var v snapValue
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("%w: document %s: snapshot %d", storage.ErrCorrupt, id, r)
		}
		return storage.Snapshot{Rev: r, Content: v.Text}, v, true, nil
	}
	return storage.Snapshot{}, snapValue{}, false, nil
}

// Snapshot implements storage.Store.
func (s *Store) Snapshot(ctx context.Context, id string, rev int64) (storage.Snapshot, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return storage.Snapshot{}, err
	}
	if rev < 0 {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: snapshot at negative revision %d", storage.ErrInvalid, id, rev)
	}
	m, _, err := s.getMeta(ctx, id)
	if err != nil {
		return storage.Snapshot{}, err
	}
	snap, _, ok, err := s.snapshotAt(ctx, id, m.Gen, rev)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if !ok || snap.Rev < m.Oldest {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: no snapshot at or before revision %d", storage.ErrNotFound, id, rev)
	}
	return snap, nil
}

// SaveSnapshot implements storage.Store.
func (s *Store) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return err
	}
	if !utf8.ValidString(snap.Content) {
		return fmt.Errorf("%w: document %s: snapshot at revision %d is not valid UTF-8", storage.ErrInvalid, id, snap.Rev)
	}
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return err
	}
	if err := storage.CheckSnapshotRev(d, snap.Rev); err != nil {
		return err
	}
	return s.putSnapshot(ctx, id, m.Gen, snap, 0)
}

// putSnapshot saves snap with the log sequence its tail starts from: the
// message holding revision snap.Rev+1, or, with no record after it yet,
// the next message on the log. A caller that knows it passes it as from
// (0: look for it in the log).
func (s *Store) putSnapshot(ctx context.Context, id, gen string, snap storage.Snapshot, from uint64) error {
	if from == 0 {
		var err error
		if from, err = s.tailStart(ctx, id, gen, snap.Rev); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(snapValue{Text: snap.Content, From: from})
	if err := untilAnswered(ctx, func() error { _, err := s.snaps.Put(ctx, snapKey(id, gen, snap.Rev), b); return err }); err != nil {
		return fmt.Errorf("document %s: snapshot %d: %w", id, snap.Rev, wrap(err))
	}
	return nil
}

// Compact implements storage.Store.
func (s *Store) Compact(ctx context.Context, id string, before int64) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return err
	}
	if err := storage.CheckCompact(d, before); err != nil {
		return err
	}
	if before <= d.Oldest {
		return nil
	}
	// The records about to go must be in the exactly-once index: it is
	// all that will be left of them.
	if err := s.catchUpIndex(ctx, id, d, m); err != nil {
		return err
	}
	// A snapshot at before, so that loading and history keep working.
	snap, v, ok, err := s.snapshotAt(ctx, id, m.Gen, before)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: document %s: no snapshot at or before %d", storage.ErrCorrupt, id, before)
	}
	if snap.Rev != before {
		recs, err := s.records(ctx, id, m, snap.Rev, before)
		if err != nil {
			return err
		}
		rope, err := doctype.MustLookup(m.Type).NewDocument(snap.Content)
		if err != nil {
			return fmt.Errorf("%w: document %s: snapshot %d: %v", storage.ErrCorrupt, id, snap.Rev, err)
		}
		for _, r := range recs {
			if err := rope.Apply(r.Op); err != nil {
				return fmt.Errorf("%w: document %s: revision %d does not apply: %v", storage.ErrCorrupt, id, r.Rev, err)
			}
		}
		if err := s.putSnapshot(ctx, id, m.Gen, storage.Snapshot{Rev: before, Content: rope.Content()}, 0); err != nil {
			return err
		}
		_, v, _, err = s.snapshotAt(ctx, id, m.Gen, before)
		if err != nil {
			return err
		}
	}
	if err := s.updateMeta(ctx, id, func(mm *meta) error {
		if mm.Gen != m.Gen {
			return fmt.Errorf("%w: document %s was deleted and created again", storage.ErrConflict, id)
		}
		mm.Oldest = max(mm.Oldest, before)
		return nil
	}); err != nil {
		return err
	}
	// The messages wholly before the new oldest revision, and the
	// snapshots before it, go; the document's last message always stays
	// (it says the head).
	_, last, _, err := s.tail(ctx, id, m.Gen)
	if err != nil {
		return err
	}
	if upTo := min(v.From, last); upTo > 1 {
		if err := s.log.Purge(ctx, jetstream.WithPurgeSubject(s.logSubject(id, m.Gen)), jetstream.WithPurgeSequence(upTo)); err != nil {
			return fmt.Errorf("document %s: purge the log: %w", id, wrap(err))
		}
	}
	keys, err := keysWithPrefix(ctx, s.snaps, scope(id, m.Gen))
	if err != nil {
		return err
	}
	for _, k := range keys {
		r, err := strconv.ParseInt(k[strings.LastIndexByte(k, '.')+1:], 10, 64)
		if err == nil && r < before {
			if err := s.snaps.Purge(ctx, k); err != nil {
				return fmt.Errorf("document %s: %w", id, wrap(err))
			}
		}
	}
	return nil
}
