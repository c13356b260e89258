package collab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// wait bounds every wait for something that should happen; tests that pass
// never come near it.
const wait = 5 * time.Second

var errIO = errors.New("injected I/O error")

// ---------------------------------------------------------------------------
// A fake collab.Conn.

// msg is any server message, decoded strictly: a field the protocol does not
// document fails the test.
type msg struct {
	Type     string          `json:"type"`
	Protocol int             `json:"protocol"`
	Doc      string          `json:"doc"`
	Title    string          `json:"title"`
	Client   string          `json:"client"`
	Src      string          `json:"src"`
	Rev      int64           `json:"rev"`
	Seq      *uint64         `json:"seq"`
	Op       json.RawMessage `json:"op"`
	User     string          `json:"user"`
	Name     string          `json:"name"`
	Color    string          `json:"color"`
	Time     int64           `json:"time"`
	Text     *string         `json:"text"`
	DocType  string          `json:"doctype"`
	Delta    json.RawMessage `json:"delta"`
	From     *int64          `json:"from"`
	Ops      []msg           `json:"ops"`
	Peers    []msg           `json:"peers"`
	Sel      []ot.Selection  `json:"sel"`
	Key      string          `json:"key"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	// RetryAfter is rate_limited's hint, in milliseconds.
	RetryAfter int64 `json:"retryAfter"`

	raw string
}

func (m msg) String() string { return m.raw }

// seq returns the message's seq, or -1 if it has none.
func (m msg) seq() int64 {
	if m.Seq == nil {
		return -1
	}
	return int64(*m.Seq)
}

// event is a message sent to a connection or its close.
type event struct {
	msg    msg
	close  int // the close code; 0 for a message
	reason string
}

func (e event) String() string {
	if e.close != 0 {
		return fmt.Sprintf("close(%d, %q)", e.close, e.reason)
	}
	return e.msg.raw
}

// fakeConn records what the hub sends and its closes, in order. It can be
// told to refuse messages (a full outbound queue). Like the web layer, it
// tells the hub the connection is gone when it is closed, unless told not
// to.
type fakeConn struct {
	mu             sync.Mutex
	events         []event
	read           int // events consumed by next
	failSend       bool
	closed         bool
	closes         int
	sentAfterClose int
	bad            []string // messages that are not valid protocol JSON
	client         *collab.Client
	noDisconnect   bool
	changed        chan struct{} // closed and replaced on every event
	frames         int           // Sends: each is one write
}

func newConn() *fakeConn { return &fakeConn{changed: make(chan struct{})} }

func (c *fakeConn) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Send implements collab.Conn. A frame may hold several messages (a JSON
// array): each is recorded as an event.
func (c *fakeConn) Send(b []byte, written func()) error {
	c.mu.Lock()
	if c.failSend {
		c.mu.Unlock()
		return collab.ErrQueueFull
	}
	if c.closed {
		c.sentAfterClose++
		c.mu.Unlock()
		return errors.New("fake conn: closed")
	}
	c.frames++
	msgs := []json.RawMessage{b}
	if len(b) > 0 && b[0] == '[' {
		msgs = nil
		if err := json.Unmarshal(b, &msgs); err != nil || len(msgs) < 2 {
			c.bad = append(c.bad, fmt.Sprintf("%s: a frame array of %d messages: %v", b, len(msgs), err))
		}
	}
	for _, raw := range msgs {
		var m msg
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil || dec.More() {
			c.bad = append(c.bad, fmt.Sprintf("%s: %v", raw, err))
		}
		m.raw = string(raw)
		c.events = append(c.events, event{msg: m})
	}
	c.signal()
	c.mu.Unlock()
	written()
	return nil
}

// Close implements collab.Conn.
func (c *fakeConn) Close(code int, reason string) {
	c.mu.Lock()
	c.events = append(c.events, event{close: code, reason: reason})
	c.closes++
	first := !c.closed
	c.closed = true
	cl, disconnect := c.client, !c.noDisconnect
	c.signal()
	c.mu.Unlock()
	if first && disconnect && cl != nil {
		go cl.Disconnect() // as web's disconnect handler does, off the hub
	}
}

// attach gives the connection its client handle, for the Disconnect that
// follows a Close.
func (c *fakeConn) attach(cl *collab.Client) {
	c.mu.Lock()
	c.client = cl
	closed, disconnect := c.closed, !c.noDisconnect
	c.mu.Unlock()
	if closed && disconnect {
		go cl.Disconnect()
	}
}

func (c *fakeConn) setFailSend(fail bool) {
	c.mu.Lock()
	c.failSend = fail
	c.mu.Unlock()
}

func (c *fakeConn) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sb strings.Builder
	for i, e := range c.events {
		mark := "  "
		if i == c.read {
			mark = "> "
		}
		fmt.Fprintf(&sb, "\n%s%s", mark, e)
	}
	return sb.String()
}

// nextEvent waits for the next event not yet consumed.
func (c *fakeConn) nextEvent(timeout time.Duration) (event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if c.read < len(c.events) {
			e := c.events[c.read]
			c.read++
			c.mu.Unlock()
			return e, nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return event{}, fmt.Errorf("no event within %v; events:%s", timeout, c.dump())
		}
	}
}

// expectE is expect for goroutines other than the test's.
func (c *fakeConn) expectE(typ string) (msg, error) {
	e, err := c.nextEvent(wait)
	if err != nil {
		return msg{}, err
	}
	if e.close != 0 || e.msg.Type != typ {
		return msg{}, fmt.Errorf("got %v, want a %s message; events:%s", e, typ, c.dump())
	}
	return e.msg, nil
}

// expect returns the next event, which must be a message of type typ.
func (c *fakeConn) expect(t testing.TB, typ string) msg {
	t.Helper()
	m, err := c.expectE(typ)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// expectClose checks that the next event is a close with code.
func (c *fakeConn) expectClose(t testing.TB, code int) {
	t.Helper()
	e, err := c.nextEvent(wait)
	if err != nil {
		t.Fatal(err)
	}
	if e.close != code {
		t.Fatalf("got %v, want close %d; events:%s", e, code, c.dump())
	}
}

// expectError checks that the next event is an error with code and seq
// (-1: none).
func (c *fakeConn) expectError(t testing.TB, code string, seq int64) msg {
	t.Helper()
	m := c.expect(t, "error")
	if m.Code != code || m.seq() != seq {
		t.Fatalf("got %v, want error %s with seq %d", m, code, seq)
	}
	return m
}

// expectAck checks that the next event is the ack of seq at rev.
func (c *fakeConn) expectAck(t testing.TB, seq uint64, rev int64) {
	t.Helper()
	m := c.expect(t, "ack")
	if m.seq() != int64(seq) || m.Rev != rev {
		t.Fatalf("got %v, want ack of seq %d at rev %d", m, seq, rev)
	}
}

// expectOp checks that the next event is the op at rev by author (a
// peer's client id).
func (c *fakeConn) expectOp(t testing.TB, rev int64, author *peer, op string) msg {
	t.Helper()
	m := c.expect(t, "op")
	if m.Rev != rev || m.Client != author.id || m.Src != author.src || string(m.Op) != op {
		t.Fatalf("got %v, want op %s at rev %d from %s (%s)", m, op, rev, author.id, author.src)
	}
	return m
}

// pending returns the events not yet consumed.
func (c *fakeConn) pending() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events[c.read:]...)
}

// expectNothing checks that c got nothing more. Call it after a barrier (a
// message the connection got after everything it could have been sent):
// the driver hands messages to a connection as it produces them, so what
// is not there by then was never sent.
func expectNothing(t testing.TB, conns ...*fakeConn) {
	t.Helper()
	for _, c := range conns {
		if p := c.pending(); len(p) > 0 {
			t.Fatalf("unexpected %v; events:%s", p[0], c.dump())
		}
	}
}

// check fails the test on anything the connection saw that breaks the
// protocol: undecodable messages, messages after the close, several closes.
func (c *fakeConn) check(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bad {
		t.Errorf("invalid server message: %s", b)
	}
	if c.sentAfterClose > 0 {
		t.Errorf("%d messages sent after the close", c.sentAfterClose)
	}
	if c.closes > 1 {
		t.Errorf("closed %d times", c.closes)
	}
}

// ---------------------------------------------------------------------------
// A store that can hold, slow down and fail commits.

type testStore struct {
	storage.Store
	held chan struct{} // a commit waits at the gate

	mu       sync.Mutex
	gate     chan struct{}
	fails    int
	delay    time.Duration
	disabled bool // the test is over: no more holding
}

func newTestStore() (*testStore, *memstore.Store) {
	mem := memstore.New()
	return &testStore{Store: mem, held: make(chan struct{}, 64)}, mem
}

func (s *testStore) Commit(ctx context.Context, apps []storage.Append) ([]error, error) {
	s.mu.Lock()
	gate, delay, fail := s.gate, s.delay, s.fails > 0
	if fail {
		s.fails--
	}
	s.mu.Unlock()
	if gate != nil {
		select {
		case s.held <- struct{}{}:
		default:
		}
		<-gate
	}
	if delay > 0 {
		time.Sleep(delay) // a slow disk, not synchronization
	}
	if fail {
		return nil, errIO
	}
	return s.Store.Commit(ctx, apps)
}

// hold makes commits wait until release.
func (s *testStore) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.disabled {
		s.gate = make(chan struct{})
	}
}

func (s *testStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *testStore) releaseForGood() {
	s.mu.Lock()
	s.disabled = true
	s.mu.Unlock()
	s.release()
}

// failNext makes the next n commits fail with an I/O error.
func (s *testStore) failNext(n int) {
	s.mu.Lock()
	s.fails = n
	s.mu.Unlock()
}

func (s *testStore) setDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// awaitHeld waits until a commit waits at the gate.
func (s *testStore) awaitHeld(t testing.TB) {
	t.Helper()
	select {
	case <-s.held:
	case <-time.After(wait):
		t.Fatal("no commit reached the store")
	}
}

// ---------------------------------------------------------------------------
// Helpers.

var discard = slog.New(slog.DiscardHandler)

// newManager returns a manager over st, closed (after releasing any held
// commit) when the test ends; the connections it made are checked then.
func newManager(t *testing.T, st storage.Store, cfg collab.Config) *collab.Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	m := collab.NewManager(st, cfg)
	t.Cleanup(func() {
		if ts, ok := st.(*testStore); ok {
			ts.releaseForGood()
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("manager close: %v", err)
		}
	})
	return m
}

func createDoc(t testing.TB, st storage.Store, id, text string) {
	t.Helper()
	doc := storage.Document{ID: id, Title: "Title of " + id, Created: time.Unix(1700000000, 0)}
	if err := st.CreateDocument(context.Background(), doc, text); err != nil {
		t.Fatal(err)
	}
}

// head returns the document's head revision and text in the store.
func head(t testing.TB, st storage.Store, id string) (int64, string) {
	t.Helper()
	doc, rope, err := storage.Load(context.Background(), st, id)
	if err != nil {
		t.Fatal(err)
	}
	return doc.Head, rope.Content()
}

// peer is a connected test client.
type peer struct {
	*fakeConn
	cl    *collab.Client
	hello msg
	id    string // client id
	src   string
	label string // what info was given
}

// info describes a client whose source is named by label: its key is
// keyFor(label), its source srcOf(label).
func info(label string, lastRev int64) collab.ClientInfo {
	return collab.ClientInfo{Key: keyFor(label), User: "user-" + label, Name: "Name " + label, Color: "#" + label, LastRev: lastRev}
}

func keyFor(label string) string { return "test-key-of-" + label + "-0123456789" }

func srcOf(label string) string { return collab.SourceOf(keyFor(label)) }

func connectE(m *collab.Manager, doc string, ci collab.ClientInfo, conn *fakeConn) (*peer, error) {
	cl, err := m.Connect(context.Background(), doc, conn, ci)
	if err != nil {
		return nil, err
	}
	conn.attach(cl)
	hello, err := conn.expectE("hello")
	if err != nil {
		return nil, err
	}
	if hello.Client != cl.ID() || hello.Src != cl.Source() || hello.Doc != doc || hello.Protocol != collab.ProtocolVersion {
		return nil, fmt.Errorf("hello %v for client %s source %s", hello, cl.ID(), cl.Source())
	}
	return &peer{fakeConn: conn, cl: cl, hello: hello, id: cl.ID(), src: cl.Source(), label: strings.TrimPrefix(ci.User, "user-")}, nil
}

// connect joins a new client to doc and consumes its hello.
func connect(t *testing.T, m *collab.Manager, doc string, ci collab.ClientInfo) *peer {
	t.Helper()
	return connectConn(t, m, doc, ci, newConn())
}

func connectConn(t *testing.T, m *collab.Manager, doc string, ci collab.ClientInfo, conn *fakeConn) *peer {
	t.Helper()
	p, err := connectE(m, doc, ci, conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.check(t) })
	return p
}

func (p *peer) op(rev int64, seq uint64, op string) {
	p.cl.Handle(fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":%s}`, rev, seq, op))
}

