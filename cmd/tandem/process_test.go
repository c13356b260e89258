//go:build unix

// Process tests: the real tandem binary, started as `tandem serve`, stopped
// with SIGTERM or killed with SIGKILL (unix only), checked over its public
// HTTP and WebSocket API.

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/loadgen"
	"github.com/tandemdocs/tandem/ot"
)

// Environment of the process tests.
const (
	// processRoundsEnv: kills in TestProcessCrash (default 3, about 1.5 s
	// each).
	processRoundsEnv = "TANDEM_PROCESS_ROUNDS"
	// processSeedEnv: the seed for ops and kill delays (default: the clock),
	// logged so that a failure's choices can be replayed (not its timing).
	processSeedEnv = "TANDEM_PROCESS_SEED"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// raceEnabled reports whether this test binary was built with -race; the
// server binary is then built with it too, and a race it reports fails the
// test.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// tandemBinary builds ./cmd/tandem once per test run.
func tandemBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tandem-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tandem")
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=process-test"}
		if raceEnabled() {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// childEnv is the test's environment without TANDEM_* variables, plus env.
// A race-enabled server does not sleep its default second at exit.
func childEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANDEM_") {
			out = append(out, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		out = append(out, "GORACE=atexit_sleep_ms=10")
	}
	return append(out, env...)
}

// server is one running `tandem serve` process.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	dir  string
	URL  string // http://127.0.0.1:PORT
	done chan struct{}
	err  error // cmd.Wait's, once done is closed

	mu     sync.Mutex
	stderr bytes.Buffer
}

// adminToken is the admin token the server made itself in its data
// directory (tandem serve without --admin-token).
func (s *process) adminToken() string {
	s.t.Helper()
	tok, err := readTokenFile(filepath.Join(s.dir, adminTokenFile))
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

var servingRE = regexp.MustCompile(`msg="tandem serving" addr=(https?://\S+)`)

// startServer runs `tandem serve` on dir, listening on a free port of
// 127.0.0.1, and waits until it logs the address it serves.
func startServer(t *testing.T, dir string, extra ...string) *process {
	t.Helper()
	s := launch(t, dir, extra...)
	deadline := time.After(20 * time.Second)
	for s.URL == "" {
		select {
		case <-s.done:
			t.Fatalf("tandem serve exited before serving (%v):\n%s", s.err, s.log())
		case <-deadline:
			t.Fatalf("tandem serve did not log its address in 20s:\n%s", s.log())
		case <-time.After(5 * time.Millisecond):
			if m := servingRE.FindStringSubmatch(s.log()); m != nil {
				s.URL = m[1]
			}
		}
	}
	return s
}

// launch starts the process without waiting for it.
func launch(t *testing.T, dir string, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--shutdown-timeout", "10s"}, extra...)
	cmd := exec.Command(tandemBinary(t), args...)
	cmd.Env = childEnv()
	s := &process{t: t, cmd: cmd, dir: dir, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stderr, cmd.Stdout = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.Write(sc.Bytes())
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		s.err = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.kill()
		if strings.Contains(s.log(), "DATA RACE") {
			t.Errorf("the server reported a data race:\n%s", s.log())
		}
	})
	return s
}

func (s *process) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *process) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("tandem serve (pid %d) still running 10s after SIGKILL", s.cmd.Process.Pid)
	}
}

// exitCode waits up to d for the process to exit and returns its code (-1
// when a signal ended it).
func (s *process) exitCode(d time.Duration) (int, bool) {
	select {
	case <-s.done:
	case <-time.After(d):
		return 0, false
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode(), true
	}
	if s.err != nil {
		return -1, true
	}
	return 0, true
}

// session is what the checks need of one editor after it stopped.
type session struct {
	src     string
	acks    []ackRecord
	lastSeq uint64 // the newest seq sent
	pending uint64 // the seq in flight when the editor stopped (0: none)
}

func (e *editor) session() session {
	return session{src: e.src, acks: e.acks, lastSeq: e.seq, pending: e.inSeq}
}

