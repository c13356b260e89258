// Package loadgen is tandem bench: the load generator (typists, ramps,
// idle connections, trace replays, processes and workers on several
// machines) and its ShareDB driver, for the benchmarks in BENCHMARKS.md.
// cmd/tandem runs it as the bench command (Main).
package loadgen

// tandem bench: the load tool. It drives a running server with real
// WebSocket clients (the client package) and reports throughput, latency,
// errors, the server's CPU and memory, and whether everyone converged.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/fdlimit"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/rich"
)

type benchConfig struct {
	Server          string
	Token           string
	Docs            int
	Clients         int
	Mode            string
	Rate            float64
	Duration        time.Duration
	Ops             int64
	Presence        bool
	DeleteRatio     float64
	InitialText     string
	DocIDs          string
	PID             int
	JSON            bool
	Quiet           bool
	Trace           string
	RampStep        int
	RampP99         time.Duration
	RampMax         int
	Protocol        string
	DocType         string // plain or rich
	Seed            uint64
	CPUProfile      string
	JoinConcurrency int
	Full            int
	Processes       int
	Merge           bool
	MergeFiles      []string
	Part            string // I/N: this process drives client i of each document where i mod N == I
	StartAt         int64  // with --part: when to start typing (Unix nanoseconds)
	Worker          string // serve a coordinator's runs on this address
	WorkerProcesses int    // parts of a run a worker takes
	Workers         string // coordinate these workers' URLs
	WorkerKey       string
	part, of        int
}

