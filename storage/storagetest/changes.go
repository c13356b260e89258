package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/storage"
)

// changeLogTests are the ChangeLog's part of the suite; a store without a
// change log skips them.
func changeLogTests(su suite) []leaf {
	withLog := func(test func(t *testing.T, s storage.Store, l storage.ChangeLog)) func(*testing.T, storage.Store) {
		return func(t *testing.T, s storage.Store) {
			l := storage.ChangeLogOf(s)
			if l == nil {
				t.Skip("this store keeps no change log")
			}
			test(t, s, l)
		}
	}
	return []leaf{
		{"Kinds", withLog(testChangeKinds)},
		{"Paging", withLog(testChangePaging)},
		{"Wait", withLog(testChangeWait)},
		{"ConcurrentWriters", withLog(testChangeConcurrent)},
		{"Trim", withLog(testChangeTrim)},
		{"Positions", withLog(testChangePositions)},
		{"Restore", withLog(func(t *testing.T, s storage.Store, l storage.ChangeLog) {
			testChangeRestore(t, s, l, su.store(t))
		})},
	}
}

func allChanges(t *testing.T, l storage.ChangeLog, after uint64) []storage.Change {
	t.Helper()
	var out []storage.Change
	for {
		cs, err := l.Changes(context.Background(), after, 3)
		if err != nil {
			t.Fatalf("Changes(%d): %v", after, err)
		}
		if len(cs) == 0 {
			return out
		}
		for _, c := range cs {
			if c.Cursor <= after {
				t.Fatalf("Changes(%d) returned cursor %d", after, c.Cursor)
			}
			after = c.Cursor
		}
		out = append(out, cs...)
	}
}

// describeChange is a change without its cursor and time, to compare.
func describeChange(c storage.Change) string {
	return fmt.Sprintf("%s %s %d..%d %q %q", c.Kind, c.DocID, c.From, c.To, c.Title, c.Type)
}

func testChangeKinds(t *testing.T, s storage.Store, l storage.ChangeLog) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	a := createDoc(t, s, "a", "hello")
	b := createDoc(t, s, "b", "")
	a.commitOps(t, s, ins("1"), ins("2"))
	mustCommit(t, s, a.prepare(ins("3")), b.prepare(ins("x")))
	// A conflicting append writes nothing, and logs nothing.
	stale := storage.Append{DocID: "a", Head: 1, Records: []storage.Record{{Rev: 2, Op: insOp("no"), Time: recordTime(2)}}}
	if err := commitOne(t, s, stale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("stale append: %v, want ErrConflict", err)
	}
	if err := s.SetTitle(ctx, "b", "Bee"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDocument(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	got := allChanges(t, l, 0)
	want := []string{
		`create a 0..0 "Title of a 📝 文書" ""`,
		`create b 0..0 "Title of b 📝 文書" ""`,
		`commit a 0..2 "" ""`,
		`commit a 2..3 "" ""`,
		`commit b 0..1 "" ""`,
		`rename b 0..0 "Bee" ""`,
		`delete a 0..0 "" ""`,
	}
	if h, ok := l.(storage.HistoryBound); ok && h.BoundByHistory() {
		// The log is the documents' history: a deleted document's
		// commits went with it.
		var kept []storage.Change
		for _, c := range got {
			if c.DocID != "a" || c.Kind != storage.ChangeCommit {
				kept = append(kept, c)
			}
		}
		if len(kept) != 5 {
			t.Fatalf("got %v, want a's creation and deletion and all of b's changes", got)
		}
		want = []string{want[0], want[1], want[4], want[5], want[6]}
		for i, c := range kept {
			if d := describeChange(c); d != want[i] {
				t.Errorf("change %d: %s, want %s", i, d, want[i])
			}
		}
		return
	}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %v", len(got), len(want), got)
	}
	for i, c := range got {
		// The two appends of one Commit may be logged in either order.
		if d := describeChange(c); d != want[i] && !(i == 3 || i == 4) {
			t.Errorf("change %d: %s, want %s", i, d, want[i])
		}
		if c.Kind != storage.ChangeCommit && (c.Time.Before(before) || c.Time.After(time.Now().Add(time.Hour))) {
			t.Errorf("change %d (%s): time %v", i, describeChange(c), c.Time)
		}
	}
	if d3, d4 := describeChange(got[3]), describeChange(got[4]); !(d3 == want[3] && d4 == want[4] || d3 == want[4] && d4 == want[3]) {
		t.Errorf("changes 3, 4: %s, %s; want %s and %s", d3, d4, want[3], want[4])
	}
	if !got[2].Time.Equal(recordTime(2)) {
		t.Errorf("a commit's time is %v, want its last record's %v", got[2].Time, recordTime(2))
	}
	last, err := l.Last(ctx)
	if err != nil || last != got[len(got)-1].Cursor {
		t.Errorf("Last = %d, %v; want %d", last, err, got[len(got)-1].Cursor)
	}
}

