package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/fdlimit"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
)

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
	// NATS, when set, makes this node one of a cluster: documents live in
	// JetStream (storage/jsstore) instead of Badger, and commits fan out
	// between the nodes (internal/collab/natsbroker).
	NATS           string
	NATSCreds      string
	NATSCA         string
	NATSReplicas   int
	NATSTimeout    time.Duration
	MinFreeSpace   byteSize
	DiskCheckEvery time.Duration
	PublicURL      string
	AllowedHosts   string
	TrustedProxies string
	MetricsAddr    string
	TLSCert        string
	TLSKey         string
	MaxConns       int
	MaxConnsPerIP  int
	ShedIdleAfter  time.Duration
	ConnRate       float64
	ClientRate     float64
	MemoryLimit    byteSize
	GCPercent      int
	MemoryLimitSet bool // --memory-limit (or TANDEM_MEMORY_LIMIT) was given
	CommitLinger   time.Duration
	FanOutPace     time.Duration
	Durability     string
	SyncInterval   time.Duration
	AuthSecret     string
	AuthPublicKey  string
	Open           bool
	// The change feed's retention and its webhooks.
	ChangesRetain   time.Duration
	Webhooks        string
	WebhookSecret   string
	WebhookDebounce time.Duration
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
	fs.StringVar(&c.Durability, "durability", "fsync", "what an acknowledged edit has survived: fsync (on disk before it is acknowledged: power loss loses nothing acknowledged), os (written to the operating system and synced every --sync-interval: a killed server loses nothing acknowledged, a machine that loses power loses up to the interval), or memory (nothing is written: a restart loses every document; for tests and like-for-like comparisons). A cluster (--nats) uses JetStream's own setting")
	fs.DurationVar(&c.SyncInterval, "sync-interval", time.Second, "--durability os: how often what was written is synced to disk")
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
	fs.IntVar(&c.MaxConns, "max-connections", 0, "connections open at once; past it new requests are answered at once with 503 and Retry-After (health checks, /metrics and the admin endpoints are still served, within a headroom of 5%, at least 64) and idle connections are closed to make room (0: 90% of the file-descriptor limit, which the server raises to its hard limit)")
	fs.DurationVar(&c.ShedIdleAfter, "shed-idle-after", 30*time.Second, "at --max-connections, WebSockets whose clients have sent nothing for this long are closed (1013, try again later), the longest idle first, to make room; keep-alive connections waiting for a request are closed at once")
	fs.IntVar(&c.MaxConnsPerIP, "max-connections-per-ip", 256, "connections open at once from one address (loopback is exempt: a local reverse proxy)")
	fs.Float64Var(&c.ConnRate, "connection-rate", 20, "new connections a second from one address (burst 5 times that)")
	fs.Float64Var(&c.ClientRate, "client-rate", 200, "messages a second each WebSocket connection may send (burst twice that; an op far behind costs more): a bound for abuse, which benchmarks that type as fast as acks come raise (e.g. 1e6)")
	fs.StringVar(&c.AuthSecret, "auth-secret", "", "HMAC-SHA256 secret(s) for access tokens, comma-separated (the first signs; the others are still accepted, for rotation); 32 bytes or more. Prefer TANDEM_AUTH_SECRET. Without a secret or a public key the server runs in open mode")
	fs.StringVar(&c.AuthPublicKey, "auth-public-key", "", "PEM file of an Ed25519 or RSA public key that verifies tokens minted by your own identity service")
	fs.BoolVar(&c.Open, "open", false, "allow open mode (no tokens: everyone may read and write) on an address other than loopback")
	fs.DurationVar(&c.FanOutPace, "fan-out-pace", 25*time.Microsecond, "a document of 16 connections or more makes at most one durable write per this much time per connection (at most 20 ms; 200 connections: 5 ms): every commit costs each connection a frame, and under load this makes frames carry more ops; an op that comes after a quiet interval is written at once. 0 never waits")
	fs.DurationVar(&c.CommitLinger, "commit-linger", 200*time.Microsecond, "how long a document's next durable write may wait for the ops of the clients just acknowledged, so that they share one fsync (throughput when clients type as fast as acks come; given up when they do not); 0 never waits. A wait that comes to nothing turns it off for the next 16 writes")
	fs.Var(&c.MemoryLimit, "memory-limit", "a soft limit on the Go heap (e.g. 400MiB): the garbage collector works harder as it nears it, however high --gc-percent lets the heap grow. Default: half the memory the server may use (its cgroup's limit, else the machine's); 0: no limit. GOMEMLIMIT in the environment overrides the default")
	fs.IntVar(&c.GCPercent, "gc-percent", 200, "how far the Go heap grows past the live data before a collection, in percent (GOGC): higher collects less often (lower latency, fewer mark phases competing with edits) and holds more memory, up to --memory-limit; -1 collects only at the limit. GOGC in the environment overrides the default")
	c.MinFreeSpace = 256 << 20
	fs.Var(&c.MinFreeSpace, "min-free-space", "stop taking writes while the data directory's disk has less free space than this (room for Badger's next memtable flush and value-log file), and resume when it has more")
	fs.DurationVar(&c.DiskCheckEvery, "disk-check-every", time.Second, "how often the free disk space is measured")
	fs.StringVar(&c.NATS, "nats", "", "NATS server URL(s), comma-separated (nats://host:4222): run as a node of a cluster, with the documents in JetStream instead of --data-dir (docs/cluster.md)")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "NATS credentials file (a user JWT and its key) for --nats")
	fs.StringVar(&c.NATSCA, "nats-ca", "", "PEM file of the CA that signed the NATS servers' certificates (tls:// URLs), when not a system one")
	fs.DurationVar(&c.NATSTimeout, "nats-timeout", 5*time.Second, "how long a JetStream request (a commit, a read) may take before it fails: the document then reloads and its clients resend")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", 1, "replicas of Tandem's JetStream stream and buckets (3 in a 3-node NATS cluster: an acknowledged write is then on a majority)")
	fs.DurationVar(&c.ChangesRetain, "changes-retain", 7*24*time.Hour, "keep the change feed's events (GET /api/changes, webhooks) this long; a reader further behind must read the documents whole")
	fs.StringVar(&c.Webhooks, "webhook", "", "comma-separated URLs that receive the change feed, signed per Standard Webhooks with --webhook-secret, delivered at least once and in order, retried until they answer 2xx (docs/library.md#webhooks)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "the webhooks' signing secret: whsec_ and at least 24 bytes in base64 (e.g. echo whsec_$(openssl rand -base64 32)); prefer TANDEM_WEBHOOK_SECRET")
	fs.DurationVar(&c.WebhookDebounce, "webhook-debounce", 0, "send webhooks one \"changed\" event per document per quiet period of this length instead of every op (0: every op)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token for the admin endpoints (online backup, /metrics, the profiler) and for deleting documents in open mode; without one the server makes one and keeps it in <data-dir>/admin-token (mode 0600), where tandem backup finds it. Prefer TANDEM_ADMIN_TOKEN: command lines are visible to other users")
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
	fs.Visit(func(f *flag.Flag) { c.MemoryLimitSet = c.MemoryLimitSet || f.Name == "memory-limit" })
	if c.GCPercent < -1 {
		return c, fmt.Errorf("--gc-percent %d: -1 (collect only at the memory limit) or more", c.GCPercent)
	}
	if c.SnapshotEvery < 1 {
		return c, errors.New("--snapshot-every must be at least 1")
	}
	// A negative value is a mistake, never "off": say so instead of
	// guessing what was meant.
	for _, n := range []struct {
		flag string
		bad  bool
	}{
		{"retain", c.Retain < 0},
		{"idle-timeout", c.IdleTimeout < 0},
		{"shutdown-timeout", c.ShutdownTimeout < 0},
		{"commit-linger", c.CommitLinger < 0},
		{"fan-out-pace", c.FanOutPace < 0},
		{"disk-check-every", c.DiskCheckEvery <= 0},
		{"sync-interval", c.SyncInterval <= 0},
		{"shed-idle-after", c.ShedIdleAfter < 0},
		{"webhook-debounce", c.WebhookDebounce < 0},
		{"max-connections", c.MaxConns < 0},
		{"max-connections-per-ip", c.MaxConnsPerIP < 1},
		{"nats-replicas", c.NATSReplicas < 1 || c.NATSReplicas > 5},
		{"nats-timeout", c.NATSTimeout <= 0},
		{"connection-rate", !(c.ConnRate > 0)},
		{"client-rate", !(c.ClientRate > 0)},
	} {
		if n.bad {
			return c, fmt.Errorf("--%s: %s is out of range (see tandem serve -h)", n.flag, fs.Lookup(n.flag).Value)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together")
	}
	switch c.Durability {
	case "fsync", "os", "memory":
	default:
		return c, fmt.Errorf("--durability %q: fsync, os or memory", c.Durability)
	}
	if c.NATS != "" && c.Durability != "fsync" {
		return c, errors.New("--durability is the single server's: a cluster's durability is JetStream's (its sync_interval)")
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
	srv, err := openServer(ctx, cfg, log, serverHooks{})
	if err != nil {
		return err
	}
	err = srv.wait(ctx)
	if cerr := srv.close(); err == nil {
		err = cerr
	}
	return err
}

// serverHooks let tests and benchmarks reach into a server they start in
// process; the command leaves them empty.
type serverHooks struct {
	// wrapStore wraps the store the Manager and the HTTP API use (to
	// time or count its calls).
	wrapStore func(storage.Store) storage.Store
	// tune adjusts the collaboration settings (rate limits, bounds) that
	// have no flag.
	tune func(*collab.Config)
	// listener, when set, is served instead of listening on cfg.Addr.
	listener net.Listener
	// limitLoopback applies the per-address limits to loopback peers too
	// (tests play many clients from 127.0.0.x).
	limitLoopback bool
}

// server is one running `tandem serve`: a tandem.Server (the library:
// storage, documents, the HTTP API, hooks and webhooks) configured from a
// serveConfig, and what a process adds around it: the listener with its
// connection limits, TLS, the HTTP server, the process's metrics, the
// memory release loop. openServer starts it; wait blocks until its
// context ends or serving fails; close shuts it down gracefully. The
// process tests run the binary; in-process tests and benchmarks use this
// same wiring.
type server struct {
	cfg serveConfig
	log *slog.Logger

	lib     *tandem.Server
	store   storage.Store
	mgr     *collab.Manager
	nc      *nats.Conn // in a cluster
	http    *http.Server
	metrics *http.Server // on --metrics-addr; nil without it
	ln      net.Listener
	url     string

	closeOnce sync.Once
	closeErr  error

	served chan error     // the HTTP server's exit
	stop   func()         // ends the background loops
	loops  sync.WaitGroup // certificate reloads, memory release
}

func openServer(ctx context.Context, cfg serveConfig, log *slog.Logger, hooks serverHooks) (_ *server, err error) {
	s := &server{cfg: cfg, log: log, served: make(chan error, 1)}
	gcPercent, memLimit := gcSettings(cfg, os.Getenv, os.ReadFile)
	if gcPercent != nil {
		debug.SetGCPercent(*gcPercent)
	}
	if memLimit > 0 {
		debug.SetMemoryLimit(memLimit)
	}
	log.Info("garbage collector", "gc_percent", gcPercent, "memory_limit_mb", memLimit>>20)
	lcfg := tandem.Config{Logger: log, Demo: true, SnapshotEvery: cfg.SnapshotEvery, IdleTimeout: cfg.IdleTimeout, Retain: cfg.Retain,
		ClientRate: cfg.ClientRate, CommitLinger: nonZero(cfg.CommitLinger), FanOutPace: nonZero(cfg.FanOutPace), ChangesRetain: cfg.ChangesRetain,
		MaxWebSocketsPerAddr: cfg.MaxConnsPerIP, LimitLoopback: hooks.limitLoopback, LoopbackOnly: loopbackAddr(cfg.Addr),
		Tune: hooks.tune, WrapStore: hooks.wrapStore}
	if lcfg.AuthSecrets, lcfg.AuthPublicKey, err = authConfig(cfg, log); err != nil {
		return nil, err
	}
	if lcfg.AllowedOrigins, lcfg.AllowedHosts, err = originsAndHosts(cfg); err != nil {
		return nil, err
	}
	if len(lcfg.AllowedHosts) == 0 && !loopbackAddr(cfg.Addr) {
		log.Warn("no --public-url or --allowed-hosts: every Host is answered, so a page on any site whose name an attacker points at this address (DNS rebinding) can use the API in a visitor's browser; set --public-url to the address people use", "addr", cfg.Addr)
	}
	if lcfg.TrustedProxies, err = parseCIDRs(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if lcfg.Webhooks, err = parseWebhooks(cfg.Webhooks, cfg.WebhookSecret, cfg.WebhookDebounce); err != nil {
		return nil, err
	}

	// Listen first: a port in use must not leave a new data directory
	// behind (or open Badger only to close it).
	ln := hooks.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	var mln net.Listener
	if cfg.MetricsAddr != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	defer func() {
		if err != nil {
			ln.Close()
			if mln != nil {
				mln.Close()
			}
			s.stop()
			s.loops.Wait()
			if s.lib != nil {
				s.lib.Close()
			}
			if s.nc != nil {
				s.nc.Close()
			}
		}
	}()

	switch {
	case cfg.NATS != "":
		if s.nc, err = connectCluster(cfg, log); err != nil {
			return nil, err
		}
		lcfg.Storage = tandem.JetStream{Conn: s.nc, Replicas: cfg.NATSReplicas, Timeout: cfg.NATSTimeout}
		log.Info("cluster node", "nats", s.nc.ConnectedUrlRedacted(), "replicas", cfg.NATSReplicas)
	case cfg.Durability == "memory":
		log.Warn("--durability memory: nothing is written to disk, and every document is lost when the server stops")
		lcfg.Storage = tandem.Memory{}
	default:
		lcfg.Storage = tandem.Badger{Dir: cfg.DataDir, Durability: tandem.Durability(cfg.Durability), SyncInterval: cfg.SyncInterval,
			MinFreeSpace: uint64(cfg.MinFreeSpace), CheckEvery: cfg.DiskCheckEvery}
		if cfg.Durability == "os" {
			log.Info("--durability os: edits are acknowledged once the operating system has them, and synced every --sync-interval", "sync_interval", cfg.SyncInterval)
		}
	}
	adminToken, adminFile := cfg.AdminToken, ""
	if adminToken == "" {
		if adminToken, adminFile, err = localAdminToken(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	lcfg.AdminToken = adminToken

	// The process's metrics beside the library's: the runtime, the
	// process, the connections by state, the listener's refusals.
	reg := prometheus.NewRegistry()
	conns := newConnStates()
	var lib atomic.Pointer[tandem.Server]
	connRefused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_connections_refused_total", Help: "TCP connections closed at accept by the per-address limits, by reason (rate, per_ip)."}, []string{"reason"})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), connRefused,
		connStateCollector(conns, func() int {
			if l := lib.Load(); l != nil {
				return l.WebSockets()
			}
			return 0
		}))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	lcfg.Metrics = reg
	if cfg.MetricsAddr == "" {
		lcfg.MetricsHandler = metrics
	}
	if s.lib, err = tandem.New(ctx, lcfg); err != nil {
		return nil, err
	}
	lib.Store(s.lib)
	s.store, s.mgr = s.lib.Store(), s.lib.Manager()
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go s.metrics.Serve(mln)
		log.Info("metrics", "addr", "http://"+mln.Addr().String()+"/metrics")
	}

	nofile := fdlimit.Raise()
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = max(64, int(nofile)*9/10-64)
	}
	log.Info("connection limits", "file_descriptors", nofile, "max_connections", maxConns, "per_ip", cfg.MaxConnsPerIP, "attempts_per_second", cfg.ConnRate)
	onFull := func() {
		idle := conns.closeIdle()
		shed := s.lib.ShedIdle(max(1, maxConns/100), cfg.ShedIdleAfter)
		log.Debug("at the connection limit", "idle_http_closed", idle, "idle_websockets_closed", shed)
	}
	s.ln = web.LimitListener(ln, web.ConnLimits{Total: maxConns, OnFull: onFull, PerIP: cfg.MaxConnsPerIP,
		AttemptsPerSecond: cfg.ConnRate, AttemptBurst: int(5 * cfg.ConnRate), ExemptLoopback: !hooks.limitLoopback, Exempt: lcfg.TrustedProxies,
		OnRefused: func(reason string) { connRefused.WithLabelValues(reason).Inc() }}, log)
	s.http = &http.Server{
		Handler:           s.lib,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: it would cut long responses (an online backup)
		// and WebSockets; request bodies get their own deadline (web).
		IdleTimeout: 120 * time.Second,
		ConnState:   conns.track,
		ConnContext: web.ConnContext,
		ErrorLog:    stdlog.New(httpErrorLog{log}, "", 0),
	}
	admin := "bearer token (--admin-token)"
	if adminFile != "" {
		admin = "bearer token in " + adminFile
	} else if len(cfg.AdminToken) < 16 {
		log.Warn("the admin token is short: anyone who guesses it can download every document (use 16 characters or more, e.g. openssl rand -hex 16)")
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return nil, err
		}
		s.goLoop(func() { certs.watch(loopCtx, 5*time.Second) })
		s.http.TLSConfig = certs.tlsConfig()
		scheme = "https"
	}
	s.url = scheme + "://" + ln.Addr().String()
	log.Info("tandem serving", "addr", s.url, "data_dir", cfg.DataDir, "version", version, "admin", admin)

	s.goLoop(func() { releaseLoop(loopCtx, log, 10*time.Second) })
	go func() {
		if s.http.TLSConfig != nil {
			s.served <- s.http.ServeTLS(s.ln, "", "")
		} else {
			s.served <- s.http.Serve(s.ln)
		}
	}()
	return s, nil
}

// nonZero keeps a flag's 0 ("never wait") from meaning the library's
// default: a negative value never waits there.
func nonZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func (s *server) goLoop(f func()) {
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		f()
	}()
}

