package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/storage/jsstore/natstest"
)

// TestClusterConverges: three Tandem nodes over one embedded JetStream, 30
// clients spread over them editing one document at once. Every client
// ends with the same text as every node; the log has every revision once,
// no (source, seq) twice, and replayed it gives that text.
func TestClusterConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of three: -short skips it")
	}
	ns := natstest.Start(t)
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
	want := waitClusterConverged(t, nodes, docs, id)

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
	retried := 0.0
	for _, n := range nodes {
		req, _ := http.NewRequest(http.MethodGet, n.url+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, "tandem_commit_conflict_retry_seconds_count "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				retried += f
			}
		}
	}
	if conflicts > 0 && retried == 0 {
		t.Errorf("%d conflicts, and no retry in tandem_commit_conflict_retry_seconds", conflicts)
	}
	t.Logf("%d clients on %d nodes: %d revisions, %d cross-node conflicts, %.0f retried commits", clients, len(nodes), want.Rev, conflicts, retried)
}

// TestClusterNodeKilled: two tandem processes over one JetStream. Editors
// on both type into shared documents and one node is killed (SIGKILL)
// mid-load: nothing the killed node acknowledged is lost, nothing is in
// the log twice, and the other node keeps serving. Then, op by op: a
// client sends to one node, the node is killed (at once, or after the
// commit), and the client resends the same op to the other node: it is
// acknowledged with one revision and in the log once.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills cluster nodes (-short)")
	}
	ns := natstest.Start(t)
	nats := []string{"--nats", ns.ClientURL()}
	a := startServer(t, t.TempDir(), nats...)
	b := startServer(t, t.TempDir(), nats...)
	const nDocs, perNode = 2, 2
	ids := make([]string, nDocs)
	for i := range ids {
		var err error
		if ids[i], err = createDoc(a.URL, fmt.Sprint("cluster ", i), initialText); err != nil {
			t.Fatal(err)
		}
	}
	var eds []*editor
	docOf := []int{}
	for i, id := range ids {
		for n, node := range []*process{a, b} {
			for j := range perNode {
				e, err := dialEditor(node.URL, id, "", uint64(i*100+n*10+j+1))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(e.close)
				// Typists, fast ones: 50 keys a second. (Clients in a
				// closed loop on one node can keep another node losing
				// every race for the same document: docs/cluster.md.)
				e.pace = 20 * time.Millisecond
				eds = append(eds, e)
				docOf = append(docOf, i)
			}
		}
	}
	stop := make(chan struct{})
	results := make(chan []error, 1)
	go func() { results <- editAll(eds, 0, 1500, stop) }()
	// Kill node a mid-load: once 200 ops are acknowledged. (Not "once
	// every editor has acks": under load one node can win every race for a
	// document for seconds; docs/cluster.md, "Fairness".)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var total, onA int64
		for k, e := range eds {
			n := e.acked.Load()
			total += n
			if (k/perNode)%2 == 0 {
				onA += n
			}
		}
		if total >= 200 {
			if onA == 0 {
				t.Logf("node a had no acks yet (it lost every race): the kill loses it nothing")
			}
			break
		}
		if time.Now().After(deadline) {
			var got []int64
			for _, e := range eds {
				got = append(got, e.acked.Load())
			}
			t.Fatalf("%v acks in 30 s\nnode a:\n%s\nnode b:\n%s", got, a.log(), b.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	began := time.Now()
	a.kill()
	// Node b keeps serving: its editors get more acks.
	onB := func(k int) bool { return (k/perNode)%2 == 1 }
	atKill := make([]int64, len(eds))
	for k, e := range eds {
		atKill[k] = e.acked.Load()
	}
	deadline = time.Now().Add(20 * time.Second)
	for more := false; !more; {
		for k, e := range eds {
			if onB(k) && e.acked.Load() >= atKill[k]+3 {
				more = true
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("node b's editors got no more acks in 20 s after node a was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("node b served on %v after node a was killed", time.Since(began).Round(time.Millisecond))
	close(stop)
	var errs []error
	select {
	case errs = <-results:
	case <-time.After(60 * time.Second):
		t.Fatal("editors still running 60 s after the stop")
	}
	t.Logf("editors stopped %v after the kill", time.Since(began).Round(time.Millisecond))
	sessions := make([][]session, nDocs)
	acks := 0
	for k, e := range eds {
		e.close()
		if onB(k) && errs[k] != nil && !errors.Is(errs[k], errStopped) {
			t.Errorf("editor %d on the surviving node: %v", k, errs[k])
		}
		sessions[docOf[k]] = append(sessions[docOf[k]], e.session())
		acks += len(e.acks)
	}
	for i, id := range ids {
		checkLog(t, b.URL, id, initialText, sessions[i])
	}
	t.Logf("load: %d ops acknowledged by the two nodes, node a killed mid-load; the logs check out on node b", acks)

	t.Logf("logs checked %v after the kill", time.Since(began).Round(time.Millisecond))
	// Op by op, across nodes.
	id := ids[0]
	src := uuid.NewString()
	for k, delay := range []time.Duration{0, 300 * time.Millisecond, time.Duration(rand.IntN(3000)) * time.Microsecond} {
		a = startServer(t, t.TempDir(), nats...)
		e, err := dialEditor(a.URL, id, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		seq := uint64(k + 1)
		base := e.rev
		msg := fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":[%q]}`, base, seq, fmt.Sprintf("[%d]", seq))
		if err := e.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		a.kill()
		e.close()
		c := dialRaw(t, b.URL, id, src)
		hello := c.next("hello")
		c.send(msg)
		ack := c.answer(hello.Src, seq) // the ack, or the op if node b broadcast it first
		if ack.Seq != seq || ack.Rev < base+1 || ack.Rev > hello.Rev+1 {
			t.Fatalf("send %d: ack %+v; the op was built on %d, node b's hello was at %d", seq, ack, base, hello.Rev)
		}
		c.conn.Close()
		d := checkLog(t, b.URL, id, initialText, nil)
		if rev := onceInLog(t, b.URL, id, d.Rev, src, seq); rev != ack.Rev {
			t.Fatalf("send %d: in the log at %d, acknowledged at %d", seq, rev, ack.Rev)
		}
	}
}

// TestClusterNATSRestart: the NATS server is restarted (same port, same
// data) while clients on two nodes type. Clients see errors and delays
// (the documents refuse or fail their commits, the clients reconnect and
// resend), never a lost acknowledged op, an op twice, or a divergence.
func TestClusterNATSRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts NATS (-short)")
	}
	opts := natstest.Options(t)
	ns := natstest.Run(t, opts)
	natsOutage(t, ns.ClientURL(), nil, func() {
		port := ns.Addr().(*net.TCPAddr).Port
		ns.Shutdown()
		ns.WaitForShutdown()
		o2 := *opts
		o2.Port = port
		ns = natstest.Run(t, &o2)
	})
}

// TestClusterNATSNodeLost: of a 3-node NATS cluster holding Tandem's data
// in 3 replicas, one server goes away for good while clients on two Tandem
// nodes type: the leader of the log stream. JetStream keeps a majority and
// elects another; the Tandem nodes connected to the lost server reconnect
// to another; the same checks as above hold.
func TestClusterNATSNodeLost(t *testing.T) {
	if testing.Short() {
		t.Skip("a NATS cluster (-short)")
	}
	servers := natstest.Cluster(t, 3)
	natsOutage(t, natstest.URLs(servers), []string{"--nats-replicas", "3"}, func() {
		// The leader of the log stream: the one every commit goes through.
		for _, ns := range servers {
			if ns.JetStreamIsStreamLeader(natsserver.DEFAULT_GLOBAL_ACCOUNT, "TANDEM_LOG") {
				t.Logf("shutting down %s, the log stream's leader", ns.Name())
				ns.Shutdown()
				ns.WaitForShutdown()
				return
			}
		}
		t.Fatal("no server leads the log stream")
	})
}

// natsOutage runs two Tandem nodes on the NATS at urls (with extra
// flags) and six clients typing over them; outage happens once 50 edits
// are acknowledged. The cluster must take edits again, the clients settle,
// and everyone converges on a log with every acknowledged op once, at the
// revision it was acknowledged with.
func natsOutage(t *testing.T, urls string, extra []string, outage func()) {
	flags := append([]string{"--nats", urls, "--client-rate", "1e6", "--nats-timeout", "2s"}, extra...)
	nodes := []*server{
		startInProcess(t, testServeConfig(t, flags...), serverHooks{}),
		startInProcess(t, testServeConfig(t, flags...), serverHooks{}),
	}
	id, err := createDoc(nodes[0].url, "outage", "start\n")
	if err != nil {
		t.Fatal(err)
	}

	const clients = 6
	type acked struct {
		src string
		seq uint64
		rev int64
	}
	var mu sync.Mutex
	var acks []acked
	stop := make(chan struct{})
	var wg sync.WaitGroup
	docs := make([]*client.Doc, clients)
	for i := range clients {
		ctx := context.Background()
		var d *client.Doc
		d, err = client.Dial(ctx, nodes[i%2].url, id, client.Options{Name: fmt.Sprint("c", i),
			OnAck: func(seq uint64, rev int64) {
				mu.Lock()
				acks = append(acks, acked{d.Source(), seq, rev})
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = d
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := d.Edit(client.Insert(rng.IntN(d.Len()+1), sampleRunes[rng.IntN(len(sampleRunes))])); err != nil && !errors.Is(err, client.ErrClosed) {
					t.Errorf("client %d: edit: %v", i, err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := d.Synced(ctx)
				cancel()
				if err == nil {
					continue
				}
				// The connection ended (a failed document, a refused
				// join) or the commit waits: reconnect until it takes.
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					err := d.Reconnect(ctx)
					cancel()
					if err == nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	waitAcks := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := len(acks)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d acks after 30 s, want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	began := time.Now()
	waitAcks(50)
	t.Logf("50 acks in %v", time.Since(began).Round(time.Millisecond))
	mu.Lock()
	before := len(acks)
	mu.Unlock()
	t.Logf("NATS outage %v after the start", time.Since(began).Round(time.Millisecond))
	outage()
	restarted := time.Now()
	waitAcks(before + 50) // the cluster takes edits again
	t.Logf("edits acknowledged again %v after the outage", time.Since(restarted).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	t.Logf("clients stopped %v after", time.Since(restarted).Round(time.Millisecond))

	// Every client settles; all agree with the nodes.
	for i, d := range docs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for d.Synced(ctx) != nil && ctx.Err() == nil {
			d.Reconnect(ctx)
		}
		cancel()
		defer d.Close()
		if d.Pending() {
			t.Fatalf("client %d still has edits pending", i)
		}
	}
	t.Logf("clients settled %v after", time.Since(restarted).Round(time.Millisecond))
	want := waitClusterConverged(t, nodes, docs, id)
	log, err := getLog(nodes[0].url, id, want.Rev)
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int64{}
	for _, r := range log {
		k := fmt.Sprint(r.Src, "/", r.Seq)
		if _, dup := at[k]; dup {
			t.Fatalf("%s is in the log twice", k)
		}
		at[k] = r.Rev
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acks {
		if rev, ok := at[fmt.Sprint(a.src, "/", a.seq)]; !ok || rev != a.rev {
			t.Fatalf("%s/%d was acknowledged at %d; the log has it at %d (%v)", a.src, a.seq, a.rev, rev, ok)
		}
	}
	t.Logf("%d ops acknowledged, %d before the outage; %d revisions, converged %v after the start", len(acks), before, want.Rev, time.Since(began).Round(time.Millisecond))
}

// waitClusterConverged waits until every node serves document id with
// the same revision and text, and every client shows it, and returns it.
func waitClusterConverged(t *testing.T, nodes []*server, docs []*client.Doc, id string) docState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		want, err := getDoc(nodes[0].url, id)
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
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after 30 s: node 0 at revision %d", want.Rev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterPresence: participants on two nodes see each other (joins,
// selections moved through the other node's edits, hellos, leaves), and
// when a node is killed (SIGKILL: it says nothing) its participants
// disappear from the other node's clients once its heartbeats stop.
func TestClusterPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a cluster node (-short)")
	}
	ns := natstest.Start(t)
	a := startServer(t, t.TempDir(), "--nats", ns.ClientURL())
	b := startServer(t, t.TempDir(), "--nats", ns.ClientURL())
	id, err := createDoc(a.URL, "presence", "0123456789")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dial := func(node *process, name string) *client.Doc {
		d, err := client.Dial(ctx, node.URL, id, client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	ann, bob, cat := dial(a, "ann"), dial(b, "bob"), dial(b, "cat")
	// waitPeer waits until d sees (or, with want nil, no longer sees) the
	// participant called name with the selection want.
	waitPeer := func(d *client.Doc, name string, want []ot.Selection, what string) time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(30 * time.Second); ; {
			var got *client.Peer
			for _, p := range d.Peers() {
				if p.Name == name {
					got = &p
				}
			}
			switch {
			case want == nil && got == nil:
				return time.Since(start)
			case want != nil && got != nil && fmt.Sprint(got.Sel) == fmt.Sprint(want):
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 30 s, %s sees %s as %+v, want selection %v", what, d.Text(), name, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	none := []ot.Selection{}
	waitPeer(bob, "ann", none, "bob sees ann join on the other node")
	waitPeer(ann, "bob", none, "ann sees bob")
	waitPeer(ann, "cat", none, "ann sees cat")

	if err := ann.SetSelection([]ot.Selection{{Anchor: 2, Head: 4}}); err != nil {
		t.Fatal(err)
	}
	waitPeer(bob, "ann", []ot.Selection{{Anchor: 2, Head: 4}}, "bob sees ann's selection")
	// An insert on b before ann's selection moves it there, and in the
	// hello of someone joining b.
	if err := bob.Edit(client.Insert(0, "xx")); err != nil {
		t.Fatal(err)
	}
	if err := bob.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	waitPeer(cat, "ann", []ot.Selection{{Anchor: 4, Head: 6}}, "cat sees ann's selection moved by bob's insert")
	dan := dial(b, "dan")
	waitPeer(dan, "ann", []ot.Selection{{Anchor: 4, Head: 6}}, "dan's hello has ann's selection, moved")
	// And on a, ann's node, through the commit it heard of.
	waitPeer(ann, "dan", none, "ann sees dan")

	// A client that leaves is gone on the other node at once (no expiry).
	cat.Close()
	waitPeer(ann, "cat", nil, "ann sees cat leave")

	// A node killed: its participants expire on the others.
	a.kill()
	took := waitPeer(bob, "ann", nil, "bob sees ann go with her node")
	waitPeer(dan, "ann", nil, "dan sees ann go with her node")
	t.Logf("ann's node killed: gone from bob's view after %v", took.Round(time.Millisecond))
}

// TestClusterDocumentEvents: what happens to a document through one node
// reaches the clients of another: a rename (the title message), a restore
// (the restored message), a delete (the connection closed with 4004).
func TestClusterDocumentEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("two cluster nodes (-short)")
	}
	ns := natstest.Start(t)
	a := startInProcess(t, testServeConfig(t, "--nats", ns.ClientURL()), serverHooks{})
	b := startInProcess(t, testServeConfig(t, "--nats", ns.ClientURL()), serverHooks{})
	id, err := createDoc(a.url, "events", "text")
	if err != nil {
		t.Fatal(err)
	}
	onA := dialRaw(t, a.url, id, uuid.NewString())
	onA.next("hello")
	onB := dialRaw(t, b.url, id, uuid.NewString())
	onB.next("hello")

	req, _ := http.NewRequest(http.MethodPatch, a.url+"/api/docs/"+id, strings.NewReader(`{"title":"Renamed on a"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("rename: %d", resp.StatusCode)
	}
	if m := onB.next("title"); m.Title != "Renamed on a" {
		t.Errorf("the client on b got title %q", m.Title)
	}

	onA.send(`{"type":"restored","rev":0}`)
	if m := onB.next("restored"); m.Rev != 0 || m.Client == "" {
		t.Errorf("the client on b got %+v", m)
	}

	if err := doDelete(a.url, testAdminToken, id); err != nil {
		t.Fatal(err)
	}
	onB.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, _, err := onB.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != collab.CloseNotFound {
			t.Fatalf("the client on b: %v, want the connection closed with %d", err, collab.CloseNotFound)
		}
		break
	}
}
