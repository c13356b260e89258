package web_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/storage"
)

// testSeed returns the seed for a randomized test: TANDEM_SEED if set, else
// the clock. It is logged so that a failure can be replayed (the schedule of
// goroutines is not, but the edits each client makes are).
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TANDEM_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TANDEM_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (rerun with TANDEM_SEED=%d)", seed, seed)
	return seed
}

var insertions = []string{"a", "xy", "é", "😀", "漢字", "👍🏽", "\n", "q😀z", "ü", " ", "中文字", "🇫🇷"}

// randomEdit is an insert (weighted) or a delete of 1 to 3 code points at a
// random place in text.
func randomEdit(rng *rand.Rand, text string) (op string, edit func(*otClient) error) {
	n := runes(text)
	if n == 0 || rng.IntN(10) < 6 {
		pos, s := rng.IntN(n+1), insertions[rng.IntN(len(insertions))]
		return fmt.Sprintf("insert %q at %d", s, pos), func(cl *otClient) error { return cl.edit(insertAt(pos, s)) }
	}
	pos := rng.IntN(n)
	k := 1 + rng.IntN(min(3, n-pos))
	return fmt.Sprintf("delete %d at %d", k, pos), func(cl *otClient) error { return cl.edit(deleteAt(pos, k)) }
}

type convergence struct {
	docs, clients, edits int
	// reconnectEvery: a client drops its connection abruptly (with its op
	// in flight) about once every this many edits and reconnects; 0 never.
	reconnectEvery int
}

