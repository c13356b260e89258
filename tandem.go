// Package tandem runs a Tandem collaboration server inside a Go program:
// real-time collaborative editing of plain and rich text, over WebSockets,
// with durable history, exactly-once edits and a change feed.
//
// A Server is an http.Handler. Mount it on any router, at the root or under
// a prefix (strip the prefix: http.StripPrefix), next to the application's
// own routes; the application chooses the storage, the logger, the metrics
// registry and, through hooks, who its users are, what they may do, which
// edits it refuses, and what it does when documents change:
//
//	srv, err := tandem.New(ctx, tandem.Config{Storage: tandem.Badger{Dir: "data"}})
//	if err != nil { ... }
//	defer srv.Shutdown(context.Background())
//	mux.Handle("/collab/", http.StripPrefix("/collab", srv))
//
// Browsers connect with the client in internal/web/static/js (also an npm package,
// internal/web/static/js/package.json); Go programs with package client. The wire
// protocol is docs/protocol.md; docs/library.md explains this API.
//
// # What is stable
//
// This package, package client (the Go client), package protocol (the wire
// protocol), package feed (the change feed's events), package ot, ot/rich
// and ot/doctype (the op engines) and package storage (the Store interface
// and its conformance suite, to bring a store of one's own) are the API:
// they change only compatibly. The collaboration core and the HTTP front
// end are internal (internal/collab, internal/web): other modules cannot
// import them. The storage implementations (storage/badgerstore,
// memstore, jsstore, spaceguard) are public for tools, but the way to use
// them is Config.Storage.
package tandem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdocs/tandem/feed"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
)

// Config configures a Server. Only Storage is required; every other zero
// field has a default fit for a small deployment.
type Config struct {
	// Storage is where documents live: Badger{Dir: ...}, BadgerDB{DB:
	// ...}, Memory{} or JetStream{Conn: ...}.
	Storage Storage
	// Logger receives the server's logs (slog.Default()).
	Logger *slog.Logger
	// Metrics, if set, gets the server's Prometheus metrics registered
	// (documents open, commits, outbound queues, refusals, the change
	// feed's webhooks, Badger's figures). MetricsHandler, if set, is
	// served at GET /metrics to admins.
	Metrics        prometheus.Registerer
	MetricsHandler http.Handler

	// Hooks connect the server to the application: its login, its rules,
	// its reactions to changes.
	Hooks Hooks

	// Access. With neither AuthSecrets, AuthPublicKey nor an Authenticate
	// hook the server is open: anyone who reaches it may read and edit
	// every document (the binary allows that on loopback only).
	//
	// AuthSecrets verify access tokens signed with HMAC-SHA256 (the first
	// signs: see web.Mint; the others are still accepted, for rotation);
	// each at least 32 bytes. AuthPublicKey (PEM, Ed25519 or RSA)
	// verifies tokens minted by an identity service.
	AuthSecrets   []string
	AuthPublicKey []byte
	// AdminToken, if set, is a bearer token that may do anything: the
	// admin endpoints (online backup, /metrics, the profiler) and
	// deleting any document.
	AdminToken string

	// The HTTP front end: the Origins (scheme://host[:port]) whose pages
	// may open WebSockets and call the REST API ("*": any); the Host
	// headers answered (others get 421, which defeats DNS rebinding;
	// empty: any, or loopback names only with LoopbackOnly); the reverse
	// proxies whose X-Forwarded-For is believed; the WebSockets one client
	// address may hold open (0: no bound).
	AllowedOrigins       []string
	AllowedHosts         []string
	LoopbackOnly         bool
	TrustedProxies       []*net.IPNet
	MaxWebSocketsPerAddr int
	// LimitLoopback applies the per-address limits to loopback clients
	// too (by default they are exempt: a reverse proxy on this machine).
	LimitLoopback bool

	// Documents: a snapshot every SnapshotEvery revisions (100); a
	// document with no clients unloaded after IdleTimeout (30s); each
	// document's history compacted to its newest Retain revisions every
	// ten minutes (0: keep everything); ClientRate messages a second per
	// WebSocket (200, burst twice that).
	SnapshotEvery int64
	IdleTimeout   time.Duration
	Retain        int64
	ClientRate    float64
	// CommitLinger and FanOutPace tune the group commit (see tandem serve
	// -h: --commit-linger, --fan-out-pace); 0 takes the defaults, a
	// negative value never waits.
	CommitLinger, FanOutPace time.Duration

	// ChangesRetain bounds the change feed: events older than this are
	// trimmed every ten minutes (7 days; negative: kept for ever).
	ChangesRetain time.Duration
	// Webhooks receive the change feed (see Webhook).
	Webhooks []Webhook

	// Demo serves the demo editor's pages at / and /d/{id} (the binary
	// does). The browser client's modules (/js/...) are served either
	// way. The demo's pages work at the root of a host only.
	Demo bool

	// Tune, if set, adjusts the collaboration core's settings that have
	// no field here (tests, benchmarks).
	Tune func(*collab.Config)
	// WrapStore, if set, wraps the store the documents and the REST API
	// use (to time or count its calls).
	WrapStore func(storage.Store) storage.Store
}

