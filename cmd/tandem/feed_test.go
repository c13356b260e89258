package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/tandemdocs/tandem/feed"
)

// feedFollower reads a server's change feed (GET /api/changes) as an
// integrator would: from the last cursor it handled, across kills and
// restarts of the server, de-duplicating by cursor.
type feedFollower struct {
	mu     sync.Mutex
	cursor uint64
	events map[uint64]feed.Event
	order  []uint64 // cursors, in the order first received
	dups   int      // events received again (at least once: allowed)
}

func newFeedFollower() *feedFollower { return &feedFollower{events: map[uint64]feed.Event{}} }

// poll asks for one page after the cursor (waiting up to wait seconds)
// and takes it; it returns how many events came.
func (f *feedFollower) poll(ctx context.Context, base string, wait int) (int, error) {
	f.mu.Lock()
	after := f.cursor
	f.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/changes?after=%d&limit=1000&wait=%d", base, after, wait), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("changes: %s: %s", resp.Status, buf.Bytes())
	}
	var page struct {
		Events []feed.Event
		Next   uint64
	}
	if err := json.Unmarshal(buf.Bytes(), &page); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range page.Events {
		if _, seen := f.events[e.Cursor]; seen {
			f.dups++
			continue
		}
		f.events[e.Cursor] = e
		f.order = append(f.order, e.Cursor)
	}
	f.cursor = max(f.cursor, page.Next)
	return len(page.Events), nil
}

// follow polls (long polls) until a request fails: the server was
// killed.
func (f *feedFollower) follow(base string) {
	for {
		if _, err := f.poll(context.Background(), base, 2); err != nil {
			return
		}
	}
}

// catchUp reads until the feed has nothing more.
func (f *feedFollower) catchUp(t *testing.T, base string) {
	t.Helper()
	for {
		n, err := f.poll(context.Background(), base, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// check compares the ops the feed gave for document id with its log up to
// head: the same records, each once, in revision order.
func (f *feedFollower) check(t *testing.T, base, id string, head int64) {
	t.Helper()
	recs, err := getLog(base, id, head)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ops []feed.Op
	for _, c := range f.order {
		if e := f.events[c]; e.Doc == id && e.Kind == feed.KindCommit {
			if e.OpsMissing {
				t.Fatalf("%s: the commit at %d has its ops missing (nothing is compacted here)", id, e.Rev)
			}
			ops = append(ops, e.Ops...)
		}
	}
	if len(ops) != len(recs) {
		t.Fatalf("%s: the feed gave %d ops, the log has %d (head %d)", id, len(ops), len(recs), head)
	}
	for i, op := range ops {
		r := recs[i]
		if op.Rev != r.Rev || op.Source != r.Src || !bytes.Equal(compactJSON(op.Op), compactJSON(r.Op)) {
			t.Fatalf("%s: the feed's op %d is rev %d from %s %s; the log's is rev %d from %s %s", id, i, op.Rev, op.Source, op.Op, r.Rev, r.Src, r.Op)
		}
	}
}

func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
