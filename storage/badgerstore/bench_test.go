package badgerstore_test

// Benchmarks of the Badger store. Every Commit is a synced (fsynced) write,
// so the numbers depend on the disk more than on the CPU. Typical runs:
//
//	go test -run '^$' -bench 'Commit' -benchtime 3s ./storage/badgerstore/
//	go test -run '^$' -bench 'Load' -benchtime 20x ./storage/badgerstore/
//	go test -run '^$' -bench 'IdleRSS' -benchtime 1x ./storage/badgerstore/

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

func openBench(b *testing.B, dir string) *badgerstore.Store {
	b.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: quietLogger(), GCInterval: -1})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	return s
}

// benchGens creates n documents and a generator for each.
func benchGens(b *testing.B, s storage.Store, prefix string, n int) []*docGen {
	b.Helper()
	gens := make([]*docGen, n)
	for i := range gens {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		createDoc(b, s, id, "")
		gens[i] = newGen(id, uint64(i), "")
		gens[i].snapEvery = 0
	}
	return gens
}

func reportRates(b *testing.B, commits, records int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(commits)/sec, "commits/s")
	b.ReportMetric(float64(records)/sec, "records/s")
	b.ReportMetric(0, "ns/op") // commits/s says it; ns/op would be per commit
}

// BenchmarkCommit: one Commit (one synced write) per iteration, carrying
// records=N records in one append to one document, or spread over docs=10
// documents (one append each).
func BenchmarkCommit(b *testing.B) {
	for _, c := range []struct{ docs, perDoc int }{{1, 1}, {1, 10}, {1, 100}, {10, 1}, {10, 10}} {
		name := fmt.Sprintf("records=%d", c.perDoc)
		if c.docs > 1 {
			name = fmt.Sprintf("docs=%d,records=%d", c.docs, c.docs*c.perDoc)
		}
		b.Run(name, func(b *testing.B) {
			s := openBench(b, b.TempDir())
			defer s.Close()
			gens := benchGens(b, s, "c", c.docs)
			appends := make([]storage.Append, c.docs)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j, g := range gens {
					appends[j] = g.next(c.perDoc)
				}
				if !commitOK(b, s, appends...) {
					b.FailNow()
				}
			}
			reportRates(b, b.N, b.N*c.docs*c.perDoc)
		})
	}
}

// BenchmarkCommitConcurrent: 16 goroutines each commit single records to
// their own document, one synced Commit each: how much Badger merges their
// fsyncs. group16 does the same work as one Commit of 16 appends, which is
// what a server's group commit would make of it.
func BenchmarkCommitConcurrent(b *testing.B) {
	const writers = 16
	b.Run("goroutines=16,records=1", func(b *testing.B) {
		s := openBench(b, b.TempDir())
		defer s.Close()
		var started atomic.Int32
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((writers + procs - 1) / procs) // GOMAXPROCS x this goroutines
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			// One document per goroutine.
			id := fmt.Sprintf("cc-%03d", started.Add(1))
			createDoc(b, s, id, "")
			g := newGen(id, 1, "")
			g.snapEvery = 0
			for pb.Next() {
				if !commitOK(b, s, g.next(1)) {
					return
				}
			}
		})
		b.StopTimer()
		if n := started.Load(); n != writers {
			b.Logf("%d goroutines ran, not %d (GOMAXPROCS %d)", n, writers, procs)
		}
		reportRates(b, b.N, b.N)
	})
	b.Run("group16,records=1", func(b *testing.B) {
		s := openBench(b, b.TempDir())
		defer s.Close()
		gens := benchGens(b, s, "cg", writers)
		appends := make([]storage.Append, writers)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for j, g := range gens {
				appends[j] = g.next(1)
			}
			if !commitOK(b, s, appends...) {
				b.FailNow()
			}
		}
		reportRates(b, b.N, b.N*writers)
	})
}

// buildHistory commits records to g's document in appends of per records
// (the generator attaches its snapshots) until its head is total.
func buildHistory(b *testing.B, s storage.Store, g *docGen, total int64, per int) {
	b.Helper()
	for g.head < total {
		n := int(min(int64(per), total-g.head))
		if !commitOK(b, s, g.next(n)) {
			b.FailNow()
		}
	}
}

