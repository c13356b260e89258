package web_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
)

const (
	secret    = "0123456789abcdef0123456789abcdef-current"
	oldSecret = "0123456789abcdef0123456789abcdef-previous"
)

// token mints a token for user with grants ("id:role"), valid for ttl.
func token(t testing.TB, key string, user string, ttl time.Duration, grants ...string) string {
	t.Helper()
	c := web.Claims{Name: "Name " + user, Color: "#123456"}
	c.Subject = user
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	for _, g := range grants {
		id, role, _ := strings.Cut(g, ":")
		c.Docs = append(c.Docs, web.Grant{ID: id, Role: role})
	}
	tok, err := web.Mint(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func authServer(t *testing.T, pub []byte) *testServer {
	t.Helper()
	v, err := web.NewVerifier([]string{secret, oldSecret}, pub)
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, serverOpts{web: web.Config{Auth: v}})
}

// call makes an HTTP request with a bearer token ("" for none) and returns
// the status and the error code of the body, if any.
func call(t *testing.T, ts *testServer, method, path, tok, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct{ Error struct{ Code string } }
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error.Code, raw
}

func seedDoc(t *testing.T, ts *testServer, id, text string) {
	t.Helper()
	if err := ts.store.CreateDocument(context.Background(), storage.Document{ID: id, Created: time.Now()}, text); err != nil {
		t.Fatal(err)
	}
}

// TestTokens: every token case over real HTTP, on a real server.
func TestTokens(t *testing.T) {
	t.Parallel()
	ts := authServer(t, nil)
	seedDoc(t, ts, "doc-a", "aaa")
	seedDoc(t, ts, "doc-b", "bbb")
	seedDoc(t, ts, "acme-1", "acme")

	expired := token(t, secret, "u", -time.Minute, "*:admin")
	// sign signs admin-on-everything claims for "u", valid for an hour,
	// changed by edit, with method and key.
	sign := func(method jwt.SigningMethod, key any, edit func(*web.Claims)) string {
		c := web.Claims{Docs: []web.Grant{{ID: "*", Role: "admin"}}}
		c.Subject = "u"
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
		if edit != nil {
			edit(&c)
		}
		tok, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hmac := []byte(secret)
	notYet := sign(jwt.SigningMethodHS256, hmac, func(c *web.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) })
	noExp := sign(jwt.SigningMethodHS256, hmac, func(c *web.Claims) { c.ExpiresAt = nil })
	noSub := sign(jwt.SigningMethodHS256, hmac, func(c *web.Claims) { c.Subject = "" })
	algNone := sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)
	hs384 := sign(jwt.SigningMethodHS384, hmac, nil)
	for _, tc := range []struct {
		name, tok string
		status    int
		code      string
	}{
		{"missing", "", 401, "unauthorized"},
		{"garbage", "not.a.token", 401, "unauthorized"},
		{"expired", expired, 401, "unauthorized"},
		{"not yet valid", notYet, 401, "unauthorized"},
		{"without exp", noExp, 401, "unauthorized"},
		{"without sub", noSub, 401, "unauthorized"},
		{"alg none", algNone, 401, "unauthorized"},
		{"another algorithm", hs384, 401, "unauthorized"},
		{"wrong signature", token(t, "some-other-secret-of-enough-length-xx", "u", time.Hour, "*:admin"), 401, "unauthorized"},
		{"another document", token(t, secret, "u", time.Hour, "doc-b:admin"), 403, "forbidden"},
		{"reader", token(t, secret, "u", time.Hour, "doc-a:read"), 200, ""},
		{"old secret (rotation)", token(t, oldSecret, "u", time.Hour, "doc-a:read"), 200, ""},
		{"tenant prefix", token(t, secret, "u", time.Hour, "doc-*:read"), 200, ""},
	} {
		status, code, body := call(t, ts, "GET", "/api/docs/doc-a", tc.tok, "")
		if status != tc.status || code != tc.code {
			t.Errorf("%s: GET /api/docs/doc-a: %d %s, want %d %s: %s", tc.name, status, code, tc.status, tc.code, body)
		}
		// The WebSocket is refused before the upgrade, alike.
		u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/api/docs/doc-a/ws"
		if tc.tok != "" {
			u += "?token=" + url.QueryEscape(tc.tok)
		}
		c, resp, err := websocket.DefaultDialer.Dial(u, nil)
		if c != nil {
			c.Close()
		}
		switch {
		case tc.status == 200 && err != nil:
			t.Errorf("%s: WebSocket refused: %v", tc.name, err)
		case tc.status != 200 && (err == nil || resp == nil || resp.StatusCode != tc.status):
			t.Errorf("%s: WebSocket: %v (%v), want HTTP %d", tc.name, err, resp, tc.status)
		}
	}

	// Delete needs admin; the list shows only what the token may read.
	reader := token(t, secret, "u", time.Hour, "doc-a:write", "acme-*:read")
	if status, code, _ := call(t, ts, "DELETE", "/api/docs/doc-a", reader, ""); status != 403 || code != "forbidden" {
		t.Errorf("delete with write: %d %s", status, code)
	}
	status, _, body := call(t, ts, "GET", "/api/docs", reader, "")
	var list struct{ Docs []struct{ ID string } }
	json.Unmarshal(body, &list)
	var ids []string
	for _, d := range list.Docs {
		ids = append(ids, d.ID)
	}
	if status != 200 || strings.Join(ids, ",") != "acme-1,doc-a" {
		t.Errorf("list: %d %v, want acme-1 and doc-a", status, ids)
	}
	// Creating: a tenant's documents get its prefix; without a write grant,
	// none.
	tenant := token(t, secret, "u", time.Hour, "acme-*:write")
	status, _, body = call(t, ts, "POST", "/api/docs", tenant, `{"title":"t"}`)
	var created struct{ ID string }
	json.Unmarshal(body, &created)
	if status != 201 || !strings.HasPrefix(created.ID, "acme-") {
		t.Errorf("create as a tenant: %d %s", status, body)
	}
	if status, code, _ := call(t, ts, "POST", "/api/docs", token(t, secret, "u", time.Hour, "doc-a:write"), `{}`); status != 403 || code != "forbidden" {
		t.Errorf("create without a write grant on * or a prefix: %d %s", status, code)
	}
	admin := token(t, secret, "boss", time.Hour, "doc-*:admin")
	if status, _, body := call(t, ts, "DELETE", "/api/docs/doc-b", admin, ""); status != 204 {
		t.Errorf("delete as admin: %d %s", status, body)
	}
	// The admin endpoint takes a token with the admin role on every
	// document (or the server's admin token: TestAdminAccess).
	if status, _, _ := call(t, ts, "GET", "/api/admin/backup", token(t, secret, "root", time.Hour, "*:admin"), ""); status != 200 {
		t.Errorf("backup with admin on *: %d", status)
	}
}

