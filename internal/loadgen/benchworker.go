package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Load generation over several machines.
//
// A worker (tandem bench --worker ADDR) waits for a coordinator (tandem
// bench --workers URL,URL,...): the coordinator creates the documents,
// asks each worker for its clock and how many parts it runs, and hands
// each its parts of the run (--part I/N of every document's clients) with
// one start time, in the worker's own clock; each worker runs its parts as
// processes of its own and answers with their results (histograms
// included), which the coordinator merges. The workers' clocks need not be
// in step: the coordinator measures each one's offset from its own, as NTP
// does, over the lowest of a few round trips.
//
// A worker runs loads for whoever holds its key (--worker-key,
// TANDEM_BENCH_KEY; one is made up and printed when none is given), so
// that nobody else can point it at a server. It is a tool for a private
// network: it speaks plain HTTP, and the run's --token travels in the
// request.

// workerHello is a worker's answer to GET /clock.
type workerHello struct {
	Now   int64 `json:"now_unix_nano"`
	Parts int   `json:"parts"` // how many parts of a run it takes (--worker-processes)
}

// workerJob is a coordinator's POST /run: bench flags for one run, and the
// parts of it this worker drives.
type workerJob struct {
	Args    []string `json:"args"`
	Parts   []int    `json:"parts"`
	Of      int      `json:"of"`
	StartAt int64    `json:"start_at_unix_nano"` // in the worker's clock
	DocIDs  []string `json:"doc_ids"`
}

// workerReply is a worker's answer to a job: a result per part, in order.
type workerReply struct {
	Results []benchResult `json:"results"`
}

// maxWorkerJob bounds a job's body (the document ids are most of it).
const maxWorkerJob = 16 << 20

// workerArgs are the flags a part gets from the coordinator's
// configuration: the load's shape, never what reads or writes files on
// the worker or measures a process there.
func (c benchConfig) workerArgs() []string {
	args := []string{
		"--server", c.Server, "--clients", strconv.Itoa(c.Clients), "--mode", c.Mode,
		"--rate", strconv.FormatFloat(c.Rate, 'g', -1, 64), "--duration", c.Duration.String(),
		"--deletes", strconv.FormatFloat(c.DeleteRatio, 'g', -1, 64), "--protocol", c.Protocol, "--type", c.DocType,
		"--seed", strconv.FormatUint(c.Seed, 10), "--full", strconv.Itoa(c.Full),
		"--join-concurrency", strconv.Itoa(c.JoinConcurrency),
	}
	if c.Token != "" {
		args = append(args, "--token", c.Token)
	}
	if c.Presence {
		args = append(args, "--presence")
	}
	return args
}

// checkWorkerArgs refuses a job's flags unless they are a part's load and
// nothing else (workerArgs): a worker runs no file, profile or process
// measurement for a coordinator.
func checkWorkerArgs(args []string) error {
	allowed := []string{"server", "clients", "mode", "rate", "duration", "deletes", "protocol", "type", "seed", "full", "join-concurrency", "token", "presence"}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("flag --%s is not a worker's to take", name)
		}
	}
	c, err := parseBenchFlags(args, io.Discard)
	if err != nil {
		return err
	}
	if c.Mode != "open" && c.Mode != "closed" {
		return errors.New("workers drive the open and closed modes")
	}
	return nil
}

// benchWorker serves a coordinator's runs, one at a time.
type benchWorker struct {
	key    string
	parts  int
	exe    string
	stderr io.Writer

	mu sync.Mutex // held for a run
}

func (w *benchWorker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(auth), []byte(w.key)) != 1 {
		http.Error(rw, "a worker's key is needed (Authorization: Bearer KEY)", http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/clock":
		writeJSON(rw, workerHello{Now: time.Now().UnixNano(), Parts: w.parts})
	case r.Method == http.MethodPost && r.URL.Path == "/run":
		w.run(rw, r)
	default:
		http.Error(rw, "GET /clock or POST /run", http.StatusNotFound)
	}
}

