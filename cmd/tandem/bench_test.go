package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/internal/loadgen"
)

// runBench runs `tandem bench args... --json` against srv and decodes the
// result.
func runBench(t testing.TB, srv *server, args ...string) loadgen.Result {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"bench", "--server", srv.url, "--json", "--pid", "0"}, args...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("tandem %v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return res
}

// TestBenchSmoke: a few seconds of every mode of the load tool against an
// in-process server, so that it cannot rot: ops committed, latencies
// measured, no errors, every client converged.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load tool for seconds (-short)")
	}
	srv := startInProcess(t, testServeConfig(t, "--client-rate", "1e6"), serverHooks{})
	for _, args := range [][]string{
		{"--mode", "closed", "--docs", "2", "--clients", "3", "--ops", "300", "--duration", "30s"},
		{"--mode", "open", "--clients", "25", "--rate", "20", "--duration", "1s", "--presence"},
		{"--mode", "ramp", "--clients", "2", "--ramp-step", "2", "--ramp-max", "4", "--rate", "10", "--duration", "500ms"},
		// Rich documents: Quill Deltas with formatting, typed and changed.
		{"--type", "rich", "--mode", "closed", "--docs", "2", "--clients", "4", "--ops", "400", "--duration", "30s", "--deletes", "0.3"},
		{"--type", "rich", "--mode", "open", "--clients", "20", "--rate", "20", "--duration", "1s", "--presence"},
	} {
		res := runBench(t, srv, args...)
		if res.Committed == 0 || res.Ack.Count == 0 || res.Converged == nil || !*res.Converged || len(res.Errors) > 0 {
			t.Errorf("bench %v: %+v", args, res)
		}
		if res.Mode != "ramp" && res.Seen.Count == 0 {
			t.Errorf("bench %v: no op seen by another client", args)
		}
	}
	idle := runBench(t, srv, "--mode", "idle", "--docs", "2", "--clients", "10")
	if idle.Connections != 20 {
		t.Errorf("idle: %d connections, want 20", idle.Connections)
	}
}

// TestBenchReadmeExample runs the README's first `tandem bench` example
// against a server with default settings, as a new user would: every op
// the per-connection budget refuses is sent again and every client
// converges (issue 25: the Go client once kept a rate-limited op in flight
// for good).
func TestBenchReadmeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load tool for 5 s (-short)")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for line := range strings.Lines(string(readme)) {
		if cmd, _, _ := strings.Cut(line, "#"); strings.HasPrefix(cmd, "tandem bench --docs 2 --clients 5") {
			args = strings.Fields(cmd)[2:]
			break
		}
	}
	if args == nil {
		t.Fatal("README.md has no `tandem bench --docs 2 --clients 5 …` example")
	}
	srv := startInProcess(t, testServeConfig(t), serverHooks{})
	res := runBench(t, srv, args...)
	t.Logf("tandem bench %v against the defaults: %d ops committed, resent %v, errors %v", args, res.Committed, res.Retried, res.Errors)
	if res.Converged == nil || !*res.Converged || len(res.Errors) > 0 || res.Committed == 0 {
		t.Fatalf("bench %v: %+v", args, res)
	}
}

// TestBenchTrace replays a recorded editing session (from ../shared/traces,
// skipped without it) as two authors in one document: each section ends
// as the trace's end text.
func TestBenchTrace(t *testing.T) {
	path := filepath.Join("..", "..", "..", "shared", "traces", "sveltecomponent.json.gz")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no trace at %s (the shared traces are not part of the repository)", path)
	}
	if testing.Short() {
		t.Skip("replays 18,000 edits twice (-short)")
	}
	srv := startInProcess(t, testServeConfig(t, "--client-rate", "1e6"), serverHooks{})
	res := runBench(t, srv, "--mode", "trace", "--trace", path, "--clients", "2", "--rate", "0", "--duration", "5m")
	if res.Converged == nil || !*res.Converged || res.TraceCheck == "" || res.TraceCheck[:5] != "every" {
		t.Fatalf("trace replay: %+v", res)
	}
	t.Logf("%d edits replayed by 2 authors at %.0f ops/s, ack p99 %.2f ms: %s", res.Edits, res.OpsPerSec, res.Ack.P99, res.TraceCheck)
}
