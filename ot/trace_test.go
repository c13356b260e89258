package ot

import (
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/ot/internal/traces"
)

// The traces (shared/traces beside the repository) are loaded by
// ot/internal/traces, which the rich type's benchmarks share.

var sequentialTraces = traces.Sequential

type trace = traces.Trace

func loadTrace(tb testing.TB, name string) *trace { return traces.Load(tb, name) }

// patchOp returns the op for one patch: skip, delete, insert.
func patchOp(p traces.Patch) Op {
	op := make(Op, 0, 3)
	if p.Pos > 0 {
		op = append(op, Skip(p.Pos))
	}
	if p.Del > 0 {
		op = append(op, Delete(p.Del))
	}
	if p.Ins != "" {
		op = append(op, Insert(p.Ins))
	}
	return op
}

// traceOps returns the ops of every patch of tr, in order.
func traceOps(tr *trace) []Op {
	var ops []Op
	for _, p := range tr.Patches() {
		ops = append(ops, patchOp(p))
	}
	return ops
}

// TestTraceReplay replays every sequential trace patch by patch into a rope,
// which must reach the trace's endContent exactly. Along the way, windows of
// patches are also applied with the string Apply, which must agree with the
// rope; the smallest trace is replayed through the string Apply in full.
func TestTraceReplay(t *testing.T) {
	for _, name := range sequentialTraces {
		t.Run(name, func(t *testing.T) {
			tr := loadTrace(t, name)
			ops := traceOps(tr)
			r, err := NewRope(tr.StartContent)
			if err != nil {
				t.Fatal(err)
			}
			// Every windowEvery patches, the next window patches also go
			// through the string Apply, from the rope's text.
			const window = 50
			windowEvery := 2000
			if name == "sveltecomponent" && !testing.Short() {
				windowEvery = window // the whole trace, window by window
			}
			var doc string // the string model, valid inside a window
			inWindow := false
			for i, op := range ops {
				if i%windowEvery == 0 {
					doc, inWindow = r.String(), true
				}
				if err := r.Apply(op); err != nil {
					t.Fatalf("patch %d %v: %v", i, op, err)
				}
				if inWindow {
					if doc, err = Apply(doc, op); err != nil {
						t.Fatalf("patch %d %v: string Apply: %v", i, op, err)
					}
					if i%windowEvery == window-1 || i == len(ops)-1 {
						inWindow = false
						if got := r.String(); got != doc {
							t.Fatalf("after patch %d, string Apply and rope disagree", i)
						}
					}
				}
				if i%20000 == 0 {
					if err := r.check(); err != nil {
						t.Fatalf("after patch %d: %v", i, err)
					}
				}
			}
			if err := r.check(); err != nil {
				t.Fatal(err)
			}
			if got := r.String(); got != tr.EndContent {
				t.Fatalf("replay of %d patches gives %d code points, want %d (%s)",
					len(ops), r.Len(), len([]rune(tr.EndContent)), firstDiff(got, tr.EndContent))
			}
			t.Logf("%d patches -> %d code points, %d bytes, tree height %d", len(ops), r.Len(), r.ByteLen(), r.height())
		})
	}
}

// firstDiff describes where a and b first differ.
func firstDiff(a, b string) string {
	ra, rb := []rune(a), []rune(b)
	i := 0
	for i < len(ra) && i < len(rb) && ra[i] == rb[i] {
		i++
	}
	lo := max(0, i-20)
	return fmt.Sprintf("first difference at code point %d: %q vs %q",
		i, string(ra[lo:min(len(ra), i+20)]), string(rb[lo:min(len(rb), i+20)]))
}

// logEntry is one op of the server's log: an op of one patch, transformed to
// apply after every earlier entry.
type logEntry struct {
	agent int
	op    Op
}

// otClient is a ShareDB-style client: what it has seen of the server log,
// and its own ops the server has not yet acknowledged to it, transformed to
// apply after the log prefix it has seen.
type otClient struct {
	seen    int
	pending []Op
}

// xform transforms the client's pending ops against entry, a server op
// concurrent with all of them, as a ShareDB client does when an op arrives:
// each pending op moves past entry (Left) and entry moves past it (Right).
func xform(pending []Op, entry Op) (Op, error) {
	for i, p := range pending {
		p2, err := Transform(p, entry, Left)
		if err != nil {
			return nil, err
		}
		entry, err = Transform(entry, p, Right)
		if err != nil {
			return nil, err
		}
		pending[i] = p2
	}
	return entry, nil
}

