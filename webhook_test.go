package tandem_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/feed"
)

var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("a webhook secret of 32 bytes...."))

// delivery is one request a receiver got.
type delivery struct {
	id, timestamp, signature string
	body                     []byte
}

// receiver is a webhook endpoint that refuses (503) while down, and
// records what it takes.
type receiver struct {
	mu       sync.Mutex
	down     bool
	refused  int
	took     []delivery
	events   map[uint64]feed.Event // by cursor: de-duplicated
	order    []uint64              // cursors in the order first received
	requests int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if rc.down {
		rc.refused++
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var msg struct {
		Type string
		Data struct {
			Events []feed.Event
			Next   uint64
		}
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.Type != "tandem.changes" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.took = append(rc.took, delivery{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body})
	for _, e := range msg.Data.Events {
		if _, dup := rc.events[e.Cursor]; !dup {
			rc.events[e.Cursor] = e
			rc.order = append(rc.order, e.Cursor)
		}
	}
}

func (rc *receiver) setDown(down bool) {
	rc.mu.Lock()
	rc.down = down
	rc.mu.Unlock()
}

// commits returns, per document, the revisions of the ops received, in
// the order received.
func (rc *receiver) commits() map[string][]int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]int64{}
	for _, c := range rc.order {
		e := rc.events[c]
		for _, op := range e.Ops {
			out[e.Doc] = append(out[e.Doc], op.Rev)
		}
	}
	return out
}

