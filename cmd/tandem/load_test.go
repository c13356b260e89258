package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// loadOpsEnv sets the ops each client types per benchmark iteration
// (default: 10000 ops per run, shared among the clients).
const loadOpsEnv = "TANDEM_LOAD_OPS"

// loadMaxLen keeps the documents short (in code points), so that the
// clients, which share the machine with the server, spend little CPU on
// their copies of the text.
const loadMaxLen = 400

// loadResult is one load run's outcome.
type loadResult struct {
	ops       int
	elapsed   time.Duration
	latencies []time.Duration
	stats     collab.CommitStats
	commitDur time.Duration // time spent in Store.Commit
}

// timedStore measures the time the group committer spends in Commit.
type timedStore struct {
	storage.Store
	mu    sync.Mutex
	total time.Duration
}

func (s *timedStore) Commit(ctx context.Context, apps []storage.Append) ([]error, error) {
	start := time.Now()
	res, err := s.Store.Commit(ctx, apps)
	d := time.Since(start)
	s.mu.Lock()
	s.total += d
	s.mu.Unlock()
	return res, err
}

func (s *timedStore) spent() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (r *loadResult) add(o loadResult) {
	r.ops += o.ops
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
	r.stats.Writes += o.stats.Writes
	r.stats.Appends += o.stats.Appends
	r.stats.Records += o.stats.Records
	r.commitDur += o.commitDur
}

// writeMs is the mean duration of a durable write (Store.Commit).
func (r *loadResult) writeMs() float64 {
	if r.stats.Writes == 0 {
		return 0
	}
	return float64(r.commitDur) / float64(r.stats.Writes) / float64(time.Millisecond)
}

// busy is the share of the run the committer spent writing.
func (r *loadResult) busy() float64 { return float64(r.commitDur) / float64(r.elapsed) }

func (r *loadResult) opsPerSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r *loadResult) percentile(p float64) float64 {
	if len(r.latencies) == 0 {
		return 0
	}
	slices.Sort(r.latencies)
	i := min(len(r.latencies)-1, int(p*float64(len(r.latencies))))
	return float64(r.latencies[i]) / float64(time.Millisecond)
}

func (r *loadResult) perWrite(n int64) float64 {
	if r.stats.Writes == 0 {
		return 0
	}
	return float64(n) / float64(r.stats.Writes)
}

