package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// The tail cache: each document's last log message (its head) and recent
// revision-to-sequence ends, so that appends and reads of recent records
// need no lookup of the stream.

type tailCache struct {
	gen  string
	head int64
	seq  uint64
	// ends are the last messages this node saw end (head → sequence):
	// a read of the records after one of them starts at the message
	// after it instead of at a snapshot (a node that lost a race reads
	// only the few messages it missed).
	ends []tailEnd
}

type tailEnd struct {
	head int64
	seq  uint64
}

const maxEnds = 64

// tail is the last message on a document's subject: its head and sequence
// (0, 0 when it has none), and its time.
func (s *Store) tail(ctx context.Context, id, gen string) (head int64, seq uint64, updated time.Time, err error) {
	var msg *jetstream.RawStreamMsg
	err = untilAnswered(ctx, func() (err error) { msg, err = s.log.GetLastMsgForSubject(ctx, s.logSubject(id, gen)); return err })
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, time.Time{}, nil
	}
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	var e entry
	if err := json.Unmarshal(msg.Data, &e); err != nil || len(e.Records) == 0 {
		return 0, 0, time.Time{}, fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, msg.Sequence)
	}
	last := e.Records[len(e.Records)-1]
	return last.Rev, msg.Sequence, last.Time, nil
}

func (s *Store) noteTail(id string, t tailCache) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	if t.seq == 0 {
		// No message yet: nothing to expect that a deleted and created
		// again document could not also match.
		delete(s.tails, id)
		return
	}
	old, ok := s.tails[id]
	if ok && old.gen == t.gen {
		t.ends = old.ends
		if old.seq > t.seq {
			t.head, t.seq = old.head, old.seq // keep the newest
		}
	}
	t.ends = noteEnd(t.ends, tailEnd{t.head, t.seq})
	s.tails[id] = t
}

func noteEnd(ends []tailEnd, e tailEnd) []tailEnd {
	for _, x := range ends {
		if x == e {
			return ends
		}
	}
	if len(ends) == maxEnds {
		ends = append(ends[:0:0], ends[1:]...)
	}
	return append(ends, e)
}

// noteEnd remembers that message seq ends at revision head.
func (s *Store) noteEnd(id, gen string, e tailEnd) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	if !ok || t.gen != gen {
		return
	}
	t.ends = noteEnd(t.ends, e)
	s.tails[id] = t
}

// startAfter returns the log sequence to read the records after from:
// the message after the last one seen to end at or before from (0: not
// known).
func (s *Store) startAfter(id, gen string, from int64) uint64 {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	if !ok || t.gen != gen {
		return 0
	}
	var best tailEnd
	for _, e := range t.ends {
		if e.head <= from && e.head >= best.head && e.seq > best.seq {
			best = e
		}
	}
	if best.seq == 0 {
		return 0
	}
	return best.seq + 1
}

func (s *Store) cachedTail(id string) (tailCache, bool) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	return t, ok
}

func (s *Store) forgetTail(id string) {
	s.tailsMu.Lock()
	delete(s.tails, id)
	s.tailsMu.Unlock()
}

// awaitTailPast waits (briefly: ctx and a second bound it) until the
// document's last message is not the one at seq.
func (s *Store) awaitTailPast(ctx context.Context, id, gen string, seq uint64) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		if _, last, _, err := s.tail(ctx, id, gen); err != nil || last != seq {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// tailStart finds the log sequence of the message holding revision rev+1
// (or, when there is none yet, the one after the last message read),
// reading forward from the snapshot before rev. Not the log's tail at the
// time: another writer may append rev+1 between the read and that.
func (s *Store) tailStart(ctx context.Context, id, gen string, rev int64) (uint64, error) {
	start := uint64(1)
	if _, v, ok, err := s.snapshotAt(ctx, id, gen, rev); err != nil {
		return 0, err
	} else if ok {
		start = v.From
	}
	from, last := uint64(0), uint64(0)
	err := s.scan(ctx, id, gen, start, func(r record, seq uint64, _ bool) bool {
		last = seq
		if r.Rev > rev {
			from = seq
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case from > 0:
		return from, nil
	case last > 0:
		return last + 1, nil
	}
	return start, nil
}
