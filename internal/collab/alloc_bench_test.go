package collab_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// countingConn is the cheapest collab.Conn: it counts frames and messages
// and tells its client's loop when its op is acknowledged.
type countingConn struct {
	frames, msgs *atomic.Int64
	acked        chan struct{}
	rev          atomic.Int64 // the newest revision it was sent
}

func (c *countingConn) Send(b []byte, written func()) error {
	c.frames.Add(1)
	c.msgs.Add(int64(max(1, bytes.Count(b, []byte(`{"type":`)))))
	for rest := b; ; {
		i := bytes.Index(rest, []byte(`"rev":`))
		if i < 0 {
			break
		}
		rest = rest[i+6:]
		n := int64(0)
		for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
			n = 10*n + int64(rest[0]-'0')
			rest = rest[1:]
		}
		if n > c.rev.Load() {
			c.rev.Store(n)
		}
	}
	if bytes.Contains(b, []byte(`"type":"ack"`)) {
		select {
		case c.acked <- struct{}{}:
		default:
		}
	}
	written()
	return nil
}

func (c *countingConn) Close(int, string) {}

// BenchmarkManyDocuments: documents × clients, each client with one op in
// flight (a keystroke, as a frame), through the Manager and the core to the
// memory store and back out as acks and broadcasts. It reports the heap
// allocations per committed op and per delivered message (acks and
// broadcasts), which is what the garbage collector pays for with many
// small documents.
func BenchmarkManyDocuments(b *testing.B) {
	for _, shape := range []struct{ docs, clients int }{{100, 4}, {10, 20}} {
		b.Run(fmt.Sprintf("docs=%d/clients=%d", shape.docs, shape.clients), func(b *testing.B) {
			st := memstore.New()
			m := collab.NewManager(st, collab.Config{Logger: discard, RatePerSecond: 1e9, RateBurst: 1e9, DocWorkPerSecond: 1e12, DocWorkBurst: 1e12})
			defer m.Close(context.Background())
			var frames, msgs atomic.Int64
			type loop struct {
				cl   *collab.Client
				conn *countingConn
			}
			var loops []loop
			for d := range shape.docs {
				id := fmt.Sprintf("doc-%d", d)
				createDoc(b, st, id, "hello")
				for c := range shape.clients {
					conn := &countingConn{frames: &frames, msgs: &msgs, acked: make(chan struct{}, 1)}
					cl, err := m.Connect(context.Background(), id, conn, info(fmt.Sprintf("d%dc%d", d, c), -1))
					if err != nil {
						b.Fatal(err)
					}
					loops = append(loops, loop{cl, conn})
				}
			}
			const opsEach = 50
			var seq atomic.Uint64 // (each client's seqs continue across b.N rounds)
			var total, mallocs uint64
			var delivered int64
			b.ResetTimer()
			for range b.N {
				frames.Store(0)
				msgs.Store(0)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				base := seq.Add(opsEach) - opsEach
				stuck := time.AfterFunc(time.Minute, func() { panic("no ack in a minute") })
				var wg sync.WaitGroup
				for _, l := range loops {
					wg.Go(func() {
						frame := make([]byte, 0, 64)
						for k := range uint64(opsEach) {
							// At the newest revision it has seen, as an editor
							// sends: the server transforms it through what the
							// document's other clients committed meanwhile.
							frame = fmt.Appendf(frame[:0], `{"type":"op","rev":%d,"seq":%d,"op":["x"]}`, l.conn.rev.Load(), base+k+1)
							l.cl.Handle(frame)
							<-l.conn.acked
						}
					})
				}
				wg.Wait()
				runtime.ReadMemStats(&after)
				stuck.Stop()
				total += uint64(len(loops) * opsEach)
				mallocs += after.Mallocs - before.Mallocs
				delivered += msgs.Load()
			}
			b.ReportMetric(float64(mallocs)/float64(total), "allocs/committed-op")
			b.ReportMetric(float64(mallocs)/float64(delivered), "allocs/delivered-msg")
		})
	}
}
