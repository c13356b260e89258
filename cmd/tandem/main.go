// Command tandem is Tandem's one binary: the collaboration server and its
// tooling.
//
//	tandem serve        run the server
//	tandem backup       write a consistent backup, online (--server) or offline (--data-dir)
//	tandem restore      restore backup files into a new data directory
//	tandem export       write documents' text, metadata and history out of a backup or data directory
//	tandem verify       check a backup or data directory
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
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandemdocs/tandem/collab"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
	"github.com/tandemdocs/tandem/storage/spaceguard"
	"github.com/tandemdocs/tandem/web"
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
	case "backup", "restore", "export", "verify", "token":
		tool := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
			"backup": backupCmd, "restore": restoreCmd, "export": exportCmd, "verify": verifyCmd, "token": tokenCmd,
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

// serveConfig is everything `tandem serve` reads from flags and env.
type serveConfig struct {
	Addr            string
	DataDir         string
	SnapshotEvery   int64
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string
	AllowedOrigins  string
	Retain          int64
	AdminToken      string
	MinFreeSpace    byteSize
	DiskCheckEvery  time.Duration
	PublicURL       string
	AllowedHosts    string
	TrustedProxies  string
	MetricsAddr     string
	TLSCert         string
	TLSKey          string
	MaxConns        int
	MaxConnsPerIP   int
	ConnRate        float64
	AuthSecret      string
	AuthPublicKey   string
	Open            bool
}

// byteSize is a flag of bytes with an optional unit: 256MiB, 1GiB, 500MB,
// 1048576.
type byteSize uint64

func (b *byteSize) String() string { return fmt.Sprintf("%dMiB", uint64(*b)>>20) }

