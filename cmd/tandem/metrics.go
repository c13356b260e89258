package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemdocs/tandem/collab"
	"github.com/tandemdocs/tandem/storage/spaceguard"
)

// promObserver records what the documents and the HTTP front end do.
type promObserver struct {
	commitSeconds prometheus.Histogram
	commitRecords prometheus.Histogram
	refused       *prometheus.CounterVec
	overflowed    prometheus.Counter
	snapshotBytes prometheus.Histogram
	snapshotSecs  prometheus.Histogram
	httpErrors    *prometheus.CounterVec
}

func newPromObserver() *promObserver {
	return &promObserver{
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_commit_seconds", Help: "Time of one durable write of the group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}),
		commitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_commit_records", Help: "Records per durable write (the group commit's batch).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		refused:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_messages_refused_total", Help: "Client messages refused, by error code."}, []string{"code"}),
		overflowed: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_slow_consumer_disconnects_total", Help: "Connections closed for resync because they read too slowly."}),
		snapshotBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_snapshot_bytes", Help: "Size of the snapshots written.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10)}),
		snapshotSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_snapshot_seconds", Help: "Time to write a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		httpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_http_errors_total", Help: "HTTP requests answered with an error, by status and code (401/403 refusals, 429 rate limits, ...)."}, []string{"status", "code"}),
	}
}

func (o *promObserver) Committed(appends, records int, took time.Duration) {
	o.commitSeconds.Observe(took.Seconds())
	o.commitRecords.Observe(float64(records))
}
func (o *promObserver) Refused(code string) { o.refused.WithLabelValues(code).Inc() }
func (o *promObserver) Overflowed()         { o.overflowed.Inc() }
func (o *promObserver) SnapshotSaved(bytes int, took time.Duration) {
	o.snapshotBytes.Observe(float64(bytes))
	o.snapshotSecs.Observe(took.Seconds())
}
func (o *promObserver) HTTPError(status int, code string) {
	o.httpErrors.WithLabelValues(strconv.Itoa(status), code).Inc()
}

// metricsHandler serves the server's metrics in the Prometheus text format:
// the Go runtime and the process, the documents open, the group commit's
// counters, and the disk guard's state. Every value is read when scraped.
func metricsHandler(mgr *collab.Manager, guard *spaceguard.Guard, dataDir string, obs *promObserver) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(obs.commitSeconds, obs.commitRecords, obs.refused, obs.overflowed, obs.snapshotBytes, obs.snapshotSecs, obs.httpErrors)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_documents_open", Help: "Documents loaded in memory.",
		}, func() float64 { return float64(mgr.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_storage_writable", Help: "1 while the server takes writes, 0 while the disk is nearly full (see the ERROR log for why).",
		}, func() float64 {
			if guard.Writable() != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_storage_free_bytes", Help: "Free space on the data directory's filesystem.",
		}, func() float64 {
			free, err := spaceguard.Free(dataDir)
			if err != nil {
				return -1
			}
			return float64(free)
		}),
	)
	for _, c := range []struct {
		name, help string
		get        func(collab.CommitStats) int64
	}{
		{"tandem_commit_writes_total", "Durable writes of the group commit.", func(s collab.CommitStats) int64 { return s.Writes }},
		{"tandem_commit_appends_total", "Appends (one document's ops) written.", func(s collab.CommitStats) int64 { return s.Appends }},
		{"tandem_commit_records_total", "Records (ops) written.", func(s collab.CommitStats) int64 { return s.Records }},
		{"tandem_commit_conflicts_total", "Appends refused because another writer committed first.", func(s collab.CommitStats) int64 { return s.Conflicts }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.get(mgr.Stats())) }))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