func (w *benchWorker) run(rw http.ResponseWriter, r *http.Request) {
	var job workerJob
	if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxWorkerJob)).Decode(&job); err != nil {
		http.Error(rw, "bad job: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := checkWorkerArgs(job.Args); err != nil {
		http.Error(rw, "bad job: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(job.Parts) == 0 || job.Of < 1 || len(job.DocIDs) == 0 || slices.ContainsFunc(job.Parts, func(p int) bool { return p < 0 || p >= job.Of }) {
		http.Error(rw, "bad job: parts 0 <= I < of, and documents, are needed", http.StatusBadRequest)
		return
	}
	if !w.mu.TryLock() {
		http.Error(rw, "busy with another run", http.StatusConflict)
		return
	}
	defer w.mu.Unlock()
	fmt.Fprintf(w.stderr, "bench worker: parts %v of %d, %d documents, from %s\n", job.Parts, job.Of, len(job.DocIDs), r.RemoteAddr)
	// The run ends with the coordinator's request: its processes are
	// killed if it goes.
	results, err := runParts(r.Context(), w.exe, job.Args, job.Parts, job.Of, job.StartAt, job.DocIDs)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(rw, workerReply{Results: results})
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(v)
}

// runParts runs parts of a run as processes of exe (this program), each
// with args and its --part, all from start, and returns their results in
// order.
func runParts(ctx context.Context, exe string, args []string, parts []int, of int, start int64, ids []string) ([]benchResult, error) {
	outs := make([][]byte, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() {
			// Later flags win: the same run, this process's part of it.
			cargs := append([]string{"bench"}, args...)
			cargs = append(cargs, "--processes", "1", "--part", fmt.Sprintf("%d/%d", p, of),
				"--start-at", strconv.FormatInt(start, 10), "--doc-ids", "-", "--json", "--quiet")
			cmd := exec.CommandContext(ctx, exe, cargs...)
			cmd.Stdin = strings.NewReader(strings.Join(ids, ","))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			outs[i], errs[i] = cmd.Output()
			if errs[i] != nil {
				errs[i] = fmt.Errorf("bench: part %d of %d: %w: %s", p, of, errs[i], bytes.TrimSpace(stderr.Bytes()))
			}
		})
	}
	wg.Wait()
	results := make([]benchResult, len(parts))
	for i, out := range outs {
		if errs[i] != nil && len(out) == 0 {
			return nil, errs[i]
		}
		if err := json.Unmarshal(out, &results[i]); err != nil {
			return nil, fmt.Errorf("bench: part %d of %d: %w (%v)", parts[i], of, err, errs[i])
		}
	}
	return results, nil
}

// serveWorker is tandem bench --worker ADDR: it serves until ctx ends.
func serveWorker(ctx context.Context, cfg benchConfig, stderr io.Writer) error {
	key := cfg.WorkerKey
	if key == "" {
		b := make([]byte, 16)
		rand.Read(b)
		key = hex.EncodeToString(b)
		fmt.Fprintf(stderr, "bench worker: no --worker-key (TANDEM_BENCH_KEY): this run's key is %s\n", key)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: --worker: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Worker)
	if err != nil {
		return fmt.Errorf("bench: --worker: %w", err)
	}
	srv := &http.Server{
		Handler:           &benchWorker{key: key, parts: cfg.WorkerProcesses, exe: exe, stderr: stderr},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stderr, "bench worker: listening on http://%s, %d part(s) a run\n", ln.Addr(), cfg.WorkerProcesses)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bench: --worker: %w", err)
	}
	return nil
}

