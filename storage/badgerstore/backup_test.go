package badgerstore_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// ---------------------------------------------------------------------------
// Helpers shared by the tests and benchmarks of this package.

// pieces are what random inserts are made of: ASCII, accents, combining
// marks, CJK, astral emoji and a flag (two code points).
var pieces = []string{"a", "b", "z", " ", "\n", "é", "e\u0301", "漢", "字", "😀", "🇯🇵", "👍🏽", "x", "y", "Ω"}

// randomOp returns a random normalized op that applies to a text of n code
// points: an insert, a delete, or a replacement at a random place. Deletes
// get likelier as the text grows past maxLen code points, so texts stay
// around that size.
func randomOp(rng *rand.Rand, n int, maxLen int) ot.Op {
	pos := rng.IntN(n + 1)
	del := 0
	if n > 0 && (rng.IntN(3) == 0 || n > maxLen && rng.IntN(2) == 0) {
		del = 1 + rng.IntN(min(8, n-pos+1))
		if pos+del > n {
			del = n - pos
		}
	}
	var ins strings.Builder
	if del == 0 || rng.IntN(2) == 0 {
		for k := 1 + rng.IntN(6); k > 0; k-- {
			ins.WriteString(pieces[rng.IntN(len(pieces))])
		}
	}
	var op ot.Op
	if pos > 0 {
		op = append(op, ot.Skip(pos))
	}
	if ins.Len() > 0 {
		op = append(op, ot.Insert(ins.String()))
	}
	if del > 0 {
		op = append(op, ot.Delete(del))
	}
	if len(op) == 0 || (len(op) == 1 && pos > 0) {
		op = append(op, ot.Insert("!"))
	}
	norm, err := ot.Normalize(op)
	if err != nil {
		panic(fmt.Sprintf("randomOp built an invalid op %v: %v", op, err))
	}
	return norm
}

// docGen writes random history to one document and tracks its text.
type docGen struct {
	id        string
	head      int64
	rope      *ot.Rope
	rng       *rand.Rand
	source    string // "" for no exactly-once entries
	seq       uint64
	user      string
	snapEvery int64 // 0: no snapshots
	maxLen    int
}

// next builds an append of n records on g.head and advances g as if it was
// committed. When the new revisions cross a multiple of snapEvery, the
// append carries a snapshot at the last such multiple.
func (g *docGen) next(n int) storage.Append {
	a := storage.Append{DocID: g.id, Head: g.head}
	now := time.Now()
	for i := 0; i < n; i++ {
		op := randomOp(g.rng, g.rope.Len(), g.maxLen)
		if err := g.rope.Apply(op); err != nil {
			panic(fmt.Sprintf("%s: op %v does not apply to %q: %v", g.id, op, g.text(), err))
		}
		g.head++
		r := storage.Record{Rev: g.head, Op: doctype.PlainOp(op), User: g.user, Time: now}
		if g.source != "" {
			g.seq++
			r.Source, r.Seq = g.source, g.seq
		}
		a.Records = append(a.Records, r)
		if g.snapEvery > 0 && g.head%g.snapEvery == 0 {
			a.Snapshot = &storage.Snapshot{Rev: g.head, Content: g.text()}
		}
	}
	return a
}

func (g *docGen) text() string { return g.rope.String() }

// newGen returns a generator for document id, whose text is text: every
// record has a source and a user, and every 10th revision a snapshot.
func newGen(id string, seed uint64, text string) *docGen {
	rope, err := ot.NewRope(text)
	if err != nil {
		panic(err)
	}
	return &docGen{id: id, rope: rope, rng: rand.New(rand.NewPCG(seed, 0x7a6d)), source: "src-" + id, user: "u-" + id, snapEvery: 10, maxLen: 400}
}

// commitOK commits appends and fails the test unless every one of them was
// committed. It may be called from any goroutine (it uses t.Error).
func commitOK(t testing.TB, s storage.Store, appends ...storage.Append) bool {
	t.Helper()
	res, err := s.Commit(context.Background(), appends)
	if err != nil {
		t.Errorf("Commit: %v", err)
		return false
	}
	for i, e := range res {
		if e != nil {
			t.Errorf("Commit: append %d (%s at %d): %v", i, appends[i].DocID, appends[i].Head, e)
			return false
		}
	}
	return true
}

func sameRecord(a, b storage.Record) bool {
	return a.Rev == b.Rev && a.Op.String() == b.Op.String() && a.Source == b.Source &&
		a.Seq == b.Seq && a.User == b.User && a.Time.Equal(b.Time)
}

// Raw key layout of keys.go, for tests that look at or damage the database
// under the store. Keys under a document hold its generation after the id;
// rawKey leaves it out, and withGen puts it in once it is known.
func rawKey(prefix, id string, rev int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix+id+"\x00"), uint64(rev))
}