func (p *peer) sel(rev int64, sel ...ot.Selection) {
	if sel == nil {
		sel = []ot.Selection{}
	}
	b, err := json.Marshal(map[string]any{"type": "sel", "rev": rev, "sel": sel})
	if err != nil {
		panic(err)
	}
	p.cl.Handle(b)
}

// expectJoin checks that the next event is who's join.
func (c *fakeConn) expectJoin(t testing.TB, who *peer) {
	t.Helper()
	m := c.expect(t, "join")
	if m.Client != who.id || m.User != "user-"+who.label || m.Name != "Name "+who.label || m.Color != "#"+who.label {
		t.Fatalf("got %v, want the join of %s (%s)", m, who.id, who.src)
	}
}

// expectLeave checks that the next event is who's leave.
func (c *fakeConn) expectLeave(t testing.TB, who *peer) {
	t.Helper()
	if m := c.expect(t, "leave"); m.Client != who.id {
		t.Fatalf("got %v, want the leave of %s", m, who.id)
	}
}

// expectSel checks that the next event is who's selection at rev.
func (c *fakeConn) expectSel(t testing.TB, who *peer, rev int64, want ...ot.Selection) {
	t.Helper()
	m := c.expect(t, "sel")
	if m.Client != who.id || m.Rev != rev || fmt.Sprint(m.Sel) != fmt.Sprint(want) {
		t.Fatalf("got %v, want the selection %v of %s at rev %d", m, want, who.id, rev)
	}
}

