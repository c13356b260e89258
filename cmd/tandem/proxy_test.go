package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// The reverse-proxy tests run Debian's nginx in front of an in-process
// server, as an operator does on one machine: nginx on loopback, Tandem on
// loopback behind it, so every request Tandem sees comes from 127.0.0.1.
// Without nginx they skip, unless TANDEM_REQUIRE_PROXY=1 (CI installs it
// and sets it): then they fail.

// startNginx runs nginx in front of upstream (host:port) with the given
// proxy directives, and returns its base URL.
func startNginx(t *testing.T, upstream, directives string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			bin = "/usr/sbin/nginx"
		}
	}
	if bin == "" {
		msg := "the reverse-proxy tests need nginx (apt-get install -y nginx-light)"
		if os.Getenv("TANDEM_REQUIRE_PROXY") == "1" {
			t.Fatal(msg + "; TANDEM_REQUIRE_PROXY=1 makes this a failure")
		}
		t.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	prefix := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $http_connection;
			proxy_read_timeout 1h;
			%[4]s
		}
	}
}
`, prefix, port, upstream, directives)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if b, _ := os.ReadFile(filepath.Join(prefix, "error.log")); len(b) > 0 {
			t.Logf("nginx error log:\n%s", b)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 30*time.Second, "nginx to answer", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// fromAddr is an HTTP client and a WebSocket dialer whose connections come
// from ip (127.0.0.x: a client of its own to nginx, which forwards it).
func fromAddr(ip string) (*http.Client, *websocket.Dialer) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second},
		&websocket.Dialer{NetDialContext: d.DialContext, HandshakeTimeout: 30 * time.Second}
}

func statusOf(t *testing.T, c *http.Client, method, u, auth string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestBehindPlainProxy (issue 19): behind nginx's plain proxy_pass (no
// forwarding headers: every request is loopback to Tandem), nothing is
// granted for being loopback, in open mode or with tokens: the backup,
// /metrics, the profiler and deleting a document need the admin token.
func TestBehindPlainProxy(t *testing.T) {
	const secret = "a-secret-of-thirty-two-bytes-or-more-0123"
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"open", nil},
		{"tokens", []string{"--auth-secret", secret}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := testServeConfig(t, mode.args...)
			srv := startInProcess(t, cfg, serverHooks{})
			proxy := startNginx(t, srv.ln.Addr().String(), "")
			const id = "proxied"
			if err := srv.store.CreateDocument(context.Background(), storage.Document{ID: id, Created: time.Now()}, "secret text"); err != nil {
				t.Fatal(err)
			}
			c := http.DefaultClient
			for _, p := range []string{"/api/admin/backup", "/metrics", "/api/admin/debug/pprof/"} {
				if got := statusOf(t, c, "GET", proxy+p, ""); got != http.StatusUnauthorized {
					t.Errorf("GET %s through the proxy without a token: %d, want 401", p, got)
				}
				if got := statusOf(t, c, "GET", proxy+p, "wrong-token"); got != http.StatusUnauthorized {
					t.Errorf("GET %s through the proxy with a wrong token: %d, want 401", p, got)
				}
			}
			if got := statusOf(t, c, "DELETE", proxy+"/api/docs/"+id, ""); got != http.StatusForbidden && got != http.StatusUnauthorized {
				t.Errorf("DELETE through the proxy without a token: %d, want 403 or 401", got)
			}
			// The admin token does everything, through the proxy too.
			if got := statusOf(t, c, "GET", proxy+"/metrics", testAdminToken); got != http.StatusOK {
				t.Errorf("GET /metrics with the admin token: %d", got)
			}
			if got := statusOf(t, c, "DELETE", proxy+"/api/docs/"+id, testAdminToken); got != http.StatusNoContent {
				t.Errorf("DELETE with the admin token: %d", got)
			}
		})
	}
}

// TestBehindForwardingProxy (issue 19): behind nginx with --trusted-proxies
// naming it, the limits apply to each forwarded client address, not to the
// proxy's: one client's WebSocket cap, request rate and work budget run
// out while another's, through the same proxy, are untouched.
func TestBehindForwardingProxy(t *testing.T) {
	cfg := testServeConfig(t, "--trusted-proxies", "127.0.0.1/32", "--max-connections-per-ip", "6")
	// Loopback forwarded addresses count as addresses (the test's clients
	// are 127.0.0.2 and .3); the proxy itself is exempt as a trusted one.
	srv := startInProcess(t, cfg, serverHooks{limitLoopback: true})
	proxy := startNginx(t, srv.ln.Addr().String(), `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`)
	ctx := context.Background()
	const id = "forwarded"
	if err := srv.store.CreateDocument(ctx, storage.Document{ID: id, Created: time.Now()}, strings.Repeat("base", 1000)); err != nil {
		t.Fatal(err)
	}
	const revs = 2000
	app := storage.Append{DocID: id}
	for i := range revs {
		app.Records = append(app.Records, storage.Record{Rev: int64(i + 1), Op: doctype.PlainOp(ot.Op{ot.Insert("o")}), Source: "history", Seq: uint64(i + 1), Time: time.Now()})
	}
	if res, err := srv.store.Commit(ctx, []storage.Append{app}); err != nil || res[0] != nil {
		t.Fatal(err, res)
	}
	httpA, wsA := fromAddr("127.0.0.2")
	httpB, wsB := fromAddr("127.0.0.3")
	wsAt := strings.Replace(proxy, "http://", "ws://", 1) + "/api/docs/" + id + "/ws?"

	// The WebSocket cap, per forwarded address.
	var held []*websocket.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range 7 {
		c, resp, err := wsA.Dial(wsAt+url.Values{}.Encode(), nil)
		if i < 6 {
			if err != nil {
				t.Fatalf("A's WebSocket %d: %v", i+1, err)
			}
			held = append(held, c)
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("A's 7th WebSocket (cap 6): %v %v, want 429", err, resp)
		}
	}
	cB, _, err := wsB.Dial(wsAt, nil)
	if err != nil {
		t.Fatalf("B's WebSocket while A is at its cap: %v", err)
	}
	held = append(held, cB)

	// The work budget, per forwarded address. A sends 48 stale ops at once,
	// 8 on each of its 6 connections: each takes 39 work tokens, so each
	// connection's own budget (400) could pay for its 8, but their
	// address's (a burst of 400, 200 a second) runs out after about ten,
	// however slowly the server gets to them. Then B's stale op is
	// accepted: its address's budget is its own. The ops are based 1,980
	// revisions behind the head, as far as MaxLag allows with room for
	// the ones accepted.
	staleOp := func(c *websocket.Conn, seq uint64) {
		doc, err := srv.store.Document(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":["z"]}`, doc.Head-1980, seq)); err != nil {
			t.Fatal(err)
		}
	}
	// answers reads c's answers to seqs 1..n (acks and errors by code).
	answers := func(c *websocket.Conn, n int) map[string]int {
		got := map[string]int{}
		for answered := 0; answered < n; {
			c.SetReadDeadline(time.Now().Add(60 * time.Second)) // bounds a stuck run
			_, data, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			msgs, _ := parseFrame(data)
			for _, m := range msgs {
				switch {
				case m.Type == "ack":
					got["ack"]++
					answered++
				case m.Type == "error":
					got[m.Code]++
					answered++
				}
			}
		}
		return got
	}
	const perConn = 8
	for seq := uint64(1); seq <= perConn; seq++ {
		for _, c := range held[:6] {
			staleOp(c, seq)
		}
	}
	total := map[string]int{}
	for _, c := range held[:6] {
		for code, n := range answers(c, perConn) {
			total[code] += n
		}
	}
	if total[collab.CodeRateLimited] == 0 {
		t.Fatalf("A's 48 stale ops from six connections: %v, none ran out of its address's budget", total)
	}
	staleOp(cB, 1)
	if got := answers(cB, 1); got["ack"] != 1 {
		t.Fatalf("B's stale op while A's budget is spent: %v, want an ack", got)
	}
	t.Logf("A's 48 stale ops: %v", total)

	// The request rate (50 a second, burst 100), per forwarded address: 400
	// requests from A at once run it out unless the server takes over six
	// seconds to answer them.
	var tooMany atomic.Int64
	var reqs sync.WaitGroup
	for range 400 {
		reqs.Go(func() {
			resp, err := httpA.Get(proxy + "/api/docs/" + id)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				tooMany.Add(1)
			}
		})
	}
	reqs.Wait()
	if tooMany.Load() == 0 {
		t.Fatal("400 requests from A at once: none was refused")
	}
	if got := statusOf(t, httpB, "GET", proxy+"/api/docs/"+id, ""); got != http.StatusOK {
		t.Fatalf("B's request while A is rate limited: %d", got)
	}
	t.Logf("through nginx: A capped at 6 WebSockets, its work budget spent, %d of 400 requests refused; B unaffected", tooMany.Load())
}
