package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/client"
)

// BenchmarkColdOpen: a document with many revisions (200,000 by default,
// TANDEM_BENCH_REVS), typed through a real server by ten clients, one
// character per op; then a fresh server on the same data directory (the
// document not loaded) and the time to the first hello; and the data
// directory's size next to the op log's (the records' text, as JSON).
//
//	go test ./cmd/tandem -run '^$' -bench ColdOpen -benchtime 1x
func BenchmarkColdOpen(b *testing.B) {
	revs := 200000
	if n, err := strconv.Atoi(os.Getenv("TANDEM_BENCH_REVS")); err == nil && n > 0 {
		revs = n
	}
	for b.Loop() {
		cfg := testServeConfig(b, "--client-rate", "1e6")
		srv := startInProcess(b, cfg, serverHooks{})
		id, err := createDoc(srv.url, "long", "")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res := runBench(b, srv, "--doc-ids", id, "--clients", "10", "--ops", strconv.Itoa(revs), "--duration", "30m", "--deletes", "0")
		typed := time.Since(start)
		if err := srv.close(); err != nil {
			b.Fatal(err)
		}
		logBytes := int64(0)
		reopened := startInProcess(b, cfg, serverHooks{})
		d, err := getDoc(reopened.url, id)
		if err != nil {
			b.Fatal(err)
		}
		recs, err := getLog(reopened.url, id, d.Rev)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			logBytes += int64(len(fmt.Sprintf(`{"rev":%d,"op":%s,"src":%q,"seq":%d}`, r.Rev, r.Op, r.Src, r.Seq)))
		}
		reopened.close()

		// Cold: a fresh server, the document not in memory.
		cold := startInProcess(b, cfg, serverHooks{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t0 := time.Now()
		doc, err := client.Dial(ctx, cold.url, id, client.Options{})
		hello := time.Since(t0)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		doc.Close()
		size := dirSize(cfg.DataDir)
		b.ReportMetric(float64(hello.Microseconds())/1e3, "hello-ms")
		b.ReportMetric(float64(size)/1e6, "dir-MB")
		b.ReportMetric(float64(size)/float64(logBytes), "x-oplog")
		b.Logf("%d revisions typed in %v (%.0f ops/s); first hello on a fresh server %v; data directory %.1f MB, op log %.1f MB",
			d.Rev, typed.Round(time.Second), res.OpsPerSec, hello, float64(size)/1e6, float64(logBytes)/1e6)
	}
}
