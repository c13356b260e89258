// Package natstest runs NATS servers with JetStream inside a test
// process, configured as Tandem needs one in production (every write
// synced before it is acknowledged, room for 8 MiB documents), so that
// nothing has to be installed to test the cluster.
package natstest

import (
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
