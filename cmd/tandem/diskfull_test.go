package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage/spaceguard"
)

// smallDisk mounts a tmpfs of size MiB for the test, or skips (it needs
// root). It is unmounted when the test ends.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem needs root: run as root (CI does) to test a full disk")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s): skipping the full-disk test", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillTo writes a ballast file so that about leave bytes stay free.
func fillTo(t *testing.T, dir string, name string, leave uint64) {
	t.Helper()
	free, err := spaceguard.Free(dir)
	if err != nil {
		t.Fatal(err)
	}
	if free <= leave {
		return
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := (free - leave) >> 20; n > 0; n-- {
		if _, err := f.Write(chunk); err != nil {
			return // full: as good
		}
	}
}

func httpStatus(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return httpStatusAs(t, "", method, url, body)
}

// httpStatusAs is httpStatus with a bearer token ("" for none).
func httpStatusAs(t *testing.T, token, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// waitStatus polls url until it answers want (an event, polled with a
// generous deadline).
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpStatus(t, "GET", url, "")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s, want %d", url, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDiskFull runs the real binary on a small filesystem. Below the free
// space it keeps in reserve the server stops taking writes (submits get
// storage_full and stay unacknowledged, REST writes 507, /readyz 503) and
// goes on serving reads; when space comes back, writes resume without a
// restart. Editing at full speed into a nearly full disk ends in
// storage_full, never in a crash, and every acknowledged edit survives. A
// server started on a full disk serves reads; verify and export work on it.
func TestDiskFull(t *testing.T) {
	disk := smallDisk(t, 160)
	dir := filepath.Join(disk, "data")
	const reserve = 48 << 20
	flags := []string{"--min-free-space", "48MiB", "--disk-check-every", "20ms"}
	srv := startServer(t, dir, flags...)
	id, err := createDoc(srv.URL, "disk", "abc")
	if err != nil {
		t.Fatal(err)
	}
	key := uuid.NewString()
	c := dialRaw(t, srv.URL, id, key)
	c.next("hello")
	c.send(`{"type":"op","rev":0,"seq":1,"op":[3,"!"]}`)
	if ack := c.next("ack"); ack.Rev != 1 {
		t.Fatalf("ack %+v", ack)
	}

	// Below the reserve: writes stop, reads go on.
	fillTo(t, disk, "ballast", reserve-(8<<20))
	waitStatus(t, srv.URL+"/readyz", http.StatusServiceUnavailable)
	c.send(`{"type":"op","rev":1,"seq":2,"op":["?"]}`)
	m := c.nextAny()
	if m.Type != "error" || m.Code != collab.CodeStorageFull || m.Seq != 2 {
		t.Fatalf("op on a full disk: %+v", m)
	}
	if code, body := httpStatus(t, "POST", srv.URL+"/api/docs", `{"title":"x"}`); code != http.StatusInsufficientStorage || !strings.Contains(body, collab.CodeStorageFull) {
		t.Fatalf("create on a full disk: %d %s", code, body)
	}
	if code, body := httpStatusAs(t, srv.adminToken(), "DELETE", srv.URL+"/api/docs/"+id, ""); code != http.StatusInsufficientStorage {
		t.Fatalf("delete on a full disk: %d %s", code, body)
	}
	if d, err := getDoc(srv.URL, id); err != nil || d.Text != "abc!" || d.Rev != 1 {
		t.Fatalf("read on a full disk: %+v %v", d, err)
	}
	code, body := httpStatusAs(t, srv.adminToken(), "GET", srv.URL+"/metrics", "")
	for _, want := range []string{
		"\ntandem_storage_writable 0\n",
		`tandem_messages_refused_total{code="storage_full"} 1`,
		`tandem_http_errors_total{code="storage_full",status="507"} 2`,
		"\ntandem_commit_seconds_count 1\n",
		"\ntandem_documents_open 1\n",
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("metrics on a full disk: %d, no %q in:\n%.3000s", code, want, body)
		}
	}

	// Room again: the same op (same seq) goes through, no restart.
	os.Remove(filepath.Join(disk, "ballast"))
	waitStatus(t, srv.URL+"/readyz", http.StatusOK)
	if _, body := httpStatusAs(t, srv.adminToken(), "GET", srv.URL+"/metrics", ""); !strings.Contains(body, "\ntandem_storage_writable 1\n") {
		t.Fatalf("metrics after space came back: no tandem_storage_writable 1")
	}
	c.send(`{"type":"op","rev":1,"seq":2,"op":["?"]}`)
	if ack := c.next("ack"); ack.Rev != 2 || ack.Seq != 2 {
		t.Fatalf("ack after space came back: %+v", ack)
	}

	// Editing as fast as it goes into a nearly full disk: storage_full,
	// not a crash. Large inserts, so the disk fills quickly.
	fillTo(t, disk, "ballast", reserve+(24<<20))
	// Random text, so that Badger's compression does not shrink it.
	rng := rand.New(rand.NewPCG(1, 2))
	bigText := func() string {
		b := make([]byte, 200<<10)
		for i := range b {
			b[i] = 'a' + byte(rng.IntN(26))
		}
		return string(b)
	}
	acked := map[string]int64{} // doc -> head acknowledged
	nacked := 0
	full := false
	docs := []string{id}
	var e *rawClient
	var rev int64
	seq := uint64(100)
	for round := 0; !full && round < 2000; round++ {
		if round%30 == 0 {
			if round > 0 { // a document holds 8 MiB at most
				nid, err := createDoc(srv.URL, "more", "")
				if err != nil {
					break // 507 once full: checked below
				}
				docs = append(docs, nid)
				e.conn.Close()
			}
			e = dialRaw(t, srv.URL, docs[len(docs)-1], key)
			rev = e.next("hello").Rev
		}
		seq++
		e.send(fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":[%q]}`, rev, seq, bigText()))
		switch r := e.nextAny(); {
		case r.Type == "ack":
			rev = r.Rev
			acked[docs[len(docs)-1]] = r.Rev
			nacked++
		case r.Type == "error" && r.Code == collab.CodeStorageFull:
			full = true
		default:
			t.Fatalf("round %d: %+v", round, r)
		}
	}
	t.Logf("storage_full after %d acknowledged ops of 200 KiB in %d documents", nacked, len(docs))
	if !full {
		t.Fatalf("never reached storage_full (%d documents)", len(docs))
	}
	select {
	case <-srv.done:
		t.Fatalf("the server died on a full disk: %v\n%s", srv.err, srv.log())
	default:
	}
	if !strings.Contains(srv.log(), "disk nearly full: writes stopped") {
		t.Errorf("no ERROR log about the full disk:\n%s", srv.log())
	}

	// Stop it, fill the disk to the brim, start again: reads, no writes.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := srv.exitCode(20 * time.Second); !ok || code != 0 {
		t.Fatalf("shutdown on a full disk: exit %d (%v)\n%s", code, ok, srv.log())
	}
	fillTo(t, disk, "ballast2", 0)
	srv = startServer(t, dir, flags...)
	for doc, rev := range acked {
		d, err := getDoc(srv.URL, doc)
		if err != nil || d.Rev < rev {
			t.Fatalf("after a restart on a full disk, %s: %+v %v; acknowledged up to %d", doc, d, err, rev)
		}
	}
	if code, _ := httpStatus(t, "POST", srv.URL+"/api/docs", `{"title":"x"}`); code != http.StatusInsufficientStorage {
		t.Fatalf("create after a restart on a full disk: %d", code)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := srv.exitCode(20 * time.Second); !ok || code != 0 {
		t.Fatalf("shutdown: exit %d (%v)\n%s", code, ok, srv.log())
	}

	// The offline tools read a full disk.
	if code, out := runTandem(t, nil, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify on a full disk: exit %d\n%s", code, out)
	}
	out := t.TempDir()
	if code, o := runTandem(t, nil, "export", "--data-dir", dir, "--out", out); code != 0 {
		t.Fatalf("export on a full disk: exit %d\n%s", code, o)
	}
	var manifest []struct{ ID string }
	raw, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &manifest); err != nil || len(manifest) < len(docs) {
		t.Fatalf("export manifest: %d documents (%v), want %d", len(manifest), err, len(docs))
	}
}

// TestDiskFullAtFullSpeed (issue 19): with the default free-space check
// (once a second) and four writers sending 200 KiB ops as fast as they
// are acknowledged, a nearly full disk ends in storage_full, never in a
// crash (Badger's memory-mapped memtable answers a write with no disk
// behind it with SIGBUS): every write is accounted for against the room
// measured last. Every acknowledged op survives a restart, and the
// offline tools read the directory on the full disk.
func TestDiskFullAtFullSpeed(t *testing.T) {
	disk := smallDisk(t, 160)
	dir := filepath.Join(disk, "data")
	srv := startServer(t, dir, "--min-free-space", "48MiB")
	const writers = 4
	type result struct {
		acked   map[string]int64 // document -> its revision acknowledged last
		refused bool             // storage_full
		err     error
	}
	results := make([]result, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := &results[w]
			r.acked = map[string]int64{}
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			b := make([]byte, 200<<10)
			// A document holds 8 MiB at most: a writer moves to a new one
			// when its document is full (too_large), until the disk is
			// (storage_full, or a 507 creating a document).
			for docs := 0; !r.refused && r.err == nil && docs < 100; docs++ {
				doc, err := createDoc(srv.URL, fmt.Sprintf("writer %d", w), "")
				if err != nil {
					if strings.Contains(err.Error(), "507") {
						r.refused = true
					} else {
						r.err = err
					}
					return
				}
				r.err = writeUntilFull(srv.URL, doc, rng, b, r.acked, &r.refused)
			}
		})
	}
	wg.Wait()
	select {
	case <-srv.done:
		t.Fatalf("the server died on a full disk: %v\n%s", srv.err, srv.log())
	default:
	}
	total, docs := int64(0), 0
	for w, r := range results {
		if r.err != nil {
			t.Fatalf("writer %d: %v\n%s", w, r.err, srv.log())
		}
		if !r.refused {
			t.Fatalf("writer %d never met a full disk", w)
		}
		for _, rev := range r.acked {
			total += rev
			docs++
		}
	}
	t.Logf("%d ops of 200 KiB acknowledged in %d documents before storage_full", total, docs)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := srv.exitCode(30 * time.Second); !ok || code != 0 {
		t.Fatalf("shutdown on a full disk: exit %d (%v)\n%s", code, ok, srv.log())
	}
	for _, args := range [][]string{{"verify", "--data-dir", dir}, {"export", "--data-dir", dir, "--out", t.TempDir()}} {
		if code, out := runTandem(t, nil, args...); code != 0 {
			t.Fatalf("%s on the full disk: exit %d\n%s", args[0], code, out)
		}
	}
	srv = startServer(t, dir, "--min-free-space", "48MiB")
	for w, r := range results {
		for doc, rev := range r.acked {
			if d, err := getDoc(srv.URL, doc); err != nil || d.Rev < rev {
				t.Fatalf("writer %d after the restart, %s: %+v %v; acknowledged up to %d", w, doc, d, err, rev)
			}
		}
	}
}

