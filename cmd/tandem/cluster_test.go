package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/ot"
)

// startNATS runs a NATS server with JetStream in the test's temp dir, every
// write synced, as a production one would be.
func startNATS(t testing.TB) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		SyncAlways: true, NoLog: true, NoSigs: true, MaxPayload: 16 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// TestClusterConverges: three Tandem nodes over one embedded JetStream, 30
// clients spread over them editing one document at once. Every client
// ends with the same text as every node; the log has every revision once,
// no (source, seq) twice, and replayed it gives that text.
func TestClusterConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of three: -short skips it")
	}
	ns := startNATS(t)
	nodes := make([]*server, 3)
	for i := range nodes {
		nodes[i] = startInProcess(t, testServeConfig(t, "--nats", ns.ClientURL(), "--client-rate", "1e6"), serverHooks{})
	}
	id, err := createDoc(nodes[0].url, "shared", "start\n")
	if err != nil {
		t.Fatal(err)
	}
	const clients, edits = 30, 15
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	docs := make([]*client.Doc, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			d, err := client.Dial(ctx, nodes[i%len(nodes)].url, id, client.Options{Name: fmt.Sprint("c", i)})
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			docs[i] = d
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range edits {
				n := d.Len()
				var op ot.Op
				if n > 10 && rng.IntN(4) == 0 {
					pos := rng.IntN(n - 1)
					op = client.Delete(pos, 1)
				} else {
					op = client.Insert(rng.IntN(n+1), sampleRunes[rng.IntN(len(sampleRunes))])
				}
				if err := d.Edit(op); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if rng.IntN(3) == 0 {
					if err := d.Synced(ctx); err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
				}
			}
			if err := d.Synced(ctx); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range docs {
			d.Close()
		}
	}()

	// Converged: every node and every client show the same text.
	var want docState
	deadline := time.Now().Add(30 * time.Second)
	for {
		want, err = getDoc(nodes[0].url, id)
		if err != nil {
			t.Fatal(err)
		}
		same := true
		for _, n := range nodes[1:] {
			if d, err := getDoc(n.url, id); err != nil || d.Rev != want.Rev || d.Text != want.Text {
				same = false
			}
		}
		for _, d := range docs {
			if d.Rev() != want.Rev || d.Text() != want.Text {
				same = false
			}
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after 30 s: node 0 at %d", want.Rev)
		}
		time.Sleep(20 * time.Millisecond)
	}

	log, err := getLog(nodes[1].url, id, want.Rev)
	if err != nil {
		t.Fatal(err)
	}
	text := "start\n"
	seen := map[string]bool{}
	for i, r := range log {
		if r.Rev != int64(i+1) {
			t.Fatalf("the log has revision %d at %d", r.Rev, i+1)
		}
		k := fmt.Sprint(r.Src, "/", r.Seq)
		if seen[k] {
			t.Fatalf("%s committed twice", k)
		}
		seen[k] = true
		op, err := ot.ParseJSON(r.Op)
		if err != nil {
			t.Fatal(err)
		}
		if text, err = ot.Apply(text, op); err != nil {
			t.Fatalf("revision %d: %v", r.Rev, err)
		}
	}
	if text != want.Text {
		t.Fatalf("the log replayed gives %q, the nodes say %q", text, want.Text)
	}
	conflicts := int64(0)
	for _, n := range nodes {
		st := n.mgr.Stats()
		if st.Records == 0 {
			t.Errorf("a node committed nothing: %+v", st)
		}
		conflicts += st.Conflicts
	}
	t.Logf("%d clients on %d nodes: %d revisions, %d cross-node conflicts (retried)", clients, len(nodes), want.Rev, conflicts)
}