const benchUsage = `usage: tandem bench [flags]

Drives a running Tandem server (or a ShareDB server, --protocol sharedb)
with real WebSocket clients and reports committed ops/s, messages
delivered/s, submit→ack and submit→seen-by-others latency, errors by code,
the server's CPU and RSS (--pid), and whether every client converged on
the server's text.

modes:
  closed   each client sends its next op as soon as the last is acknowledged
  open     each client types --rate keystrokes a second; keystrokes made while
           an op is in flight are composed into the next one, as editors do
  trace    each client replays a recorded editing session (--trace) in its own
           section of the document, at --rate edits a second (0: closed loop)
  ramp     open loop, adding --ramp-step authors per document every
           --duration until the p99 of submit→ack passes --ramp-p99
  idle     hold --clients connections per document and report the server's
           memory per connection (--pid)

flags:
`

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	var c benchConfig
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Server, "server", "http://localhost:8080", "the server's URL (TANDEM_SERVER); several, comma-separated, for the nodes of a cluster: clients are spread over them in turn, documents are created on the first, and at the end every node must hold the text every client has")
	fs.StringVar(&c.Token, "token", "", "access token with write (and, for creating documents, write on *) (TANDEM_TOKEN)")
	fs.IntVar(&c.Docs, "docs", 1, "documents (created for the run unless --doc-ids)")
	fs.IntVar(&c.Clients, "clients", 10, "client connections per document")
	fs.StringVar(&c.Mode, "mode", "closed", "closed, open, trace, ramp or idle")
	fs.Float64Var(&c.Rate, "rate", 5, "keystrokes (trace: edits) a second per client in open, trace and ramp modes")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to run (ramp: each step)")
	fs.Int64Var(&c.Ops, "ops", 0, "stop after this many committed ops in all (0: run for --duration)")
	fs.BoolVar(&c.Presence, "presence", false, "send the caret after every edit, as editors do")
	fs.Float64Var(&c.DeleteRatio, "deletes", 0.2, "share of edits that delete (the rest insert), at random positions")
	fs.StringVar(&c.InitialText, "text", "The quick brown fox jumps over the lazy dog.\n", "the documents' text when created")
	fs.StringVar(&c.DocIDs, "doc-ids", "", "comma-separated existing documents to use instead of creating --docs (-: read them from standard input)")
	fs.IntVar(&c.PID, "pid", 0, "the server's process id, when it runs on this machine: its CPU and memory are reported")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress line")
	fs.StringVar(&c.Trace, "trace", "", "trace mode: a recorded session (josephg/editing-traces format, .json or .json.gz), e.g. ../shared/traces/seph-blog1.json.gz")
	fs.IntVar(&c.RampStep, "ramp-step", 10, "ramp mode: authors added per document at each step")
	fs.DurationVar(&c.RampP99, "ramp-p99", 50*time.Millisecond, "ramp mode: stop when the p99 of submit→ack passes this")
	fs.IntVar(&c.RampMax, "ramp-max", 2000, "ramp mode: stop at this many authors per document")
	fs.StringVar(&c.Protocol, "protocol", "tandem", "tandem, or sharedb (a ShareDB server's JSON protocol with ot-text-unicode; --server ws://host:port)")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed for the edits")
	fs.StringVar(&c.DocType, "type", "plain", "the documents' type: plain, or rich (Quill Deltas: text typed in a format each client keeps and changes one insert in ten, backspaces, and one edit in eight a format change over a few characters)")
	fs.IntVar(&c.Full, "full", 2, "clients per document that hold the whole text and transform and apply every op, as an editor does, and are checked for it at the end; the others (typists) send the same edits but track only the revision and the length, which costs the load generator a fraction (-1: every client is full; trace mode: always)")
	fs.IntVar(&c.Processes, "processes", 1, "run the clients in this many processes of this program (client i of each document in process i mod N), over the same window, and merge their results: one process is one core's worth of load generator (open and closed modes)")
	fs.StringVar(&c.Part, "part", "", "I/N: drive only client i of each document where i mod N == I, from --start-at, with --doc-ids: one part of a run split over processes or machines (each prints its result; --json results carry their histograms' buckets)")
	fs.BoolVar(&c.Merge, "merge", false, "merge the --json results of a run's parts (--part, from several machines), named as arguments, and print the whole")
	fs.StringVar(&c.Worker, "worker", "", "serve as a worker on this address (e.g. :7070): run the parts of runs a coordinator (--workers) hands over, as processes of this program, and answer their results; nothing else is done")
	fs.IntVar(&c.WorkerProcesses, "worker-processes", 1, "with --worker: the parts of a run this worker takes, a process each (a core's worth of load each)")
	fs.StringVar(&c.Workers, "workers", "", "comma-separated worker URLs (http://host:7070): create the documents here, split every document's clients over the workers' parts, start them at one moment (each worker's clock offset measured), and merge their results; --server must be reachable from the workers (open and closed modes)")
	fs.StringVar(&c.WorkerKey, "worker-key", "", "the key a worker asks of its coordinator, and the coordinator gives (TANDEM_BENCH_KEY; a worker without one makes one up and prints it)")
	fs.Int64Var(&c.StartAt, "start-at", 0, "with --part: when to start typing, in Unix nanoseconds (the same for every part; the machines' clocks in step)")
	fs.IntVar(&c.JoinConcurrency, "join-concurrency", 16, "idle mode: connections opened at once")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (is it the bottleneck?)")
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	if v := os.Getenv("TANDEM_SERVER"); v != "" {
		c.Server = v
	}
	c.Token = os.Getenv("TANDEM_TOKEN")
	c.WorkerKey = os.Getenv("TANDEM_BENCH_KEY")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.MergeFiles = fs.Args()
	switch {
	case c.Merge != (len(c.MergeFiles) > 0):
		return c, errors.New("bench: --merge takes the parts' result files as arguments, and only it does")
	case c.Docs < 1 || c.Clients < 1:
		return c, errors.New("bench: --docs and --clients must be at least 1")
	case c.Mode != "closed" && c.Mode != "open" && c.Mode != "trace" && c.Mode != "ramp" && c.Mode != "idle":
		return c, fmt.Errorf("bench: unknown --mode %q", c.Mode)
	case (c.Mode == "open" || c.Mode == "ramp") && c.Rate <= 0:
		return c, errors.New("bench: --rate must be positive in open and ramp modes")
	case c.Mode == "trace" && c.Trace == "":
		return c, errors.New("bench: trace mode needs --trace FILE")
	case c.DocType != "plain" && c.DocType != "rich":
		return c, fmt.Errorf("bench: unknown --type %q (plain or rich)", c.DocType)
	case c.DocType == "rich" && (c.Protocol != "tandem" || c.Mode == "trace" || c.Mode == "idle"):
		return c, errors.New("bench: --type rich runs Tandem's closed, open and ramp modes")
	case c.Protocol != "tandem" && c.Protocol != "sharedb":
		return c, fmt.Errorf("bench: unknown --protocol %q", c.Protocol)
	case c.Protocol == "sharedb" && (c.Mode == "trace" || c.Mode == "idle"):
		return c, errors.New("bench: --protocol sharedb supports closed, open and ramp")
	case c.Processes < 1:
		return c, errors.New("bench: --processes must be at least 1")
	case c.Part != "" && c.DocIDs == "":
		return c, errors.New("bench: --part needs --doc-ids (the documents every part edits)")
	case c.WorkerProcesses < 1:
		return c, errors.New("bench: --worker-processes must be at least 1")
	case c.Workers != "" && (c.Processes > 1 || c.Part != "" || c.Worker != ""):
		return c, errors.New("bench: --workers coordinates a run: not with --processes, --part or --worker")
	case c.Workers != "" && c.WorkerKey == "":
		return c, errors.New("bench: --workers needs the workers' --worker-key (TANDEM_BENCH_KEY)")
	}
	c.part, c.of = 0, 1
	if c.Part != "" {
		var err error
		if c.part, c.of, err = parsePart(c.Part); err != nil {
			return c, err
		}
	}
	return c, nil
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	fdlimit.Raise()
	if os.Getenv("GOGC") == "" {
		// A load generator's heap is small and its CPU is what limits the
		// measurement: collect a quarter as often (GOGC in the environment
		// overrides this).
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Worker != "" {
		return serveWorker(ctx, cfg, stderr)
	}
	b := &bench{cfg: cfg, stderr: stderr}
	var res *benchResult
	switch {
	case cfg.Workers != "":
		res, err = b.runWorkers(ctx)
	case cfg.Merge:
		var parts []benchResult
		for _, f := range cfg.MergeFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("bench: --merge: %w", err)
			}
			var r benchResult
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("bench: --merge %s: %w", f, err)
			}
			parts = append(parts, r)
		}
		res = mergeResults(parts)
		res.Processes = len(parts)
	case cfg.Processes > 1:
		res, err = b.runProcesses(ctx, args)
	default:
		res, err = b.run(ctx)
	}
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.print(stdout)
	if res.Converged != nil && !*res.Converged {
		return errors.New("bench: the clients did not converge")
	}
	return nil
}

// ---------------------------------------------------------------------------
// Results.

// latencies summarizes a histogram in milliseconds.
type latencies struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	// Buckets are the histogram's counts by bucket, for merging the parts
	// of a run (--part); omitted otherwise.
	Buckets map[int]int64 `json:"buckets,omitempty"`
}

