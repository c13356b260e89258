package web_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
)

// hostileFrame returns a frame a broken or malicious client might send:
// none of them is a valid op, so none may change the document.
func hostileFrame(rng *rand.Rand, seq int) (int, []byte) {
	switch rng.IntN(14) {
	case 0:
		return websocket.TextMessage, []byte(`{"type":"op","rev":1,"seq":`)
	case 1:
		return websocket.TextMessage, []byte(`{"type":"op","rev":1e309,"seq":99999999999999999999999,"op":[1]}`)
	case 2:
		depth := 1 + rng.IntN(50000)
		return websocket.TextMessage, []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	case 3:
		b := make([]byte, rng.IntN(512))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return websocket.BinaryMessage, b
	case 4:
		return websocket.TextMessage, []byte("{\"type\":\"op\",\"rev\":0,\"seq\":1,\"op\":[\"\xff\xfe\"]}")
	case 5:
		return websocket.TextMessage, []byte(`{"type":"op","rev":0,"seq":1,"op":["\ud83d"]}`)
	case 6:
		return websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":0,"seq":%d,"op":[100000,"x"]}`, seq)
	case 7:
		return websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":["x"]}`, []int64{-1, 1 << 40, 9223372036854775807}[rng.IntN(3)], seq)
	case 8:
		return websocket.TextMessage, []byte(`{"type":"sel","rev":0,"sel":[{"anchor":1099511627776,"head":-5}]}`)
	case 9:
		return websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":0,"seq":%d,"op":[]}`, seq)
	case 10:
		return websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":0,"seq":%d,"op":[{"d":"this is not the text"}]}`, seq)
	case 11:
		return websocket.TextMessage, []byte([]string{`{"type":5}`, `{"type":"nope"}`, `null`, `[]`, `"x"`, `{}`, `{"type":"op","type":"sel"}`}[rng.IntN(7)])
	case 12:
		return websocket.TextMessage, fmt.Appendf(nil, `{"type":"op","rev":0,"seq":%d,"op":[0,"x"]}`, seq)
	default:
		return websocket.TextMessage, []byte(`{"type":"sel","rev":0,"sel":` + strings.Repeat(`{"anchor":1,"head":1},`, 100) + `{}]}`)
	}
}

// TestHostileClients: while honest clients edit, several connections send
// thousands of malformed, invalid and abusive frames at once. The server
// stays up, the honest clients converge on the server's text, every record
// in the log is an honest client's, and memory stays bounded.
func TestHostileClients(t *testing.T) {
	t.Parallel()
	seed := testSeed(t)
	ts := newTestServer(t, collab.Config{})
	ctx := context.Background()
	const initial = "héllo wörld 😀\n"
	id := ts.createDoc(t, "hostile", initial)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	stop := make(chan struct{})
	var hostile sync.WaitGroup
	sent := make([]int, 4)
	var conns []*websocket.Conn
	for h := range sent {
		c, _, err := websocket.DefaultDialer.Dial(ts.wsURL(id, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		hostile.Go(func() { // reads and drops whatever comes back
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		})
		hostile.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(100+h)))
			for i := range 1500 {
				select {
				case <-stop:
					return
				default:
				}
				kind, frame := hostileFrame(rng, i+1)
				if c.WriteMessage(kind, frame) != nil {
					return // closed on it (a frame too large, say): fine
				}
				sent[h]++
			}
		})
	}

	clients := make([]*otClient, 3)
	for i := range clients {
		cl, err := newOTClient(ctx, ts, id, fmt.Sprint("honest", i))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, cl := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range 40 {
				_, edit := randomEdit(rng, cl.text)
				if err := edit(cl); err != nil {
					errs <- err
					return
				}
				for cl.inflight != nil {
					if err := cl.pump(deadline); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	d := ts.getDoc(t, id)
	for _, cl := range clients {
		if err := cl.settle(d.Rev, deadline); err != nil {
			t.Fatal(err)
		}
		if cl.text != *d.Text {
			t.Fatalf("%s: %q, server %q", cl.name, cl.text, *d.Text)
		}
	}
	honest := map[string]bool{}
	for _, cl := range clients {
		honest[cl.src] = true
	}
	for _, r := range ts.history(t, id, 0, d.Rev) {
		if !honest[r.Src] {
			t.Fatalf("revision %d came from %s, not an honest client", r.Rev, r.Src)
		}
	}
	dropped := 0
	for _, cl := range clients {
		dropped += len(cl.dropped)
	}
	if d.Rev != int64(120-dropped) {
		t.Fatalf("%d revisions, want the 120 honest ones less the %d that came to nothing", d.Rev, dropped)
	}
	// Still serving.
	if other := ts.createDoc(t, "after", "x"); other == "" {
		t.Fatal("no document created after the attack")
	}
	for _, c := range conns {
		c.Close()
	}
	hostile.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("hostile frames sent %v; heap %d → %d MiB", sent, before.HeapInuse>>20, after.HeapInuse>>20)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 256<<20 {
		t.Fatalf("the heap grew by %d MiB", grown>>20)
	}
}
