package web_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/web"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestLogs: at debug level, every request and WebSocket session is logged
// with its request id (the one in the response's X-Request-Id), its
// document and its user, and nothing of a document's text or a token ever
// reaches the log.
func TestLogs(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, serverOpts{web: web.Config{Auth: v}, logger: log})
	tok := token(t, secret, "ann", time.Hour, "*:admin")

	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/docs", strings.NewReader(`{"title":"plans","text":"INITIAL-SECRET-TEXT"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqID := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusCreated || reqID == "" {
		t.Fatalf("create: %s, request id %q", resp.Status, reqID)
	}
	seedDoc(t, ts, "doc-1", "SEEDED-SECRET-TEXT")
	// A proxy's request id is kept; one that is not an id is replaced.
	for _, id := range []string{"proxy-id-123", "bad id {\"injected\":1}"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/docs/doc-1/text", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); (got == id) != (id == "proxy-id-123") || got == "" {
			t.Errorf("X-Request-Id %q sent, %q answered", id, got)
		}
	}
	if code, _, _ := call(t, ts, http.MethodGet, "/api/docs/doc-1?token=not-a-token", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", code)
	}

	c := ts.dial(t, "doc-1", "token="+tok)
	c.expect("hello")
	c.send(`{"type":"op","rev":0,"seq":1,"op":["TYPED-SECRET-TEXT"]}`)
	c.expect("ack")
	c.conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), `"msg":"websocket closed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"websocket closed\" in the log:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	logged := buf.String()
	for _, want := range []string{`"req":"` + reqID + `"`, `"req":"proxy-id-123"`, `"msg":"websocket open"`, `"doc":"doc-1"`, `"user":"ann"`, `"path":"/api/docs/doc-1/ws"`, `"status":401`} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log has no %s:\n%s", want, logged)
		}
	}
	for _, secretText := range []string{tok, secret, "not-a-token", "INITIAL-SECRET", "SEEDED-SECRET", "TYPED-SECRET", "injected"} {
		if strings.Contains(logged, secretText) {
			t.Errorf("the log holds %q:\n%s", secretText, logged)
		}
	}
}
