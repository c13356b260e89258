// Package storagetest checks implementations of [storage.Store] against the
// contract documented in package storage, in the style of testing/fstest's
// TestFS and nettest's TestConn.
//
// An implementation's tests call [TestStore] with a function that opens a
// fresh, empty store:
//
//	func TestStore(t *testing.T) {
//		storagetest.TestStore(t, func(t *testing.T) storage.Store {
//			s, err := badgerstore.Open(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// TestStore runs one subtest per rule of the contract, grouped by area
// (CreateDocument, ListDocuments, DeleteDocument, Commit, Records, Snapshots,
// History, ExactlyOnce, Compact, Close). Every leaf subtest opens its own
// store and closes it when it ends, so open must return a new, empty store on
// every call; it may register its own cleanups (a temporary directory, say),
// which run after the store is closed. Subtests are sequential and use no
// sleeps and no timing: a store that is slow is never reported as broken.
//
// Random histories use fixed seeds, so a failure reproduces; run a single
// subtest with -run, e.g. -run 'TestStore/History/'.
//
// # What the suite takes the contract to mean
//
// Where the documentation of package storage leaves a choice, the suite
// checks the reading below. Points it treats as open are accepted either way
// and listed as such.
//
//   - Ids: every method that takes a document id fails with ErrInvalid (not
//     ErrNotFound) for an id that [storage.CheckID] rejects, and Commit
//     reports it in that append's result.
//   - Errors about one document name it: the error text contains the id
//     (checked for ErrNotFound, ErrExists, ErrConflict, ErrInvalid on a valid
//     id, and ErrCompacted).
//   - Times: Document.Created, Document.Updated and Record.Time round-trip
//     to the nanosecond as instants (time.Time.Equal); neither the location
//     nor the monotonic clock reading needs to survive. Only times between
//     the years 2000 and 2100 are used. Created is stored as given, and
//     Updated equals Created until the first commit.
//   - Ops round-trip by their JSON form ([ot.Op.MarshalJSON]). The suite
//     commits only normalized ops, so a store may normalize what it decodes.
//     Seq round-trips as a full uint64 (1<<64-1 included); User as any
//     UTF-8 string; Source as any UTF-8 string of up to MaxSourceLen bytes
//     (one byte more is ErrInvalid for the append; looking such a source up
//     finds nothing, or fails with ErrInvalid).
//   - ListDocuments orders ids bytewise (Go string order). A non-empty next
//     token is the id of the page's last document; a page with a next token
//     holds exactly Limit documents (100 for Limit <= 0). The last page may
//     carry "" itself, or be followed by an empty page with "": both pass.
//     Paging is keyset paging: documents created or deleted between pages
//     after the cursor show up or disappear, nothing is listed twice.
//   - Commit with no appends returns no results and no error. A Commit error
//     (as opposed to a per-append result) is only for the whole call, e.g.
//     ErrClosed.
//   - Records with a negative from or to fails with ErrInvalid, whatever
//     Oldest is. Records(from, to) with from < Oldest fails with ErrCompacted
//     even when from == to.
//   - Compact(before) with before <= Oldest changes nothing; with before <
//     Oldest it may return nil or ErrCompacted. After Compact(before),
//     Snapshot(before) has Rev == before. Compact past the head or below 0
//     is ErrInvalid.
//   - A snapshot passed in an Append may have any Rev from 0 to the new
//     head; a negative Rev or one past the new head is ErrInvalid for that
//     append, and nothing of it is written. SaveSnapshot at a revision past
//     the head or below 0 is ErrInvalid. Saving the same snapshot twice is
//     fine.
//
// Open points, accepted either way:
//
//   - LookupSubmission on a document that does not exist: ErrNotFound or
//     found == false with no error (never found == true).
//   - Snapshot with a negative revision: ErrNotFound or ErrInvalid.
//   - Two appends to one document in one Commit call: with the same Head,
//     exactly one of them is committed (either) and the other fails with
//     ErrConflict; when the second builds on the first, it may be committed
//     or fail with ErrConflict. In every case the log must match the results.
//   - A second Close: nil or ErrClosed (it must not panic).
//
// Not checked, because the contract does not say: what Snapshot returns
// past the head or below Oldest; what a second commit of one (source, seq)
// to a document makes LookupSubmission return; whether malformed ops or
// non-UTF-8 text are rejected; durability across a restart (the suite
// cannot reopen a store; implementations should test that themselves).
package storagetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// TestStore runs the conformance suite against the stores open returns. open
// is called once per subtest and must return a new, empty store; the suite
// closes it.
func TestStore(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Helper()
	su := suite{open: open}
	groups := []struct {
		name  string
		tests []leaf
	}{
		{"CreateDocument", []leaf{
			{"Metadata", testCreateMetadata},
			{"Types", testCreateTypes},
			{"RichDocument", testRichDocument},
			{"Exists", testCreateExists},
			{"InvalidID", testInvalidID},
			{"NotFound", testNotFound},
		}},
		{"ListDocuments", []leaf{
			{"Empty", testListEmpty},
			{"Order", testListOrder},
			{"Paging", testListPaging},
			{"Stable", testListStable},
			{"Metadata", testListMetadata},
		}},
		{"DeleteDocument", []leaf{
			{"Removes", testDeleteRemoves},
			{"Recreate", testDeleteRecreate},
			{"Neighbours", testDeleteNeighbours},
		}},
		{"SetTitle", []leaf{
			{"Basic", testSetTitle},
		}},
		{"Commit", []leaf{
			{"Single", testCommitSingle},
			{"MultiRecord", testCommitMultiRecord},
			{"MultiDocument", testCommitMultiDocument},
			{"PerAppendResults", testCommitPerAppend},
			{"Conflict", testCommitConflict},
			{"Invalid", testCommitInvalid},
			{"NoAppends", testCommitNoAppends},
			{"SameDocumentTwice", testCommitSameDocTwice},
			{"RoundTrip", testCommitRoundTrip},
			{"Aliasing", testCommitAliasing},
			{"ConcurrentRounds", testConcurrentRounds},
			{"ConcurrentFree", testConcurrentFree},
		}},
		{"Records", []leaf{
			{"Ranges", testRecordsRanges},
			{"Errors", testRecordsErrors},
		}},
		{"Snapshots", []leaf{
			{"Newest", testSnapshotsNewest},
			{"InAppend", testSnapshotsInAppend},
			{"Errors", testSnapshotsErrors},
		}},
		{"History", []leaf{
			{"Random", testHistoryRandom},
		}},
		{"ExactlyOnce", []leaf{
			{"Lookup", testLookup},
			{"PerDocument", testLookupPerDocument},
			{"Compaction", testLookupCompaction},
		}},
		{"Compact", []leaf{
			{"Basic", testCompactBasic},
			{"Repeat", testCompactRepeat},
			{"Errors", testCompactErrors},
			{"Retain", testRetain},
		}},
		{"Close", []leaf{
			{"AfterClose", testClose},
		}},
		{"Portable", []leaf{
			{"CopyHistory", su.withDestination(testCopyHistory)},
			{"CopyAtOldest", su.withDestination(testCopyAtOldest)},
			{"CopyExists", su.withDestination(testCopyExists)},
			{"ImportInvalid", testImportInvalid},
		}},
		{"ChangeLog", changeLogTests(su)},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, l := range g.tests {
				t.Run(l.name, func(t *testing.T) {
					l.run(t, su.store(t))
				})
			}
		})
	}
}

type leaf struct {
	name string
	run  func(t *testing.T, s storage.Store)
}

type suite struct {
	open func(t *testing.T) storage.Store
}

// withDestination gives a test of two stores the leaf's store as its
// source and another fresh one as its destination.
func (su suite) withDestination(test func(t *testing.T, src, dst storage.Store)) func(*testing.T, storage.Store) {
	return func(t *testing.T, src storage.Store) { test(t, src, su.store(t)) }
}