func caret(n int) ot.Selection { return ot.Selection{Anchor: n, Head: n} }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// submissions counts the records of (src, seq) in the document's log.
func submissions(t testing.TB, st storage.Store, id, src string, seq uint64) int {
	t.Helper()
	h, _ := head(t, st, id)
	recs, err := st.Records(context.Background(), id, 0, h)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Source == src && r.Seq == seq {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------
// 1. Nothing is acknowledged or broadcast before it is durable.

func TestNothingSentBeforeDurable(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "abc")
	m := newManager(t, st, collab.Config{})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)

	st.hold()
	a.op(0, 1, `[3,"X"]`)
	st.awaitHeld(t) // A's op is accepted and on its way to disk
	// B's concurrent op is transformed against A's (accepted, not durable)
	// and waits for the next write.
	b.op(0, 1, `["Y"]`)
	// A barrier: B's selection is handled after both ops and, presence not
	// being durable, goes out at once, at the durable revision 0.
	b.sel(0, caret(1))
	a.expectSel(t, b, 0, caret(1))
	// A client joining now gets the durable text, not the accepted ops.
	c := connect(t, m, "doc", info("c", -1))
	if c.hello.Rev != 0 || c.hello.Text == nil || *c.hello.Text != "abc" || c.hello.From != nil || len(c.hello.Peers) != 2 {
		t.Fatalf("hello while a commit is held: %v", c.hello)
	}
	a.expectJoin(t, c)
	b.expectJoin(t, c)
	expectNothing(t, a.fakeConn, b.fakeConn, c.fakeConn)
	if rev, _ := head(t, mem, "doc"); rev != 0 {
		t.Fatalf("the store is at %d", rev)
	}

	st.release()
	// One message per revision per connection, in revision order.
	a.expectAck(t, 1, 1)
	a.expectOp(t, 2, b, `["Y"]`)
	b.expectOp(t, 1, a, `[3,"X"]`)
	b.expectAck(t, 1, 2)
	c.expectOp(t, 1, a, `[3,"X"]`)
	c.expectOp(t, 2, b, `["Y"]`)
	expectNothing(t, a.fakeConn, b.fakeConn, c.fakeConn)
	if rev, text := head(t, mem, "doc"); rev != 2 || text != "YabcX" {
		t.Fatalf("store: %d %q", rev, text)
	}
	// B's op waited for A's write: two writes of one append each. (The
	// committer counts a write after answering the hubs: poll.)
	want := collab.CommitStats{Writes: 2, Appends: 2, Records: 2}
	waitFor(t, fmt.Sprintf("stats %+v", want), func() bool { return m.Stats() == want })
}

// ---------------------------------------------------------------------------
// 2. The group commit writes many documents' appends in one write.

func TestGroupCommitMergesDocuments(t *testing.T) {
	t.Parallel()
	const docs, ops = 8, 5
	st, mem := newTestStore()
	st.setDelay(20 * time.Millisecond)
	m := newManager(t, st, collab.Config{})
	peers := make([]*peer, docs)
	for i := range peers {
		id := fmt.Sprintf("doc-%d", i)
		createDoc(t, mem, id, "")
		peers[i] = connect(t, m, id, info(fmt.Sprintf("s%d", i), -1))
	}
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			for k := int64(1); k <= ops; k++ {
				p.op(k-1, uint64(k), `["x"]`)
				ack, err := p.expectE("ack")
				if err == nil && (ack.Rev != k || ack.seq() != k) {
					err = fmt.Errorf("ack %v, want seq %d rev %d", ack, k, k)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range peers {
		if rev, text := head(t, mem, fmt.Sprintf("doc-%d", i)); rev != ops || text != strings.Repeat("x", ops) {
			t.Fatalf("doc %d: %d %q", i, rev, text)
		}
	}
	// The committer counts a write after answering the hubs: poll.
	waitFor(t, "the last write to be counted", func() bool { return m.Stats().Records == docs*ops })
	s := m.Stats()
	t.Logf("stats %+v", s)
	if s.Records != docs*ops || s.Appends != docs*ops {
		t.Fatalf("stats %+v: want %d records in %d appends", s, docs*ops, docs*ops)
	}
	if s.Records <= s.Writes || s.Appends <= s.Writes {
		t.Fatalf("stats %+v: no write carried several documents", s)
	}
}

// ---------------------------------------------------------------------------
// 3. A failed commit sends every client to resync and the document is
// reloaded from the store.

func TestCommitFailure(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "abc")
	createDoc(t, mem, "other", "o")
	m := newManager(t, st, collab.Config{})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)
	o := connect(t, m, "other", info("o", -1))

	st.failNext(1)
	a.op(0, 1, `[3,"X"]`)
	a.expectClose(t, collab.CloseResync)
	b.expectClose(t, collab.CloseResync)
	if rev, text := head(t, mem, "doc"); rev != 0 || text != "abc" {
		t.Fatalf("store after the failed commit: %d %q", rev, text)
	}
	// The other document is not affected.
	o.op(0, 1, `["p"]`)
	o.expectAck(t, 1, 1)

	// The next connection loads the document afresh: the failed op is not
	// there, and its resubmission is applied, once.
	a2 := connect(t, m, "doc", info("a", 0))
	if a2.hello.Rev != 0 || a2.hello.From == nil || *a2.hello.From != 0 || len(a2.hello.Ops) != 0 || len(a2.hello.Peers) != 0 {
		t.Fatalf("hello after the failure: %v", a2.hello)
	}
	a2.op(0, 1, `[3,"X"]`)
	a2.expectAck(t, 1, 1)
	b2 := connect(t, m, "doc", info("b", 0))
	if h := b2.hello; h.Rev != 1 || len(h.Ops) != 1 || h.Ops[0].Src != srcOf("a") || h.Ops[0].seq() != 1 || string(h.Ops[0].Op) != `[3,"X"]` {
		t.Fatalf("b's hello: %v", h)
	}
	a2.expectJoin(t, b2)
	// Resubmitted once more on a new connection: acknowledged, not applied.
	a3 := connect(t, m, "doc", info("a", 1))
	a2.expectJoin(t, a3)
	b2.expectJoin(t, a3)
	a3.op(0, 1, `[3,"X"]`)
	a3.expectAck(t, 1, 1)
	expectNothing(t, a2.fakeConn, b2.fakeConn)
	if rev, text := head(t, mem, "doc"); rev != 1 || text != "abcX" {
		t.Fatalf("store: %d %q", rev, text)
	}
	if n := submissions(t, mem, "doc", srcOf("a"), 1); n != 1 {
		t.Fatalf("(a, 1) committed %d times", n)
	}
	// The failed hub was detached at once; it ends when its clients have
	// disconnected (the manager's Close at the end of the test waits for it).
	if n := m.Open(); n != 2 {
		t.Fatalf("%d documents open", n)
	}
}

// ---------------------------------------------------------------------------
// 4. Exactly once, within one hub and across a restart.