// runLoad starts an in-process server (Badger in a temp dir, the manager
// with maxBatch, the HTTP routes on 127.0.0.1) and has clients on each of
// docs documents type opsPerClient ops each, one in flight at a time, over
// real WebSockets. Only the typing is timed.
func runLoad(b *testing.B, docs, clients, opsPerClient, maxBatch int) loadResult {
	b.StopTimer()
	var store *timedStore
	srv := benchServer(b, func(c *collab.Config) { c.MaxBatch = maxBatch },
		func(s storage.Store) storage.Store { store = &timedStore{Store: s}; return store })
	defer srv.close()
	mgr, base := srv.mgr, srv.url
	var err error

	var eds []*loadTypist
	defer func() {
		for _, e := range eds {
			e.doc.Close()
		}
	}()
	ids := make([]string, docs)
	for i := range ids {
		if ids[i], err = createDoc(base, fmt.Sprint("load ", i), initialText); err != nil {
			b.Fatal(err)
		}
		for j := range clients {
			e, err := dialTypist(base, ids[i], uint64(i*1000+j))
			if err != nil {
				b.Fatal(err)
			}
			eds = append(eds, e)
		}
	}
	before, spentBefore := mgr.Stats(), store.spent()

	// Bounded: a run that has not finished in two minutes is a failure.
	stop := make(chan struct{})
	deadline := time.AfterFunc(2*time.Minute, func() { close(stop) })
	defer deadline.Stop()

	b.StartTimer()
	start := time.Now()
	errs := make([]error, len(eds))
	var wg sync.WaitGroup
	for i, e := range eds {
		wg.Go(func() { errs[i] = e.run(opsPerClient, stop) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	after := mgr.Stats()
	res := loadResult{elapsed: elapsed, commitDur: store.spent() - spentBefore, stats: collab.CommitStats{
		Writes: after.Writes - before.Writes, Appends: after.Appends - before.Appends, Records: after.Records - before.Records,
	}}
	for i, e := range eds {
		if errs[i] != nil {
			b.Fatalf("client %d: %v", i, errs[i])
		}
		res.ops += e.acks
		res.latencies = append(res.latencies, e.latencies...)
	}
	// Every ack is a record on disk, and the documents add up.
	var heads int64
	for _, id := range ids {
		d, err := getDoc(base, id)
		if err != nil {
			b.Fatal(err)
		}
		heads += d.Rev
	}
	if heads != int64(res.ops) || res.stats.Records != int64(res.ops) {
		b.Fatalf("%d ops acked, %d records written, heads add up to %d", res.ops, res.stats.Records, heads)
	}
	return res
}

// loadTypist is one client of the load benchmark: the client package's
// Doc, typing with one op in flight (its next edit right after the ack).
type loadTypist struct {
	doc *client.Doc
	rng *rand.Rand

	mu        sync.Mutex
	sent      time.Time
	acks      int
	latencies []time.Duration
}

func dialTypist(base, id string, seed uint64) (*loadTypist, error) {
	e := &loadTypist{rng: rand.New(rand.NewPCG(seed, 7))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doc, err := client.Dial(ctx, base, id, client.Options{
		Name:   "load",
		OnSend: func(uint64) { e.mu.Lock(); e.sent = time.Now(); e.mu.Unlock() },
		OnAck: func(uint64, int64) {
			e.mu.Lock()
			e.acks++
			e.latencies = append(e.latencies, time.Since(e.sent))
			e.mu.Unlock()
		},
	})
	e.doc = doc
	return e, err
}

// run makes ops edits: inserts of a few characters of sampleRunes, and
// deletes (always once the text is longer than loadMaxLen).
func (e *loadTypist) run(ops int, stop <-chan struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for range ops {
		n := e.doc.Len()
		pos := e.rng.IntN(n + 1)
		op := client.Insert(pos, func() string {
			var sb strings.Builder
			for range 1 + e.rng.IntN(6) {
				sb.WriteString(sampleRunes[e.rng.IntN(len(sampleRunes))])
			}
			return sb.String()
		}())
		if n > pos && (e.rng.IntN(4) == 0 || n > loadMaxLen) {
			op = client.Delete(pos, 1+e.rng.IntN(min(8, n-pos)))
		}
		if err := e.doc.Edit(op); err != nil {
			return err
		}
		if err := e.doc.Synced(ctx); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkLoad drives documents × clients over real WebSockets, each
// client typing with one op in flight, and reports acked ops/s, the ack
// latency (p50, p99) and the group commit's records and appends per durable
// write; then the same with MaxBatch 1 (one document's append per durable
// write, as without group commit), reported with the "mb1-" prefix, and the
// throughput ratio as "x-group". write-ms is the mean durable write
// (Store.Commit). TANDEM_LOAD_OPS sets the ops per client.
//
// Group commit merges appends of different documents (a document has one
// append in flight; its hub batches the ops that arrive meanwhile into the
// next one), so the more documents are busy at once, the more it gains:
// docs=100/clients=1 shows it best, docs=1/clients=20 not at all.
func BenchmarkLoad(b *testing.B) {
	for _, shape := range []struct{ docs, clients int }{{10, 5}, {1, 20}, {100, 1}} {
		opsPerClient := 10000 / (shape.docs * shape.clients)
		if n, err := strconv.Atoi(os.Getenv(loadOpsEnv)); err == nil && n > 0 {
			opsPerClient = n
		}
		b.Run(fmt.Sprintf("docs=%d/clients=%d", shape.docs, shape.clients), func(b *testing.B) {
			var group, single loadResult
			for range b.N {
				group.add(runLoad(b, shape.docs, shape.clients, opsPerClient, 0))
				single.add(runLoad(b, shape.docs, shape.clients, opsPerClient, 1))
			}
			b.ReportMetric(group.opsPerSec(), "ops/s")
			b.ReportMetric(group.percentile(0.50), "p50-ms")
			b.ReportMetric(group.percentile(0.99), "p99-ms")
			b.ReportMetric(group.perWrite(group.stats.Records), "rec/write")
			b.ReportMetric(group.perWrite(group.stats.Appends), "app/write")
			b.ReportMetric(single.opsPerSec(), "mb1-ops/s")
			b.ReportMetric(single.percentile(0.50), "mb1-p50-ms")
			b.ReportMetric(single.percentile(0.99), "mb1-p99-ms")
			b.ReportMetric(single.perWrite(single.stats.Records), "mb1-rec/write")
			b.ReportMetric(group.opsPerSec()/single.opsPerSec(), "x-group")
			b.ReportMetric(group.writeMs(), "write-ms")
			b.ReportMetric(single.writeMs(), "mb1-write-ms")
			b.Logf("group commit: %d ops in %v, %d writes (%.2f ms each, committer busy %.0f%%), %d appends; "+
				"MaxBatch 1: %d ops in %v, %d writes (%.2f ms each, busy %.0f%%), %d appends",
				group.ops, group.elapsed.Round(time.Millisecond), group.stats.Writes, group.writeMs(), 100*group.busy(), group.stats.Appends,
				single.ops, single.elapsed.Round(time.Millisecond), single.stats.Writes, single.writeMs(), 100*single.busy(), single.stats.Appends)
		})
	}
}
