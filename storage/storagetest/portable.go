package storagetest

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/tandemdocs/tandem/storage"
)

// portable returns s as a storage.Portable, or skips: stores that are not
// (a wrapper such as spaceguard) have nothing of this group to pass.
func portable(t *testing.T, s storage.Store) storage.Portable {
	t.Helper()
	p, ok := s.(storage.Portable)
	if !ok {
		t.Skipf("%T is not a storage.Portable", s)
	}
	return p
}

// copied is the model of a copy of m: the same document, with the
// snapshots Copy leaves (at the oldest revision and the head; the suite's
// histories are shorter than Copy's snapshot interval).
func (m *docModel) copied() *docModel {
	c := *m
	c.snaps = map[int64]bool{m.oldest: true, m.head(): true}
	return &c
}

func sortedSubs(subs []storage.Submission) []storage.Submission {
	return slices.SortedFunc(slices.Values(subs), func(a, b storage.Submission) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Seq, b.Seq))
	})
}

// checkSubmissions checks a document's exactly-once index lists exactly
// what the model committed with a source (want).
func checkSubmissions(t *testing.T, s storage.Portable, id string, want []storage.Submission) {
	t.Helper()
	got, err := s.Submissions(t.Context(), id, 1<<62)
	if err != nil {
		t.Errorf("Submissions(%q): %v", id, err)
		return
	}
	if g, w := sortedSubs(got), sortedSubs(want); !slices.Equal(g, w) {
		t.Errorf("Submissions(%q) = %v, want %v", id, g, w)
	}
}

func (m *docModel) submissions() []storage.Submission {
	var out []storage.Submission
	for _, r := range m.recs {
		if r.Source != "" {
			out = append(out, storage.Submission{Source: r.Source, Seq: r.Seq, Rev: r.Rev})
		}
	}
	return out
}

// testCopyHistory: a document with a compacted history, snapshots and
// exactly-once entries on both sides of the compaction copies whole, and
// the copy takes commits like any document.
func testCopyHistory(t *testing.T, src, dst storage.Store) {
	ps, pd := portable(t, src), portable(t, dst)
	r := newRand(71)
	m := createDoc(t, src, "copy.me", "start ✍️")
	for i := range 12 {
		m.commit(t, src, m.prepareSource("client-"+string(rune('a'+i%3)), uint64(1+i), randomOps(t, r, m.text(), 1+r.IntN(3))...))
	}
	m.grow(t, src, r, 10)
	m.saveSnapshot(t, src, 15)
	m.compact(t, src, 20)
	m.commit(t, src, m.prepareSource("client-z", 9, randomOps(t, r, m.text(), 2)...))
	other := createDoc(t, src, "other", "not copied")

	res, err := storage.Copy(t.Context(), pd, ps, m.id)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if res.Records != int(m.head()-m.oldest) {
		t.Errorf("Copy copied %d records, want %d", res.Records, m.head()-m.oldest)
	}
	c := m.copied()
	checkAll(t, dst, c)
	checkLookups(t, dst, c)
	checkSubmissions(t, pd, c.id, m.submissions())
	checkSubmissions(t, ps, m.id, m.submissions())
	wantGone(t, dst, other.id)

	// Entries with Rev <= upTo only.
	subs, err := pd.Submissions(t.Context(), c.id, c.oldest)
	if err != nil {
		t.Fatalf("Submissions: %v", err)
	}
	for _, s := range subs {
		if s.Rev > c.oldest {
			t.Errorf("Submissions(upTo %d) returned %v", c.oldest, s)
		}
	}
	if len(subs) == 0 {
		t.Errorf("Submissions(upTo %d) returned none: the compacted revisions' entries are lost", c.oldest)
	}

	// The copy is a live document.
	c.commit(t, dst, c.prepareSource("client-z", 11, randomOps(t, r, c.text(), 1)...))
	checkAll(t, dst, c)
	checkLookups(t, dst, c)
	c.compact(t, dst, c.head()-1)
	checkAll(t, dst, c)
	checkLookups(t, dst, c)
	checkAll(t, src, m) // the source is untouched
}

