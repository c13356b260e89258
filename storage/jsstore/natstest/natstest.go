// Package natstest runs NATS servers with JetStream inside a test
// process, configured as Tandem needs one in production (every write
// synced before it is acknowledged, room for 8 MiB documents), so that
// nothing has to be installed to test the cluster: one server, or a
// clustered three.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options are a server's options with its data in a temporary directory
// of tb and a free port.
func Options(tb testing.TB) *server.Options {
	return &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		SyncAlways: true, NoLog: true, NoSigs: true, MaxPayload: 16 << 20,
	}
}

// Run starts a server with o and shuts it down when the test ends.
func Run(tb testing.TB, o *server.Options) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// Start runs a server with Options(tb).
func Start(tb testing.TB) *server.Server { return Run(tb, Options(tb)) }

// Cluster starts n servers with JetStream clustered (a route between each
// two, as in deploy/cluster/nats.conf) and waits until JetStream has a
// leader and every server is current. Each shuts down when the test ends
// (or earlier, by the test: Shutdown is idempotent).
func Cluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		o := Options(tb)
		o.ServerName = fmt.Sprintf("n%d", i+1)
		o.Cluster = server.ClusterOpts{Name: "tandem", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = routes
		ns, err := server.NewServer(o)
		if err != nil {
			tb.Fatal(err)
		}
		ns.Start()
		tb.Cleanup(ns.Shutdown)
		servers[i] = ns
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, current := false, true
		for _, ns := range servers {
			if !ns.ReadyForConnections(time.Second) {
				current = false
				continue
			}
			// The leader must also know every peer as online with
			// JetStream (and have its stats): until then a stream of n
			// replicas finds "no suitable peers for placement".
			if ns.JetStreamIsLeader() {
				leader = len(ns.JetStreamClusterPeers()) == n
			}
			current = current && ns.JetStreamIsCurrent()
		}
		if leader && current {
			return servers
		}
		if time.Now().After(deadline) {
			tb.Fatalf("a JetStream cluster of %d did not form in 30 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs is the servers' client URLs, comma-separated (for --nats).
func URLs(servers []*server.Server) string {
	var urls []string
	for _, ns := range servers {
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ",")
}