// withGen inserts gen after the id of a record, snapshot or exactly-once key
// made without it; other keys are returned as they are.
func withGen(key []byte, gen uint64) []byte {
	if len(key) < 2 || !strings.Contains("r/s/o/", string(key[:2])) {
		return key
	}
	i := bytes.IndexByte(key, 0)
	out := append([]byte{}, key[:i+1]...)
	out = binary.BigEndian.AppendUint64(out, gen)
	return append(out, key[i+1:]...)
}

// rawGen reads a document's generation from its metadata.
func rawGen(t *testing.T, db *badger.DB, id string) uint64 {
	t.Helper()
	var meta struct{ Gen uint64 }
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("d/" + id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &meta) })
	})
	if err != nil || meta.Gen == 0 {
		t.Fatalf("generation of %s: %v (%d)", id, err, meta.Gen)
	}
	return meta.Gen
}

// rawCount counts the keys of kind prefix ("r/", "s/", "o/") of a document
// and returns the highest revision among them ("r/" and "s/" only).
func rawCount(t *testing.T, db *badger.DB, prefix, id string) (n int, maxRev int64) {
	t.Helper()
	p := []byte(prefix + id + "\x00")
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			if k := it.Item().Key(); prefix != "o/" && len(k) == len(p)+16 {
				maxRev = max(maxRev, int64(binary.BigEndian.Uint64(k[len(p)+8:])))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("raw scan of %s%s: %v", prefix, id, err)
	}
	return n, maxRev
}

func openDir(t testing.TB, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: quietLogger(), GCInterval: -1})
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	return s
}

// allDocs lists every document of s.
func allDocs(t testing.TB, s storage.Store) []storage.Document {
	t.Helper()
	var all []storage.Document
	after := ""
	for {
		docs, next, err := s.ListDocuments(context.Background(), storage.ListOptions{After: after, Limit: 7})
		if err != nil {
			t.Fatalf("ListDocuments: %v", err)
		}
		all = append(all, docs...)
		if next == "" {
			return all
		}
		after = next
	}
}

// snapshotRevs walks a document's snapshots from the newest down through
// Snapshot(rev) and returns them, newest first.
func snapshotRevs(t testing.TB, s storage.Store, id string, oldest, head int64) []storage.Snapshot {
	t.Helper()
	var snaps []storage.Snapshot
	for rev := head; rev >= oldest; {
		snap, err := s.Snapshot(context.Background(), id, rev)
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("%s: Snapshot(%d): %v", id, rev, err)
		}
		if snap.Rev > rev {
			t.Fatalf("%s: Snapshot(%d) returned one at %d", id, rev, snap.Rev)
		}
		snaps = append(snaps, snap)
		rev = snap.Rev - 1
	}
	return snaps
}

// sameState checks that got holds exactly want's documents: metadata,
// records, snapshots, text and exactly-once entries.
func sameState(t *testing.T, want, got *badgerstore.Store) {
	t.Helper()
	ctx := context.Background()
	wd, gd := allDocs(t, want), allDocs(t, got)
	if len(wd) != len(gd) {
		t.Errorf("%d documents, want %d", len(gd), len(wd))
	}
	for i := 0; i < min(len(wd), len(gd)); i++ {
		w, g := wd[i], gd[i]
		if w.ID != g.ID || w.Title != g.Title || w.Head != g.Head || w.Oldest != g.Oldest ||
			!w.Created.Equal(g.Created) || !w.Updated.Equal(g.Updated) {
			t.Errorf("document %d: %+v, want %+v", i, g, w)
			continue
		}
		wr, err := want.Records(ctx, w.ID, w.Oldest, w.Head)
		if err != nil {
			t.Fatalf("source %s: Records: %v", w.ID, err)
		}
		gr, err := got.Records(ctx, g.ID, g.Oldest, g.Head)
		if err != nil {
			t.Errorf("%s: Records: %v", g.ID, err)
			continue
		}
		for j := range wr {
			if !sameRecord(wr[j], gr[j]) {
				t.Errorf("%s: record %d: %+v, want %+v", g.ID, wr[j].Rev, gr[j], wr[j])
				break
			}
			if wr[j].Source != "" {
				rev, found, err := got.LookupSubmission(ctx, g.ID, wr[j].Source, wr[j].Seq)
				if err != nil || !found || rev != wr[j].Rev {
					t.Errorf("%s: LookupSubmission(%q, %d) = %d, %v, %v; want %d", g.ID, wr[j].Source, wr[j].Seq, rev, found, err, wr[j].Rev)
					break
				}
			}
		}
		ws, gs := snapshotRevs(t, want, w.ID, w.Oldest, w.Head), snapshotRevs(t, got, g.ID, g.Oldest, g.Head)
		if fmt.Sprint(ws) != fmt.Sprint(gs) {
			t.Errorf("%s: snapshots differ:\n got %v\nwant %v", g.ID, gs, ws)
		}
		_, wt, err := storage.Load(ctx, want, w.ID)
		if err != nil {
			t.Fatalf("source %s: Load: %v", w.ID, err)
		}
		_, gt, err := storage.Load(ctx, got, g.ID)
		if err != nil {
			t.Errorf("%s: Load: %v", g.ID, err)
		} else if gt.Content() != wt.Content() {
			t.Errorf("%s: text %q, want %q", g.ID, gt.Content(), wt.Content())
		}
	}
	for _, prefix := range []string{"r/", "s/", "o/"} {
		for _, d := range wd {
			wn, _ := rawCount(t, want.DB(), prefix, d.ID)
			gn, _ := rawCount(t, got.DB(), prefix, d.ID)
			if wn != gn {
				t.Errorf("%s: %d keys under %s, want %d", d.ID, gn, prefix, wn)
			}
		}
	}
}