// TestTokenRolesOverWebSocket: a reader receives the text, ops and presence
// and its submits are refused; names come from the token, not the query;
// a token that expires closes its session with 4003.
func TestTokenRolesOverWebSocket(t *testing.T) {
	t.Parallel()
	ts := authServer(t, nil)
	seedDoc(t, ts, "doc", "abc")
	open := func(tok string, extra url.Values) *tconn {
		q := url.Values{"token": {tok}}
		for k, v := range extra {
			q[k] = v
		}
		return ts.open(t, "doc", q)
	}
	w := open(token(t, secret, "writer", time.Hour, "doc:write"), url.Values{"name": {"Mallory"}})
	w.expect("hello")
	r := open(token(t, secret, "reader", time.Hour, "doc:read"), nil)
	r.expect("hello")
	if m := w.expect("join"); m.User != "reader" || m.Name != "Name reader" || m.Color != "#123456" {
		t.Fatalf("join: %+v", m)
	}
	w.sendOp(0, 1, `[3,"!"]`)
	if m := w.expect("ack"); m.Rev != 1 {
		t.Fatalf("writer's ack: %+v", m)
	}
	if m := r.expect("op"); m.Rev != 1 || m.User != "writer" {
		t.Fatalf("reader got %+v", m)
	}
	r.sendOp(1, 1, `["?"]`)
	if m := r.expect("error"); m.Code != collab.CodeForbidden || m.seq() != 1 {
		t.Fatalf("reader's submit: %+v", m)
	}
	r.send(`{"type":"sel","rev":1,"sel":[{"anchor":1,"head":2}]}`)
	if m := w.expect("sel"); m.Rev != 1 {
		t.Fatalf("reader's selection: %+v", m)
	}
	if status, _, body := call(t, ts, "GET", "/api/docs/doc", token(t, secret, "x", time.Hour, "doc:read"), ""); status != 200 || !strings.Contains(string(body), `"rev":1`) || !strings.Contains(string(body), `"text":"abc!"`) {
		t.Fatalf("document: %d %s", status, body)
	}
	// The source belongs to the user: the same key under another user is
	// another source.
	key := ownedKey("shared-key")
	a := open(token(t, secret, "ann", time.Hour, "doc:write"), url.Values{"key": {key}})
	b := open(token(t, secret, "bob", time.Hour, "doc:write"), url.Values{"key": {key}})
	if ha, hb := a.expect("hello"), b.expect("hello"); ha.Src == hb.Src || ha.Src == collab.SourceOf(key) {
		t.Fatalf("sources: ann %s, bob %s", ha.Src, hb.Src)
	}

	// Expiry during the session.
	short := open(token(t, secret, "brief", 1500*time.Millisecond, "doc:read"), nil)
	short.expect("hello")
	var ce *websocket.CloseError
	for {
		_, err := short.conn.next(time.Now().Add(30 * time.Second))
		if err == nil {
			continue
		}
		if !errors.As(err, &ce) || ce.Code != collab.CloseTokenExpired {
			t.Fatalf("expired session ended with %v, want close %d", err, collab.CloseTokenExpired)
		}
		break
	}
}

