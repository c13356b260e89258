package collab

import (
	"context"
	"log/slog"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

type nopConn struct{}

func (nopConn) Send(_ []byte, written func()) error { written(); return nil }
func (nopConn) Close(int, string)                   {}

// TestDocumentDeletedDriverExited: DocumentDeleted looks the hub up in the map
// and then posts to it; the hub can exit in between (an idle unload, or a
// failed commit whose last client just left). post can still queue the
// message then (the inbox is buffered and select picks at random between it
// and the closed quit channel), and nobody will ever run it: DocumentDeleted
// must not wait for it until its context ends. The window is simulated by
// putting the exited hub back in the map.
func TestDocumentDeletedDriverExited(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	if err := store.CreateDocument(ctx, storage.Document{ID: "doc"}, "x"); err != nil {
		t.Fatal(err)
	}
	m := NewManager(store, Config{IdleTimeout: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	defer m.Close(ctx)
	cl, err := m.Connect(ctx, "doc", nopConn{}, ClientInfo{LastRev: -1})
	if err != nil {
		t.Fatal(err)
	}
	h := cl.d
	cl.Disconnect()
	select {
	case <-h.quit: // unloaded
	case <-time.After(5 * time.Second):
		t.Fatal("the idle document was not unloaded")
	}
	for range 20 {
		m.mu.Lock()
		m.docs["doc"] = h // as DocumentDeleted found it, just before it exited
		m.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m.DocumentDeleted(dctx, "doc")
		expired := dctx.Err() != nil
		cancel()
		m.detach(h)
		if expired {
			t.Fatal("DocumentDeleted waited for a hub that had exited until its context ended")
		}
	}
}

// FuzzScanClientMessage: whatever the fast reader of op messages accepts,
// encoding/json reads the same way (the fast reader declines the rest).
func FuzzScanClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"op","rev":3,"seq":7,"op":[5,"x",{"d":2}]}`,
		` { "seq" : 1 , "type" : "op" , "op" : ["\ud83d\ude00", 2] , "rev" : 0 } `,
		`{"type":"op","rev":-1,"seq":18446744073709551615,"op":[]}`,
		`{"type":"op","rev":1,"rev":2,"seq":1,"op":[1]}`,
		`{"type":"op","rev":01,"seq":1,"op":[1]}`,
		`{"type":"sel","rev":2}`,
		`{"type":"op","rev":1,"seq":1,"op":["]"]}x`,
		`{"Type":"op"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		raw, ok := scanClientMessage(frame)
		if !ok || !utf8.Valid(frame) {
			return
		}
		want, err := decodeClientMessage(frame)
		if err != nil {
			t.Fatalf("%q: scanned as %+v; encoding/json: %v", frame, raw, err)
		}
		if raw.Type != want.Type || raw.Rev != want.Rev || raw.Seq != want.Seq || raw.HasRev != want.HasRev ||
			raw.HasSeq != want.HasSeq || string(raw.Op) != string(want.Op) || (raw.Op == nil) != (want.Op == nil) || raw.Sel != nil {
			t.Fatalf("%q:\n scanned %+v\n json    %+v", frame, raw, want)
		}
	})
}