func runConvergence(t *testing.T, cfg convergence) {
	seed := testSeed(t)
	ts := newTestServer(t, collab.Config{})
	ctx := context.Background()
	start := time.Now()

	initial := map[string]string{}
	var ids []string
	for d := range cfg.docs {
		text := fmt.Sprintf("doc %d: héllo wörld 😀 漢字\n", d)
		id := ts.createDoc(t, fmt.Sprint("convergence ", d), text)
		ids = append(ids, id)
		initial[id] = text
	}
	clients := make([]*otClient, cfg.clients)
	for i := range clients {
		cl, err := newOTClient(ctx, ts, ids[i%len(ids)], fmt.Sprint("c", i))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}

	// Phase 1: everyone edits at once, with small random pauses during
	// which it processes what arrives; then waits for its ops' acks.
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for e := 0; e < cfg.edits; e++ {
				what, edit := randomEdit(rng, cl.text)
				if err := edit(cl); err != nil {
					errs <- fmt.Errorf("edit %d (%s): %w", e, what, err)
					return
				}
				if cfg.reconnectEvery > 0 && rng.IntN(cfg.reconnectEvery) == 0 {
					cl.c.close() // abruptly, whatever is in flight or unread
					if err := cl.connect(ctx); err != nil {
						errs <- err
						return
					}
				}
				until := time.Now().Add(time.Duration(rng.IntN(6000)) * time.Microsecond)
				for time.Now().Before(until) {
					if err := cl.pump(until); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := cl.settle(0, deadline); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Phase 2: quiesced. Every client catches up to the head and must hold
	// the server's text, which must be the op log replayed.
	total := 0
	for _, id := range ids {
		d := ts.getDoc(t, id)
		total += int(d.Rev)
		for _, cl := range clients {
			if cl.doc != id {
				continue
			}
			if err := cl.settle(d.Rev, deadline); err != nil {
				t.Fatal(err)
			}
			if cl.rev != d.Rev || cl.text != *d.Text {
				t.Fatalf("%s diverged: rev %d text %q; server rev %d text %q", cl.name, cl.rev, cl.text, d.Rev, *d.Text)
			}
		}
		recs := ts.history(t, id, 0, d.Rev)
		if got := replay(t, initial[id], recs); got != *d.Text {
			t.Fatalf("doc %s: the op log replayed gives %q, the server has %q", id, got, *d.Text)
		}
		// Exactly once: each source's ops are in the log once each, in seq
		// order 1..last, but for those that came to nothing (dropped).
		seqs := map[string][]uint64{}
		for _, r := range recs {
			seqs[r.Src] = append(seqs[r.Src], r.Seq)
		}
		for _, cl := range clients {
			if cl.doc != id {
				continue
			}
			got := seqs[cl.src]
			var want []uint64
			for s := uint64(1); s <= cl.seq; s++ {
				if !slices.Contains(cl.dropped, s) {
					want = append(want, s)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s sent seqs 1..%d (%v came to nothing), the log has %v", cl.name, cl.seq, cl.dropped, got)
			}
			delete(seqs, cl.src)
		}
		if len(seqs) != 0 {
			t.Fatalf("records from unknown sources: %v", seqs)
		}
		// The text at some revisions against the replayed prefix.
		rng := rand.New(rand.NewPCG(seed, 1<<32))
		for _, rev := range []int64{0, rng.Int64N(d.Rev + 1), rng.Int64N(d.Rev + 1), d.Rev} {
			want := replay(t, initial[id], recs[:rev])
			if got := ts.textAt(t, id, rev); got != want {
				t.Fatalf("doc %s: text at %d is %q, the replayed prefix %q", id, rev, got, want)
			}
		}
	}
	var acks, remote, resent, reconnects int
	var maxLat time.Duration
	for _, cl := range clients {
		acks += cl.acks
		remote += cl.remote
		resent += cl.resent
		reconnects += cl.reconnects
		maxLat = max(maxLat, cl.maxAckLatency)
	}
	st := ts.mgr.Stats()
	t.Logf("%d clients, %d docs, %d edits each: %d revisions in %v; %d acks, %d remote ops applied, %d reconnects, %d resends; max ack latency %v; group commit: %d writes for %d records",
		cfg.clients, cfg.docs, cfg.edits, total, time.Since(start).Round(time.Millisecond), acks, remote, reconnects, resent, maxLat.Round(time.Millisecond), st.Writes, st.Records)
}

func TestConvergence(t *testing.T) {
	t.Parallel()
	cfg := convergence{docs: 1, clients: 20, edits: 150}
	if testing.Short() {
		cfg.clients, cfg.edits = 5, 20
	}
	runConvergence(t, cfg)
}

func TestConvergenceManyDocsWithReconnects(t *testing.T) {
	t.Parallel()
	cfg := convergence{docs: 4, clients: 16, edits: 100, reconnectEvery: 15}
	if testing.Short() {
		cfg.docs, cfg.clients, cfg.edits = 2, 6, 20
	}
	runConvergence(t, cfg)
}

// TestSlowConsumer: a client that stops reading while others edit is
// disconnected for resync within a bounded time; the others keep getting
// their acks; the slow one reconnects with its last revision and catches up.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{
		collab:     collab.Config{RatePerSecond: 1e6, RateBurst: 1e6, QueueMessages: 64, QueueBytes: 64 << 10},
		sendBuffer: 16 << 10,
	})
	id := ts.createDoc(t, "slow", "start\n")
	ctx := context.Background()

	// The slow client: a small receive buffer, and nobody reading after
	// hello.
	ws, _, err := smallRecvBufDialer.Dial(ts.wsURL(id, url.Values{"name": {"slow"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	hello, err := parseFrame(data)
	if err != nil || hello[0].Type != "hello" || hello[0].Text == nil {
		t.Fatalf("hello: %v %v", hello, err)
	}
	slowID, slowSrc, slowKey := hello[0].Client, hello[0].Src, hello[0].Key
	slowText, slowRev := *hello[0].Text, hello[0].Rev

	// Writers: big inserts and deletes (the document stays small, the
	// traffic does not) until they see the slow client leave.
	const writers = 3
	chunk := strings.Repeat("0123456789abcdef", 64) // 1 KiB
	var left sync.Once
	leftAt := make(chan time.Time, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	clients := make([]*otClient, writers)
	start := time.Now()
	for i := range clients {
		cl, err := newOTClient(ctx, ts, id, fmt.Sprint("w", i))
		if err != nil {
			t.Fatal(err)
		}
		cl.observe = func(m msg) {
			if m.Type == "leave" && m.Client == slowID {
				left.Do(func() { leftAt <- time.Now(); close(stop) })
			}
		}
		clients[i] = cl
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			deadline := time.Now().Add(20 * time.Second)
			for {
				select {
				case <-stop:
					errs <- cl.settle(0, time.Now().Add(wait))
					return
				default:
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("%s: the slow client was not disconnected in 20s", cl.name)
					return
				}
				if cl.inflight == nil {
					n := runes(cl.text)
					var err error
					if n > 4*len(chunk) {
						err = cl.edit(deleteAt(rng.IntN(n-len(chunk)), len(chunk)))
					} else {
						err = cl.edit(insertAt(rng.IntN(n+1), chunk))
					}
					if err != nil {
						errs <- err
						return
					}
				}
				if err := cl.pump(time.Now().Add(time.Millisecond)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Once it is dropped, the slow client reads what it was sent, then the
	// close. It starts at once: the server's close frame waits (up to a
	// second) behind the data the client has not read. A client that stays
	// stalled longer gets no close frame at all, only the end of the TCP
	// connection (1006), which it must treat like 4001.
	type drained struct {
		text          string
		rev           int64
		frames, bytes int
		err, closeErr error
	}
	drainc := make(chan drained, 1)
	testDone := make(chan struct{})
	defer close(testDone)
	go func() {
		select {
		case <-stop:
		case <-testDone:
			return
		}
		d := drained{text: slowText, rev: slowRev}
		ws.SetReadDeadline(time.Now().Add(wait))
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				d.closeErr = err
				break
			}
			d.frames++
			d.bytes += len(data)
			ms, err := parseFrame(data)
			if err != nil {
				d.err = err
				break
			}
			for _, m := range ms {
				if m.Type != "op" {
					continue
				}
				if m.Rev != d.rev+1 {
					d.err = fmt.Errorf("slow client: op at %d after %d", m.Rev, d.rev)
					break
				}
				if d.text, err = ot.Apply(d.text, m.Op); err != nil {
					d.err = err
					break
				}
				d.rev = m.Rev
			}
		}
		drainc <- d
	}()

	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var maxLat time.Duration
	acks := 0
	for _, cl := range clients {
		maxLat = max(maxLat, cl.maxAckLatency)
		acks += cl.acks
	}
	head := ts.getDoc(t, id)
	t.Logf("slow client dropped after %v and %d revisions; writers: %d acks, max ack latency %v",
		(<-leftAt).Sub(start).Round(time.Millisecond), head.Rev, acks, maxLat.Round(time.Millisecond))
	if maxLat > 5*time.Second {
		t.Errorf("writers' max ack latency %v", maxLat)
	}
	d := <-drainc
	if d.err != nil {
		t.Fatal(d.err)
	}
	slowText, slowRev = d.text, d.rev
	t.Logf("slow client read %d frames (%d KiB) up to rev %d, then: %v", d.frames, d.bytes>>10, slowRev, d.closeErr)
	var ce *websocket.CloseError
	if !errors.As(d.closeErr, &ce) || ce.Code != collab.CloseResync {
		t.Errorf("slow client's connection ended with %v, want close %d", d.closeErr, collab.CloseResync)
	}

	// Reconnect with the last revision seen: catch up to the same text.
	slow := &otClient{name: "slow", ts: ts, doc: id, src: slowSrc, key: slowKey, text: slowText, rev: slowRev}
	if err := slow.connect(ctx); err != nil {
		t.Fatal(err)
	}
	if slow.rev != head.Rev || slow.text != *head.Text {
		t.Fatalf("slow client after catch-up: rev %d %q, server rev %d %q", slow.rev, slow.text, head.Rev, *head.Text)
	}
}

// docState reads the document's head through the API.
func (ts *testServer) head(t testing.TB, id string) (int64, string) {
	t.Helper()
	d := ts.getDoc(t, id)
	return d.Rev, *d.Text
}

// waitHead polls the API until the document reaches rev.
func (ts *testServer) waitHead(t testing.TB, id string, rev int64) {
	t.Helper()
	waitFor(t, wait, fmt.Sprintf("doc %s at rev %d", id, rev), func() bool {
		r, _ := ts.head(t, id)
		return r >= rev
	})
}

// countSubmissions counts the records of (src, seq) in the op log.
func (ts *testServer) countSubmissions(t testing.TB, id, src string, seq uint64) (n int, rev int64) {
	t.Helper()
	head, _ := ts.head(t, id)
	for _, r := range ts.history(t, id, 0, head) {
		if r.Src == src && r.Seq == seq {
			n++
			rev = r.Rev
		}
	}
	return n, rev
}

// checkCatchUp checks a reconnect hello: from rev, with the ops that take
// text (the client's, at from) to the server's text.
func checkCatchUp(t *testing.T, ts *testServer, id string, hello msg, from int64, text string) {
	t.Helper()
	if hello.Type != "hello" || hello.From == nil || *hello.From != from || hello.Text != nil {
		t.Fatalf("hello after reconnecting at %d: %+v", from, hello)
	}
	if int64(len(hello.Ops)) != hello.Rev-from {
		t.Fatalf("hello from %d at %d with %d ops", from, hello.Rev, len(hello.Ops))
	}
	for i, m := range hello.Ops {
		if m.Rev != from+1+int64(i) {
			t.Fatalf("catch-up op %d has rev %d", i, m.Rev)
		}
		var err error
		if text, err = ot.Apply(text, m.Op); err != nil {
			t.Fatalf("catch-up op %v: %v", m, err)
		}
	}
	rev, want := ts.head(t, id)
	if hello.Rev != rev || text != want {
		t.Fatalf("catch-up brings the client to rev %d %q; the server is at %d %q", hello.Rev, text, rev, want)
	}
}

// TestExactlyOnceReconnectInFlight: the connection drops with an op in
// flight (closed before the ack is read); the client reconnects with its
// source and last revision, catches up, resends the op with the same seq,
// and gets the original revision; the op is applied once.
func TestExactlyOnceReconnectInFlight(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "eo", "héllo")
	b := ts.open(t, id, nil)
	b.expect("hello")

	key, src := owned("source-a")
	a := ts.open(t, id, url.Values{"key": {key}})
	if h := a.expect("hello"); h.Src != src || h.Rev != 0 {
		t.Fatalf("hello: %+v", h)
	}
	a.sendOp(0, 1, `[5," wörld 😀"]`)
	a.close() // before reading anything

	// It was committed (the server read it before the connection's end);
	// B sees it and edits on top of it.
	if m := b.expect("op"); m.Rev != 1 || m.Src != src || m.seq() != 1 {
		t.Fatalf("b got %v", m)
	}
	b.sendOp(1, 1, `["¡"]`)
	if m := b.expect("ack"); m.Rev != 2 {
		t.Fatalf("b ack %v", m)
	}

	a2 := ts.open(t, id, url.Values{"key": {key}, "rev": {"0"}})
	checkCatchUp(t, ts, id, a2.next(), 0, "héllo")
	a2.sendOp(0, 1, `[5," wörld 😀"]`)
	if m := a2.expect("ack"); m.seq() != 1 || m.Rev != 1 {
		t.Fatalf("resent op: %v, want the ack of seq 1 at its original revision 1", m)
	}
	if rev, text := ts.head(t, id); rev != 2 || text != "¡héllo wörld 😀" {
		t.Fatalf("after the resend: rev %d %q", rev, text)
	}
	if n, _ := ts.countSubmissions(t, id, src, 1); n != 1 {
		t.Fatalf("seq 1 is in the log %d times", n)
	}
	// The client goes on; B saw nothing of the resend.
	a2.sendOp(2, 2, `[{"d":1}]`)
	if m := a2.expect("ack"); m.seq() != 2 || m.Rev != 3 {
		t.Fatalf("next op: %v", m)
	}
	if m := b.expect("op"); m.Rev != 3 || m.seq() != 2 {
		t.Fatalf("b got %v, want rev 3", m)
	}
}

// TestExactlyOnceAckDropped: the client never reads the ack (it is lost
// with the connection, as far as the client knows); it reconnects while the
// old connection is still open and resends. Both connections of the source
// get each ack once.
func TestExactlyOnceAckDropped(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "eo", "abc")
	key, src := owned("source-b")
	a := ts.open(t, id, url.Values{"key": {key}})
	a.expect("hello")
	a.sendOp(0, 1, `[3,"d"]`)
	ts.waitHead(t, id, 1)

	a2 := ts.open(t, id, url.Values{"key": {key}, "rev": {"0"}})
	h := a2.next()
	checkCatchUp(t, ts, id, h, 0, "abc")
	if h.Ops[0].Src != src || h.Ops[0].seq() != 1 {
		t.Fatalf("catch-up op: %v", h.Ops[0])
	}
	a2.sendOp(0, 1, `[3,"d"]`)
	if m := a2.expect("ack"); m.seq() != 1 || m.Rev != 1 {
		t.Fatalf("resent op: %v", m)
	}
	if rev, text := ts.head(t, id); rev != 1 || text != "abcd" {
		t.Fatalf("after the resend: rev %d %q", rev, text)
	}
	a2.sendOp(1, 2, `[4,"e"]`)
	if m := a2.expect("ack"); m.seq() != 2 || m.Rev != 2 {
		t.Fatalf("next op: %v", m)
	}
	// The old connection got the first ack, then the second op (every
	// connection of the source is told: the one that sent it by an ack,
	// the others by the op), nothing twice.
	if m := a.expect("ack"); m.seq() != 1 || m.Rev != 1 {
		t.Fatalf("old connection: %v", m)
	}
	if m := a.expectAnswer(src); m.Type != "op" || m.seq() != 2 || m.Rev != 2 {
		t.Fatalf("old connection: %v", m)
	}
	// Barriers: a selection ahead of the document is answered rev_ahead,
	// after everything the server sent before it; no second ack came first.
	for _, c := range []*tconn{a, a2} {
		c.send(`{"type":"sel","rev":99,"sel":[]}`)
		if m := c.expect("error"); m.Code != collab.CodeRevAhead {
			t.Fatalf("barrier: %v", m)
		}
	}
}

// TestExactlyOnceAcrossRestart: the server is shut down and a new one
// opens the same data directory; the client's resend is recognized from the
// store and acknowledged with its original revision.
func TestExactlyOnceAcrossRestart(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "eo", "abc")
	key, src := owned("source-c")
	a := ts.open(t, id, url.Values{"key": {key}})
	a.expect("hello")
	b := ts.open(t, id, nil)
	b.expect("hello")
	a.sendOp(0, 1, `["x"]`)
	b.sendOp(0, 1, `[3,"y"]`)
	ts.waitHead(t, id, 2)
	_, rev1 := ts.countSubmissions(t, id, src, 1)

	ts2 := ts.restart(t)
	// Shutdown finished the commits, acknowledged them, then closed with
	// going away.
	code, skipped, err := a.closeCode(time.Now().Add(wait))
	if err != nil || code != collab.CloseGoingAway {
		t.Fatalf("a's connection ended with %d %v", code, err)
	}
	acked := false
	for _, m := range skipped {
		acked = acked || m.Type == "ack" && m.seq() == 1 && m.Rev == rev1
	}
	if !acked {
		t.Fatalf("a was closed without its ack: %v", skipped)
	}
	if code, _, _ := b.closeCode(time.Now().Add(wait)); code != collab.CloseGoingAway {
		t.Fatalf("b's connection ended with %d", code)
	}

	a2 := ts2.open(t, id, url.Values{"key": {key}, "rev": {"0"}})
	checkCatchUp(t, ts2, id, a2.next(), 0, "abc")
	a2.sendOp(0, 1, `["x"]`)
	if m := a2.expect("ack"); m.seq() != 1 || m.Rev != rev1 {
		t.Fatalf("resent op after restart: %v, want rev %d", m, rev1)
	}
	a2.sendOp(2, 2, `["z"]`)
	if m := a2.expect("ack"); m.seq() != 2 || m.Rev != 3 {
		t.Fatalf("next op: %v", m)
	}
	// An older seq is still known (from the store).
	a2.sendOp(0, 1, `["x"]`)
	if m := a2.expect("ack"); m.seq() != 1 || m.Rev != rev1 {
		t.Fatalf("resent seq 1 again: %v", m)
	}
	if rev, text := ts2.head(t, id); rev != 3 || text != "zxabcy" {
		t.Fatalf("after the resends: rev %d %q", rev, text)
	}
	if n, _ := ts2.countSubmissions(t, id, src, 1); n != 1 {
		t.Fatalf("seq 1 is in the log %d times", n)
	}
}

// gatedStore holds commits while its gate is closed, so that a test can
// act while an op is accepted but not yet durable.
type gatedStore struct {
	storage.Store
	mu      sync.Mutex
	gate    chan struct{}
	waiting chan struct{} // a commit is held
}

func newGatedStore(s storage.Store) *gatedStore {
	return &gatedStore{Store: s, waiting: make(chan struct{}, 1)}
}

func (g *gatedStore) Commit(ctx context.Context, apps []storage.Append) ([]error, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-gate
	}
	return g.Store.Commit(ctx, apps)
}

func (g *gatedStore) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedStore) release() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

// awaitHeld waits until a commit is held at the gate.
func (g *gatedStore) awaitHeld(t testing.TB) {
	t.Helper()
	select {
	case <-g.waiting:
	case <-time.After(wait):
		t.Fatal("no commit reached the gate")
	}
}

// TestExactlyOnceResendWhileNotDurable: the client reconnects while its op
// is accepted but not yet durable, so the catch-up does not have it. Its
// resend, whether it reaches the server before the op is durable or crosses
// the ack on the wire, is acknowledged exactly once: one message per
// revision per connection.
func TestExactlyOnceResendWhileNotDurable(t *testing.T) {
	t.Parallel()
	for _, crossing := range []bool{false, true} {
		t.Run(fmt.Sprintf("crossing=%v", crossing), func(t *testing.T) {
			t.Parallel()
			var gs *gatedStore
			ts := startServer(t, serverOpts{wrap: func(s storage.Store) storage.Store { gs = newGatedStore(s); return gs }})
			id := ts.createDoc(t, "eo", "abc")
			key := ownedKey("source-d")
			a := ts.open(t, id, url.Values{"key": {key}})
			src := a.expect("hello").Src
			gs.hold()
			a.sendOp(0, 1, `["x"]`)
			gs.awaitHeld(t)
			a.close()

			a2 := ts.open(t, id, url.Values{"key": {key}, "rev": {"0"}})
			if h := a2.next(); h.Type != "hello" || h.Rev != 0 || h.From == nil || len(h.Ops) != 0 {
				t.Fatalf("hello while seq 1 is not durable: %+v", h)
			}
			if crossing {
				// The ack is on its way when the resend goes out.
				gs.release()
				if m := a2.expectAnswer(src); m.seq() != 1 || m.Rev != 1 {
					t.Fatalf("ack: %v", m)
				}
				a2.sendOp(0, 1, `["x"]`)
			} else {
				a2.sendOp(0, 1, `["x"]`)
				gs.release()
				if m := a2.expectAnswer(src); m.seq() != 1 || m.Rev != 1 {
					t.Fatalf("ack: %v", m)
				}
			}
			a2.sendOp(1, 2, `[1,"y"]`)
			if m := a2.expect("ack"); m.seq() != 2 || m.Rev != 2 {
				t.Fatalf("after the ack of seq 1, got %v; want the ack of seq 2 at rev 2 (a second ack for one revision?)", m)
			}
			if rev, text := ts.head(t, id); rev != 2 || text != "xyabc" {
				t.Fatalf("rev %d %q", rev, text)
			}
		})
	}
}

// TestMalformedMessages: every kind of bad client message gets an error
// with its code (and the seq of an op message), changes nothing, leaves the
// connection usable (but for an oversized frame, which closes it with
// 1009), and does not disturb another client, which receives nothing for
// it.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{
		collab: collab.Config{MaxInsertBytes: 64, MaxDocBytes: 256},
		web:    web.Config{MaxMessageBytes: 4096},
	})
	const text = "hello wörld" // 11 code points
	cases := []struct {
		name  string
		text  string // the document's initial text, if not text
		frame string
		code  string // the error's code
		seq   bool   // the error carries seq 7
		close int    // the connection is closed with this code instead
	}{
		{name: "invalid JSON", frame: `{"type":"op",`, code: "bad_message"},
		{name: "not an object", frame: `[1,2]`, code: "bad_message"},
		{name: "two messages in a frame", frame: `{"type":"sel","rev":0,"sel":[]}{"type":"sel","rev":0,"sel":[]}`, code: "bad_message"},
		{name: "invalid UTF-8", frame: "{\"type\":\"op\",\"rev\":0,\"seq\":7,\"op\":[\"\xff\"]}", code: "bad_message"},
		{name: "unknown type", frame: `{"type":"edit","rev":0,"seq":7,"op":["x"]}`, code: "bad_message"},
		{name: "no type", frame: `{"rev":0,"seq":7,"op":["x"]}`, code: "bad_message"},
		{name: "unknown field", frame: `{"type":"op","rev":0,"seq":7,"op":["x"],"extra":1}`, code: "bad_message"},
		{name: "missing seq", frame: `{"type":"op","rev":0,"op":["x"]}`, code: "bad_message"},
		{name: "missing rev", frame: `{"type":"op","seq":7,"op":["x"]}`, code: "bad_message", seq: true},
		{name: "negative rev", frame: `{"type":"op","rev":-1,"seq":7,"op":["x"]}`, code: "bad_message", seq: true},
		{name: "missing op", frame: `{"type":"op","rev":0,"seq":7}`, code: "invalid_op", seq: true},
		{name: "op not an array", frame: `{"type":"op","rev":0,"seq":7,"op":"x"}`, code: "invalid_op", seq: true},
		{name: "zero skip", frame: `{"type":"op","rev":0,"seq":7,"op":[0,"x"]}`, code: "invalid_op", seq: true},
		{name: "negative skip", frame: `{"type":"op","rev":0,"seq":7,"op":[-2,"x"]}`, code: "invalid_op", seq: true},
		{name: "fractional skip", frame: `{"type":"op","rev":0,"seq":7,"op":[1.5,"x"]}`, code: "invalid_op", seq: true},
		{name: "empty insert", frame: `{"type":"op","rev":0,"seq":7,"op":[""]}`, code: "invalid_op", seq: true},
		{name: "zero delete", frame: `{"type":"op","rev":0,"seq":7,"op":[{"d":0}]}`, code: "invalid_op", seq: true},
		{name: "empty delete text", frame: `{"type":"op","rev":0,"seq":7,"op":[{"d":""}]}`, code: "invalid_op", seq: true},
		{name: "lone surrogate", frame: `{"type":"op","rev":0,"seq":7,"op":["\ud83d"]}`, code: "invalid_op", seq: true},
		{name: "unknown object", frame: `{"type":"op","rev":0,"seq":7,"op":[{"x":1}]}`, code: "invalid_op", seq: true},
		{name: "null component", frame: `{"type":"op","rev":0,"seq":7,"op":[null]}`, code: "invalid_op", seq: true},
		{name: "skip past the end", frame: `{"type":"op","rev":0,"seq":7,"op":[12,"x"]}`, code: "invalid_op", seq: true},
		{name: "delete past the end", frame: `{"type":"op","rev":0,"seq":7,"op":[8,{"d":4}]}`, code: "invalid_op", seq: true},
		{name: "delete text mismatch", frame: `{"type":"op","rev":0,"seq":7,"op":[6,{"d":"world"}]}`, code: "invalid_op", seq: true},
		{name: "rev ahead", frame: `{"type":"op","rev":5,"seq":7,"op":["x"]}`, code: "rev_ahead", seq: true},
		{name: "insert too large", frame: `{"type":"op","rev":0,"seq":7,"op":["` + strings.Repeat("x", 65) + `"]}`, code: "too_large", seq: true},
		{name: "insert too large in bytes", frame: `{"type":"op","rev":0,"seq":7,"op":["` + strings.Repeat("😀", 17) + `"]}`, code: "too_large", seq: true},
		{name: "document too large", text: strings.Repeat("z", 240), frame: `{"type":"op","rev":0,"seq":7,"op":["` + strings.Repeat("x", 20) + `"]}`, code: "too_large", seq: true},
		{name: "sel negative position", frame: `{"type":"sel","rev":0,"sel":[{"anchor":-1,"head":2}]}`, code: "bad_message"},
		{name: "sel rev ahead", frame: `{"type":"sel","rev":3,"sel":[{"anchor":1,"head":2}]}`, code: "rev_ahead"},
		{name: "sel negative rev", frame: `{"type":"sel","rev":-1,"sel":[]}`, code: "bad_message"},
		{name: "sel too many ranges", frame: `{"type":"sel","rev":0,"sel":[` + strings.Repeat(`{"anchor":1,"head":1},`, 64) + `{"anchor":1,"head":1}]}`, code: "bad_message"},
		{name: "frame too large", frame: `{"type":"op","rev":0,"seq":7,"op":["` + strings.Repeat("x", 5000) + `"]}`, close: 1009},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			initial := text
			if tc.text != "" {
				initial = tc.text
			}
			id := ts.createDoc(t, tc.name, initial)
			b := ts.open(t, id, url.Values{"name": {"observer"}})
			b.expect("hello")
			key, src := owned("malformed-src")
			a := ts.open(t, id, url.Values{"key": {key}})
			ha := a.expect("hello")
			if m := b.next(); m.Type != "join" || m.Client != ha.Client {
				t.Fatalf("observer: %v, want a's join", m)
			}

			a.send(tc.frame)
			if tc.close != 0 {
				code, skipped, err := a.closeCode(time.Now().Add(wait))
				if err != nil || code != tc.close {
					t.Fatalf("connection ended with %d %v (after %v), want %d", code, err, skipped, tc.close)
				}
				if m := b.next(); m.Type != "leave" || m.Client != ha.Client {
					t.Fatalf("observer: %v, want a's leave", m)
				}
			} else {
				e := a.next()
				if e.Type != "error" || e.Code != tc.code || e.Message == "" {
					t.Fatalf("got %v, want error %s", e, tc.code)
				}
				switch {
				case tc.seq && (e.Seq == nil || *e.Seq != 7):
					t.Fatalf("error %v without the message's seq 7", e)
				case !tc.seq && e.Seq != nil:
					t.Fatalf("error %v with a seq", e)
				}
			}
			if rev, got := ts.head(t, id); rev != 0 || got != initial {
				t.Fatalf("the rejected message changed the document: rev %d %q", rev, got)
			}

			if tc.close == 0 {
				// The connection is still usable.
				a.sendOp(0, 8, `["ok "]`)
				if m := a.next(); m.Type != "ack" || m.seq() != 8 || m.Rev != 1 {
					t.Fatalf("valid op after the error: %v", m)
				}
				// The observer's next message is that op: nothing for the
				// rejected one (no op, no sel).
				if m := b.next(); m.Type != "op" || m.Rev != 1 || m.Src != src || m.seq() != 8 {
					t.Fatalf("observer: %v, want a's valid op at rev 1", m)
				}
			}
			// The observer works.
			rev := int64(0)
			if tc.close == 0 {
				rev = 1
			}
			b.sendOp(rev, 1, `["b"]`)
			if m := b.next(); m.Type != "ack" || m.Rev != rev+1 {
				t.Fatalf("observer's op: %v", m)
			}
			if tc.close == 0 {
				if m := a.next(); m.Type != "op" || m.Rev != rev+1 {
					t.Fatalf("a after the observer's op: %v", m)
				}
			}
		})
	}
}

