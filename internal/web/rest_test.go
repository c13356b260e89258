package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
)

// expectAPIError checks an error response's status and code.
func expectAPIError(t *testing.T, ts *testServer, method, path, body string, status int, code string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	var e apiErr
	got, err := ts.call(method, path, r, &e)
	if err != nil || got != status || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("%s %s: %d %v %+v, want %d %s", method, path, got, err, e, status, code)
	}
}

func TestCreateDocument(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})

	t.Run("with body", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ts.URL+"/api/docs", strings.NewReader(`{"title":"Notes 📝","text":"héllo 😀\n漢字"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(resp.Header.Get("Location"), "/api/docs/") {
			t.Fatalf("create: %d %v", resp.StatusCode, resp.Header)
		}
		var d docJSON
		status, err := ts.call("POST", "/api/docs", strings.NewReader(`{"title":"Notes 📝","text":"héllo 😀\n漢字"}`), &d)
		if err != nil || status != http.StatusCreated || d.ID == "" || d.Title != "Notes 📝" || d.Rev != 0 || d.Oldest != 0 || d.Text == nil || *d.Text != "héllo 😀\n漢字" || d.Created.IsZero() {
			t.Fatalf("create: %d %v %+v", status, err, d)
		}
		got := ts.getDoc(t, d.ID)
		if got.Title != d.Title || *got.Text != *d.Text || got.Rev != 0 {
			t.Fatalf("GET after create: %+v", got)
		}
	})
	t.Run("without body", func(t *testing.T) {
		var d docJSON
		// Without Content-Type: a cross-site form could do that.
		if status, err := ts.call("POST", "/api/docs", nil, &d); err != nil || status != http.StatusUnsupportedMediaType {
			t.Fatalf("create without Content-Type: %d %v", status, err)
		}
		status, err := ts.call("POST", "/api/docs", strings.NewReader(""), &d)
		if err != nil || status != http.StatusCreated || d.ID == "" || d.Title != "" || d.Text == nil || *d.Text != "" {
			t.Fatalf("create: %d %v %+v", status, err, d)
		}
		if got := ts.getDoc(t, d.ID); *got.Text != "" || got.Rev != 0 {
			t.Fatalf("GET after create: %+v", got)
		}
	})
	t.Run("empty object", func(t *testing.T) {
		var d docJSON
		if status, err := ts.call("POST", "/api/docs", strings.NewReader(`{}`), &d); err != nil || status != http.StatusCreated {
			t.Fatalf("create: %d %v", status, err)
		}
	})
	for _, tc := range []struct{ name, body string }{
		{"bad JSON", `{"title":`},
		{"not an object", `["x"]`},
		{"unknown field", `{"title":"t","owner":"me"}`},
		{"wrong type", `{"title":5}`},
		{"invalid UTF-8 in text", "{\"text\":\"a\xff\xfeb\"}"},
		{"invalid UTF-8 in title", "{\"title\":\"\xc3\"}"},
		{"title too long", `{"title":"` + strings.Repeat("t", 1025) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countDocs(t, ts)
			expectAPIError(t, ts, "POST", "/api/docs", tc.body, http.StatusBadRequest, "bad_message")
			if after := countDocs(t, ts); after != before {
				t.Fatalf("a rejected create made a document: %d -> %d", before, after)
			}
		})
	}
}

func countDocs(t *testing.T, ts *testServer) int {
	t.Helper()
	return len(listAll(t, ts, 1000))
}