func restoreOpen(t *testing.T, backups ...[]byte) *badgerstore.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	rs := make([]io.Reader, len(backups))
	for i, b := range backups {
		rs[i] = bytes.NewReader(b)
	}
	if err := badgerstore.Restore(dir, quietLogger(), rs...); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	s := openDir(t, dir)
	t.Cleanup(func() { s.Close() })
	return s
}

func backupOf(t *testing.T, s *badgerstore.Store, since uint64) ([]byte, uint64) {
	t.Helper()
	var buf bytes.Buffer
	next, err := s.Backup(context.Background(), &buf, since)
	if err != nil {
		t.Fatalf("Backup(since %d): %v", since, err)
	}
	return buf.Bytes(), next
}

func createDoc(t testing.TB, s storage.Store, id, text string) {
	t.Helper()
	if err := s.CreateDocument(context.Background(), storage.Document{ID: id, Title: "T " + id}, text); err != nil {
		t.Fatalf("CreateDocument(%s): %v", id, err)
	}
}

// ---------------------------------------------------------------------------

// TestBackupWhileCommitting takes a backup while several goroutines commit
// to several documents, and checks that the restored store is one
// consistent cut of the source: a prefix of every document's history, with
// nothing torn, no group commit split, and the exactly-once index cut at the
// same place.
func TestBackupWhileCommitting(t *testing.T) {
	ctx := context.Background()
	src := openTemp(t)
	defer src.Close()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	writers := []string{"w0", "w1", "w2"}
	for _, id := range append(writers, "pa", "pb") {
		createDoc(t, src, id, "start "+id+" 😀")
	}
	var (
		stop    atomic.Bool
		commits atomic.Int64
		wg      sync.WaitGroup
	)
	for i, id := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGen(id, seed+uint64(i), "start "+id+" 😀")
			for !stop.Load() {
				if !commitOK(t, src, g.next(1+g.rng.IntN(3))) {
					return
				}
				commits.Add(1)
			}
		}()
	}
	// Pairs: every Commit appends 2 records to pa and 3 to pb, so a cut that
	// splits a group commit shows as heads that are not 2k and 3k.
	wg.Add(1)
	go func() {
		defer wg.Done()
		ga, gb := newGen("pa", seed+10, "start pa 😀"), newGen("pb", seed+11, "start pb 😀")
		for !stop.Load() {
			if !commitOK(t, src, ga.next(2), gb.next(3)) {
				return
			}
			commits.Add(1)
		}
	}()
	// Documents created one after the other: the cut must hold a prefix of them.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			id := fmt.Sprintf("late-%04d", i)
			if err := src.CreateDocument(ctx, storage.Document{ID: id}, "late"); err != nil {
				t.Errorf("CreateDocument: %v", err)
				return
			}
			g := newGen(id, seed+100+uint64(i), "late")
			if !commitOK(t, src, g.next(2)) {
				return
			}
			commits.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	stopAll := func() { stop.Store(true); wg.Wait() }
	defer stopAll()

	waitFor := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for commits.Load() < n && !t.Failed() {
			if time.Now().After(deadline) {
				t.Fatalf("only %d commits after 30 s", commits.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(1500)
	headsBefore := map[string]int64{}
	for _, d := range allDocs(t, src) {
		headsBefore[d.ID] = d.Head
	}
	c0 := commits.Load()
	start := time.Now()
	backup, _ := backupOf(t, src, 0)
	took := time.Since(start)
	c1 := commits.Load()
	headsAfter := map[string]int64{}
	for _, d := range allDocs(t, src) {
		headsAfter[d.ID] = d.Head
	}
	waitFor(c1 + 200)
	stopAll()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("backup of %d bytes took %v; %d commits completed during it; %d commits in all",
		len(backup), took, c1-c0, commits.Load())

	dst := restoreOpen(t, backup)
	restored := map[string]storage.Document{}
	for _, d := range allDocs(t, dst) {
		restored[d.ID] = d
	}
	final := allDocs(t, src)
	cut := 0 // documents whose restored head is below the source's final head
	lateMissing := ""
	for _, sd := range final {
		rd, ok := restored[sd.ID]
		if !ok {
			if _, before := headsBefore[sd.ID]; before {
				t.Errorf("%s existed before the backup began and is not in it", sd.ID)
			}
			if lateMissing == "" || sd.ID < lateMissing {
				lateMissing = sd.ID
			}
			continue
		}
		delete(restored, sd.ID)
		h := rd.Head
		if h > sd.Head || h < headsBefore[sd.ID] || (headsAfter[sd.ID] > 0 && h > headsAfter[sd.ID]) {
			t.Errorf("%s: restored head %d outside [head before backup %d, head after %d], final %d",
				sd.ID, h, headsBefore[sd.ID], headsAfter[sd.ID], sd.Head)
			continue
		}
		if h < sd.Head {
			cut++
		}
		want, err := src.Records(ctx, sd.ID, 0, h)
		if err != nil {
			t.Fatalf("source %s: Records(0, %d): %v", sd.ID, h, err)
		}
		got, err := dst.Records(ctx, sd.ID, 0, h)
		if err != nil {
			t.Errorf("restored %s: Records(0, %d): %v", sd.ID, h, err)
			continue
		}
		for i := range want {
			if !sameRecord(want[i], got[i]) {
				t.Errorf("%s: restored record %d = %+v, source has %+v", sd.ID, want[i].Rev, got[i], want[i])
				break
			}
			rev, found, err := dst.LookupSubmission(ctx, sd.ID, want[i].Source, want[i].Seq)
			if err != nil || !found || rev != want[i].Rev {
				t.Errorf("%s: restored LookupSubmission(%q, %d) = %d, %v, %v; want %d",
					sd.ID, want[i].Source, want[i].Seq, rev, found, err, want[i].Rev)
				break
			}
		}
		wt, err := storage.ContentAt(ctx, src, sd.ID, h)
		if err != nil {
			t.Fatalf("source %s: TextAt(%d): %v", sd.ID, h, err)
		}
		if gt, err := storage.ContentAt(ctx, dst, sd.ID, h); err != nil || gt != wt {
			t.Errorf("%s: restored TextAt(%d) = %q, %v; source has %q", sd.ID, h, gt, err, wt)
		}
		if _, lt, err := storage.Load(ctx, dst, sd.ID); err != nil || lt.Content() != wt {
			t.Errorf("%s: restored Load: %v (text equal: %v)", sd.ID, err, err == nil && lt.Content() == wt)
		}
		// Nothing after the cut: no record, snapshot or exactly-once entry.
		if _, err := dst.Records(ctx, sd.ID, 0, h+1); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: restored Records(0, %d) past the head: %v, want ErrInvalid", sd.ID, h+1, err)
		}
		if n, maxRev := rawCount(t, dst.DB(), "r/", sd.ID); int64(n) != h || maxRev != h {
			t.Errorf("%s: restored store has %d record keys up to %d, want %d", sd.ID, n, maxRev, h)
		}
		if _, maxRev := rawCount(t, dst.DB(), "s/", sd.ID); maxRev > h {
			t.Errorf("%s: restored store has a snapshot at %d past its head %d", sd.ID, maxRev, h)
		}
		if h < sd.Head {
			later, err := src.Records(ctx, sd.ID, h, sd.Head)
			if err != nil {
				t.Fatalf("source %s: Records(%d, %d): %v", sd.ID, h, sd.Head, err)
			}
			for _, r := range later {
				if _, found, err := dst.LookupSubmission(ctx, sd.ID, r.Source, r.Seq); err != nil || found {
					t.Errorf("%s: restored store knows submission %q/%d of revision %d past its head %d (err %v)",
						sd.ID, r.Source, r.Seq, r.Rev, h, err)
					break
				}
			}
			if n, _ := rawCount(t, dst.DB(), "o/", sd.ID); int64(n) != h {
				t.Errorf("%s: restored store has %d exactly-once entries, want %d", sd.ID, n, h)
			}
		}
	}
	for id := range restored {
		t.Errorf("restored store has %s, which the source never had", id)
	}
	// The documents created in sequence: those restored are a prefix.
	for _, sd := range final {
		if strings.HasPrefix(sd.ID, "late-") && lateMissing != "" && sd.ID > lateMissing {
			if _, err := dst.Document(ctx, sd.ID); err == nil {
				t.Errorf("restored store has %s but not the earlier %s", sd.ID, lateMissing)
			}
		}
	}
	pa, errA := dst.Document(ctx, "pa")
	pb, errB := dst.Document(ctx, "pb")
	if errA != nil || errB != nil {
		t.Fatalf("restored pa, pb: %v, %v", errA, errB)
	}
	if pa.Head%2 != 0 || pb.Head%3 != 0 || pa.Head/2 != pb.Head/3 {
		t.Errorf("group commits torn by the backup: pa at %d (%d pairs), pb at %d (%d pairs)", pa.Head, pa.Head/2, pb.Head, pb.Head/3)
	}
	if cut == 0 {
		t.Errorf("every restored document is at the source's final head: the backup did not cut anything (test is vacuous)")
	}
	t.Logf("restored heads: pa %d, pb %d; %d documents cut below their final head", pa.Head, pb.Head, cut)
}

// TestBackupIncremental restores a full backup followed by incremental ones
// and expects exactly the source's state at the last backup, including a
// commit made right after a backup, a deletion, a compaction and a new
// document.
func TestBackupIncremental(t *testing.T) {
	ctx := context.Background()
	src := openTemp(t)
	defer src.Close()
	gens := map[string]*docGen{}
	for i, id := range []string{"a", "b", "c", "gone"} {
		createDoc(t, src, id, "")
		gens[id] = newGen(id, uint64(i), "")
	}
	for i := 0; i < 30; i++ {
		for _, id := range []string{"a", "b", "c", "gone"} {
			commitOK(t, src, gens[id].next(1+i%4))
		}
	}
	full, next1 := backupOf(t, src, 0)
	t.Logf("full backup: %d bytes, next since %d", len(full), next1)
	{
		dst := restoreOpen(t, full)
		sameState(t, src, dst)
	}

	// Right after the backup: one single commit (it gets the very next
	// version), then more of everything.
	commitOK(t, src, gens["a"].next(1))
	incr1, next2 := backupOf(t, src, next1)
	t.Logf("incremental 1 (one commit): %d bytes, next since %d", len(incr1), next2)
	t.Run("OneCommitAfterFull", func(t *testing.T) {
		sameState(t, src, restoreOpen(t, full, incr1))
	})

	for i := 0; i < 20; i++ {
		commitOK(t, src, gens["a"].next(2), gens["b"].next(1))
	}
	if err := src.DeleteDocument(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := src.Compact(ctx, "c", 50); err != nil {
		t.Fatal(err)
	}
	createDoc(t, src, "new", "né")
	gens["new"] = newGen("new", 9, "né")
	commitOK(t, src, gens["new"].next(5))
	incr2, next3 := backupOf(t, src, next2)
	t.Logf("incremental 2: %d bytes, next since %d", len(incr2), next3)
	t.Run("DeleteCompactCreate", func(t *testing.T) {
		sameState(t, src, restoreOpen(t, full, incr1, incr2))
	})

	// Nothing changed: an empty incremental, and the same since comes back.
	incr3, next4 := backupOf(t, src, next3)
	if next4 != next3 {
		t.Errorf("backup with no change returned since %d, want %d", next4, next3)
	}
	commitOK(t, src, gens["b"].next(3))
	incr4, _ := backupOf(t, src, next4)
	t.Run("AfterEmptyIncremental", func(t *testing.T) {
		sameState(t, src, restoreOpen(t, full, incr1, incr2, incr3, incr4))
	})
}

// TestRestoreRefuses checks what Restore does with a directory in use and
// with files that are not whole Tandem backups: an error every time, never a
// panic and never a store that looks fine.
func TestRestoreRefuses(t *testing.T) {
	src := openTemp(t)
	defer src.Close()
	createDoc(t, src, "d", "hello")
	g := newGen("d", 1, "hello")
	for i := 0; i < 50; i++ {
		commitOK(t, src, g.next(3))
	}
	full, _ := backupOf(t, src, 0)

	try := func(t *testing.T, dir string, backups ...[]byte) (err error) {
		t.Helper()
		defer func() {
			if p := recover(); p != nil {
				err = nil
				t.Errorf("Restore panicked: %v", p)
			}
		}()
		rs := make([]io.Reader, len(backups))
		for i, b := range backups {
			rs[i] = bytes.NewReader(b)
		}
		return badgerstore.Restore(dir, quietLogger(), rs...)
	}

	t.Run("NonEmptyDir", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := try(t, dir, full); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("Restore into a non-empty directory: %v, want an error saying it is not empty", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "keep.txt")); err != nil || string(b) != "mine" {
			t.Errorf("the directory's file was touched: %q, %v", b, err)
		}
	})
	t.Run("NoBackup", func(t *testing.T) {
		if err := try(t, filepath.Join(t.TempDir(), "x")); err == nil {
			t.Error("Restore with no backup: no error")
		}
	})
	t.Run("TruncatedMidFrame", func(t *testing.T) {
		for _, n := range []int{3, 8, 20, len(full) / 2, len(full) - 1} {
			if err := try(t, filepath.Join(t.TempDir(), "x"), full[:n]); err == nil {
				t.Errorf("Restore of the first %d of %d bytes: no error", n, len(full))
			}
		}
	})
	t.Run("TruncatedAtFrameBoundary", func(t *testing.T) {
		// The format is a sequence of frames (8-byte length, KV list); a
		// file cut between two frames reads as a shorter valid stream.
		// Badger starts a new frame every 16 MiB or so, in key order, so a
		// backup of more than that cut after its first frame keeps the
		// metadata and the format key but loses the last keys (snapshots
		// here): Restore must notice.
		s := openTemp(t)
		big := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz😀\n", 1<<20/40)
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("f%02d", i)
			createDoc(t, s, id, big)
			commitOK(t, s, newGen(id, uint64(i), big).next(3))
		}
		defer s.Close()
		b := mustBackup(t, s)
		var bounds []int
		for off := 0; off+8 <= len(b); {
			off += 8 + int(binary.LittleEndian.Uint64(b[off:]))
			if off < len(b) {
				bounds = append(bounds, off)
			}
		}
		t.Logf("backup of %d bytes in %d frames", len(b), len(bounds)+1)
		if len(bounds) == 0 {
			t.Skip("the backup is one frame: no boundary to cut at")
		}
		for _, n := range bounds {
			dir := filepath.Join(t.TempDir(), "x")
			if err := try(t, dir, b[:n]); err != nil {
				continue
			}
			// What the silently partial store looks like.
			r := openDir(t, dir)
			docs, broken, firstErr := allDocs(t, r), 0, error(nil)
			for _, d := range docs {
				if _, _, err := storage.Load(context.Background(), r, d.ID); err != nil {
					broken++
					firstErr = cmp.Or(firstErr, err)
				}
			}
			r.Close()
			t.Errorf("Restore of the first %d of %d bytes (cut between frames): no error; the store opens, "+
				"%d of its %d documents fail to load (%v)", n, len(b), broken, len(docs), firstErr)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		// A backup truncated to nothing (a failed upload, a full disk) must not
		// restore as an empty, healthy store.
		if err := try(t, filepath.Join(t.TempDir(), "x"), nil); err == nil {
			t.Errorf("Restore of an empty file: no error (it restores an empty store)")
		}
	})
	t.Run("IncrementalAlone", func(t *testing.T) {
		// An incremental backup without the full one it follows.
		commitOK(t, src, g.next(1))
		_, next := backupOf(t, src, 0)
		commitOK(t, src, g.next(1))
		incr, _ := backupOf(t, src, next)
		if err := try(t, filepath.Join(t.TempDir(), "x"), incr); err == nil {
			t.Errorf("Restore of an incremental backup alone: no error")
		}
	})
	garbage := map[string][]byte{
		"random": func() []byte {
			b := make([]byte, 4096)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}(),
		"text":          []byte("{\"hello\": \"this is not a backup\"}\n"),
		"small-length":  append(binary.LittleEndian.AppendUint64(nil, 16), bytes.Repeat([]byte{0xff}, 16)...),
		"huge-length":   binary.LittleEndian.AppendUint64(nil, 1<<62),
		"negative-size": binary.LittleEndian.AppendUint64(nil, 1<<63+5),
	}
	for name, b := range garbage {
		t.Run("Garbage-"+name, func(t *testing.T) {
			if err := try(t, filepath.Join(t.TempDir(), "x"), b); err == nil {
				t.Errorf("Restore of %s: no error", name)
			}
		})
	}
	t.Run("ForeignBadger", func(t *testing.T) {
		// A valid Badger backup of a database that is not Tandem's.
		dir := t.TempDir()
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := db.Backup(&buf, 0); err != nil {
			t.Fatal(err)
		}
		db.Close()
		err = try(t, filepath.Join(t.TempDir(), "x"), buf.Bytes())
		if err == nil || !strings.Contains(err.Error(), "Tandem") {
			t.Errorf("Restore of another program's Badger backup: %v, want an error saying it is not Tandem's", err)
		}
	})
	t.Run("TwiceSameFull", func(t *testing.T) {
		// Restoring the same full backup twice is harmless (keys carry
		// versions): the store equals the source at the backup.
		sameState(t, src, restoreOpen(t, mustBackup(t, src), mustBackup(t, src)))
	})
}

