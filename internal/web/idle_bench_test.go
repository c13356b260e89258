package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// BenchmarkIdleConnections opens 2,000 WebSockets over 100 documents that
// then say nothing, and reports what each costs the server in goroutines
// and heap. The clients read nothing and run no goroutine, so the
// goroutine count is the server's alone (each client reads its hello,
// then nothing); the heap figure includes the
// client side of each connection (gorilla's buffers, about 8 KiB), the
// same in every version measured.
func BenchmarkIdleConnections(b *testing.B) {
	const conns, docs = 2000, 100
	for range b.N {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		store := memstore.New()
		mgr := collab.NewManager(store, collab.Config{Logger: log})
		srv := web.New(web.Config{Store: store, Manager: mgr, Logger: log})
		ts := httptest.NewServer(srv)
		ids := make([]string, docs)
		for i := range ids {
			ids[i] = fmt.Sprintf("idle-%d", i)
			if err := store.CreateDocument(context.Background(), storage.Document{ID: ids[i]}, "some text"); err != nil {
				b.Fatal(err)
			}
		}
		heap := func() (uint64, uint64) {
			runtime.GC()
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return m.HeapInuse, m.StackInuse
		}
		g0 := runtime.NumGoroutine()
		h0, s0 := heap()
		cs := make([]*websocket.Conn, 0, conns)
		for i := range conns {
			u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/api/docs/" + ids[i%docs] + "/ws"
			c, _, err := websocket.DefaultDialer.Dial(u, nil)
			if err != nil {
				b.Fatal(err)
			}
			// Its hello read: the server has nothing more to write to
			// it, and the connection is idle from here on.
			if _, _, err := c.ReadMessage(); err != nil {
				b.Fatal(err)
			}
			cs = append(cs, c)
		}
		g1 := runtime.NumGoroutine()
		h1, s1 := heap()
		if p := os.Getenv("TANDEM_IDLE_HEAP_PROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		b.ReportMetric(float64(g1-g0)/conns, "goroutines/conn")
		b.ReportMetric(float64(h1-h0)/conns/1024, "heap-KiB/conn")
		b.ReportMetric(float64(s1-s0)/conns/1024, "stack-KiB/conn")
		b.ReportMetric(float64(h1+s1-h0-s0)/conns/1024, "KiB/conn")
		for _, c := range cs {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		mgr.Close(ctx)
		srv.Close(ctx)
		cancel()
		ts.Close()
	}
}