func TestExactlyOnce(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	m1 := newManager(t, st, collab.Config{})
	a := connect(t, m1, "doc", info("a", -1))
	b := connect(t, m1, "doc", info("b", -1))
	a.expectJoin(t, b)
	a.op(0, 1, `["1"]`)
	a.expectAck(t, 1, 1)
	b.expectOp(t, 1, a, `["1"]`)
	a.op(1, 2, `["2"]`)
	a.expectAck(t, 2, 2)
	b.expectOp(t, 2, a, `["2"]`)

	// A second connection of source a resubmits: acknowledged with the
	// original revisions (the newest from memory, an older one from the
	// store's index), and nothing is applied.
	a2 := connect(t, m1, "doc", info("a", 2))
	a.expect(t, "join")
	b.expect(t, "join")
	a2.op(1, 2, `["2"]`)
	a2.expectAck(t, 2, 2)
	a2.op(0, 1, `["1"]`)
	a2.expectAck(t, 1, 1)
	// The connection that already got seq 2's ack does not get it twice.
	a.op(1, 2, `["2"]`)
	a.sel(99) // a barrier: answered rev_ahead
	a.expectError(t, collab.CodeRevAhead, -1)
	expectNothing(t, a.fakeConn, b.fakeConn)

	// seq counts from 1.
	a2.op(2, 0, `["0"]`)
	a2.expectError(t, collab.CodeBadSeq, 0)
	// A newer seq (gaps are fine) is a new op: acknowledged to the
	// connection that sent it; the source's other connections get the op
	// (a client with it in flight takes that as its ack, one without it
	// needs its content).
	a2.op(2, 5, `["5"]`)
	a2.expectAck(t, 5, 3)
	a.expectOp(t, 3, a2, `["5"]`)
	b.expectOp(t, 3, a2, `["5"]`)
	// An older seq that was never committed is refused.
	a2.op(3, 4, `["4"]`)
	a2.expectError(t, collab.CodeBadSeq, 4)
	if rev, text := head(t, mem, "doc"); rev != 3 || text != "521" {
		t.Fatalf("store: %d %q", rev, text)
	}

	// Restart: a new manager over the same store knows only the store.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := m1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*peer{a, a2, b} {
		p.expectClose(t, collab.CloseGoingAway)
	}
	m2 := newManager(t, st, collab.Config{})
	a3 := connect(t, m2, "doc", info("a", 3))
	if a3.hello.Rev != 3 || a3.hello.From == nil || *a3.hello.From != 3 {
		t.Fatalf("hello after the restart: %v", a3.hello)
	}
	b3 := connect(t, m2, "doc", info("b", 3))
	a3.expectJoin(t, b3)
	a3.op(2, 5, `["5"]`)
	a3.expectAck(t, 5, 3)
	a3.op(0, 1, `["1"]`)
	a3.expectAck(t, 1, 1)
	a3.op(1, 2, `["2"]`)
	a3.expectAck(t, 2, 2)
	a3.op(3, 4, `["4"]`)
	a3.expectError(t, collab.CodeBadSeq, 4)
	a3.op(3, 0, `["0"]`)
	a3.expectError(t, collab.CodeBadSeq, 0)
	expectNothing(t, b3.fakeConn)
	a3.op(3, 6, `["6"]`)
	a3.expectAck(t, 6, 4)
	b3.expectOp(t, 4, a3, `["6"]`)
	if rev, text := head(t, mem, "doc"); rev != 4 || text != "6521" {
		t.Fatalf("store: %d %q", rev, text)
	}
	for _, seq := range []uint64{1, 2, 5, 6} {
		if n := submissions(t, mem, "doc", srcOf("a"), seq); n != 1 {
			t.Errorf("(a, %d) committed %d times", seq, n)
		}
	}
}

// TestExactlyOnceWhileInFlight: resubmissions of an op that is accepted but
// not yet durable (from a new connection of the source, which did not get it
// in its hello, and from the original one) are neither applied again nor
// refused: every connection of the source gets exactly one answer when it
// is durable (the ack, or the op with its source and seq, which a client
// with that seq in flight takes for the ack).
func TestExactlyOnceWhileInFlight(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	m := newManager(t, st, collab.Config{})
	a1 := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a1.expectJoin(t, b)

	st.hold()
	a1.op(0, 1, `["x"]`)
	st.awaitHeld(t)
	a2 := connect(t, m, "doc", info("a", 0))
	if a2.hello.Rev != 0 || len(a2.hello.Ops) != 0 {
		t.Fatalf("hello while the op is in flight: %v", a2.hello)
	}
	a1.expectJoin(t, a2)
	b.expectJoin(t, a2)
	a2.op(0, 1, `["x"]`)
	a1.op(0, 1, `["x"]`)
	a2.sel(9) // a barrier: answered rev_ahead
	a2.expectError(t, collab.CodeRevAhead, -1)
	// The resend on the connection that sent it is a client's mistake
	// (its ack will answer the first); the other's is answered by the ack.
	a1.expectError(t, collab.CodeBadSeq, 1)
	expectNothing(t, a1.fakeConn, a2.fakeConn, b.fakeConn)

	st.release()
	a1.expectAck(t, 1, 1)
	a2.expectOp(t, 1, a1, `["x"]`)
	b.expectOp(t, 1, a1, `["x"]`)
	// Once more on a2, which has its ack: nothing; on a new connection: the
	// ack.
	a2.op(0, 1, `["x"]`)
	a3 := connect(t, m, "doc", info("a", 1))
	for _, p := range []*peer{a1, a2, b} {
		p.expectJoin(t, a3)
	}
	a3.op(0, 1, `["x"]`)
	a3.expectAck(t, 1, 1)
	expectNothing(t, a1.fakeConn, a2.fakeConn, b.fakeConn)
	if rev, text := head(t, mem, "doc"); rev != 1 || text != "x" {
		t.Fatalf("store: %d %q", rev, text)
	}
}

// ---------------------------------------------------------------------------
// 5. A connection that cannot take a message is closed for resync.

func TestSlowConnectionClosedForResync(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	m := newManager(t, st, collab.Config{})

	t.Run("broadcast", func(t *testing.T) {
		a := connect(t, m, "doc", info("a", -1))
		b := connect(t, m, "doc", info("b", -1))
		a.expectJoin(t, b)
		// The hub itself drops c: it does not wait for c's Disconnect.
		cConn := newConn()
		cConn.noDisconnect = true
		c := connectConn(t, m, "doc", info("c", -1), cConn)
		a.expectJoin(t, c)
		b.expectJoin(t, c)
		c.setFailSend(true)

		a.op(0, 1, `["x"]`)
		a.expectAck(t, 1, 1)
		a.expectLeave(t, c)
		b.expectOp(t, 1, a, `["x"]`)
		b.expectLeave(t, c)
		c.expectClose(t, collab.CloseResync)

		// The hub goes on serving the others, and c is out of presence.
		b.op(1, 1, `[1,"y"]`)
		b.expectAck(t, 1, 2)
		a.expectOp(t, 2, b, `[1,"y"]`)
		d := connect(t, m, "doc", info("d", 2))
		if len(d.hello.Peers) != 2 || len(d.hello.Ops) != 0 || d.hello.Rev != 2 {
			t.Fatalf("d's hello: %v", d.hello)
		}
		for _, p := range d.hello.Peers {
			if p.Client == c.id {
				t.Fatalf("d's hello shows c: %v", d.hello)
			}
		}
		a.expectJoin(t, d)
		b.expectJoin(t, d)
		// c's late Disconnect changes nothing.
		c.cl.Disconnect()
		a.sel(2, caret(0))
		b.expectSel(t, a, 2, caret(0))
		d.expectSel(t, a, 2, caret(0))
		expectNothing(t, a.fakeConn, b.fakeConn, c.fakeConn, d.fakeConn)
		for _, p := range []*peer{a, b, d} {
			p.cl.Disconnect()
		}
	})

	t.Run("join", func(t *testing.T) {
		g := connect(t, m, "doc", info("g", -1))
		e := connect(t, m, "doc", info("e", -1))
		g.expectJoin(t, e)
		e.setFailSend(true)
		f := connect(t, m, "doc", info("f", -1)) // e cannot take f's join
		if len(f.hello.Peers) != 2 {
			t.Fatalf("f's hello: %v", f.hello)
		}
		e.expectClose(t, collab.CloseResync)
		g.expectJoin(t, f)
		g.expectLeave(t, e)
		f.expectLeave(t, e)
		g.op(2, 1, `["z"]`)
		g.expectAck(t, 1, 3)
		f.expectOp(t, 3, g, `["z"]`)
		expectNothing(t, g.fakeConn, e.fakeConn, f.fakeConn)
	})
}

// ---------------------------------------------------------------------------
// 6. An idle document is unloaded with a final snapshot.

