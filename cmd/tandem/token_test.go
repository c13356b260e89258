package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/web"
)

func TestTokenCommand(t *testing.T) {
	const secret = "a-secret-of-at-least-32-bytes-for-tests"
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"token", "--secret", secret, "--user", "ann", "--name", "Ann", "--doc", "acme-*", "--doc", "x", "--role", "read", "--ttl", "1h"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "ann" || c.Name != "Ann" || c.RoleFor("acme-1") != web.RoleRead || c.RoleFor("x") != web.RoleRead || c.RoleFor("y") != web.RoleNone {
		t.Fatalf("claims %+v", c)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Fatalf("expires in %v", d)
	}
	out.Reset()
	if err := run(context.Background(), []string{"token", "--secret", secret, "--user", "bob", "--doc", "trip", "--link", "http://localhost:8080"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	link, tok, _ := strings.Cut(strings.TrimSpace(out.String()), "#token=")
	if link != "http://localhost:8080/d/trip" {
		t.Errorf("link %q", out.String())
	}
	if c, err := v.Verify(tok); err != nil || c.RoleFor("trip") != web.RoleWrite {
		t.Errorf("the link's token: %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"token", "--secret", secret, "--user", "a", "--link", "localhost:8080"},
		{"token", "--user", "ann"},    // no secret
		{"token", "--secret", secret}, // no user
		{"token", "--secret", secret, "--user", "a", "--role", "owner"},
	} {
		t.Setenv("TANDEM_AUTH_SECRET", "")
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestOpenModeNeedsLoopback: without a secret the server refuses to listen
// beyond loopback unless told --open.
func TestOpenModeNeedsLoopback(t *testing.T) {
	code, out := runTandem(t, nil, "serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(out, "open mode") || !strings.Contains(out, "--open") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