func mustBackup(t *testing.T, s *badgerstore.Store) []byte {
	b, _ := backupOf(t, s, 0)
	return b
}

// TestBadgerCLIRestore restores our backup file with Badger's own command
// and opens the result with badgerstore. It needs `go` on PATH and the Go
// module proxy (to fetch badger's command and its dependencies).
func TestBadgerCLIRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Badger's command with the go tool (-short)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("`go` is not on PATH: cannot build Badger's restore command")
	}
	ctx := context.Background()
	src := openTemp(t)
	defer src.Close()
	for i, id := range []string{"cli-a", "cli-b"} {
		createDoc(t, src, id, "x😀")
		g := newGen(id, uint64(i), "x😀")
		for j := 0; j < 40; j++ {
			commitOK(t, src, g.next(1+j%3))
		}
	}
	backup, _ := backupOf(t, src, 0)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "tandem.bak")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "restored")
	// Run outside our module so that `go run pkg@version` resolves on its own.
	cmd := exec.CommandContext(ctx, goBin, "run", "github.com/dgraph-io/badger/v4/badger@v4.9.6",
		"restore", "-f", file, "--dir", dir)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("badger restore (go run, build included) took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("badger restore: %v\n%s", err, out)
	}
	dst := openDir(t, dir)
	defer dst.Close()
	sameState(t, src, dst)
	for _, d := range allDocs(t, dst) {
		_, rope, err := storage.Load(ctx, dst, d.ID)
		if err != nil {
			t.Fatalf("Load %s: %v", d.ID, err)
		}
		t.Logf("%s: head %d, %d code points", d.ID, d.Head, rope.Len())
	}
}