func testChangePaging(t *testing.T, s storage.Store, l storage.ChangeLog) {
	ctx := context.Background()
	m := createDoc(t, s, "p", "")
	for i := range 10 {
		m.commitOps(t, s, ins(fmt.Sprint(i%10)))
	}
	all := allChanges(t, l, 0)
	if len(all) != 11 {
		t.Fatalf("%d changes, want 11", len(all))
	}
	page, err := l.Changes(ctx, all[4].Cursor, 2)
	if err != nil || len(page) != 2 || page[0] != all[5] || page[1] != all[6] {
		t.Fatalf("Changes(after 5th, 2) = %v, %v; want %v", page, err, all[5:7])
	}
	page, err = l.Changes(ctx, all[10].Cursor, 0)
	if err != nil || len(page) != 0 {
		t.Fatalf("Changes(after the last) = %v, %v; want none", page, err)
	}
}

func testChangeWait(t *testing.T, s storage.Store, l storage.ChangeLog) {
	ctx := context.Background()
	m := createDoc(t, s, "w", "")
	last, err := l.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(ctx, last-1); err != nil {
		t.Fatalf("Wait for a change that is there: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Wait(cctx, last); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with nothing new and a cancelled context: %v", err)
	}
	woke := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		woke <- l.Wait(wctx, last)
	}()
	m.commitOps(t, s, ins("x"))
	if err := <-woke; err != nil {
		t.Fatalf("Wait across a commit: %v", err)
	}
	cs, err := l.Changes(ctx, last, 10)
	if err != nil || len(cs) != 1 || cs[0].Kind != storage.ChangeCommit {
		t.Fatalf("after Wait: %v, %v", cs, err)
	}
}