type benchResult struct {
	Protocol        string           `json:"protocol"`
	Mode            string           `json:"mode"`
	Docs            int              `json:"docs"`
	Clients         int              `json:"clients_per_doc"`
	Rate            float64          `json:"rate,omitempty"`
	Presence        bool             `json:"presence,omitempty"`
	Seconds         float64          `json:"seconds"`
	Edits           int64            `json:"edits"`
	Committed       int64            `json:"committed_ops"`
	OpsPerSec       float64          `json:"committed_ops_per_sec"`
	Delivered       int64            `json:"delivered_msgs"`
	DeliveredPerSec float64          `json:"delivered_msgs_per_sec"`
	Ack             latencies        `json:"submit_to_ack"`
	Seen            latencies        `json:"submit_to_seen"`
	Errors          map[string]int64 `json:"errors"`
	Retried         map[string]int64 `json:"resent_after_refusal,omitempty"`
	ServerCPU       *float64         `json:"server_cpu_percent,omitempty"`
	ServerRSSMB     *float64         `json:"server_rss_mb,omitempty"`
	ServerPeakRSSMB *float64         `json:"server_peak_rss_mb,omitempty"`
	Converged       *bool            `json:"converged,omitempty"`
	LostConnections int              `json:"lost_connections,omitempty"`
	BenchCPU        float64          `json:"load_generator_cpu_percent"`
	// BenchCPUPerMsg is the load generator's CPU time per message it
	// received (deliveries and acks), in microseconds: what it costs.
	BenchCPUPerMsg float64 `json:"load_generator_us_per_msg,omitempty"`
	// GeneratorBound: a process of the load generator passed
	// generatorBound (with --processes, BenchCPU is their sum).
	GeneratorBound  bool          `json:"load_generator_bound,omitempty"`
	Processes       int           `json:"processes,omitempty"`
	Workers         int           `json:"workers,omitempty"`
	ConvergeNote    string        `json:"converge_note,omitempty"`
	Steps           []benchResult `json:"ramp_steps,omitempty"`
	RampLimit       int           `json:"ramp_authors_at_bound,omitempty"`
	Connections     int           `json:"connections,omitempty"`
	KBPerConnection *float64      `json:"server_kb_per_connection,omitempty"`
	TraceCheck      string        `json:"trace_check,omitempty"`
}

func (r *benchResult) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s, %s loop\t%d document(s) × %d client(s)", r.Protocol, r.Mode, r.Docs, r.Clients)
	if r.Mode != "closed" && r.Rate > 0 {
		fmt.Fprintf(tw, " at %g/s each", r.Rate)
	}
	fmt.Fprintf(tw, ", %.1f s\n", r.Seconds)
	if r.Mode == "idle" {
		fmt.Fprintf(tw, "connections\t%d\n", r.Connections)
		if r.KBPerConnection != nil {
			fmt.Fprintf(tw, "server memory per connection\t%.1f kB\n", *r.KBPerConnection)
		}
	} else {
		fmt.Fprintf(tw, "committed\t%d ops (%.0f/s) from %d edits\n", r.Committed, r.OpsPerSec, r.Edits)
		fmt.Fprintf(tw, "delivered to others\t%d msgs (%.0f/s)\n", r.Delivered, r.DeliveredPerSec)
		fmt.Fprintf(tw, "submit→ack ms\tp50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.Ack.P50, r.Ack.P90, r.Ack.P99, r.Ack.Max)
		fmt.Fprintf(tw, "submit→seen ms\tp50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.Seen.P50, r.Seen.P90, r.Seen.P99, r.Seen.Max)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(tw, "errors\tnone\n")
	} else {
		codes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%s %d", c, r.Errors[c]))
		}
		fmt.Fprintf(tw, "errors\t%s\n", strings.Join(parts, ", "))
	}
	if n := r.Retried[collab.CodeRateLimited]; n > 0 {
		fmt.Fprintf(tw, "rate limited\t%d ops refused with rate_limited and resent (same seq, after the server's hint)\n", n)
		if r.Mode == "closed" || r.Mode == "trace" {
			fmt.Fprintf(tw, "bounded by\tthe server's per-connection budget (its abuse limit), not the server: start it with --client-rate 1e6 to measure the server\n")
		}
	}
	if n := r.Retried[collab.CodeStorageFull]; n > 0 {
		fmt.Fprintf(tw, "storage full\t%d ops refused with storage_full and resent: the server's disk is nearly full\n", n)
	}
	if r.ServerCPU != nil {
		fmt.Fprintf(tw, "server\tCPU %.0f%%, RSS %.0f MB (peak %.0f MB)\n", *r.ServerCPU, *r.ServerRSSMB, *r.ServerPeakRSSMB)
	}
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "  %d authors/doc\t%.0f ops/s, ack p99 %.2f ms, seen p99 %.2f ms\n", s.Clients, s.OpsPerSec, s.Ack.P99, s.Seen.P99)
	}
	if r.Mode == "ramp" {
		if r.RampLimit > 0 {
			fmt.Fprintf(tw, "ramp\tp99 passed the bound at %d authors per document\n", r.RampLimit)
		} else {
			fmt.Fprintf(tw, "ramp\tp99 stayed within the bound up to %d authors per document\n", r.Steps[len(r.Steps)-1].Clients)
		}
	}
	if r.TraceCheck != "" {
		fmt.Fprintf(tw, "trace\t%s\n", r.TraceCheck)
	}
	if r.BenchCPU > 0 {
		fmt.Fprintf(tw, "load generator\tCPU %.0f%%, %.2f µs a message received", r.BenchCPU, r.BenchCPUPerMsg)
		switch {
		case r.Workers > 0:
			fmt.Fprintf(tw, " (%d processes on %d worker%s)", r.Processes, r.Workers, map[bool]string{true: "s"}[r.Workers > 1])
		case r.Processes > 1:
			fmt.Fprintf(tw, " (%d processes)", r.Processes)
		}
		if r.GeneratorBound || r.BenchCPU > generatorBound {
			fmt.Fprintf(tw, ": it was the bottleneck, not the server (run it on more cores, or fewer clients)")
		}
		fmt.Fprintln(tw)
	}
	if r.LostConnections > 0 {
		fmt.Fprintf(tw, "lost	%d connections closed during the run (the server closes readers that fall 4,096 messages behind: 4001)\n", r.LostConnections)
	}
	if r.Converged != nil {
		verdict := "yes: every client's text equals the server's"
		if r.LostConnections > 0 {
			verdict = "yes: every connected client's text equals the server's"
		}
		if !*r.Converged {
			verdict = "NO: " + r.ConvergeNote
		}
		fmt.Fprintf(tw, "converged\t%s\n", verdict)
	}
	tw.Flush()
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets (16 per power of two: ±3%),
// nanoseconds.