// store opens a fresh store that is closed when t ends.
func (su suite) store(t *testing.T) storage.Store {
	t.Helper()
	s := su.open(t)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// ---------------------------------------------------------------------------
// The model: what the suite expects a document to hold.

// baseTime has nanoseconds and a zone other than UTC, so that a store that
// truncates or mangles times is caught.
var baseTime = time.Date(2025, time.March, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+05:30", 5*3600+30*60))

// recordTime is the commit time the suite gives revision rev: distinct for
// every revision, never a whole number of microseconds.
func recordTime(rev int64) time.Time {
	return baseTime.Add(time.Duration(rev) * (time.Millisecond + time.Microsecond + time.Nanosecond))
}

// docModel is the suite's idea of a document.
type docModel struct {
	id      string
	title   string
	created time.Time
	texts   []string         // texts[r] is the text at revision r
	recs    []storage.Record // recs[r-1] is the record of revision r
	snaps   map[int64]bool   // revisions with a snapshot
	oldest  int64
}

func createDoc(t *testing.T, s storage.Store, id, text string) *docModel {
	t.Helper()
	m := &docModel{
		id:      id,
		title:   "Title of " + id + " 📝 文書",
		created: baseTime.Add(-time.Hour - time.Duration(len(id))*time.Nanosecond),
		texts:   []string{text},
		snaps:   map[int64]bool{0: true},
	}
	err := s.CreateDocument(t.Context(), storage.Document{ID: id, Title: m.title, Created: m.created}, text)
	if err != nil {
		t.Fatalf("CreateDocument(%q): %v", id, err)
	}
	return m
}

func (m *docModel) head() int64  { return int64(len(m.recs)) }
func (m *docModel) text() string { return m.texts[len(m.texts)-1] }

func (m *docModel) updated() time.Time {
	if len(m.recs) == 0 {
		return m.created
	}
	return m.recs[len(m.recs)-1].Time
}

// prepare returns an append of one record per op on top of the model's head.
// The model is unchanged until accept.
func (m *docModel) prepare(ops ...ot.Op) storage.Append {
	recs := make([]storage.Record, len(ops))
	for i, op := range ops {
		rev := m.head() + 1 + int64(i)
		recs[i] = storage.Record{Rev: rev, Op: doctype.PlainOp(op), User: "user-" + m.id, Time: recordTime(rev)}
	}
	return storage.Append{DocID: m.id, Head: m.head(), Records: recs}
}

// prepareSource is prepare with every record submitted by source, numbered
// from seq.
func (m *docModel) prepareSource(source string, seq uint64, ops ...ot.Op) storage.Append {
	a := m.prepare(ops...)
	for i := range a.Records {
		a.Records[i].Source = source
		a.Records[i].Seq = seq + uint64(i)
	}
	return a
}

// accept records a committed append in the model.
func (m *docModel) accept(t *testing.T, a storage.Append) {
	t.Helper()
	if a.DocID != m.id || a.Head != m.head() {
		t.Fatalf("suite bug: accepting an append to %s at %d into model of %s at %d", a.DocID, a.Head, m.id, m.head())
	}
	for _, r := range a.Records {
		next, err := ot.Apply(m.text(), r.Op.Plain())
		if err != nil {
			t.Fatalf("suite bug: document %s: op %v of revision %d does not apply: %v", m.id, r.Op, r.Rev, err)
		}
		m.texts = append(m.texts, next)
		m.recs = append(m.recs, cloneRecord(r))
	}
	if a.Snapshot != nil {
		m.snaps[a.Snapshot.Rev] = true
	}
}

// commit commits a and records it in the model.
func (m *docModel) commit(t *testing.T, s storage.Store, a storage.Append) {
	t.Helper()
	mustCommit(t, s, a)
	m.accept(t, a)
}

// commitOps commits one append of ops.
func (m *docModel) commitOps(t *testing.T, s storage.Store, ops ...ot.Op) {
	t.Helper()
	m.commit(t, s, m.prepare(ops...))
}

// grow commits n random records, in appends of one to three.
func (m *docModel) grow(t *testing.T, s storage.Store, r *rand.Rand, n int) {
	t.Helper()
	for n > 0 {
		k := min(n, 1+r.IntN(3))
		m.commitOps(t, s, randomOps(t, r, m.text(), k)...)
		n -= k
	}
}

// saveSnapshot saves the model's text at rev with SaveSnapshot.
func (m *docModel) saveSnapshot(t *testing.T, s storage.Store, rev int64) {
	t.Helper()
	if err := s.SaveSnapshot(t.Context(), m.id, storage.Snapshot{Rev: rev, Content: m.texts[rev]}); err != nil {
		t.Fatalf("SaveSnapshot(%q, rev %d): %v", m.id, rev, err)
	}
	m.snaps[rev] = true
}

// snapshotAt is the revision of the newest snapshot at or before rev.
func (m *docModel) snapshotAt(rev int64) int64 {
	best := int64(-1)
	for r := range m.snaps {
		if r <= rev && r > best {
			best = r
		}
	}
	return best
}

// compact compacts the document and records it in the model.
func (m *docModel) compact(t *testing.T, s storage.Store, before int64) {
	t.Helper()
	if err := s.Compact(t.Context(), m.id, before); err != nil {
		t.Fatalf("Compact(%q, %d): %v", m.id, before, err)
	}
	if before > m.oldest {
		m.oldest = before
		m.snaps[before] = true
	}
}

func cloneRecord(r storage.Record) storage.Record {
	r.Op = r.Op.Clone()
	return r
}

// ---------------------------------------------------------------------------
// Random ops over text with more than ASCII in it.

var pieces = []string{
	"a", "b", "Z", " ", "\n", "é", "e\u0301", "\u0301", "漢", "字", "か", "한",
	"😀", "👍🏽", "👩\u200d👩\u200d👧", "🇯🇵", "\u200d", "\"", "\\", "\x00", "\t",
	"\u2028", "\ufeff", "\U0010FFFF", "ß", "Ω", "{\"d\":1}",
}

func randomText(r *rand.Rand, maxPieces int) string {
	var b strings.Builder
	for n := 1 + r.IntN(maxPieces); n > 0; n-- {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// randomOp returns a normalized, non-noop op that applies to text: up to
// three edits, each an insert, a delete (by count or with its text), or both.
func randomOp(t *testing.T, r *rand.Rand, text string) ot.Op {
	t.Helper()
	runes := []rune(text)
	var op ot.Op
	pos := 0
	for edits := 1 + r.IntN(3); edits > 0; edits-- {
		if rest := len(runes) - pos; rest > 0 {
			if k := r.IntN(rest + 1); k > 0 {
				op = append(op, ot.Skip(k))
				pos += k
			}
		}
		rest := len(runes) - pos
		del := rest > 0 && (r.IntN(2) == 0 || len(runes) > 200)
		if del {
			n := 1 + r.IntN(min(rest, 8))
			if r.IntN(2) == 0 {
				op = append(op, ot.DeleteText(string(runes[pos:pos+n])))
			} else {
				op = append(op, ot.Delete(n))
			}
			pos += n
		}
		if !del || r.IntN(2) == 0 {
			op = append(op, ot.Insert(randomText(r, 6)))
		}
	}
	norm, err := ot.Normalize(op)
	if err != nil {
		t.Fatalf("suite bug: random op %v: %v", op, err)
	}
	if norm.IsNoop() {
		return ot.Op{ot.Insert("x")}
	}
	return norm
}

// randomOps returns n ops, each applying to the text the previous ones make.
func randomOps(t *testing.T, r *rand.Rand, text string, n int) []ot.Op {
	t.Helper()
	ops := make([]ot.Op, n)
	for i := range ops {
		ops[i] = randomOp(t, r, text)
		var err error
		if text, err = ot.Apply(text, ops[i]); err != nil {
			t.Fatalf("suite bug: random op %v does not apply: %v", ops[i], err)
		}
	}
	return ops
}

func ins(s string) ot.Op { return ot.Op{ot.Insert(s)} }

// insOp is ins as a record's op.
func insOp(s string) doctype.Op { return doctype.PlainOp(ins(s)) }

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// ---------------------------------------------------------------------------
// Checks.

// wantErr checks that err wraps target and, if id is not "", names the
// document.
func wantErr(t *testing.T, err, target error, what, id string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error, want %v", what, target)
	case !errors.Is(err, target):
		t.Errorf("%s: error %q, want one wrapping %v", what, err, target)
	case id != "" && !strings.Contains(err.Error(), id):
		t.Errorf("%s: error %q does not name document %q", what, err, id)
	}
}

// wantErrOneOf checks that err wraps one of targets.
func wantErrOneOf(t *testing.T, err error, what string, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Errorf("%s: error %v, want one wrapping one of %v", what, err, targets)
}

func commit(t *testing.T, s storage.Store, apps ...storage.Append) []error {
	t.Helper()
	res, err := s.Commit(t.Context(), apps)
	if err != nil {
		t.Fatalf("Commit(%s): %v", describe(apps), err)
	}
	if len(res) != len(apps) {
		t.Fatalf("Commit(%s): %d results for %d appends", describe(apps), len(res), len(apps))
	}
	return res
}

func mustCommit(t *testing.T, s storage.Store, apps ...storage.Append) {
	t.Helper()
	for i, err := range commit(t, s, apps...) {
		if err != nil {
			t.Fatalf("Commit: append %d (%s): %v", i, describe(apps[i:i+1]), err)
		}
	}
}

// commitOne commits a alone and returns its result.
func commitOne(t *testing.T, s storage.Store, a storage.Append) error {
	t.Helper()
	return commit(t, s, a)[0]
}

func describe(apps []storage.Append) string {
	var parts []string
	for _, a := range apps {
		p := fmt.Sprintf("document %s at head %d + %d records", a.DocID, a.Head, len(a.Records))
		if a.Snapshot != nil {
			p += fmt.Sprintf(" + snapshot at %d", a.Snapshot.Rev)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// diffRecord describes how got differs from want, "" if it does not.
func diffRecord(got, want storage.Record) string {
	var d []string
	if got.Rev != want.Rev {
		d = append(d, fmt.Sprintf("Rev %d, want %d", got.Rev, want.Rev))
	}
	gj, gerr := got.Op.MarshalJSON()
	wj, _ := want.Op.MarshalJSON()
	if gerr != nil {
		d = append(d, fmt.Sprintf("Op does not marshal: %v", gerr))
	} else if string(gj) != string(wj) {
		d = append(d, fmt.Sprintf("Op %s, want %s", gj, wj))
	}
	if got.Source != want.Source {
		d = append(d, fmt.Sprintf("Source %q, want %q", got.Source, want.Source))
	}
	if got.Seq != want.Seq {
		d = append(d, fmt.Sprintf("Seq %d, want %d", got.Seq, want.Seq))
	}
	if got.User != want.User {
		d = append(d, fmt.Sprintf("User %q, want %q", got.User, want.User))
	}
	if !got.Time.Equal(want.Time) {
		d = append(d, fmt.Sprintf("Time %s, want %s", got.Time.Format(time.RFC3339Nano), want.Time.Format(time.RFC3339Nano)))
	}
	return strings.Join(d, "; ")
}

// checkMeta compares document metadata with the model.
func checkMeta(t *testing.T, what string, got storage.Document, m *docModel) {
	t.Helper()
	var d []string
	if got.ID != m.id {
		d = append(d, fmt.Sprintf("ID %q", got.ID))
	}
	if got.Title != m.title {
		d = append(d, fmt.Sprintf("Title %q, want %q", got.Title, m.title))
	}
	if !got.Created.Equal(m.created) {
		d = append(d, fmt.Sprintf("Created %s, want %s", got.Created.Format(time.RFC3339Nano), m.created.Format(time.RFC3339Nano)))
	}
	if want := m.updated(); !got.Updated.Equal(want) {
		d = append(d, fmt.Sprintf("Updated %s, want %s", got.Updated.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano)))
	}
	if got.Head != m.head() {
		d = append(d, fmt.Sprintf("Head %d, want %d", got.Head, m.head()))
	}
	if got.Oldest != m.oldest {
		d = append(d, fmt.Sprintf("Oldest %d, want %d", got.Oldest, m.oldest))
	}
	if len(d) > 0 {
		t.Errorf("%s: document %s: %s", what, m.id, strings.Join(d, "; "))
	}
}

func checkDoc(t *testing.T, s storage.Store, m *docModel) {
	t.Helper()
	got, err := s.Document(t.Context(), m.id)
	if err != nil {
		t.Errorf("Document(%q): %v", m.id, err)
		return
	}
	checkMeta(t, "Document", got, m)
}

// checkRecords checks Records(from, to) against the model.
func checkRecords(t *testing.T, s storage.Store, m *docModel, from, to int64) {
	t.Helper()
	got, err := s.Records(t.Context(), m.id, from, to)
	if err != nil {
		t.Errorf("Records(%q, %d, %d): %v", m.id, from, to, err)
		return
	}
	want := m.recs[from:to]
	if len(got) != len(want) {
		t.Errorf("Records(%q, %d, %d): %d records, want %d", m.id, from, to, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if d := diffRecord(got[i], want[i]); d != "" {
			t.Errorf("Records(%q, %d, %d): record %d (revision %d): %s", m.id, from, to, i, want[i].Rev, d)
		}
	}
}

func checkTextAt(t *testing.T, s storage.Store, m *docModel, rev int64) {
	t.Helper()
	got, err := storage.ContentAt(t.Context(), s, m.id, rev)
	if err != nil {
		t.Errorf("TextAt(%q, %d): %v", m.id, rev, err)
	} else if got != m.texts[rev] {
		t.Errorf("TextAt(%q, %d) = %q, want %q", m.id, rev, got, m.texts[rev])
	}
}

func checkSnapshot(t *testing.T, s storage.Store, m *docModel, rev int64) {
	t.Helper()
	got, err := s.Snapshot(t.Context(), m.id, rev)
	want := m.snapshotAt(rev)
	switch {
	case err != nil:
		t.Errorf("Snapshot(%q, %d): %v", m.id, rev, err)
	case got.Rev != want:
		t.Errorf("Snapshot(%q, %d) is at revision %d, want the newest at or before it, %d", m.id, rev, got.Rev, want)
	case got.Content != m.texts[got.Rev]:
		t.Errorf("Snapshot(%q, %d) at revision %d holds %q, want %q", m.id, rev, got.Rev, got.Content, m.texts[got.Rev])
	}
}

func checkLoad(t *testing.T, s storage.Store, m *docModel) {
	t.Helper()
	doc, rope, err := storage.Load(t.Context(), s, m.id)
	if err != nil {
		t.Errorf("Load(%q): %v", m.id, err)
		return
	}
	checkMeta(t, "Load", doc, m)
	if got := rope.Content(); got != m.text() {
		t.Errorf("Load(%q) text = %q, want %q (revision %d)", m.id, got, m.text(), m.head())
	}
}

// checkAll checks everything the store should hold of the document: its
// metadata, the retained log, the text and snapshot at every retained
// revision, and its head state.
func checkAll(t *testing.T, s storage.Store, m *docModel) {
	t.Helper()
	checkDoc(t, s, m)
	checkRecords(t, s, m, m.oldest, m.head())
	for rev := m.oldest; rev <= m.head(); rev++ {
		checkTextAt(t, s, m, rev)
		checkSnapshot(t, s, m, rev)
	}
	checkLoad(t, s, m)
}

// checkLookup checks that (source, seq) was committed to the document at rev,
// or (rev < 0) was not.
func checkLookup(t *testing.T, s storage.Store, id, source string, seq uint64, rev int64) {
	t.Helper()
	got, found, err := s.LookupSubmission(t.Context(), id, source, seq)
	switch {
	case err != nil:
		t.Errorf("LookupSubmission(%q, %q, %d): %v", id, source, seq, err)
	case rev < 0 && found:
		t.Errorf("LookupSubmission(%q, %q, %d) = revision %d, want not found", id, source, seq, got)
	case rev >= 0 && !found:
		t.Errorf("LookupSubmission(%q, %q, %d) = not found, want revision %d", id, source, seq, rev)
	case rev >= 0 && got != rev:
		t.Errorf("LookupSubmission(%q, %q, %d) = revision %d, want %d", id, source, seq, got, rev)
	}
}

// checkLookups checks that every record of the model with a Source is found
// at its revision.
func checkLookups(t *testing.T, s storage.Store, m *docModel) {
	t.Helper()
	for _, r := range m.recs {
		if r.Source != "" {
			checkLookup(t, s, m.id, r.Source, r.Seq, r.Rev)
		}
	}
}

// wantGone checks that every per-document method reports that id does not
// exist.
func wantGone(t *testing.T, s storage.Store, id string) {
	t.Helper()
	ctx := t.Context()
	_, err := s.Document(ctx, id)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Document(%q)", id), id)
	_, err = s.Records(ctx, id, 0, 0)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Records(%q, 0, 0)", id), id)
	_, err = s.Snapshot(ctx, id, 0)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Snapshot(%q, 0)", id), id)
	err = s.SaveSnapshot(ctx, id, storage.Snapshot{Rev: 0, Content: "x"})
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("SaveSnapshot(%q, rev 0)", id), id)
	err = s.Compact(ctx, id, 0)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Compact(%q, 0)", id), id)
	err = s.DeleteDocument(ctx, id)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("DeleteDocument(%q)", id), id)
	err = commitOne(t, s, storage.Append{DocID: id, Head: 0, Records: []storage.Record{{Rev: 1, Op: insOp("x"), Time: recordTime(1)}}})
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Commit to %q", id), id)
	_, found, err := s.LookupSubmission(ctx, id, "src", 1)
	if err != nil {
		wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("LookupSubmission(%q)", id), id)
	} else if found {
		t.Errorf("LookupSubmission(%q, %q, 1) found a submission in a document that does not exist", id, "src")
	}
	_, _, err = storage.Load(ctx, s, id)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("Load(%q)", id), id)
	_, err = storage.ContentAt(ctx, s, id, 0)
	wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("TextAt(%q, 0)", id), id)
}

func listIDs(docs []storage.Document) []string {
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids
}

// listAll pages through the store limit documents at a time, checking the
// paging rules, and returns everything listed.
func listAll(t *testing.T, s storage.Store, limit int) []storage.Document {
	t.Helper()
	eff := limit
	if eff <= 0 {
		eff = 100
	}
	var all []storage.Document
	after := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("ListDocuments(Limit %d): more than 10000 pages", limit)
		}
		docs, next, err := s.ListDocuments(t.Context(), storage.ListOptions{After: after, Limit: limit})
		if err != nil {
			t.Fatalf("ListDocuments(After %q, Limit %d): %v", after, limit, err)
		}
		what := fmt.Sprintf("ListDocuments(After %q, Limit %d)", after, limit)
		if len(docs) > eff {
			t.Fatalf("%s: %d documents, more than the limit", what, len(docs))
		}
		prev := after
		for i, d := range docs {
			if (page > 0 || i > 0) && d.ID <= prev {
				t.Fatalf("%s: document %q listed after %q: not in increasing id order", what, d.ID, prev)
			}
			prev = d.ID
		}
		all = append(all, docs...)
		if next == "" {
			return all
		}
		switch {
		case len(docs) == 0:
			t.Fatalf("%s: an empty page with next token %q", what, next)
		case len(docs) < eff:
			t.Fatalf("%s: %d documents, fewer than the limit, yet next token %q", what, len(docs), next)
		case next != docs[len(docs)-1].ID:
			t.Fatalf("%s: next token %q, want the id of the page's last document, %q", what, next, docs[len(docs)-1].ID)
		}
		after = next
	}
}