// wait blocks until ctx ends (nil) or the HTTP server fails.
func (s *server) wait(ctx context.Context) error {
	select {
	case err := <-s.served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// close shuts the server down gracefully: stop being ready, let every
// document finish its commits and close its WebSockets with "going
// away", stop HTTP, stop the background loops, close Badger. It takes at
// most cfg.ShutdownTimeout (plus closing Badger). Later calls return the
// first one's error.
func (s *server) close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *server) shutdown() error {
	s.log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.lib.Drain()
	// The library finishes the documents, their WebSockets and the
	// requests in progress, then closes the storage; HTTP stops after.
	err := s.lib.Shutdown(ctx)
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Error("http shutdown", "err", err)
	}
	if s.metrics != nil {
		s.metrics.Close()
	}
	s.stop()
	s.loops.Wait()
	if s.nc != nil {
		s.nc.Close()
	}
	s.log.Info("stopped")
	return err
}

// connectCluster connects to the NATS servers of --nats.
func connectCluster(cfg serveConfig, log *slog.Logger) (*nats.Conn, error) {
	return connectNATS(cfg.NATS, cfg.NATSCreds, cfg.NATSCA,
		nats.MaxReconnects(-1), // a NATS restart is waited out; ops are refused meanwhile
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				log.Warn("nats disconnected: edits wait for it", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	)
}

// connectNATS connects to the NATS servers at urls (comma-separated) with
// the credentials and CA files, if given.
func connectNATS(urls, creds, ca string, more ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("tandem " + version), nats.ReconnectWait(500 * time.Millisecond)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	nc, err := nats.Connect(urls, append(opts, more...)...)
	if err != nil {
		return nil, fmt.Errorf("--nats %s: %w", urls, err)
	}
	return nc, nil
}

// httpErrorLog routes net/http's own messages to slog: failed accepts
// (out of file descriptors) are errors, the rest (TLS handshakes from
// scanners, malformed requests) are debug noise.
type httpErrorLog struct{ log *slog.Logger }

func (w httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "Accept error") {
		w.log.Error("http server", "err", msg)
	} else {
		w.log.Debug("http server", "err", msg)
	}
	return len(p), nil
}