// TestWebhooks: a receiver that is down for a while, across a restart of
// the server, gets every commit once it is back, in revision order per
// document, with signatures that the reference verifier accepts.
func TestWebhooks(t *testing.T) {
	rc := &receiver{events: map[uint64]feed.Event{}, down: true}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	cfg := tandem.Config{
		Storage:  tandem.Badger{Dir: t.TempDir(), MinFreeSpace: 1 << 20},
		Logger:   quiet(),
		Webhooks: []tandem.Webhook{{URL: hook.URL + "/hooks/tandem", Secret: testSecret, Timeout: 5 * time.Second}},
	}
	ctx := context.Background()
	const docs, opsEach = 3, 20
	heads := map[string]int64{}
	edit := func(srv *tandem.Server) {
		ts := httptest.NewServer(srv)
		defer ts.Close()
		var wg sync.WaitGroup
		for i := range docs {
			id := fmt.Sprintf("doc-%d", i)
			if heads[id] == 0 {
				if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := client.Dial(ctx, ts.URL, id, client.Options{})
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for k := range opsEach {
					c.Edit(client.Insert(0, fmt.Sprint(k%10)))
				}
				if err := c.Synced(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for i := range docs {
			id := fmt.Sprintf("doc-%d", i)
			d, err := srv.Store().Document(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			heads[id] = d.Head
		}
	}
	srv, err := tandem.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	edit(srv)
	waitFor(t, "failed deliveries", func() bool { rc.mu.Lock(); defer rc.mu.Unlock(); return rc.refused >= 2 })
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarted while the receiver is still down: more edits, then it
	// comes back.
	srv = start(t, cfg)
	edit(srv)
	rc.setDown(false)
	waitFor(t, "every commit delivered", func() bool {
		got := rc.commits()
		for id, head := range heads {
			if int64(len(got[id])) < head {
				return false
			}
		}
		return true
	})
	for id, revs := range rc.commits() {
		for i, rev := range revs {
			if rev != int64(i+1) {
				t.Fatalf("%s: the %dth op received is revision %d: out of order, missing or doubled (%v)", id, i+1, rev, revs)
			}
		}
		if int64(len(revs)) != heads[id] {
			t.Fatalf("%s: %d ops received, head %d", id, len(revs), heads[id])
		}
	}
	rc.mu.Lock()
	took := append([]delivery(nil), rc.took...)
	t.Logf("%d requests, %d refused, %d batches taken, %d events", rc.requests, rc.refused, len(rc.took), len(rc.events))
	rc.mu.Unlock()
	for _, d := range took {
		if !strings.HasPrefix(d.id, "msg_") || d.signature == "" || d.timestamp == "" {
			t.Fatalf("headers of a delivery: %+v", d)
		}
	}
	verifyWithReference(t, took)
}

// verifyWithReference checks each delivery's signature with npm
// standardwebhooks 1.1.1 (testdata/webhookref), and a tampered one.
func verifyWithReference(t *testing.T, took []delivery) {
	t.Helper()
	dir := filepath.Join("testdata", "webhookref")
	skip := func(why string) {
		if os.Getenv("TANDEM_REQUIRE_NODE") == "1" {
			t.Fatalf("TANDEM_REQUIRE_NODE=1 but %s", why)
		}
		t.Skipf("%s: run npm ci --prefix %s (scripts/test.sh does)", why, dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks")); err != nil {
		skip("npm standardwebhooks is not installed in " + dir)
	}
	var in strings.Builder
	line := func(d delivery) {
		b, _ := json.Marshal(map[string]string{"secret": testSecret, "id": d.id, "timestamp": d.timestamp, "signature": d.signature, "body": string(d.body)})
		in.Write(append(b, '\n'))
	}
	for _, d := range took {
		line(d)
	}
	tampered := took[0]
	tampered.body = []byte(strings.Replace(string(tampered.body), `"commit"`, `"delete"`, 1))
	line(tampered)
	cmd := exec.Command(node, "verify.js")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("verify.js: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	n := 0
	for sc.Scan() {
		want := "ok"
		if n == len(took) {
			if sc.Text() == "ok" {
				t.Fatal("the reference verifier accepted a tampered body")
			}
			n++
			continue
		}
		if sc.Text() != want {
			t.Fatalf("delivery %d (%s): the reference verifier says %q", n, took[n].id, sc.Text())
		}
		n++
	}
	if n != len(took)+1 {
		t.Fatalf("the verifier answered %d lines for %d deliveries", n, len(took)+1)
	}
}

// TestWebhookDebounce: with Debounce, a burst of edits to a document is
// one "changed" event with its newest revision.
func TestWebhookDebounce(t *testing.T) {
	rc := &receiver{events: map[uint64]feed.Event{}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	srv := start(t, tandem.Config{Storage: tandem.Memory{},
		Webhooks: []tandem.Webhook{{URL: hook.URL, Secret: testSecret, Debounce: 300 * time.Millisecond}}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: "burst"}); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, ts.URL, "burst", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k := range 30 {
		c.Edit(client.Insert(0, fmt.Sprint(k%10)))
	}
	if err := c.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	head := c.Rev()
	waitFor(t, "the summary", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, e := range rc.events {
			if e.Kind == "changed" && e.Rev == head {
				return true
			}
		}
		return false
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	changed := 0
	for _, e := range rc.events {
		if e.Kind == "changed" {
			changed++
			if len(e.Ops) != 0 {
				t.Errorf("a summary with ops: %+v", e)
			}
		}
	}
	// The burst is one period, unless the machine paused it for longer
	// than the debounce somewhere: far fewer than 30 either way.
	if changed == 0 || changed > 10 {
		t.Fatalf("%d changed events for a burst of 30 edits", changed)
	}
	t.Logf("30 edits, %d changed events", changed)
}

// TestWebhookReceiverThatNeverAnswers: a receiver that hangs slows no
// edit, and does not hold up Shutdown.
func TestWebhookReceiverThatNeverAnswers(t *testing.T) {
	release := make(chan struct{})
	hung := make(chan struct{}, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer func() { close(release); hook.Close() }()
	srv, err := tandem.New(context.Background(), tandem.Config{Storage: tandem.Memory{}, Logger: quiet(),
		Webhooks: []tandem.Webhook{{URL: hook.URL, Secret: testSecret, Timeout: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx := context.Background()
	if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	<-hung // the first delivery is stuck
	c, err := client.Dial(ctx, ts.URL, "d", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		c.Edit(client.Insert(0, fmt.Sprint(i%10)))
	}
	if err := c.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Shutdown cancels the stuck delivery (its position stays before it:
	// it is sent again after a restart).
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if sctx.Err() != nil {
		t.Fatal("Shutdown waited for the receiver")
	}
}