// checkLog reads a document through the REST API and checks it against
// what the editors saw: the log runs 1..head without a gap and each
// (src, seq) is in it at most once; every acknowledged op is at its
// acknowledged revision, and the text its author had there is the log's
// replay to that revision; a record of an editor that was not acknowledged
// can only be its op in flight when it stopped; an op whose base was the
// revision just before its own went in unchanged; and the text served is
// the log replayed on initial. It returns the document's state.
func checkLog(t *testing.T, base, id, initial string, sessions []session) docState {
	t.Helper()
	d, err := getDoc(base, id)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := getLog(base, id, d.Rev)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != d.Rev {
		t.Fatalf("doc %s: %d records for head %d", id, len(recs), d.Rev)
	}
	type key struct {
		src string
		seq uint64
	}
	seen := map[key]int64{}
	hashes := make([]uint64, len(recs)+1)
	ops := make([]ot.Op, len(recs)+1)
	text := initial
	hashes[0] = textHash(text)
	for i, r := range recs {
		if r.Rev != int64(i+1) {
			t.Fatalf("doc %s: record %d has revision %d: a gap or a duplicate in the log", id, i, r.Rev)
		}
		op, err := ot.ParseJSON(r.Op)
		if err != nil {
			t.Fatalf("doc %s: revision %d: %v", id, r.Rev, err)
		}
		if text, err = ot.Apply(text, op); err != nil {
			t.Fatalf("doc %s: revision %d does not apply: %v", id, r.Rev, err)
		}
		hashes[r.Rev], ops[r.Rev] = textHash(text), op
		if r.Src != "" {
			k := key{r.Src, r.Seq}
			if prev, dup := seen[k]; dup {
				t.Errorf("doc %s: src %s seq %d committed twice, at %d and %d", id, r.Src, r.Seq, prev, r.Rev)
			}
			seen[k] = r.Rev
		}
	}
	if text != d.Text {
		t.Errorf("doc %s: GET text (%d bytes) differs from the log replayed from the initial text (%d bytes)", id, len(d.Text), len(text))
	}
	bySrc := map[string]session{}
	acked := map[key]bool{}
	for _, s := range sessions {
		bySrc[s.src] = s
		for _, a := range s.acks {
			acked[key{a.Src, a.Seq}] = true
			if a.Rev < 1 || a.Rev > d.Rev {
				t.Errorf("doc %s: src %s seq %d acked at %d, the head is %d: an acknowledged op was lost", id, a.Src, a.Seq, a.Rev, d.Rev)
				continue
			}
			r := recs[a.Rev-1]
			if r.Src != a.Src || r.Seq != a.Seq {
				t.Errorf("doc %s: revision %d acked to src %s seq %d holds src %q seq %d", id, a.Rev, a.Src, a.Seq, r.Src, r.Seq)
				continue
			}
			if hashes[a.Rev] != a.Hash {
				t.Errorf("doc %s: the author of revision %d (src %s seq %d) had another text there than the log's replay", id, a.Rev, a.Src, a.Seq)
			}
			if a.Base == a.Rev-1 {
				sent, _ := ot.ParseJSON([]byte(a.Sent))
				want, _ := sent.MarshalJSON()
				got, _ := ops[a.Rev].MarshalJSON()
				if !bytes.Equal(want, got) {
					t.Errorf("doc %s: revision %d, sent on %d without concurrent ops, is %s; sent %s", id, a.Rev, a.Base, got, want)
				}
			}
		}
	}
	for k, rev := range seen {
		s, ours := bySrc[k.src]
		if !ours || acked[k] {
			continue
		}
		if k.seq != s.pending {
			t.Errorf("doc %s: revision %d is src %s seq %d, which was never acknowledged and is not the op in flight (%d; last sent %d)", id, rev, k.src, k.seq, s.pending, s.lastSeq)
		}
	}
	return d
}

// editAll runs editors until stop closes (or each has maxOps acks) and
// returns each one's result.
func editAll(eds []*editor, maxOps, maxLen int, stop <-chan struct{}) []error {
	errs := make([]error, len(eds))
	var wg sync.WaitGroup
	for i, e := range eds {
		wg.Go(func() { errs[i] = e.run(maxOps, maxLen, stop) })
	}
	wg.Wait()
	return errs
}

func isCloseCode(err error, code int) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == code
}