type histogram struct {
	mu     sync.Mutex
	counts [64 * 16]int64
	n      int64
	max    int64
}

func bucketOf(ns int64) int {
	if ns < 16 {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) - 1 // 2^e <= ns
	return (e-3)*16 + int((ns>>(e-4))&15)
}

func bucketValue(b int) int64 {
	if b < 16 {
		return int64(b)
	}
	e := b/16 + 3
	return (1<<e | int64(b%16)<<(e-4)) + (1<<(e-4))/2
}

func (h *histogram) reset() {
	h.mu.Lock()
	h.counts, h.n, h.max = [64 * 16]int64{}, 0, 0
	h.mu.Unlock()
}

func (h *histogram) add(d time.Duration) {
	ns := int64(d)
	h.mu.Lock()
	h.counts[bucketOf(ns)]++
	h.n++
	h.max = max(h.max, ns)
	h.mu.Unlock()
}

func (h *histogram) summary(withBuckets bool) latencies {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := latencies{Count: h.n, Max: float64(h.max) / 1e6}
	if withBuckets {
		l.Buckets = map[int]int64{}
		for b, c := range h.counts {
			if c > 0 {
				l.Buckets[b] = c
			}
		}
	}
	for _, q := range []struct {
		p   float64
		out *float64
	}{{0.5, &l.P50}, {0.9, &l.P90}, {0.99, &l.P99}} {
		want := int64(math.Ceil(q.p * float64(h.n)))
		var seen int64
		for b, c := range h.counts {
			if seen += c; c > 0 && seen >= want {
				*q.out = float64(min(bucketValue(b), h.max)) / 1e6
				break
			}
		}
	}
	return l
}

// generatorBound is the load generator's CPU (percent of one core, per
// process) past which it, not the server, is taken to bound a run.
const generatorBound = 90

// ---------------------------------------------------------------------------
// The run.

type bench struct {
	cfg    benchConfig
	stderr io.Writer
	http   http.Client

	ack, seen   histogram
	edits       atomic.Int64
	committed   atomic.Int64
	delivered   atomic.Int64
	errMu       sync.Mutex
	errs        map[string]int64
	refusals    map[string]int64 // rate_limited and storage_full answers (ops and selections)
	retried     map[string]int64 // of those, ops the client sends again (client.Options.OnRetry)
	sentAt      sync.Map         // opKey → time.Time: when an op was sent, for submit→seen
	traceResult string
}

type opKey struct {
	src string
	seq uint64
}

// errorLabel is an error as a short label to count by: a server's code,
// a close code, or the kind of network failure (never an address).
func errorLabel(err error) string {
	var se *client.ServerError
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.As(err, &ce):
		return fmt.Sprintf("connection closed %d", ce.Code)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"), strings.Contains(err.Error(), "closed"):
		return "connection lost"
	}
	return "client error"
}

func (b *bench) countError(code string) {
	b.errMu.Lock()
	if code == collab.CodeRateLimited || code == collab.CodeStorageFull {
		// Counted apart: an op refused for now is sent again (OnRetry).
		b.refusals = count(b.refusals, code)
	} else {
		b.errs = count(b.errs, code)
	}
	b.errMu.Unlock()
}

func (b *bench) countRetry(code string) {
	b.errMu.Lock()
	b.retried = count(b.retried, code)
	b.errMu.Unlock()
}

func count(m map[string]int64, key string) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[key]++
	return m
}

// editor is one benchmark client: a connection and its bookkeeping.
type benchClient interface {
	edit(rng *rand.Rand) error
	synced(ctx context.Context) error
	lost() error // why the connection ended, nil while it is up
	text() string
	rev() int64
	close()
}

// benchTarget is the server a run speaks to: how a client connects, and
// the document as the server holds it (for the convergence check).
type benchTarget struct {
	dial func(ctx context.Context, id string, i int) (benchClient, error)
	head func(ctx context.Context, id string) (text string, rev int64, err error)
}

// tandemTarget speaks Tandem's protocol (replaying tr, if any).
func (b *bench) tandemTarget(tr *trace) benchTarget {
	return benchTarget{
		dial: func(ctx context.Context, id string, i int) (benchClient, error) {
			if tr == nil && b.cfg.Full >= 0 && i >= b.cfg.Full {
				return b.dialTypist(ctx, id, i)
			}
			return b.dialTandem(ctx, id, i, tr)
		},
		head: func(ctx context.Context, id string) (string, int64, error) {
			// Every node must say the same.
			var first struct {
				Text string
				Rev  int64
			}
			for i, server := range b.servers() {
				var doc struct {
					Text string
					Rev  int64
				}
				if err := b.apiAt(ctx, server, http.MethodGet, "/api/docs/"+id, nil, &doc); err != nil {
					return "", 0, err
				}
				if i == 0 {
					first = doc
				} else if doc.Rev != first.Rev || doc.Text != first.Text {
					return "", 0, fmt.Errorf("%s is at revision %d, %s at %d", server, doc.Rev, b.servers()[0], first.Rev)
				}
			}
			return first.Text, first.Rev, nil
		},
	}
}

