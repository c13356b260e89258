package main

import (
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// connStates counts the HTTP server's connections by state (its ConnState
// hook). A connection upgraded to a WebSocket leaves net/http's
// accounting: those are counted by the web server.
type connStates struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
	count [http.StateClosed + 1]int
}

func newConnStates() *connStates { return &connStates{state: map[net.Conn]http.ConnState{}} }

func (c *connStates) track(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.state[conn]; ok {
		c.count[old]--
	}
	if s == http.StateHijacked || s == http.StateClosed {
		delete(c.state, conn)
		return
	}
	c.state[conn] = s
	c.count[s]++
}

// closeIdle closes the keep-alive connections waiting for a next request
// (the server is full: they make room) and returns how many.
func (c *connStates) closeIdle() int {
	c.mu.Lock()
	var idle []net.Conn
	for conn, s := range c.state {
		if s == http.StateIdle {
			idle = append(idle, conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
	return len(idle)
}

func (c *connStates) get(s http.ConnState) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[s]
}

// connStateCollector exports the connections by state: net/http's
// (new, active, idle) and the WebSockets.
func connStateCollector(conns *connStates, websockets func() int) prometheus.Collector {
	desc := prometheus.NewDesc("tandem_connections", "Connections open, by state: new (no request yet), active (in a request), idle (keep-alive), websocket.", []string{"state"}, nil)
	return funcCollector{desc, func(ch chan<- prometheus.Metric) {
		for _, st := range []http.ConnState{http.StateNew, http.StateActive, http.StateIdle} {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(conns.get(st)), st.String())
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(websockets()), "websocket")
	}}
}

// funcCollector is a collector of one metric family, read by a function
// at each scrape.
type funcCollector struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c funcCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