// ---------------------------------------------------------------------------
// CreateDocument.

func testCreateMetadata(t *testing.T, s storage.Store) {
	ctx := t.Context()
	cases := []struct {
		id, title, text string
		created         time.Time
	}{
		{"plain", "Plain title", "hello, world", baseTime},
		{"empty", "", "", time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC)},
		{"unicode", "日本語のタイトル 📝 e\u0301t\u00e9 👩\u200d👩\u200d👧 🇯🇵 \"q\" \\",
			"漢字かな交じり文 😀👍🏽 e\u0301 \x00\t\n\"\\\u2028\ufeff\U0010FFFF", time.Now()},
		{"Max." + strings.Repeat("x", storage.MaxIDLen-4), "an id of MaxIDLen bytes", "x",
			time.Date(2099, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -8*3600))},
		{"dots..and-dashes_", strings.Repeat("ü", 1000), strings.Repeat("👍🏽 ", 3000), baseTime.Add(1)},
	}
	for _, c := range cases {
		if err := storage.CheckID(c.id); err != nil {
			t.Fatalf("suite bug: %v", err)
		}
		doc := storage.Document{ID: c.id, Title: c.title, Created: c.created, Head: 42, Oldest: 7}
		if err := s.CreateDocument(ctx, doc, c.text); err != nil {
			t.Fatalf("CreateDocument(%q): %v", c.id, err)
		}
	}
	for _, c := range cases {
		m := &docModel{id: c.id, title: c.title, created: c.created, texts: []string{c.text}, snaps: map[int64]bool{0: true}}
		checkDoc(t, s, m)
		snap, err := s.Snapshot(ctx, c.id, 0)
		if err != nil {
			t.Errorf("Snapshot(%q, 0): %v", c.id, err)
		} else if snap.Rev != 0 || snap.Content != c.text {
			t.Errorf("Snapshot(%q, 0) = revision %d, %q; want the initial text at revision 0, %q", c.id, snap.Rev, snap.Content, c.text)
		}
		checkAll(t, s, m)
	}
}

// testSetTitle: a new title, and nothing else of the document changes
// (its history, head and updated time included); the other documents keep
// theirs; a missing document is an error.
func testSetTitle(t *testing.T, s storage.Store) {
	ctx := t.Context()
	m := createDoc(t, s, "titled", "text")
	m.commitOps(t, s, ins("a"), ins("b"))
	other := createDoc(t, s, "other", "x")
	for _, title := range []string{"Renamed 📝 日本語", "", strings.Repeat("ü", 500)} {
		if err := s.SetTitle(ctx, m.id, title); err != nil {
			t.Fatalf("SetTitle(%q): %v", title, err)
		}
		m.title = title
		checkDoc(t, s, m)
		checkAll(t, s, m)
	}
	checkDoc(t, s, other)
	m.commitOps(t, s, ins("c"))
	checkAll(t, s, m)
	wantErr(t, s.SetTitle(ctx, "missing", "x"), storage.ErrNotFound, `SetTitle("missing")`, "missing")
	wantErr(t, s.SetTitle(ctx, "bad id", "x"), storage.ErrInvalid, `SetTitle("bad id")`, "bad id")
	if err := s.DeleteDocument(ctx, other.id); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.SetTitle(ctx, other.id, "x"), storage.ErrNotFound, "SetTitle after DeleteDocument", other.id)
}

func testCreateExists(t *testing.T, s storage.Store) {
	ctx := t.Context()
	m := createDoc(t, s, "dup", "original 😀")
	err := s.CreateDocument(ctx, storage.Document{ID: "dup", Title: "other", Created: baseTime.Add(time.Hour)}, "other")
	wantErr(t, err, storage.ErrExists, `CreateDocument("dup") again`, "dup")
	checkAll(t, s, m)

	m.commitOps(t, s, ins("a"), ins("b"))
	m.saveSnapshot(t, s, 2)
	err = s.CreateDocument(ctx, storage.Document{ID: "dup", Title: "other", Created: baseTime.Add(time.Hour)}, "other")
	wantErr(t, err, storage.ErrExists, `CreateDocument("dup") after commits`, "dup")
	checkAll(t, s, m)
}

var badIDs = []string{
	"", strings.Repeat("a", storage.MaxIDLen+1), "a/b", "a b", "ü", "a\x00b", "a:b", "a\\b", "😀", "a\n", "%2F",
}