// listAll pages through GET /api/docs.
func listAll(t *testing.T, ts *testServer, limit int) []string {
	t.Helper()
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("too many pages")
		}
		var page struct {
			Docs []docJSON
			Next *string
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if after != "" {
			q.Set("after", after)
		}
		status, err := ts.call("GET", "/api/docs?"+q.Encode(), nil, &page)
		if err != nil || status != http.StatusOK {
			t.Fatalf("list: %d %v", status, err)
		}
		if len(page.Docs) > limit {
			t.Fatalf("page of %d with limit %d", len(page.Docs), limit)
		}
		for _, d := range page.Docs {
			if d.Text != nil {
				t.Fatalf("list includes text: %+v", d)
			}
			ids = append(ids, d.ID)
		}
		if page.Next == nil {
			return ids
		}
		if *page.Next == "" || len(page.Docs) == 0 {
			t.Fatalf("next %q after %d docs", *page.Next, len(page.Docs))
		}
		after = *page.Next
	}
}

func TestListDocuments(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	if ids := listAll(t, ts, 10); len(ids) != 0 {
		t.Fatalf("empty server lists %v", ids)
	}
	var want []string
	for i := range 7 {
		want = append(want, ts.createDoc(t, fmt.Sprint("doc ", i), ""))
	}
	sort.Strings(want)
	for _, limit := range []int{1, 2, 3, 7, 1000} {
		if got := listAll(t, ts, limit); !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
	}
	// Default limit, and after the last id.
	var page struct {
		Docs []docJSON
		Next *string
	}
	if status, err := ts.call("GET", "/api/docs", nil, &page); err != nil || status != 200 || len(page.Docs) != 7 || page.Next != nil {
		t.Fatalf("default page: %d %v %+v", status, err, page)
	}
	if status, err := ts.call("GET", "/api/docs?after="+want[6], nil, &page); err != nil || status != 200 || len(page.Docs) != 0 || page.Next != nil {
		t.Fatalf("after the last: %d %v %+v", status, err, page)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=x"} {
		expectAPIError(t, ts, "GET", "/api/docs?"+q, "", http.StatusBadRequest, "bad_message")
	}
}

// TestDocumentHistory: GET of a document, its text at any revision and its
// ops, and their errors.
func TestDocumentHistory(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "hist", "ab")
	a := ts.open(t, id, url.Values{"key": {ownedKey("hist-src")}, "user": {"ann"}})
	a.expect("hello")
	texts := []string{"ab"}
	for i, op := range []string{`[1,"😀"]`, `[{"d":1}]`, `["漢"]`, `[3,"x"]`} {
		a.sendOp(int64(i), uint64(i+1), op)
		a.expect("ack")
	}
	texts = append(texts, "a😀b", "😀b", "漢😀b", "漢😀bx")

	d := ts.getDoc(t, id)
	if d.ID != id || d.Title != "hist" || d.Rev != 4 || *d.Text != "漢😀bx" || d.Updated.Before(d.Created) {
		t.Fatalf("doc: %+v", d)
	}
	for rev, want := range texts {
		if got := ts.textAt(t, id, int64(rev)); got != want {
			t.Fatalf("text at %d: %q, want %q", rev, got, want)
		}
	}
	var plain struct{ Rev int64 }
	if status, err := ts.call("GET", "/api/docs/"+id+"/text", nil, &plain); err != nil || status != 200 || plain.Rev != 4 {
		t.Fatalf("text without rev: %d %v %+v", status, err, plain)
	}

	recs := ts.history(t, id, 0, 4)
	if got := replay(t, "ab", recs); got != texts[4] {
		t.Fatalf("replay: %q", got)
	}
	for i, r := range recs {
		if r.Src != collab.SourceOf(ownedKey("hist-src")) || r.Seq != uint64(i+1) || r.User != "ann" || r.Time.IsZero() {
			t.Fatalf("record %d: %+v", i+1, r)
		}
	}
	var page struct {
		From, To, Head int64
		Ops            []opRecord
	}
	if status, err := ts.call("GET", "/api/docs/"+id+"/ops?from=1&to=3", nil, &page); err != nil || status != 200 ||
		page.From != 1 || page.To != 3 || page.Head != 4 || len(page.Ops) != 2 || page.Ops[0].Rev != 2 || page.Ops[1].Rev != 3 {
		t.Fatalf("ops 1..3: %d %v %+v", status, err, page)
	}
	if status, err := ts.call("GET", "/api/docs/"+id+"/ops?from=4", nil, &page); err != nil || status != 200 || page.To != 4 || len(page.Ops) != 0 {
		t.Fatalf("ops from the head: %d %v %+v", status, err, page)
	}

	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/docs/" + id + "/text?rev=5", 400, "rev_ahead"},
		{"/api/docs/" + id + "/text?rev=-1", 400, "bad_message"},
		{"/api/docs/" + id + "/text?rev=x", 400, "bad_message"},
		{"/api/docs/" + id + "/ops?from=3&to=2", 400, "bad_message"},
		{"/api/docs/" + id + "/ops?from=0&to=5", 400, "bad_message"},
		{"/api/docs/" + id + "/ops?from=-1", 400, "bad_message"},
		{"/api/docs/" + id + "/ops?from=x", 400, "bad_message"},
		{"/api/docs/no-such-doc", 404, "not_found"},
		{"/api/docs/no-such-doc/text", 404, "not_found"},
		{"/api/docs/no-such-doc/ops", 404, "not_found"},
		{"/api/docs/bad%20id", 404, "not_found"},
		{"/api/docs/" + strings.Repeat("x", 129), 404, "not_found"},
		{"/api/nothing", 404, "not_found"},
	} {
		expectAPIError(t, ts, "GET", tc.path, "", tc.status, tc.code)
	}
}

