package tandem_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/storage"
)

// TestJSClientAgainstServer runs the browser client (internal/web/static/js) in
// Node against a real server: internal/web/jstest/real/real-server.mjs types with
// several clients on plain and rich documents, drops connections, and
// meets the application's CheckOp rule; its documents must be the
// server's.
func TestJSClientAgainstServer(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("TANDEM_REQUIRE_NODE") == "1" {
			t.Fatal("TANDEM_REQUIRE_NODE=1 but node is not installed")
		}
		t.Skip("node is not installed")
	}
	srv := start(t, tandem.Config{Hooks: tandem.Hooks{CheckOp: func(ctx context.Context, op tandem.OpCheck) error {
		if strings.Contains(string(op.Op.AppendJSON(nil)), "spam") {
			return tandem.Refuse("moderated", "no spam here")
		}
		return nil
	}}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	for _, d := range []tandem.NewDocument{{ID: "js-plain"}, {ID: "js-rich", Type: "rich", Content: `[{"insert":"\n"}]`}, {ID: "js-rules", Content: "rules:"}} {
		if err := srv.CreateDocument(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(node, "--experimental-websocket", "real-server.mjs", ts.URL)
	cmd.Dir = "internal/web/jstest/real"
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("real-server.mjs: %v\n%s", err, out)
	}
	var res struct {
		Plain    string
		PlainRev int64
		Rich     json.RawMessage
		Rules    string
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	content := func(id string) string {
		d, err := srv.Store().Document(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c, err := storage.ContentAt(ctx, srv.Store(), id, d.Head)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := content("js-plain"); got != res.Plain {
		t.Errorf("js-plain: the server has %q, the clients %q", got, res.Plain)
	}
	var server, clients any
	json.Unmarshal([]byte(content("js-rich")), &server)
	json.Unmarshal(res.Rich, &clients)
	if sb, _ := json.Marshal(server); string(sb) != func() string { b, _ := json.Marshal(clients); return string(b) }() {
		t.Errorf("js-rich: the server has %s, the clients %s", sb, res.Rich)
	}
	if got := content("js-rules"); got != "rules: ham" || res.Rules != got {
		t.Errorf("js-rules: the server has %q, the client %q; want \"rules: ham\"", got, res.Rules)
	}
}
