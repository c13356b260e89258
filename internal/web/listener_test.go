package web_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/web"
)

// TestLimitListener: connections past the per-address cap are closed at
// once; other addresses (127.0.0.2 is another client to the listener) are
// not affected; a closed connection frees its slot.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	hs.Listener = web.LimitListener(hs.Listener, web.ConnLimits{Total: 100, PerIP: 3}, nil)
	hs.Start()
	defer hs.Close()
	addr := hs.Listener.Addr().String()
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// served reports whether the server answers a request on c.
	served := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	var held []net.Conn
	for range 3 {
		c := dial("127.0.0.1")
		if !served(c) {
			t.Fatal("a connection within the cap was not served")
		}
		held = append(held, c)
	}
	if extra := dial("127.0.0.1"); served(extra) {
		t.Fatal("a fourth connection from one address was served")
	}
	other := dial("127.0.0.2")
	if !served(other) {
		t.Fatal("another address was refused")
	}
	held[0].Close()
	// The slot comes back once the server sees the close: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dial("127.0.0.1")
		if served(c) {
			c.Close()
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot never came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