// TestDeleteDocument: connected clients are closed with 4004; afterwards
// the document is gone from every route and WebSockets get not_found.
func TestDeleteDocument(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "doomed", "bye")
	keep := ts.createDoc(t, "kept", "stay")
	a := ts.open(t, id, nil)
	a.expect("hello")
	b := ts.open(t, id, nil)
	b.expect("hello")
	k := ts.open(t, keep, nil)
	k.expect("hello")
	a.sendOp(0, 1, `[3,"!"]`)
	a.expect("ack")

	// Open mode: everyone writes, only the admin token deletes (from
	// loopback too, as here).
	expectAPIError(t, ts, "DELETE", "/api/docs/"+id, "", 403, "forbidden")
	if status, code := ts.deleteDoc(t, id); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, code)
	}
	for _, c := range []*tconn{a, b} {
		if code, skipped, err := c.closeCode(time.Now().Add(wait)); err != nil || code != collab.CloseNotFound {
			t.Fatalf("connection ended with %d %v after %v, want 4004", code, err, skipped)
		}
	}
	expectAPIError(t, ts, "GET", "/api/docs/"+id, "", 404, "not_found")
	expectAPIError(t, ts, "GET", "/api/docs/"+id+"/text?rev=0", "", 404, "not_found")
	expectAPIError(t, ts, "GET", "/api/docs/"+id+"/ops", "", 404, "not_found")
	if status, code := ts.deleteDoc(t, id); status != 404 || code != "not_found" {
		t.Fatalf("delete again: %d %s", status, code)
	}
	if ids := listAll(t, ts, 10); !slices.Equal(ids, []string{keep}) {
		t.Fatalf("list after delete: %v", ids)
	}
	expectNotFoundWS(t, ts, id)

	// The other document is untouched.
	k.sendOp(0, 1, `["still "]`)
	if m := k.expect("ack"); m.Rev != 1 {
		t.Fatalf("other doc: %v", m)
	}
}

// expectNotFoundWS dials a document that does not exist: the upgrade
// succeeds, a not_found error comes, then close 4004.
func expectNotFoundWS(t *testing.T, ts *testServer, id string) {
	t.Helper()
	c := ts.open(t, id, nil)
	code, skipped, err := c.closeCode(time.Now().Add(wait))
	if err != nil || code != collab.CloseNotFound {
		t.Fatalf("ws to %s ended with %d %v, want 4004", id, code, err)
	}
	if len(skipped) != 1 || skipped[0].Type != "error" || skipped[0].Code != "not_found" {
		t.Fatalf("ws to %s: got %v before the close, want a not_found error", id, skipped)
	}
}