// TestRateLimited: past the burst, messages get rate_limited (with the
// op's seq) and change nothing; the op resent with the same seq later goes
// through.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{RatePerSecond: 10, RateBurst: 2})
	id := ts.createDoc(t, "rate", "")
	a := ts.open(t, id, nil)
	a.expect("hello")
	a.sendOp(0, 1, `["a"]`)
	a.sendOp(0, 2, `["b"]`)
	a.sendOp(0, 3, `["c"]`)
	got := map[string]msg{}
	for len(got) < 3 {
		m := a.next()
		got[fmt.Sprint(m.Type, m.seq())] = m
	}
	if m, ok := got["error3"]; !ok || m.Code != "rate_limited" {
		t.Fatalf("replies: %v", got)
	}
	if rev, _ := ts.head(t, id); rev != 2 {
		t.Fatalf("rev %d, want 2", rev)
	}
	deadline := time.Now().Add(wait)
	for {
		a.sendOp(2, 3, `["c"]`)
		m := a.next()
		if m.Type == "ack" && m.seq() == 3 && m.Rev == 3 {
			break
		}
		if m.Type != "error" || m.Code != "rate_limited" || time.Now().After(deadline) {
			t.Fatalf("resend: %v", m)
		}
		time.Sleep(10 * time.Millisecond) // poll: the bucket refills 10 tokens a second
	}
	if rev, text := ts.head(t, id); rev != 3 || runes(text) != 3 {
		t.Fatalf("rev %d %q", rev, text)
	}
}