// BenchmarkLoad times storage.Load of a document with a long history:
// 200,499 records with a snapshot every 1000 revisions (so Load reads the
// snapshot at 200,000 and 499 records), the same after reopening the store
// (cold caches), and 20,000 records with only the revision-0 snapshot (Load
// replays them all). Building the history is not timed (it is logged).
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s := openBench(b, dir)
	defer func() { s.Close() }()

	start := time.Now()
	createDoc(b, s, "big", "")
	big := newGen("big", 1, "")
	big.snapEvery, big.maxLen = 1000, 20000
	buildHistory(b, s, big, 200_000+499, 1000)
	createDoc(b, s, "nosnap", "")
	nosnap := newGen("nosnap", 2, "")
	nosnap.snapEvery, nosnap.maxLen = 0, 20000
	buildHistory(b, s, nosnap, 20_000, 1000)
	b.Logf("built 200,499 + 20,000 records in %v (texts of %d and %d code points); data dir %s",
		time.Since(start).Round(time.Millisecond), big.rope.Len(), nosnap.rope.Len(), dirSize(dir))

	load := func(b *testing.B, id string, want *docGen, reopen bool) {
		for i := 0; i < b.N; i++ {
			if reopen {
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				s = openBench(b, dir)
				b.StartTimer()
			}
			doc, rope, err := storage.Load(ctx, s, id)
			if err != nil {
				b.Fatal(err)
			}
			if doc.Head != want.head || rope.Len() != want.rope.Len() {
				b.Fatalf("Load %s: head %d, %d code points; want %d, %d", id, doc.Head, rope.Len(), want.head, want.rope.Len())
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/load")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("records=200k,snapshots=1000", func(b *testing.B) { load(b, "big", big, false) })
	b.Run("records=200k,snapshots=1000,reopened", func(b *testing.B) { load(b, "big", big, true) })
	b.Run("records=20k,snapshots=rev0", func(b *testing.B) { load(b, "nosnap", nosnap, false) })
	if text, err := storage.ContentAt(ctx, s, "big", big.head); err != nil || text != big.text() {
		b.Errorf("TextAt(head) of big: %v (equal: %v)", err, text == big.text())
	}
}

func dirSize(dir string) string {
	out, err := exec.Command("du", "-sh", dir).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

const rssDirEnv = "TANDEM_RSS_DIR"

// TestRSSChild is the child process of BenchmarkIdleRSS: it opens the store
// in TANDEM_RSS_DIR, loads every document and prints its resident set size
// at each step, after a GC and an idle second.
func TestRSSChild(t *testing.T) {
	dir := os.Getenv(rssDirEnv)
	if dir == "" {
		t.Skip("the child process of BenchmarkIdleRSS; runs only when it starts it")
	}
	settle := func() {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(time.Second)
	}
	settle()
	fmt.Printf("RSS base %d\n", vmRSS(t, "VmRSS"))
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	settle()
	fmt.Printf("RSS open %d\n", vmRSS(t, "VmRSS"))
	var keep []any
	for _, d := range allDocs(t, s) {
		_, rope, err := storage.Load(context.Background(), s, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, rope)
	}
	settle()
	fmt.Printf("RSS loaded %d\n", vmRSS(t, "VmRSS"))
	fmt.Printf("RSS peak %d\n", vmRSS(t, "VmHWM"))
	runtime.KeepAlive(keep)
	s.Close()
}

// vmRSS reads a field of /proc/self/status, in KiB.
func vmRSS(t *testing.T, field string) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkIdleRSS measures the resident memory of a process that opened a
// store of 50 documents with 2,000 records each (snapshot every 100), in a
// fresh child process: before opening, after opening, and after loading
// every document (ropes kept), each after a GC and an idle second. The
// first child is the first to open the store after it was written; with
// -benchtime 3x the last one shows a later restart. Linux only (/proc).
func BenchmarkIdleRSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc/self/status (Linux)")
	}
	dir := b.TempDir()
	s := openBench(b, dir)
	gens := benchGens(b, s, "rss", 50)
	for round := 0; round < 20; round++ {
		appends := make([]storage.Append, len(gens))
		for i, g := range gens {
			g.snapEvery, g.maxLen = 100, 3000
			appends[i] = g.next(100)
		}
		if !commitOK(b, s, appends...) {
			b.FailNow()
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("store of 50 documents x 2,000 records: %s", dirSize(dir))
	b.ResetTimer()
	var runs []map[string]int
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.count=1", "-test.bench=^$")
		cmd.Env = append(os.Environ(), rssDirEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		run := map[string]int{}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "RSS" {
				run[f[1]], _ = strconv.Atoi(f[2])
			}
		}
		if len(run) != 4 {
			b.Fatalf("child printed %q", out)
		}
		runs = append(runs, run)
		b.Logf("child %d: RSS KiB %v", i+1, run)
	}
	b.StopTimer()
	// The first open after the store was written compacts level 0 and
	// costs more; later opens show the steady state.
	mib := func(kib int) float64 { return float64(kib) / 1024 }
	first, last := runs[0], runs[len(runs)-1]
	b.ReportMetric(mib(first["base"]), "base-RSS-MiB")
	b.ReportMetric(mib(first["open"]), "first-open-RSS-MiB")
	b.ReportMetric(mib(first["peak"]), "first-peak-RSS-MiB")
	b.ReportMetric(mib(last["open"]), "open-RSS-MiB")
	b.ReportMetric(mib(last["loaded"]), "loaded-RSS-MiB")
	b.ReportMetric(mib(last["peak"]), "peak-RSS-MiB")
	b.ReportMetric(0, "ns/op")
}