func testInvalidID(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createDoc(t, s, "ok", "")
	for _, id := range badIDs {
		if storage.CheckID(id) == nil {
			t.Fatalf("suite bug: CheckID accepts %q", id)
		}
		q := fmt.Sprintf("%.20q", id)
		err := s.CreateDocument(ctx, storage.Document{ID: id, Created: baseTime}, "text")
		wantErr(t, err, storage.ErrInvalid, "CreateDocument("+q+")", "")
		_, err = s.Document(ctx, id)
		wantErr(t, err, storage.ErrInvalid, "Document("+q+")", "")
		err = s.DeleteDocument(ctx, id)
		wantErr(t, err, storage.ErrInvalid, "DeleteDocument("+q+")", "")
		err = commitOne(t, s, storage.Append{DocID: id, Head: 0, Records: []storage.Record{{Rev: 1, Op: insOp("x"), Time: recordTime(1)}}})
		wantErr(t, err, storage.ErrInvalid, "Commit to "+q, "")
		_, err = s.Records(ctx, id, 0, 0)
		wantErr(t, err, storage.ErrInvalid, "Records("+q+", 0, 0)", "")
		_, err = s.Snapshot(ctx, id, 0)
		wantErr(t, err, storage.ErrInvalid, "Snapshot("+q+", 0)", "")
		err = s.SaveSnapshot(ctx, id, storage.Snapshot{Rev: 0, Content: "text"})
		wantErr(t, err, storage.ErrInvalid, "SaveSnapshot("+q+")", "")
		_, _, err = s.LookupSubmission(ctx, id, "src", 1)
		wantErr(t, err, storage.ErrInvalid, "LookupSubmission("+q+")", "")
		err = s.Compact(ctx, id, 0)
		wantErr(t, err, storage.ErrInvalid, "Compact("+q+", 0)", "")
	}
	if got := listIDs(listAll(t, s, 0)); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("after CreateDocument with invalid ids, the store lists %q, want only %q", got, "ok")
	}
}

func testNotFound(t *testing.T, s storage.Store) {
	createDoc(t, s, "present", "")
	createDoc(t, s, "missing-doc-", "")
	createDoc(t, s, "missing-doc.x", "")
	wantGone(t, s, "missing-doc")
}

// ---------------------------------------------------------------------------
// ListDocuments.

func testListEmpty(t *testing.T, s storage.Store) {
	for _, limit := range []int{0, 1, 10} {
		docs, next, err := s.ListDocuments(t.Context(), storage.ListOptions{Limit: limit})
		if err != nil || len(docs) != 0 || next != "" {
			t.Errorf("ListDocuments(Limit %d) on an empty store = %d documents, next %q, %v; want none, \"\", nil", limit, len(docs), next, err)
		}
	}
	docs, next, err := s.ListDocuments(t.Context(), storage.ListOptions{After: "m", Limit: 5})
	if err != nil || len(docs) != 0 || next != "" {
		t.Errorf("ListDocuments(After \"m\") on an empty store = %d documents, next %q, %v; want none, \"\", nil", len(docs), next, err)
	}
}

func testListOrder(t *testing.T, s storage.Store) {
	ids := []string{"b", "a", "a-", "a.", "a0", "aA", "a_", "aa", "A", "-", ".", "..", "_", "0", "9",
		"a-b", "a.b", "Z", "z", "zz", "a" + strings.Repeat("z", storage.MaxIDLen-1), "a-a"}
	for _, id := range ids {
		createDoc(t, s, id, "")
	}
	want := slices.Sorted(slices.Values(ids))
	for _, limit := range []int{1, 2, 3, len(ids) - 1, len(ids), 0} {
		if got := listIDs(listAll(t, s, limit)); !slices.Equal(got, want) {
			t.Errorf("paging with Limit %d lists\n%q\nwant (bytewise id order)\n%q", limit, got, want)
		}
	}
	afters := append(slices.Clone(ids), "a-0", "aB", "0a", "zzz", "A0")
	for _, after := range afters {
		docs, next, err := s.ListDocuments(t.Context(), storage.ListOptions{After: after, Limit: 1000})
		if err != nil {
			t.Errorf("ListDocuments(After %q): %v", after, err)
			continue
		}
		var wantAfter []string
		for _, id := range want {
			if id > after {
				wantAfter = append(wantAfter, id)
			}
		}
		if got := listIDs(docs); !slices.Equal(got, wantAfter) || next != "" {
			t.Errorf("ListDocuments(After %q, Limit 1000) = %q, next %q; want %q, \"\"", after, got, next, wantAfter)
		}
	}
}

func testListPaging(t *testing.T, s storage.Store) {
	const n = 105
	r := newRand(105)
	var want []string
	for _, i := range r.Perm(n) {
		id := fmt.Sprintf("doc-%03d", i)
		createDoc(t, s, id, "")
		want = append(want, id)
	}
	slices.Sort(want)
	for _, limit := range []int{1, 2, 7, 10, 52, 100, 104, 105, 106, 1000, 0, -1} {
		if got := listIDs(listAll(t, s, limit)); !slices.Equal(got, want) {
			t.Errorf("paging with Limit %d lists %d documents, want %d:\ngot  %q\nwant %q", limit, len(got), len(want), got, want)
		}
	}
	for _, limit := range []int{0, -1} {
		docs, next, err := s.ListDocuments(t.Context(), storage.ListOptions{Limit: limit})
		if err != nil || len(docs) != 100 || next != "doc-099" {
			t.Errorf("ListDocuments(Limit %d) of %d documents = %d documents, next %q, %v; want 100 (the default), \"doc-099\", nil", limit, n, len(docs), next, err)
		}
	}
}

func testListStable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i := range 20 {
		createDoc(t, s, fmt.Sprintf("s-%02d", i), "")
	}
	opts := storage.ListOptions{Limit: 5}
	first, next, err := s.ListDocuments(ctx, opts)
	if err != nil {
		t.Fatalf("ListDocuments(Limit 5): %v", err)
	}
	again, next2, err := s.ListDocuments(ctx, opts)
	if err != nil || !slices.Equal(listIDs(first), listIDs(again)) || next != next2 {
		t.Fatalf("ListDocuments(Limit 5) twice: %q next %q, then %q next %q, %v", listIDs(first), next, listIDs(again), next2, err)
	}
	if want := []string{"s-00", "s-01", "s-02", "s-03", "s-04"}; !slices.Equal(listIDs(first), want) || next != "s-04" {
		t.Fatalf("ListDocuments(Limit 5) = %q, next %q; want %q, next \"s-04\"", listIDs(first), next, want)
	}
	// Between pages: delete a listed and an unlisted document, create one
	// before the cursor, one right after it and one further on.
	for _, id := range []string{"s-02", "s-07"} {
		if err := s.DeleteDocument(ctx, id); err != nil {
			t.Fatalf("DeleteDocument(%q): %v", id, err)
		}
	}
	for _, id := range []string{"s-01a", "s-04a", "s-10a"} {
		createDoc(t, s, id, "")
	}
	got := listIDs(first)
	after := next
	for pages := 0; after != ""; pages++ {
		if pages > 100 {
			t.Fatal("ListDocuments: more than 100 pages of 5 for 21 documents")
		}
		docs, next, err := s.ListDocuments(ctx, storage.ListOptions{After: after, Limit: 5})
		if err != nil {
			t.Fatalf("ListDocuments(After %q, Limit 5): %v", after, err)
		}
		got = append(got, listIDs(docs)...)
		after = next
	}
	want := []string{"s-00", "s-01", "s-02", "s-03", "s-04", "s-04a", "s-05", "s-06", "s-08", "s-09", "s-10", "s-10a",
		"s-11", "s-12", "s-13", "s-14", "s-15", "s-16", "s-17", "s-18", "s-19"}
	if !slices.Equal(got, want) {
		t.Errorf("paging across changes lists\n%q\nwant\n%q", got, want)
	}
}

func testListMetadata(t *testing.T, s storage.Store) {
	r := newRand(7)
	a := createDoc(t, s, "meta-a", "α")
	b := createDoc(t, s, "meta-b", "β")
	c := createDoc(t, s, "meta-c", "γ")
	a.grow(t, s, r, 3)
	c.grow(t, s, r, 6)
	c.compact(t, s, 4)
	models := []*docModel{a, b, c}
	for _, limit := range []int{1, 0} {
		docs := listAll(t, s, limit)
		if len(docs) != len(models) {
			t.Fatalf("ListDocuments(Limit %d) lists %q, want %d documents", limit, listIDs(docs), len(models))
		}
		for i, d := range docs {
			checkMeta(t, fmt.Sprintf("ListDocuments(Limit %d)", limit), d, models[i])
		}
	}
}

// ---------------------------------------------------------------------------
// DeleteDocument.

func testDeleteRemoves(t *testing.T, s storage.Store) {
	r := newRand(3)
	keep := createDoc(t, s, "keep", "k")
	m := createDoc(t, s, "gone", "g")
	for i := range 4 {
		m.commit(t, s, m.prepareSource("src", uint64(i+1), randomOps(t, r, m.text(), 2)...))
	}
	m.saveSnapshot(t, s, 3)
	m.compact(t, s, 2)
	keep.grow(t, s, r, 3)
	if err := s.DeleteDocument(t.Context(), "gone"); err != nil {
		t.Fatalf("DeleteDocument(%q): %v", "gone", err)
	}
	wantGone(t, s, "gone")
	if got := listIDs(listAll(t, s, 0)); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after DeleteDocument(%q) the store lists %q, want %q", "gone", got, []string{"keep"})
	}
	checkAll(t, s, keep)
}

func testDeleteRecreate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(4)
	old := createDoc(t, s, "again", "old text")
	for i := range 6 {
		old.commit(t, s, old.prepareSource("src", uint64(i+1), randomOp(t, r, old.text())))
	}
	old.saveSnapshot(t, s, 3)
	old.saveSnapshot(t, s, 6)
	old.compact(t, s, 2)
	if err := s.DeleteDocument(ctx, "again"); err != nil {
		t.Fatalf("DeleteDocument(%q): %v", "again", err)
	}

	m := &docModel{id: "again", title: "the second", created: baseTime.Add(24 * time.Hour), texts: []string{"new text"}, snaps: map[int64]bool{0: true}}
	if err := s.CreateDocument(ctx, storage.Document{ID: m.id, Title: m.title, Created: m.created}, "new text"); err != nil {
		t.Fatalf("CreateDocument(%q) after DeleteDocument: %v", m.id, err)
	}
	checkAll(t, s, m)
	for i := range 6 {
		checkLookup(t, s, m.id, "src", uint64(i+1), -1)
	}
	// The new history reaches revisions the old one had snapshots and
	// submissions at: none of them may show through.
	for i := range 7 {
		m.commit(t, s, m.prepareSource("other", uint64(i+1), randomOp(t, r, m.text())))
	}
	checkAll(t, s, m)
	checkLookups(t, s, m)
	for i := range 6 {
		checkLookup(t, s, m.id, "src", uint64(i+1), -1)
	}
}

func testDeleteNeighbours(t *testing.T, s storage.Store) {
	r := newRand(5)
	ids := []string{"p", "p-", "p.q", "p0", "pp", "P", "o", "p_"}
	models := map[string]*docModel{}
	for _, id := range ids {
		m := createDoc(t, s, id, "text of "+id)
		for i := range 3 {
			m.commit(t, s, m.prepareSource("src", uint64(i+1), randomOp(t, r, m.text())))
		}
		m.saveSnapshot(t, s, 2)
		models[id] = m
	}
	if err := s.DeleteDocument(t.Context(), "p"); err != nil {
		t.Fatalf("DeleteDocument(%q): %v", "p", err)
	}
	wantGone(t, s, "p")
	for _, id := range ids[1:] {
		checkAll(t, s, models[id])
		checkLookups(t, s, models[id])
	}
}