// TestRevTooOld: with the log compacted in the store and little history
// in the hub's memory, an op or selection based on a compacted revision
// gets rev_too_old, one based on a retained revision older than the hub's
// memory is transformed with records read from the store, and a client
// reconnecting from a compacted revision gets the text.
func TestRevTooOld(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{HistoryInMemory: 2, SnapshotEvery: 4})
	id := ts.createDoc(t, "old", "base")
	a := ts.open(t, id, url.Values{"key": {ownedKey("old-a")}})
	a.expect("hello")
	b := ts.open(t, id, nil)
	b.expect("hello")
	for i := int64(1); i <= 10; i++ {
		a.sendOp(i-1, uint64(i), fmt.Sprintf(`[%d,"%d"]`, 2+i, i%10))
		if m := a.expect("ack"); m.Rev != i {
			t.Fatalf("ack %v", m)
		}
		if m := b.expect("op"); m.Rev != i {
			t.Fatalf("op %v", m)
		}
	}
	ctx := context.Background()
	if err := ts.store.Compact(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	head, text := ts.head(t, id)
	if d := ts.getDoc(t, id); d.Oldest != 3 || head != 10 {
		t.Fatalf("after compaction: %+v", d)
	}

	// Based on a compacted revision.
	b.sendOp(2, 1, `["x"]`)
	if m := b.next(); m.Type != "error" || m.Code != "rev_too_old" || m.seq() != 1 {
		t.Fatalf("op at a compacted revision: %v", m)
	}
	b.send(`{"type":"sel","rev":2,"sel":[{"anchor":0,"head":1}]}`)
	if m := b.next(); m.Type != "error" || m.Code != "rev_too_old" || m.Seq != nil {
		t.Fatalf("sel at a compacted revision: %v", m)
	}
	if rev, got := ts.head(t, id); rev != head || got != text {
		t.Fatalf("the rejected op changed the document: %d %q", rev, got)
	}

	// Based on revision 4: retained in the store, not in the hub's memory.
	recs := ts.history(t, id, 4, head)
	op := insertAt(6, "Y")
	want := op
	for _, r := range recs {
		var err error
		if want, err = ot.Transform(want, r.Op, ot.Left); err != nil {
			t.Fatal(err)
		}
	}
	wantText, err := ot.Apply(text, want)
	if err != nil {
		t.Fatal(err)
	}
	b.sendOp(4, 2, `[6,"Y"]`)
	if m := b.expect("ack"); m.Rev != head+1 {
		t.Fatalf("op at rev 4: %v", m)
	}
	if m := a.expect("op"); m.Rev != head+1 || fmt.Sprint(m.Op) != fmt.Sprint(want) {
		t.Fatalf("a got %v, want %v", m, want)
	}
	if rev, got := ts.head(t, id); rev != head+1 || got != wantText {
		t.Fatalf("after the op at rev 4: %d %q, want %q", rev, got, wantText)
	}
	// A selection at revision 4 is moved through 5..11 as well.
	b.send(`{"type":"sel","rev":4,"sel":[{"anchor":0,"head":1}]}`)
	if m := a.expect("sel"); m.Rev != head+1 {
		t.Fatalf("sel %v", m)
	}

	// Reconnecting from a compacted revision: the text. From a retained one
	// older than the hub's memory: the ops.
	c := ts.open(t, id, url.Values{"rev": {"2"}})
	if h := c.next(); h.Type != "hello" || h.From != nil || h.Text == nil || *h.Text != wantText || h.Rev != head+1 {
		t.Fatalf("hello at a compacted revision: %+v", h)
	}
	d := ts.open(t, id, url.Values{"rev": {"4"}})
	checkCatchUp(t, ts, id, d.next(), 4, ts.textAt(t, id, 4))

	// The HTTP API: 410 rev_too_old below the retained history.
	var e apiErr
	if status, err := ts.call("GET", "/api/docs/"+id+"/text?rev=2", nil, &e); err != nil || status != 410 || e.Error.Code != "rev_too_old" {
		t.Fatalf("text at 2: %d %v %+v", status, err, e)
	}
	if status, err := ts.call("GET", "/api/docs/"+id+"/ops?from=2&to=5", nil, &e); err != nil || status != 410 || e.Error.Code != "rev_too_old" {
		t.Fatalf("ops from 2: %d %v %+v", status, err, e)
	}
}