// TestTokenPublicKey: tokens minted by the user's own identity service,
// signed with Ed25519, verified with its public key; an HMAC token signed
// with the public key's bytes (algorithm confusion) is refused.
func TestTokenPublicKey(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	ts := authServer(t, pemBytes)
	seedDoc(t, ts, "doc", "x")
	c := web.Claims{Docs: []web.Grant{{ID: "doc", Role: "read"}}}
	c.Subject = "sso-user"
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := call(t, ts, "GET", "/api/docs/doc", tok, ""); status != 200 {
		t.Fatalf("Ed25519 token: %d %s", status, body)
	}
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(pemBytes)
	if status, _, _ := call(t, ts, "GET", "/api/docs/doc", confused, ""); status != 401 {
		t.Fatalf("HMAC token keyed with the public key: %d", status)
	}
}

// TestDNSRebinding: a page on evil.example whose name resolves to the
// server's address sends "Host: evil.example" (and a matching Origin): the
// server answers only its own hosts, REST, WebSocket and admin alike.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	for _, cfg := range []web.Config{{LoopbackOnly: true}, {AllowedHosts: []string{"docs.example.com"}}} {
		ts := startServer(t, serverOpts{web: cfg})
		seedDoc(t, ts, "doc", "secret text")
		for _, path := range []string{"/api/docs", "/api/docs/doc", "/api/docs/doc/ws", "/api/admin/backup", "/"} {
			req, _ := http.NewRequest("GET", ts.URL+path, nil)
			req.Host = "evil.example"
			req.Header.Set("Origin", "http://evil.example")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "secret text") {
				t.Errorf("%+v: %s for Host evil.example: %d %s", cfg, path, resp.StatusCode, body)
			}
		}
		// Its own name works (and /healthz answers any host).
		req, _ := http.NewRequest("GET", ts.URL+"/api/docs/doc", nil)
		if len(cfg.AllowedHosts) > 0 {
			req.Host = cfg.AllowedHosts[0]
		}
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("%+v: own host: %v %v", cfg, resp, err)
		}
		req, _ = http.NewRequest("GET", ts.URL+"/healthz", nil)
		req.Host = "evil.example"
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("%+v: /healthz: %v %v", cfg, resp, err)
		}
	}
}