// TestOpenInUse: a second Open of a directory that an open store holds
// fails, saying the directory is in use.
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	defer s.Close()
	s2, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: quietLogger()})
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a directory in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), dir) {
		t.Errorf("second Open: %v; want an error naming the directory and saying it is in use", err)
	}
	s3, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: quietLogger(), ReadOnly: true})
	if err == nil {
		s3.Close()
		t.Fatal("a read-only Open of a directory in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("read-only Open: %v; want an error saying the directory is in use", err)
	}
	// The first store still works.
	createDoc(t, s, "still", "ok")
}

// TestCorruption damages stored values under the store (with Badger's own
// API, the store closed) and checks that reads fail with ErrCorrupt naming
// the document and revision, never with a panic, and that reads that do not
// touch the damage still give the right answer.
func TestCorruption(t *testing.T) {
	const id = "doc-1"
	recJSON := func(rev int64, op string) []byte {
		return []byte(fmt.Sprintf(`{"rev":%d,"op":%s,"time":"2024-01-01T00:00:00Z"}`, rev, op))
	}
	subKey := func(source string, seq uint64) []byte {
		k := append([]byte("o/"+id+"\x00"), byte(len(source)))
		k = append(k, source...)
		return binary.BigEndian.AppendUint64(k, seq)
	}
	// The document gets 12 records (4 appends of 3) and a snapshot at 10, so
	// TextAt(9) reads snapshot 0 and records 1..9, and Load reads snapshot 10
	// and records 11, 12.
	type damage struct {
		name    string
		key     []byte
		value   []byte          // nil: delete the key
		fail    map[string]bool // which reads must fail with ErrCorrupt
		mention string          // what their errors must mention besides the id
	}
	all := map[string]bool{"Records": true, "TextAt9": true, "Load": true, "Lookup": true}
	rec7 := map[string]bool{"Records": true, "TextAt9": true}
	cases := []damage{
		{"GarbageRecord", rawKey("r/", id, 7), []byte("\x00garbage\xff"), rec7, "revision 7"},
		{"TruncatedJSON", rawKey("r/", id, 7), []byte(`{"rev":7,"op":[3,"a`), rec7, "revision 7"},
		{"WrongRev", rawKey("r/", id, 7), recJSON(8, `["a"]`), rec7, "revision 7"},
		{"InvalidOp", rawKey("r/", id, 7), recJSON(7, `[-3]`), rec7, "revision 7"},
		{"OpDoesNotApply", rawKey("r/", id, 7), recJSON(7, `[100000,"a"]`), map[string]bool{"TextAt9": true}, "revision 7"},
		{"MissingRecord", rawKey("r/", id, 7), nil, rec7, "revision 7"},
		{"StrayKeyInLog", append(rawKey("r/", id, 5), 1), recJSON(5, `["a"]`), rec7, "revision 6"},
		{"MissingHeadRecord", rawKey("r/", id, 12), nil, map[string]bool{"Records": true, "Load": true}, "revision 12"},
		{"BadSnapshotUTF8", rawKey("s/", id, 10), []byte("ok\xff\xfe"), map[string]bool{"Load": true}, "revision 10"},
		{"GarbageMetadata", []byte("d/" + id), []byte("{not json"), all, "metadata"},
		{"MetadataOldestPastHead", []byte("d/" + id), []byte(`{"id":"doc-1","head":3,"oldest":5}`), all, "metadata"},
		{"GarbageSubmission", subKey("src-"+id, 5), []byte("abc"), map[string]bool{"Lookup": true}, "src-" + id},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openDir(t, dir)
			createDoc(t, s, id, "hello")
			g := newGen(id, 3, "hello")
			for i := 0; i < 4; i++ {
				commitOK(t, s, g.next(3))
			}
			wantRecs, err := s.Records(ctx, id, 0, 12)
			if err != nil {
				t.Fatal(err)
			}
			want9, err := storage.ContentAt(ctx, s, id, 9)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
			if err != nil {
				t.Fatal(err)
			}
			key := withGen(c.key, rawGen(t, db, id))
			err = db.Update(func(txn *badger.Txn) error {
				if c.value == nil {
					return txn.Delete(key)
				}
				return txn.Set(key, c.value)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			s = openDir(t, dir)
			defer s.Close()

			check := func(what string, f func() error) {
				t.Helper()
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("%s panicked on corrupt data: %v", what, p)
							err = storage.ErrCorrupt // reported already
						}
					}()
					err = f()
				}()
				want := c.fail[what]
				switch {
				case !want && err != nil:
					t.Errorf("%s: %v, want no error (it does not read the damaged key)", what, err)
				case want && err == nil:
					t.Errorf("%s: no error, want one wrapping ErrCorrupt", what)
				case want && !errors.Is(err, storage.ErrCorrupt):
					t.Errorf("%s: %v, want an error wrapping ErrCorrupt", what, err)
				case want && (!strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), c.mention)):
					t.Errorf("%s: %q, want it to name %s and %q", what, err, id, c.mention)
				case want:
					t.Logf("%s: %v", what, err)
				}
			}
			check("Records", func() error {
				recs, err := s.Records(ctx, id, 0, 12)
				if err == nil && c.name != "OpDoesNotApply" { // that one reads back as written
					for i := range recs {
						if !sameRecord(recs[i], wantRecs[i]) {
							t.Errorf("Records: revision %d reads %+v, want %+v", recs[i].Rev, recs[i], wantRecs[i])
						}
					}
				}
				return err
			})
			check("TextAt9", func() error {
				text, err := storage.ContentAt(ctx, s, id, 9)
				if err == nil && text != want9 {
					t.Errorf("TextAt(9) = %q, want %q", text, want9)
				}
				return err
			})
			check("Load", func() error {
				_, rope, err := storage.Load(ctx, s, id)
				if err == nil && rope.Content() != g.text() {
					t.Errorf("Load: %q, want %q", rope.Content(), g.text())
				}
				return err
			})
			check("Lookup", func() error {
				rev, found, err := s.LookupSubmission(ctx, id, "src-"+id, 5)
				if err == nil && (!found || rev != 5) {
					t.Errorf("LookupSubmission = %d, %v; want 5, true", rev, found)
				}
				return err
			})
		})
	}
}

