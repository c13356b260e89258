package tandem

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandemdocs/tandem/internal/collab"
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
	distance      prometheus.Histogram
	fanOut        prometheus.Histogram
	retried       prometheus.Histogram

	webhookEvents   *prometheus.CounterVec
	webhookFailures *prometheus.CounterVec
	webhookLagSecs  *prometheus.GaugeVec
}

func newPromObserver() *promObserver {
	return &promObserver{
		retried: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_commit_conflict_retry_seconds",
			Help:    "From a commit lost to another node (a cluster) to the same ops committed after reading what it missed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
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
		distance: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_op_transform_distance", Help: "Concurrent revisions an accepted op was transformed through (its count is the ops accepted).",
			Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}}),
		fanOut: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_op_fanout", Help: "Connections a committed op was sent to (acks included).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		webhookEvents:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_webhook_events_total", Help: "Change feed events delivered to a webhook endpoint (answered 2xx)."}, []string{"endpoint"}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_webhook_failures_total", Help: "Webhook deliveries that failed (no 2xx answer in time) and will be retried."}, []string{"endpoint"}),
		webhookLagSecs:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_webhook_lag_seconds", Help: "How old the oldest event not yet delivered to the endpoint is (0: caught up)."}, []string{"endpoint"}),
	}
}

func (o *promObserver) Committed(appends, records int, took time.Duration) {
	o.commitSeconds.Observe(took.Seconds())
	o.commitRecords.Observe(float64(records))
}
func (o *promObserver) Refused(code string)        { o.refused.WithLabelValues(code).Inc() }
func (o *promObserver) Retried(took time.Duration) { o.retried.Observe(took.Seconds()) }
func (o *promObserver) Overflowed()                { o.overflowed.Inc() }
func (o *promObserver) SnapshotSaved(bytes int, took time.Duration) {
	o.snapshotBytes.Observe(float64(bytes))
	o.snapshotSecs.Observe(took.Seconds())
}
func (o *promObserver) Accepted(distance int64)  { o.distance.Observe(float64(distance)) }
func (o *promObserver) Broadcast(recipients int) { o.fanOut.Observe(float64(recipients)) }
func (o *promObserver) HTTPError(status int, code string) {
	o.httpErrors.WithLabelValues(strconv.Itoa(status), code).Inc()
}

func (o *promObserver) webhook(name string) {
	o.webhookEvents.WithLabelValues(name)
	o.webhookFailures.WithLabelValues(name)
	o.webhookLagSecs.WithLabelValues(name)
}
func (o *promObserver) webhookDelivered(name string, n int) {
	o.webhookEvents.WithLabelValues(name).Add(float64(n))
	o.webhookLagSecs.WithLabelValues(name).Set(0)
}
func (o *promObserver) webhookFailed(name string) { o.webhookFailures.WithLabelValues(name).Inc() }
func (o *promObserver) webhookLag(name string, lag time.Duration) {
	o.webhookLagSecs.WithLabelValues(name).Set(max(0, lag.Seconds()))
}

// registerMetrics registers the server's metrics: the documents open, the
// ops' transform distance and fan-out, the outbound queues, the group
// commit's counters, the webhooks, the disk guard's state and Badger's own
// figures. Every gauge is read when scraped.
func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	mgr, guard, dataDir, obs := s.mgr, s.st.guard, s.st.dir, s.obs
	cs := []prometheus.Collector{obs.retried, obs.commitSeconds, obs.commitRecords, obs.refused, obs.overflowed, obs.snapshotBytes, obs.snapshotSecs, obs.httpErrors,
		obs.distance, obs.fanOut, obs.webhookEvents, obs.webhookFailures, obs.webhookLagSecs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_outbound_queued_messages", Help: "Messages waiting in the connections' outbound queues (all connections).",
		}, func() float64 { n, _ := mgr.Queued(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_outbound_queued_bytes", Help: "Bytes waiting in the connections' outbound queues (all connections).",
		}, func() float64 { _, n := mgr.Queued(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tandem_outbound_frames_total", Help: "WebSocket frames handed to the connections (each is a write; a frame carries one message or a batch).",
		}, func() float64 { n, _ := mgr.Sent(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tandem_outbound_messages_total", Help: "Messages those frames carried (messages per frame: how well the outbound queues batch).",
		}, func() float64 { _, n := mgr.Sent(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tandem_documents_open", Help: "Documents loaded in memory.",
		}, func() float64 { return float64(mgr.Open()) }),
	}
	if s.st.badger {
		cs = append(cs, badgerCollector())
	}
	if guard != nil {
		// The data directory's disk (a cluster node has none: NATS keeps
		// the data, and reports on its own disk).
		cs = append(cs,
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
	}
	for _, c := range []struct {
		name, help string
		get        func(collab.CommitStats) int64
	}{
		{"tandem_commit_writes_total", "Durable writes of the group commit.", func(s collab.CommitStats) int64 { return s.Writes }},
		{"tandem_commit_appends_total", "Appends (one document's ops) written.", func(s collab.CommitStats) int64 { return s.Appends }},
		{"tandem_commit_records_total", "Records (ops) written.", func(s collab.CommitStats) int64 { return s.Records }},
		{"tandem_commit_conflicts_total", "Appends refused because another writer committed first.", func(s collab.CommitStats) int64 { return s.Conflicts }},
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.get(mgr.Stats())) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("tandem: metrics: %w", err)
		}
	}
	return nil
}

// badgerCollector exports Badger's own figures, which it publishes with
// expvar (per process: one Badger per Tandem).
func badgerCollector() prometheus.Collector {
	return collectors.NewExpvarCollector(map[string]*prometheus.Desc{
		"badger_size_bytes_lsm":             prometheus.NewDesc("tandem_badger_lsm_bytes", "Size of Badger's LSM tree (updated by Badger once a minute).", []string{"dir"}, nil),
		"badger_size_bytes_vlog":            prometheus.NewDesc("tandem_badger_vlog_bytes", "Size of Badger's value log (updated by Badger once a minute).", []string{"dir"}, nil),
		"badger_compaction_current_num_lsm": prometheus.NewDesc("tandem_badger_compactions_running", "Badger compactions running now.", nil, nil),
		"badger_write_bytes_compaction":     prometheus.NewDesc("tandem_badger_compaction_written_bytes_total", "Bytes Badger's compactions wrote, by level.", []string{"level"}, nil),
		"badger_write_bytes_l0":             prometheus.NewDesc("tandem_badger_l0_written_bytes_total", "Bytes Badger flushed from memtables to level 0.", nil, nil),
		"badger_write_pending_num_memtable": prometheus.NewDesc("tandem_badger_pending_writes", "Writes waiting for Badger's memtable.", []string{"dir"}, nil),
		"badger_write_bytes_user":           prometheus.NewDesc("tandem_badger_written_bytes_total", "Bytes written to Badger.", nil, nil),
		"badger_write_bytes_vlog":           prometheus.NewDesc("tandem_badger_vlog_written_bytes_total", "Bytes written to Badger's value log.", nil, nil),
		"badger_get_num_user":               prometheus.NewDesc("tandem_badger_gets_total", "Badger point reads.", nil, nil),
		"badger_put_num_user":               prometheus.NewDesc("tandem_badger_puts_total", "Badger writes (keys).", nil, nil),
	})
}