func (b *bench) run(ctx context.Context) (*benchResult, error) {
	var tr *trace
	if b.cfg.Mode == "trace" {
		var err error
		if tr, err = loadTrace(b.cfg.Trace); err != nil {
			return nil, err
		}
	}
	var ids []string
	var err error
	target := b.tandemTarget(tr)
	if b.cfg.Protocol == "sharedb" {
		ids, err = b.shareDBDocuments(ctx)
		target = b.shareDBTarget()
	} else {
		ids, err = b.documents(ctx)
	}
	if err != nil {
		return nil, err
	}
	switch b.cfg.Mode {
	case "idle":
		return b.runIdle(ctx, ids)
	case "ramp":
		return b.runRamp(ctx, ids, target)
	}
	var eds []benchClient
	defer func() {
		for _, e := range eds {
			e.close()
		}
	}()
	for _, id := range ids {
		for i := range b.cfg.Clients {
			if i%b.cfg.of != b.cfg.part {
				continue // another part's (--part)
			}
			e, err := target.dial(ctx, id, i)
			if err != nil {
				return nil, err
			}
			eds = append(eds, e)
		}
	}
	res := b.drive(ctx, eds, b.cfg.Duration, b.cfg.Ops)
	res.Docs, res.Clients = len(ids), b.cfg.Clients
	b.converge(ctx, res, ids, eds, target.head)
	if tr != nil {
		b.checkTrace(ctx, res, ids, eds, tr)
	}
	return res, nil
}

// documents creates the run's documents (or takes --doc-ids) and returns
// their ids.
func (b *bench) documents(ctx context.Context) ([]string, error) {
	if b.cfg.DocIDs == "-" {
		// From standard input: thousands of ids are past what one
		// command-line argument may hold (128 kB on Linux).
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("bench: --doc-ids -: %w", err)
		}
		return strings.Split(strings.TrimSpace(string(data)), ","), nil
	}
	if b.cfg.DocIDs != "" {
		return strings.Split(b.cfg.DocIDs, ","), nil
	}
	text := b.cfg.InitialText
	if b.cfg.Mode == "trace" {
		// Each client replays the trace in its own section, after a
		// separator of its own (U+2063, which no trace holds).
		text = strings.Repeat("\u2063", b.cfg.Clients)
	}
	ids := make([]string, b.cfg.Docs)
	for i := range ids {
		req := map[string]string{"title": fmt.Sprintf("bench %d", i), "text": text}
		if b.cfg.DocType == "rich" {
			req["type"] = "rich"
		}
		body, _ := json.Marshal(req)
		var out struct{ ID string }
		if err := b.api(ctx, http.MethodPost, "/api/docs", body, &out); err != nil {
			return nil, fmt.Errorf("bench: create document %d: %w", i, err)
		}
		ids[i] = out.ID
	}
	return ids, nil
}