func TestIdleUnload(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "ab")
	m := newManager(t, st, collab.Config{IdleTimeout: 50 * time.Millisecond})
	a := connect(t, m, "doc", info("a", -1))
	for k := int64(1); k <= 3; k++ {
		a.op(k-1, uint64(k), `[1,"x"]`)
		a.expectAck(t, uint64(k), k)
	}
	if m.Open() != 1 {
		t.Fatalf("%d documents open", m.Open())
	}
	a.cl.Disconnect()
	waitFor(t, "the document to be unloaded", func() bool { return m.Open() == 0 })
	// The final snapshot is written by the hub on its way out.
	waitFor(t, "the final snapshot", func() bool {
		snap, err := mem.Snapshot(context.Background(), "doc", 3)
		return err == nil && snap.Rev == 3
	})
	if snap, _ := mem.Snapshot(context.Background(), "doc", 3); snap.Content != "axxxb" {
		t.Fatalf("snapshot %+v", snap)
	}

	// Reconnecting loads it again: the text, or the ops (from the store).
	a2 := connect(t, m, "doc", info("a", -1))
	if h := a2.hello; h.Rev != 3 || h.Text == nil || *h.Text != "axxxb" {
		t.Fatalf("hello after reload: %v", h)
	}
	b := connect(t, m, "doc", info("b", 1))
	if h := b.hello; h.Rev != 3 || h.Text != nil || h.From == nil || *h.From != 1 || len(h.Ops) != 2 ||
		h.Ops[0].Rev != 2 || h.Ops[0].Src != srcOf("a") || h.Ops[0].seq() != 2 || h.Ops[0].User != "user-a" || string(h.Ops[0].Op) != `[1,"x"]` ||
		h.Ops[1].Rev != 3 || h.Ops[1].seq() != 3 {
		t.Fatalf("catch-up hello after reload: %v", h)
	}
	a2.expectJoin(t, b)
	a2.op(3, 4, `[5,"!"]`)
	a2.expectAck(t, 4, 4)
	b.expectOp(t, 4, a2, `[5,"!"]`)
	if m.Open() != 1 {
		t.Fatalf("%d documents open", m.Open())
	}
}

// TestIdleUnloadAfterFailedConnect: a connection that cannot take its
// hello is closed for resync and leaves no client behind: the document is
// still unloaded when idle, even if the transport never reports the
// disconnect.
func TestIdleUnloadAfterFailedConnect(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	m := newManager(t, st, collab.Config{IdleTimeout: 20 * time.Millisecond})
	conn := newConn()
	conn.setFailSend(true)
	conn.noDisconnect = true
	if _, err := m.Connect(context.Background(), "doc", conn, info("a", -1)); err != nil {
		t.Fatalf("connect: %v", err)
	}
	conn.expectClose(t, collab.CloseResync)
	waitFor(t, "the document to be unloaded", func() bool { return m.Open() == 0 })
}

// ---------------------------------------------------------------------------
// 7. Shutdown finishes the commits in flight first.

func TestShutdownFinishesCommits(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	createDoc(t, mem, "other", "")
	m := newManager(t, st, collab.Config{})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)

	st.hold()
	a.op(0, 1, `["a"]`)
	st.awaitHeld(t)
	b.op(0, 1, `["b"]`) // accepted, waiting for the next write
	b.sel(0)            // barrier
	a.expectSel(t, b, 0)

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- m.Close(ctx) }()
	waitFor(t, "the shutdown to reach the hub", func() bool { return m.Open() == 0 })
	for _, id := range []string{"doc", "other"} {
		if _, err := m.Connect(context.Background(), id, newConn(), info("z", -1)); !errors.Is(err, collab.ErrShuttingDown) {
			t.Fatalf("connect to %s during shutdown: %v", id, err)
		}
	}
	// New ops are refused; the connections stay open until the pending
	// commits are done.
	a.op(0, 2, `["c"]`)
	a.expectError(t, collab.CodeInternal, 2)
	expectNothing(t, a.fakeConn, b.fakeConn)
	select {
	case err := <-closed:
		t.Fatalf("Close returned with a commit held: %v", err)
	default:
	}

	st.release()
	a.expectAck(t, 1, 1)
	a.expectOp(t, 2, b, `["b"]`)
	a.expectClose(t, collab.CloseGoingAway)
	b.expectOp(t, 1, a, `["a"]`)
	b.expectAck(t, 1, 2)
	b.expectClose(t, collab.CloseGoingAway)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	if rev, text := head(t, mem, "doc"); rev != 2 || text != "ba" {
		t.Fatalf("store: %d %q", rev, text)
	}
	if snap, err := mem.Snapshot(context.Background(), "doc", 2); err != nil || snap.Rev != 2 || snap.Content != "ba" {
		t.Fatalf("final snapshot: %+v %v", snap, err)
	}
	if _, err := m.Connect(context.Background(), "doc", newConn(), info("z", -1)); !errors.Is(err, collab.ErrShuttingDown) {
		t.Fatalf("connect after Close: %v", err)
	}
}

// ---------------------------------------------------------------------------
// 8. A deleted document's connections are closed with 4004.

func TestDocumentDeleted(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	createDoc(t, mem, "busy", "")
	m := newManager(t, st, collab.Config{})
	ctx := context.Background()

	m.DocumentDeleted(ctx, "not-open") // nothing to do
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)
	m.DocumentDeleted(ctx, "doc")
	a.expectClose(t, collab.CloseNotFound)
	b.expectClose(t, collab.CloseNotFound)
	if err := mem.DeleteDocument(ctx, "doc"); err != nil {
		t.Fatal(err)
	}
	var e *collab.Error
	if _, err := m.Connect(ctx, "doc", newConn(), info("a", -1)); !errors.As(err, &e) || e.Code != collab.CodeNotFound {
		t.Fatalf("connect to the deleted document: %v", err)
	}
	// A connection with shared budgets (address, user) that fails before
	// it reaches a document gives them back without one (it once
	// dereferenced the missing document).
	withBudgets := info("a", -1)
	withBudgets.Addr, withBudgets.Owner = "192.0.2.7", "owner-a"
	if _, err := m.Connect(ctx, "doc", newConn(), withBudgets); !errors.As(err, &e) || e.Code != collab.CodeNotFound {
		t.Fatalf("connect to the deleted document with budgets: %v", err)
	}

	// With a commit in flight: it is finished and acknowledged first.
	c := connect(t, m, "busy", info("c", -1))
	st.hold()
	c.op(0, 1, `["c"]`)
	st.awaitHeld(t)
	done := make(chan struct{})
	go func() { m.DocumentDeleted(ctx, "busy"); close(done) }()
	waitFor(t, "the document to be detached", func() bool { return m.Open() == 0 })
	expectNothing(t, c.fakeConn)
	st.release()
	c.expectAck(t, 1, 1)
	c.expectClose(t, collab.CloseNotFound)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("DocumentDeleted did not return")
	}
}

// ---------------------------------------------------------------------------
// 9. Hello: the text or the ops since the client's revision, and the peers.

