package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
	"github.com/tandemdocs/tandem/storage/jsstore"
	"github.com/tandemdocs/tandem/storage/jsstore/natstest"
)

// TestClusterBackupRoundTrip: a cluster's backup (the tool's and a node's
// admin endpoint's) restores into a single node with the same documents,
// history, text at every revision and exactly-once index; that single
// node's backup restores into another cluster, the same again; and the
// reading tools work on a cluster.
func TestClusterBackupRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("NATS and several stores: -short skips it")
	}
	ctx := t.Context()
	ns := natstest.Start(t)
	node := startInProcess(t, testServeConfig(t, "--nats", ns.ClientURL()), serverHooks{})
	cluster := openClusterForTest(t, ns.ClientURL())

	// A document edited by two clients through the node: sources, users,
	// the node's own snapshots.
	id, err := createDoc(node.url, "Live 📝", "shared\n")
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"ann", "bob"} {
		d, err := client.Dial(ctx, node.url, id, client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		for j := range 30 {
			if err := d.Edit(client.Insert(d.Len(), fmt.Sprintf("%s%d·", name[:1], j))); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Synced(ctx); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		d.Close()
	}
	// One compacted with sources on both sides of the compaction, one
	// compacted to its head, one empty.
	writeHistory(t, cluster, "compacted", 40, 25)
	writeHistory(t, cluster, "at-head", 6, 6)
	if err := cluster.CreateDocument(ctx, storage.Document{ID: "empty", Title: "", Created: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	writeRichHistory(t, cluster, "rich", 12, 5)

	dir := t.TempDir()
	file := func(n string) string { return filepath.Join(dir, n) }
	runCmd(t, backupCmd, "--nats", ns.ClientURL(), "--out", file("cluster.backup"))
	runCmd(t, restoreCmd, "--data-dir", file("single"), file("cluster.backup"))
	single := openBadgerForTest(t, file("single"))
	compareStores(t, cluster, single)
	if out := runCmd(t, verifyCmd, "--from", file("cluster.backup")); !strings.Contains(out, "documents 5,") {
		t.Errorf("verify --from: %s", out)
	}
	if out := runCmd(t, verifyCmd, "--nats", ns.ClientURL()); !strings.Contains(out, "documents 5,") || !strings.HasSuffix(strings.TrimSpace(out), "ok") {
		t.Errorf("verify --nats: %s", out)
	}

	// A node's admin endpoint streams the same.
	runCmd(t, backupCmd, "--server", node.url, "--token", testAdminToken, "--out", file("node.backup"))
	runCmd(t, restoreCmd, "--data-dir", file("single2"), file("node.backup"))
	compareStores(t, cluster, openBadgerForTest(t, file("single2")))
	if err := cmdErr(backupCmd, "--server", node.url, "--token", testAdminToken, "--out", file("incr.backup"), "--since", "5"); err == nil || !strings.Contains(err.Error(), "full") {
		t.Errorf("an incremental backup of a cluster node: %v, want a refusal saying backups are full", err)
	}

	// And back: the single node's own backup into another cluster.
	ns2 := natstest.Start(t)
	runCmd(t, backupCmd, "--data-dir", file("single"), "--out", file("single.backup"))
	runCmd(t, restoreCmd, "--nats", ns2.ClientURL(), file("single.backup"))
	cluster2 := openClusterForTest(t, ns2.ClientURL())
	compareStores(t, cluster, cluster2)
	// The restored documents are live: a node on that cluster edits them.
	node2 := startInProcess(t, testServeConfig(t, "--nats", ns2.ClientURL()), serverHooks{})
	d, err := client.Dial(ctx, node2.url, "compacted", client.Options{Name: "cat"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Edit(client.Insert(0, "after the restore ")); err != nil {
		t.Fatal(err)
	}
	if err := d.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := cmdErr(restoreCmd, "--nats", ns2.ClientURL(), file("single.backup")); err == nil || !strings.Contains(err.Error(), "already in the cluster") {
		t.Errorf("a second restore into the same cluster: %v, want a refusal", err)
	}
	runCmd(t, restoreCmd, "--nats", ns2.ClientURL(), "--skip-existing", file("single.backup"))
	if text, err := storage.ContentAt(ctx, cluster2, "compacted", 41); err != nil || !strings.HasPrefix(text, "after the restore ") {
		t.Errorf("the edit after the restore: %q, %v (a restore with --skip-existing must leave it)", text, err)
	}

	// export reads a cluster.
	runCmd(t, exportCmd, "--nats", ns.ClientURL(), "--out", file("export"))
	for _, doc := range []string{id, "compacted", "at-head", "empty", "rich"} {
		ext := ".txt"
		if doc == "rich" {
			ext = ".json" // a rich document's Delta
		}
		got, err := os.ReadFile(filepath.Join(file("export"), doc+ext))
		want, _, lerr := storage.Load(ctx, cluster, doc)
		_ = want
		text, terr := storage.ContentAt(ctx, cluster, doc, mustDoc(t, cluster, doc).Head)
		if err != nil || lerr != nil || terr != nil || string(got) != text {
			t.Errorf("export --nats: %s.txt = %q, %v; want %q", doc, got, cmp.Or(err, lerr, terr), text)
		}
	}
}

// writeRichHistory writes a rich document of n revisions (text typed
// with formatting, then formatting changed), compacted before compact.
func writeRichHistory(t *testing.T, s storage.Store, id string, n, compact int64) {
	t.Helper()
	ctx := t.Context()
	if err := s.CreateDocument(ctx, storage.Document{ID: id, Title: "Rich " + id, Type: doctype.RichName, Created: time.Now().Add(-time.Hour)}, `[{"insert":"Title"},{"insert":"\n","attributes":{"header":1}}]`); err != nil {
		t.Fatal(err)
	}
	for rev := int64(1); rev <= n; rev++ {
		js := fmt.Sprintf(`[{"retain":5},{"insert":"%d😀","attributes":{"bold":true}}]`, rev)
		if rev%3 == 0 {
			js = `[{"retain":2,"attributes":{"italic":true,"bold":null}}]`
		}
		op, _, err := doctype.Rich().ParseOp([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		commitRecord(t, s, id, storage.Record{Rev: rev, Op: op, User: "writer", Source: "rich-src", Seq: uint64(rev), Time: time.Now()})
	}
	if err := s.Compact(ctx, id, compact); err != nil {
		t.Fatal(err)
	}
}

// commitRecord commits r on top of revision r.Rev-1.
func commitRecord(t *testing.T, s storage.Store, id string, r storage.Record) {
	t.Helper()
	res, err := s.Commit(t.Context(), []storage.Append{{DocID: id, Head: r.Rev - 1, Records: []storage.Record{r}}})
	if err == nil {
		err = res[0]
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writeHistory writes a document of n revisions through the store, half
// of them with a source, and compacts it before rev compact.
func writeHistory(t *testing.T, s storage.Store, id string, n, compact int64) {
	t.Helper()
	ctx := t.Context()
	if err := s.CreateDocument(ctx, storage.Document{ID: id, Title: "History of " + id + " 文書", Created: time.Now().Add(-time.Hour)}, "base"); err != nil {
		t.Fatal(err)
	}
	for rev := int64(1); rev <= n; rev++ {
		r := storage.Record{Rev: rev, Op: doctype.PlainOp(ot.Op{ot.Insert(fmt.Sprintf("%d🙂", rev))}), User: "writer", Time: time.Now()}
		if rev%2 == 0 {
			r.Source, r.Seq = "source-"+id, uint64(rev)
		}
		commitRecord(t, s, id, r)
	}
	if err := s.Compact(ctx, id, compact); err != nil {
		t.Fatal(err)
	}
}

func openClusterForTest(t *testing.T, url string) *jsstore.Store {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := jsstore.Open(t.Context(), jsstore.Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openBadgerForTest(t *testing.T, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, ReadOnly: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustDoc(t *testing.T, s storage.Store, id string) storage.Document {
	t.Helper()
	d, err := s.Document(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runCmd runs a subcommand in this process and returns its stdout; it
// fails the test if the command fails.
func runCmd(t *testing.T, cmd func(context.Context, []string, io.Writer, io.Writer) error, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := cmd(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("%v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	return out.String()
}

func cmdErr(cmd func(context.Context, []string, io.Writer, io.Writer) error, args ...string) error {
	return cmd(context.Background(), args, io.Discard, io.Discard)
}

// compareStores checks got holds what want holds, as a client or a reader
// sees it: every document's metadata, records, text at every retained
// revision and exactly-once index.
func compareStores(t *testing.T, want, got storage.Portable) {
	t.Helper()
	ctx := t.Context()
	n := 0
	err := storage.EachDocument(ctx, want, func(w storage.Document) error {
		n++
		g, err := got.Document(ctx, w.ID)
		if err != nil {
			return err
		}
		if g.Title != w.Title || !g.Created.Equal(w.Created) || !g.Updated.Equal(w.Updated) || g.Head != w.Head || g.Oldest != w.Oldest || g.Type != w.Type {
			t.Errorf("document %s: %+v, want %+v", w.ID, g, w)
			return nil
		}
		wr, err := want.Records(ctx, w.ID, w.Oldest, w.Head)
		if err != nil {
			return err
		}
		gr, err := got.Records(ctx, w.ID, w.Oldest, w.Head)
		if err != nil {
			return err
		}
		for i := range wr {
			a, b := wr[i], gr[i]
			if a.Rev != b.Rev || a.Op.String() != b.Op.String() || a.Source != b.Source || a.Seq != b.Seq || a.User != b.User || !a.Time.Equal(b.Time) {
				t.Errorf("document %s revision %d: %+v, want %+v", w.ID, a.Rev, b, a)
			}
		}
		for rev := w.Oldest; rev <= w.Head; rev++ {
			wt, err := storage.ContentAt(ctx, want, w.ID, rev)
			if err != nil {
				return err
			}
			gt, err := storage.ContentAt(ctx, got, w.ID, rev)
			if err != nil || gt != wt {
				t.Errorf("document %s at %d: %q, %v; want %q", w.ID, rev, gt, err, wt)
			}
		}
		ws, err := want.Submissions(ctx, w.ID, w.Head)
		if err != nil {
			return err
		}
		gs, err := got.Submissions(ctx, w.ID, w.Head)
		if err != nil {
			return err
		}
		order := func(a, b storage.Submission) int {
			return cmp.Or(strings.Compare(a.Source, b.Source), cmp.Compare(a.Seq, b.Seq))
		}
		slices.SortFunc(ws, order)
		slices.SortFunc(gs, order)
		if !slices.Equal(ws, gs) || len(ws) == 0 && w.Head > 0 && w.ID != "at-head" {
			t.Errorf("document %s: exactly-once index %v, want %v", w.ID, gs, ws)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := storage.CountDocuments(ctx, got); err != nil || c != n {
		t.Errorf("%d documents, want %d (%v)", c, n, err)
	}
}