// TestBackupIncrementalAfterCompaction: deletions made after a full backup
// must reach the incremental backup even when Badger has compacted the
// database in between (a server runs for days between backups, and
// compactions drop tombstones once no reader needs them).
func TestBackupIncrementalAfterCompaction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := openDir(t, dir)
	for i, id := range []string{"keep", "gone"} {
		createDoc(t, src, id, "")
		g := newGen(id, uint64(i), "")
		for j := 0; j < 40; j++ {
			commitOK(t, src, g.next(1))
		}
	}
	full, next := backupOf(t, src, 0)
	if err := src.DeleteDocument(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := src.Compact(ctx, "keep", 20); err != nil {
		t.Fatal(err)
	}
	// Close flushes the memtable to a level-0 table. With two of them
	// (before and after the deletes), Badger compacts level 0 into the
	// bottom level, where nothing overlaps, so tombstones no reader needs
	// are dropped: what time and writes do to a server's database.
	for round := 0; round < 3; round++ {
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		src = openDir(t, dir)
		createDoc(t, src, fmt.Sprintf("filler-%d", round), strings.Repeat("f", 1000))
	}
	defer src.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(src.DB().LevelsToString(), "Level 0 [ ]: NumTables: 00") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	incr, _ := backupOf(t, src, next)
	tomb, versions := 0, 0
	src.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			versions++
			if it.Item().IsDeletedOrExpired() {
				tomb++
			}
		}
		return nil
	})
	// With 0 tombstones left, the test shows what it means to: Badger
	// dropped them before the incremental backup was taken.
	t.Logf("full backup %d bytes, incremental %d bytes; %d key versions and %d tombstones left after compaction",
		len(full), len(incr), versions, tomb)
	dst := restoreOpen(t, full, incr)
	if _, err := dst.Document(ctx, "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("document deleted after the full backup is back after restoring full + incremental (Document: %v)", err)
	}
	sameState(t, src, dst)
}
