// Command tandem is Tandem's one binary: the collaboration server and its
// tooling.
//
//	tandem serve     run the server (not built yet: issue 4)
//	tandem version   print the version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: tandem <command> [flags]

commands:
  serve     run the collaboration server (not built yet: issue 4)
  version   print the version
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

var errNotBuilt = errors.New("not built yet")

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "tandem", version)
		return nil
	case "serve":
		return fmt.Errorf("serve: %w: the collaboration server lands with issue 4; only the OT engine (package ot) exists so far", errNotBuilt)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