func TestWebSocketOriginAndNotFound(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{web: web.Config{AllowedOrigins: []string{"https://app.example"}}})
	id := ts.createDoc(t, "origin", "x")
	dial := func(origin string) (*conn, *http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return dialConn(ctx, ts.wsURL(id, nil), h)
	}
	for _, origin := range []string{"", ts.URL, "https://app.example"} {
		c, _, err := dial(origin)
		if err != nil {
			t.Fatalf("origin %q: %v", origin, err)
		}
		m, err := c.next(time.Now().Add(wait))
		c.close()
		if err != nil || m.Type != "hello" {
			t.Fatalf("origin %q: %v %v", origin, m, err)
		}
	}
	for _, origin := range []string{"http://evil.example", "https://app.example.evil.example", "null", "http://127.0.0.1:1"} {
		c, resp, err := dial(origin)
		if err == nil {
			c.close()
			t.Fatalf("origin %q was let in", origin)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %q: %v %v", origin, resp, err)
		}
		var e apiErr
		if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), `"forbidden"`) {
			t.Fatalf("origin %q: body %s %+v", origin, body, e)
		}
	}

	// Unknown documents: a valid id that does not exist gets the error and
	// 4004; an id that cannot exist is refused before the upgrade.
	expectNotFoundWS(t, ts, "no-such-doc")
	if _, resp, err := websocket.DefaultDialer.Dial(ts.wsURL("bad!id", nil), nil); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Fatalf("bad id: %v %v", resp, err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(ts.wsURL(id, url.Values{"rev": {"x"}}), nil); err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("bad rev: %v %v", resp, err)
	}
}

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	id := ts.createDoc(t, "ready", "")
	a := ts.open(t, id, nil)
	a.expect("hello")

	// Draining: not ready, no new WebSockets; health and open connections
	// are unaffected.
	ts.srv.Drain()
	expectAPIError(t, ts, "GET", "/readyz", "", http.StatusServiceUnavailable, "internal")
	if _, resp, err := websocket.DefaultDialer.Dial(ts.wsURL(id, nil), nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("ws while draining: %v %v", resp, err)
	}
	if resp, err := http.Get(ts.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz while draining: %v %v", resp, err)
	}
	a.sendOp(0, 1, `["x"]`)
	a.expect("ack")

	// Storage gone: not ready.
	ts2 := newTestServer(t, collab.Config{})
	ts2.store.Close()
	expectAPIError(t, ts2, "GET", "/readyz", "", http.StatusServiceUnavailable, "internal")
}

// TestBodyLimitsAndTypes (issue 19): a body over the limit gets 413 whether
// its size is declared or it comes chunked, and a body that is not JSON
// gets 415, on PATCH as on POST.
func TestBodyLimitsAndTypes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	id := ts.createDoc(t, "limits", "x")
	big := `{"title":"x","text":"` + strings.Repeat("a", 17<<20) + `"}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(strings.NewReader(big)) // no length: sent chunked
		}
		req, _ := http.NewRequest("POST", ts.URL+"/api/docs", body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiErr
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error.Code != "too_large" {
			t.Errorf("a 17 MiB body (chunked %v): %d %+v, want 413 too_large", chunked, resp.StatusCode, e)
		}
	}
	for _, method := range []string{"POST", "PATCH"} {
		path := "/api/docs"
		if method == "PATCH" {
			path += "/" + id
		}
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(`{"title":"plain"}`))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer "+testAdminToken) // past the cross-site check
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s with Content-Type text/plain: %d, want 415", method, resp.StatusCode)
		}
	}
	if d := ts.getDoc(t, id); d.Title != "limits" {
		t.Errorf("the title changed to %q", d.Title)
	}
}
