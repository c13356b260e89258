package tandem_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/feed"
	"github.com/tandemdocs/tandem/internal/collab"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a Server with cfg (Badger in a temp directory unless cfg
// says otherwise) and shuts it down when the test ends.
func start(t *testing.T, cfg tandem.Config) *tandem.Server {
	t.Helper()
	if cfg.Storage == nil {
		cfg.Storage = tandem.Badger{Dir: t.TempDir(), MinFreeSpace: 1 << 20}
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	srv, err := tandem.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// request makes an HTTP request and decodes a JSON answer into out (if
// not nil); it returns the status.
func request(t *testing.T, method, url, body string, header http.Header, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sessionApp is an application with its own login: POST /login?user=U
// sets a session cookie; Tandem is mounted under /collab/ and learns who
// is signed in from the cookie (Authenticate). Users may write the
// documents whose ids start with their name and read "shared-*"
// (Authorize).
type sessionApp struct {
	mu       sync.Mutex
	sessions map[string]string // cookie -> user
}

func (a *sessionApp) authenticate(r *http.Request) (*tandem.Identity, error) {
	c, err := r.Cookie("app_session")
	if err != nil {
		return nil, nil // not signed in: not ours to answer
	}
	a.mu.Lock()
	user, ok := a.sessions[c.Value]
	a.mu.Unlock()
	if !ok {
		return nil, errors.New("session expired: sign in again")
	}
	return &tandem.Identity{User: user, Name: strings.ToUpper(user[:1]) + user[1:]}, nil
}

func (a *sessionApp) authorize(_ context.Context, who tandem.Identity, doc string) (tandem.Role, error) {
	switch {
	case strings.HasPrefix(doc, who.User+"-"):
		return tandem.RoleWrite, nil
	case strings.HasPrefix(doc, "shared-"):
		return tandem.RoleRead, nil
	}
	return tandem.RoleNone, nil
}

func (a *sessionApp) login(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	cookie := "s-" + user
	a.mu.Lock()
	a.sessions[cookie] = user
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "app_session", Value: cookie, Path: "/"})
}

// TestEmbeddedUnderPrefixWithSessions runs Tandem inside an application
// with its own login, under /collab/ on net/http's ServeMux: REST, the
// WebSocket, roles from the application, the change feed.
func TestEmbeddedUnderPrefixWithSessions(t *testing.T) {
	app := &sessionApp{sessions: map[string]string{}}
	srv := start(t, tandem.Config{Hooks: tandem.Hooks{Authenticate: app.authenticate, Authorize: app.authorize}})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", app.login)
	mux.Handle("/collab/", http.StripPrefix("/collab", srv))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	base := ts.URL + "/collab"

	// Not signed in: refused.
	if code := request(t, "GET", base+"/api/docs", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("list without a session: %d, want 401", code)
	}
	ann := http.Header{"Cookie": {"app_session=s-ann"}}
	bob := http.Header{"Cookie": {"app_session=s-bob"}}
	request(t, "POST", ts.URL+"/login?user=ann", "", nil, nil)
	request(t, "POST", ts.URL+"/login?user=bob", "", nil, nil)
	if code := request(t, "GET", base+"/api/docs", "", http.Header{"Cookie": {"app_session=forged"}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("list with an unknown session: %d, want 401", code)
	}
	// The REST API picks a new document's id, where the application
	// grants ann nothing: refused. The application creates documents
	// with ids of its own (Server.CreateDocument).
	var doc struct{ ID string }
	if code := request(t, "POST", base+"/api/docs", `{"title":"notes"}`, ann, &doc); code != http.StatusForbidden {
		t.Fatalf("create where the application grants nothing: %d, want 403", code)
	}
	ctx := context.Background()
	for _, id := range []string{"ann-notes", "shared-plan"} {
		if err := createDoc(ctx, srv, id, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	if code := request(t, "GET", base+"/api/docs/ann-notes", "", bob, nil); code != http.StatusForbidden {
		t.Fatalf("bob reads ann's document: %d, want 403", code)
	}
	var list struct{ Docs []struct{ ID string } }
	request(t, "GET", base+"/api/docs", "", bob, &list)
	if len(list.Docs) != 1 || list.Docs[0].ID != "shared-plan" {
		t.Fatalf("bob's list: %+v, want shared-plan only", list.Docs)
	}

	// The WebSocket, through the prefix, with the session's cookie: ann
	// edits her document; bob reads the shared one, and his edit there
	// is refused.
	a, err := client.Dial(ctx, base, "ann-notes", client.Options{Header: ann})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Edit(client.Insert(5, ", world")); err != nil {
		t.Fatal(err)
	}
	if err := a.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	var text struct{ Text string }
	request(t, "GET", base+"/api/docs/ann-notes/text", "", ann, &text)
	if text.Text != "hello, world" {
		t.Fatalf("text %q after ann's edit", text.Text)
	}
	if _, err := client.Dial(ctx, base, "ann-notes", client.Options{Header: bob}); err == nil {
		t.Fatal("bob opened ann's document")
	}
	refused := make(chan string, 4)
	b, err := client.Dial(ctx, base, "shared-plan", client.Options{Header: bob, OnError: func(code, _ string) { refused <- code }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Edit(client.Insert(0, "bob was here "))
	if code := <-refused; code != "forbidden" {
		t.Errorf("a reader's edit refused with %s, want forbidden", code)
	}
	request(t, "GET", base+"/api/docs/shared-plan/text", "", bob, &text)
	if text.Text != "hello" {
		t.Fatalf("a reader's edit changed the document: %q", text.Text)
	}

	// The change feed, through the prefix: bob sees only what he may
	// read.
	var page struct {
		Events []feed.Event
		Next   uint64
	}
	if code := request(t, "GET", base+"/api/changes?after=0", "", bob, &page); code != 200 {
		t.Fatalf("changes: %d", code)
	}
	for _, e := range page.Events {
		if e.Doc != "shared-plan" {
			t.Errorf("bob sees an event of %s", e.Doc)
		}
	}
	request(t, "GET", base+"/api/changes?after=0", "", ann, &page)
	kinds := []string{}
	for _, e := range page.Events {
		kinds = append(kinds, e.Kind+" "+e.Doc)
	}
	if strings.Join(kinds, ", ") != "create ann-notes, create shared-plan, commit ann-notes" {
		t.Errorf("ann's feed: %v", kinds)
	}
}

// createDoc creates a document directly in the server's store (as an
// application that picks its own ids would, with the admin token or the
// store).
func createDoc(ctx context.Context, srv *tandem.Server, id, text string) error {
	return srv.CreateDocument(ctx, tandem.NewDocument{ID: id, Content: text})
}

// TestCheckOpRefuses: the application's rule refuses an op; the client
// gets "rejected" with the reason, the document is unchanged, and the
// next op goes through.
func TestCheckOpRefuses(t *testing.T) {
	checked := make(chan tandem.OpCheck, 16)
	srv := start(t, tandem.Config{Storage: tandem.Memory{}, Hooks: tandem.Hooks{CheckOp: func(ctx context.Context, op tandem.OpCheck) error {
		checked <- op
		if strings.Contains(string(op.Op.AppendJSON(nil)), "spam") {
			return tandem.Refuse("moderated", "no spam here")
		}
		if strings.Contains(string(op.Op.AppendJSON(nil)), "boom") {
			panic("a bug in the application's rule")
		}
		return nil
	}}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	if err := createDoc(ctx, srv, "d", "abc"); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, ts.URL, "d", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Edit(client.Insert(0, "spam "))
	err = c.Synced(ctx)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "rejected" || se.Reason != "moderated" || se.Message != "no spam here" {
		t.Fatalf("a refused op: %v, want rejected/moderated", err)
	}
	op := <-checked
	if op.Doc != "d" || op.Type != "plain" || op.Rev != 0 || op.Seq != 1 {
		t.Errorf("the hook saw %+v", op)
	}
	// The server's document is unchanged; a new connection edits on.
	c2, err := client.Dial(ctx, ts.URL, "d", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Text() != "abc" {
		t.Fatalf("after a refused op the document is %q", c2.Text())
	}
	c2.Edit(client.Insert(3, "d"))
	if err := c2.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	c2.Edit(client.Insert(0, "boom"))
	if err := c2.Synced(ctx); !errors.As(err, &se) || se.Code != "rejected" {
		t.Fatalf("an op whose check panicked: %v, want rejected", err)
	}
	var text struct{ Text string }
	request(t, "GET", ts.URL+"/api/docs/d/text", "", nil, &text)
	if text.Text != "abcd" {
		t.Fatalf("document %q, want abcd", text.Text)
	}
}

// TestOnChangeResumes: OnChange sees every change in order, after it is
// durable; with a ChangeReader it resumes after a restart where it was,
// and a failing hook is retried until it takes the event.
func TestOnChangeResumes(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var seen []string
	failOnce := map[uint64]bool{}
	hook := func(ctx context.Context, e tandem.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if e.Kind == "commit" && !failOnce[e.Cursor] {
			failOnce[e.Cursor] = true
			return errors.New("the search index is down")
		}
		s := fmt.Sprintf("%s %s %d", e.Kind, e.Doc, e.Rev)
		for _, op := range e.Ops {
			s += " " + string(op.Op)
		}
		seen = append(seen, s)
		return nil
	}
	got := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
	cfg := tandem.Config{Storage: tandem.Badger{Dir: dir, MinFreeSpace: 1 << 20}, Logger: quiet(), Hooks: tandem.Hooks{OnChange: hook, ChangeReader: "indexer"}}
	srv, err := tandem.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	ctx := context.Background()
	createDoc(ctx, srv, "d", "")
	c, err := client.Dial(ctx, ts.URL, "d", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Edit(client.Insert(0, "a"))
	c.Synced(ctx)
	waitFor(t, "two changes", func() bool { return len(got()) == 2 })
	c.Close()
	ts.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Changes made while no hook runs (the server is down, then a
	// rename): the restarted hook picks them up.
	srv, err = tandem.New(context.Background(), tandem.Config{Storage: cfg.Storage, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ts = httptest.NewServer(srv)
	request(t, "PATCH", ts.URL+"/api/docs/d", `{"title":"renamed"}`, nil, nil)
	ts.Close()
	srv.Close()
	srv = start(t, cfg)
	waitFor(t, "the rename", func() bool { return len(got()) == 3 })
	want := []string{`create d 0`, `commit d 1 ["a"]`, `rename d 0`}
	if g := got(); strings.Join(g, "|") != strings.Join(want, "|") {
		t.Fatalf("OnChange saw %q, want %q", g, want)
	}
}

// TestFollow reads the feed with the iterator, from a cursor, waiting
// for what comes.
func TestFollow(t *testing.T) {
	srv := start(t, tandem.Config{Storage: tandem.Memory{}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	last, err := srv.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, id := range []string{"x", "y", "z"} {
			createDoc(context.Background(), srv, id, "")
		}
	}()
	var docs []string
	for e, err := range srv.Follow(ctx, last) {
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, e.Doc)
		if len(docs) == 3 {
			break
		}
	}
	if strings.Join(docs, "") != "xyz" {
		t.Fatalf("followed %v", docs)
	}
}

// TestChangesStream reads GET /api/changes as Server-Sent Events, and
// resumes with Last-Event-ID.
func TestChangesStream(t *testing.T) {
	srv := start(t, tandem.Config{Storage: tandem.Memory{}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createDoc(ctx, srv, "a", "")
	read := func(lastID string, n int) []string {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/changes", nil)
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		var out []string
		sc := bufio.NewScanner(resp.Body)
		var id, event string
		for sc.Scan() && len(out) < n {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var e feed.Event
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(e.Cursor) != id || e.Kind != event {
					t.Fatalf("frame id %s event %s, data %+v", id, event, e)
				}
				out = append(out, id+" "+e.Kind+" "+e.Doc)
			}
		}
		return out
	}
	// Made while the stream below is open, or before: it waits either way.
	go createDoc(context.Background(), srv, "b", "")
	first := read("", 2)
	if len(first) != 2 || !strings.HasSuffix(first[0], "create a") || !strings.HasSuffix(first[1], "create b") {
		t.Fatalf("stream: %v", first)
	}
	createDoc(ctx, srv, "c", "")
	resumed := read(strings.Fields(first[1])[0], 1)
	if len(resumed) != 1 || !strings.HasSuffix(resumed[0], "create c") {
		t.Fatalf("resumed stream: %v", resumed)
	}
}

// TestEmbeddedClientsConverge: the binary's end-to-end guarantees through
// an embedding application's mount point and login: clients typing at
// once, reconnecting as they go, converge on the server's text with every
// edit exactly once.
func TestEmbeddedClientsConverge(t *testing.T) {
	app := &sessionApp{sessions: map[string]string{"s-ann": "ann"}}
	srv := start(t, tandem.Config{Hooks: tandem.Hooks{Authenticate: app.authenticate, Authorize: app.authorize},
		Tune: func(c *collab.Config) { c.RatePerSecond, c.RateBurst = 1e6, 1e6 }})
	mux := http.NewServeMux()
	mux.Handle("/collab/", http.StripPrefix("/collab", srv))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: "ann-live"}); err != nil {
		t.Fatal(err)
	}
	ann := http.Header{"Cookie": {"app_session=s-ann"}}
	const clients, edits = 3, 30
	docs := make([]*client.Doc, clients)
	for i := range docs {
		d, err := client.Dial(ctx, ts.URL+"/collab", "ann-live", client.Options{Header: ann})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		docs[i] = d
	}
	var wg sync.WaitGroup
	for i, d := range docs {
		wg.Go(func() {
			for j := range edits {
				if err := d.Append(fmt.Sprintf("<%d.%d>", i, j)); err != nil {
					t.Error(err)
					return
				}
				if j%10 == 5 {
					if err := d.Reconnect(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}
			if err := d.Synced(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var text struct {
		Text string
		Rev  int64
	}
	request(t, "GET", ts.URL+"/collab/api/docs/ann-live/text", "", ann, &text)
	waitFor(t, "every client at the server's revision", func() bool {
		for _, d := range docs {
			if d.Rev() < text.Rev {
				return false
			}
		}
		return true
	})
	for i, d := range docs {
		if d.Text() != text.Text {
			t.Fatalf("client %d has %q, the server %q", i, d.Text(), text.Text)
		}
	}
	for i := range clients {
		for j := range edits {
			if n := strings.Count(text.Text, fmt.Sprintf("<%d.%d>", i, j)); n != 1 {
				t.Fatalf("<%d.%d> is in the text %d times", i, j, n)
			}
		}
	}
}
