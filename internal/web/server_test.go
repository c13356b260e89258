package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// testServer is a real server: Badger in a temp dir, the collab manager,
// the HTTP routes, on a real listener.
type testServer struct {
	*httptest.Server
	store *badgerstore.Store
	mgr   *collab.Manager
	srv   *web.Server
	opts  serverOpts
	stop  sync.Once
	// refuseWebSockets, while set, answers every WebSocket upgrade with 503
	// as an unreachable server would, leaving open connections alone.
	refuseWebSockets atomic.Bool
}

// serverOpts configure a test server. Logger, Store and Manager are filled
// in; dir "" means a new temp dir.
type serverOpts struct {
	collab collab.Config
	web    web.Config
	dir    string
	// wrap, if set, wraps the store the manager and the routes use.
	wrap func(storage.Store) storage.Store
	// sendBuffer, if > 0, is the socket send buffer of the server's
	// connections (no autotuning): a client that stops reading pushes back
	// on the server after kilobytes instead of megabytes.
	sendBuffer int
	// logger, if set, is the server's (default: discard, or stderr with
	// TANDEM_TEST_LOG).
	logger *slog.Logger
	// addr, if set, is the address to listen on (restartAt).
	addr string
	// noAdminToken leaves web.AdminToken empty (otherwise testAdminToken).
	noAdminToken bool
}

// testAdminToken is the admin token of the test servers (unless a test
// sets web.AdminToken itself).
const testAdminToken = "test-admin-token-0123456789abcdef"

// asAdmin adds the test servers' admin token to req.
func asAdmin(req *http.Request) *http.Request {
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	return req
}

// deleteDoc deletes document id with the admin token and returns the
// status and error code.
func (ts *testServer) deleteDoc(t testing.TB, id string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/api/docs/"+id, nil)
	resp, err := http.DefaultClient.Do(asAdmin(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiErr
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}

type sendBufferListener struct {
	net.Listener
	size int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

func newTestServer(t *testing.T, cfg collab.Config) *testServer {
	t.Helper()
	return startServer(t, serverOpts{collab: cfg})
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.logger != nil {
		log = o.logger
	}
	store, err := badgerstore.Open(badgerstore.Options{Dir: o.dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var st storage.Store = store
	if o.wrap != nil {
		st = o.wrap(store)
	}
	ccfg := o.collab
	ccfg.Logger = log
	mgr := collab.NewManager(st, ccfg)
	wcfg := o.web
	wcfg.Store, wcfg.Manager, wcfg.Logger = st, mgr, log
	if wcfg.AdminToken == "" && !o.noAdminToken {
		wcfg.AdminToken = testAdminToken
	}
	srv := web.New(wcfg)
	ts := &testServer{store: store, mgr: mgr, srv: srv, opts: o}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ts.refuseWebSockets.Load() && strings.HasSuffix(r.URL.Path, "/ws") {
			http.Error(w, "the test refuses WebSockets", http.StatusServiceUnavailable)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	if o.addr != "" {
		ln, err := net.Listen("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		hs.Listener.Close()
		hs.Listener = ln
	}
	if o.sendBuffer > 0 {
		hs.Listener = sendBufferListener{hs.Listener, o.sendBuffer}
	}
	hs.Start()
	ts.Server = hs
	t.Cleanup(ts.shutdown)
	return ts
}

// shutdown stops the server the way the binary does: hubs first (they
// finish their commits and close their connections), then melody, the
// listener, and Badger. It is idempotent.
func (ts *testServer) shutdown() {
	ts.stop.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.mgr.Close(ctx)
		ts.srv.Close(ctx)
		ts.Server.CloseClientConnections()
		ts.Server.Close()
		ts.store.Close()
	})
}

// restart shuts ts down and starts a new server on the same data directory
// (on a new address).
func (ts *testServer) restart(t testing.TB) *testServer {
	t.Helper()
	ts.shutdown()
	return startServer(t, ts.opts)
}

// restartAt starts a new server on ts's data directory and address (the
// same origin for a browser), after ts was shut down.
func (ts *testServer) restartAt(t testing.TB) *testServer {
	t.Helper()
	ts.shutdown()
	o := ts.opts
	o.addr = ts.Listener.Addr().String()
	return startServer(t, o)
}

func (ts *testServer) createDoc(t testing.TB, title, text string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"title": title, "text": text})
	resp, err := http.Post(ts.URL+"/api/docs", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.ID
}

// wsClient reads server messages, unpacking batched frames.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	buf  []map[string]any
}

func (ts *testServer) dial(t *testing.T, docID, query string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/api/docs/" + docID + "/ws"
	if query != "" {
		u += "?" + query
	}
	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) next() map[string]any {
	c.t.Helper()
	for len(c.buf) == 0 {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if data[0] == '[' {
			if err := json.Unmarshal(data, &c.buf); err != nil {
				c.t.Fatalf("frame %s: %v", data, err)
			}
		} else {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				c.t.Fatalf("frame %s: %v", data, err)
			}
			c.buf = append(c.buf, m)
		}
	}
	m := c.buf[0]
	c.buf = c.buf[1:]
	return m
}

// expect skips presence messages until one of type typ.
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	for {
		m := c.next()
		if m["type"] == typ {
			return m
		}
		if m["type"] == "error" && typ != "error" {
			c.t.Fatalf("got error %v while waiting for %s", m, typ)
		}
	}
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func TestSmokeTwoClients(t *testing.T) {
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "smoke", "héllo")
	a := ts.dial(t, id, "name=Ann&user=ann")
	ha := a.expect("hello")
	if ha["text"] != "héllo" || ha["rev"] != float64(0) {
		t.Fatalf("hello: %v", ha)
	}
	b := ts.dial(t, id, "name=Bob")
	hb := b.expect("hello")
	if len(hb["peers"].([]any)) != 1 {
		t.Fatalf("hello peers: %v", hb)
	}
	a.expect("join")
	a.send(`{"type":"op","rev":0,"seq":1,"op":[5," 😀"]}`)
	ack := a.expect("ack")
	if ack["rev"] != float64(1) || ack["seq"] != float64(1) {
		t.Fatalf("ack: %v", ack)
	}
	op := b.expect("op")
	if op["rev"] != float64(1) {
		t.Fatalf("op: %v", op)
	}
	resp, err := http.Get(ts.URL + "/api/docs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Text string
		Rev  int64
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	if doc.Text != "héllo 😀" || doc.Rev != 1 {
		t.Fatalf("doc: %+v", doc)
	}
}
