package jsstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/jsstore"
	"github.com/tandemdocs/tandem/storage/jsstore/natstest"
	"github.com/tandemdocs/tandem/storage/storagetest"
)

func TestStore(t *testing.T) {
	ns := natstest.Start(t)
	n := 0
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		// A fresh stream and buckets per subtest: a store starts empty.
		n++
		return openStoreOn(t, ns.ClientURL(), fmt.Sprintf("CONF%d", n), 0)
	})
}

// TestStoreClustered: the conformance suite on a 3-node JetStream
// cluster, the stream and buckets in 3 replicas, each store connected to
// another server than the last (reads must see the writes acknowledged
// before them, whichever server answers).
func TestStoreClustered(t *testing.T) {
	if testing.Short() {
		t.Skip("a NATS cluster (-short)")
	}
	servers := natstest.Cluster(t, 3)
	n := 0
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		n++
		return openStoreOn(t, servers[n%3].ClientURL(), fmt.Sprintf("CONF%d", n), 3)
	})
}

func openStore(t *testing.T, ns *server.Server, prefix string) *jsstore.Store {
	t.Helper()
	return openStoreOn(t, ns.ClientURL(), prefix, 0)
}

func openStoreOn(t *testing.T, url, prefix string, replicas int) *jsstore.Store {
	t.Helper()
	nc, err := nats.Connect(url, nats.DontRandomize())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o := jsstore.Options{Conn: nc, Prefix: prefix, Replicas: replicas}
	if replicas > 1 {
		// A cluster on a loaded machine may take a while to elect a
		// stream's leader again.
		o.Timeout = 30 * time.Second
	}
	// As tandem serve does: a cluster that has just formed may not answer
	// yet (no leader for the new stream, peers not yet placed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := jsstore.Open(t.Context(), o)
		if err == nil {
			return s
		}
		if !jsstore.Unavailable(err) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func insert(rev int64, src string, seq uint64) storage.Record {
	return storage.Record{Rev: rev, Op: doctype.PlainOp(ot.Op{ot.Insert("x")}), Source: src, Seq: seq, User: src, Time: time.Now()}
}

// TestTwoNodes: two stores on two connections (two Tandem nodes) append to
// one document at the same heads: each round exactly one wins, the other
// gets ErrConflict and reads the winner's record at once, and the log has
// every revision once. On one NATS server, and on a 3-node cluster with the
// two stores connected to different servers.
func TestTwoNodes(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		ns := natstest.Start(t)
		twoNodes(t, openStore(t, ns, "TWO"), openStore(t, ns, "TWO"))
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a NATS cluster (-short)")
		}
		servers := natstest.Cluster(t, 3)
		twoNodes(t, openStoreOn(t, servers[0].ClientURL(), "TWO", 3), openStoreOn(t, servers[2].ClientURL(), "TWO", 3))
	})
}