// TestProcessGracefulShutdown: clients edit; SIGTERM; every client gets
// close 1001 after all its acks, the process exits 0 within the shutdown
// timeout, and a restart on the same directory serves every acked op and
// the text the clients saw last.
func TestProcessGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	const nDocs, perDoc = 2, 3
	ids := make([]string, nDocs)
	var eds []*editor
	for i := range ids {
		var err error
		if ids[i], err = createDoc(srv.URL, fmt.Sprint("graceful ", i), initialText); err != nil {
			t.Fatal(err)
		}
		for j := range perDoc {
			e, err := dialEditor(srv.URL, ids[i], "", uint64(i*100+j))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.close)
			eds = append(eds, e)
		}
	}
	results := make(chan []error, 1)
	go func() { results <- editAll(eds, 0, 2000, nil) }()
	time.Sleep(700 * time.Millisecond)
	sent := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, exited := srv.exitCode(10*time.Second + 2*time.Second)
	if !exited {
		t.Fatalf("still running 12s after SIGTERM (shutdown timeout 10s):\n%s", srv.log())
	}
	took := time.Since(sent)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, srv.log())
	}
	if !strings.Contains(srv.log(), `msg=stopped`) {
		t.Errorf("no \"stopped\" in the log:\n%s", srv.log())
	}
	var errs []error
	select {
	case errs = <-results:
	case <-time.After(10 * time.Second):
		t.Fatal("editors still running 10s after the server exited")
	}
	total := 0
	for i, err := range errs {
		total += len(eds[i].acks)
		if !isCloseCode(err, websocket.CloseGoingAway) {
			t.Errorf("editor %d (src %s, %d acks, in flight %d, rejected %q) ended with %v, want close 1001 going away",
				i, eds[i].src, len(eds[i].acks), eds[i].inSeq, eds[i].rejected, err)
		}
	}
	t.Logf("SIGTERM to exit: %v; %d ops acked before it", took, total)
	if total == 0 {
		t.Fatal("no op was acknowledged")
	}

	srv2 := startServer(t, dir)
	for i, id := range ids {
		var sessions []session
		for j := range perDoc {
			sessions = append(sessions, eds[i*perDoc+j].session())
		}
		d := checkLog(t, srv2.URL, id, initialText, sessions)
		// Every op acked or broadcast before the close reached every
		// client: each one's view of the server is the head.
		for j := range perDoc {
			e := eds[i*perDoc+j]
			if e.rev != d.Rev || e.server != d.Text {
				t.Errorf("doc %s: editor %d saw revision %d (%d bytes) before 1001; after restart the head is %d (%d bytes)",
					id, j, e.rev, len(e.server), d.Rev, len(d.Text))
			}
		}
	}
	// And a restarted server is a working one.
	e, err := dialEditor(srv2.URL, ids[0], "", 7)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if err := e.run(3, 2000, nil); err != nil {
		t.Fatalf("editing after restart: %v", err)
	}
}

// TestProcessCrash: clients edit as fast as they can; SIGKILL at a random
// moment; after a restart on the same directory every acked op is at its
// acked revision, the log has no gap, each op is in it once, and the text
// is the log's replay. Rounds reuse the directory and documents.
func TestProcessCrash(t *testing.T) { testProcessCrash(t) }

// TestProcessCrashDurabilityOS: the same with --durability os, whose
// promise is exactly what this test checks (a killed process loses nothing
// acknowledged), and no background sync during the test: what was
// acknowledged survives in the operating system's page cache alone.
func TestProcessCrashDurabilityOS(t *testing.T) {
	testProcessCrash(t, "--durability", "os", "--sync-interval", "1h")
}

