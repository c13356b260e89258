package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// adminCall sends GET /api/admin/backup straight to the handler, as if
// from remote (the connection's address) with the given headers.
func adminCall(ts *testServer, remote string, headers map[string]string) *http.Response {
	req := httptest.NewRequest(http.MethodGet, "/api/admin/backup", nil)
	req.RemoteAddr = remote
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	ts.srv.ServeHTTP(rec, req)
	return rec.Result()
}

func errCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&e)
	return e.Error.Code
}

// TestAdminAccess: admin endpoints take the admin token from anywhere and
// nothing else: not a loopback peer, with or without forwarding headers
// (behind a reverse proxy on the same machine every request is loopback),
// and nothing at all from a server without an admin token.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	peers := []struct {
		remote  string
		headers map[string]string
	}{
		{"127.0.0.1:5000", nil},
		{"[::1]:5000", nil},
		{"203.0.113.7:5000", nil},
		{"10.0.0.2:5000", nil},
		{"203.0.113.7:5000", map[string]string{"X-Forwarded-For": "127.0.0.1"}},
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "203.0.113.7"}},
		{"127.0.0.1:5000", map[string]string{"X-Real-IP": "203.0.113.7"}},
		{"127.0.0.1:5000", map[string]string{"Forwarded": "for=203.0.113.7"}},
	}
	guarded := startServer(t, serverOpts{web: web.Config{AdminToken: "tok-123"}})
	secret := "0123456789abcdef0123456789abcdef"
	auth, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	withAuth := startServer(t, serverOpts{web: web.Config{AdminToken: "tok-123", Auth: auth}})
	closed := startServer(t, serverOpts{noAdminToken: true})
	for _, p := range peers {
		for _, c := range []struct {
			ts     *testServer
			mode   string
			auth   string
			status int
		}{
			{guarded, "open", "", http.StatusUnauthorized},
			{guarded, "open", "Bearer tok-12", http.StatusUnauthorized},
			{guarded, "open", "Bearer tok-1234", http.StatusUnauthorized},
			{guarded, "open", "tok-123", http.StatusUnauthorized},
			{guarded, "open", "Basic tok-123", http.StatusUnauthorized},
			{guarded, "open", "Bearer tok-123", http.StatusOK},
			{guarded, "open", "bearer tok-123", http.StatusOK},
			{withAuth, "tokens", "", http.StatusUnauthorized},
			{withAuth, "tokens", "Bearer " + token(t, secret, "u", time.Hour, "*:write"), http.StatusUnauthorized},
			{withAuth, "tokens", "Bearer " + token(t, secret, "u", time.Hour, "*:admin"), http.StatusOK},
			{withAuth, "tokens", "Bearer tok-123", http.StatusOK},
			{closed, "open without an admin token", "", http.StatusUnauthorized},
			{closed, "open without an admin token", "Bearer tok-123", http.StatusUnauthorized},
		} {
			h := map[string]string{"Authorization": c.auth}
			for k, v := range p.headers {
				h[k] = v
			}
			resp := adminCall(c.ts, p.remote, h)
			if resp.StatusCode != c.status {
				t.Errorf("%s mode, from %s %v with %q: %d, want %d", c.mode, p.remote, p.headers, c.auth, resp.StatusCode, c.status)
			}
			if c.status == http.StatusUnauthorized {
				if code := errCode(t, resp); code != "unauthorized" || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s mode, from %s with %q: code %q, WWW-Authenticate %q", c.mode, p.remote, c.auth, code, resp.Header.Get("WWW-Authenticate"))
				}
			}
		}
	}
}

// TestAdminBackup: the endpoint streams a backup that restores, with the
// document count up front and the next version as an HTTP trailer; an
// incremental one from that version; and a bad since is refused.
func TestAdminBackup(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	for range 3 {
		ts.createDoc(t, "d", "text")
	}
	get := func(since string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/admin/backup?since="+since, nil)
		resp, err := http.DefaultClient.Do(asAdmin(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, full := get("0")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		resp.Header.Get(web.HeaderDocuments) != "3" || resp.Header.Get(web.HeaderSince) != "0" {
		t.Fatalf("full backup: %d %v", resp.StatusCode, resp.Header)
	}
	next, err := strconv.ParseUint(resp.Trailer.Get(web.HeaderNextVersion), 10, 64)
	if err != nil || next == 0 {
		t.Fatalf("trailer %s: %q", web.HeaderNextVersion, resp.Trailer.Get(web.HeaderNextVersion))
	}
	ts.createDoc(t, "d", "later")
	resp, incr := get(strconv.FormatUint(next, 10))
	if resp.StatusCode != http.StatusOK || resp.Header.Get(web.HeaderDocuments) != "4" {
		t.Fatalf("incremental backup: %d %v", resp.StatusCode, resp.Header)
	}
	if n, _ := strconv.ParseUint(resp.Trailer.Get(web.HeaderNextVersion), 10, 64); n <= next {
		t.Errorf("incremental's next version %d after %d", n, next)
	}
	dir := filepath.Join(t.TempDir(), "r")
	if err := badgerstore.Restore(dir, nil, bytes.NewReader(full), bytes.NewReader(incr)); err != nil {
		t.Fatal(err)
	}
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if docs, _, err := s.ListDocuments(context.Background(), storage.ListOptions{}); err != nil || len(docs) != 4 {
		t.Errorf("restored: %d documents, %v", len(docs), err)
	}
	for _, bad := range []string{"-1", "x", "1.5"} {
		if resp, _ := get(bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("since=%s: %d", bad, resp.StatusCode)
		}
	}
}

// failingBackup is a store whose backup breaks off after some bytes.
type failingBackup struct{ storage.Store }

func (failingBackup) Backup(ctx context.Context, w io.Writer, since uint64) (uint64, error) {
	w.Write(bytes.Repeat([]byte{1}, 64<<10))
	return 0, errors.New("disk on fire")
}

// TestAdminBackupFails: a backup that fails mid-stream aborts the
// connection: the client gets an error, not a clean end of a partial body.
func TestAdminBackupFails(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{wrap: func(s storage.Store) storage.Store { return failingBackup{s} }})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/admin/backup", nil)
	resp, err := http.DefaultClient.Do(asAdmin(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a failed backup ended cleanly after %d bytes (trailer %v)", len(b), resp.Trailer)
	}
	t.Logf("client saw %v after %d bytes", err, len(b))
}