// nextOfType skips messages of other types (failing on errors).
func (c *tconn) nextOfType(typ string) msg {
	c.t.Helper()
	for {
		m := c.next()
		if m.Type == typ {
			return m
		}
		if m.Type == "error" {
			c.t.Fatalf("got %v while waiting for %s", m, typ)
		}
	}
}

func selString(sel []ot.Selection) string { return fmt.Sprint(sel) }

// TestPresence: selections are broadcast moved to the durable revision
// through the ops committed since the client's revision, kept moving with
// later ops (the author's caret past its own insert) and shown to joining
// clients; join and leave are broadcast.
func TestPresence(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "presence", "0123456789abcdef")
	a := ts.open(t, id, url.Values{"user": {"ann"}, "name": {"Ann"}, "color": {"#e91e63"}})
	ha := a.expect("hello")
	b := ts.open(t, id, url.Values{"user": {"bob"}, "name": {"Bob"}, "color": {"#3f51b5"}})
	hb := b.expect("hello")
	if len(hb.Peers) != 1 || hb.Peers[0].Client != ha.Client || hb.Peers[0].Name != "Ann" || hb.Peers[0].User != "ann" || hb.Peers[0].Color != "#e91e63" || len(hb.Peers[0].Sel) != 0 {
		t.Fatalf("b's hello peers: %+v", hb.Peers)
	}
	if m := a.next(); m.Type != "join" || m.Client != hb.Client || m.Name != "Bob" || m.User != "bob" || m.Color != "#3f51b5" {
		t.Fatalf("a: %v, want b's join", m)
	}
	c := ts.open(t, id, url.Values{"name": {"Cy"}})
	hc := c.expect("hello")
	if len(hc.Peers) != 2 {
		t.Fatalf("c's hello peers: %+v", hc.Peers)
	}
	a.nextOfType("join")
	b.nextOfType("join")

	// B's selection at rev 0, current: broadcast as is.
	b.send(`{"type":"sel","rev":0,"sel":[{"anchor":5,"head":8}]}`)
	for _, o := range []*tconn{a, c} {
		if m := o.nextOfType("sel"); m.Client != hb.Client || m.Rev != 0 || selString(m.Sel) != "[{5 8}]" {
			t.Fatalf("sel: %v %v", m, m.Sel)
		}
	}
	// A inserts 3 code points at 0 (rev 1); B, not having seen it, selects
	// [5,8] at rev 0 again: the others get [8,11] at rev 1.
	a.sendOp(0, 1, `["😀ab"]`)
	a.expect("ack")
	b.send(`{"type":"sel","rev":0,"sel":[{"anchor":5,"head":8},{"anchor":9,"head":9}]}`)
	for _, o := range []*tconn{a, c} {
		if m := o.nextOfType("sel"); m.Client != hb.Client || m.Rev != 1 || selString(m.Sel) != "[{8 11} {12 12}]" {
			t.Fatalf("sel moved through rev 1: %v %v", m, m.Sel)
		}
	}
	// B never gets its own selection back.
	b.nextOfType("op")

	// Later ops move the stored selections: A deletes 2 at 0 (rev 2); B
	// inserts at its caret (rev 3): B's caret moves past its own insert, A's
	// caret at the same place (set at rev 2) stays before it.
	a.sendOp(1, 2, `[{"d":2}]`)
	a.expect("ack")
	b.nextOfType("op")
	a.send(`{"type":"sel","rev":2,"sel":[{"anchor":10,"head":10}]}`)
	if m := b.nextOfType("sel"); m.Client != ha.Client || selString(m.Sel) != "[{10 10}]" {
		t.Fatalf("a's caret: %v", m)
	}
	b.sendOp(2, 1, `[10,"XY"]`)
	if m := b.expect("ack"); m.Rev != 3 {
		t.Fatalf("b's op: %v", m)
	}
	d := ts.open(t, id, url.Values{"name": {"Dee"}})
	hd := d.expect("hello")
	sels := map[string]string{}
	for _, p := range hd.Peers {
		sels[p.Client] = selString(p.Sel)
	}
	if hd.Rev != 3 || sels[hb.Client] != "[{6 9} {12 12}]" || sels[ha.Client] != "[{10 10}]" || sels[hc.Client] != "[]" {
		t.Fatalf("d's hello at %d: selections %v", hd.Rev, sels)
	}
	if rev, text := ts.head(t, id); rev != 3 || text != "b012345678XY9abcdef" {
		t.Fatalf("doc: %d %q", rev, text)
	}

	// Leave: D closes cleanly, everyone else is told.
	d.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	for _, o := range []*tconn{a, b, c} {
		if m := o.nextOfType("leave"); m.Client != hd.Client {
			t.Fatalf("leave: %v", m)
		}
	}
}