// servers are the --server URLs (the nodes of a cluster, or one server).
func (b *bench) servers() []string {
	var out []string
	for u := range strings.SplitSeq(b.cfg.Server, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (b *bench) api(ctx context.Context, method, path string, body []byte, out any) error {
	return b.apiAt(ctx, b.servers()[0], method, path, body, out)
}

func (b *bench) apiAt(ctx context.Context, server, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.cfg.Token)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

// tandemEditor drives one client.Doc.
type tandemEditor struct {
	b        *bench
	doc      *client.Doc
	anchor   *client.Anchor // trace mode: the start of this client's section
	trace    *trace
	next     int // the next trace edit
	presence bool
	deletes  float64
	rich     bool       // a rich-text document: Quill Deltas
	format   rich.Attrs // rich: the format it types in

	mu   sync.Mutex
	sent map[uint64]time.Time
}

func (b *bench) dialTandem(ctx context.Context, id string, i int, tr *trace) (*tandemEditor, error) {
	e := &tandemEditor{b: b, trace: tr, presence: b.cfg.Presence, deletes: b.cfg.DeleteRatio, sent: map[uint64]time.Time{}}
	var src atomic.Pointer[string]
	opts := client.Options{
		Token: b.cfg.Token, Name: fmt.Sprintf("bench %d", i),
		OnSend: func(seq uint64) {
			now := time.Now()
			e.mu.Lock()
			e.sent[seq] = now
			e.mu.Unlock()
			if s := src.Load(); s != nil {
				b.sentAt.Store(opKey{*s, seq}, now)
			}
		},
		OnAck: func(seq uint64, rev int64) {
			e.mu.Lock()
			at, ok := e.sent[seq]
			delete(e.sent, seq)
			e.mu.Unlock()
			if ok {
				b.ack.add(time.Since(at))
			}
			b.committed.Add(1)
		},
		OnRemote: func(s string, seq uint64, rev int64) {
			b.delivered.Add(1)
			if at, ok := b.sentAt.Load(opKey{s, seq}); ok {
				b.seen.add(time.Since(at.(time.Time)))
			}
		},
		OnError: func(code, _ string) { b.countError(code) },
		OnRetry: func(code string, _ uint64, _ time.Duration) { b.countRetry(code) },
	}
	servers := b.servers()
	doc, err := client.Dial(ctx, servers[i%len(servers)], id, opts)
	if err != nil {
		return nil, fmt.Errorf("bench: connect client %d to %s: %w", i, id, err)
	}
	s := doc.Source()
	src.Store(&s)
	e.doc = doc
	e.rich = doc.Type() == "rich"
	if tr != nil {
		e.anchor = doc.Anchor(i + 1) // after separator i
	}
	return e, nil
}

func (e *tandemEditor) edit(rng *rand.Rand) error {
	e.b.edits.Add(1)
	if e.trace != nil {
		if e.next >= len(e.trace.patches) {
			return errTraceDone
		}
		p := e.trace.patches[e.next]
		e.next++
		return e.doc.EditAt(e.anchor, func(start int) ot.Op { return p.op(start) })
	}
	n := e.doc.Len()
	if e.rich {
		return e.editRich(rng, n)
	}
	var op ot.Op
	var caret int
	if n > 0 && rng.Float64() < e.deletes {
		pos := rng.IntN(n)
		op, caret = client.Delete(pos, 1), pos
	} else {
		pos := rng.IntN(n + 1)
		op, caret = client.Insert(pos, string(rune('a'+rng.IntN(26)))), pos+1
	}
	if err := e.doc.Edit(op); err != nil {
		return err
	}
	if e.presence {
		return e.doc.SetSelection([]ot.Selection{{Anchor: caret, Head: caret}})
	}
	return nil
}

// editRich makes the rich typists' edits (see typist.richOp) with the Go
// client: a backspace, a format change, or a letter in the current format.
func (e *tandemEditor) editRich(rng *rand.Rand, n int) error {
	var op rich.Delta
	caret := 0
	retain := func(k int) {
		if k > 0 {
			op = append(op, rich.Retain(k, nil))
		}
	}
	switch {
	case n > 0 && rng.Float64() < e.deletes:
		pos := rng.IntN(n)
		retain(pos)
		op, caret = append(op, rich.Delete(1)), pos
	case n > 1 && rng.IntN(8) == 0:
		pos := rng.IntN(n - 1)
		k := 1 + rng.IntN(min(8, n-pos))
		retain(pos)
		op, caret = append(op, rich.Retain(k, rich.MakeAttrs(rich.Attr{Key: "italic", Value: rich.Bool(rng.IntN(2) == 0)}))), pos+k
	default:
		pos := rng.IntN(n + 1)
		if rng.IntN(10) == 0 {
			e.format = richAttrs[rng.IntN(len(richAttrs))]
		}
		retain(pos)
		op, caret = append(op, rich.Insert(string(rune('a'+rng.IntN(26))), e.format)), pos+1
	}
	if err := e.doc.EditRich(op); err != nil {
		return err
	}
	if e.presence {
		return e.doc.SetSelection([]ot.Selection{{Anchor: caret, Head: caret}})
	}
	return nil
}

// richAttrs are richFormats as attributes (the Go client's edits).
var richAttrs = []rich.Attrs{nil, nil,
	rich.MakeAttrs(rich.Attr{Key: "bold", Value: rich.Bool(true)}),
	rich.MakeAttrs(rich.Attr{Key: "italic", Value: rich.Bool(true)}),
	rich.MakeAttrs(rich.Attr{Key: "link", Value: rich.String("https://example.com/a")}),
}

var errTraceDone = errors.New("trace replayed")

func (e *tandemEditor) synced(ctx context.Context) error { return e.doc.Synced(ctx) }
func (e *tandemEditor) lost() error                      { return e.doc.Err() }
func (e *tandemEditor) text() string                     { return e.doc.Text() }
func (e *tandemEditor) rev() int64                       { return e.doc.Rev() }
func (e *tandemEditor) close()                           { e.doc.Close() }

// drive runs the editors in the configured loop for d (or until ops are
// committed) and returns what was measured.
func (b *bench) drive(ctx context.Context, eds []benchClient, d time.Duration, ops int64) *benchResult {
	// (Clients of a previous ramp step are still connected: their last
	// acks may come in now.)
	b.ack.reset()
	b.seen.reset()
	b.edits.Store(0)
	b.committed.Store(0)
	b.delivered.Store(0)
	b.errMu.Lock()
	b.errs, b.refusals, b.retried = nil, nil, nil
	b.errMu.Unlock()
	if b.cfg.StartAt > 0 {
		// A part of a run: every part starts typing at once.
		select {
		case <-time.After(time.Until(time.Unix(0, b.cfg.StartAt))):
		case <-ctx.Done():
		}
	}
	cpu0, _ := procCPU(b.cfg.PID)
	self0, _ := procCPU(os.Getpid())

	runCtx, stop := context.WithTimeout(ctx, d)
	defer stop()
	if ops > 0 {
		// --ops: run until that many are committed (--duration still bounds it).
		go func() {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for runCtx.Err() == nil {
				if b.committed.Load() >= ops {
					stop()
				}
				<-t.C
			}
		}()
	}
	start := time.Now()
	progressDone := make(chan struct{})
	if !b.cfg.Quiet && !b.cfg.JSON {
		go b.progress(runCtx, start, progressDone)
	} else {
		close(progressDone)
	}
	var wg sync.WaitGroup
	for i, e := range eds {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(b.cfg.Seed, uint64(i)))
			var tick *time.Ticker
			if b.cfg.Mode != "closed" && b.cfg.Rate > 0 {
				// Start each client at a random moment of its period, so
				// the load is spread.
				period := time.Duration(float64(time.Second) / b.cfg.Rate)
				select {
				case <-time.After(time.Duration(rng.Int64N(int64(period)))):
				case <-runCtx.Done():
					return
				}
				tick = time.NewTicker(period)
				defer tick.Stop()
			}
			for runCtx.Err() == nil {
				if err := e.edit(rng); err != nil {
					if !errors.Is(err, errTraceDone) {
						b.countError(errorLabel(err))
					}
					return
				}
				if tick == nil {
					if err := e.synced(runCtx); err != nil && runCtx.Err() == nil {
						b.countError(errorLabel(err))
						return
					}
					continue
				}
				select {
				case <-tick.C:
				case <-runCtx.Done():
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	// The processes' CPU over the typing only (not the wait below).
	cpu1, haveCPU := procCPU(b.cfg.PID)
	self1, haveSelf := procCPU(os.Getpid())
	<-progressDone
	// What was typed is still acknowledged; it counts, not its time.
	// (A client whose connection was lost was counted when it was.)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for _, e := range eds {
		if e.lost() == nil {
			if err := e.synced(wctx); err != nil {
				b.countError("unacknowledged at the end: " + errorLabel(err))
			}
		}
	}
	cancel()

	res := &benchResult{Protocol: b.cfg.Protocol, Mode: b.cfg.Mode, Rate: b.cfg.Rate, Presence: b.cfg.Presence, Seconds: elapsed.Seconds(),
		Edits: b.edits.Load(), Committed: b.committed.Load(), Delivered: b.delivered.Load(),
		Ack: b.ack.summary(b.cfg.Part != ""), Seen: b.seen.summary(b.cfg.Part != "")}
	if res.Mode == "closed" {
		res.Rate = 0
	}
	res.OpsPerSec = float64(res.Committed) / elapsed.Seconds()
	res.DeliveredPerSec = float64(res.Delivered) / elapsed.Seconds()
	b.errMu.Lock()
	res.Errors, res.Retried = b.errs, b.retried
	for code, n := range b.refusals {
		// Refusals nobody sends again (selections: the next one replaces
		// them) are errors like any other.
		if n -= b.retried[code]; n > 0 {
			res.Errors = count(res.Errors, code)
			res.Errors[code] = n
		}
	}
	b.errMu.Unlock()
	if haveSelf {
		res.BenchCPU = 100 * (self1 - self0).Seconds() / elapsed.Seconds()
		res.GeneratorBound = res.BenchCPU > generatorBound
		if n := res.Delivered + res.Committed; n > 0 {
			res.BenchCPUPerMsg = float64((self1 - self0).Microseconds()) / float64(n)
		}
	}
	if haveCPU {
		pct := 100 * (cpu1 - cpu0).Seconds() / elapsed.Seconds()
		res.ServerCPU = &pct
	}
	if rss, peak, ok := procRSS(b.cfg.PID); ok {
		res.ServerRSSMB, res.ServerPeakRSSMB = &rss, &peak
	}
	return res
}

func (b *bench) progress(ctx context.Context, start time.Time, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(b.stderr, "\r\033[K")
			return
		case <-t.C:
		}
		n := b.committed.Load()
		l := b.ack.summary(false)
		fmt.Fprintf(b.stderr, "\r\033[K%4.0fs  %d ops committed (%d/s)  ack p99 %.1f ms  delivered %d",
			time.Since(start).Seconds(), n, n-last, l.P99, b.delivered.Load())
		last = n
	}
}

// converge waits until every client has seen the server's head and
// compares its text with the server's.
func (b *bench) converge(ctx context.Context, res *benchResult, ids []string, eds []benchClient,
	head func(context.Context, string) (string, int64, error)) {
	ok, lost := true, 0
	per := len(eds) / len(ids)
	defer func() { res.LostConnections = lost }()
	for d, id := range ids {
		deadline := time.Now().Add(30 * time.Second)
		for {
			text, rev, err := head(ctx, id)
			if err != nil {
				ok, res.ConvergeNote = false, err.Error()
				break
			}
			// A client past the head read: other processes' last ops (a
			// run split with --processes or --part) were still coming in.
			// Read it again.
			ahead, docLost := false, 0
			for _, e := range eds[d*per : (d+1)*per] {
				if e.lost() != nil {
					docLost++
					continue
				}
				for e.rev() < rev && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if e.rev() > rev {
					ahead = true
					break
				}
				same := e.text() == text
				if t, isTypist := e.(*typist); isTypist {
					same = t.textLength() == utf8.RuneCountInString(text)
				}
				if e.rev() != rev || !same {
					ok = false
					res.ConvergeNote = fmt.Sprintf("document %s: a client at revision %d (%d code points), the server at %d (%d)",
						id, e.rev(), len([]rune(e.text())), rev, len([]rune(text)))
				}
			}
			if ahead && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if ahead {
				ok, res.ConvergeNote = false, fmt.Sprintf("document %s: its head kept moving for 30 s after the run", id)
			}
			lost += docLost
			break
		}
		if !ok {
			break
		}
	}
	res.Converged = &ok
}

// ---------------------------------------------------------------------------
// Idle and ramp.

func (b *bench) runIdle(ctx context.Context, ids []string) (*benchResult, error) {
	before, _, haveRSS := procRSS(b.cfg.PID)
	var eds []*tandemEditor
	defer func() {
		for _, e := range eds {
			e.close()
		}
	}()
	// People join at once, not one after another: --join-concurrency
	// dialers (each waits for its hello before the next connection).
	start := time.Now()
	type job struct {
		id string
		i  int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range max(1, b.cfg.JoinConcurrency) {
		wg.Go(func() {
			for j := range jobs {
				e, err := b.dialTandem(ctx, j.id, j.i, nil)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("after %d connections: %w", len(eds), err)
					}
				} else {
					eds = append(eds, e)
					if !b.cfg.Quiet && !b.cfg.JSON && len(eds)%1000 == 0 {
						fmt.Fprintf(b.stderr, "\r\033[K%d connections", len(eds))
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range b.cfg.Clients {
		for _, id := range ids {
			jobs <- job{id, i}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if !b.cfg.Quiet && !b.cfg.JSON {
		fmt.Fprint(b.stderr, "\r\033[K")
	}
	res := &benchResult{Protocol: "tandem", Mode: "idle", Docs: len(ids), Clients: b.cfg.Clients, Connections: len(eds), Seconds: time.Since(start).Seconds()}
	if haveRSS {
		// Let the server settle (its garbage collector, the first pings).
		time.Sleep(min(b.cfg.Duration, 5*time.Second))
		after, peak, _ := procRSS(b.cfg.PID)
		kb := (after - before) * 1024 / float64(len(eds))
		res.KBPerConnection, res.ServerRSSMB, res.ServerPeakRSSMB = &kb, &after, &peak
	}
	return res, nil
}

func (b *bench) runRamp(ctx context.Context, ids []string, target benchTarget) (*benchResult, error) {
	b.cfg.Mode = "open"
	res := &benchResult{Protocol: b.cfg.Protocol, Mode: "ramp", Docs: len(ids), Rate: b.cfg.Rate}
	var eds []benchClient
	defer func() {
		for _, e := range eds {
			e.close()
		}
	}()
	perDoc := 0
	for n := b.cfg.Clients; n <= b.cfg.RampMax; n += b.cfg.RampStep {
		for ; perDoc < n; perDoc++ {
			for _, id := range ids {
				e, err := target.dial(ctx, id, perDoc)
				if err != nil {
					return nil, err
				}
				eds = append(eds, e)
			}
		}
		step := b.drive(ctx, eds, b.cfg.Duration, 0)
		step.Docs, step.Clients, step.Mode = len(ids), n, "open"
		res.Steps = append(res.Steps, *step)
		if !b.cfg.Quiet && !b.cfg.JSON {
			fmt.Fprintf(b.stderr, "%d authors/doc: %.0f ops/s, ack p99 %.2f ms\n", n, step.OpsPerSec, step.Ack.P99)
		}
		if time.Duration(step.Ack.P99*1e6) > b.cfg.RampP99 || len(step.Errors) > 0 {
			res.RampLimit = n
			break
		}
	}
	last := res.Steps[len(res.Steps)-1]
	res.Clients, res.Seconds, res.Committed, res.OpsPerSec, res.Ack, res.Seen, res.Errors = last.Clients, last.Seconds, last.Committed, last.OpsPerSec, last.Ack, last.Seen, last.Errors
	res.ServerCPU, res.ServerRSSMB, res.ServerPeakRSSMB = last.ServerCPU, last.ServerRSSMB, last.ServerPeakRSSMB
	b.cfg.Mode = "ramp"
	// (Ramp mode's clients are grouped by step, not by document: the
	// convergence check reads them per document.)
	byDoc := make([]benchClient, 0, len(eds))
	for d := range ids {
		for i := d; i < len(eds); i += len(ids) {
			byDoc = append(byDoc, eds[i])
		}
	}
	b.converge(ctx, res, ids, byDoc, target.head)
	return res, nil
}

// ---------------------------------------------------------------------------
// Traces (josephg/editing-traces): {"startContent","endContent","txns":[{"patches":[[pos,del,"ins"]]}]}.

type trace struct {
	start, end string
	patches    []tracePatch // one per transaction (its patches composed)
}

type tracePatch [][3]any // [pos, delete count, inserted text], descending positions

// op is the transaction as an op on the document, its positions offset by
// base (the start of the replaying client's section).
func (p tracePatch) op(base int) ot.Op {
	var op ot.Op
	for _, c := range p {
		pos, del, ins := base+int(c[0].(float64)), int(c[1].(float64)), c[2].(string)
		var one ot.Op
		if pos > 0 {
			one = append(one, ot.Skip(pos))
		}
		if del > 0 {
			one = append(one, ot.Delete(del))
		}
		if ins != "" {
			one = append(one, ot.Insert(ins))
		}
		if del == 0 && ins == "" {
			continue
		}
		if op == nil {
			op = one
			continue
		}
		// Each patch is on the result of the previous ones.
		if c, err := ot.Compose(op, one); err == nil {
			op = c
		}
	}
	return op
}

func loadTrace(path string) (*trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: trace: %w", err)
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("bench: trace %s: %w", path, err)
		}
		r = gz
	}
	var raw struct {
		StartContent string `json:"startContent"`
		EndContent   string `json:"endContent"`
		Txns         []struct {
			Patches tracePatch `json:"patches"`
		} `json:"txns"`
	}
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("bench: trace %s: %w", path, err)
	}
	t := &trace{start: raw.StartContent, end: raw.EndContent}
	for i, tx := range raw.Txns {
		for _, p := range tx.Patches {
			if _, ok := p[0].(float64); !ok {
				return nil, fmt.Errorf("bench: trace %s: transaction %d: a patch %v is not [pos, del, text]", path, i, p)
			}
			if _, ok := p[1].(float64); !ok {
				return nil, fmt.Errorf("bench: trace %s: transaction %d: a patch %v is not [pos, del, text]", path, i, p)
			}
			if _, ok := p[2].(string); !ok {
				return nil, fmt.Errorf("bench: trace %s: transaction %d: a patch %v is not [pos, del, text]", path, i, p)
			}
		}
		if len(tx.Patches) > 0 {
			t.patches = append(t.patches, tx.Patches)
		}
	}
	if t.start != "" {
		return nil, fmt.Errorf("bench: trace %s starts from a non-empty text; only traces from \"\" are supported", path)
	}
	return t, nil
}

// checkTrace: when every client replayed the whole trace, each section
// must hold the trace's end text exactly.
func (b *bench) checkTrace(ctx context.Context, res *benchResult, ids []string, eds []benchClient, tr *trace) {
	for _, e := range eds {
		if te, ok := e.(*tandemEditor); ok && te.next < len(tr.patches) {
			res.TraceCheck = fmt.Sprintf("stopped at edit %d of %d (give a longer --duration to check the end text)", te.next, len(tr.patches))
			return
		}
	}
	want := strings.Repeat("\u2063"+tr.end, b.cfg.Clients)
	for _, id := range ids {
		var doc struct{ Text string }
		if err := b.api(ctx, http.MethodGet, "/api/docs/"+id, nil, &doc); err != nil {
			res.TraceCheck = err.Error()
			return
		}
		if doc.Text != want {
			res.TraceCheck = fmt.Sprintf("document %s does not hold the trace's end text %d times", id, b.cfg.Clients)
			f := false
			res.Converged = &f
			return
		}
	}
	res.TraceCheck = fmt.Sprintf("every section holds the trace's end text (%d edits each)", len(tr.patches))
}

// ---------------------------------------------------------------------------
// The server process (Linux /proc).

func procCPU(pid int) (time.Duration, bool) {
	if pid <= 0 {
		return 0, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command (field 2) may hold spaces: fields count from its ')'.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, true
}

func procRSS(pid int) (rss, peak float64, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		var kb float64
		if v, found := strings.CutPrefix(line, "VmRSS:"); found {
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			rss = kb / 1024
		}
		if v, found := strings.CutPrefix(line, "VmHWM:"); found {
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			peak = kb / 1024
		}
	}
	return rss, peak, rss > 0
}

// Main is the bench command: tandem bench args... (stdout gets the
// report, stderr the progress).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return benchCmd(ctx, args, stdout, stderr)
}

// Result is a run's report, as --json writes it.
type Result = benchResult

// WorkerJob is what a coordinator POSTs to a worker's /run (tandem bench
// --workers).
type WorkerJob = workerJob