// writeUntilFull sends 200 KiB ops of random letters to doc as fast as they
// are acknowledged, recording the acknowledged revision in acked[doc], until
// the document is full (too_large: nil) or the disk is (storage_full:
// *full is set).
func writeUntilFull(base, doc string, rng *rand.Rand, b []byte, acked map[string]int64, full *bool) error {
	c, _, err := websocket.DefaultDialer.Dial(wsURL(base, doc, url.Values{}), nil)
	if err != nil {
		return err
	}
	defer c.Close()
	next := func() ([]serverMsg, error) {
		c.SetReadDeadline(time.Now().Add(60 * time.Second)) // bounds a stuck run
		_, data, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		return parseFrame(data)
	}
	if _, err := next(); err != nil { // hello
		return err
	}
	for seq := uint64(1); ; seq++ {
		for i := range b {
			b[i] = 'a' + byte(rng.IntN(26)) // incompressible enough
		}
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":[%q]}`, acked[doc], seq, b)); err != nil {
			return err
		}
		for answered := false; !answered; {
			msgs, err := next()
			if err != nil {
				return fmt.Errorf("%s after revision %d: %w", doc, acked[doc], err)
			}
			for _, m := range msgs {
				switch {
				case m.Type == "ack":
					acked[doc], answered = m.Rev, true
				case m.Type == "error" && m.Code == collab.CodeStorageFull:
					*full = true
					return nil
				case m.Type == "error" && m.Code == collab.CodeTooLarge:
					return nil
				case m.Type == "error":
					return fmt.Errorf("error %s: %s", m.Code, m.Message)
				}
			}
		}
	}
}
