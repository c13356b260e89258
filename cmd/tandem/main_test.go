package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "tandem ") {
		t.Fatalf("version: %q, %v", out.String(), err)
	}
	if err := run(ctx, []string{"frobnicate"}, &out, &errOut); err == nil {
		t.Fatal("unknown command accepted")
	}
	if err := run(ctx, nil, &out, &errOut); err == nil {
		t.Fatal("no command accepted")
	}
}

func TestServeFlagsAndEnv(t *testing.T) {
	t.Setenv("TANDEM_ADDR", ":9999")
	t.Setenv("TANDEM_SNAPSHOT_EVERY", "7")
	var errOut bytes.Buffer
	c, err := parseServeFlags([]string{"--snapshot-every", "9", "--idle-timeout", "1m"}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9999" || c.SnapshotEvery != 9 || c.IdleTimeout != time.Minute || c.DataDir != "./data" {
		t.Fatalf("got %+v: env sets addr, the flag overrides the env's snapshot interval", c)
	}
	for _, args := range [][]string{
		{"--retain", "-1"}, {"--idle-timeout", "-1s"}, {"--shutdown-timeout", "-1s"}, {"--commit-linger", "-1ms"},
		{"--disk-check-every", "0s"}, {"--max-connections", "-1"}, {"--max-connections-per-ip", "0"},
		{"--connection-rate", "0"}, {"--client-rate", "-3"}, {"--client-rate", "NaN"}, {"--snapshot-every", "0"},
	} {
		if _, err := parseServeFlags(args, &errOut); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: %v, want an error naming the flag", args, err)
		}
	}
	t.Setenv("TANDEM_IDLE_TIMEOUT", "soon")
	if _, err := parseServeFlags(nil, &errOut); err == nil || !strings.Contains(err.Error(), "TANDEM_IDLE_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}

// TestServeBusyPort: a port in use fails the start before the data
// directory is made.
func TestServeBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	err = serve(t.Context(), []string{"--addr", ln.Addr().String(), "--data-dir", dir, "--log-level", "error"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("serve on a busy port: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the data directory was made: %v", err)
	}
}

// TestToolFlagsEnv: the tools take TANDEM_DATA_DIR and friends from the
// environment, but a source given on the command line (--from) silences
// the environment's other source, and flags win over the environment.
func TestToolFlagsEnv(t *testing.T) {
	t.Setenv("TANDEM_DATA_DIR", "/env/data")
	t.Setenv("TANDEM_SERVER", "http://env:8080")
	t.Setenv("TANDEM_OUT", "/env/out") // not one the tools read
	parse := func(args ...string) (from fileList, dataDir, server, out string) {
		t.Helper()
		fs := newToolFlags("test", "usage", io.Discard)
		fs.Var(&from, "from", "")
		fs.StringVar(&dataDir, "data-dir", "", "")
		fs.StringVar(&server, "server", "", "")
		fs.StringVar(&out, "out", "", "")
		fs.fromEnv("data-dir", "TANDEM_DATA_DIR")
		fs.fromEnv("server", "TANDEM_SERVER")
		fs.exclusive = []string{"from", "data-dir", "server"}
		if err := fs.parse(args); err != nil {
			t.Fatal(err)
		}
		return
	}
	if from, dataDir, server, out := parse("--from", "a.backup", "--from", "b.backup"); dataDir != "" || server != "" || len(from) != 2 || out != "" {
		t.Errorf("--from given: data-dir %q, server %q, from %v, out %q", dataDir, server, from, out)
	}
	if _, dataDir, server, _ := parse(); dataDir != "/env/data" || server != "http://env:8080" {
		t.Errorf("nothing given: data-dir %q, server %q: want both from the environment", dataDir, server)
	}
	if _, dataDir, server, _ := parse("--data-dir", "/flag"); dataDir != "/flag" || server != "" {
		t.Errorf("--data-dir given: data-dir %q, server %q", dataDir, server)
	}
}

func TestServeAdminToken(t *testing.T) {
	t.Setenv("TANDEM_ADMIN_TOKEN", "from-the-environment-0123")
	c, err := parseServeFlags(nil, io.Discard)
	if err != nil || c.AdminToken != "from-the-environment-0123" {
		t.Fatalf("TANDEM_ADMIN_TOKEN: %+v, %v", c, err)
	}
	for _, bad := range []string{"two words", " padded", "tab\there"} {
		if _, err := parseServeFlags([]string{"--admin-token", bad}, io.Discard); err == nil {
			t.Errorf("--admin-token %q accepted", bad)
		}
	}
}

// TestAdminTokenFile: tandem serve makes its admin token once, readable by
// its user only, and keeps it; tandem backup finds it in $TANDEM_DATA_DIR,
// else ./data, unless told where.
func TestAdminTokenFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, path, err := localAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || len(tok) != 64 {
		t.Fatalf("%s: %v %v, token of %d characters", path, fi, err, len(tok))
	}
	if again, _, err := localAdminToken(dir); err != nil || again != tok {
		t.Fatalf("a second start made another token: %v", err)
	}
	t.Setenv("TANDEM_DATA_DIR", dir)
	if got, err := adminTokenFrom(""); err != nil || got != tok {
		t.Fatalf("from $TANDEM_DATA_DIR: %q %v", got, err)
	}
	t.Setenv("TANDEM_DATA_DIR", "")
	t.Chdir(filepath.Dir(dir)) // ./data is dir
	if got, err := adminTokenFrom(""); err != nil || got != tok {
		t.Fatalf("from ./data: %q %v", got, err)
	}
	if _, err := adminTokenFrom(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a --token-file that does not exist: no error")
	}
}

// TestGCSettings: the garbage collector's defaults and what overrides them.
func TestGCSettings(t *testing.T) {
	files := map[string]string{
		"/proc/meminfo":               "MemTotal:       24000000 kB\nMemFree:  1 kB\n",
		"/sys/fs/cgroup/memory.max":   "4294967296\n",
		"/sys/fs/cgroup/memory.limit": "",
	}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	cfg := serveConfig{GCPercent: 200}

	p, limit := gcSettings(cfg, getenv, read)
	if p == nil || *p != 200 || limit != 2<<30 {
		t.Fatalf("defaults in a 4 GiB cgroup: %v, %d; want 200 and 2 GiB", p, limit)
	}
	files["/sys/fs/cgroup/memory.max"] = "max\n"
	if _, limit = gcSettings(cfg, getenv, read); limit != 24000000<<10/2 {
		t.Fatalf("no cgroup limit: %d, want half of MemTotal", limit)
	}
	env["GOGC"], env["GOMEMLIMIT"] = "50", "1GiB"
	if p, limit = gcSettings(cfg, getenv, read); p != nil || limit != 0 {
		t.Fatalf("GOGC and GOMEMLIMIT in the environment: %v, %d; want them left to the runtime", p, limit)
	}
	cfg.MemoryLimit, cfg.MemoryLimitSet = 300<<20, true
	if _, limit = gcSettings(cfg, getenv, read); limit != 300<<20 {
		t.Fatalf("--memory-limit 300MiB: %d", limit)
	}
}
