package main

import (
	"sync"
	"testing"
	"time"
)

// TestMetrics: the figures an operator watches move with real traffic on
// an in-process server: connections by state, ops' transform distance and
// fan-out, the outbound queues, Badger's own counters.
func TestMetrics(t *testing.T) {
	srv := startInProcess(t, testServeConfig(t), serverHooks{})
	id, err := createDoc(srv.url, "metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	watcher := dialRaw(t, srv.url, id, "")
	// (melody registers a session with its hub asynchronously.)
	waitFor(t, 30*time.Second, "the WebSocket to be counted", func() bool {
		return metricValue(t, srv.url, `tandem_connections{state="websocket"}`) == 1
	})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if lat, err := honestTyping(srv.url, id, 50, time.Millisecond); err != nil || len(lat) != 50 {
				t.Errorf("typing: %d acks, %v", len(lat), err)
			}
		})
	}
	wg.Wait()
	for range 100 {
		watcher.next("op")
	}
	for sample, want := range map[string]func(float64) bool{
		`tandem_op_transform_distance_count`: func(v float64) bool { return v == 100 },
		`tandem_op_fanout_count`:             func(v float64) bool { return v == 100 },
		// Each op went to the watcher and to its typist at least.
		`tandem_op_fanout_sum`:                  func(v float64) bool { return v >= 200 },
		`tandem_outbound_queued_messages`:       func(v float64) bool { return v >= 0 },
		`tandem_badger_puts_total`:              func(v float64) bool { return v > 0 },
		`tandem_connections{state="websocket"}`: func(v float64) bool { return v >= 1 },
		`tandem_documents_open`:                 func(v float64) bool { return v == 1 },
	} {
		if v := metricValue(t, srv.url, sample); !want(v) {
			t.Errorf("%s = %v", sample, v)
		}
	}
}