func twoNodes(t *testing.T, a, b *jsstore.Store) {
	ctx := t.Context()
	if err := a.CreateDocument(ctx, storage.Document{ID: "shared.doc", Created: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	const rounds = 40
	head := int64(0)
	for i := range rounds {
		var wg sync.WaitGroup
		results := make([]error, 2)
		for n, s := range []*jsstore.Store{a, b} {
			wg.Go(func() {
				res, err := s.Commit(ctx, []storage.Append{{DocID: "shared.doc", Head: head, Records: []storage.Record{insert(head+1, fmt.Sprint("node", n), uint64(i+1))}}})
				if err != nil {
					results[n] = err
					return
				}
				results[n] = res[0]
			})
		}
		wg.Wait()
		won := 0
		for n, err := range results {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, storage.ErrConflict):
				t.Fatalf("round %d: %v", i, err)
			default:
				// The loser reads what beat it.
				loser := []*jsstore.Store{a, b}[n]
				recs, err := loser.Records(ctx, "shared.doc", head, head+1)
				if err != nil || len(recs) != 1 || recs[0].Source == fmt.Sprint("node", n) {
					t.Fatalf("round %d: the loser reads %v, %v", i, recs, err)
				}
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d appends at head %d committed: %v", i, won, head, results)
		}
		head++
	}
	for _, s := range []*jsstore.Store{a, b} {
		d, err := s.Document(ctx, "shared.doc")
		if err != nil || d.Head != rounds {
			t.Fatalf("document: %+v %v", d, err)
		}
		recs, err := s.Records(ctx, "shared.doc", 0, rounds)
		if err != nil || len(recs) != rounds {
			t.Fatalf("records: %d %v", len(recs), err)
		}
		for i, r := range recs {
			if r.Rev != int64(i+1) {
				t.Fatalf("record %d has revision %d", i, r.Rev)
			}
			if rev, ok, err := s.LookupSubmission(ctx, "shared.doc", r.Source, r.Seq); err != nil || !ok || rev != r.Rev {
				t.Fatalf("lookup %s/%d: %d %v %v", r.Source, r.Seq, rev, ok, err)
			}
		}
	}
}

// TestIndexRepair: a node that died between the log and the exactly-once
// index (here: the index and its watermark wiped) leaves nothing lost. A
// lookup indexes from the log; so does a compaction before it drops the
// records, and a listing for a copy.
func TestIndexRepair(t *testing.T) {
	ns := natstest.Start(t)
	for i, then := range []string{"lookup", "compact", "submissions"} {
		t.Run(then, func(t *testing.T) {
			prefix := fmt.Sprintf("REPAIR%d", i)
			s := crashBeforeIndex(t, ns, prefix)
			ctx := t.Context()
			switch then {
			case "compact":
				if err := s.Compact(ctx, "d", 5); err != nil {
					t.Fatal(err)
				}
			case "submissions":
				subs, err := s.Submissions(ctx, "d", 5)
				if err != nil || len(subs) != 5 {
					t.Fatalf("Submissions = %v, %v; want 5", subs, err)
				}
			}
			for i := range 5 {
				if rev, ok, err := s.LookupSubmission(ctx, "d", "src", uint64(i+1)); err != nil || !ok || rev != int64(i+1) {
					t.Fatalf("seq %d: %d %v %v", i+1, rev, ok, err)
				}
			}
			if _, ok, _ := s.LookupSubmission(ctx, "d", "src", 6); ok {
				t.Fatal("seq 6 was never committed")
			}
		})
	}
}

// crashBeforeIndex commits 5 records with sources to document d, then
// wipes the exactly-once index and its watermark, and opens the store
// again.
func crashBeforeIndex(t *testing.T, ns *server.Server, prefix string) *jsstore.Store {
	t.Helper()
	s := openStore(t, ns, prefix)
	ctx := t.Context()
	if err := s.CreateDocument(ctx, storage.Document{ID: "d", Created: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		res, err := s.Commit(ctx, []storage.Append{{DocID: "d", Head: int64(i), Records: []storage.Record{insert(int64(i+1), "src", uint64(i+1))}}})
		if err != nil || res[0] != nil {
			t.Fatal(err, res)
		}
	}
	s.Close()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	subs, _ := js.KeyValue(ctx, prefix+"_SUBS")
	docs, _ := js.KeyValue(ctx, prefix+"_DOCS")
	if keys, err := subs.ListKeys(ctx); err == nil {
		for k := range keys.Keys() {
			subs.Purge(ctx, k)
		}
	}
	e, err := docs.Get(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(e.Value(), &m)
	m["indexed"] = 0
	v, _ := json.Marshal(m)
	if _, err := docs.Update(ctx, "d", v, e.Revision()); err != nil {
		t.Fatal(err)
	}
	return openStore(t, ns, prefix)
}

// TestSnapshotRacesCommit: a snapshot saved on its own while another
// node appends must say where its tail starts correctly (once, it took
// the log's tail after the other node's append, and a read from the
// snapshot then skipped that append's records). The other node's append
// is aimed at the snapshot's save, at random delays.
func TestSnapshotRacesCommit(t *testing.T) {
	ns := natstest.Start(t)
	writer, saver := openStore(t, ns, "SNAPRACE"), openStore(t, ns, "SNAPRACE")
	ctx := t.Context()
	if err := writer.CreateDocument(ctx, storage.Document{ID: "d", Created: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for head := int64(0); head < 150; head++ {
		delay := time.Duration(r.IntN(3000)) * time.Microsecond
		done := make(chan error, 1)
		go func() {
			time.Sleep(delay)
			res, err := writer.Commit(ctx, []storage.Append{{DocID: "d", Head: head, Records: []storage.Record{insert(head+1, "", 0)}}})
			if err == nil {
				err = res[0]
			}
			done <- err
		}()
		if err := saver.SaveSnapshot(ctx, "d", storage.Snapshot{Rev: head, Content: strings.Repeat("x", int(head))}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// A node that has read nothing of the document reads from the
		// snapshot.
		reader := openStore(t, ns, "SNAPRACE")
		if _, err := reader.Records(ctx, "d", head, head+1); err != nil {
			t.Fatalf("records after the snapshot at %d: %v", head, err)
		}
		reader.Close()
	}
}
