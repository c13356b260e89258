// Command tandem is Tandem's one binary: the collaboration server and its
// tooling.
//
//	tandem serve        run the server
//	tandem backup       write a consistent backup, online (--server) or offline (--data-dir)
//	tandem restore      restore backup files into a new data directory
//	tandem export       write documents' text, metadata and history out of a backup or data directory
//	tandem verify       check a backup or data directory
//	tandem token        mint an access token
//	tandem bench        drive a running server with editing clients and measure it
//	tandem healthcheck  exit 0 if the server on TANDEM_ADDR answers /healthz (for container health checks)
//	tandem version      print the version
//
// Every flag of serve can also be set with an environment variable:
// --data-dir is TANDEM_DATA_DIR, and so on. The tools (backup, restore,
// export, verify) take only TANDEM_DATA_DIR, TANDEM_SERVER and
// TANDEM_ADMIN_TOKEN from the environment. Flags win over the environment.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandemdocs/tandem/internal/loadgen"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: tandem <command> [flags]

commands:
  serve         run the collaboration server
  backup        write a consistent backup, of a running server (--server) or a data directory
  restore       restore backup files into a new data directory
  export        write documents out of a backup file or data directory, no server needed
  verify        check a backup file or data directory
  token         mint an access token (signed with the server's --auth-secret)
  bench         drive a running server with editing clients and measure it
  healthcheck   check that the server on --addr (TANDEM_ADDR) is healthy
  version       print the version

Run 'tandem <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "tandem", version)
		return nil
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stdout, stderr)
	case "backup", "restore", "export", "verify", "token", "bench":
		tool := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
			"backup": backupCmd, "restore": restoreCmd, "export": exportCmd, "verify": verifyCmd, "token": tokenCmd,
			"bench": loadgen.Main,
		}[args[0]]
		if err := tool(ctx, args[1:], stdout, stderr); err != nil && !helpRequested(err) {
			return err
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// healthcheck asks a running server's /healthz; containers without curl use
// it as their HEALTHCHECK.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8080", "the server's address (TANDEM_ADDR)")
	if v, ok := os.LookupEnv(envName("addr")); ok {
		*addr = v
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("healthcheck: address %q: %w", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	scheme, client := "http", http.DefaultClient
	if os.Getenv(envName("tls-cert")) != "" {
		// Its own certificate, on loopback: no name to verify it against.
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
