package collab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

var bgCtx = context.Background()

// errSimIO is a store write that failed.
var errSimIO = errors.New("sim: injected I/O error")

// faultStore is the real memory store behind a fault layer: the simulator
// decides, from its seed, whether a write fails before it lands, fails
// after it landed (the caller cannot tell), or is refused for a full
// disk. Every write that lands is checked against the truth (see truth)
// before anyone can hear of it.
type faultStore struct {
	*memstore.Store
	w *world

	failNext      int           // the next appends fail
	diskFullUntil time.Duration // appends are refused for lack of space until then
	// forgetUpTo (the ForgetIndex bug): the exactly-once index has lost
	// every submission committed at or before this revision.
	forgetUpTo int64
}

func (f *faultStore) diskFull() bool { return f.w.now < f.diskFullUntil }

func (f *faultStore) fillDisk(d time.Duration) {
	w := f.w
	f.diskFullUntil = w.now + d
	w.note(func() string { return fmt.Sprintf("disk full for %v", d) })
	// The free-space guard notices a moment later and closes the gate on
	// every open document, and opens it once there is room again.
	for _, s := range w.servers {
		w.at(w.between(0, 50*time.Millisecond), s, func() { s.setWritable() })
	}
	w.at(d+w.between(0, 100*time.Millisecond), nil, func() {
		for _, s := range w.servers {
			w.at(0, s, func() { s.setWritable() })
		}
	})
}

// commit writes one append as the group committer would, with the faults
// drawn for it.
func (f *faultStore) commit(app storage.Append, from *simServer) error {
	w := f.w
	if f.diskFull() {
		return fmt.Errorf("commit: %w", storage.ErrNoSpace)
	}
	failAfter := false
	if f.failNext > 0 {
		f.failNext--
		w.stats.WriteFails++
		if w.chance(0.5) {
			return fmt.Errorf("commit: %w", errSimIO)
		}
		failAfter = true
	}
	if w.bugs.NoCAS {
		// The bug: a writer whose head is stale appends anyway, its
		// records renumbered onto the store's head, untransformed.
		if doc, err := f.Store.Document(bgCtx, app.DocID); err == nil && doc.Head != app.Head {
			recs := make([]storage.Record, len(app.Records))
			for i, r := range app.Records {
				r.Rev = doc.Head + 1 + int64(i)
				recs[i] = r
			}
			app.Head, app.Records = doc.Head, recs
			app.Snapshot = nil
		}
	}
	results, err := f.Store.Commit(bgCtx, []storage.Append{app})
	if err == nil {
		err = results[0]
	}
	if err == nil {
		w.stats.Commits++
		w.truth.committed(app.Records, from)
		if failAfter {
			return fmt.Errorf("commit (written, then reported failed): %w", errSimIO)
		}
	} else if errors.Is(err, storage.ErrConflict) {
		w.stats.Conflicts++
	}
	return err
}

// LookupSubmission is the store's exactly-once index, which the
// ForgetIndex bug makes forget everything before the last restart.
func (f *faultStore) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	rev, found, err := f.Store.LookupSubmission(ctx, id, source, seq)
	if found && rev <= f.forgetUpTo {
		return 0, false, nil
	}
	return rev, found, err
}

// srcSeq names a submission.
type srcSeq struct {
	src string
	seq uint64
}

// sentOp is an op as a client sent it: based on base.
type sentOp struct {
	base int64
	op   doctype.Op
}

// truth is what the store holds, followed as it is written, with what the
// clients sent and were told. Each record is checked as it lands: it is
// the next revision, its (source, seq) is new, it applies, and it is the
// transform of an op its client sent through the revisions after that
// op's base. The clients' messages are checked against it as they arrive
// (see simClient): an ack or an op that is not in the store is a
// guarantee broken.
type truth struct {
	w    *world
	recs []storage.Record // revisions 1..head
	doc  doctype.Document // the text at head
	lens []int            // the length at each revision (selections are checked against it)
	// recent holds the content of the newest revisions (a hello's text is
	// checked against it).
	recent map[int64]string
	bySub  map[srcSeq]int64
	sends  map[srcSeq][]sentOp
	acked  map[srcSeq]int64
}

const recentTexts = 512

func newTruth(w *world, initial string) *truth {
	d, err := w.typ.NewDocument(initial)
	if err != nil {
		panic(err)
	}
	t := &truth{w: w, doc: d, lens: []int{d.Len()}, recent: map[int64]string{0: d.Content()},
		bySub: map[srcSeq]int64{}, sends: map[srcSeq][]sentOp{}, acked: map[srcSeq]int64{}}
	return t
}