func TestHello(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "héllo\n\"w\"")
	now := time.UnixMilli(1763800000123)
	m := newManager(t, st, collab.Config{CatchUpMax: 2, Now: func() time.Time { return now }})
	a := connect(t, m, "doc", info("a", -1))
	if h := a.hello; h.Title != "Title of doc" || h.Rev != 0 || h.Text == nil || *h.Text != "héllo\n\"w\"" || h.From != nil || h.Ops != nil || h.Peers == nil || len(h.Peers) != 0 {
		t.Fatalf("first hello: %v", h)
	}
	a.sel(0, ot.Selection{Anchor: 1, Head: 3}, caret(0))
	for k := int64(1); k <= 3; k++ {
		a.op(k-1, uint64(10+k), fmt.Sprintf(`[%d,"%d"]`, 2*k-1, k))
		a.expectAck(t, uint64(10+k), k)
	}
	// The text at rev 3 (the selection moved through the three ops).
	const text = "h1é2l3lo\n\"w\""
	cases := []struct {
		name    string
		lastRev int64
		from    int64 // -1: text
	}{
		{"nothing", -1, -1},
		{"from 0, too far behind", 0, -1},
		{"from 1", 1, 1},
		{"from 2", 2, 2},
		{"up to date", 3, 3},
		{"ahead", 4, -1},
	}
	for _, tc := range cases {
		p := connect(t, m, "doc", collab.ClientInfo{User: "u", Name: "n", Color: "c", LastRev: tc.lastRev})
		h := p.hello
		if h.Rev != 3 || h.Src == "" || h.Src == srcOf("a") {
			t.Fatalf("%s: %v", tc.name, h)
		}
		if tc.from < 0 {
			if h.Text == nil || *h.Text != text || h.From != nil || h.Ops != nil {
				t.Fatalf("%s: want the text: %v", tc.name, h)
			}
		} else {
			if h.Text != nil || h.From == nil || *h.From != tc.from || int64(len(h.Ops)) != 3-tc.from || h.Ops == nil {
				t.Fatalf("%s: want the ops from %d: %v", tc.name, tc.from, h)
			}
			for i, o := range h.Ops {
				k := tc.from + 1 + int64(i)
				if o.Type != "" || o.Rev != k || string(o.Op) != fmt.Sprintf(`[%d,"%d"]`, 2*k-1, k) || o.Client != a.id ||
					o.Src != srcOf("a") || o.seq() != 10+k || o.User != "user-a" || o.Time != now.UnixMilli() {
					t.Fatalf("%s: catch-up op %d: %v", tc.name, i, h)
				}
			}
		}
		if len(h.Peers) != 1 {
			t.Fatalf("%s: peers %v", tc.name, h)
		}
		if pr := h.Peers[0]; pr.Client != a.id || pr.User != "user-a" || pr.Name != "Name a" || pr.Color != "#a" ||
			fmt.Sprint(pr.Sel) != fmt.Sprint([]ot.Selection{{Anchor: 2, Head: 5}, caret(0)}) {
			t.Fatalf("%s: peer %v", tc.name, h)
		}
		a.expect(t, "join")
		p.cl.Disconnect()
		a.expect(t, "leave")
	}

	// Two peers: both listed with their selections; none for one without.
	b := connect(t, m, "doc", info("b", 3))
	a.expectJoin(t, b)
	b.sel(3, ot.Selection{Anchor: 4, Head: 1})
	a.expectSel(t, b, 3, ot.Selection{Anchor: 4, Head: 1})
	c := connect(t, m, "doc", info("c", 3))
	a.expectJoin(t, c)
	b.expectJoin(t, c)
	d := connect(t, m, "doc", info("d", 3))
	peers := map[string]string{}
	for _, p := range d.hello.Peers {
		peers[p.Client] = fmt.Sprint(p.Sel)
	}
	want := map[string]string{a.id: "[{2 5} {0 0}]", b.id: "[{4 1}]", c.id: "[]"}
	if fmt.Sprint(peers) != fmt.Sprint(want) {
		t.Fatalf("peers %v, want %v", peers, want)
	}
}

// ---------------------------------------------------------------------------
// 10. Presence: selections move through ops as they become durable.

func TestPresence(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "0123456789")
	m := newManager(t, st, collab.Config{})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)

	// Both carets at 5; selections are not sent back to their owner.
	a.sel(0, caret(5))
	b.expectSel(t, a, 0, caret(5))
	b.sel(0, caret(5), ot.Selection{Anchor: 5, Head: 7})
	a.expectSel(t, b, 0, caret(5), ot.Selection{Anchor: 5, Head: 7})

	// A types at its caret: its caret moves past its insert, B's stays
	// before it; B's range does not grow from an insert at its edge.
	a.op(0, 1, `[5,"XY"]`)
	a.expectAck(t, 1, 1)
	b.expectOp(t, 1, a, `[5,"XY"]`)
	c := connect(t, m, "doc", info("c", -1))
	sels := map[string]string{}
	for _, p := range c.hello.Peers {
		sels[p.Client] = fmt.Sprint(p.Sel)
	}
	if sels[a.id] != "[{7 7}]" || sels[b.id] != "[{5 5} {7 9}]" {
		t.Fatalf("selections after A's insert: %v", sels)
	}
	a.expectJoin(t, c)
	b.expectJoin(t, c)

	// Selections sent at an older revision are moved to the durable one
	// (with the side of their author) and broadcast at it.
	a.sel(0, caret(5))
	b.expectSel(t, a, 1, caret(7))
	c.expectSel(t, a, 1, caret(7))
	b.sel(0, caret(5))
	a.expectSel(t, b, 1, caret(5))
	c.expectSel(t, b, 1, caret(5))

	// Clamped to the document (12 code points at rev 1).
	c.sel(1, caret(50), ot.Selection{Anchor: 3, Head: 99})
	a.expectSel(t, c, 1, caret(12), ot.Selection{Anchor: 3, Head: 12})
	b.expectSel(t, c, 1, caret(12), ot.Selection{Anchor: 3, Head: 12})

	// Ahead of the document: refused, nothing broadcast.
	c.sel(2, caret(0))
	c.expectError(t, collab.CodeRevAhead, -1)
	// Deleting around carets collapses them.
	b.op(1, 1, `[4,{"d":"4XY5"}]`)
	b.expectAck(t, 1, 2)
	a.expectOp(t, 2, b, `[4,{"d":"4XY5"}]`)
	c.expectOp(t, 2, b, `[4,{"d":"4XY5"}]`)
	d := connect(t, m, "doc", info("d", 2))
	for _, p := range []*peer{a, b, c} {
		p.expectJoin(t, d)
	}
	sels = map[string]string{}
	for _, p := range d.hello.Peers {
		sels[p.Client] = fmt.Sprint(p.Sel)
	}
	if want := map[string]string{a.id: "[{4 4}]", b.id: "[{4 4}]", c.id: "[{8 8} {3 8}]"}; fmt.Sprint(sels) != fmt.Sprint(want) {
		t.Fatalf("selections after B's delete: %v, want %v", sels, want)
	}
	expectNothing(t, a.fakeConn, b.fakeConn, c.fakeConn)
}

// TestPresenceCrowd: above PresenceCrowd connections, selections wait for
// the presence tick and go out together (one frame, spliced into whatever
// else is queued), each mover's without its own.
func TestPresenceCrowd(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "0123456789")
	m := newManager(t, st, collab.Config{PresenceCrowd: 2, PresenceInterval: 10 * time.Millisecond})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)
	c := connect(t, m, "doc", info("c", -1))
	a.expectJoin(t, c)
	b.expectJoin(t, c)

	// (That a later selection replaces a waiting one is in the presence
	// transcript, where the tick's timing is explicit.)
	a.sel(0, caret(3))
	b.sel(0, caret(2))
	c.expectSel(t, a, 0, caret(3))
	c.expectSel(t, b, 0, caret(2))
	a.expectSel(t, b, 0, caret(2))
	b.expectSel(t, a, 0, caret(3))
	expectNothing(t, a.fakeConn, b.fakeConn, c.fakeConn)
}

// ---------------------------------------------------------------------------
// Errors answered by the hub and the client handle.