func testProcessCrash(t *testing.T, flags ...string) {
	if testing.Short() {
		t.Skip("kills the server several times (-short)")
	}
	flags = append([]string{"--snapshot-every", "50"}, flags...)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv(processRoundsEnv)); err == nil && n > 0 {
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv(processSeedEnv), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (%s=%d), %d rounds (%s)", seed, processSeedEnv, seed, rounds, processRoundsEnv)
	rng := rand.New(rand.NewPCG(seed, 2))

	dir := t.TempDir()
	tandemBinary(t) // not timed with the start below
	started := time.Now()
	srv := startServer(t, dir, flags...)
	toServe := time.Since(started)
	const nDocs, perDoc = 2, 3
	ids := make([]string, nDocs)
	for i := range ids {
		var err error
		if ids[i], err = createDoc(srv.URL, fmt.Sprint("crash ", i), initialText); err != nil {
			t.Fatal(err)
		}
	}
	sessions := make([][]session, nDocs)
	// An integrator follows the change feed through the kills, resuming
	// from its last cursor each time: it must get every op of the log,
	// once after de-duplication, in revision order.
	follower := newFeedFollower()
	for round := 1; round <= rounds; round++ {
		following := make(chan struct{})
		go func(base string) { defer close(following); follower.follow(base) }(srv.URL)
		var eds []*editor
		for i, id := range ids {
			for j := range perDoc {
				e, err := dialEditor(srv.URL, id, "", seed+uint64(round*1000+i*100+j))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(e.close)
				eds = append(eds, e)
			}
		}
		results := make(chan []error, 1)
		go func() { results <- editAll(eds, 0, 1500, nil) }()
		delay := time.Duration(200+rng.IntN(800)) * time.Millisecond
		time.Sleep(delay)
		srv.kill()
		var errs []error
		select {
		case errs = <-results:
		case <-time.After(10 * time.Second):
			t.Fatal("editors still running 10s after the kill")
		}
		acks, pending, limited := 0, 0, 0
		for k, e := range eds {
			e.close()
			if errors.Is(errs[k], errStopped) || errs[k] == nil {
				t.Errorf("editor %d ended with %v", k, errs[k])
			}
			var ce *websocket.CloseError
			if errors.As(errs[k], &ce) && ce.Code != websocket.CloseAbnormalClosure {
				t.Errorf("editor %d: close frame %v from a killed server", k, ce)
			} else if !errors.As(errs[k], &ce) && !isNetErr(errs[k]) {
				t.Errorf("editor %d: %v", k, errs[k])
			}
			sessions[k/perDoc] = append(sessions[k/perDoc], e.session())
			acks += len(e.acks)
			limited += e.rateLimits
			if e.inSeq != 0 {
				pending++
			}
		}
		// Every other round, also kill a server while it starts up (opens
		// and recovers the store).
		early := time.Duration(-1)
		if round%2 == 0 {
			early = time.Duration(rng.Int64N(int64(toServe) + 1))
			p := launch(t, dir, flags...)
			time.Sleep(early)
			p.kill()
		}
		<-following
		srv = startServer(t, dir, flags...)
		heads := make([]int64, nDocs)
		for i, id := range ids {
			heads[i] = checkLog(t, srv.URL, id, initialText, sessions[i]).Rev
		}
		follower.catchUp(t, srv.URL)
		for i, id := range ids {
			follower.check(t, srv.URL, id, heads[i])
		}
		t.Logf("round %d: killed after %v: %d ops acked, %d in flight, %d rate-limited resends; heads %v; the feed's follower has %d events (%d received twice)",
			round, delay, acks, pending, limited, heads, len(follower.events), follower.dups)
		if early >= 0 {
			t.Logf("round %d: and a restarting server killed %v after it started (serving took %v in round 1)", round, early, toServe)
		}
		if acks == 0 {
			t.Errorf("round %d: nothing acked before the kill", round)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// isNetErr: the connection broke without a close frame (killed server).
func isNetErr(err error) bool {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code == websocket.CloseAbnormalClosure
	}
	s := err.Error()
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") || strings.Contains(s, "unexpected EOF")
}

// TestProcessRestartExactlyOnce: a client sends an op and the server is
// killed before the client reads anything; after a restart the client
// reconnects with its src and resends the same seq: it is acknowledged
// once, at the revision it was committed at before the kill or now, and is
// in the log once, however often it is resent.
func TestProcessRestartExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	id, err := createDoc(srv.URL, "exactly once", "abc")
	if err != nil {
		t.Fatal(err)
	}
	src := uuid.NewString()
	text := "abc"
	// Kill delays after the send: at once (the op is most likely not
	// committed) and 300 ms (it surely is), then random ones in between.
	delays := []time.Duration{0, 300 * time.Millisecond, 0, time.Duration(rand.IntN(3000)) * time.Microsecond, time.Duration(rand.IntN(3000)) * time.Microsecond}
	committedBefore, appliedAfter := 0, 0
	for k, delay := range delays {
		seq := uint64(k + 1)
		e, err := dialEditor(srv.URL, id, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		if e.server != text {
			t.Fatalf("hello text %q, want %q", e.server, text)
		}
		base := e.rev
		ins := fmt.Sprintf("[%d]", seq)
		msg := fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":[%q]}`, base, seq, ins)
		if err := e.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		srv.kill()
		e.close()
		text = ins + text

		srv = startServer(t, dir)
		e2 := dialRaw(t, srv.URL, id, src)
		hello := e2.next("hello")
		switch {
		case hello.Rev == base+1 && hello.Text != nil && *hello.Text == text:
			committedBefore++
		case hello.Rev == base && hello.Text != nil && *hello.Text == text[len(ins):]:
			appliedAfter++
		default:
			t.Fatalf("send %d: after restart hello at revision %d with %v; before the send the head was %d", seq, hello.Rev, hello.Text, base)
		}
		e2.send(msg)
		if ack := e2.next("ack"); ack.Seq != seq || ack.Rev != base+1 {
			t.Fatalf("send %d: ack %+v, want seq %d rev %d", seq, ack, seq, base+1)
		}
		e2.conn.Close()
		// Once more on a new connection: the same revision again.
		e3 := dialRaw(t, srv.URL, id, src)
		e3.next("hello")
		e3.send(msg)
		if ack := e3.next("ack"); ack.Seq != seq || ack.Rev != base+1 {
			t.Fatalf("send %d, resent again: ack %+v, want seq %d rev %d", seq, ack, seq, base+1)
		}
		e3.conn.Close()
		d := checkLog(t, srv.URL, id, "abc", nil)
		if d.Text != text || d.Rev != base+1 {
			t.Fatalf("send %d: document at %d is %q, want %d %q", seq, d.Rev, d.Text, base+1, text)
		}
		onceInLog(t, srv.URL, id, d.Rev, src, seq)
	}
	t.Logf("%d sends committed before the kill (acked with their revision), %d applied after the restart", committedBefore, appliedAfter)
	if committedBefore == 0 {
		t.Errorf("no send was committed before the kill, not even 300 ms after it was sent")
	}
}

// onceInLog checks the log of document id up to head holds the op that
// source key src sent as seq exactly once, and returns its revision.
func onceInLog(t *testing.T, base, id string, head int64, src string, seq uint64) int64 {
	t.Helper()
	recs, err := getLog(base, id, head)
	if err != nil {
		t.Fatal(err)
	}
	n, rev := 0, int64(0)
	for _, r := range recs {
		if r.Src == collab.SourceOf(src) && r.Seq == seq {
			n, rev = n+1, r.Rev
		}
	}
	if n != 1 {
		t.Fatalf("send %d: %d records with src %s seq %d in the log, want 1", seq, n, src, seq)
	}
	return rev
}

// rawClient reads server messages one by one (for tests that check each).
type rawClient struct {
	t    *testing.T
	conn *websocket.Conn
	buf  []serverMsg
}

// dialRaw connects with a source key.
func dialRaw(t *testing.T, base, id, key string) *rawClient {
	t.Helper()
	q := map[string][]string{"key": {key}}
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(base, id, q), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn}
}

// answer returns the answer to the op seq this connection sent: its ack,
// or the op itself with the connection's source src (when another
// connection of the source sent it first: docs/protocol.md).
func (c *rawClient) answer(src string, seq uint64) serverMsg {
	c.t.Helper()
	for {
		m := c.nextAny()
		switch {
		case m.Type == "ack" && m.Seq == seq, m.Type == "op" && m.Src == src && m.Seq == seq:
			return m
		case m.Type == "error":
			c.t.Fatalf("waiting for the answer to seq %d: error %s: %s", seq, m.Code, m.Message)
		}
	}
}

// next returns the next message of type typ, skipping presence; an error
// message fails the test.
func (c *rawClient) next(typ string) serverMsg {
	c.t.Helper()
	for {
		m := c.nextAny()
		if m.Type == typ {
			return m
		}
		if m.Type == "error" {
			c.t.Fatalf("waiting for %s: error %s: %s", typ, m.Code, m.Message)
		}
	}
}

// nextAny returns the next message that is not presence (join, leave,
// sel), errors included.
func (c *rawClient) nextAny() serverMsg {
	c.t.Helper()
	for {
		for len(c.buf) == 0 {
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, data, err := c.conn.ReadMessage()
			if err != nil {
				c.t.Fatalf("reading: %v", err)
			}
			if c.buf, err = parseFrame(data); err != nil {
				c.t.Fatal(err)
			}
		}
		m := c.buf[0]
		c.buf = c.buf[1:]
		switch m.Type {
		case "join", "leave", "sel":
			continue
		}
		return m
	}
}

func (c *rawClient) send(msg string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

// runTandem runs the binary to completion with env and returns its exit
// code and combined output.
func runTandem(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(tandemBinary(t), args...)
	cmd.Env = childEnv(env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	case <-time.After(3 * time.Minute): // bounds a stuck run (verify of 100 MiB on a loaded machine takes a minute)
		cmd.Process.Kill()
		<-done
		t.Fatalf("tandem %v still running after 3 minutes:\n%s", args, out.String())
	}
	return 0, ""
}

// TestProcessCommandLine: help, version, bad flags and env values, and a
// data directory another server holds.
func TestProcessCommandLine(t *testing.T) {
	dir := t.TempDir()
	code, out := runTandem(t, nil, "serve", "--help")
	if code != 0 || !strings.Contains(out, "usage: tandem serve") || !strings.Contains(out, "-data-dir") || !strings.Contains(out, "TANDEM_DATA_DIR") {
		t.Errorf("serve --help: exit %d:\n%s", code, out)
	}
	code, out = runTandem(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "serve") {
		t.Errorf("--help: exit %d:\n%s", code, out)
	}
	code, out = runTandem(t, nil, "version")
	if code != 0 || strings.TrimSpace(out) != "tandem process-test" {
		t.Errorf("version: exit %d: %q", code, out)
	}

	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"serve", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{nil, []string{"serve", "--idle-timeout", "soon"}, `invalid value "soon" for flag -idle-timeout`},
		{[]string{"TANDEM_IDLE_TIMEOUT=soon"}, []string{"serve"}, `TANDEM_IDLE_TIMEOUT="soon"`},
		{[]string{"TANDEM_SNAPSHOT_EVERY=lots"}, []string{"serve"}, `TANDEM_SNAPSHOT_EVERY="lots"`},
		{nil, []string{"serve", "--snapshot-every", "0"}, "--snapshot-every must be at least 1"},
		{nil, []string{"serve", "--log-format", "xml"}, "--log-format must be text or json"},
		{nil, []string{"serve", "--log-level", "loud"}, "--log-level"},
		{nil, []string{"serve", "extra"}, "unexpected arguments"},
		{nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, nil, "missing command"},
		{nil, []string{"serve", "--addr", "127.0.0.1:-1"}, "listen on 127.0.0.1:-1"},
	} {
		args := c.args
		if len(args) > 0 && args[0] == "serve" {
			args = append([]string{"serve", "--data-dir", filepath.Join(dir, "bad")}, args[1:]...)
		}
		code, out := runTandem(t, c.env, args...)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("%v %v: exit %d, want non-zero with %q:\n%s", c.env, c.args, code, c.want, out)
		}
		if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
			t.Errorf("%v %v: a panic:\n%s", c.env, c.args, out)
		}
	}

	// A directory held by a running server.
	held := filepath.Join(dir, "held")
	srv := startServer(t, held)
	code, out = runTandem(t, nil, "serve", "--addr", "127.0.0.1:0", "--data-dir", held)
	if code == 0 || !strings.Contains(out, "in use by another process") {
		t.Errorf("second server on %s: exit %d, want non-zero with \"in use by another process\":\n%s", held, code, out)
	}
	// The first one is unharmed.
	if _, err := createDoc(srv.URL, "still here", "x"); err != nil {
		t.Errorf("the first server after the second one failed: %v", err)
	}
	// And TANDEM_* configure serve: TANDEM_ADDR and TANDEM_DATA_DIR.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := srv.exitCode(12 * time.Second); !ok || code != 0 {
		t.Fatalf("SIGTERM: exited %v, code %d:\n%s", ok, code, srv.log())
	}
	cmd := exec.Command(tandemBinary(t), "serve")
	cmd.Env = childEnv("TANDEM_ADDR=127.0.0.1:0", "TANDEM_DATA_DIR="+held, "TANDEM_LOG_FORMAT=json")
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), `"msg":"tandem serving"`) {
		if time.Now().After(deadline) {
			t.Fatalf("TANDEM_ADDR/TANDEM_DATA_DIR/TANDEM_LOG_FORMAT: no JSON serving line:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), `"data_dir":"`+held+`"`) || !strings.Contains(buf.String(), `"addr":"http://127.0.0.1:`) {
		t.Errorf("serving line does not show the env's address and directory:\n%s", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestProcessShutdownManyClients: many idle clients on several documents;
// SIGTERM; every one gets close 1001 before the process is gone.
func TestProcessShutdownManyClients(t *testing.T) {
	srv := startServer(t, t.TempDir())
	const nDocs, perDoc = 10, 20
	var conns []*rawClient
	for i := range nDocs {
		id, err := createDoc(srv.URL, fmt.Sprint("many ", i), initialText)
		if err != nil {
			t.Fatal(err)
		}
		for range perDoc {
			c := dialRaw(t, srv.URL, id, uuid.NewString())
			c.next("hello")
			conns = append(conns, c)
		}
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := srv.exitCode(12 * time.Second); !ok || code != 0 {
		t.Fatalf("after SIGTERM: exited %v, code %d:\n%s", ok, code, srv.log())
	}
	codes := map[string]int{}
	for _, c := range conns {
		var err error
		for err == nil {
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = c.conn.ReadMessage()
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			codes[strconv.Itoa(ce.Code)]++
		} else {
			codes[err.Error()]++
		}
	}
	if codes["1001"] != len(conns) {
		t.Errorf("%d connections; how they ended: %v", len(conns), codes)
	}
}

// TestProcessHealthcheck: `tandem healthcheck` (the image's HEALTHCHECK)
// exits 0 for a serving server, on --addr or TANDEM_ADDR (also in the
// image's ":PORT" form), and 1 for nothing listening, an error status, or a
// server that does not answer within its 2 s timeout.
func TestProcessHealthcheck(t *testing.T) {
	srv := startServer(t, t.TempDir())
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(hostPort)
	if code, out := runTandem(t, nil, "healthcheck", "--addr", hostPort); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("healthcheck --addr %s: exit %d: %s", hostPort, code, out)
	}
	if code, out := runTandem(t, []string{"TANDEM_ADDR=:" + port}, "healthcheck"); code != 0 {
		t.Errorf("TANDEM_ADDR=:%s healthcheck: exit %d: %s", port, code, out)
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	if code, out := runTandem(t, nil, "healthcheck", "--addr", free); code != 1 || !strings.Contains(out, "healthcheck") {
		t.Errorf("healthcheck of %s (nothing listening): exit %d: %s", free, code, out)
	}
	// An error status.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	if code, out := runTandem(t, nil, "healthcheck", "--addr", strings.TrimPrefix(bad.URL, "http://")); code != 1 || !strings.Contains(out, "503") {
		t.Errorf("healthcheck of a 503: exit %d: %s", code, out)
	}
	// A server that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	code, out := runTandem(t, nil, "healthcheck", "--addr", hang.Addr().String())
	if took := time.Since(start); code != 1 || took > 5*time.Second {
		t.Errorf("healthcheck of a silent server: exit %d after %v: %s", code, took, out)
	}
}

// TestProcessDurabilityMemory: --durability memory serves and acknowledges
// edits, writes no store in the data directory, and a restart has none of
// what was edited (its promise is that nothing survives).
func TestProcessDurabilityMemory(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, "--durability", "memory")
	id, err := createDoc(srv.URL, "memory", initialText)
	if err != nil {
		t.Fatal(err)
	}
	e, err := dialEditor(srv.URL, id, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.run(50, 2000, nil); err != nil {
		t.Fatalf("editing: %v", err)
	}
	e.close()
	if len(e.acks) == 0 {
		t.Fatal("no edit acknowledged")
	}
	if d, err := getDoc(srv.URL, id); err != nil || d.Rev != int64(len(e.acks)) {
		t.Fatalf("before the restart: revision %d, err %v; want %d", d.Rev, err, len(e.acks))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range entries {
		if f.Name() != "admin-token" {
			t.Errorf("the data directory holds %s: memory durability writes no store", f.Name())
		}
	}
	srv.kill()
	srv = startServer(t, dir, "--durability", "memory")
	if _, err := getDoc(srv.URL, id); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("after a restart the document is still there (err %v)", err)
	}
}

// TestProcessBenchProcesses: tandem bench --processes splits a run's
// clients over processes of the binary and merges what they measured:
// every client of every process converges on the server's document, and
// the merged histogram holds an ack for every committed op.
func TestProcessBenchProcesses(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--client-rate", "1e6")
	code, out := runTandem(t, nil, "bench", "--server", srv.URL, "--mode", "closed", "--docs", "2", "--clients", "5",
		"--duration", "2s", "--processes", "3", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var res loadgen.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if res.Processes != 3 || res.Docs != 2 || res.Clients != 5 || res.Converged == nil || !*res.Converged {
		t.Fatalf("merged result %+v", res)
	}
	// Each document's ops came from all three processes' clients.
	checkMergedCommits(t, srv.URL, res)
}

// checkMergedCommits checks a run merged from several parts: every
// committed op was counted once, in the histogram too, and the documents'
// heads are what the parts committed together.
func checkMergedCommits(t *testing.T, server string, res loadgen.Result) {
	t.Helper()
	if res.Committed == 0 || res.Ack.Count != res.Committed || len(res.Errors) > 0 {
		t.Fatalf("%d committed, %d acks in the merged histogram, errors %v", res.Committed, res.Ack.Count, res.Errors)
	}
	var heads int64
	for _, id := range strings.Split(docIDsOf(t, server), ",") {
		d, err := getDoc(server, id)
		if err != nil {
			t.Fatal(err)
		}
		heads += d.Rev
	}
	if heads != res.Committed {
		t.Fatalf("the documents' heads add up to %d, the parts committed %d", heads, res.Committed)
	}
}

// docIDsOf lists the server's documents, comma-separated.
func docIDsOf(t *testing.T, base string) string {
	t.Helper()
	var out struct {
		Docs []struct {
			ID string `json:"id"`
		} `json:"docs"`
	}
	if err := getJSON(base+"/api/docs", &out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range out.Docs {
		ids = append(ids, d.ID)
	}
	return strings.Join(ids, ",")
}

// TestProcessBenchWorkers runs a load split over two worker processes (as
// on two machines) by a coordinator: one worker takes two parts of the run,
// the other one; the merged result must account for every op the
// documents hold. A worker answers nobody without its key, and takes no
// flag beyond a load's shape.
func TestProcessBenchWorkers(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--client-rate", "1e6")
	a := startWorker(t, "k3y", 2)
	b := startWorker(t, "k3y", 1)

	req, _ := http.NewRequest(http.MethodGet, a+"/clock", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /clock without the key: %s", resp.Status)
	}
	job, _ := json.Marshal(loadgen.WorkerJob{Args: []string{"--server", srv.URL, "--cpuprofile", "/tmp/x"}, Parts: []int{0}, Of: 1, DocIDs: []string{"d"}})
	req, _ = http.NewRequest(http.MethodPost, a+"/run", bytes.NewReader(job))
	req.Header.Set("Authorization", "Bearer k3y")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "cpuprofile") {
		t.Fatalf("a job with --cpuprofile: %s %s", resp.Status, body)
	}

	code, out := runTandem(t, []string{"TANDEM_BENCH_KEY=k3y"}, "bench", "--server", srv.URL, "--mode", "closed", "--docs", "2", "--clients", "5",
		"--duration", "2s", "--workers", a+","+b, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var res loadgen.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if res.Workers != 2 || res.Processes != 3 || res.Docs != 2 || res.Clients != 5 || res.Converged == nil || !*res.Converged || res.ServerCPU == nil {
		t.Fatalf("merged result %+v", res)
	}
	checkMergedCommits(t, srv.URL, res)
}

var workerRE = regexp.MustCompile(`listening on (http://\S+),`)

// startWorker starts tandem bench --worker on a free port and returns its
// URL.
func startWorker(t *testing.T, key string, parts int) string {
	t.Helper()
	cmd := exec.Command(tandemBinary(t), "bench", "--worker", "127.0.0.1:0", "--worker-key", key, "--worker-processes", strconv.Itoa(parts))
	cmd.Env = childEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := workerRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not say where it listens in 30s")
		return ""
	}
}