// ---------------------------------------------------------------------------
// Commit.

func testCommitSingle(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "c", "hello")
	m.commitOps(t, s, ot.Op{ot.Skip(5), ot.Insert(", world 🌍")})
	checkAll(t, s, m)
	m.commitOps(t, s, ot.Op{ot.DeleteText("hello"), ot.Insert("Hallo")})
	checkAll(t, s, m)
}

func testCommitMultiRecord(t *testing.T, s storage.Store) {
	r := newRand(11)
	m := createDoc(t, s, "multi", "start")
	m.commitOps(t, s, randomOps(t, r, m.text(), 5)...)
	checkAll(t, s, m)
	m.commitOps(t, s, randomOps(t, r, m.text(), 1)...)
	m.commitOps(t, s, randomOps(t, r, m.text(), 3)...)
	checkAll(t, s, m)
}

func testCommitMultiDocument(t *testing.T, s storage.Store) {
	r := newRand(12)
	ms := []*docModel{createDoc(t, s, "m", "m"), createDoc(t, s, "m-1", "m-1"), createDoc(t, s, "m1", "m1"), createDoc(t, s, "n", "")}
	for round := range 5 {
		var apps []storage.Append
		for i, m := range ms {
			apps = append(apps, m.prepare(randomOps(t, r, m.text(), 1+(i+round)%3)...))
		}
		mustCommit(t, s, apps...)
		for i, m := range ms {
			m.accept(t, apps[i])
		}
		for _, m := range ms {
			checkAll(t, s, m)
		}
	}
}

func testCommitPerAppend(t *testing.T, s storage.Store) {
	a := createDoc(t, s, "pa-a", "a")
	b := createDoc(t, s, "pa-b", "b")
	c := createDoc(t, s, "pa-c", "c")
	d := createDoc(t, s, "pa-d", "d")
	b.commitOps(t, s, ins("1"), ins("2"))

	okA := a.prepareSource("s", 1, ins("A"), ins("A"))
	staleB := b.prepareSource("s", 2, ins("B"))
	staleB.Head, staleB.Records[0].Rev = 1, 2
	missing := storage.Append{DocID: "pa-missing", Head: 0, Records: []storage.Record{{Rev: 1, Op: insOp("x"), Source: "s", Seq: 3, Time: recordTime(1)}}}
	badC := c.prepareSource("s", 4, ins("C"))
	badC.Records[0].Rev = 2
	okD := d.prepareSource("s", 5, ins("D"))
	apps := []storage.Append{okA, staleB, missing, badC, okD}
	res := commit(t, s, apps...)
	if res[0] != nil {
		t.Errorf("Commit: append 0 (%s): %v, want nil", describe(apps[0:1]), res[0])
	}
	wantErr(t, res[1], storage.ErrConflict, "Commit: append 1, stale head", "pa-b")
	wantErr(t, res[2], storage.ErrNotFound, "Commit: append 2, missing document", "pa-missing")
	wantErr(t, res[3], storage.ErrInvalid, "Commit: append 3, record at the wrong revision", "pa-c")
	if res[4] != nil {
		t.Errorf("Commit: append 4 (%s): %v, want nil", describe(apps[4:5]), res[4])
	}
	if res[0] == nil {
		a.accept(t, okA)
	}
	if res[4] == nil {
		d.accept(t, okD)
	}
	for _, m := range []*docModel{a, b, c, d} {
		checkAll(t, s, m)
	}
	checkLookup(t, s, "pa-a", "s", 1, 1)
	checkLookup(t, s, "pa-a", "s", 2, 2)
	checkLookup(t, s, "pa-b", "s", 2, -1)
	checkLookup(t, s, "pa-c", "s", 4, -1)
	checkLookup(t, s, "pa-d", "s", 5, 1)
	wantGone(t, s, "pa-missing")
}

func testCommitConflict(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "cas", "abc")
	m.commitOps(t, s, ins("1"), ins("2"), ins("3"))
	bad := func(head int64, n int, snap *storage.Snapshot) storage.Append {
		a := storage.Append{DocID: m.id, Head: head, Snapshot: snap}
		for i := range n {
			rev := head + 1 + int64(i)
			a.Records = append(a.Records, storage.Record{Rev: rev, Op: insOp("x"), Source: "loser", Seq: uint64(100*head) + uint64(i), Time: recordTime(rev)})
		}
		return a
	}
	cases := []struct {
		name string
		a    storage.Append
	}{
		{"stale head", bad(2, 1, nil)},
		{"stale head at 0", bad(0, 2, nil)},
		{"head ahead", bad(4, 1, nil)},
		{"head far ahead", bad(50, 3, nil)},
		{"stale head with a snapshot", bad(2, 1, &storage.Snapshot{Rev: 3, Content: "bogus"})},
		{"head ahead with a snapshot", bad(4, 1, &storage.Snapshot{Rev: 2, Content: "bogus"})},
	}
	for _, c := range cases {
		wantErr(t, commitOne(t, s, c.a), storage.ErrConflict, "Commit with "+c.name, m.id)
		checkAll(t, s, m)
		for _, r := range c.a.Records {
			checkLookup(t, s, m.id, r.Source, r.Seq, -1)
		}
	}
	// A negative head cannot match; it is a conflict or invalid.
	err := commitOne(t, s, bad(-1, 1, nil))
	wantErrOneOf(t, err, "Commit at head -1", storage.ErrConflict, storage.ErrInvalid)
	checkAll(t, s, m)
	// The document still takes appends at its head.
	m.commitOps(t, s, ins("4"))
	checkAll(t, s, m)
}

func testCommitInvalid(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "inv", "abc")
	m.commitOps(t, s, ins("1"), ins("2"))
	rec := func(rev int64, seq uint64) storage.Record {
		return storage.Record{Rev: rev, Op: insOp("x"), Source: "bad", Seq: seq, Time: recordTime(rev)}
	}
	cases := []struct {
		name string
		a    storage.Append
	}{
		{"no records", storage.Append{DocID: m.id, Head: 2}},
		{"an empty record slice", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{}}},
		{"no records but a snapshot", storage.Append{DocID: m.id, Head: 2, Snapshot: &storage.Snapshot{Rev: 2, Content: m.text()}}},
		{"a gap before the first record", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(4, 1)}}},
		{"the first record at the head", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(2, 2)}}},
		{"the first record at revision 0", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(0, 3)}}},
		{"a gap between records", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(3, 4), rec(5, 5)}}},
		{"two records at one revision", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(3, 6), rec(3, 7)}}},
		{"records out of order", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(4, 8), rec(3, 9)}}},
		{"a snapshot past the new head", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(3, 10)}, Snapshot: &storage.Snapshot{Rev: 4, Content: "bogus"}}},
		{"a snapshot at a negative revision", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(3, 11)}, Snapshot: &storage.Snapshot{Rev: -1, Content: "bogus"}}},
		{"a source longer than MaxSourceLen", storage.Append{DocID: m.id, Head: 2, Records: []storage.Record{rec(3, 12), rec(4, 13)}}},
	}
	cases[len(cases)-1].a.Records[1].Source = strings.Repeat("s", storage.MaxSourceLen+1)
	for _, c := range cases {
		wantErr(t, commitOne(t, s, c.a), storage.ErrInvalid, "Commit with "+c.name, m.id)
		checkAll(t, s, m)
		for _, r := range c.a.Records {
			if len(r.Source) <= storage.MaxSourceLen {
				checkLookup(t, s, m.id, r.Source, r.Seq, -1)
				continue
			}
			_, found, err := s.LookupSubmission(t.Context(), m.id, r.Source, r.Seq)
			if err != nil {
				wantErr(t, err, storage.ErrInvalid, "LookupSubmission with a source longer than MaxSourceLen", "")
			} else if found {
				t.Errorf("LookupSubmission(%q) found a source longer than MaxSourceLen, which no commit can have written", m.id)
			}
		}
	}
	m.commitOps(t, s, ins("3"))
	checkAll(t, s, m)
}

func testCommitNoAppends(t *testing.T, s storage.Store) {
	createDoc(t, s, "x", "")
	for _, apps := range [][]storage.Append{nil, {}} {
		res, err := s.Commit(t.Context(), apps)
		if err != nil || len(res) != 0 {
			t.Errorf("Commit with no appends = %v, %v; want no results, nil", res, err)
		}
	}
}

func testCommitSameDocTwice(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "twice", "")
	// Two appends at one head in one call: exactly one may win.
	first := m.prepareSource("first", 1, ins("first"))
	second := m.prepareSource("second", 1, ins("second"))
	res := commit(t, s, first, second)
	switch {
	case res[0] == nil && res[1] == nil:
		t.Fatalf("Commit: two appends to document %s at head 0 in one call both committed revision 1", m.id)
	case res[0] != nil && res[1] != nil:
		t.Fatalf("Commit: two appends to document %s at head 0 in one call both failed (%v; %v), want one committed", m.id, res[0], res[1])
	case res[0] == nil:
		wantErr(t, res[1], storage.ErrConflict, "Commit: the second of two appends at one head", m.id)
		m.accept(t, first)
		checkLookup(t, s, m.id, "second", 1, -1)
	default:
		wantErr(t, res[0], storage.ErrConflict, "Commit: the first of two appends at one head", m.id)
		m.accept(t, second)
		checkLookup(t, s, m.id, "first", 1, -1)
	}
	checkAll(t, s, m)
	checkLookups(t, s, m)

	// Two appends in one call, the second on top of the first: the first
	// is committed; the second may be, or conflict.
	a := m.prepareSource("chain", 1, ins("a"), ins("b"))
	var next docModel = *m
	next.recs = slices.Clone(m.recs)
	next.texts = slices.Clone(m.texts)
	next.accept(t, a)
	b := next.prepareSource("chain", 3, ins("c"))
	res = commit(t, s, a, b)
	if res[0] != nil {
		t.Fatalf("Commit: append at the head (%s): %v", describe([]storage.Append{a}), res[0])
	}
	m.accept(t, a)
	if res[1] == nil {
		m.accept(t, b)
	} else {
		wantErr(t, res[1], storage.ErrConflict, "Commit: an append on top of another in the same call", m.id)
		checkLookup(t, s, m.id, "chain", 3, -1)
	}
	checkAll(t, s, m)
	checkLookups(t, s, m)
}

