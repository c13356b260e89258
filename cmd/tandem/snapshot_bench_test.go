package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// BenchmarkLargeNeighbour measures the ack latency of small documents
// (10, one typist each, an op every 10 ms for 10 s) alone, and while a 5 MiB
// document next to them is edited by 5 typists (an op every 5 ms each).
// Snapshots are saved off the commit path, and a large document's more
// rarely (its ops must add up to a sixteenth of its size, or 20 ×
// SnapshotEvery revisions pass), so the large document should not slow
// the small ones: "x-p99" is the p99 ratio with/without it (target ~1).
// Also reported: the data directory's growth per second of editing.
func BenchmarkLargeNeighbour(b *testing.B) {
	var alone, with staleResult
	var aloneGrowth, withGrowth float64
	for range b.N {
		r, g := runNeighbours(b, false)
		alone.latencies, aloneGrowth = append(alone.latencies, r.latencies...), aloneGrowth+g
		r, g = runNeighbours(b, true)
		with.latencies, withGrowth = append(with.latencies, r.latencies...), withGrowth+g
	}
	b.ReportMetric(alone.percentile(0.5), "alone-p50-ms")
	b.ReportMetric(alone.percentile(0.99), "alone-p99-ms")
	b.ReportMetric(with.percentile(0.5), "with-p50-ms")
	b.ReportMetric(with.percentile(0.99), "with-p99-ms")
	b.ReportMetric(with.percentile(0.99)/alone.percentile(0.99), "x-p99")
	b.ReportMetric(aloneGrowth/float64(b.N), "alone-MB/s")
	b.ReportMetric(withGrowth/float64(b.N), "with-MB/s")
}

func runNeighbours(b *testing.B, large bool) (staleResult, float64) {
	b.Helper()
	ctx := context.Background()
	every, _ := strconv.ParseInt(os.Getenv("TANDEM_BENCH_SNAPSHOT_EVERY"), 10, 64)
	var store *snapshotCounter
	srv := benchServer(b, func(c *collab.Config) { c.SnapshotEvery = every },
		func(s storage.Store) storage.Store { store = &snapshotCounter{Store: s}; return store })
	defer srv.close()
	dir, base := srv.cfg.DataDir, srv.url
	var err error
	small := make([]string, 10)
	for i := range small {
		if small[i], err = createDoc(base, "small", "small"); err != nil {
			b.Fatal(err)
		}
	}
	const bigID = "big"
	if large {
		text := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 5<<20/64)
		if err := store.CreateDocument(ctx, storage.Document{ID: bigID, Created: time.Now()}, text); err != nil {
			b.Fatal(err)
		}
	}
	sizeBefore := dirSize(dir)

	stop := make(chan struct{})
	var bigWG sync.WaitGroup
	if large {
		// The typists join first (each hello carries 5 MiB): what is
		// measured is editing next to the document, not loading it.
		var joined sync.WaitGroup
		for range 5 {
			joined.Add(1)
			bigWG.Go(func() {
				if _, err := typeUntil(base, bigID, 1, time.Millisecond, nil); err != nil {
					b.Error(err)
				}
				joined.Done()
				// Typing until the small documents are done.
				if _, err := typeUntil(base, bigID, 1<<30, 5*time.Millisecond, stop); err != nil {
					b.Error(err)
				}
			})
		}
		joined.Wait()
	}
	var res staleResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, id := range small {
		wg.Go(func() {
			lat, err := honestTyping(base, id, 1000, 10*time.Millisecond)
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	bigWG.Wait()
	growth := float64(dirSize(dir)-sizeBefore) / elapsed.Seconds() / 1e6
	n, bytes := store.count()
	b.Logf("large=%v: small documents typed for %v; %d snapshots saved (%d MB)", large, elapsed.Round(time.Millisecond), n, bytes>>20)
	return res, growth
}

// snapshotCounter counts the snapshots saved.
type snapshotCounter struct {
	storage.Store
	mu    sync.Mutex
	n     int
	bytes int64
}

func (s *snapshotCounter) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	s.mu.Lock()
	s.n++
	s.bytes += int64(len(snap.Content))
	s.mu.Unlock()
	return s.Store.SaveSnapshot(ctx, id, snap)
}

func (s *snapshotCounter) count() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.bytes
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512 // allocated: Badger's files are sparse until written
				}
			}
		}
		return nil
	})
	return n
}