// Server is a Tandem server: an http.Handler for the REST API, the
// WebSockets, the change feed and the browser client, over its documents.
// Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	st    *opened
	store storage.Store // st.store, wrapped (Config.WrapStore)
	mgr   *collab.Manager
	web   *web.Server
	feed  *feed.Reader // nil: the store keeps no change log
	obs   *promObserver

	requests sync.WaitGroup // HTTP requests in progress
	closing  atomic.Bool
	stop     context.CancelFunc // ends the background loops
	loops    sync.WaitGroup

	shutOnce sync.Once
	shutErr  error
}

// New opens the storage and starts a Server. Shut it down with Shutdown.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Storage == nil {
		return nil, errors.New("tandem: Config.Storage is required (Badger{Dir: ...}, Memory{}, ...)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ChangesRetain == 0 {
		cfg.ChangesRetain = 7 * 24 * time.Hour
	}
	if cfg.ClientRate <= 0 {
		cfg.ClientRate = 200
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	var auth *web.Verifier
	if len(cfg.AuthSecrets) > 0 || len(cfg.AuthPublicKey) > 0 {
		if auth, err = web.NewVerifier(cfg.AuthSecrets, cfg.AuthPublicKey); err != nil {
			return nil, fmt.Errorf("tandem: auth: %w", err)
		}
	}
	webhooks, err := checkWebhooks(cfg.Webhooks)
	if err != nil {
		return nil, err
	}

	var mgr atomic.Pointer[collab.Manager] // for the disk guard's callback
	s.st, err = cfg.Storage.open(ctx, cfg.Logger, func(err error) {
		if m := mgr.Load(); m != nil {
			m.SetWritable(err)
		}
	})
	if err != nil {
		return nil, err
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	defer func() {
		if err != nil {
			stop()
			s.loops.Wait()
			s.st.close()
		}
	}()
	s.store = s.st.store
	if cfg.WrapStore != nil {
		s.store = cfg.WrapStore(s.store)
	}
	s.feed = feed.NewReader(s.st.store)

	s.obs = newPromObserver()
	ccfg := collab.Config{
		SnapshotEvery: cfg.SnapshotEvery,
		IdleTimeout:   cfg.IdleTimeout,
		Logger:        cfg.Logger,
		Observer:      s.obs,
		CommitLinger:  orDefault(cfg.CommitLinger, 200*time.Microsecond),
		FanOutPace:    orDefault(cfg.FanOutPace, 25*time.Microsecond),
		RatePerSecond: cfg.ClientRate,
		RateBurst:     2 * cfg.ClientRate,
		Broker:        s.st.broker,
		Presence:      s.st.presence,
		CheckOp:       cfg.Hooks.CheckOp,
	}
	if cfg.Tune != nil {
		cfg.Tune(&ccfg)
	}
	s.mgr = collab.NewManager(s.store, ccfg)
	mgr.Store(s.mgr)
	if g := s.st.guard; g != nil {
		s.mgr.SetWritable(g.Writable())
		s.goLoop(func() { g.Run(loopCtx) })
	}
	s.web = web.New(web.Config{Store: s.store, Manager: s.mgr, Logger: cfg.Logger, AllowedOrigins: cfg.AllowedOrigins,
		AdminToken: cfg.AdminToken, AllowedHosts: cfg.AllowedHosts, LoopbackOnly: cfg.LoopbackOnly, TrustedProxies: cfg.TrustedProxies,
		Auth: auth, Authenticate: cfg.Hooks.Authenticate, Authorize: cfg.Hooks.Authorize, Changes: s.feed,
		Metrics: cfg.MetricsHandler, OnError: s.obs.HTTPError, NoDemo: !cfg.Demo,
		LimitLoopback: cfg.LimitLoopback, MaxWebSocketsPerAddr: cfg.MaxWebSocketsPerAddr})

	if cfg.Hooks.OnChange != nil || len(webhooks) > 0 {
		if s.feed == nil {
			return nil, errors.New("tandem: OnChange and Webhooks need a store that keeps a change log")
		}
	}
	if cfg.Hooks.OnChange != nil {
		if err := s.startChangeHook(loopCtx); err != nil {
			return nil, err
		}
	}
	for _, w := range webhooks {
		d, err := newDeliverer(loopCtx, w, s.feed, cfg.Logger, s.obs)
		if err != nil {
			return nil, err
		}
		s.goLoop(func() { d.run(loopCtx) })
	}
	if cfg.Metrics != nil {
		if err := s.registerMetrics(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	if cfg.Retain > 0 {
		s.goLoop(func() { retainLoop(loopCtx, cfg.Logger, s.st.store, cfg.Retain) })
	}
	if h, ok := s.feed.Log().(storage.HistoryBound); cfg.ChangesRetain > 0 && s.feed != nil && !(ok && h.BoundByHistory()) {
		s.goLoop(func() { trimLoop(loopCtx, cfg.Logger, s.feed.Log(), cfg.ChangesRetain) })
	}
	return s, nil
}

// ServeHTTP serves the REST API (/api/...), the WebSockets
// (/api/docs/{id}/ws), the change feed (/api/changes), the health checks
// (/healthz, /readyz), the browser client (/js/...) and, with Demo, the
// demo's pages. Once Shutdown has begun it answers 503.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	defer s.requests.Done()
	if s.closing.Load() && r.URL.Path != "/healthz" {
		w.Header().Set("Retry-After", "5")
		http.Error(w, `{"code":"internal","message":"shutting down"}`, http.StatusServiceUnavailable)
		return
	}
	s.web.ServeHTTP(w, r)
}

// Shutdown stops the server gracefully: /readyz starts failing, new
// WebSockets are refused, the change feed's streams end, every document
// finishes its commits and closes its WebSockets with "going away" (the
// clients reconnect elsewhere, or here after a restart, and lose nothing),
// the requests in progress finish, the hooks and webhooks stop (their
// positions saved), and the storage closes. If ctx ends first, what is
// left is cut short. Later calls return the first one's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { s.shutErr = s.shutdown(ctx) })
	return s.shutErr
}

// Close is Shutdown with 15 seconds to finish.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

func (s *Server) shutdown(ctx context.Context) error {
	s.web.Drain()
	if err := s.mgr.Close(ctx); err != nil {
		s.log.Error("close documents", "err", err)
	}
	// Let the close frames reach the clients before the connections go.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	s.web.Close(wctx)
	cancel()
	s.closing.Store(true)
	waited := make(chan struct{})
	go func() { s.requests.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		s.log.Warn("shutdown: requests still in progress")
	}
	s.stop()
	s.loops.Wait()
	if err := s.st.close(); err != nil {
		return fmt.Errorf("close storage: %w", err)
	}
	return nil
}

// Drain makes /readyz fail and refuses new WebSockets, ahead of Shutdown
// (a load balancer stops sending traffic first).
func (s *Server) Drain() { s.web.Drain() }

// WebSockets returns the number of WebSockets open.
func (s *Server) WebSockets() int { return s.web.WebSockets() }

// ShedIdle closes up to n WebSockets whose clients have sent nothing for
// idleFor, the longest idle first (code 1013: try again later), and
// returns how many: a server at its connection limit makes room.
func (s *Server) ShedIdle(n int, idleFor time.Duration) int { return s.web.ShedIdle(n, idleFor) }

// Store returns the store the server's documents live in (to read them
// directly; write through the REST API or a client, which keep the open
// documents in step).
func (s *Server) Store() storage.Store { return s.store }

// Manager returns the collaboration core's document manager (for tests
// and tools that look inside).
func (s *Server) Manager() *collab.Manager { return s.mgr }

// DataDir returns the Badger data directory ("" for other storage).
func (s *Server) DataDir() string { return s.st.dir }

func (s *Server) goLoop(f func()) {
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		f()
	}()
}

