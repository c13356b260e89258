package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "tandem ") {
		t.Fatalf("version: %q, %v", out.String(), err)
	}
	if err := run([]string{"serve"}, &out, &errOut); !errors.Is(err, errNotBuilt) {
		t.Fatalf("serve: %v, want errNotBuilt until issue 4 lands", err)
	}
	if err := run([]string{"frobnicate"}, &out, &errOut); err == nil {
		t.Fatal("unknown command accepted")
	}
	if err := run(nil, &out, &errOut); err == nil {
		t.Fatal("no command accepted")
	}
}