func testCommitRoundTrip(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "rt", "hello, wörld 漢字 👩\u200d👩\u200d👧 e\u0301!")
	long := strings.Repeat("long 長い 😀 ", 2000)
	type rc struct {
		op     ot.Op
		source string
		seq    uint64
		user   string
		time   time.Time
	}
	cases := []rc{
		{ins("hi 😀"), "", 0, "", baseTime},
		{ot.Op{ot.Skip(6), ot.DeleteText("llo"), ot.Insert("LLO")}, "client-😀", math.MaxUint64, "user 漢字", time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)},
		{ot.Op{ot.Skip(1), ot.Delete(2)}, "a/b:c\x00d", 1 << 63, "\x00", time.Date(2099, 1, 1, 0, 0, 0, 999999999, time.FixedZone("", -12*3600))},
		{ins("\x00\t\n\"\\\u2028\u2029\ufeff\U0010FFFF 🇯🇵 {\"d\":2}"), "s", 1<<53 + 1, "u", time.Now()},
		{ot.Op{ot.Skip(3), ot.Insert("x"), ot.Delete(1)}, "s", 1<<53 + 2, "u", baseTime.Add(1)},
		{ot.Op{ot.Skip(3), ot.Delete(1), ot.Insert("y")}, "s", 1<<53 + 3, "u", baseTime.Add(2)},
		{ot.Op{ot.Skip(2), ot.Insert(long)}, strings.Repeat("S", storage.MaxSourceLen), 1, strings.Repeat("U", 1000), baseTime.Add(3)},
		{ot.Op{ot.Skip(2), ot.DeleteText(long), ot.Insert("e\u0301")}, "s", 2, "u", baseTime.Add(-time.Nanosecond)},
	}
	for i, c := range cases {
		norm, err := ot.Normalize(c.op)
		if err != nil {
			t.Fatalf("suite bug: case %d: %v", i, err)
		}
		if c.op.String() != norm.String() {
			t.Fatalf("suite bug: case %d: op %v is not normalized", i, c.op)
		}
		a := m.prepare(c.op)
		a.Records[0].Source, a.Records[0].Seq, a.Records[0].User, a.Records[0].Time = c.source, c.seq, c.user, c.time
		m.commit(t, s, a)
		checkDoc(t, s, m)
	}
	// A multi-record append with every field different.
	a := m.prepare(ins("1"), ins("2"), ins("3"))
	for i := range a.Records {
		a.Records[i].Source = fmt.Sprintf("multi-%d", i)
		a.Records[i].Seq = uint64(1000 + i)
		a.Records[i].User = fmt.Sprintf("user-%d", i)
		a.Records[i].Time = recordTime(int64(-i))
	}
	m.commit(t, s, a)
	checkAll(t, s, m)
	checkLookups(t, s, m)
	for from := range m.head() + 1 {
		checkRecords(t, s, m, from, m.head())
	}
	// Records read twice come back the same.
	checkRecords(t, s, m, 0, m.head())
}

func testCommitAliasing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	m := createDoc(t, s, "alias", "abc")
	a := m.prepareSource("src", 1, ot.Op{ot.Skip(1), ot.Insert("X")}, ot.Op{ot.Insert("Y")})
	a.Snapshot = &storage.Snapshot{Rev: 2, Content: "YaXbc"}
	m.commit(t, s, a)
	// The caller reuses its memory.
	a.Records[0].Op.Plain()[1] = ot.Insert("MUTATED")
	a.Records[0].Op = doctype.PlainOp(append(a.Records[0].Op.Plain(), ot.Delete(1)))
	a.Records[1].Source = "mutated"
	a.Records[1].Rev = 99
	a.Records = append(a.Records[:0], storage.Record{Rev: 7})
	a.Snapshot.Content = "mutated"
	a.Snapshot.Rev = 1
	checkAll(t, s, m)
	checkLookups(t, s, m)

	// The caller writes into what it was given.
	got, err := s.Records(ctx, m.id, 0, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("Records(%q, 0, 2) = %d records, %v", m.id, len(got), err)
	}
	got[0].Op.Plain()[0] = ot.Skip(2)
	got[0].Source = "mutated"
	got[1].Op = doctype.PlainOp(append(got[1].Op.Plain()[:0], ot.Insert("Z")))
	got[1].Rev = 5
	docs, _, err := s.ListDocuments(ctx, storage.ListOptions{})
	if err != nil || len(docs) != 1 {
		t.Fatalf("ListDocuments = %d documents, %v", len(docs), err)
	}
	docs[0].Title = "mutated"
	docs[0].Head = 100
	checkAll(t, s, m)
	checkLookups(t, s, m)
}

// testConcurrentRounds has workers race for each revision with the same head:
// exactly one of them wins it.
func testConcurrentRounds(t *testing.T, s storage.Store) {
	const workers, rounds = 8, 40
	ctx := t.Context()
	m := createDoc(t, s, "race", "")
	type lost struct {
		source string
		seq    uint64
	}
	var losers []lost
	for round := 1; round <= rounds; round++ {
		head := m.head()
		apps := make([]storage.Append, workers)
		for w := range apps {
			rev := head + 1
			apps[w] = storage.Append{DocID: m.id, Head: head, Records: []storage.Record{{
				Rev: rev, Op: insOp(fmt.Sprintf("<%d.%d>", w, round)), Source: fmt.Sprintf("worker-%d", w),
				Seq: uint64(round), User: fmt.Sprintf("user-%d", w), Time: recordTime(rev).Add(time.Duration(w)),
			}}}
		}
		results := make([]error, workers)
		callErrs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				<-start
				res, err := s.Commit(ctx, apps[w:w+1])
				switch {
				case err != nil:
					callErrs[w] = err
				case len(res) != 1:
					callErrs[w] = fmt.Errorf("%d results for 1 append", len(res))
				default:
					results[w] = res[0]
				}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w := range workers {
			if callErrs[w] != nil {
				t.Fatalf("round %d: worker %d: Commit to document %s at head %d: %v", round, w, m.id, head, callErrs[w])
			}
			switch err := results[w]; {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: workers %d and %d both committed revision %d of document %s", round, winner, w, head+1, m.id)
			case err == nil:
				winner = w
			case !errors.Is(err, storage.ErrConflict):
				t.Fatalf("round %d: worker %d: append at head %d of document %s: %v, want nil or ErrConflict", round, w, head, m.id, err)
			default:
				losers = append(losers, lost{apps[w].Records[0].Source, uint64(round)})
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: none of %d workers committed revision %d of document %s", round, workers, head+1, m.id)
		}
		m.accept(t, apps[winner])
	}
	checkAll(t, s, m)
	checkLookups(t, s, m)
	for _, l := range losers {
		checkLookup(t, s, m.id, l.source, l.seq, -1)
	}
}

// testConcurrentFree has workers commit to two documents at once, each from
// the head it last saw, until both are long enough; every revision has
// exactly one winner and the log is the winners' records.
func testConcurrentFree(t *testing.T, s storage.Store) {
	const workers, target = 8, 120
	ctx := t.Context()
	docs := []*docModel{createDoc(t, s, "free", ""), createDoc(t, s, "free-2", "")}
	var mu sync.Mutex
	won := []map[int64]storage.Record{{}, {}}
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			heads := []int64{0, 0}
			seq := uint64(0)
			source := fmt.Sprintf("free-worker-%d", w)
			for attempt := range 8*target + 16 {
				var apps []storage.Append
				var which []int
				for d, m := range docs {
					if heads[d] >= target {
						continue
					}
					a := storage.Append{DocID: m.id, Head: heads[d]}
					for i := range 1 + (w+attempt)%2 {
						seq++
						rev := heads[d] + 1 + int64(i)
						a.Records = append(a.Records, storage.Record{Rev: rev, Op: insOp(fmt.Sprintf("<%d.%d>", w, seq)),
							Source: source, Seq: seq, User: source, Time: recordTime(rev).Add(time.Duration(w))})
					}
					apps = append(apps, a)
					which = append(which, d)
				}
				if len(apps) == 0 {
					return
				}
				res, err := s.Commit(ctx, apps)
				if err != nil || len(res) != len(apps) {
					fail("worker %d: Commit(%s) = %d results, %v", w, describe(apps), len(res), err)
					return
				}
				for i, err := range res {
					d := which[i]
					switch {
					case err == nil:
						mu.Lock()
						for _, r := range apps[i].Records {
							if prev, dup := won[d][r.Rev]; dup {
								failures = append(failures, fmt.Sprintf("document %s: revision %d committed twice, by %s seq %d and by %s seq %d",
									docs[d].id, r.Rev, prev.Source, prev.Seq, r.Source, r.Seq))
							}
							won[d][r.Rev] = r
						}
						mu.Unlock()
						heads[d] = apps[i].Head + int64(len(apps[i].Records))
					case errors.Is(err, storage.ErrConflict):
						doc, err := s.Document(ctx, docs[d].id)
						if err != nil {
							fail("worker %d: Document(%q): %v", w, docs[d].id, err)
							return
						}
						heads[d] = doc.Head
					default:
						fail("worker %d: append to document %s at head %d: %v, want nil or ErrConflict", w, docs[d].id, apps[i].Head, err)
						return
					}
				}
			}
			fail("worker %d: no progress after %d attempts", w, 8*target+16)
		})
	}
	wg.Wait()
	for i, f := range failures {
		if i == 10 {
			t.Fatalf("and %d more failures", len(failures)-10)
		}
		t.Error(f)
	}
	if t.Failed() {
		t.FailNow()
	}
	for d, m := range docs {
		doc, err := s.Document(ctx, m.id)
		if err != nil {
			t.Fatalf("Document(%q): %v", m.id, err)
		}
		if int64(len(won[d])) != doc.Head {
			t.Errorf("document %s: head %d, but %d revisions were reported committed", m.id, doc.Head, len(won[d]))
		}
		for rev := int64(1); rev <= doc.Head; rev++ {
			r, ok := won[d][rev]
			if !ok {
				t.Fatalf("document %s: revision %d (of %d) was not reported committed by anyone", m.id, rev, doc.Head)
			}
			m.accept(t, storage.Append{DocID: m.id, Head: rev - 1, Records: []storage.Record{r}})
		}
		checkAll(t, s, m)
		checkLookups(t, s, m)
	}
}

// ---------------------------------------------------------------------------
// Records.

func testRecordsRanges(t *testing.T, s storage.Store) {
	r := newRand(21)
	m := createDoc(t, s, "rr", "records")
	other := createDoc(t, s, "rr0", "other")
	m.grow(t, s, r, 7)
	other.grow(t, s, r, 9)
	for from := int64(0); from <= m.head(); from++ {
		for to := from; to <= m.head(); to++ {
			checkRecords(t, s, m, from, to)
		}
	}
	checkRecords(t, s, other, 0, other.head())
}

