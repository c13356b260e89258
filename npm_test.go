package tandem_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
)

// TestNPMPackage packs the browser client as npm would publish it (npm
// pack in internal/web/static/js), installs the tarball into a tiny application
// outside the repository, type-checks a TypeScript use of its
// declarations, and runs the application against a real server, editing
// beside a Go client.
func TestNPMPackage(t *testing.T) {
	app := filepath.Join("testdata", "npmapp")
	skip := func(why string) {
		if os.Getenv("TANDEM_REQUIRE_NODE") == "1" {
			t.Fatalf("TANDEM_REQUIRE_NODE=1 but %s", why)
		}
		t.Skipf("%s: run npm ci --prefix %s (scripts/test.sh does)", why, app)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skip("npm is not installed")
	}
	tsc, _ := filepath.Abs(filepath.Join(app, "node_modules", "typescript", "bin", "tsc"))
	if _, err := os.Stat(tsc); err != nil {
		skip("typescript is not installed in " + app)
	}
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tmp := t.TempDir()
	run(filepath.Join("internal", "web", "static", "js"), npm, "pack", "--silent", "--pack-destination", tmp)
	tarballs, _ := filepath.Glob(filepath.Join(tmp, "tandemdocs-client-*.tgz"))
	if len(tarballs) != 1 {
		t.Fatalf("npm pack made %v", tarballs)
	}
	dir := filepath.Join(tmp, "app")
	os.Mkdir(dir, 0o755)
	for _, f := range []string{"app.mjs", "check.ts", "tsconfig.json"} {
		b, err := os.ReadFile(filepath.Join(app, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"app","private":true,"type":"module"}`), 0o644)
	run(dir, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", tarballs[0])
	run(dir, node, tsc, "-p", "tsconfig.json")

	srv := start(t, tandem.Config{Storage: tandem.Memory{}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: "npm-doc", Content: "hello"}); err != nil {
		t.Fatal(err)
	}
	goClient, err := client.Dial(ctx, ts.URL, "npm-doc", client.Options{Name: "go"})
	if err != nil {
		t.Fatal(err)
	}
	defer goClient.Close()
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "app.mjs", ts.URL, "npm-doc")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	outc := make(chan []byte, 1)
	errc := make(chan error, 1)
	go func() {
		out, err := cmd.Output()
		outc <- out
		errc <- err
	}()
	waitFor(t, "the application's edit", func() bool { return strings.Contains(goClient.Text(), " from npm") })
	goClient.Edit(client.Insert(goClient.Len(), " from go"))
	if err := goClient.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	out := <-outc
	if err := <-errc; err != nil {
		t.Fatalf("app.mjs: %v\n%s", err, out)
	}
	var res struct {
		Protocol int
		Doc      string
		Rev      int64
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("app.mjs printed %q: %v", out, err)
	}
	if res.Protocol != 2 || res.Doc != "hello from npm from go" || res.Doc != goClient.Text() || res.Rev != 2 {
		t.Fatalf("the application ended with %+v; the Go client has %q", res, goClient.Text())
	}
}