// TestCrossSiteWrites: a foreign page can POST text/plain or a form
// without a preflight; such writes are refused. The document size limit
// holds on create as on edit.
func TestCrossSiteWrites(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		req, _ := http.NewRequest("POST", ts.URL+"/api/docs", strings.NewReader(`{"title":"x"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("POST with Content-Type %q: %d", ct, resp.StatusCode)
		}
	}
	var list struct{ Docs []any }
	if _, err := ts.call("GET", "/api/docs", nil, &list); err != nil || len(list.Docs) != 0 {
		t.Fatalf("documents created: %v %v", list, err)
	}
	big, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", 9<<20)})
	status, code, _ := call(t, ts, "POST", "/api/docs", "", string(big))
	if status != http.StatusRequestEntityTooLarge || code != collab.CodeTooLarge {
		t.Fatalf("a 9 MiB document: %d %s", status, code)
	}
}

// TestRESTLimits: per-address request rates and per-user document
// creation rates, with clear codes; aborted bodies are not server errors.
func TestRESTLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{web: web.Config{LimitLoopback: true, RequestsPerSecond: 1, RequestBurst: 5, CreatesPerMinute: 0.001}})
	limited := 0
	for range 20 {
		status, code, _ := call(t, ts, "GET", "/api/docs", "", "")
		if status == http.StatusTooManyRequests {
			if code != collab.CodeRateLimited {
				t.Fatalf("429 with code %q", code)
			}
			limited++
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 requests limited with a burst of 5", limited)
	}
	ts2 := startServer(t, serverOpts{web: web.Config{LimitLoopback: true, CreatesPerMinute: 0.001}})
	created, refused := 0, 0
	for range 25 {
		switch status, _, _ := call(t, ts2, "POST", "/api/docs", "", `{}`); status {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			refused++
		}
	}
	if created != 20 || refused != 5 {
		t.Fatalf("created %d, refused %d; want the burst of 20, then refusals", created, refused)
	}
}

// TestMetricsAndProfilerAreAdminOnly: with an admin token configured,
// /metrics and the profiler need it (or an admin user token).
func TestMetricsAndProfilerAreAdminOnly(t *testing.T) {
	t.Parallel()
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tandem_documents_open 0\n") })
	ts := startServer(t, serverOpts{web: web.Config{Auth: v, AdminToken: "an-admin-token-of-some-length", Metrics: metrics}})
	for _, path := range []string{"/metrics", "/api/admin/debug/pprof/"} {
		if status, _, _ := call(t, ts, "GET", path, "", ""); status != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", path, status)
		}
		if status, _, _ := call(t, ts, "GET", path, token(t, secret, "u", time.Hour, "*:write"), ""); status != http.StatusUnauthorized {
			t.Errorf("%s with a writer's token: %d", path, status)
		}
		for _, tok := range []string{"an-admin-token-of-some-length", token(t, secret, "root", time.Hour, "*:admin")} {
			if status, _, body := call(t, ts, "GET", path, tok, ""); status != 200 {
				t.Errorf("%s with an admin token: %d %.200s", path, status, body)
			}
		}
	}
}

// FuzzVerify: whatever a client sends as a token, verifying it neither
// panics nor accepts it (nothing but the secret's holder can mint one).
func FuzzVerify(f *testing.F) {
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		f.Fatal(err)
	}
	good := token(f, secret, "u", time.Hour, "*:admin")
	f.Add(good)
	f.Add(good[:len(good)-3] + "AAA")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err == nil && tok != good {
			// Only a token signed with the secret verifies; the fuzzer
			// cannot sign, so anything else it finds is a hole (a
			// re-encoding of good is still good's claims).
			if c.Subject != "u" {
				t.Fatalf("accepted a token the secret did not sign: %q -> %+v", tok, c)
			}
		}
	})
}

// TestTrustedProxies: behind a trusted proxy the per-client limits follow
// X-Forwarded-For; from anyone else the header changes nothing.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	for _, trusted := range []bool{true, false} {
		cfg := web.Config{RequestsPerSecond: 0.001, RequestBurst: 2}
		if trusted {
			cfg.TrustedProxies = []*net.IPNet{loopback}
		} else {
			cfg.LimitLoopback = true
		}
		ts := startServer(t, serverOpts{web: cfg})
		get := func(client string) int {
			req, _ := http.NewRequest("GET", ts.URL+"/api/docs", nil)
			req.Header.Set("X-Forwarded-For", client)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		got := []int{get("203.0.113.5"), get("203.0.113.5"), get("203.0.113.5"), get("203.0.113.6")}
		want := []int{200, 200, 429, 200} // per client behind the proxy
		if !trusted {
			want = []int{200, 200, 429, 429} // one client: the socket's address
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("trusted=%v: %v, want %v", trusted, got, want)
		}
	}
}
