package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/ot"
)

// runBench runs `tandem bench args... --json` against srv and decodes the
// result.
func runBench(t testing.TB, srv *server, args ...string) benchResult {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"bench", "--server", srv.url, "--json", "--pid", "0"}, args...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("tandem %v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	var res benchResult
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

// TestHistogram: percentiles within the buckets' 3%.
func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 100000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	l := h.summary(false)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50, 50}, {"p90", l.P90, 90}, {"p99", l.P99, 99}, {"max", l.Max, 100}} {
		if math.Abs(c.got-c.want)/c.want > 0.03 {
			t.Errorf("%s = %.3f ms, want %.0f ± 3%%", c.name, c.got, c.want)
		}
	}
	if l.Count != 100000 {
		t.Errorf("count %d", l.Count)
	}
}

// TestTypistWalkOp: what a typist learns from an op (its length change,
// and where its backspaced character went) is what applying the op does.
func TestTypistWalkOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	checked := 0
	defer func() {
		if checked < 1000 {
			t.Errorf("only %d of 5000 random ops were checked", checked)
		}
	}()
	for i := range 5000 {
		n := rng.IntN(12)
		doc := []rune(strings.Repeat("x", n))
		delAt := -1
		if n > 0 && rng.IntN(4) > 0 {
			delAt = rng.IntN(n)
			doc[delAt] = '#'
		}
		var op ot.Op
		for left := n; left > 0 || rng.IntN(3) == 0; {
			switch k := rng.IntN(3); {
			case k == 0:
				op = append(op, ot.Insert(string([]rune("é😀a")[rng.IntN(3)])))
			case k == 1 && left > 0:
				m := 1 + rng.IntN(left)
				op, left = append(op, ot.Skip(m)), left-m
			case left > 0:
				m := 1 + rng.IntN(left)
				op, left = append(op, ot.Delete(m)), left-m
			}
			if left == 0 && rng.IntN(2) == 0 {
				break
			}
		}
		if op.Check() != nil {
			continue // (adjacent components of a kind: not a normal op)
		}
		raw, err := op.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		after, err := ot.Apply(string(doc), op)
		if err != nil {
			continue // (an op that is not for this document: not this test's)
		}
		checked++
		delta, moved, err := walkOp(raw, delAt)
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, raw, err)
		}
		if want := len([]rune(after)) - n; delta != want {
			t.Fatalf("case %d: %q then %s: delta %d, want %d", i, string(doc), raw, delta, want)
		}
		want := -1
		if delAt >= 0 {
			want = slices.Index([]rune(after), '#')
		}
		if moved != want {
			t.Fatalf("case %d: %q then %s: the character at %d went to %d, want %d", i, string(doc), raw, delAt, moved, want)
		}
	}
}

// FuzzServerFields checks the typists' one-pass reader of server messages
// against encoding/json: on any frame it must not panic, and on a valid
// object it must find what encoding/json finds, and where the object ends.
func FuzzServerFields(f *testing.F) {
	for _, s := range []string{
		`{"type":"op","rev":12,"op":[3,"ab",{"d":1}],"src":"s-1","seq":4,"user":"u","name":"A \"quoted\" name"}`,
		`{"type":"ack","seq":7,"rev":9}`,
		`{"type":"error","code":"rate_limited","seq":3,"retryAfter":250,"message":"too many \\ messages"}`,
		`{ "type" : "sel" , "sel" : [ {"anchor":1,"head":2} ] } , {"type":"ack","seq":1,"rev":2}`,
		`{"type":"op","op":["\u00e9\ud83d\ude00"],"rev":1}`,
		`{"type":"op","rev":`, `{}`, `{"a":"\\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got serverFields
		rest, ok := got.parse(data)
		// (Keys exactly, as the server spells them; encoding/json's struct
		// fields would match any case.)
		var want map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&want); err != nil || len(data) == 0 || data[0] != '{' {
			return // not a valid object at the start: any answer but a panic
		}
		if !ok {
			t.Fatalf("parse refused %q", data)
		}
		if end := len(data) - len(rest); int64(end) != dec.InputOffset() {
			t.Fatalf("%q: the object ends at %d, parse says %d", data, dec.InputOffset(), end)
		}
		str := func(k string) string {
			var s string
			json.Unmarshal(want[k], &s)
			return s
		}
		num := func(k string) int64 {
			n, _ := strconv.ParseInt(string(want[k]), 10, 64)
			return n
		}
		if unquoted(got.typ) != str("type") || unquoted(got.src) != str("src") || unquoted(got.code) != str("code") ||
			got.rev != num("rev") || got.seq != num("seq") || got.retryAfter != num("retryAfter") {
			t.Fatalf("%q: parse found %+v", data, got)
		}
		if !bytes.Equal(got.op, want["op"]) {
			t.Fatalf("%q: op %q, encoding/json %q", data, got.op, want["op"])
		}
	})
}
