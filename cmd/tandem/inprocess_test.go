package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// testServeConfig is `tandem serve`'s defaults for a server in a temp
// directory on a free loopback port, plus args.
func testServeConfig(tb testing.TB, args ...string) serveConfig {
	tb.Helper()
	// A test's temp directory may sit on a small disk; the guard itself
	// is tested by TestDiskFull.
	args = append([]string{"--addr", "127.0.0.1:0", "--data-dir", tb.TempDir(), "--min-free-space", "1MiB", "--admin-token", testAdminToken}, args...)
	cfg, err := parseServeFlags(args, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// testAdminToken is the admin token of the in-process test servers
// (testServeConfig); servers the tests start as processes make their own
// (process.adminToken).
const testAdminToken = "test-admin-token-0123456789abcdef"

// startInProcess runs `tandem serve` with cfg in this process, the same
// wiring as the binary, and shuts it down gracefully when the test ends.
func startInProcess(tb testing.TB, cfg serveConfig, hooks serverHooks) *server {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := openServer(context.Background(), cfg, log, hooks)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.close(); err != nil {
			tb.Error(err)
		}
	})
	return srv
}

// benchServer is an in-process server for a benchmark: rate limits off
// (they are for abuse, not for measuring), tune and wrap applied.
func benchServer(tb testing.TB, tune func(*collab.Config), wrap func(storage.Store) storage.Store) *server {
	return startInProcess(tb, testServeConfig(tb), serverHooks{wrapStore: wrap, tune: func(c *collab.Config) {
		c.RatePerSecond, c.RateBurst = 1e9, 1e9
		if tune != nil {
			tune(c)
		}
	}})
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}