// originsAndHosts are the WebSocket/CORS origins and the Host names the
// server answers, from --allowed-origins, --allowed-hosts and --public-url.
func originsAndHosts(cfg serveConfig) (origins, hosts []string, err error) {
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
			return nil, nil, fmt.Errorf("--public-url %q: want http(s)://host[:port]", cfg.PublicURL)
		}
		hosts = append(hosts, u.Host)
		origins = append(origins, u.Scheme+"://"+u.Host)
	}
	if len(hosts) > 0 {
		// Health checks from the machine itself keep working.
		hosts = append(hosts, "localhost", "127.0.0.1", "::1")
	}
	return origins, hosts, nil
}

// parseCIDRs reads a comma-separated list of addresses and CIDRs.
func parseCIDRs(list string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for p := range strings.SplitSeq(list, ",") {
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
			return nil, err
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// newAuth builds the token verifier, or allows open mode: loudly, and on a
// non-loopback address only with --open.
// authConfig reads the token secrets and public key, and refuses open
// mode on an address other than loopback unless --open says so.
func authConfig(cfg serveConfig, log *slog.Logger) (secrets []string, pub []byte, err error) {
	for s := range strings.SplitSeq(cfg.AuthSecret, ",") {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	if cfg.AuthPublicKey != "" {
		if pub, err = os.ReadFile(cfg.AuthPublicKey); err != nil {
			return nil, nil, fmt.Errorf("--auth-public-key: %w", err)
		}
	}
	if len(secrets) > 0 || len(pub) > 0 {
		// Checked here, for the flags' sake in the message.
		if _, err := web.NewVerifier(secrets, pub); err != nil {
			return nil, nil, fmt.Errorf("auth: %w", err)
		}
		log.Info("access tokens required", "secrets", len(secrets), "public_key", cfg.AuthPublicKey != "")
		return secrets, pub, nil
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, nil, fmt.Errorf("--addr %q: %w", cfg.Addr, err)
	}
	if !loopbackAddr(cfg.Addr) && !cfg.Open {
		return nil, nil, fmt.Errorf("no --auth-secret: open mode (anyone may read, edit and list every document) is allowed on loopback only; "+
			"listening on %s needs --open to say so, or a secret (TANDEM_AUTH_SECRET)", cfg.Addr)
	}
	log.Warn("OPEN MODE: no --auth-secret, so anyone who can reach this server may read and edit every document; deleting takes the admin token. Set TANDEM_AUTH_SECRET to require tokens (tandem token mints them)", "addr", cfg.Addr)
	return nil, nil, nil
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

// releaseLoop gives memory back to the system after load has gone. Each
// WebSocket holds buffers and a goroutine's stack, each open document its
// text and history; once thousands of connections close (and their
// documents unload) the Go runtime returns the freed pages only gradually,
// over minutes, and the process keeps the RSS of its busiest moment. So
// every interval, when the heap holds more idle pages not yet returned
// than max(64 MiB, half of what is in use), they are returned at once.
func releaseLoop(ctx context.Context, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var ms runtime.MemStats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		if idle := ms.HeapIdle - ms.HeapReleased; idle > max(64<<20, ms.HeapInuse/2) {
			start := time.Now()
			debug.FreeOSMemory()
			log.Info("memory given back to the system", "idle_mb", idle>>20, "in_use_mb", ms.HeapInuse>>20, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// gcSettings is what the garbage collector is set to: --gc-percent unless
// GOGC is in the environment (nil: leave the runtime's), and the soft
// memory limit: --memory-limit if given, else (unless GOMEMLIMIT is in the
// environment) half the memory the process may use, which bounds what a
// high --gc-percent lets the heap grow to.
func gcSettings(cfg serveConfig, getenv func(string) string, readFile func(string) ([]byte, error)) (gcPercent *int, memLimit int64) {
	if getenv("GOGC") == "" {
		gcPercent = &cfg.GCPercent
	}
	switch {
	case cfg.MemoryLimitSet:
		return gcPercent, int64(cfg.MemoryLimit)
	case getenv("GOMEMLIMIT") != "":
		return gcPercent, 0
	}
	return gcPercent, availableMemory(readFile) / 2
}

// availableMemory is the cgroup's memory limit (v2, then v1) or, without
// one, the machine's memory; 0 if neither can be read.
func availableMemory(readFile func(string) ([]byte, error)) int64 {
	var total int64
	if b, err := readFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total = kb << 10
			}
		}
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		// ("max", or v1's huge number, means no limit.)
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			return n
		}
	}
	return total
}

// parseWebhooks reads --webhook's URLs, all signed with one secret.
func parseWebhooks(urls, secret string, debounce time.Duration) ([]tandem.Webhook, error) {
	var hooks []tandem.Webhook
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			hooks = append(hooks, tandem.Webhook{URL: u, Secret: secret, Debounce: debounce})
		}
	}
	if len(hooks) > 0 && secret == "" {
		return nil, errors.New("--webhook needs --webhook-secret (TANDEM_WEBHOOK_SECRET)")
	}
	return hooks, nil
}