func testRecordsErrors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(22)
	m := createDoc(t, s, "re", "records")
	m.grow(t, s, r, 6)
	bad := func(from, to int64, target error) {
		t.Helper()
		_, err := s.Records(ctx, m.id, from, to)
		wantErr(t, err, target, fmt.Sprintf("Records(%q, %d, %d) with head %d, oldest %d", m.id, from, to, m.head(), m.oldest), m.id)
	}
	bad(0, 7, storage.ErrInvalid)
	bad(7, 7, storage.ErrInvalid)
	bad(6, 100, storage.ErrInvalid)
	bad(3, 2, storage.ErrInvalid)
	bad(6, 0, storage.ErrInvalid)
	bad(-1, 2, storage.ErrInvalid)
	bad(-1, -1, storage.ErrInvalid)
	bad(2, -1, storage.ErrInvalid)
	bad(math.MinInt64, math.MaxInt64, storage.ErrInvalid)

	m.compact(t, s, 3)
	bad(2, 6, storage.ErrCompacted)
	bad(0, 6, storage.ErrCompacted)
	bad(0, 3, storage.ErrCompacted)
	bad(2, 2, storage.ErrCompacted)
	bad(0, 0, storage.ErrCompacted)
	bad(-1, 6, storage.ErrInvalid)
	bad(3, 7, storage.ErrInvalid)
	bad(4, 3, storage.ErrInvalid)
	checkRecords(t, s, m, 3, 3)
	checkRecords(t, s, m, 3, 6)
	checkRecords(t, s, m, 5, 6)
	checkRecords(t, s, m, 6, 6)
}

// ---------------------------------------------------------------------------
// Snapshots.

func testSnapshotsNewest(t *testing.T, s storage.Store) {
	r := newRand(31)
	m := createDoc(t, s, "snap", "snap 📸")
	m.grow(t, s, r, 12)
	checkAll(t, s, m)
	m.saveSnapshot(t, s, 4)
	m.saveSnapshot(t, s, 9)
	checkAll(t, s, m)
	m.saveSnapshot(t, s, 12)
	m.saveSnapshot(t, s, 4) // again
	m.saveSnapshot(t, s, 0) // the initial text again
	checkAll(t, s, m)
	m.grow(t, s, r, 5)
	m.saveSnapshot(t, s, 1)
	checkAll(t, s, m)
}

func testSnapshotsInAppend(t *testing.T, s storage.Store) {
	r := newRand(32)
	m := createDoc(t, s, "sa", "")
	other := createDoc(t, s, "sa-", "x")
	with := func(m *docModel, n int, at func(head int64) int64) storage.Append {
		a := m.prepare(randomOps(t, r, m.text(), n)...)
		rev := at(a.Head)
		text := m.texts[min(rev, m.head())]
		if rev > m.head() {
			text = m.text()
			for _, rec := range a.Records[:rev-m.head()] {
				var err error
				if text, err = ot.Apply(text, rec.Op.Plain()); err != nil {
					t.Fatalf("suite bug: %v", err)
				}
			}
		}
		a.Snapshot = &storage.Snapshot{Rev: rev, Content: text}
		return a
	}
	// At the new head, in the middle of the new records, at the old head,
	// and behind it.
	m.commit(t, s, with(m, 3, func(h int64) int64 { return h + 3 }))
	checkAll(t, s, m)
	m.commit(t, s, with(m, 3, func(h int64) int64 { return h + 2 }))
	checkAll(t, s, m)
	m.commit(t, s, with(m, 1, func(h int64) int64 { return h }))
	m.commit(t, s, with(m, 2, func(h int64) int64 { return 1 }))
	checkAll(t, s, m)
	// In a group commit, each append with its own snapshot.
	a := with(m, 2, func(h int64) int64 { return h + 2 })
	b := with(other, 4, func(h int64) int64 { return h + 3 })
	mustCommit(t, s, a, b)
	m.accept(t, a)
	other.accept(t, b)
	checkAll(t, s, m)
	checkAll(t, s, other)
}

func testSnapshotsErrors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(33)
	m := createDoc(t, s, "se", "errors")
	m.grow(t, s, r, 4)
	m.saveSnapshot(t, s, 2)
	err := s.SaveSnapshot(ctx, m.id, storage.Snapshot{Rev: 5, Content: "bogus"})
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("SaveSnapshot(%q) at revision 5, past head 4", m.id), m.id)
	err = s.SaveSnapshot(ctx, m.id, storage.Snapshot{Rev: 400, Content: "bogus"})
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("SaveSnapshot(%q) at revision 400, past head 4", m.id), m.id)
	err = s.SaveSnapshot(ctx, m.id, storage.Snapshot{Rev: -1, Content: "bogus"})
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("SaveSnapshot(%q) at revision -1", m.id), m.id)
	_, err = s.Snapshot(ctx, m.id, -1)
	wantErrOneOf(t, err, fmt.Sprintf("Snapshot(%q, -1)", m.id), storage.ErrNotFound, storage.ErrInvalid)
	checkAll(t, s, m)
	// A snapshot past the head is not saved when the head later reaches it.
	m.grow(t, s, r, 2)
	checkAll(t, s, m)
}

// ---------------------------------------------------------------------------
// History.

// testHistoryRandom builds two documents through random group commits and
// snapshots and checks the text at every revision.
func testHistoryRandom(t *testing.T, s storage.Store) {
	const seed, target = 2024, 300
	t.Logf("seed %d", seed)
	r := newRand(seed)
	ms := []*docModel{createDoc(t, s, "hist", "初めに言があった 👋"), createDoc(t, s, "hist-2", "")}
	for ms[0].head() < target || ms[1].head() < target {
		var apps []storage.Append
		var into []*docModel
		pick := r.IntN(3)
		for i, m := range ms {
			if pick != 2 && pick != i {
				continue
			}
			a := m.prepareSource(fmt.Sprintf("hist-src-%d", r.IntN(3)), uint64(m.head())+1, randomOps(t, r, m.text(), 1+r.IntN(4))...)
			if r.IntN(6) == 0 {
				// A snapshot somewhere from the old head to the new.
				rev := a.Head + int64(r.IntN(len(a.Records)+1))
				text := m.text()
				for _, rec := range a.Records[:rev-a.Head] {
					var err error
					if text, err = ot.Apply(text, rec.Op.Plain()); err != nil {
						t.Fatalf("suite bug: %v", err)
					}
				}
				a.Snapshot = &storage.Snapshot{Rev: rev, Content: text}
			}
			apps = append(apps, a)
			into = append(into, m)
		}
		mustCommit(t, s, apps...)
		for i, a := range apps {
			into[i].accept(t, a)
		}
		if r.IntN(10) == 0 {
			m := ms[r.IntN(2)]
			m.saveSnapshot(t, s, r.Int64N(m.head()+1))
		}
	}
	for _, m := range ms {
		checkAll(t, s, m)
		checkLookups(t, s, m)
	}
}

// ---------------------------------------------------------------------------
// Exactly-once.

func testLookup(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "eo", "")
	m.commit(t, s, m.prepareSource("alice", 1, ins("a1"), ins("a2")))
	m.commit(t, s, m.prepareSource("bob", 1, ins("b1")))
	m.commit(t, s, m.prepareSource("", 9, ins("anon")))
	conflict := m.prepareSource("carol", 1, ins("c1"))
	conflict.Head, conflict.Records[0].Rev = 0, 1
	wantErr(t, commitOne(t, s, conflict), storage.ErrConflict, "Commit at a stale head", m.id)
	invalid := m.prepareSource("dave", 1, ins("d1"))
	invalid.Records[0].Rev++
	wantErr(t, commitOne(t, s, invalid), storage.ErrInvalid, "Commit at the wrong revision", m.id)
	m.commit(t, s, m.prepareSource("alice", 3, ins("a3")))

	checkLookup(t, s, m.id, "alice", 1, 1)
	checkLookup(t, s, m.id, "alice", 2, 2)
	checkLookup(t, s, m.id, "bob", 1, 3)
	checkLookup(t, s, m.id, "alice", 3, 5)
	checkLookup(t, s, m.id, "alice", 0, -1)
	checkLookup(t, s, m.id, "alice", 4, -1)
	checkLookup(t, s, m.id, "bob", 2, -1)
	checkLookup(t, s, m.id, "", 9, -1)
	checkLookup(t, s, m.id, "", 0, -1)
	checkLookup(t, s, m.id, "carol", 1, -1)
	checkLookup(t, s, m.id, "dave", 1, -1)
	checkLookup(t, s, m.id, "Alice", 1, -1)
	checkLookup(t, s, m.id, "alic", 1, -1)
	checkLookup(t, s, m.id, "alice ", 1, -1)
	checkAll(t, s, m)
}

func testLookupPerDocument(t *testing.T, s storage.Store) {
	a := createDoc(t, s, "eo", "")
	b := createDoc(t, s, "eo-", "")
	c := createDoc(t, s, "eo2", "")
	a.commit(t, s, a.prepareSource("shared", 1, ins("x")))
	c.commit(t, s, c.prepareSource("x", 5, ins("x")))
	c.commit(t, s, c.prepareSource("shared", 1, ins("y")))
	checkLookup(t, s, "eo", "shared", 1, 1)
	checkLookup(t, s, "eo2", "shared", 1, 2)
	checkLookup(t, s, "eo-", "shared", 1, -1)
	checkLookup(t, s, "eo", "x", 5, -1)

	// Keys built from the id, the source and the seq must not run into one
	// another.
	a.commit(t, s, a.prepareSource("-s", 1, ins("z")))
	checkLookup(t, s, "eo", "-s", 1, 2)
	checkLookup(t, s, "eo-", "s", 1, -1)
	a.commit(t, s, a.prepareSource("s1", 23, ins("z")))
	checkLookup(t, s, "eo", "s1", 23, 3)
	checkLookup(t, s, "eo", "s12", 3, -1)
	checkLookup(t, s, "eo", "s", 123, -1)
	checkLookup(t, s, "eo", "s1", 2, -1)
	checkLookup(t, s, "eo", "s1", 230, -1)
	maxLen := strings.Repeat("long", storage.MaxSourceLen/4) + strings.Repeat("!", storage.MaxSourceLen%4)
	for i, src := range []string{"a/b", "a\x00b", "a", "😀 client", maxLen, maxLen[1:], "eo", "eo-", "."} {
		b.commit(t, s, b.prepareSource(src, uint64(i), ins("w")))
	}
	b.commit(t, s, b.prepareSource("max", math.MaxUint64, ins("m")))
	b.commit(t, s, b.prepareSource("max", 1<<63, ins("m")))
	b.commit(t, s, b.prepareSource("max", 0, ins("m")))
	checkLookups(t, s, b)
	checkLookup(t, s, "eo-", "a", 1, -1)
	checkLookup(t, s, "eo-", "a\x00", 1, -1)
	checkLookup(t, s, "eo-", "max", math.MaxUint64-1, -1)
	checkLookup(t, s, "eo-", "max", 1, -1)
	checkLookup(t, s, "eo", "a/b", 0, -1)
	checkLookups(t, s, a)
	checkLookups(t, s, c)
}

func testLookupCompaction(t *testing.T, s storage.Store) {
	m := createDoc(t, s, "eoc", "")
	for i := range 10 {
		m.commit(t, s, m.prepareSource("c", uint64(i+1), ins(fmt.Sprint(i))))
	}
	m.compact(t, s, 7)
	checkLookups(t, s, m)
	m.compact(t, s, 10)
	checkLookups(t, s, m)
	m.commit(t, s, m.prepareSource("c", 11, ins("after")))
	checkLookups(t, s, m)
	checkLookup(t, s, m.id, "c", 12, -1)
	checkAll(t, s, m)
}

