package tandem_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/storage/jsstore/natstest"
)

// TestClusterFeed: two nodes share a JetStream; clients edit through
// both, and each node's feed has every op, in revision order, with the
// same cursors.
func TestClusterFeed(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	node := func() (*tandem.Server, string) {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		srv := start(t, tandem.Config{Storage: tandem.JetStream{Conn: nc}})
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		return srv, ts.URL
	}
	a, aURL := node()
	b, bURL := node()
	if err := a.CreateDocument(ctx, tandem.NewDocument{ID: "shared"}); err != nil {
		t.Fatal(err)
	}
	ca, err := client.Dial(ctx, aURL, "shared", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := client.Dial(ctx, bURL, "shared", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	for i := range 20 {
		ca.Edit(client.Insert(0, fmt.Sprint(i%10)))
		cb.Edit(client.Insert(cb.Len(), "b"))
	}
	for _, c := range []*client.Doc{ca, cb} {
		if err := c.Synced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	head := int64(0)
	waitFor(t, "both clients at one head", func() bool { head = max(ca.Rev(), cb.Rev()); return ca.Rev() == cb.Rev() })
	read := func(srv *tandem.Server) []string {
		var out []string
		var revs []int64
		var after uint64
		for {
			events, next, err := srv.Changes(ctx, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) == 0 {
				break
			}
			for _, e := range events {
				out = append(out, fmt.Sprintf("%d %s %s %d", e.Cursor, e.Kind, e.Doc, e.Rev))
				for _, op := range e.Ops {
					revs = append(revs, op.Rev)
				}
			}
			after = next
		}
		for i, r := range revs {
			if r != int64(i+1) {
				t.Fatalf("ops out of order or missing: %v", revs)
			}
		}
		if int64(len(revs)) != head {
			t.Fatalf("%d ops in the feed, head %d", len(revs), head)
		}
		return out
	}
	fa, fb := read(a), read(b)
	if fmt.Sprint(fa) != fmt.Sprint(fb) {
		t.Fatalf("the nodes' feeds differ:\n%v\n%v", fa, fb)
	}
	if len(fa) < 2 {
		t.Fatalf("feed %v", fa)
	}
}
