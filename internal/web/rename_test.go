package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
)

// TestRename: PATCH /api/docs/{id} {"title"} renames for writers; everyone
// in the document hears at once (a title message), a client that joins
// later has the new title in its hello, and bad requests change nothing.
func TestRename(t *testing.T) {
	t.Parallel()
	ts := authServer(t, nil)
	seedDoc(t, ts, "doc-r", "text")
	writer := token(t, secret, "w", time.Hour, "doc-r:write")
	reader := token(t, secret, "r", time.Hour, "doc-r:read")

	a := ts.open(t, "doc-r", url.Values{"token": {writer}, "key": {ownedKey("a")}})
	a.expect("hello")
	b := ts.open(t, "doc-r", url.Values{"token": {reader}, "key": {ownedKey("b")}})
	b.expect("hello")

	title := `Renamed: 日本語 "q" 📝`
	status, code, raw := call(t, ts, "PATCH", "/api/docs/doc-r", writer, `{"title":"Renamed: 日本語 \"q\" 📝"}`)
	if status != http.StatusOK || code != "" || !strings.Contains(string(raw), `"rev":0`) {
		t.Fatalf("rename: %d %s %s", status, code, raw)
	}
	for _, c := range []*tconn{a, b} {
		if m := c.expect("title"); m.Title != title {
			t.Fatalf("title message %+v, want %q", m, title)
		}
	}
	d, err := ts.store.Document(context.Background(), "doc-r")
	if err != nil || d.Title != title || d.Head != 0 {
		t.Fatalf("stored: %+v %v", d, err)
	}
	c := ts.open(t, "doc-r", url.Values{"token": {reader}, "key": {ownedKey("c")}})
	if h := c.expect("hello"); h.Title != title {
		t.Fatalf("hello after the rename: %+v", h)
	}

	for _, tc := range []struct {
		tok, body, path string
		status          int
		code            string
	}{
		{reader, `{"title":"x"}`, "/api/docs/doc-r", http.StatusForbidden, collab.CodeForbidden},
		{"", `{"title":"x"}`, "/api/docs/doc-r", http.StatusUnauthorized, "unauthorized"},
		{writer, `{"title":"x","text":"y"}`, "/api/docs/doc-r", http.StatusBadRequest, collab.CodeBadMessage},
		{writer, `{}`, "/api/docs/doc-r", http.StatusBadRequest, collab.CodeBadMessage},
		{writer, `{"title":"` + strings.Repeat("x", 1025) + `"}`, "/api/docs/doc-r", http.StatusBadRequest, collab.CodeBadMessage},
		{writer, `{"title":"\ud800"}`, "/api/docs/doc-r", http.StatusBadRequest, collab.CodeBadMessage},
		{writer, `{"title":"x"} {}`, "/api/docs/doc-r", http.StatusBadRequest, collab.CodeBadMessage},
		{token(t, secret, "w", time.Hour, "*:write"), `{"title":"x"}`, "/api/docs/missing", http.StatusNotFound, collab.CodeNotFound},
	} {
		status, code, raw := call(t, ts, "PATCH", tc.path, tc.tok, tc.body)
		if status != tc.status || code != tc.code {
			t.Errorf("PATCH %s %.40s: %d %s %s, want %d %s", tc.path, tc.body, status, code, raw, tc.status, tc.code)
		}
	}
	if d, _ := ts.store.Document(context.Background(), "doc-r"); d.Title != title {
		t.Fatalf("refused renames changed the title to %q", d.Title)
	}
}

// TestMethodNotAllowed: a known path with another method gets 405 and the
// methods it takes, in the API's error shape.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "methods", "x")
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/api/docs", "GET, HEAD, POST"},
		{"DELETE", "/api/docs", "GET, HEAD, POST"},
		{"PUT", "/api/docs/" + id, "DELETE, GET, HEAD, PATCH"},
		{"POST", "/api/docs/" + id, "DELETE, GET, HEAD, PATCH"},
		{"POST", "/api/docs/" + id + "/text", "GET, HEAD"},
		{"DELETE", "/api/docs/" + id + "/ops", "GET, HEAD"},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405, %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
		}
	}
	expectAPIError(t, ts, "PUT", "/api/docs", `{}`, http.StatusMethodNotAllowed, "method_not_allowed")
	expectAPIError(t, ts, "GET", "/api/nothing", "", http.StatusNotFound, collab.CodeNotFound)
}

// TestListByIDs: ?ids= returns the named documents that exist and may be
// read, in the order named.
func TestListByIDs(t *testing.T) {
	t.Parallel()
	ts := authServer(t, nil)
	for _, id := range []string{"a-1", "a-2", "b-1"} {
		seedDoc(t, ts, id, "x")
	}
	tok := token(t, secret, "u", time.Hour, "a-*:read")
	status, _, raw := call(t, ts, "GET", "/api/docs?ids=a-2,missing,b-1,a-1,bad%20id", tok, "")
	var out struct{ Docs []struct{ ID string } }
	if err := json.Unmarshal(raw, &out); err != nil || status != http.StatusOK {
		t.Fatalf("%d %s %v", status, raw, err)
	}
	var got []string
	for _, d := range out.Docs {
		got = append(got, d.ID)
	}
	if strings.Join(got, ",") != "a-2,a-1" {
		t.Fatalf("got %v, want a-2 and a-1 (b-1 is not readable, the others do not exist)", got)
	}
	if status, code, _ := call(t, ts, "GET", "/api/docs?limit=2&ids=a-1,a-2,a-3", tok, ""); status != http.StatusBadRequest || code != collab.CodeBadMessage {
		t.Fatalf("more ids than limit: %d %s", status, code)
	}
}
