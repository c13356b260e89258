//go:build unix

// Process tests of the tools: backup (online and offline), restore,
// export and verify, run as the real binary against real servers.

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/ot"
)

// runTool runs the binary to completion and returns its exit code, stdout
// and stderr apart.
func runTool(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(tandemBinary(t), args...)
	cmd.Env = childEnv(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("tandem %v still running after 30s:\n%s%s", args, out.String(), errOut.String())
	}
	if s := out.String() + errOut.String(); strings.Contains(s, "goroutine ") || strings.Contains(s, "DATA RACE") {
		t.Errorf("tandem %v panicked or raced:\n%s", args, s)
	}
	return code, out.String(), errOut.String()
}

// mustTool runs the binary and fails the test unless it exits 0.
func mustTool(t *testing.T, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := runTool(t, env, args...)
	if code != 0 {
		t.Fatalf("tandem %v: exit %d:\n%s%s", args, code, out, errOut)
	}
	return out, errOut
}

// wantToolError runs the binary and checks it fails with every one of
// wants in its output.
func wantToolError(t *testing.T, env []string, args []string, wants ...string) string {
	t.Helper()
	code, out, errOut := runTool(t, env, args...)
	all := out + errOut
	if code == 0 {
		t.Errorf("tandem %v: exit 0, want a failure mentioning %q:\n%s", args, wants, all)
		return all
	}
	for _, w := range wants {
		if !strings.Contains(all, w) {
			t.Errorf("tandem %v: exit %d without %q in:\n%s", args, code, w, all)
		}
	}
	return all
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// listIDs lists a server's document ids.
func listIDs(t *testing.T, base string) []string {
	t.Helper()
	var out struct {
		Docs []struct {
			ID string `json:"id"`
		} `json:"docs"`
	}
	if err := getJSON(base+"/api/docs?limit=1000", &out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range out.Docs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// textAt is GET /api/docs/:id/text?rev=N.
func textAt(t *testing.T, base, id string, rev int64) string {
	t.Helper()
	var out struct {
		Text string `json:"text"`
		Rev  int64  `json:"rev"`
	}
	if err := getJSON(fmt.Sprintf("%s/api/docs/%s/text?rev=%d", base, id, rev), &out); err != nil {
		t.Fatal(err)
	}
	if out.Rev != rev {
		t.Fatalf("text of %s at %d: answered revision %d", id, rev, out.Rev)
	}
	return out.Text
}

// states reads every document's head and text.
func states(t *testing.T, base string) map[string]docState {
	t.Helper()
	m := map[string]docState{}
	for _, id := range listIDs(t, base) {
		d, err := getDoc(base, id)
		if err != nil {
			t.Fatal(err)
		}
		m[id] = d
	}
	return m
}

// waitQuiet waits until no document's head moves for a while (ops in
// flight when the editors stopped are committed).
func waitQuiet(t *testing.T, base string) map[string]docState {
	t.Helper()
	prev := states(t, base)
	for range 50 {
		time.Sleep(150 * time.Millisecond)
		cur := states(t, base)
		same := len(cur) == len(prev)
		for id, d := range cur {
			same = same && prev[id].Rev == d.Rev
		}
		if same {
			return cur
		}
		prev = cur
	}
	t.Fatal("documents still changing 7s after the editors stopped")
	return nil
}

// editAs commits one op as user over a WebSocket and returns its revision.
func editAs(t *testing.T, base, id, user, insert string) int64 {
	t.Helper()
	q := url.Values{"key": {uuid.NewString()}, "user": {user}, "name": {user}}
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(base, id, q), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &rawClient{t: t, conn: conn}
	hello := c.next("hello")
	op, _ := ot.Op{ot.Insert(insert)}.MarshalJSON()
	c.send(fmt.Sprintf(`{"type":"op","rev":%d,"seq":1,"op":%s}`, hello.Rev, op))
	return c.next("ack").Rev
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// stopServer stops a server with SIGTERM and waits for it (so that its
// directory is closed cleanly).
func stopServer(t *testing.T, s *process) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := s.exitCode(15 * time.Second); !ok || code != 0 {
		t.Fatalf("SIGTERM: exited %v, code %d:\n%s", ok, code, s.log())
	}
}

// manifestDoc is an entry of export's manifest.json.
type manifestDoc struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Rev     int64     `json:"rev"`
	Head    int64     `json:"head"`
	Oldest  int64     `json:"oldest"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Authors []string  `json:"authors"`
	File    string    `json:"file"`
	History string    `json:"history"`
}

func readManifest(t *testing.T, dir string) []manifestDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m []manifestDoc
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v\n%s", err, b)
	}
	return m
}

// replayHistory applies a history file's ops to its base line's text and
// checks revisions follow each other.
func replayHistory(t *testing.T, name string) (text string, rev int64, users []string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	first := true
	for sc.Scan() {
		var l struct {
			Rev  int64           `json:"rev"`
			Base bool            `json:"base"`
			Text string          `json:"text"`
			User string          `json:"user"`
			Src  string          `json:"src"`
			Seq  uint64          `json:"seq"`
			Time time.Time       `json:"time"`
			Op   json.RawMessage `json:"op"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v: %s", name, err, sc.Bytes())
		}
		if first {
			if !l.Base {
				t.Fatalf("%s: first line is not the base: %s", name, sc.Bytes())
			}
			text, rev, first = l.Text, l.Rev, false
			continue
		}
		if l.Rev != rev+1 || l.Time.IsZero() || l.Src == "" || l.Seq == 0 {
			t.Fatalf("%s: after revision %d: %s", name, rev, sc.Bytes())
		}
		op, err := ot.ParseJSON(l.Op)
		if err != nil {
			t.Fatalf("%s: revision %d: %v", name, l.Rev, err)
		}
		if text, err = ot.Apply(text, op); err != nil {
			t.Fatalf("%s: revision %d does not apply: %v", name, l.Rev, err)
		}
		rev = l.Rev
		if l.User != "" {
			users = append(users, l.User)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return text, rev, users
}

// frameEnds returns the offsets where the frames of a backup file end.
func frameEnds(b []byte) []int {
	var ends []int
	for off := 0; off+8 <= len(b); {
		off += 8 + int(binary.LittleEndian.Uint64(b[off:]))
		ends = append(ends, off)
	}
	return ends
}

// TestProcessBackupTools is the scenario, end to end: a server is
// populated over REST and WebSockets; a backup is taken over HTTP while
// clients keep editing; restored into a new directory, a server started on
// it serves every document as the source had it at the backup's cut. A
// full and an incremental backup restore to the later state. export
// matches GET text?rev=N, its history replays to the text; verify passes
// on good data and names the document and revision of damage; and the
// tools fail clearly on missing, truncated and foreign files, non-empty
// and locked directories, and wrong tokens.
func TestProcessBackupTools(t *testing.T) {
	const token = "s3cret-admin-token"
	tokenEnv := []string{"TANDEM_ADMIN_TOKEN=" + token}
	root := t.TempDir()
	path := func(name string) string { return filepath.Join(root, name) }
	srcDir := path("src")
	src := startServer(t, srcDir, "--admin-token", token, "--snapshot-every", "25")

	// Populate: documents over REST, an edit by a named user, a document
	// that will be deleted after the full backup.
	const nDocs = 3
	ids := make([]string, nDocs)
	for i := range ids {
		var err error
		if ids[i], err = createDoc(src.URL, fmt.Sprintf("doc %d 📝", i), initialText); err != nil {
			t.Fatal(err)
		}
	}
	if rev := editAs(t, src.URL, ids[0], "alice", "alice was here "); rev != 1 {
		t.Fatalf("alice's edit at revision %d, want 1", rev)
	}
	doomed, err := createDoc(src.URL, "to be deleted", "bye")
	if err != nil {
		t.Fatal(err)
	}
	var eds []*editor
	for i, id := range ids {
		for j := range 2 {
			e, err := dialEditor(src.URL, id, "", uint64(i*10+j+1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.close)
			eds = append(eds, e)
		}
	}
	stop := make(chan struct{})
	results := make(chan []error, 1)
	go func() { results <- editAll(eds, 0, 600, stop) }()
	time.Sleep(400 * time.Millisecond)

	// The full backup, over HTTP, while the editors go on.
	full := path("full.backup")
	start := time.Now()
	out, errOut := mustTool(t, tokenEnv, "backup", "--server", src.URL, "--out", full)
	t.Logf("online full backup: %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(errOut))
	next1, err := strconv.ParseUint(lastLine(out), 10, 64)
	if err != nil || next1 == 0 {
		t.Fatalf("backup's last stdout line %q is not the next version", lastLine(out))
	}
	if !strings.Contains(errOut, fmt.Sprintf("%d documents", nDocs+1)) || !strings.Contains(errOut, "--since "+lastLine(out)) {
		t.Errorf("backup's report does not give the document count and the next --since:\n%s", errOut)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 2 {
		t.Errorf("after the backup %s holds %d entries (a temporary file left?)", root, len(ents))
	}
	time.Sleep(400 * time.Millisecond) // edits after the cut
	if err := doDelete(src.URL, token, doomed); err != nil {
		t.Fatal(err)
	}
	born, err := createDoc(src.URL, "born after the full backup", "new")
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	var errs []error
	select {
	case errs = <-results:
	case <-time.After(15 * time.Second):
		t.Fatal("editors still running 15s after stop")
	}
	acks := 0
	for i, err := range errs {
		acks += len(eds[i].acks)
		if err != nil && !errors.Is(err, errStopped) {
			t.Fatalf("editor %d: %v", i, err)
		}
		eds[i].close()
	}
	later := waitQuiet(t, src.URL)

	// The incremental backup, with --token this time.
	incr := path("incr.backup")
	out, _ = mustTool(t, nil, "backup", "--server", src.URL, "--token", token, "--since", strconv.FormatUint(next1, 10), "--out", incr)
	next2, err := strconv.ParseUint(lastLine(out), 10, 64)
	if err != nil || next2 <= next1 {
		t.Fatalf("incremental backup: next version %q after %d", lastLine(out), next1)
	}
	t.Logf("%d ops acknowledged; versions: full → %d, incremental → %d", acks, next1, next2)

	// Restore the full backup and serve it: every document as the source
	// had it at the cut (the restored head).
	r1 := path("restored-full")
	_, errOut = mustTool(t, nil, "restore", "--in", full, "--data-dir", r1)
	if !strings.Contains(errOut, fmt.Sprintf("%d documents", nDocs+1)) {
		t.Errorf("restore's report: %s", errOut)
	}
	// (A short idle timeout: the document edited below is unloaded before
	// the SIGTERM. A hub that a lone connection loaded and that is still
	// loaded at shutdown trips the race detector in collab.Manager: its
	// running.Add(1) is not ordered before Close's Wait.)
	srv1 := startServer(t, r1, "--idle-timeout", "100ms")
	wantIDs := append(slices.Clone(ids), doomed)
	slices.Sort(wantIDs)
	if got := listIDs(t, srv1.URL); !slices.Equal(got, wantIDs) {
		t.Fatalf("restored full backup has documents %v, want %v", got, wantIDs)
	}
	cut := map[string]docState{}
	advanced := 0
	for _, id := range wantIDs {
		d, err := getDoc(srv1.URL, id)
		if err != nil {
			t.Fatal(err)
		}
		cut[id] = d
		if id == doomed {
			if d.Text != "bye" || d.Rev != 0 {
				t.Errorf("restored %s: %d %q", id, d.Rev, d.Text)
			}
			continue
		}
		if want := textAt(t, src.URL, id, d.Rev); d.Text != want {
			t.Errorf("restored %s at revision %d: %d bytes, the source had %d bytes there", id, d.Rev, len(d.Text), len(want))
		}
		if d.Rev < 2 {
			t.Errorf("restored %s at revision %d: the edits before the backup are missing", id, d.Rev)
		}
		if later[id].Rev > d.Rev {
			advanced++
		}
	}
	if advanced == 0 {
		t.Errorf("no document was edited after the cut: the test shows nothing")
	}
	// The restored server works, and keeps the exactly-once index: edit it.
	if rev := editAs(t, srv1.URL, ids[1], "bob", "restored "); rev != cut[ids[1]].Rev+1 {
		t.Errorf("edit on the restored server at revision %d, want %d", rev, cut[ids[1]].Rev+1)
	}
	time.Sleep(500 * time.Millisecond) // unloaded (see above)
	stopServer(t, srv1)                // the offline tools read r1 below

	// Full + incremental (given as arguments) = the later state.
	r2 := path("restored-incr")
	mustTool(t, nil, "restore", "--data-dir", r2, full, incr)
	srv2 := startServer(t, r2)
	got := states(t, srv2.URL)
	if len(got) != len(later) {
		t.Errorf("full+incremental restore has %d documents, the source %d", len(got), len(later))
	}
	for id, want := range later {
		if g, ok := got[id]; !ok || g.Rev != want.Rev || g.Text != want.Text {
			t.Errorf("full+incremental restore: %s at %d (%d bytes), the source at %d (%d bytes)", id, g.Rev, len(g.Text), want.Rev, len(want.Text))
		}
	}
	if _, ok := got[doomed]; ok {
		t.Errorf("the document deleted between the backups is back")
	}
	if _, ok := got[born]; !ok {
		t.Errorf("the document created between the backups is missing")
	}
	stopServer(t, srv2)

	t.Run("Export", func(t *testing.T) {
		// Everything, from the backup file, while the source keeps running.
		e1 := path("export-full")
		mustTool(t, nil, "export", "--from", full, "--out", e1)
		m := readManifest(t, e1)
		if len(m) != len(wantIDs) {
			t.Fatalf("manifest lists %d documents, want %d", len(m), len(wantIDs))
		}
		for _, d := range m {
			b, err := os.ReadFile(filepath.Join(e1, d.File))
			if err != nil {
				t.Fatal(err)
			}
			if d.File != d.ID+".txt" || d.Rev != cut[d.ID].Rev || d.Head != d.Rev || d.Created.IsZero() || d.Updated.Before(d.Created) || d.History != "" {
				t.Errorf("manifest entry %+v", d)
			}
			want := cut[d.ID].Text
			if d.ID != doomed {
				want = textAt(t, src.URL, d.ID, d.Rev)
			}
			if string(b) != want {
				t.Errorf("export of %s at %d differs from GET text?rev=%d", d.ID, d.Rev, d.Rev)
			}
			if d.ID == ids[0] && !slices.Contains(d.Authors, "alice") {
				t.Errorf("authors of %s: %v, want alice among them", d.ID, d.Authors)
			}
		}

		// One document at a revision, with its history.
		if cut[ids[0]].Rev < 5 {
			t.Fatalf("%s has %d revisions at the cut: too few edits to test --rev 5", ids[0], cut[ids[0]].Rev)
		}
		e2 := path("export-rev")
		mustTool(t, nil, "export", "--from", full, "--doc", ids[0], "--rev", "5", "--history", "--out", e2)
		m = readManifest(t, e2)
		if len(m) != 1 || m[0].ID != ids[0] || m[0].Rev != 5 || m[0].Head != cut[ids[0]].Rev || m[0].Title != "doc 0 📝" {
			t.Fatalf("manifest %+v", m)
		}
		b, err := os.ReadFile(filepath.Join(e2, ids[0]+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		if want := textAt(t, src.URL, ids[0], 5); string(b) != want {
			t.Errorf("export --rev 5: %q, GET text?rev=5: %q", b, want)
		}
		text, rev, users := replayHistory(t, filepath.Join(e2, m[0].History))
		if rev != 5 || text != string(b) || !slices.Contains(users, "alice") {
			t.Errorf("history replays to revision %d (%q, users %v), want 5 and the exported text", rev, text, users)
		}

		// The whole history of every document, from a stopped server's
		// directory: it replays to the exported text.
		e3 := path("export-dir")
		mustTool(t, nil, "export", "--data-dir", r1, "--history", "--out", e3)
		for _, d := range readManifest(t, e3) {
			b, err := os.ReadFile(filepath.Join(e3, d.File))
			if err != nil {
				t.Fatal(err)
			}
			text, rev, _ := replayHistory(t, filepath.Join(e3, d.History))
			if rev != d.Head || text != string(b) {
				t.Errorf("%s: history replays to %d, head %d; texts equal: %v", d.ID, rev, d.Head, text == string(b))
			}
		}

		wantToolError(t, nil, []string{"export", "--from", full, "--doc", ids[0], "--rev", "100000", "--out", path("x1")}, "past its head")
		wantToolError(t, nil, []string{"export", "--from", full, "--rev", "3", "--out", path("x2")}, "--rev needs --doc")
		wantToolError(t, nil, []string{"export", "--from", full, "--doc", "no-such-doc", "--out", path("x3")}, `no document "no-such-doc"`)
		wantToolError(t, nil, []string{"export", "--from", full, "--out", e1}, "not empty")
	})

	t.Run("Verify", func(t *testing.T) {
		out, _ := mustTool(t, nil, "verify", "--from", full, "--from", incr)
		if !strings.Contains(out, fmt.Sprintf("documents %d,", len(later))) || !strings.Contains(out, " 0 problems") || lastLine(out) != "ok" {
			t.Errorf("verify of full+incremental:\n%s", out)
		}
		out, _ = mustTool(t, nil, "verify", "--data-dir", r1)
		if !strings.Contains(out, fmt.Sprintf("documents %d,", len(wantIDs))) || !strings.Contains(out, "records ") {
			t.Errorf("verify --data-dir:\n%s", out)
		}

		// Damage a copy with Badger's own API: a record that does not
		// decode, and one that is gone.
		bad := path("damaged")
		copyDir(t, r1, bad)
		db, err := badger.Open(badger.DefaultOptions(bad).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		recKey := func(txn *badger.Txn, id string, rev int64) []byte {
			item, err := txn.Get([]byte("d/" + id))
			if err != nil {
				t.Fatal(err)
			}
			var meta struct{ Gen uint64 }
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &meta) }); err != nil {
				t.Fatal(err)
			}
			k := append([]byte("r/"+id), 0)
			k = binary.BigEndian.AppendUint64(k, meta.Gen)
			return binary.BigEndian.AppendUint64(k, uint64(rev))
		}
		err = db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(recKey(txn, ids[1], 3), []byte(`{"rev":3,"op":[1,"garbage`)); err != nil {
				return err
			}
			return txn.Delete(recKey(txn, ids[2], 2))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runTool(t, nil, "verify", "--data-dir", bad)
		if code != 1 || !strings.Contains(out, "doc "+ids[1]+" rev 3: ") || !strings.Contains(out, "doc "+ids[2]+" rev 2: ") {
			t.Errorf("verify of a damaged store: exit %d, want 1 naming doc %s rev 3 and doc %s rev 2:\n%s%s", code, ids[1], ids[2], out, errOut)
		} else {
			t.Logf("verify of a damaged store:\n%s%s", out, errOut)
		}

		// A backup of the damaged store (offline) fails verification too.
		damaged := path("damaged.backup")
		mustTool(t, nil, "backup", "--data-dir", bad, "--out", damaged)
		if code, out, _ := runTool(t, nil, "verify", "--from", damaged); code != 1 || !strings.Contains(out, "doc "+ids[1]+" rev 3: ") {
			t.Errorf("verify of a damaged store's backup: exit %d:\n%s", code, out)
		}
	})

	t.Run("BadFiles", func(t *testing.T) {
		b, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		write := func(name string, data []byte) string {
			p := path(name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		ends := frameEnds(b)
		cases := []struct {
			name, file string
			want       string
		}{
			{"missing", path("no-such.backup"), "does not exist"},
			{"empty", write("empty.backup", nil), "is empty"},
			{"truncated mid-frame", write("half.backup", b[:len(b)/2]), "truncated"},
			{"truncated between frames", write("cut.backup", b[:ends[len(ends)-2]]), "does not end with a Tandem backup trailer"},
			{"text", write("notes.txt", []byte("these are my notes, not a backup\n")), "not a Tandem backup"},
			{"tiny", write("tiny.txt", []byte("hi\n")), "not a Tandem backup"},
			{"directory", r1, "is a directory"},
		}
		for _, c := range cases {
			for _, args := range [][]string{
				{"restore", "--in", c.file, "--data-dir", path("never-" + strings.ReplaceAll(c.name, " ", "-"))},
				{"verify", "--from", c.file},
				{"export", "--from", c.file, "--out", path("never-export")},
			} {
				wantToolError(t, nil, args, c.want)
			}
			if _, err := os.Stat(path("never-" + strings.ReplaceAll(c.name, " ", "-"))); err == nil {
				t.Errorf("%s: a failed restore left its directory behind", c.name)
			}
		}
		if _, err := os.Stat(path("never-export")); err == nil {
			t.Errorf("a failed export left its directory behind")
		}
		// A Badger backup of another program's database.
		fdir := path("foreign-db")
		db, err := badger.Open(badger.DefaultOptions(fdir).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) })
		var buf bytes.Buffer
		if _, err := db.Backup(&buf, 0); err != nil {
			t.Fatal(err)
		}
		db.Close()
		foreign := write("foreign.backup", buf.Bytes())
		wantToolError(t, nil, []string{"restore", "--in", foreign, "--data-dir", path("never-foreign")}, "not a Tandem backup")
		wantToolError(t, nil, []string{"verify", "--from", foreign}, "not a Tandem backup")

		// Order of files: a full backup first, no gap between incrementals.
		wantToolError(t, nil, []string{"restore", "--in", incr, "--data-dir", path("never-incr")}, "is an incremental backup")
		incr2 := path("incr2.backup")
		mustTool(t, tokenEnv, "backup", "--server", src.URL, "--since", strconv.FormatUint(next2, 10), "--out", incr2)
		wantToolError(t, nil, []string{"restore", "--in", full, "--in", incr2, "--data-dir", path("never-gap")}, "a backup in between is missing")
		mustTool(t, nil, "verify", "--from", full, "--from", incr, "--from", incr2)

		// A non-empty directory is never restored into, and not touched.
		keep := path("occupied")
		os.MkdirAll(keep, 0o755)
		os.WriteFile(filepath.Join(keep, "mine.txt"), []byte("mine"), 0o644)
		wantToolError(t, nil, []string{"restore", "--in", full, "--data-dir", keep}, "not empty")
		if ents, _ := os.ReadDir(keep); len(ents) != 1 {
			t.Errorf("the occupied directory has %d entries after a refused restore", len(ents))
		}
		// An existing backup file is not replaced without --force.
		wantToolError(t, tokenEnv, []string{"backup", "--server", src.URL, "--out", full}, "exists", "--force")
		// Wrong directories.
		wantToolError(t, nil, []string{"verify", "--data-dir", path("nowhere")}, "does not exist")
		wantToolError(t, nil, []string{"verify", "--data-dir", keep}, "not a Tandem data directory")
		wantToolError(t, nil, []string{"verify", "--data-dir", full}, "not a directory")
	})

	t.Run("Locked", func(t *testing.T) {
		// The source server holds its directory: the offline tools say so
		// and point to the online backup.
		for _, args := range [][]string{
			{"backup", "--data-dir", srcDir, "--out", path("locked.backup")},
			{"export", "--data-dir", srcDir, "--out", path("locked-export")},
			{"verify", "--data-dir", srcDir},
		} {
			wantToolError(t, nil, args, "in use by another process", "tandem backup --server")
		}
		if _, err := os.Stat(path("locked.backup")); err == nil {
			t.Errorf("a failed backup left its file")
		}
		// TANDEM_DATA_DIR (as in the container image) does not clash with
		// --from.
		mustTool(t, []string{"TANDEM_DATA_DIR=" + srcDir}, "verify", "--from", full)
		wantToolError(t, []string{"TANDEM_DATA_DIR=" + srcDir}, []string{"verify"}, "in use by another process")
	})

	t.Run("AdminAuth", func(t *testing.T) {
		wantToolError(t, nil, []string{"backup", "--server", src.URL, "--token", "wrong", "--out", path("a.backup")}, "401", "refused the admin token")
		wantToolError(t, nil, []string{"backup", "--server", src.URL, "--out", path("a.backup")}, "401", "--token")
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
			req, _ := http.NewRequest("GET", src.URL+"/api/admin/backup", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error struct{ Code string } }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
				t.Errorf("admin backup with Authorization %q: %d %q, want 401 unauthorized", auth, resp.StatusCode, e.Error.Code)
			}
		}
		// A server started without --admin-token makes one, in its data
		// directory, readable by its user only; loopback alone is no way
		// in (a reverse proxy on this machine makes every request loopback).
		dir3 := path("restored-incr")
		srv3 := startServer(t, dir3)
		if fi, err := os.Stat(filepath.Join(dir3, adminTokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the server's admin token file: %v %v", fi, err)
		}
		wantToolError(t, nil, []string{"backup", "--server", srv3.URL, "--out", path("loopback.backup")}, "401", "--token-file")
		mustTool(t, nil, "backup", "--server", srv3.URL, "--token-file", filepath.Join(dir3, adminTokenFile), "--out", path("local.backup"))
		for _, h := range []map[string]string{nil, {"X-Forwarded-For": "203.0.113.9"}} {
			req, _ := http.NewRequest("GET", srv3.URL+"/api/admin/backup", nil)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("admin request from loopback without a token (%v): %d, want 401", h, resp.StatusCode)
			}
		}
	})
}

// TestProcessBackupStream: `tandem backup --server` against a stand-in
// server: a stream cut short is an error and leaves no file; a whole
// stream whose HTTP trailer a proxy dropped still gives the next version
// (from the file's own trailer).
func TestProcessBackupStream(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, filepath.Join(dir, "data"))
	if _, err := createDoc(srv.URL, "one", "text"); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full.backup")
	// The admin token the server keeps in its data directory.
	out, _ := mustTool(t, nil, "backup", "--server", srv.URL, "--token-file", filepath.Join(dir, "data", adminTokenFile), "--out", full)
	next := lastLine(out)
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Pointer[[]byte] // (the race detector cannot see through the child process)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tandem-Documents", "1")
		w.WriteHeader(http.StatusOK)
		w.Write(*body.Load())
	}))
	defer fake.Close()

	body.Store(&b) // no Tandem-Next-Version trailer
	out, _ = mustTool(t, nil, "backup", "--server", fake.URL, "--out", filepath.Join(dir, "proxied.backup"))
	if lastLine(out) != next {
		t.Errorf("backup without the HTTP trailer: next version %q, want %s", lastLine(out), next)
	}
	for _, cut := range []int{len(b) / 2, frameEnds(b)[len(frameEnds(b))-2]} {
		part := b[:cut]
		body.Store(&part)
		file := filepath.Join(dir, fmt.Sprintf("cut-%d.backup", cut))
		wantToolError(t, nil, []string{"backup", "--server", fake.URL, "--out", file}, "not whole", "nothing written")
		if _, err := os.Stat(file); err == nil {
			t.Errorf("a stream cut at %d of %d bytes left %s", cut, len(b), file)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left in the directory: %v", names)
	}
}

// doDelete deletes document id with the server's admin token.
func doDelete(base, adminToken, id string) error {
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/docs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("DELETE %s: %d %s", id, resp.StatusCode, b)
	}
	return nil
}