func TestOpErrors(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "abc")
	m := newManager(t, st, collab.Config{MaxInsertBytes: 8, MaxDocBytes: 16, HistoryInMemory: 1})
	ctx := context.Background()

	var e *collab.Error
	for _, tc := range []struct {
		doc  string
		ci   collab.ClientInfo
		code string
	}{
		{"no such doc", info("a", -1), collab.CodeNotFound},
		{"missing", info("a", -1), collab.CodeNotFound},
		{"doc", collab.ClientInfo{Source: strings.Repeat("s", 256)}, collab.CodeSourceDenied},
		{"doc", collab.ClientInfo{Source: srcOf("a")}, collab.CodeSourceDenied},
		{"doc", collab.ClientInfo{Source: srcOf("a"), Key: keyFor("b")}, collab.CodeSourceDenied},
		{"doc", collab.ClientInfo{Key: "short"}, collab.CodeSourceDenied},
		{"doc", collab.ClientInfo{Key: "not/url-safe/characters/here"}, collab.CodeSourceDenied},
		{"doc", collab.ClientInfo{Name: strings.Repeat("n", 257)}, collab.CodeBadMessage},
	} {
		if _, err := m.Connect(ctx, tc.doc, newConn(), tc.ci); !errors.As(err, &e) || e.Code != tc.code {
			t.Fatalf("connect %q %+v: %v, want %s", tc.doc, tc.ci, err, tc.code)
		}
	}

	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)
	a.cl.Handle([]byte(`{"type":"op","rev":0,"seq":7}`))
	a.expectError(t, collab.CodeInvalidOp, 7)
	a.cl.Handle([]byte(`{"type":"nope"}`))
	a.expectError(t, collab.CodeBadMessage, -1)
	a.op(1, 1, `["x"]`)
	a.expectError(t, collab.CodeRevAhead, 1)
	a.op(0, 1, `[4,"x"]`)
	a.expectError(t, collab.CodeInvalidOp, 1)
	a.op(0, 1, `[{"d":"abd"}]`)
	a.expectError(t, collab.CodeInvalidOp, 1)
	a.op(0, 1, `["123456789"]`)
	a.expectError(t, collab.CodeTooLarge, 1)
	expectNothing(t, b.fakeConn)
	// A rejected op changes nothing: the same seq goes through next.
	a.op(0, 1, `["12345678"]`)
	a.expectAck(t, 1, 1)
	b.expectOp(t, 1, a, `["12345678"]`)
	a.op(1, 2, `["12345678"]`) // 19 bytes
	a.expectError(t, collab.CodeTooLarge, 2)

	// An op based on a revision the hub no longer has in memory is
	// transformed through the store's records; past the retained history,
	// rev_too_old.
	for k := int64(2); k <= 5; k++ {
		b.op(k-1, uint64(k), `[{"d":1}]`)
		b.expectAck(t, uint64(k), k)
		a.expect(t, "op")
	}
	a.op(0, 2, `[3,"!"]`) // after "abc", moved to the end
	a.expectAck(t, 2, 6)
	b.expectOp(t, 6, a, `[7,"!"]`)
	if _, text := head(t, mem, "doc"); text != "5678abc!" {
		t.Fatalf("text %q", text)
	}
	if err := mem.Compact(ctx, "doc", 4); err != nil {
		t.Fatal(err)
	}
	a.op(3, 3, `["?"]`)
	a.expectError(t, collab.CodeRevTooOld, 3)
	b.sel(3, caret(0))
	b.expectError(t, collab.CodeRevTooOld, -1)
	a.op(4, 3, `["?"]`)
	a.expectAck(t, 3, 7)
	b.expectOp(t, 7, a, `["?"]`)
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "")
	var clock atomic.Int64
	clock.Store(time.Unix(1700000000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	m := newManager(t, st, collab.Config{RatePerSecond: 1, RateBurst: 2, Now: now})
	a := connect(t, m, "doc", info("a", -1))
	a.sel(0)
	a.op(0, 1, `["x"]`)
	a.expectAck(t, 1, 1)
	a.op(1, 2, `["y"]`)
	// The hint: one token a second, none left.
	if e := a.expectError(t, collab.CodeRateLimited, 2); e.RetryAfter != 1000 {
		t.Fatalf("retryAfter %d ms, want 1000: %v", e.RetryAfter, e)
	}
	a.sel(1)
	a.expectError(t, collab.CodeRateLimited, -1)
	clock.Add(int64(time.Second))
	a.op(1, 2, `["y"]`)
	a.expectAck(t, 2, 2)
}

// ---------------------------------------------------------------------------
// 11. ParseClientMessage.

func TestParseClientMessage(t *testing.T) {
	sels := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = `{"anchor":1,"head":2}`
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	ok := []struct {
		frame string
		want  collab.ClientMessage
	}{
		{`{"type":"op","rev":3,"seq":7,"op":[5,"x",{"d":"ab"}]}`,
			collab.ClientMessage{Type: "op", Rev: 3, Seq: 7, Op: doctype.PlainOp(ot.Op{ot.Skip(5), ot.Insert("x"), ot.DeleteText("ab")}), Span: 7}},
		// The trailing skip is normalized away, but its span is kept.
		{`{"type":"op","rev":1,"seq":2,"op":[{"d":2},3]}`,
			collab.ClientMessage{Type: "op", Rev: 1, Seq: 2, Op: doctype.PlainOp(ot.Op{ot.Delete(2)}), Span: 5}},
		{` {"seq":18446744073709551615,"op":[],"rev":0,"type":"op"} ` + "\n",
			collab.ClientMessage{Type: "op", Seq: 18446744073709551615, Op: doctype.PlainOp(ot.Op{})}},
		// Empty once normalized; refused by the document unless it is a
		// resubmission.
		{`{"type":"op","rev":0,"seq":3,"op":[5]}`,
			collab.ClientMessage{Type: "op", Seq: 3, Op: doctype.PlainOp(ot.Op{}), Span: 5}},
		{`{"type":"op","rev":9223372036854775807,"seq":1,"op":["😀\u00e9"]}`,
			collab.ClientMessage{Type: "op", Rev: 9223372036854775807, Seq: 1, Op: doctype.PlainOp(ot.Op{ot.Insert("😀é")})}},
		{`{"type":"sel","rev":2,"sel":[{"anchor":1,"head":4},{"anchor":9,"head":0}]}`,
			collab.ClientMessage{Type: "sel", Rev: 2, Sel: []ot.Selection{{Anchor: 1, Head: 4}, {Anchor: 9, Head: 0}}}},
		{`{"type":"sel","rev":0}`, collab.ClientMessage{Type: "sel"}},
		{`{"type":"sel","rev":0,"sel":` + sels(64) + `}`, collab.ClientMessage{Type: "sel", Sel: make([]ot.Selection, 64)}},
	}
	for _, tc := range ok {
		m, err := collab.ParseClientMessage(doctype.Plain(), []byte(tc.frame))
		if err != nil {
			t.Errorf("%s: %v", tc.frame, err)
			continue
		}
		if len(tc.want.Sel) == 64 {
			for i := range tc.want.Sel {
				tc.want.Sel[i] = ot.Selection{Anchor: 1, Head: 2}
			}
		}
		if fmt.Sprintf("%+v", m) != fmt.Sprintf("%+v", tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.frame, m, tc.want)
		}
	}

	const none = -1
	bad := []struct {
		frame string
		code  string
		seq   int64
	}{
		// Positions beyond any document.
		{`{"type":"sel","rev":0,"sel":[{"anchor":9223372036854775807,"head":0}]}`, collab.CodeBadMessage, none},
		// Not a protocol message.
		{"{\"type\":\"sel\",\"rev\":0,\"x\":\"\xff\"}", collab.CodeBadMessage, none},
		{``, collab.CodeBadMessage, none},
		{`   `, collab.CodeBadMessage, none},
		{`op`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0`, collab.CodeBadMessage, none},
		{`null`, collab.CodeBadMessage, none},
		{`"op"`, collab.CodeBadMessage, none},
		{`[{"type":"sel","rev":0}]`, collab.CodeBadMessage, none},
		{`{}`, collab.CodeBadMessage, none},
		{`{"type":""}`, collab.CodeBadMessage, none},
		{`{"type":1}`, collab.CodeBadMessage, none},
		{`{"type":"hello","rev":0}`, collab.CodeBadMessage, none},
		{`{"type":"ack","seq":1,"rev":0}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"extra":1}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":1,"op":[1],"client":"x"}`, collab.CodeBadMessage, none},
		// One message per frame, and nothing after it.
		{`{"type":"sel","rev":0}{"type":"sel","rev":0}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0} 1`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0}x`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0}]`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0}}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0}]]garbage`, collab.CodeBadMessage, none},
		// op: seq first; then rev, with the seq; then the op, with the seq.
		{`{"type":"op","rev":0,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":null,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":0,"op":[1]}`, collab.CodeBadSeq, 0},
		{`{"type":"op","rev":0,"seq":-1,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":1.5,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":"1","op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","rev":0,"seq":18446744073709551616,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","seq":4,"op":[1]}`, collab.CodeBadMessage, 4},
		{`{"type":"op","seq":4,"rev":null,"op":[1]}`, collab.CodeBadMessage, 4},
		{`{"type":"op","seq":4,"rev":-1,"op":[1]}`, collab.CodeBadMessage, 4},
		{`{"type":"op","seq":4,"rev":9223372036854775808,"op":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"op","seq":5,"rev":0}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":null}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":"x"}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":{}}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[0]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[-1]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[1.5]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[""]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[{"d":0}]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[{"d":""}]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[{"x":1}]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":["\ud83d"]}`, collab.CodeInvalidOp, 5},
		{`{"type":"op","seq":5,"rev":0,"op":[1,true]}`, collab.CodeInvalidOp, 5},
		// sel.
		{`{"type":"sel"}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":-1}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"sel":[{"anchor":-1,"head":0}]}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"sel":[{"anchor":0,"head":-1}]}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"sel":[1]}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"sel":[{"anchor":0,"head":0,"x":1}]}`, collab.CodeBadMessage, none},
		{`{"type":"sel","rev":0,"sel":` + sels(65) + `}`, collab.CodeBadMessage, none},
	}
	for _, tc := range bad {
		m, err := collab.ParseClientMessage(doctype.Plain(), []byte(tc.frame))
		if err == nil {
			t.Errorf("%q: accepted as %+v", tc.frame, m)
			continue
		}
		seq := int64(none)
		if err.HasSeq {
			seq = int64(err.Seq)
		}
		if err.Code != tc.code || seq != tc.seq || err.Message == "" {
			t.Errorf("%q: %v (seq %d), want %s with seq %d", tc.frame, err, seq, tc.code, tc.seq)
		}
		if !isZero(m) {
			t.Errorf("%q: error %v with the message %+v", tc.frame, err, m)
		}
		if !json.Valid(collab.EncodeError(err)) {
			t.Errorf("%q: error message %s is not JSON", tc.frame, collab.EncodeError(err))
		}
	}
}

