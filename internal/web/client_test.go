package web_test

// Test clients for the WebSocket protocol (docs/protocol.md): a typed
// connection that unpacks batched frames, and otClient, a ShareDB-style OT
// client state machine, plus helpers for the HTTP API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
)

// msg is any server message.
type msg struct {
	Type     string         `json:"type"`
	Protocol int            `json:"protocol"`
	Doc      string         `json:"doc"`
	Title    string         `json:"title"`
	Client   string         `json:"client"`
	Src      string         `json:"src"`
	Key      string         `json:"key"`
	Rev      int64          `json:"rev"`
	Seq      *uint64        `json:"seq"`
	Op       ot.Op          `json:"op"`
	User     string         `json:"user"`
	Name     string         `json:"name"`
	Color    string         `json:"color"`
	Time     int64          `json:"time"`
	Text     *string        `json:"text"`
	From     *int64         `json:"from"`
	Ops      []msg          `json:"ops"`
	Peers    []msg          `json:"peers"`
	Sel      []ot.Selection `json:"sel"`
	Code     string         `json:"code"`
	Message  string         `json:"message"`
	received time.Time
}

func (m msg) String() string {
	b, _ := json.Marshal(struct {
		Type, Code, Message, Client, Src string
		Rev                              int64
		Seq                              *uint64
		Op                               ot.Op
	}{m.Type, m.Code, m.Message, m.Client, m.Src, m.Rev, m.Seq, m.Op})
	return string(b)
}

func (m msg) seq() uint64 {
	if m.Seq == nil {
		return 0
	}
	return *m.Seq
}

// parseFrame decodes one server frame: one message or an array of them.
func parseFrame(data []byte) ([]msg, error) {
	now := time.Now()
	var out []msg
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, fmt.Errorf("frame %.200s: %w", data, err)
		}
		if len(out) < 2 {
			return nil, fmt.Errorf("batched frame with %d messages: %.200s", len(out), data)
		}
	} else {
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("frame %.200s: %w", data, err)
		}
		out = []msg{m}
	}
	for i := range out {
		out[i].received = now
	}
	return out, nil
}