// TestPresenceVanishedClient: a client that stops reading, writing and
// answering pings (without closing) is dropped after the pong wait and its
// leave broadcast; clients that answer pings stay.
func TestPresenceVanishedClient(t *testing.T) {
	t.Parallel()
	// The pong wait is short enough to keep the test quick, and long
	// enough that the client which does read (A) is never dropped on a
	// busy machine.
	const pongWait = 2 * time.Second
	ts := startServer(t, serverOpts{web: web.Config{PingPeriod: 250 * time.Millisecond, PongWait: pongWait}})
	id := ts.createDoc(t, "vanish", "text")
	a := ts.open(t, id, nil)
	a.expect("hello")

	// The vanishing client reads its hello and then nothing: gorilla answers
	// pings only while reading.
	ws, _, err := websocket.DefaultDialer.Dial(ts.wsURL(id, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	hv, err := parseFrame(data)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"sel","rev":0,"sel":[{"anchor":1,"head":2}]}`))
	if m := a.nextOfType("join"); m.Client != hv[0].Client {
		t.Fatalf("join: %v", m)
	}
	if m := a.nextOfType("sel"); m.Client != hv[0].Client {
		t.Fatalf("sel: %v", m)
	}
	// Waited for as an event (the deadline only bounds a broken run).
	for {
		m, err := a.conn.next(time.Now().Add(30 * time.Second))
		if err != nil {
			t.Fatalf("waiting for the leave: %v", err)
		}
		if m.Type == "leave" {
			if m.Client != hv[0].Client {
				t.Fatalf("leave: %v", m)
			}
			break
		}
	}
	t.Logf("the silent client was dropped after %v (pong wait %v)", time.Since(start).Round(time.Millisecond), pongWait)
	// A answered the pings all along.
	a.sendOp(0, 1, `["ok"]`)
	if m := a.expect("ack"); m.Rev != 1 {
		t.Fatalf("ack %v", m)
	}
	b := ts.open(t, id, nil)
	if h := b.expect("hello"); len(h.Peers) != 1 {
		t.Fatalf("peers after the drop: %+v", h.Peers)
	}
}

// TestLargeDocument: a document may grow to collab.Config.MaxDocBytes
// (8 MiB by default) through ops, and keeps taking ops when the hub's
// periodic snapshot of it is written with the records.
func TestLargeDocument(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{SnapshotEvery: 2})
	id := ts.createDoc(t, "large", "")
	a := ts.open(t, id, nil)
	a.expect("hello")
	chunk := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KiB
	const n = 12                                            // 2.4 MiB in all
	for i := range n {
		a.sendOp(int64(i), uint64(i+1), `["`+chunk+`"]`)
		m, err := a.conn.next(time.Now().Add(wait))
		if err != nil || m.Type != "ack" || m.Rev != int64(i+1) {
			t.Fatalf("op %d (document at %d KiB): %v %v", i+1, i*len(chunk)>>10, m, err)
		}
	}
	if rev, text := ts.head(t, id); rev != n || len(text) != n*len(chunk) {
		t.Fatalf("rev %d, %d bytes", rev, len(text))
	}
}

// TestIdleUnloadAndReload: a document with no clients is unloaded after the
// idle timeout; the next client loads it again from the store (snapshot and
// records), catches up, and its resend of an old op is recognized from the
// store.
func TestIdleUnloadAndReload(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{IdleTimeout: 50 * time.Millisecond, SnapshotEvery: 3})
	id := ts.createDoc(t, "idle", "ab")
	key := ownedKey("idle-src")
	a := ts.open(t, id, url.Values{"key": {key}})
	a.expect("hello")
	for i := int64(1); i <= 4; i++ {
		a.sendOp(i-1, uint64(i), `[1,"x"]`)
		if m := a.expect("ack"); m.Rev != i {
			t.Fatalf("ack %v", m)
		}
	}
	a.close()
	waitFor(t, wait, "the document to be unloaded", func() bool { return ts.mgr.Open() == 0 })

	a2 := ts.open(t, id, url.Values{"key": {key}, "rev": {"2"}})
	checkCatchUp(t, ts, id, a2.next(), 2, ts.textAt(t, id, 2))
	if ts.mgr.Open() != 1 {
		t.Fatalf("%d documents open", ts.mgr.Open())
	}
	a2.sendOp(3, 4, `[1,"x"]`)
	if m := a2.expect("ack"); m.seq() != 4 || m.Rev != 4 {
		t.Fatalf("resend after reload: %v", m)
	}
	a2.sendOp(4, 5, `[6,"y"]`)
	if m := a2.expect("ack"); m.Rev != 5 {
		t.Fatalf("new op after reload: %v", m)
	}
	if rev, text := ts.head(t, id); rev != 5 || text != "axxxxby" {
		t.Fatalf("doc: %d %q", rev, text)
	}
}

// TestRefusalsThatReconnectingCannotCure: a join refused for what it asked
// gets its error and close 1008, never 4001 (a client following
// docs/protocol.md would reconnect forever), and changes nothing.
func TestRefusalsThatReconnectingCannotCure(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "refused", "abc")
	key, _ := owned("refused")
	long := strings.Repeat("n", 300)
	for _, tc := range []struct {
		q    url.Values
		code string
	}{
		{url.Values{"key": {key}, "name": {long}}, collab.CodeBadMessage},
		{url.Values{"key": {key}, "user": {long}}, collab.CodeBadMessage},
		{url.Values{"key": {key}, "color": {long[:65]}}, collab.CodeBadMessage},
		{url.Values{"key": {key}, "src": {strings.Repeat("a", 300)}}, collab.CodeSourceDenied},
		{url.Values{"src": {strings.Repeat("a", 300)}}, collab.CodeSourceDenied},
	} {
		a := ts.open(t, id, tc.q)
		if m := a.next(); m.Type != "error" || m.Code != tc.code {
			t.Fatalf("%.80v: got %+v, want %s", tc.q, m, tc.code)
		}
		_, err := a.conn.next(time.Now().Add(wait))
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != collab.ClosePolicy {
			t.Fatalf("%.80v: connection ended with %v, want close %d", tc.q, err, collab.ClosePolicy)
		}
	}
	if rev, text := ts.head(t, id); rev != 0 || text != "abc" {
		t.Fatalf("doc: %d %q", rev, text)
	}
}

// TestSourceHijackRefused: sources are public (every op carries one), so a
// source alone proves nothing. A connection naming someone else's source
// without its key is refused (source_denied, close 1008) and changes
// nothing; with a key of its own it gets a source of its own; the victim's
// next edit is applied, not mistaken for a resubmission.
func TestSourceHijackRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "hijack", "abc")
	vkey, vsrc := owned("victim")
	v := ts.open(t, id, url.Values{"key": {vkey}})
	if h := v.expect("hello"); h.Src != vsrc || h.Key != "" {
		t.Fatalf("victim's hello: %+v", h)
	}
	v.sendOp(0, 1, `[3,"V"]`)
	if m := v.expect("ack"); m.Rev != 1 {
		t.Fatalf("victim's ack: %+v", m)
	}

	for _, q := range []url.Values{
		{"src": {vsrc}},
		{"src": {vsrc}, "key": {ownedKey("attacker")}},
		{"src": {vsrc}, "key": {"too-short"}},
		{"key": {"not a key: spaces and more than enough characters"}},
	} {
		a := ts.open(t, id, q)
		if m := a.next(); m.Type != "error" || m.Code != collab.CodeSourceDenied {
			t.Fatalf("%v: got %+v, want source_denied", q, m)
		}
		_, err := a.conn.next(time.Now().Add(wait))
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != collab.ClosePolicy {
			t.Fatalf("%v: connection ended with %v, want close %d", q, err, collab.ClosePolicy)
		}
	}

	akey, asrc := owned("attacker")
	a := ts.open(t, id, url.Values{"key": {akey}})
	if h := a.expect("hello"); h.Src != asrc || h.Src == vsrc {
		t.Fatalf("attacker's hello: %+v", h)
	}
	a.sendOp(1, 2, `["A"]`)
	if m := a.expect("ack"); m.Rev != 2 {
		t.Fatalf("attacker's ack: %+v", m)
	}
	if m := v.expect("op"); m.Rev != 2 || m.Src != asrc {
		t.Fatalf("victim got %+v", m)
	}
	v.sendOp(2, 2, `[1,"W"]`)
	if m := v.expect("ack"); m.Rev != 3 || m.seq() != 2 {
		t.Fatalf("the victim's seq 2: %+v, want its ack at rev 3", m)
	}
	if rev, text := ts.head(t, id); rev != 3 || text != "AWabcV" {
		t.Fatalf("document: %d %q", rev, text)
	}

	// A key the server issued comes back in hello, once, and owns the
	// source on the next connection.
	n := ts.open(t, id, nil)
	h := n.expect("hello")
	if h.Key == "" || collab.SourceOf(h.Key) != h.Src {
		t.Fatalf("hello with an issued key: %+v", h)
	}
	n2 := ts.open(t, id, url.Values{"key": {h.Key}, "rev": {"3"}})
	if h2 := n2.expect("hello"); h2.Src != h.Src || h2.Key != "" {
		t.Fatalf("hello on reconnect: %+v", h2)
	}
}

// TestBinaryFrame: the protocol has no binary frames; one is answered with
// bad_message and the connection stays usable.
func TestBinaryFrame(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "binary", "abc")
	a := ts.open(t, id, nil)
	a.expect("hello")
	if err := a.conn.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"op","rev":0,"seq":1,"op":["x"]}`)); err != nil {
		t.Fatal(err)
	}
	if m := a.expect("error"); m.Code != collab.CodeBadMessage {
		t.Fatalf("binary frame: %+v", m)
	}
	a.sendOp(0, 1, `["y"]`)
	if m := a.expect("ack"); m.Rev != 1 {
		t.Fatalf("ack %+v", m)
	}
	if _, text := ts.head(t, id); text != "yabc" {
		t.Fatalf("text %q", text)
	}
}