func isZero(m collab.ClientMessage) bool {
	return m.Type == "" && m.Rev == 0 && m.Seq == 0 && m.Op.Parts() == 0 && m.Sel == nil
}

func FuzzParseClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"op","rev":3,"seq":7,"op":[5,"x",{"d":2},{"d":"ab"}]}`,
		`{"type":"op","rev":0,"seq":1,"op":["\ud83d\ude00"]}`,
		`{"type":"op","seq":4,"rev":-1,"op":[1]}`,
		`{"type":"op","seq":5,"rev":0,"op":[{"d":0}]}`,
		`{"type":"sel","rev":2,"sel":[{"anchor":1,"head":4}]}`,
		`{"type":"sel","rev":0}]`,
		`{"type":"sel","rev":0}{}`,
		`[{"type":"sel","rev":0}]`,
		`null`,
		"\xff",
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := collab.ParseClientMessage(doctype.Plain(), frame)
		if err != nil {
			if !isZero(m) {
				t.Fatalf("%q: error %v with the message %+v", frame, err, m)
			}
			if err.Code != collab.CodeBadMessage && err.Code != collab.CodeInvalidOp && err.Code != collab.CodeBadSeq {
				t.Fatalf("%q: code %s", frame, err.Code)
			}
			if !err.HasSeq && err.Seq != 0 {
				t.Fatalf("%q: seq %d without HasSeq", frame, err.Seq)
			}
			if b := collab.EncodeError(err); !json.Valid(b) {
				t.Fatalf("%q: error message %s is not JSON", frame, b)
			}
			return
		}
		if !json.Valid(frame) {
			t.Fatalf("%q: not JSON, accepted as %+v", frame, m)
		}
		switch m.Type {
		case "op":
			if m.Rev < 0 || m.Sel != nil {
				t.Fatalf("%q: %+v", frame, m)
			}
			if cerr := m.Op.Check(); cerr != nil {
				t.Fatalf("%q: accepted a bad op: %v", frame, cerr)
			}
			b, merr := m.Op.MarshalJSON()
			if merr != nil {
				t.Fatalf("%q: op does not encode: %v", frame, merr)
			}
			if again, _, perr := doctype.Plain().ParseOp(b); perr != nil || again.String() != m.Op.String() {
				t.Fatalf("%q: op %s does not round-trip: %v", frame, b, perr)
			}
		case "sel":
			if m.Rev < 0 || len(m.Sel) > 64 || m.Op.Parts() != 0 || m.Seq != 0 {
				t.Fatalf("%q: %+v", frame, m)
			}
			for _, s := range m.Sel {
				if s.Anchor < 0 || s.Head < 0 {
					t.Fatalf("%q: %+v", frame, m)
				}
			}
		default:
			t.Fatalf("%q: type %q accepted", frame, m.Type)
		}
	})
}

// TestQuietDocumentsHoldNoGoroutine: an open document whose clients are
// quiet holds no goroutine (a driver runs only while it has events), so
// thousands of small documents cost no stacks while they wait; and one
// that wakes up still answers.
func TestQuietDocumentsHoldNoGoroutine(t *testing.T) {
	const docs = 200
	st := memstore.New()
	m := newManager(t, st, collab.Config{})
	createDoc(t, st, "doc-base", "")
	base := connect(t, m, "doc-base", info("base", -1))
	before := runtime.NumGoroutine()
	peers := make([]*peer, docs)
	for i := range peers {
		id := fmt.Sprintf("doc-%d", i)
		createDoc(t, st, id, "")
		peers[i] = connect(t, m, id, info(fmt.Sprintf("q%d", i), -1))
	}
	if open := m.Open(); open != docs+1 {
		t.Fatalf("%d documents open, want %d", open, docs+1)
	}
	// Goroutines that took the joins end soon after: wait for them. (On
	// the driver that held one per document, this never comes.)
	var now int
	waitFor(t, fmt.Sprintf("the goroutines to come back near the %d before %d quiet documents opened", before, docs), func() bool {
		now = runtime.NumGoroutine()
		return now-before < docs/4
	})
	t.Logf("%d quiet documents open: %d → %d goroutines", docs, before, now)
	for _, p := range []*peer{peers[0], peers[docs-1], base} {
		p.op(0, 1, `["x"]`)
		p.expectAck(t, 1, 1)
	}
}

// TestCaretTravelsWithItsEdit: a caret sent right after an edit, while the
// edit is on its way to disk, reaches the others in the same frame as the
// op (one write per peer instead of two), moved through it.
func TestCaretTravelsWithItsEdit(t *testing.T) {
	t.Parallel()
	st, mem := newTestStore()
	createDoc(t, mem, "doc", "abc")
	m := newManager(t, st, collab.Config{})
	a := connect(t, m, "doc", info("a", -1))
	b := connect(t, m, "doc", info("b", -1))
	a.expectJoin(t, b)
	st.hold()
	a.op(0, 1, `[1,"x"]`)
	st.awaitHeld(t)
	a.sel(0, caret(1))
	// A selection ahead of the document is refused by the document, after
	// the caret before it: once a hears of it, the caret has been taken
	// while the commit was held.
	a.sel(5, caret(0))
	a.expectError(t, collab.CodeRevAhead, -1)
	b.mu.Lock()
	frames := b.frames
	b.mu.Unlock()
	st.release()
	a.expectAck(t, 1, 1)
	b.expectOp(t, 1, a, `[1,"x"]`)
	b.expectSel(t, a, 1, caret(2)) // the author's caret moves past its insert
	b.mu.Lock()
	n := b.frames - frames
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("the op and the caret came in %d frames, want 1:%s", n, b.dump())
	}
}