// ---------------------------------------------------------------------------
// Compact.

func testCompactBasic(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(41)
	m := createDoc(t, s, "cb", "compact me 🗜️")
	neighbour := createDoc(t, s, "cb-", "neighbour")
	for i := range 40 {
		m.commit(t, s, m.prepareSource("src", uint64(i+1), randomOp(t, r, m.text())))
	}
	neighbour.grow(t, s, r, 30)
	m.saveSnapshot(t, s, 5)
	m.saveSnapshot(t, s, 17)
	m.saveSnapshot(t, s, 30)
	m.compact(t, s, 23)
	checkAll(t, s, m)
	snap, err := s.Snapshot(ctx, m.id, 23)
	if err != nil || snap.Rev != 23 {
		t.Errorf("Snapshot(%q, 23) after Compact(23) = revision %d, %v; want revision 23", m.id, snap.Rev, err)
	}
	_, err = s.Records(ctx, m.id, 22, 40)
	wantErr(t, err, storage.ErrCompacted, fmt.Sprintf("Records(%q, 22, 40) after Compact(23)", m.id), m.id)
	_, err = storage.ContentAt(ctx, s, m.id, 22)
	wantErr(t, err, storage.ErrCompacted, fmt.Sprintf("TextAt(%q, 22) after Compact(23)", m.id), m.id)
	checkLookups(t, s, m)
	checkAll(t, s, neighbour)

	// Commits go on.
	for i := range 10 {
		a := m.prepareSource("src", uint64(41+i), randomOp(t, r, m.text()))
		if i == 5 {
			a.Snapshot = &storage.Snapshot{Rev: m.head(), Content: m.text()}
		}
		m.commit(t, s, a)
	}
	checkAll(t, s, m)
	m.compact(t, s, 35)
	checkAll(t, s, m)
	checkLookups(t, s, m)
	checkAll(t, s, neighbour)
}

func testCompactRepeat(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(42)
	fresh := createDoc(t, s, "cr0", "nothing yet")
	fresh.compact(t, s, 0)
	checkAll(t, s, fresh)
	fresh.commitOps(t, s, ins("a"))
	checkAll(t, s, fresh)

	m := createDoc(t, s, "cr", "repeat")
	m.grow(t, s, r, 12)
	m.compact(t, s, 0)
	checkAll(t, s, m)
	m.compact(t, s, 5)
	checkAll(t, s, m)
	m.compact(t, s, 5)
	checkAll(t, s, m)
	if err := s.Compact(ctx, m.id, 3); err != nil {
		wantErr(t, err, storage.ErrCompacted, fmt.Sprintf("Compact(%q, 3) after Compact(5)", m.id), m.id)
	}
	checkAll(t, s, m)
	if err := s.Compact(ctx, m.id, 0); err != nil {
		wantErr(t, err, storage.ErrCompacted, fmt.Sprintf("Compact(%q, 0) after Compact(5)", m.id), m.id)
	}
	checkAll(t, s, m)

	// At the head: nothing is left but the snapshot, and commits go on.
	m.compact(t, s, m.head())
	checkAll(t, s, m)
	m.compact(t, s, m.head())
	checkAll(t, s, m)
	m.grow(t, s, r, 4)
	checkAll(t, s, m)
	m.saveSnapshot(t, s, m.head())
	m.compact(t, s, m.head())
	checkAll(t, s, m)
	m.grow(t, s, r, 1)
	checkAll(t, s, m)
}

func testCompactErrors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	r := newRand(43)
	m := createDoc(t, s, "ce", "errors")
	m.grow(t, s, r, 5)
	err := s.Compact(ctx, m.id, 6)
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("Compact(%q, 6) past head 5", m.id), m.id)
	err = s.Compact(ctx, m.id, 1000)
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("Compact(%q, 1000) past head 5", m.id), m.id)
	err = s.Compact(ctx, m.id, -1)
	wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("Compact(%q, -1)", m.id), m.id)
	checkAll(t, s, m)
	err = s.Compact(ctx, "ce-missing", 0)
	wantErr(t, err, storage.ErrNotFound, `Compact("ce-missing", 0)`, "ce-missing")
}

// testRetain runs storage.Retain, which pages through every document and
// compacts those with more than keep revisions behind the head.
func testRetain(t *testing.T, s storage.Store) {
	r := newRand(44)
	var ms []*docModel
	for i, n := range []int{0, 3, 5, 6, 20, 9} {
		m := createDoc(t, s, fmt.Sprintf("ret-%d", i), "retain")
		m.grow(t, s, r, n)
		ms = append(ms, m)
	}
	ms[5].compact(t, s, 7)
	if err := storage.Retain(t.Context(), s, 5); err != nil {
		t.Fatalf("Retain(5): %v", err)
	}
	for _, m := range ms {
		if before := m.head() - 5; before > m.oldest {
			m.oldest = before
			m.snaps[before] = true
		}
		checkAll(t, s, m)
	}
}

// ---------------------------------------------------------------------------
// Close.

func testClose(t *testing.T, s storage.Store) {
	ctx := t.Context()
	m := createDoc(t, s, "closed", "text")
	m.commitOps(t, s, ins("a"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error wrapping ErrClosed", what, err)
		}
	}
	check("CreateDocument", s.CreateDocument(ctx, storage.Document{ID: "new", Created: baseTime}, ""))
	_, err := s.Document(ctx, m.id)
	check("Document", err)
	_, _, err = s.ListDocuments(ctx, storage.ListOptions{})
	check("ListDocuments", err)
	_, err = s.Commit(ctx, []storage.Append{m.prepare(ins("b"))})
	check("Commit", err)
	_, err = s.Records(ctx, m.id, 0, 1)
	check("Records", err)
	_, err = s.Snapshot(ctx, m.id, 1)
	check("Snapshot", err)
	check("SaveSnapshot", s.SaveSnapshot(ctx, m.id, storage.Snapshot{Rev: 1, Content: m.text()}))
	_, _, err = s.LookupSubmission(ctx, m.id, "src", 1)
	check("LookupSubmission", err)
	check("Compact", s.Compact(ctx, m.id, 1))
	check("SetTitle", s.SetTitle(ctx, m.id, "t"))
	check("DeleteDocument", s.DeleteDocument(ctx, m.id))
	_, _, err = storage.Load(ctx, s, m.id)
	check("Load", err)
	_, err = storage.ContentAt(ctx, s, m.id, 0)
	check("TextAt", err)
	if err := s.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

// testCreateTypes: a document keeps its type; an unknown type, or content
// that is not a document of the type, is ErrInvalid and creates nothing.
func testCreateTypes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if err := s.CreateDocument(ctx, storage.Document{ID: "p"}, "text"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDocument(ctx, storage.Document{ID: "r", Type: doctype.RichName}, `[{"insert":"hi\n"}]`); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"p": "", "r": doctype.RichName} {
		d, err := s.Document(ctx, id)
		if err != nil || d.Type != want {
			t.Errorf("Document(%q).Type = %q, %v; want %q", id, d.Type, err, want)
		}
	}
	for _, c := range []struct{ id, typ, content string }{
		{"bad-type", "markdown", "x"},
		{"bad-rich", doctype.RichName, "not json"},
		{"bad-rich2", doctype.RichName, `[{"retain":1}]`},
		{"bad-rich3", doctype.RichName, `[{"insert":"a","attributes":{"b":null}}]`},
	} {
		err := s.CreateDocument(ctx, storage.Document{ID: c.id, Type: c.typ}, c.content)
		wantErr(t, err, storage.ErrInvalid, fmt.Sprintf("CreateDocument(%q, type %q)", c.id, c.typ), c.id)
		if _, err := s.Document(ctx, c.id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a refused CreateDocument(%q) left a document: %v", c.id, err)
		}
	}
}

// testRichDocument: a rich document's ops and snapshots round-trip, and
// its content at every revision is replayed with its type.
func testRichDocument(t *testing.T, s storage.Store) {
	ctx := t.Context()
	rt := doctype.Rich()
	const id = "rich"
	start := `[{"insert":"Hello 😀"},{"insert":"\n","attributes":{"header":1}}]`
	if err := s.CreateDocument(ctx, storage.Document{ID: id, Type: doctype.RichName}, start); err != nil {
		t.Fatal(err)
	}
	ops := []string{
		`[{"retain":6,"attributes":{"bold":true}},{"insert":"world","attributes":{"link":"https://example.com"}}]`,
		`[{"insert":{"image":"https://example.com/a.png"},"attributes":{"alt":"a"}},{"retain":3},{"delete":2}]`,
		`[{"retain":2,"attributes":{"bold":null,"italic":true}}]`,
	}
	doc, err := rt.NewDocument(start)
	if err != nil {
		t.Fatal(err)
	}
	contents := []string{doc.Content()}
	var recs []storage.Record
	for i, js := range ops {
		op, _, err := rt.ParseOp([]byte(js))
		if err != nil {
			t.Fatalf("suite bug: %s: %v", js, err)
		}
		if err := doc.Apply(op); err != nil {
			t.Fatalf("suite bug: %s: %v", js, err)
		}
		contents = append(contents, doc.Content())
		rev := int64(i + 1)
		r := storage.Record{Rev: rev, Op: op, Source: "src", Seq: uint64(rev), User: "u", Time: recordTime(rev)}
		a := storage.Append{DocID: id, Head: rev - 1, Records: []storage.Record{r}}
		if rev == 2 {
			a.Snapshot = &storage.Snapshot{Rev: 2, Content: doc.Content()}
		}
		if err := commitOne(t, s, a); err != nil {
			t.Fatalf("commit %d: %v", rev, err)
		}
		recs = append(recs, r)
	}
	got, err := s.Records(ctx, id, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if !r.Op.IsRich() || r.Op.String() != recs[i].Op.String() {
			t.Errorf("record %d: op %s (rich %v), want %s", i+1, r.Op, r.Op.IsRich(), recs[i].Op)
		}
	}
	for rev, want := range contents {
		if c, err := storage.ContentAt(ctx, s, id, int64(rev)); err != nil || c != want {
			t.Errorf("ContentAt(%d) = %s, %v; want %s", rev, c, err, want)
		}
	}
	if _, d, err := storage.Load(ctx, s, id); err != nil || d.Content() != contents[3] {
		t.Errorf("Load: %v; content %v", err, d)
	}
	if err := s.Compact(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	if snap, err := s.Snapshot(ctx, id, 3); err != nil || snap.Content != contents[3] {
		t.Errorf("after Compact(3): snapshot %+v, %v; want %s", snap, err, contents[3])
	}
	if rev, found, err := s.LookupSubmission(ctx, id, "src", 2); err != nil || !found || rev != 2 {
		t.Errorf("LookupSubmission(src, 2) = %d, %v, %v", rev, found, err)
	}
}