// wsURL is the WebSocket address of a document with a query.
func (ts *testServer) wsURL(doc string, q url.Values) string {
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/api/docs/" + doc + "/ws"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// conn is a WebSocket connection whose frames a goroutine reads into an
// unbounded queue (so that a test client never pushes back on the server
// unless it means to), unpacking batched frames.
type conn struct {
	ws *websocket.Conn

	mu     sync.Mutex
	queue  []msg
	err    error // the read error that ended the reader, once the queue is drained
	notify chan struct{}
	frames int
}

// dialConn opens a connection and starts its reader.
func dialConn(ctx context.Context, u string, hdr http.Header) (*conn, *http.Response, error) {
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &conn{ws: ws, notify: make(chan struct{}, 1)}
	go c.readLoop()
	return c, resp, nil
}

func (c *conn) readLoop() {
	for {
		_, data, err := c.ws.ReadMessage()
		var ms []msg
		if err == nil {
			ms, err = parseFrame(data)
		}
		c.mu.Lock()
		if err != nil {
			c.err = err
		} else {
			c.queue = append(c.queue, ms...)
			c.frames++
		}
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

var errTimeout = errors.New("timed out waiting for a message")

// next returns the next message, waiting until deadline. Once the queue is
// empty and the connection is gone it returns the read error (a
// *websocket.CloseError for a close frame).
func (c *conn) next(deadline time.Time) (msg, error) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			m := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return m, nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return msg{}, err
		}
		d := time.Until(deadline)
		if d <= 0 {
			return msg{}, errTimeout
		}
		timer := time.NewTimer(d)
		select {
		case <-c.notify:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// pending reports whether a message is waiting or the connection ended.
func (c *conn) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) > 0 || c.err != nil
}

func (c *conn) send(s string) error {
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

func (c *conn) close() { c.ws.Close() }

// closeCode waits for the connection to end and returns its close code
// (1006 for a connection that ended without a close frame), skipping
// messages; skipped collects them.
func (c *conn) closeCode(deadline time.Time) (code int, skipped []msg, err error) {
	for {
		m, err := c.next(deadline)
		if err == nil {
			skipped = append(skipped, m)
			continue
		}
		if errors.Is(err, errTimeout) {
			return 0, skipped, err
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, skipped, nil
		}
		return websocket.CloseAbnormalClosure, skipped, nil
	}
}

// tconn wraps conn for use on the test goroutine: failures are fatal.
type tconn struct {
	*conn
	t testing.TB
}

func (ts *testServer) open(t testing.TB, doc string, q url.Values) *tconn {
	t.Helper()
	c, _, err := dialConn(context.Background(), ts.wsURL(doc, q), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", doc, err)
	}
	t.Cleanup(c.close)
	return &tconn{conn: c, t: t}
}

const wait = 5 * time.Second

func (c *tconn) next() msg {
	c.t.Helper()
	m, err := c.conn.next(time.Now().Add(wait))
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// expectAnswer expects the answer to an op this connection's source sent:
// an ack, or (when another connection of the source sent it first) the op
// itself, with the source's src.
func (c *tconn) expectAnswer(src string) msg {
	c.t.Helper()
	for {
		m := c.next()
		switch {
		case m.Type == "ack", m.Type == "op" && m.Src == src:
			return m
		case m.Type == "join", m.Type == "leave", m.Type == "sel":
			continue
		}
		c.t.Fatalf("got %v while waiting for the answer to an op of %s", m, src)
	}
}

// expect skips presence messages (join, leave, sel) until one of type typ
// and fails on anything else.
func (c *tconn) expect(typ string) msg {
	c.t.Helper()
	for {
		m := c.next()
		if m.Type == typ {
			return m
		}
		switch m.Type {
		case "join", "leave", "sel":
			continue
		}
		c.t.Fatalf("got %v while waiting for %s", m, typ)
	}
}

func (c *tconn) send(s string) {
	c.t.Helper()
	if err := c.conn.send(s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *tconn) sendOp(rev int64, seq uint64, op string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":%s}`, rev, seq, op))
}

// otClient is a ShareDB-style client: it keeps at most one op in flight
// and composes local edits made meanwhile into a buffer; it transforms both
// against remote ops (its own ops on the left), sends the buffer when the
// in-flight op is acknowledged, and after a reconnect catches up from its
// last revision and resends the op in flight with the same seq.
type otClient struct {
	name string
	ts   *testServer
	doc  string
	src  string
	key  string // proves the source: issued in the first hello
	c    *conn
	id   string // this connection's client id

	text        string
	rev         int64
	seq         uint64 // the last seq used
	inflight    ot.Op  // nil: synchronized
	inflightSeq uint64
	inflightRev int64 // the revision the in-flight op was last sent against
	buffer      ot.Op
	sentAt      time.Time

	acks, remote, resent, reconnects int
	maxAckLatency                    time.Duration
	// dropped are the seqs the server answered invalid_op for an op that
	// others' edits (which the client had by then) reduced to nothing:
	// never committed.
	dropped []uint64

	// observe, if set, sees every message handled (presence included).
	observe func(msg)
}

// newOTClient connects a client with a new source (the server assigns one)
// and takes the document from hello.
func newOTClient(ctx context.Context, ts *testServer, doc, name string) (*otClient, error) {
	cl := &otClient{name: name, ts: ts, doc: doc, rev: -1}
	if err := cl.connect(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *otClient) query() url.Values {
	q := url.Values{"name": {cl.name}, "user": {cl.name}}
	if cl.key != "" {
		q.Set("key", cl.key)
	}
	if cl.rev >= 0 {
		q.Set("rev", fmt.Sprint(cl.rev))
	}
	return q
}

// connect opens a connection and processes hello: the text for a new
// client, the catch-up ops for a reconnecting one, after which the op in
// flight (unless the catch-up acknowledged it) is resent with its seq.
func (cl *otClient) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	c, _, err := dialConn(ctx, cl.ts.wsURL(cl.doc, cl.query()), nil)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", cl.name, err)
	}
	hello, err := c.next(time.Now().Add(wait))
	if err != nil {
		c.close()
		return fmt.Errorf("%s: hello: %w", cl.name, err)
	}
	if hello.Type != "hello" || hello.Protocol != collab.ProtocolVersion || hello.Doc != cl.doc || hello.Client == "" || hello.Src == "" {
		c.close()
		return fmt.Errorf("%s: bad hello %+v", cl.name, hello)
	}
	if cl.src != "" && hello.Src != cl.src {
		c.close()
		return fmt.Errorf("%s: hello src %q, want %q", cl.name, hello.Src, cl.src)
	}
	if cl.c != nil {
		cl.c.close()
	}
	cl.c, cl.id, cl.src = c, hello.Client, hello.Src
	if hello.Key != "" {
		cl.key = hello.Key
	}
	switch {
	case cl.rev < 0:
		if hello.Text == nil || hello.From != nil {
			return fmt.Errorf("%s: first hello without text: %+v", cl.name, hello)
		}
		cl.text, cl.rev = *hello.Text, hello.Rev
		return nil
	case hello.From == nil:
		return fmt.Errorf("%s: reconnected with rev %d, got text at %d instead of ops", cl.name, cl.rev, hello.Rev)
	case *hello.From != cl.rev:
		return fmt.Errorf("%s: reconnected with rev %d, hello from %d", cl.name, cl.rev, *hello.From)
	case int64(len(hello.Ops)) != hello.Rev-cl.rev:
		return fmt.Errorf("%s: hello from %d to %d with %d ops", cl.name, cl.rev, hello.Rev, len(hello.Ops))
	}
	cl.reconnects++
	hadInflight, inflightSeq := cl.inflight != nil, cl.inflightSeq
	for _, m := range hello.Ops {
		m.Type = "op"
		if cl.inflight != nil && m.Src == cl.src && m.seq() == cl.inflightSeq {
			m = msg{Type: "ack", Rev: m.Rev, Seq: m.Seq, received: time.Now()}
		}
		if err := cl.handle(m); err != nil {
			return err
		}
	}
	if cl.rev != hello.Rev {
		return fmt.Errorf("%s: after catch-up at %d, hello said %d", cl.name, cl.rev, hello.Rev)
	}
	if hadInflight && cl.inflight != nil && cl.inflightSeq == inflightSeq {
		// Not acknowledged by the catch-up: resend, same seq.
		cl.resent++
		return cl.sendInflight()
	}
	return nil
}

func (cl *otClient) sendInflight() error {
	b, err := cl.inflight.MarshalJSON()
	if err != nil {
		return err
	}
	cl.inflightRev = cl.rev
	cl.sentAt = time.Now()
	return cl.c.send(fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":%s}`, cl.rev, cl.inflightSeq, b))
}

// edit applies a local edit and sends or buffers it.
func (cl *otClient) edit(op ot.Op) error {
	text, err := ot.Apply(cl.text, op)
	if err != nil {
		return fmt.Errorf("%s: local edit %v on %q: %w", cl.name, op, cl.text, err)
	}
	cl.text = text
	switch {
	case len(op) == 0:
		// The server refuses empty ops: nothing to send.
	case cl.inflight == nil:
		cl.seq++
		cl.inflight, cl.inflightSeq = op, cl.seq
		return cl.sendInflight()
	case cl.buffer == nil:
		cl.buffer = op
	default:
		if cl.buffer, err = ot.Compose(cl.buffer, op); err != nil {
			return fmt.Errorf("%s: compose: %w", cl.name, err)
		}
	}
	return nil
}

// handle processes one server message.
func (cl *otClient) handle(m msg) error {
	if cl.observe != nil {
		cl.observe(m)
	}
	switch m.Type {
	case "op":
		if m.Src == cl.src && cl.inflight != nil && m.Seq != nil && *m.Seq == cl.inflightSeq {
			// Our in-flight op, committed, sent to us as the op: another
			// connection of ours sent it first (docs/protocol.md). Its ack.
			m.Type = "ack"
		}
	}
	switch m.Type {
	case "ack":
		if cl.inflight == nil || m.Seq == nil || *m.Seq != cl.inflightSeq {
			return fmt.Errorf("%s: unexpected ack %v (in flight: %v seq %d)", cl.name, m, cl.inflight, cl.inflightSeq)
		}
		if m.Rev != cl.rev+1 {
			return fmt.Errorf("%s: ack at rev %d, the client is at %d", cl.name, m.Rev, cl.rev)
		}
		cl.rev = m.Rev
		cl.acks++
		if !m.received.IsZero() {
			cl.maxAckLatency = max(cl.maxAckLatency, m.received.Sub(cl.sentAt))
		}
		return cl.sendBuffer()
	case "op":
		if m.Rev != cl.rev+1 {
			return fmt.Errorf("%s: op at rev %d, the client is at %d: %v", cl.name, m.Rev, cl.rev, m)
		}
		if m.Src == cl.src {
			return fmt.Errorf("%s: got its own op as an op message: %v", cl.name, m)
		}
		server := m.Op
		var err error
		if cl.inflight != nil {
			if cl.inflight, server, err = transformPair(cl.inflight, server); err != nil {
				return fmt.Errorf("%s: transform in-flight: %w", cl.name, err)
			}
		}
		if cl.buffer != nil {
			if cl.buffer, server, err = transformPair(cl.buffer, server); err != nil {
				return fmt.Errorf("%s: transform buffer: %w", cl.name, err)
			}
		}
		if cl.text, err = ot.Apply(cl.text, server); err != nil {
			return fmt.Errorf("%s: apply remote %v: %w", cl.name, m, err)
		}
		cl.rev = m.Rev
		cl.remote++
	case "error":
		if m.Code == collab.CodeInvalidOp && m.Seq != nil && cl.inflight != nil && *m.Seq == cl.inflightSeq && cl.inflight.IsNoop() {
			// Nothing to commit: the server's answer to an op that came to
			// nothing. Drop it, as the real clients do.
			cl.dropped = append(cl.dropped, cl.inflightSeq)
			return cl.sendBuffer()
		}
		return fmt.Errorf("%s: server error %v", cl.name, m)
	case "hello":
		return fmt.Errorf("%s: second hello", cl.name)
	}
	return nil
}

// sendBuffer makes the buffered edits the op in flight, once nothing is.
func (cl *otClient) sendBuffer() error {
	cl.inflight, cl.buffer = cl.buffer, nil
	if len(cl.inflight) == 0 {
		cl.inflight = nil // edits that cancelled out: nothing to send
		return nil
	}
	cl.seq++
	cl.inflightSeq = cl.seq
	return cl.sendInflight()
}

// transformPair transforms a local op and a server op against each other:
// local ops take the left side, as on the server.
func transformPair(local, server ot.Op) (ot.Op, ot.Op, error) {
	l, err := ot.Transform(local, server, ot.Left)
	if err != nil {
		return nil, nil, err
	}
	s, err := ot.Transform(server, local, ot.Right)
	if err != nil {
		return nil, nil, err
	}
	return l, s, nil
}

// pump processes the messages that arrived, waiting for one until
// deadline.
func (cl *otClient) pump(deadline time.Time) error {
	m, err := cl.c.next(deadline)
	if errors.Is(err, errTimeout) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: connection: %w", cl.name, err)
	}
	if err := cl.handle(m); err != nil {
		return err
	}
	for cl.c.pending() {
		m, err := cl.c.next(time.Now())
		if err != nil {
			return fmt.Errorf("%s: connection: %w", cl.name, err)
		}
		if err := cl.handle(m); err != nil {
			return err
		}
	}
	return nil
}

// settle processes messages until the client is synchronized at rev or
// beyond.
func (cl *otClient) settle(rev int64, deadline time.Time) error {
	for cl.inflight != nil || cl.buffer != nil || cl.rev < rev {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not settled at %d: rev %d, in flight %v, buffer %v", cl.name, rev, cl.rev, cl.inflight, cl.buffer)
		}
		if err := cl.pump(deadline); err != nil {
			return err
		}
	}
	return nil
}

// Ops for random edits.

func insertAt(pos int, s string) ot.Op {
	if pos == 0 {
		return ot.Op{ot.Insert(s)}
	}
	return ot.Op{ot.Skip(pos), ot.Insert(s)}
}

func deleteAt(pos, n int) ot.Op {
	if pos == 0 {
		return ot.Op{ot.Delete(n)}
	}
	return ot.Op{ot.Skip(pos), ot.Delete(n)}
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// HTTP API helpers.

type docJSON struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Rev     int64     `json:"rev"`
	Oldest  int64     `json:"oldest"`
	Text    *string   `json:"text"`
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call does an HTTP request and decodes the JSON response into out
// (unless nil), returning the status.
func (ts *testServer) call(method, path string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s: %w", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, nil
}

func (ts *testServer) getDoc(t testing.TB, id string) docJSON {
	t.Helper()
	var d docJSON
	status, err := ts.call("GET", "/api/docs/"+id, nil, &d)
	if err != nil || status != http.StatusOK || d.Text == nil {
		t.Fatalf("GET doc %s: %d %v %+v", id, status, err, d)
	}
	return d
}

func (ts *testServer) textAt(t testing.TB, id string, rev int64) string {
	t.Helper()
	var out struct {
		ID   string
		Rev  int64
		Text *string
	}
	status, err := ts.call("GET", fmt.Sprintf("/api/docs/%s/text?rev=%d", id, rev), nil, &out)
	if err != nil || status != http.StatusOK || out.Text == nil || out.Rev != rev || out.ID != id {
		t.Fatalf("GET text %s@%d: %d %v %+v", id, rev, status, err, out)
	}
	return *out.Text
}

type opRecord struct {
	Rev  int64     `json:"rev"`
	Op   ot.Op     `json:"op"`
	User string    `json:"user"`
	Src  string    `json:"src"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
}

// history reads the records from+1..to through GET /ops, page by page.
func (ts *testServer) history(t testing.TB, id string, from, to int64) []opRecord {
	t.Helper()
	var all []opRecord
	for from < to {
		var page struct {
			From, To, Head int64
			Ops            []opRecord
		}
		status, err := ts.call("GET", fmt.Sprintf("/api/docs/%s/ops?from=%d", id, from), nil, &page)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET ops %s from %d: %d %v", id, from, status, err)
		}
		if page.From != from || page.To <= from || int64(len(page.Ops)) != page.To-page.From {
			t.Fatalf("GET ops %s from %d: page %d..%d with %d ops", id, from, page.From, page.To, len(page.Ops))
		}
		for i, r := range page.Ops {
			if r.Rev != from+1+int64(i) {
				t.Fatalf("GET ops %s: record %d has rev %d", id, from+1+int64(i), r.Rev)
			}
		}
		all = append(all, page.Ops...)
		from = page.To
	}
	return all
}

// replay applies records to text.
func replay(t testing.TB, text string, recs []opRecord) string {
	t.Helper()
	for _, r := range recs {
		var err error
		if text, err = ot.Apply(text, r.Op); err != nil {
			t.Fatalf("replay rev %d %v: %v", r.Rev, r.Op, err)
		}
	}
	return text
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// smallRecvBufDialer dials with a small socket receive buffer, so that a
// client that stops reading pushes back on the server quickly.
var smallRecvBufDialer = &websocket.Dialer{
	HandshakeTimeout: wait,
	NetDialContext: (&net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}).DialContext,
}

// ownedKey returns a source key for a test client named label (keys are
// 22 or more URL-safe characters).
func ownedKey(label string) string { return "key-" + label + "-0123456789abcdefgh" }

// owned returns a key for label and the source it owns.
func owned(label string) (key, src string) {
	key = ownedKey(label)
	return key, collab.SourceOf(key)
}