// runWorkers is tandem bench --workers URL,...: the coordinator. It creates
// the documents, gives each worker as many parts as it asks for, starts
// them all at one moment (each told it in its own clock), measures the
// server over the window (--pid, when the server runs here), and merges
// the parts' results.
func (b *bench) runWorkers(ctx context.Context) (*benchResult, error) {
	cfg := b.cfg
	if cfg.Protocol != "tandem" || (cfg.Mode != "open" && cfg.Mode != "closed") {
		return nil, errors.New("bench: --workers drives Tandem servers in the open and closed modes")
	}
	if cfg.Ops > 0 {
		return nil, errors.New("bench: --ops is not split over workers: use --duration")
	}
	var urls []string
	for u := range strings.SplitSeq(cfg.Workers, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			urls = append(urls, u)
		}
	}
	type worker struct {
		url    string
		offset time.Duration // its clock minus ours
		parts  []int
	}
	workers := make([]worker, len(urls))
	of := 0
	for i, u := range urls {
		hello, offset, err := b.workerClock(ctx, u)
		if err != nil {
			return nil, err
		}
		workers[i] = worker{url: u, offset: offset}
		for range max(hello.Parts, 1) {
			workers[i].parts = append(workers[i].parts, of)
			of++
		}
		if !cfg.Quiet {
			fmt.Fprintf(b.stderr, "worker %s: %d part(s), clock %+.1f ms from ours\n", u, len(workers[i].parts), float64(offset)/1e6)
		}
	}
	ids, err := b.documents(ctx)
	if err != nil {
		return nil, err
	}
	// Every part has connected its clients well before this.
	start := time.Now().Add(time.Duration(3+cfg.Docs*cfg.Clients/(200*of)) * time.Second)
	args := cfg.workerArgs()
	results := make([][]benchResult, len(workers))
	errs := make([]error, len(workers))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			job := workerJob{Args: args, Parts: w.parts, Of: of, StartAt: start.Add(w.offset).UnixNano(), DocIDs: ids}
			var reply workerReply
			if errs[i] = b.workerCall(runCtx, w.url, http.MethodPost, "/run", job, &reply); errs[i] != nil {
				cancel() // the run is lost: the others stop too
				return
			}
			results[i] = reply.Results
		})
	}
	// The server over the typing window, measured here.
	var serverCPU *float64
	var rss, peak float64
	haveRSS := false
	select {
	case <-time.After(time.Until(start)):
		cpu0, ok0 := procCPU(cfg.PID)
		select {
		case <-time.After(cfg.Duration):
		case <-runCtx.Done():
		}
		if cpu1, ok1 := procCPU(cfg.PID); ok0 && ok1 {
			pct := 100 * (cpu1 - cpu0).Seconds() / cfg.Duration.Seconds()
			serverCPU = &pct
		}
		rss, peak, haveRSS = procRSS(cfg.PID)
	case <-runCtx.Done():
	}
	wg.Wait()
	var parts []benchResult
	for i, w := range workers {
		if errs[i] != nil {
			return nil, fmt.Errorf("bench: worker %s: %w", w.url, errs[i])
		}
		if len(results[i]) != len(w.parts) {
			return nil, fmt.Errorf("bench: worker %s answered %d results for %d parts", w.url, len(results[i]), len(w.parts))
		}
		parts = append(parts, results[i]...)
	}
	res := mergeResults(parts)
	res.Docs, res.Clients, res.Processes, res.Workers = len(ids), cfg.Clients, of, len(workers)
	res.ServerCPU = serverCPU
	if haveRSS {
		res.ServerRSSMB, res.ServerPeakRSSMB = &rss, &peak
	}
	return res, nil
}

// workerClock asks a worker for its clock a few times and keeps the answer
// with the shortest round trip: the worker read its clock about halfway
// through it.
func (b *bench) workerClock(ctx context.Context, url string) (workerHello, time.Duration, error) {
	var best workerHello
	var offset time.Duration
	bestRTT := time.Duration(-1)
	for range 5 {
		var h workerHello
		t0 := time.Now()
		if err := b.workerCall(ctx, url, http.MethodGet, "/clock", nil, &h); err != nil {
			return h, 0, fmt.Errorf("bench: worker %s: %w", url, err)
		}
		rtt := time.Since(t0)
		if bestRTT < 0 || rtt < bestRTT {
			bestRTT, best = rtt, h
			offset = time.Unix(0, h.Now).Sub(t0.Add(rtt / 2))
		}
	}
	return best, offset, nil
}

func (b *bench) workerCall(ctx context.Context, url, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.cfg.WorkerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