// testCopyAtOldest: a document with no history after its oldest revision
// (new, or compacted up to its head) copies with its time.
func testCopyAtOldest(t *testing.T, src, dst storage.Store) {
	ps, pd := portable(t, src), portable(t, dst)
	fresh := createDoc(t, src, "fresh", "")
	full := createDoc(t, src, "full", "x")
	full.commit(t, src, full.prepareSource("s", 1, ins("a"), ins("b")))
	full.compact(t, src, full.head())
	for _, m := range []*docModel{fresh, full} {
		if _, err := storage.Copy(t.Context(), pd, ps, m.id); err != nil {
			t.Fatalf("Copy(%s): %v", m.id, err)
		}
		c := m.copied()
		checkAll(t, dst, c)
		checkLookups(t, dst, c)
		checkSubmissions(t, pd, c.id, m.submissions())
		c.commitOps(t, dst, ins("more"))
		checkAll(t, dst, c)
	}
}

// testCopyExists: a copy onto an id the destination has fails with
// ErrExists and leaves that document as it was.
func testCopyExists(t *testing.T, src, dst storage.Store) {
	ps, pd := portable(t, src), portable(t, dst)
	m := createDoc(t, src, "same", "source")
	m.commitOps(t, src, ins("1"))
	there := createDoc(t, dst, "same", "destination")
	there.commit(t, dst, there.prepareSource("d", 1, ins("2"), ins("3")))
	_, err := storage.Copy(t.Context(), pd, ps, m.id)
	wantErr(t, err, storage.ErrExists, "Copy onto an existing document", m.id)
	checkAll(t, dst, there)
	checkLookups(t, dst, there)
	_, err = storage.Copy(t.Context(), pd, ps, "missing")
	wantErr(t, err, storage.ErrNotFound, "Copy of a missing document", "missing")
	wantGone(t, dst, "missing")
}

// testImportInvalid: ImportDocument refuses what does not add up, and
// writes nothing.
func testImportInvalid(t *testing.T, s storage.Store) {
	p := portable(t, s)
	ctx := t.Context()
	doc := storage.Document{ID: "imp", Title: "t", Created: baseTime, Updated: baseTime, Oldest: 5}
	bad := map[string][]storage.Submission{
		"an entry past the import's revision": {{Source: "a", Seq: 1, Rev: 6}},
		"an entry at revision 0":              {{Source: "a", Seq: 1, Rev: 0}},
		"an entry with no source":             {{Source: "", Seq: 1, Rev: 3}},
	}
	for _, what := range slices.Sorted(maps.Keys(bad)) {
		err := p.ImportDocument(ctx, doc, "text", bad[what])
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ImportDocument with %s: %v, want ErrInvalid", what, err)
		}
	}
	if err := p.ImportDocument(ctx, storage.Document{ID: "bad id!", Oldest: 1}, "", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ImportDocument with a bad id: %v, want ErrInvalid", err)
	}
	if err := p.ImportDocument(ctx, storage.Document{ID: "neg", Oldest: -1}, "", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ImportDocument at revision -1: %v, want ErrInvalid", err)
	}
	if err := p.ImportDocument(ctx, doc, "\xff", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ImportDocument with text that is not UTF-8: %v, want ErrInvalid", err)
	}
	wantGone(t, s, doc.ID)
	// And a valid one answers like the document it describes.
	if err := p.ImportDocument(ctx, doc, "text", []storage.Submission{{Source: "a", Seq: 1, Rev: 5}}); err != nil {
		t.Fatalf("ImportDocument: %v", err)
	}
	got, err := s.Document(ctx, doc.ID)
	if err != nil || got.Head != 5 || got.Oldest != 5 || !got.Updated.Equal(baseTime) || got.Title != "t" {
		t.Errorf("Document after ImportDocument = %+v, %v; want head and oldest 5, updated %v", got, err, baseTime)
	}
	checkLookup(t, s, doc.ID, "a", 1, 5)
	if err := p.ImportDocument(ctx, doc, "again", nil); !errors.Is(err, storage.ErrExists) {
		t.Errorf("ImportDocument of an existing id: %v, want ErrExists", err)
	}
	if text, err := storage.ContentAt(ctx, s, doc.ID, 5); err != nil || text != "text" {
		t.Errorf("ContentAt(5) = %q, %v; want %q", text, err, "text")
	}
}
