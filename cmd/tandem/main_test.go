package main

import (
	"bytes"
	"context"
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
	t.Setenv("TANDEM_IDLE_TIMEOUT", "soon")
	if _, err := parseServeFlags(nil, &errOut); err == nil || !strings.Contains(err.Error(), "TANDEM_IDLE_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}