func (b *byteSize) Set(v string) error {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
			if err != nil {
				return fmt.Errorf("a size like 256MiB, 1GiB or 1048576: %w", err)
			}
			*b = byteSize(n * u.mult)
			return nil
		}
	}
	return errors.New("a size like 256MiB, 1GiB or 1048576")
}

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseServeFlags(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", "localhost:8080", "address to listen on (the Docker image sets :8080)")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "Badger data directory")
	fs.Int64Var(&c.SnapshotEvery, "snapshot-every", 100, "write a snapshot every this many revisions of a document")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 30*time.Second, "unload a document this long after its last client leaves")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated Origins allowed to open WebSockets besides the server's own host (* for any)")
	fs.Int64Var(&c.Retain, "retain", 0, "keep at most this many revisions of each document's history (0: keep everything)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the URL people reach the server at (https://docs.example.com): requests for other hosts are refused (421: defeats DNS rebinding) and its origin may open WebSockets")
	fs.StringVar(&c.AllowedHosts, "allowed-hosts", "", "comma-separated hosts (name or name:port) the server answers besides --public-url's; default: loopback names when listening on loopback, any host otherwise")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS and WSS directly; reloaded when the file changes or on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed (for per-client limits); without it the header is ignored")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve /metrics (Prometheus) on this address of its own, open to whoever reaches it (e.g. 127.0.0.1:9090); without it /metrics is on the main address for admins only")
	fs.IntVar(&c.MaxConns, "max-connections", 0, "connections open at once; past it new ones wait (0: 90% of the file-descriptor limit, which the server raises to its hard limit)")
	fs.IntVar(&c.MaxConnsPerIP, "max-connections-per-ip", 256, "connections open at once from one address (loopback is exempt: a local reverse proxy)")
	fs.Float64Var(&c.ConnRate, "connection-rate", 20, "new connections a second from one address (burst 5 times that)")
	fs.StringVar(&c.AuthSecret, "auth-secret", "", "HMAC-SHA256 secret(s) for access tokens, comma-separated (the first signs; the others are still accepted, for rotation); 32 bytes or more. Prefer TANDEM_AUTH_SECRET. Without a secret or a public key the server runs in open mode")
	fs.StringVar(&c.AuthPublicKey, "auth-public-key", "", "PEM file of an Ed25519 or RSA public key that verifies tokens minted by your own identity service")
	fs.BoolVar(&c.Open, "open", false, "allow open mode (no tokens: everyone may read and write) on an address other than loopback")
	c.MinFreeSpace = 256 << 20
	fs.Var(&c.MinFreeSpace, "min-free-space", "stop taking writes while the data directory's disk has less free space than this (room for Badger's next memtable flush and value-log file), and resume when it has more")
	fs.DurationVar(&c.DiskCheckEvery, "disk-check-every", time.Second, "how often the free disk space is measured")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token for the admin endpoints (online backup); without one they answer loopback only. Prefer TANDEM_ADMIN_TOKEN: command lines are visible to other users")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tandem serve [flags]\n\nflags (each also settable as TANDEM_<FLAG>, e.g. TANDEM_DATA_DIR):")
		fs.PrintDefaults()
	}
	// Environment first, so that flags given on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if c.SnapshotEvery < 1 {
		return c, errors.New("--snapshot-every must be at least 1")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together")
	}
	if strings.TrimSpace(c.AdminToken) != c.AdminToken || strings.ContainsAny(c.AdminToken, " \t\r\n") {
		return c, errors.New("--admin-token must not contain spaces (it travels as \"Authorization: Bearer <token>\")")
	}
	return c, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}

	auth, err := newAuth(cfg, log)
	if err != nil {
		return err
	}

	// The data directory must exist for its disk to be measured.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	var mgr *collab.Manager
	var guard atomic.Pointer[spaceguard.Guard] // for Badger's GC goroutine
	store, err := spaceguard.Open(spaceguard.Options{
		Dir:     cfg.DataDir,
		MinFree: uint64(cfg.MinFreeSpace),
		Every:   cfg.DiskCheckEvery,
		Logger:  log,
		Open: func(readOnly bool) (storage.Store, error) {
			return badgerstore.Open(badgerstore.Options{Dir: cfg.DataDir, Logger: log, ReadOnly: readOnly,
				GCAllowed: func() bool { g := guard.Load(); return g != nil && g.Writable() == nil }})
		},
		OnChange: func(err error) { mgr.SetWritable(err) },
	})
	if err != nil {
		return err
	}
	guard.Store(store)
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close storage", "err", err)
		}
	}()

	obs := newPromObserver()
	mgr = collab.NewManager(store, collab.Config{
		SnapshotEvery: cfg.SnapshotEvery,
		IdleTimeout:   cfg.IdleTimeout,
		Logger:        log,
		Observer:      obs,
	})
	mgr.SetWritable(store.Writable())
	go store.Run(ctx)
	var origins, hosts []string
	for o := range strings.SplitSeq(cfg.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	for h := range strings.SplitSeq(cfg.AllowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("--public-url %q: want http(s)://host[:port]", cfg.PublicURL)
		}
		hosts = append(hosts, u.Host)
		origins = append(origins, u.Scheme+"://"+u.Host)
	}
	if len(hosts) > 0 {
		// Health checks from the machine itself keep working.
		hosts = append(hosts, "localhost", "127.0.0.1", "::1")
	}
	var proxies []*net.IPNet
	for p := range strings.SplitSeq(cfg.TrustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			if ip := net.ParseIP(p); ip != nil && ip.To4() != nil {
				p += "/32"
			} else {
				p += "/128"
			}
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		proxies = append(proxies, n)
	}
	metrics := metricsHandler(mgr, store, cfg.DataDir, obs)
	srv := web.New(web.Config{Store: store, Manager: mgr, Logger: log, AllowedOrigins: origins, AdminToken: cfg.AdminToken,
		AllowedHosts: hosts, LoopbackOnly: loopbackAddr(cfg.Addr), TrustedProxies: proxies,
		Auth: auth, Metrics: metrics, MetricsPublic: cfg.MetricsAddr != "", OnError: obs.HTTPError})
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		defer msrv.Close()
		log.Info("metrics", "addr", "http://"+mln.Addr().String()+"/metrics")
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	nofile := raiseFileLimit()
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = max(64, int(nofile)*9/10-64)
	}
	log.Info("connection limits", "file_descriptors", nofile, "max_connections", maxConns, "per_ip", cfg.MaxConnsPerIP, "attempts_per_second", cfg.ConnRate)
	ln = web.LimitListener(ln, web.ConnLimits{Total: maxConns, PerIP: cfg.MaxConnsPerIP,
		AttemptsPerSecond: cfg.ConnRate, AttemptBurst: int(5 * cfg.ConnRate), ExemptLoopback: true}, log)
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: it would cut long responses (an online backup)
		// and WebSockets; request bodies get their own deadline (web).
		IdleTimeout: 120 * time.Second,
	}
	admin := "loopback only (no --admin-token)"
	if cfg.AdminToken != "" {
		admin = "bearer token"
		if len(cfg.AdminToken) < 16 {
			log.Warn("the admin token is short: anyone who guesses it can download every document (use 16 characters or more, e.g. openssl rand -hex 16)")
		}
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return err
		}
		go certs.watch(ctx, 5*time.Second)
		httpSrv.TLSConfig = certs.tlsConfig()
		scheme = "https"
	}
	log.Info("tandem serving", "addr", scheme+"://"+ln.Addr().String(), "data_dir", cfg.DataDir, "version", version, "admin", admin)

	if cfg.Retain > 0 {
		go retainLoop(ctx, log, store, cfg.Retain)
	}

	served := make(chan error, 1)
	go func() {
		if httpSrv.TLSConfig != nil {
			served <- httpSrv.ServeTLS(ln, "", "")
		} else {
			served <- httpSrv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}

	// Graceful shutdown: stop being ready, let every document finish its
	// commits and close its WebSockets with "going away", then stop HTTP,
	// then (deferred) close Badger.
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	srv.Drain()
	if err := mgr.Close(sctx); err != nil {
		log.Error("close documents", "err", err)
	}
	// Let the close frames reach the clients before the process goes.
	wctx, wcancel := context.WithTimeout(sctx, 3*time.Second)
	srv.Close(wctx)
	wcancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Error("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// newAuth builds the token verifier, or allows open mode: loudly, and on a
// non-loopback address only with --open.
func newAuth(cfg serveConfig, log *slog.Logger) (*web.Verifier, error) {
	var secrets []string
	for s := range strings.SplitSeq(cfg.AuthSecret, ",") {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	var pub []byte
	if cfg.AuthPublicKey != "" {
		var err error
		if pub, err = os.ReadFile(cfg.AuthPublicKey); err != nil {
			return nil, fmt.Errorf("--auth-public-key: %w", err)
		}
	}
	if len(secrets) > 0 || len(pub) > 0 {
		v, err := web.NewVerifier(secrets, pub)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		log.Info("access tokens required", "secrets", len(secrets), "public_key", cfg.AuthPublicKey != "")
		return v, nil
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("--addr %q: %w", cfg.Addr, err)
	}
	if !loopbackAddr(cfg.Addr) && !cfg.Open {
		return nil, fmt.Errorf("no --auth-secret: open mode (anyone may read, edit and list every document) is allowed on loopback only; "+
			"listening on %s needs --open to say so, or a secret (TANDEM_AUTH_SECRET)", cfg.Addr)
	}
	log.Warn("OPEN MODE: no --auth-secret, so anyone who can reach this server may read and edit every document; only loopback connections may delete. Set TANDEM_AUTH_SECRET to require tokens (tandem token mints them)", "addr", cfg.Addr)
	return nil, nil
}

// raiseFileLimit raises the soft limit on open files to the hard limit
// (each connection is one) and returns it.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return lim.Cur
}

// loopbackAddr reports whether a listen address is on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func retainLoop(ctx context.Context, log *slog.Logger, store storage.Store, keep int64) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := storage.Retain(ctx, store, keep); err != nil {
			log.Error("history retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
