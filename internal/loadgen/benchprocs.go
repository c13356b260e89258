package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// runProcesses is tandem bench --processes N: the documents are created
// here, then N processes of this program each drive their share of every
// document's clients (client i in process i mod N) over the same window,
// from a start time they are given, and check their own clients at the
// end; their results are merged here (latency histograms included). One
// process is a core's worth of load generator: on a machine with more
// cores, or with --part on several machines (see -h), the generator stops
// being the limit.
func (b *bench) runProcesses(ctx context.Context, args []string) (*benchResult, error) {
	n := b.cfg.Processes
	if b.cfg.Protocol != "tandem" || (b.cfg.Mode != "open" && b.cfg.Mode != "closed") {
		return nil, errors.New("bench: --processes drives Tandem servers in the open and closed modes")
	}
	ids, err := b.documents(ctx)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: --processes: %w", err)
	}
	// Every process has connected its clients well before this.
	start := time.Now().Add(time.Duration(2+b.cfg.Docs*b.cfg.Clients/(200*n)) * time.Second)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	parts, err := runParts(ctx, exe, args, all, n, start.UnixNano(), ids)
	if err != nil {
		return nil, err
	}
	res := mergeResults(parts)
	res.Docs, res.Clients, res.Processes = len(ids), b.cfg.Clients, n
	return res, nil
}

// mergeResults adds up the processes' results: counts and histograms
// summed, rates over the longest run, the load generator's CPU summed
// (and bound if any process was), the server measured by the first.
func mergeResults(parts []benchResult) *benchResult {
	res := parts[0]
	res.Errors, res.Retried, res.Steps = nil, nil, nil
	var ack, seen histogram
	conv := true
	res.Edits, res.Committed, res.Delivered, res.BenchCPU, res.LostConnections = 0, 0, 0, 0, 0
	var cpuMicros float64
	for _, p := range parts {
		res.Seconds = max(res.Seconds, p.Seconds)
		res.Edits += p.Edits
		res.Committed += p.Committed
		res.Delivered += p.Delivered
		res.LostConnections += p.LostConnections
		res.BenchCPU += p.BenchCPU
		res.GeneratorBound = res.GeneratorBound || p.BenchCPU > generatorBound
		cpuMicros += p.BenchCPUPerMsg * float64(p.Delivered+p.Committed)
		ack.merge(p.Ack)
		seen.merge(p.Seen)
		for k, v := range p.Errors {
			res.Errors = count(res.Errors, k)
			res.Errors[k] += v - 1
		}
		for k, v := range p.Retried {
			res.Retried = count(res.Retried, k)
			res.Retried[k] += v - 1
		}
		if p.Converged != nil && !*p.Converged {
			conv = false
			res.ConvergeNote = p.ConvergeNote
		}
	}
	res.Ack, res.Seen = ack.summary(false), seen.summary(false)
	res.OpsPerSec = float64(res.Committed) / res.Seconds
	res.DeliveredPerSec = float64(res.Delivered) / res.Seconds
	if n := res.Delivered + res.Committed; n > 0 {
		res.BenchCPUPerMsg = cpuMicros / float64(n)
	}
	res.Converged = &conv
	return &res
}

// merge adds a summary's buckets (latencies.Buckets) to h.
func (h *histogram) merge(l latencies) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for b, c := range l.Buckets {
		if b >= 0 && b < len(h.counts) {
			h.counts[b] += c
			h.n += c
		}
	}
	h.max = max(h.max, int64(l.Max*1e6))
}

// parsePart reads --part I/N.
func parsePart(s string) (part, of int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if part, err = strconv.Atoi(a); ok && err == nil {
		of, err = strconv.Atoi(b)
	}
	if !ok || err != nil || of < 1 || part < 0 || part >= of {
		return 0, 0, fmt.Errorf("bench: --part %q: I/N with 0 <= I < N", s)
	}
	return part, of, nil
}