// replayConcurrent replays a concurrent trace as an OT server with one
// ShareDB-style client per agent would, and returns the server's document.
//
// Transaction t's patches are relative to the document holding exactly t's
// ancestors. Server order is transaction order, and each agent's own
// transactions form a chain, so t's ancestry is: every earlier transaction of
// its agent a, and the other agent's transactions up to o, the latest of
// them among t's ancestors. When a creates t, its client has received the
// server log up to o's entries: it transforms its unacknowledged ops against
// the other agent's entries it receives, and its own entries acknowledge
// them. t's ops, appended to the pending ops, are relative to the log prefix
// the client has seen; the server then brings them to its head the same way,
// as if the client received the rest of the log, and appends them.
func replayConcurrent(tr *trace, r *Rope) ([]logEntry, error) {
	var log []logEntry
	end := make([]int, len(tr.Txns))       // end[t]: log length after t's entries
	latest := make([][2]int, len(tr.Txns)) // latest[t][x]: latest txn of agent x among t and its ancestors
	clients := map[int]*otClient{}
	for t, txn := range tr.Txns {
		a := txn.Agent
		if a != 0 && a != 1 {
			return nil, fmt.Errorf("txn %d: agent %d, want 0 or 1", t, a)
		}
		other := 1 - a
		vc := [2]int{-1, -1}
		for _, p := range txn.Parents {
			if p < 0 || p >= t {
				return nil, fmt.Errorf("txn %d: parent %d is not an earlier txn", t, p)
			}
			vc[0] = max(vc[0], latest[p][0])
			vc[1] = max(vc[1], latest[p][1])
		}
		o := vc[other]
		vc[a] = t
		latest[t] = vc

		c := clients[a]
		if c == nil {
			c = &otClient{}
			clients[a] = c
		}
		// The client receives the log up to o's entries.
		upTo := 0
		if o >= 0 {
			upTo = end[o]
		}
		if upTo < c.seen {
			return nil, fmt.Errorf("txn %d: agent %d saw the log up to %d, now %d", t, a, c.seen, upTo)
		}
		for _, e := range log[c.seen:upTo] {
			if e.agent == a {
				if len(c.pending) == 0 {
					return nil, fmt.Errorf("txn %d: acknowledgement with nothing pending", t)
				}
				c.pending = c.pending[1:]
				continue
			}
			if _, err := xform(c.pending, e.op); err != nil {
				return nil, fmt.Errorf("txn %d: %w", t, err)
			}
		}
		c.seen = upTo
		for _, p := range txn.Patches {
			c.pending = append(c.pending, patchOp(p))
		}
		// The server brings the client's ops from its seen prefix to the head.
		pend := append([]Op(nil), c.pending...)
		for _, e := range log[upTo:] {
			if e.agent == a {
				pend = pend[1:]
				continue
			}
			if _, err := xform(pend, e.op); err != nil {
				return nil, fmt.Errorf("txn %d: %w", t, err)
			}
		}
		if len(pend) != len(txn.Patches) {
			return nil, fmt.Errorf("txn %d: %d ops left after the log, want %d", t, len(pend), len(txn.Patches))
		}
		for _, op := range pend {
			if err := r.Apply(op); err != nil {
				return nil, fmt.Errorf("txn %d: applying %v at the server: %w", t, op, err)
			}
			log = append(log, logEntry{agent: a, op: op})
		}
		end[t] = len(log)
	}
	return log, nil
}

// TestTraceConcurrent replays the two-user trace friendsforever_concurrent
// through Transform, as an OT server would, into a rope; the result must be
// the trace's endContent.
func TestTraceConcurrent(t *testing.T) {
	tr := loadTrace(t, "friendsforever_concurrent")
	r, err := NewRope(tr.StartContent)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	log, err := replayConcurrent(tr, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	concurrent := 0
	for _, txn := range tr.Txns {
		if len(txn.Parents) > 1 {
			concurrent++
		}
	}
	t.Logf("%d txns (%d merges) -> %d log entries, %d code points, in %v", len(tr.Txns), concurrent, len(log), r.Len(), time.Since(start))
	if got := r.String(); got != tr.EndContent {
		t.Fatalf("replay gives %d code points, want %d (%s)", r.Len(), len([]rune(tr.EndContent)), firstDiff(got, tr.EndContent))
	}
	// The log itself replays to the same document with the string Apply.
	doc := tr.StartContent
	for i, e := range log {
		if doc, err = Apply(doc, e.op); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
	}
	if doc != tr.EndContent {
		t.Fatal("the server log replayed with the string Apply does not give endContent")
	}
}

// BenchmarkReplay replays each sequential trace into a fresh rope per
// iteration. Besides ns/op (one whole replay) it reports ns/patch,
// allocs/patch, and heapB/textB: the heap the final rope holds divided by its
// text's UTF-8 length.
func BenchmarkReplay(b *testing.B) {
	for _, name := range sequentialTraces {
		b.Run(name, func(b *testing.B) {
			tr := loadTrace(b, name)
			ops := traceOps(tr)
			replay := func() *Rope {
				r, err := NewRope(tr.StartContent)
				if err != nil {
					b.Fatal(err)
				}
				for _, op := range ops {
					if err := r.Apply(op); err != nil {
						b.Fatal(err)
					}
				}
				return r
			}
			// Memory held by one final rope.
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			kept := replay()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			if kept.String() != tr.EndContent {
				b.Fatal("replay does not reach endContent")
			}
			held := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(kept.ByteLen())
			runtime.KeepAlive(kept)
			kept = nil

			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				replay()
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			patches := float64(b.N) * float64(len(ops))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/patches, "ns/patch")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/patches, "allocs/patch")
			b.ReportMetric(held, "heapB/textB")
		})
	}
}

