package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestConnectionCap (issue 19): at --max-connections, a new client is told
// at once that the server is full (503 with Retry-After, code server_full,
// for a WebSocket as for any request) instead of waiting unanswered in the
// kernel's backlog; health checks and the admin's metrics still answer;
// and idle WebSockets are closed (1013) to make room, so that a client that
// comes back after the pause gets in and edits.
func TestConnectionCap(t *testing.T) {
	const limit = 40
	srv := startInProcess(t, testServeConfig(t, "--max-connections", "40", "--shed-idle-after", "1s"), serverHooks{})
	id, err := createDoc(srv.url, "full", "")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int64 // idle WebSockets the server closed with 1013
	// Idle WebSockets until the server is full: the next one is told so at
	// once, not left waiting (the handshake's timeout only bounds a stuck
	// run).
	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	held := 0
	for {
		c, resp, err := dialer.Dial(wsURL(srv.url, id, url.Values{}), nil)
		if err != nil {
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("connection %d: %v, want a refused handshake past the limit", held+1, err)
			}
			var body struct{ Error struct{ Code string } }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || body.Error.Code != "server_full" {
				t.Fatalf("a connection past the limit: %d, Retry-After %q, code %q", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error.Code)
			}
			break
		}
		held++
		if held > limit {
			t.Fatalf("%d WebSockets open with --max-connections %d", held, limit)
		}
		t.Cleanup(func() { c.Close() })
		go func() { // reads, as an idle but well-behaved client does
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					if websocket.IsCloseError(err, 1013) {
						shed.Add(1)
					}
					return
				}
			}
		}()
	}
	if held < limit-5 {
		t.Fatalf("only %d WebSockets open before the server was full at %d", held, limit)
	}
	// Health checks and the admin's metrics still answer.
	for range 5 {
		if code, body := httpStatus(t, "GET", srv.url+"/healthz", ""); code != http.StatusOK {
			t.Fatalf("/healthz at the limit: %d %s", code, body)
		}
	}
	if code, _ := httpStatusAs(t, testAdminToken, "GET", srv.url+"/metrics", ""); code != http.StatusOK {
		t.Fatalf("/metrics at the limit: %d", code)
	}

	// The idle make room: a client that comes back gets in and edits.
	waitFor(t, 60*time.Second, "a returning client to get in", func() bool {
		lat, err := honestTyping(srv.url, id, 5, time.Millisecond)
		return err == nil && len(lat) == 5
	})
	// Still full (the keep-alive connections went first): more arrivals
	// past the limit close the longest idle WebSockets.
	waitFor(t, 30*time.Second, "idle WebSockets to be closed with 1013", func() bool {
		if c, _, err := dialer.Dial(wsURL(srv.url, id, url.Values{}), nil); err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return shed.Load() > 0
	})
	t.Logf("%d idle WebSockets closed with 1013 to make room", shed.Load())
}