// testChangeConcurrent has writers commit to their own documents while a
// reader follows the log from its last cursor: it must see every commit
// exactly once, never a cursor behind one it has seen.
func testChangeConcurrent(t *testing.T, s storage.Store, l storage.ChangeLog) {
	ctx := context.Background()
	const writers, commits = 4, 40
	start, err := l.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	models := make([]*docModel, writers)
	for i := range models {
		models[i] = createDoc(t, s, fmt.Sprintf("w%d", i), "")
	}
	after, _ := l.Last(ctx)
	var wg sync.WaitGroup
	for _, m := range models {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range commits {
				a := m.prepare(ins(fmt.Sprint(i % 10)))
				res, err := s.Commit(ctx, []storage.Append{a})
				if err != nil || res[0] != nil {
					t.Errorf("commit: %v %v", err, res)
					return
				}
				m.accept(t, a)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	defer wg.Wait()            // a failure below must not leave writers behind the test
	seen := map[string]int64{} // document -> the head its commits reached
	count := 0
	read := func() {
		cs, err := l.Changes(ctx, after, 7)
		if err != nil {
			t.Fatalf("Changes after %d: %v", after, err)
		}
		for _, c := range cs {
			if c.Cursor <= after {
				t.Fatalf("cursor %d after %d", c.Cursor, after)
			}
			after = c.Cursor
			if c.From != seen[c.DocID] {
				t.Fatalf("%s: commit from %d, the last seen reached %d (a change was missed or is out of order)", describeChange(c), c.From, seen[c.DocID])
			}
			seen[c.DocID] = c.To
			count++
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		read()
	}
	read()
	for count < writers*commits {
		n := count
		read()
		if count == n {
			break
		}
	}
	if count != writers*commits {
		t.Fatalf("read %d commits, want %d", count, writers*commits)
	}
	if start >= after {
		t.Fatalf("cursors did not advance: %d, then %d", start, after)
	}
}

func testChangeTrim(t *testing.T, s storage.Store, l storage.ChangeLog) {
	if h, ok := l.(storage.HistoryBound); ok && h.BoundByHistory() {
		t.Skip("this store's change log is the documents' history: Trim does nothing")
	}
	ctx := context.Background()
	// Renames are logged at the time they are made (commits at their
	// records' times, which the suite sets in the past).
	createDoc(t, s, "t", "")
	if err := s.SetTitle(ctx, "t", "one"); err != nil {
		t.Fatal(err)
	}
	old := allChanges(t, l, 0)
	cut := time.Now().Add(time.Millisecond)
	for !time.Now().After(cut) {
		time.Sleep(time.Millisecond)
	}
	if err := s.SetTitle(ctx, "t", "two"); err != nil {
		t.Fatal(err)
	}
	all := allChanges(t, l, 0)
	kept, err := l.Trim(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if kept != all[len(old)].Cursor {
		t.Errorf("Trim kept from %d, want %d", kept, all[len(old)].Cursor)
	}
	if _, err := l.Changes(ctx, 0, 10); !errors.Is(err, storage.ErrCompacted) {
		t.Errorf("Changes from before the trim: %v, want ErrCompacted", err)
	}
	cs, err := l.Changes(ctx, old[len(old)-1].Cursor, 10)
	if err != nil || len(cs) != 1 || cs[0] != all[len(old)] {
		t.Errorf("Changes from the last trimmed: %v, %v; want %v", cs, err, all[len(old):])
	}
	// Trimming everything keeps cursors going up.
	if _, err := l.Trim(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	last := all[len(all)-1].Cursor
	if cs, err := l.Changes(ctx, last, 10); err != nil || len(cs) != 0 {
		t.Errorf("Changes after all were trimmed: %v, %v", cs, err)
	}
	if err := s.SetTitle(ctx, "t", "three"); err != nil {
		t.Fatal(err)
	}
	if cs, err := l.Changes(ctx, last, 10); err != nil || len(cs) != 1 || cs[0].Cursor <= last {
		t.Errorf("a change after trimming all: %v, %v", cs, err)
	}
}

func testChangePositions(t *testing.T, s storage.Store, l storage.ChangeLog) {
	ctx := context.Background()
	if _, found, err := l.Position(ctx, "hook-1"); err != nil || found {
		t.Fatalf("Position of a new reader: found %v, %v", found, err)
	}
	if err := l.SetPosition(ctx, "hook-1", 42); err != nil {
		t.Fatal(err)
	}
	if err := l.SetPosition(ctx, "hook-2", 7); err != nil {
		t.Fatal(err)
	}
	if c, found, err := l.Position(ctx, "hook-1"); err != nil || !found || c != 42 {
		t.Fatalf("Position = %d, %v, %v; want 42", c, found, err)
	}
	if err := l.SetPosition(ctx, "", 1); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("SetPosition with no name: %v, want ErrInvalid", err)
	}
}

func testChangeRestore(t *testing.T, src storage.Store, _ storage.ChangeLog, dst storage.Store) {
	ps, ok := src.(storage.Portable)
	pd, ok2 := dst.(storage.Portable)
	if !ok || !ok2 {
		t.Skip("not Portable")
	}
	m := createDoc(t, src, "r", "x")
	m.commitOps(t, src, ins("y"))
	if _, err := storage.Copy(context.Background(), pd, ps, "r"); err != nil {
		t.Fatal(err)
	}
	// Copy imports the document at its oldest revision and commits the
	// history after it.
	got := allChanges(t, storage.ChangeLogOf(dst), 0)
	if len(got) != 2 || describeChange(got[0]) != `restore r 0..0 "Title of r 📝 文書" ""` || describeChange(got[1]) != `commit r 0..1 "" ""` {
		t.Fatalf("changes after a copy: %v, want the restore of r and its commit", got)
	}
}