// benchDoc returns n code points of text; mixed text has a non-ASCII code
// point in every leaf.
func benchDoc(n int, mixed bool) string {
	unit := "the quick brown fox jumps over the lazy dog\n"
	if mixed {
		unit = "the quick brown 狐狸 jumps over the lazy 🐕\n"
	}
	runes := []rune(unit)
	out := make([]rune, n)
	for i := range out {
		out[i] = runes[i%len(runes)]
	}
	return string(out)
}

var benchSizes = []struct {
	name  string
	n     int
	mixed bool
}{{"10k", 1e4, false}, {"100k", 1e5, false}, {"1M", 1e6, false}, {"100k-mixed", 1e5, true}, {"1M-mixed", 1e6, true}}

// benchPositions returns random positions in [0, n).
func benchPositions(n int) []int {
	pos := make([]int, 1<<14)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range pos {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		pos[i] = int(x % uint64(n))
	}
	return pos
}

// BenchmarkRopeInsert inserts one code point at a random position. The rope is
// rebuilt (untimed) every n/10 inserts, so its size stays within 10%.
func BenchmarkRopeInsert(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			doc := benchDoc(sz.n, sz.mixed)
			pos := benchPositions(sz.n)
			r, _ := NewRope(doc)
			batch := sz.n / 10
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == batch-1 {
					b.StopTimer()
					r, _ = NewRope(doc)
					b.StartTimer()
				}
				if err := r.Insert(pos[i%len(pos)], "x"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRopeDelete deletes one code point at a random position, rebuilding
// the rope (untimed) every n/10 deletes.
func BenchmarkRopeDelete(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			doc := benchDoc(sz.n, sz.mixed)
			pos := benchPositions(sz.n * 9 / 10)
			r, _ := NewRope(doc)
			batch := sz.n / 10
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == batch-1 {
					b.StopTimer()
					r, _ = NewRope(doc)
					b.StartTimer()
				}
				if err := r.Delete(pos[i%len(pos)], 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRopeApply applies a one-character insert op at a random position
// of a 100k-code-point rope, for comparison with BenchmarkRopeStringApply.
func BenchmarkRopeApply(b *testing.B) {
	doc := benchDoc(1e5, false)
	pos := benchPositions(1e5)
	ops := make([]Op, len(pos))
	for i, p := range pos {
		ops[i] = Op{Skip(p), Insert("x")}
	}
	r, _ := NewRope(doc)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%10000 == 9999 {
			b.StopTimer()
			r, _ = NewRope(doc)
			b.StartTimer()
		}
		if err := r.Apply(ops[i%len(ops)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRopeStringApply is the package-level string Apply of the same ops
// to a 100k-code-point document: O(n) per op.
func BenchmarkRopeStringApply(b *testing.B) {
	doc := benchDoc(1e5, false)
	pos := benchPositions(1e5)
	ops := make([]Op, len(pos))
	for i, p := range pos {
		ops[i] = Op{Skip(p), Insert("x")}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Apply(doc, ops[i%len(ops)]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReplayPatchLatency reports the distribution of single-patch Apply times
// on seph-blog1 (with -v). It is informational: timings are not asserted.
func TestReplayPatchLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("timing only")
	}
	tr := loadTrace(t, "seph-blog1")
	ops := traceOps(tr)
	r := &Rope{}
	d := make([]time.Duration, len(ops))
	for i, op := range ops {
		t0 := time.Now()
		if err := r.Apply(op); err != nil {
			t.Fatal(err)
		}
		d[i] = time.Since(t0)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	q := func(f float64) time.Duration { return d[int(f*float64(len(d)-1))] }
	t.Logf("per-patch Apply on seph-blog1 (including timer overhead): p50 %v p90 %v p99 %v p99.9 %v max %v",
		q(0.5), q(0.9), q(0.99), q(0.999), d[len(d)-1])
}
