package badgerstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// rawSubKey is an exactly-once key without the generation (see withGen).
func rawSubKey(id, source string, seq uint64) []byte {
	k := append([]byte("o/"+id+"\x00"), byte(len(source)))
	k = append(k, source...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func revValue(rev int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(rev)) }

// rawEdit opens the closed store's directory with Badger's own API and runs
// fn in one read-write transaction.
func rawEdit(t *testing.T, dir string, fn func(db *badger.DB, txn *badger.Txn) error) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return fn(db, txn) }); err != nil {
		db.Close()
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// verifyNoPanic runs Verify, failing the test on a panic.
func verifyNoPanic(t *testing.T, s *badgerstore.Store) (rep badgerstore.VerifyReport, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Verify panicked: %v", p)
		}
	}()
	return s.Verify(context.Background(), nil)
}

func logProblems(t *testing.T, rep badgerstore.VerifyReport) {
	t.Helper()
	for _, p := range rep.Problems {
		t.Logf("problem: %s", p)
	}
}

// TestVerifyClean builds a store with several documents (history,
// snapshots, a group commit, a compaction, a deleted document, an id
// deleted and created again, a document without exactly-once entries, an
// empty one) and expects Verify to find nothing wrong and count exactly
// what is there. Then it leaves what interrupted sweeps leave behind and
// expects it counted as stray, still with no problem.
func TestVerifyClean(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir)

	createDoc(t, s, "alpha", "hello 😀")
	alpha := newGen("alpha", 1, "hello 😀")
	createDoc(t, s, "nosrc", "")
	nosrc := newGen("nosrc", 2, "")
	nosrc.source = ""
	for i := 0; i < 7; i++ {
		if i < 3 {
			commitOK(t, s, alpha.next(5), nosrc.next(4)) // group commits
		} else {
			commitOK(t, s, alpha.next(5))
		}
	}
	createDoc(t, s, "beta", "é漢")
	beta := newGen("beta", 3, "é漢")
	for i := 0; i < 15; i++ {
		commitOK(t, s, beta.next(3))
	}
	if err := s.Compact(ctx, "beta", 25); err != nil {
		t.Fatal(err)
	}
	createDoc(t, s, "gamma", "")
	createDoc(t, s, "gone", "bye")
	gone := newGen("gone", 4, "bye")
	commitOK(t, s, gone.next(10))
	if err := s.DeleteDocument(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	createDoc(t, s, "again", "one")
	again := newGen("again", 5, "one")
	commitOK(t, s, again.next(5))
	if err := s.DeleteDocument(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	createDoc(t, s, "again", "two")
	again = newGen("again", 6, "two")
	commitOK(t, s, again.next(3))

	want := counts{
		Documents: 5, // alpha, again, beta, gamma, nosrc
		// alpha 35, again 3, beta 26..45, gamma 0, nosrc 12
		Records: 35 + 3 + 20 + 0 + 12,
		// alpha 0, 10, 20, 30; again 0; beta 25, 30, 40; gamma 0; nosrc 0, 10
		Snapshots: 4 + 1 + 3 + 1 + 2,
		// alpha 35; again 3; beta 45 (entries outlive compaction)
		Submissions: 35 + 3 + 45,
	}
	var done []int
	rep, err := s.Verify(ctx, func(n int) { done = append(done, n) })
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	logProblems(t, rep)
	if got := withoutProblems(rep); got != want || len(rep.Problems) != 0 {
		t.Errorf("Verify = %+v with %d problems, want %+v and none", got, len(rep.Problems), want)
	}
	if !slices.Equal(done, []int{1, 2, 3, 4, 5}) {
		t.Errorf("progress reported %v, want 1..5", done)
	}
	// The texts Verify replayed are the ones the generators hold.
	for _, g := range []*docGen{alpha, nosrc, beta, again} {
		if _, rope, err := storage.Load(ctx, s, g.id); err != nil || rope.Content() != g.text() {
			t.Errorf("%s: Load: %v (text %q, want %q)", g.id, err, rope, g.text())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Leftovers of interrupted sweeps: stray, not problems.
	rawEdit(t, dir, func(db *badger.DB, txn *badger.Txn) error {
		alphaGen, betaGen, goneGen, againGen := rawGen(t, db, "alpha"), rawGen(t, db, "beta"), rawGen(t, db, "gone"), rawGen(t, db, "again")
		for _, k := range [][]byte{
			withGen(rawKey("r/", "alpha", 3), alphaGen^1),           // an earlier generation of a live id
			withGen(rawSubKey("again", "src-again", 4), againGen+1), // likewise, an exactly-once entry
			withGen(rawKey("s/", "gone", 0), goneGen),               // a deleted document's
			withGen(rawKey("r/", "gone", 2), goneGen),               // likewise
			withGen(rawKey("r/", "beta", 20), betaGen),              // a compaction's: a record at or before Oldest
			withGen(rawKey("s/", "beta", 20), betaGen),              // and a snapshot before it
			withGen(rawSubKey("gone", "src-gone", 1), goneGen),      // a deleted document's entry
		} {
			if err := txn.Set(k, []byte("leftover")); err != nil {
				return err
			}
		}
		return nil
	})
	s = openDir(t, dir)
	defer s.Close()
	rep, err = verifyNoPanic(t, s)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	logProblems(t, rep)
	want.Stray = 7
	if got := withoutProblems(rep); got != want || len(rep.Problems) != 0 {
		t.Errorf("Verify with leftovers = %+v with %d problems, want %+v and none", got, len(rep.Problems), want)
	}
}

// counts is a VerifyReport without its problems, comparable.
type counts struct{ Documents, Records, Snapshots, Submissions, Stray int }

func withoutProblems(r badgerstore.VerifyReport) counts {
	return counts{r.Documents, r.Records, r.Snapshots, r.Submissions, r.Stray}
}

// TestVerifyDamage damages a store under it (with Badger's own API, the
// store closed), one kind of damage at a time, and expects Verify to report
// it as problems naming the document and the revisions concerned, and
// nothing else, without an error or a panic.
//
// doc-1 has 24 records (appends of 3, so snapshots at 10 and 20) and is
// compacted at 6: records 7..24, snapshots 6, 10, 20, exactly-once entries
// for 1..24 (source src-doc-1, seq = revision). plain has 12 records and
// snapshots 0 and 10.
func TestVerifyDamage(t *testing.T) {
	const id = "doc-1"
	const src = "src-" + id
	recJSON := func(rev int64, op string, seq int64) []byte {
		return fmt.Appendf(nil, `{"rev":%d,"op":%s,"src":%q,"seq":%d,"time":"2024-01-01T00:00:00Z"}`, rev, op, src, seq)
	}
	set := func(v []byte) func([]byte) []byte { return func([]byte) []byte { return v } }
	del := func([]byte) []byte { return nil }
	key := func(k []byte) func(uint64) []byte { return func(gen uint64) []byte { return withGen(k, gen) } }
	editMeta := func(edit func(m map[string]any)) func([]byte) []byte {
		return func(old []byte) []byte {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(old))
			dec.UseNumber() // the generation is a uint64
			if err := dec.Decode(&m); err != nil {
				panic(err)
			}
			edit(m)
			b, _ := json.Marshal(m)
			return b
		}
	}
	cases := []struct {
		name    string
		doc     string                  // the document damaged ("" for keys outside documents)
		key     func(gen uint64) []byte // gen: doc's generation
		value   func(old []byte) []byte // nil: delete the key
		revs    []int64                 // the revisions of the problems, in any order, -1 included
		mention []string                // what the problems must mention, together
	}{
		{"MissingRecord", id, key(rawKey("r/", id, 12)), del, []int64{12}, []string{"record missing", "exactly-once entry"}},
		{"MissingRecords", id, key(rawKey("r/", id, 12)), nil, []int64{12, 13}, []string{"records 12..13 missing"}},
		{"MissingFirstRecord", id, key(rawKey("r/", id, 7)), del, []int64{7}, []string{"record missing"}},
		{"MissingHeadRecord", id, key(rawKey("r/", id, 24)), del, []int64{24}, []string{"record missing"}},
		{"GarbageRecord", id, key(rawKey("r/", id, 12)), set([]byte("\x00garbage\xff")), []int64{12}, []string{"does not decode"}},
		{"TruncatedRecord", id, key(rawKey("r/", id, 12)), set([]byte(`{"rev":12,"op":[3,"a`)), []int64{12}, []string{"does not decode"}},
		{"WrongRevInValue", id, key(rawKey("r/", id, 12)), set(recJSON(13, `["a"]`, 12)), []int64{12}, []string{"record for revision 13"}},
		{"InvalidOp", id, key(rawKey("r/", id, 12)), set(recJSON(12, `[-3]`, 12)), []int64{12}, []string{"does not decode"}},
		{"OpDoesNotApply", id, key(rawKey("r/", id, 12)), set(recJSON(12, `[100000,"a"]`, 12)), []int64{12}, []string{"does not apply"}},
		{"DeleteMismatch", id, key(rawKey("r/", id, 12)), set(recJSON(12, `[{"d":"\u0000\u0000"}]`, 12)), []int64{12}, []string{"does not apply"}},
		{"RecordBeyondHead", id, key(rawKey("r/", id, 25)), set(recJSON(25, `["a"]`, 25)), []int64{25}, []string{"beyond the head"}},
		{"MalformedRecordKey", id, key(append(rawKey("r/", id, 12), 1)), set(recJSON(12, `["a"]`, 12)), []int64{-1}, []string{"malformed record key"}},
		{"SnapshotDiffers", id, key(rawKey("s/", id, 20)), set([]byte("not the text")), []int64{20}, []string{"differs from the text replayed from the snapshot at revision 6"}},
		{"SnapshotNotUTF8", id, key(rawKey("s/", id, 20)), set([]byte("ok\xff\xfe")), []int64{20}, []string{"not valid UTF-8 (byte 2)"}},
		{"SnapshotBeyondHead", id, key(rawKey("s/", id, 30)), set([]byte("x")), []int64{30}, []string{"beyond the head"}},
		{"MissingSnapshotAtOldest", id, key(rawKey("s/", id, 6)), del, []int64{6}, []string{"no snapshot at the oldest"}},
		{"MissingSnapshotAt0", "plain", key(rawKey("s/", "plain", 0)), del, []int64{0}, []string{"no snapshot at revision 0"}},
		{"EntryPointsPastHead", id, key(rawSubKey(id, src, 999)), set(revValue(25)), []int64{25}, []string{"points outside the revisions 1..24"}},
		{"EntryPointsAtZero", id, key(rawSubKey(id, src, 15)), set(revValue(0)), []int64{0, 15}, []string{"points outside", "points at revision 0"}},
		{"EntryPointsAtOtherRecord", id, key(rawSubKey(id, src, 15)), set(revValue(16)), []int64{15, 16}, []string{"points at revision 16", `submitted as "src-doc-1"/16`}},
		{"EntryOfOtherSource", id, key(rawSubKey(id, "intruder", 1)), set(revValue(9)), []int64{9}, []string{`submitted as "src-doc-1"/9`}},
		{"EntryGarbage", id, key(rawSubKey(id, src, 15)), set([]byte("abc")), []int64{-1, 15}, []string{"holds 3 bytes", "does not hold a revision"}},
		{"MissingEntry", id, key(rawSubKey(id, src, 15)), del, []int64{15}, []string{"no exactly-once entry"}},
		{"GarbageMetadata", id, key([]byte("d/" + id)), set([]byte("{not json")), []int64{-1}, []string{"metadata"}},
		{"MetadataOldestPastHead", id, key([]byte("d/" + id)), set([]byte(`{"id":"doc-1","head":3,"oldest":5,"gen":7}`)), []int64{-1}, []string{"does not add up"}},
		{"MetadataHeadPastRecords", id, key([]byte("d/" + id)), editMeta(func(m map[string]any) { m["head"] = 27 }), []int64{25}, []string{"records 25..27 missing"}},
		{"MetadataHeadBeforeRecords", id, key([]byte("d/" + id)), editMeta(func(m map[string]any) { m["head"] = 21 }), []int64{21, 22, 23, 24},
			[]string{"record beyond the head (21)", "points outside the revisions 1..21", "not the head record's time"}},
		{"MetadataUpdated", id, key([]byte("d/" + id)), editMeta(func(m map[string]any) { m["updated"] = "2001-01-01T00:00:00Z" }), []int64{24}, []string{"not the head record's time"}},
		{"OrphanKeys", "ghost", func(uint64) []byte { return withGen(rawKey("r/", "ghost", 1), 77) }, set([]byte("{}")), []int64{-1}, []string{"1 records under an id with no metadata"}},
		{"KeyOutsideLayout", "", func(uint64) []byte { return []byte("x/what") }, set([]byte("?")), []int64{-1}, []string{"not in Tandem's key layout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openDir(t, dir)
			createDoc(t, s, id, "hello")
			g := newGen(id, 3, "hello")
			for i := 0; i < 8; i++ {
				commitOK(t, s, g.next(3))
			}
			if err := s.Compact(ctx, id, 6); err != nil {
				t.Fatal(err)
			}
			createDoc(t, s, "plain", "plain text")
			p := newGen("plain", 4, "plain text")
			for i := 0; i < 4; i++ {
				commitOK(t, s, p.next(3))
			}
			rep, err := s.Verify(ctx, nil)
			if err != nil || len(rep.Problems) != 0 {
				logProblems(t, rep)
				t.Fatalf("before the damage: Verify: %v, %d problems", err, len(rep.Problems))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rawEdit(t, dir, func(db *badger.DB, txn *badger.Txn) error {
				var gen uint64
				if c.doc == id || c.doc == "plain" {
					gen = rawGen(t, db, c.doc)
				}
				edit := func(k []byte, value func([]byte) []byte) error {
					var old []byte
					if item, err := txn.Get(k); err == nil {
						if old, err = item.ValueCopy(nil); err != nil {
							return err
						}
					}
					if v := value(old); v != nil {
						return txn.Set(k, v)
					}
					return txn.Delete(k)
				}
				if c.value == nil { // MissingRecords: two in a row
					if err := edit(c.key(gen), del); err != nil {
						return err
					}
					return edit(withGen(rawKey("r/", id, 13), gen), del)
				}
				return edit(c.key(gen), c.value)
			})
			s = openDir(t, dir)
			defer s.Close()
			rep, err = verifyNoPanic(t, s)
			if err != nil {
				t.Fatalf("Verify: %v, want a report and no error", err)
			}
			logProblems(t, rep)
			var revs []int64
			all := ""
			for _, p := range rep.Problems {
				if p.Doc != c.doc {
					t.Errorf("problem %q is about document %q, want %q", p, p.Doc, c.doc)
				}
				revs = append(revs, p.Rev)
				all += p.What + "\n"
			}
			slices.Sort(revs)
			revs = slices.Compact(revs)
			if !slices.Equal(revs, c.revs) {
				t.Errorf("problems at revisions %v, want %v", revs, c.revs)
			}
			for _, m := range c.mention {
				if !strings.Contains(all, m) {
					t.Errorf("no problem mentions %q", m)
				}
			}
		})
	}
}

// TestVerifyProblemBound: a document with a great many problems gets a
// bounded list, ending with how many more there were.
func TestVerifyProblemBound(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	createDoc(t, s, "d", "x")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	const n = 1500
	rawEdit(t, dir, func(db *badger.DB, txn *badger.Txn) error {
		gen := rawGen(t, db, "d")
		for rev := int64(1); rev <= n; rev++ {
			if err := txn.Set(withGen(rawKey("r/", "d", rev), gen), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	})
	s = openDir(t, dir)
	defer s.Close()
	rep, err := verifyNoPanic(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1001 || rep.Problems[1000].What != "500 more problems not listed" {
		t.Errorf("%d problems, the last %+v; want 1000 and a note of 500 more", len(rep.Problems), rep.Problems[len(rep.Problems)-1])
	}
}

// TestVerifyErrors: a closed store and a cancelled context are errors, not
// problems.
func TestVerifyErrors(t *testing.T) {
	s := openTemp(t)
	createDoc(t, s, "d", "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Verify(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(context.Background(), nil); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Verify on a closed store: %v, want ErrClosed", err)
	}
}

// TestVerifyWhileCommitting runs Verify while documents are committed to,
// compacted, created and deleted: each document is read in one
// transaction, so it must always verify clean.
func TestVerifyWhileCommitting(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	ids := []string{"c0", "c1", "c2"}
	for _, id := range ids {
		createDoc(t, s, id, "start "+id)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGen(id, uint64(i), "start "+id)
			for n := 0; !stop.Load(); n++ {
				if !commitOK(t, s, g.next(1+g.rng.IntN(3))) {
					return
				}
				if n%20 == 19 {
					if err := s.Compact(ctx, id, g.head-5); err != nil {
						t.Errorf("Compact: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			id := fmt.Sprintf("short-%d", i%3)
			if err := s.CreateDocument(ctx, storage.Document{ID: id}, "x"); err != nil {
				t.Errorf("CreateDocument: %v", err)
				return
			}
			g := newGen(id, uint64(100+i), "x")
			commitOK(t, s, g.next(3))
			if err := s.DeleteDocument(ctx, id); err != nil {
				t.Errorf("DeleteDocument: %v", err)
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	rounds := 0
	for ; time.Now().Before(deadline) || rounds < 3; rounds++ {
		rep, err := s.Verify(ctx, nil)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if len(rep.Problems) != 0 {
			logProblems(t, rep)
			t.Fatalf("round %d: %d problems on a healthy store", rounds, len(rep.Problems))
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d rounds of Verify", rounds)
}
