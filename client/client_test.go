package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/rich"
	"github.com/tandemdocs/tandem/storage"
)

// startServer runs a real server (package tandem's, Badger in a temp
// dir) for the test, with no practical limit on the connections' budgets.
func startServer(t *testing.T) (string, storage.Store) {
	t.Helper()
	return startServerWith(t, collab.Config{RatePerSecond: 1e6, RateBurst: 1e6})
}

// startServerWith runs a real server with the collab configuration cfg
// (its rate and bounds; the rest is the library's).
func startServerWith(t *testing.T, cfg collab.Config) (string, storage.Store) {
	t.Helper()
	srv, err := tandem.New(context.Background(), tandem.Config{
		Storage: tandem.Badger{Dir: t.TempDir(), MinFreeSpace: 1 << 20},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tune: func(c *collab.Config) {
			c.RatePerSecond, c.RateBurst = cfg.RatePerSecond, cfg.RateBurst
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return ts.URL, srv.Store()
}

func createDoc(t *testing.T, store storage.Store, id, text string) {
	t.Helper()
	if err := store.CreateDocument(context.Background(), storage.Document{ID: id, Created: time.Now()}, text); err != nil {
		t.Fatal(err)
	}
}

func serverText(t *testing.T, base, id string) (string, int64) {
	t.Helper()
	resp, err := http.Get(base + "/api/docs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Text string
		Rev  int64
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Text, d.Rev
}

// randomEdit is an insert or a delete at a random place of a text n code
// points long.
func randomEdit(rng *rand.Rand, n int, tag string) ot.Op {
	pos := rng.IntN(n + 1)
	if n > 0 && rng.IntN(3) == 0 {
		pos = min(pos, n-1)
		return client.Delete(pos, 1+rng.IntN(min(3, n-pos)))
	}
	return client.Insert(pos, tag)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestConverge: clients editing one document at once, each as fast as it
// can (edits composed while one is in flight), end with the server's text.
func TestConverge(t *testing.T) {
	base, store := startServer(t)
	createDoc(t, store, "doc", "hello 😀 漢字\n")
	var docs []*client.Doc
	for i := range 4 {
		d, err := client.Dial(ctx(t), base, "doc", client.Options{Name: fmt.Sprint("c", i)})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		docs = append(docs, d)
	}
	var wg sync.WaitGroup
	for i, d := range docs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for k := range 300 {
				if err := d.Edit(randomEdit(rng, d.Len(), string(rune('a'+i)))); err != nil {
					t.Error(err)
					return
				}
				if k%50 == 0 {
					d.SetSelection([]ot.Selection{{Anchor: 0, Head: min(2, d.Len())}})
				}
			}
			if err := d.Synced(ctx(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	want, rev := serverText(t, base, "doc")
	if rev >= 4*300 {
		t.Errorf("%d revisions for 1,200 edits: nothing was composed", rev)
	}
	for i, d := range docs {
		deadline := time.Now().Add(20 * time.Second)
		for d.Rev() < rev && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := d.Text(); got != want || d.Rev() != rev {
			t.Errorf("client %d at %d: %q\nserver at %d: %q", i, d.Rev(), got, rev, want)
		}
	}
}

// TestReconnectExactlyOnce: an op in flight when the connection drops is
// sent again on the next one and applied once, whether or not the first
// connection had it committed; the ops missed meanwhile arrive.
func TestReconnectExactlyOnce(t *testing.T) {
	base, store := startServer(t)
	createDoc(t, store, "doc", "")
	a, err := client.Dial(ctx(t), base, "doc", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx(t), base, "doc", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 50 {
		if err := a.Append(fmt.Sprint(i % 10)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			b.Edit(ot.Op{ot.Insert("b")})
		}
		if i%7 == 0 {
			if err := a.Reconnect(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []*client.Doc{a, b} {
		if err := d.Synced(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	want, rev := serverText(t, base, "doc")
	if strings.Count(want, "b") != 25 || len(want) != 75 {
		t.Fatalf("server text %q: want 25 b and 50 digits", want)
	}
	digits := strings.ReplaceAll(want, "b", "")
	if digits != strings.Repeat("0123456789", 5) {
		t.Errorf("a's digits %q: lost or doubled", digits)
	}
	deadline := time.Now().Add(20 * time.Second)
	for (a.Rev() < rev || b.Rev() < rev) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.Text() != want || b.Text() != want {
		t.Errorf("a %q, b %q, server %q", a.Text(), b.Text(), want)
	}
}

// TestDialErrors: a missing document and a refused token come back as
// server errors with their codes.
func TestDialErrors(t *testing.T) {
	base, _ := startServer(t)
	_, err := client.Dial(ctx(t), base, "nope", client.Options{})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != collab.CodeNotFound {
		t.Fatalf("dial a missing document: %v", err)
	}
}

// TestRichDocument: two clients edit a rich-text document at once (one
// formats, the other types and embeds) and converge with the server; a
// plain op on it is refused locally.
func TestRichDocument(t *testing.T) {
	base, store := startServer(t)
	if err := store.CreateDocument(ctx(t), storage.Document{ID: "rich", Type: "rich", Created: time.Now()}, `[{"insert":"Hello 😀 world\n"}]`); err != nil {
		t.Fatal(err)
	}
	// Every revision a client learns of (its acks, others' ops) signals.
	heard := make(chan struct{}, 1)
	signal := func(int64) {
		select {
		case heard <- struct{}{}:
		default:
		}
	}
	opts := func(name string) client.Options {
		return client.Options{Name: name,
			OnAck:    func(_ uint64, rev int64) { signal(rev) },
			OnRemote: func(_ string, _ uint64, rev int64) { signal(rev) }}
	}
	a, err := client.Dial(ctx(t), base, "rich", opts("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx(t), base, "rich", opts("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Type() != "rich" || a.Text() != "Hello 😀 world\n" {
		t.Fatalf("type %s, text %q", a.Type(), a.Text())
	}
	bold := rich.MakeAttrs(rich.Attr{Key: "bold", Value: rich.Bool(true)})
	for i := range 10 {
		if err := a.EditRich(rich.Delta{rich.Retain(i%5+1, nil), rich.Retain(3, bold)}); err != nil {
			t.Fatal(err)
		}
		if err := b.EditRich(rich.Delta{rich.Retain(7, nil), rich.Insert(fmt.Sprint(i), nil)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EditRich(rich.Delta{rich.InsertEmbed(rich.Embed{Key: "image", Value: `"https://example.com/a.png"`}, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Edit(client.Insert(0, "plain")); err == nil {
		t.Error("a plain op on a rich document was taken")
	}
	for _, d := range []*client.Doc{a, b} {
		if err := d.Synced(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Each has what the other sent once both revisions are in.
	wait := ctx(t)
	waitFor := func(d *client.Doc, rev int64) {
		for d.Rev() < rev {
			select {
			case <-heard:
			case <-wait.Done():
				t.Fatalf("client at revision %d, waiting for %d", d.Rev(), rev)
			}
		}
	}
	head := max(a.Rev(), b.Rev())
	waitFor(a, head)
	waitFor(b, head)
	ja, jb := a.Delta().AppendJSON(nil), b.Delta().AppendJSON(nil)
	server, err := storage.ContentAt(ctx(t), store, "rich", head)
	if err != nil {
		t.Fatal(err)
	}
	if string(ja) != string(jb) || string(ja) != server {
		t.Fatalf("diverged:\n a      %s\n b      %s\n server %s", ja, jb, server)
	}
}

// TestRateLimitedResent: clients in a closed loop (the next edit once the
// last is acknowledged) against a server whose per-connection budget (4
// frames a second, burst 2) is far below what they ask for, unless a round
// trip takes over 250 ms. Every refused op is sent again, same seq, after
// the server's hint; every client converges and every edit is committed
// exactly once.
func TestRateLimitedResent(t *testing.T) {
	base, store := startServerWith(t, collab.Config{RatePerSecond: 4, RateBurst: 2})
	createDoc(t, store, "limited", "")
	const clients, edits = 4, 12
	var mu sync.Mutex
	retries, errorsSeen := map[string]int{}, map[string]int{}
	docs := make([]*client.Doc, clients)
	for i := range docs {
		d, err := client.Dial(ctx(t), base, "limited", client.Options{
			Name:    fmt.Sprint("c", i),
			OnRetry: func(code string, _ uint64, _ time.Duration) { mu.Lock(); retries[code]++; mu.Unlock() },
			OnError: func(code, _ string) { mu.Lock(); errorsSeen[code]++; mu.Unlock() },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		docs[i] = d
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, d := range docs {
		wg.Go(func() {
			for j := range edits {
				if err := d.Append(fmt.Sprintf("<%d.%d>", i, j)); err != nil {
					errs <- err
					return
				}
				if err := d.Synced(ctx(t)); err != nil {
					errs <- fmt.Errorf("client %d, edit %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	text, rev := serverText(t, base, "limited")
	for i := range clients {
		for j := range edits {
			if n := strings.Count(text, fmt.Sprintf("<%d.%d>", i, j)); n != 1 {
				t.Fatalf("edit %d.%d is in the server's text %d times: %q", i, j, n, text)
			}
		}
	}
	waitTexts(t, docs, text, rev)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d clients × %d edits at 4 tokens/s each: %d revisions, resent %v, errors %v", clients, edits, rev, retries, errorsSeen)
	if retries["rate_limited"] == 0 || retries["rate_limited"] != errorsSeen["rate_limited"] {
		t.Fatalf("resends %v for refusals %v: every rate_limited op refusal is resent", retries, errorsSeen)
	}
}

// waitTexts waits until every client has seen revision rev, then checks
// its text is text.
func waitTexts(t *testing.T, docs []*client.Doc, text string, rev int64) {
	t.Helper()
	for i, d := range docs {
		deadline := time.Now().Add(30 * time.Second)
		for d.Rev() < rev {
			if time.Now().After(deadline) {
				t.Fatalf("client %d at revision %d, the server at %d", i, d.Rev(), rev)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := d.Text(); got != text {
			t.Fatalf("client %d: %q, the server %q", i, got, text)
		}
	}
}

// TestConcurrentSameDeletes: two clients delete the first character at
// the same moment, over and over. When both deleted the same one, the
// second op does nothing: the server commits no empty revision for it
// (every revision deletes something) and the client drops it quietly (no
// error), and both converge.
func TestConcurrentSameDeletes(t *testing.T) {
	base, store := startServer(t)
	const n = 200
	createDoc(t, store, "same", strings.Repeat("x", n))
	var mu sync.Mutex
	var errs []string
	docs := make([]*client.Doc, 2)
	for i := range docs {
		d, err := client.Dial(ctx(t), base, "same", client.Options{
			OnError: func(code, msg string) { mu.Lock(); errs = append(errs, code+": "+msg); mu.Unlock() },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		docs[i] = d
	}
	for round := 0; round < 60; round++ {
		var wg sync.WaitGroup
		for _, d := range docs {
			wg.Go(func() {
				if d.Len() > 0 {
					d.Edit(client.Delete(0, 1))
				}
			})
		}
		wg.Wait()
		for _, d := range docs {
			if err := d.Synced(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	text, rev := serverText(t, base, "same")
	waitTexts(t, docs, text, rev)
	if deleted := n - len(text); int64(deleted) != rev {
		t.Fatalf("%d revisions for %d characters deleted: empty revisions were committed", rev, deleted)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	t.Logf("%d revisions, %d characters deleted by 120 deletes", rev, n-len(text))
}