func (t *truth) head() int64 { return int64(len(t.recs)) }

// record returns revision rev, if the truth has it.
func (t *truth) record(rev int64) (storage.Record, bool) {
	if rev < 1 || rev > t.head() {
		return storage.Record{}, false
	}
	return t.recs[rev-1], true
}

// sent notes an op a client sent (each send of a seq, first or again).
func (t *truth) sent(src string, seq uint64, base int64, op doctype.Op) {
	k := srcSeq{src, seq}
	if ss := t.sends[k]; len(ss) > 0 && ss[len(ss)-1].base == base {
		return // the same op sent again from the same base (a retry)
	}
	t.sends[k] = append(t.sends[k], sentOp{base: base, op: op.Clone()})
}

// committed checks records that just landed in the store and adds them.
func (t *truth) committed(recs []storage.Record, from *simServer) {
	w := t.w
	for _, r := range recs {
		w.note(func() string {
			return fmt.Sprintf("store: revision %d (src %.6s seq %d) from %s", r.Rev, r.Source, r.Seq, from.name)
		})
		if r.Rev != t.head()+1 {
			w.fail("the store took revision %d at head %d", r.Rev, t.head())
			return
		}
		k := srcSeq{r.Source, r.Seq}
		if prev, dup := t.bySub[k]; dup {
			w.fail("submission (%.6s, %d) applied twice: revisions %d and %d", r.Source, r.Seq, prev, r.Rev)
			return
		}
		if err := t.checkTransform(r); err != "" {
			w.fail("revision %d: %s", r.Rev, err)
			return
		}
		if err := t.doc.Apply(r.Op); err != nil {
			w.fail("revision %d does not apply to the text at %d: %v", r.Rev, r.Rev-1, err)
			return
		}
		t.bySub[k] = r.Rev
		t.recs = append(t.recs, r)
		t.lens = append(t.lens, t.doc.Len())
		t.recent[r.Rev] = t.doc.Content()
		delete(t.recent, r.Rev-recentTexts)
	}
}

// checkTransform says how r is not the transform of what its client sent
// through the revisions after the op's base ("" if it is).
func (t *truth) checkTransform(r storage.Record) string {
	ss := t.sends[srcSeq{r.Source, r.Seq}]
	if len(ss) == 0 {
		return fmt.Sprintf("(%.6s, %d) was never sent by a client", r.Source, r.Seq)
	}
	want := r.Op.AppendJSON(nil)
	var last []byte
	for _, s := range ss {
		if s.base >= r.Rev {
			continue
		}
		op := s.op
		ok := true
		for rev := s.base + 1; rev < r.Rev; rev++ {
			o, err := t.w.typ.Transform(op, t.recs[rev-1].Op, ot.Left)
			if err != nil {
				ok = false
				break
			}
			op = o
		}
		if !ok {
			continue
		}
		last = op.AppendJSON(last[:0])
		if bytes.Equal(last, want) {
			return ""
		}
	}
	return fmt.Sprintf("(%.6s, %d) is %s, which is not the transform of any of its %d sends (the last gives %s)", r.Source, r.Seq, want, len(ss), last)
}

// checkStore compares the store with the truth: the retained records, and
// the text at the head through the store's own snapshots and records.
func (t *truth) checkStore() {
	w := t.w
	doc, text, err := storage.Load(bgCtx, w.store.Store, w.doc)
	if err != nil {
		w.fail("loading the document from the store: %v", err)
		return
	}
	if doc.Head != t.head() {
		w.fail("the store's head is %d, the truth's %d", doc.Head, t.head())
		return
	}
	if got, want := text.Content(), t.doc.Content(); got != want {
		w.fail("the store's text at %d (snapshot plus records) is %q, history replays to %q", doc.Head, got, want)
		return
	}
	recs, err := w.store.Store.Records(bgCtx, w.doc, doc.Oldest, doc.Head)
	if err != nil {
		w.fail("reading records %d..%d: %v", doc.Oldest+1, doc.Head, err)
		return
	}
	for _, r := range recs {
		want := t.recs[r.Rev-1]
		if r.Source != want.Source || r.Seq != want.Seq || !bytes.Equal(r.Op.AppendJSON(nil), want.Op.AppendJSON(nil)) {
			w.fail("the store's revision %d changed after it was written", r.Rev)
			return
		}
	}
}
