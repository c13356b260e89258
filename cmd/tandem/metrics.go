package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemdocs/tandem/collab"
	"github.com/tandemdocs/tandem/storage/spaceguard"
)

// metricsHandler serves the server's metrics in the Prometheus text format:
// the Go runtime and the process, the documents open, the group commit's
// counters, and the disk guard's state. Every value is read when scraped.
func metricsHandler(mgr *collab.Manager, guard *spaceguard.Guard, dataDir string) http.Handler {
	reg := prometheus.NewRegistry()
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