// orDefault is d, def when d is 0, and 0 (never wait) when d is negative.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func retainLoop(ctx context.Context, log *slog.Logger, store storage.Store, keep int64) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := storage.Retain(ctx, store, keep); err != nil && ctx.Err() == nil {
			log.Error("history retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func trimLoop(ctx context.Context, log *slog.Logger, cl storage.ChangeLog, keep time.Duration) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if _, err := cl.Trim(ctx, time.Now().Add(-keep)); err != nil && ctx.Err() == nil {
			log.Error("change feed retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// NewDocument is a document to create (Server.CreateDocument).
type NewDocument struct {
	// ID: 1 to 128 letters, digits, '-', '_' and '.'; the application's
	// own (a record's id), which the REST API does not let clients pick.
	ID    string
	Title string
	// Type is "plain" (the default) or "rich".
	Type string
	// Content is a plain document's text, or a rich document's Delta
	// (JSON, inserts only).
	Content string
}

// CreateDocument creates a document at revision 0. It fails with an error
// wrapping storage.ErrExists if the id is taken, storage.ErrInvalid if the
// id, type or content is not valid.
func (s *Server) CreateDocument(ctx context.Context, d NewDocument) error {
	typ := d.Type
	if typ == "" {
		typ = "plain"
	}
	if err := s.mgr.Writable(); err != nil {
		return err
	}
	return s.store.CreateDocument(ctx, storage.Document{ID: d.ID, Title: d.Title, Type: typ, Created: time.Now()}, d.Content)
}

// RenameDocument changes a document's title, and tells everyone in it.
func (s *Server) RenameDocument(ctx context.Context, id, title string) error {
	return s.mgr.Rename(ctx, id, title)
}

// DeleteDocument deletes a document with its history; its connections
// are closed (code 4004, not found).
func (s *Server) DeleteDocument(ctx context.Context, id string) error {
	if err := s.mgr.Writable(); err != nil {
		return err
	}
	s.mgr.DocumentDeleted(ctx, id)
	if err := s.store.DeleteDocument(ctx, id); err != nil {
		return err
	}
	s.mgr.Deleted(id)
	return nil
}
