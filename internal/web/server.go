package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/olahol/melody"
	"golang.org/x/time/rate"

	"github.com/tandemdocs/tandem/feed"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// Config configures the HTTP server.
type Config struct {
	Store   storage.Store
	Manager *collab.Manager
	Logger  *slog.Logger
	// AllowedOrigins lists the Origins (scheme://host[:port]) allowed to
	// open WebSockets besides the server's own host; "*" allows any.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// MaxMessageBytes bounds one client frame (1 MiB).
	MaxMessageBytes int64
	// PingPeriod and PongWait: a connection that does not answer pings for
	// PongWait is dropped and its cursor disappears (5s, 12s).
	PingPeriod, PongWait time.Duration
	// AllowedHosts are the Host headers the server answers (host or
	// host:port); requests for any other get 421, which defeats DNS
	// rebinding. Empty: loopback names only (localhost, 127.0.0.0/8, ::1)
	// when LoopbackOnly, any host otherwise. "/healthz" answers any host.
	AllowedHosts []string
	// LoopbackOnly: the server listens on loopback only.
	LoopbackOnly bool
	// MaxDocBytes bounds a document created over REST, as edits do (8 MiB).
	MaxDocBytes int
	// Auth, if set, checks the tokens every request needs (see auth.go);
	// without it the server runs in open mode: everyone may read and
	// write, and only the admin token deletes.
	Auth *Verifier
	// Authenticate and Authorize, if set, let the host application's own
	// login say who makes a request and what they may do (see their
	// types); they work beside Auth or without it.
	Authenticate AuthenticateFunc
	Authorize    AuthorizeFunc
	// NoDemo leaves out the demo's pages (/, /d/{id}, its styles and
	// service worker); the browser client's modules (/js/...) are served
	// either way.
	NoDemo bool
	// Changes, if set, serves the change feed at GET /api/changes.
	Changes *feed.Reader
	// RequestsPerSecond and RequestBurst limit each IP address's REST
	// requests (50, 100; the WebSocket's messages have their own budget).
	// CreatesPerMinute limits the documents one user (one IP in open
	// mode) creates (60, burst 20).
	RequestsPerSecond float64
	RequestBurst      int
	CreatesPerMinute  float64
	// TrustedProxies are the reverse proxies whose X-Forwarded-For the
	// server believes (the client's address for rate limits and logs);
	// without them it is ignored: anyone can send it.
	TrustedProxies []*net.IPNet
	// MaxWebSocketsPerAddr bounds the WebSockets one client address holds
	// open (0: no bound). It is the per-address connection cap for clients
	// behind TrustedProxies, whose connections all come from the proxy.
	MaxWebSocketsPerAddr int
	// LimitLoopback applies the per-address limits to loopback peers too.
	// By default they are exempt: local tools and health checks, and a
	// reverse proxy on this machine, behind which every client would share
	// one address.
	LimitLoopback bool
	// Metrics, if set, is served at GET /metrics (Prometheus), to admins
	// (like /api/admin), unless MetricsPublic: the caller serves it on an
	// address of its own (--metrics-addr).
	Metrics       http.Handler
	MetricsPublic bool
	// OnError, if set, is told of every error response (for metrics).
	OnError func(status int, code string)
	// AdminToken, if set, is a bearer token that may do anything: the
	// admin endpoints (/api/admin/..., /metrics) and deleting documents.
	// Without it only a user token with the admin role on every document
	// does (with Auth); in open mode they are closed. The address a
	// request comes from never counts (admin.go).
	AdminToken string
}

// Server is Tandem's HTTP and WebSocket front end.
type Server struct {
	cfg       Config
	echo      *echo.Echo
	ws        *melody.Melody
	log       *slog.Logger
	draining  atomic.Bool
	drained   chan struct{} // closed by Drain
	drainOnce sync.Once
	// warnedForwarded: the warning about forwarding headers without
	// TrustedProxies was logged (once).
	warnedForwarded atomic.Bool
	// backingUp: an admin backup is streaming (one at a time).
	backingUp atomic.Bool
	creations *middleware.RateLimiterMemoryStore // documents created, per user
	wsPerAddr *perAddr                           // WebSockets open, per client address
	notFound  *asset                             // the HTML page for a page address that names nothing
}

// New builds the server's routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	positive(&cfg.MaxMessageBytes, 1<<20)
	positive(&cfg.MaxDocBytes, 8<<20)
	positive(&cfg.RequestsPerSecond, 50)
	positive(&cfg.RequestBurst, 100)
	positive(&cfg.CreatesPerMinute, 60)
	positive(&cfg.PingPeriod, 5*time.Second)
	if cfg.PongWait <= cfg.PingPeriod {
		cfg.PongWait = cfg.PingPeriod*2 + 2*time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger, drained: make(chan struct{}), wsPerAddr: newPerAddr(cfg.MaxWebSocketsPerAddr), creations: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: rate.Limit(cfg.CreatesPerMinute / 60), Burst: 20,
		// Forgotten only once a full bucket would have refilled anyway.
		ExpiresIn: max(3*time.Minute, time.Duration(20/(cfg.CreatesPerMinute/60)*float64(time.Second))),
	})}

	m := melody.New()
	m.Config.MaxMessageSize = cfg.MaxMessageBytes
	// collab's outbox hands melody at most two frames at a time, and a
	// close may follow them (or a refused join's error and its close): a
	// deeper channel would only cost every connection memory (40 bytes a
	// slot; melody's default of 256 was 10 kB each).
	m.Config.MessageBufferSize = 4
	// A connection at rest holds no write buffer (gorilla takes one from
	// the pool for each frame) and a small read buffer: frames larger than
	// it are read through it, not into it. The HTTP handler returns once
	// the connection is hijacked (openWS), so net/http's own buffers go.
	m.Upgrader.ReadBufferSize = 512
	m.Upgrader.WriteBufferPool = &sync.Pool{}
	m.Config.PingPeriod = cfg.PingPeriod
	m.Config.PongWait = cfg.PongWait
	m.Config.ConcurrentMessageHandling = false // a client's ops must stay in order
	m.Upgrader.CheckOrigin = s.originAllowed
	m.HandleConnect(s.wsConnect)
	m.HandleMessage(s.wsMessage)
	m.HandleDisconnect(s.wsDisconnect)
	m.HandleError(s.wsError)
	m.HandleMessageBinary(s.wsBinary)
	m.HandleSentMessage(s.wsSent)
	s.ws = m

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect() // X-Forwarded-For is not trusted
	if len(cfg.TrustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.HTTPErrorHandler = s.httpError
	e.Use(middleware.Recover())
	e.Use(s.atCapacity)
	e.Use(s.requestID, middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		RequestIDHandler: func(c echo.Context, id string) { c.Set(keyLog, s.log.With("req", id)) },
	}))
	e.Use(s.requestLog)
	e.Use(s.checkHost)
	if len(cfg.AllowedOrigins) > 0 {
		// Pages on the allowed origins may use the REST API (the
		// WebSocket checks Origin itself).
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:     cfg.AllowedOrigins,
			AllowMethods:     []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete},
			AllowHeaders:     []string{"Authorization", "Content-Type"},
			AllowCredentials: true,
		}))
	}

	api := e.Group("/api")
	api.Use(bodyLimit(16 << 20))
	api.Use(bodyDeadline)
	// Per address (the socket's: X-Forwarded-For is not trusted), on top
	// of the connection limits of the listener.
	api.Use(middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool { return !cfg.LimitLoopback && isLoopback(c.RealIP()) },
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(cfg.RequestsPerSecond), Burst: cfg.RequestBurst, ExpiresIn: 3 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return c.RealIP(), nil },
		ErrorHandler: func(c echo.Context, err error) error {
			return errorf(http.StatusForbidden, collab.CodeForbidden, "cannot tell who is asking")
		},
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			return errorf(http.StatusTooManyRequests, collab.CodeRateLimited, "too many requests from this address: slow down")
		},
	}))
	api.Use(s.noCrossSiteWrites)
	routes(api, "/docs", map[string]echo.HandlerFunc{http.MethodGet: s.listDocs, http.MethodPost: s.createDoc})
	routes(api, "/docs/:id", map[string]echo.HandlerFunc{http.MethodGet: s.getDoc, http.MethodPatch: s.patchDoc, http.MethodDelete: s.deleteDoc})
	routes(api, "/docs/:id/text", map[string]echo.HandlerFunc{http.MethodGet: s.getText})
	routes(api, "/docs/:id/ops", map[string]echo.HandlerFunc{http.MethodGet: s.getOps})
	routes(api, "/docs/:id/export", map[string]echo.HandlerFunc{http.MethodGet: s.exportDoc})
	routes(api, "/docs/:id/ws", map[string]echo.HandlerFunc{http.MethodGet: s.openWS})
	routes(api, "/changes", map[string]echo.HandlerFunc{http.MethodGet: s.getChanges})
	admin := api.Group("/admin", s.adminOnly)
	routes(admin, "/backup", map[string]echo.HandlerFunc{http.MethodGet: s.adminBackup})
	// Go's profiler, for the admin role only.
	admin.GET("/debug/pprof/*", echo.WrapHandler(http.HandlerFunc(pprofIndex)))
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.ready)
	if cfg.Metrics != nil && !cfg.MetricsPublic {
		// Guarded like the admin endpoints (admin token or role, or this
		// machine), unless served on their own address (MetricsPublic).
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics), s.adminOnly)
	}
	s.mountStatic(e) // "/", "/d/:id", "/js/*", "/css/*": static.go
	s.echo = e
	return s
}

// routes registers a path's handlers, and answers its other methods with
// 405 and an Allow header. (echo would answer 404: a group with middleware
// catches every path under it.)
func routes(g *echo.Group, path string, handlers map[string]echo.HandlerFunc) {
	allowed := make([]string, 0, len(handlers)+1)
	for m, h := range handlers {
		g.Add(m, path, h)
		allowed = append(allowed, m)
	}
	if handlers[http.MethodGet] != nil {
		g.Add(http.MethodHead, path, handlers[http.MethodGet])
		allowed = append(allowed, http.MethodHead)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	refuse := func(c echo.Context) error {
		c.Response().Header().Set("Allow", allow)
		return errorf(http.StatusMethodNotAllowed, "method_not_allowed", c.Request().Method+" is not allowed here; allowed: "+allow)
	}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if handlers[m] == nil {
			g.Add(m, path, refuse)
		}
	}
}

// WebSockets returns the number of WebSocket connections open.
func (s *Server) WebSockets() int { return s.ws.Len() }

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Drain makes /readyz fail, refuses new WebSockets and ends the change
// feed's streams and long polls, ahead of shutdown.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		s.draining.Store(true)
		close(s.drained)
	})
}

// Close waits until every WebSocket session has ended (the manager closes
// them, after their last frames) or ctx is done, then closes whatever is
// left.
func (s *Server) Close(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.ws.Len() > 0 {
		select {
		case <-ctx.Done():
			return s.ws.Close()
		case <-t.C:
		}
	}
	return s.ws.Close()
}

// positive sets *p to def unless it is positive already: a zero field of
// Config takes its default.
func positive[T int | int64 | float64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// codeServerFull: the server is at its connection limit (503).
const codeServerFull = "server_full"

// atCapacity answers at once, with 503 and Retry-After, the requests of a
// connection that came past the listener's limit (ConnContext), so that a
// client learns the server is full instead of waiting unanswered; health
// checks, metrics and the admin endpoints are still served (the
// listener's headroom is for them). The connection is closed after the
// answer.
func (s *Server) atCapacity(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !overCap(r.Context()) {
			return next(c)
		}
		c.Response().Header().Set("Connection", "close")
		switch p := r.URL.Path; {
		case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/api/admin/"):
			return next(c)
		}
		c.Response().Header().Set("Retry-After", "5")
		return errorf(http.StatusServiceUnavailable, codeServerFull, "the server is at its connection limit: try again in a few seconds")
	}
}

// checkHost answers only the configured hosts (421 Misdirected Request
// otherwise): a page on evil.example whose name an attacker rebinds to this
// server's address sends "Host: evil.example", and is refused.
func (s *Server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.URL.Path == "/healthz" || s.hostAllowed(r.Host) {
			return next(c)
		}
		return errorf(http.StatusMisdirectedRequest, collab.CodeForbidden, "this server does not answer for host "+r.Host+" (see --public-url)")
	}
}

func (s *Server) hostAllowed(host string) bool {
	if len(s.cfg.AllowedHosts) == 0 {
		return !s.cfg.LoopbackOnly || isLoopbackName(host)
	}
	name := hostName(host)
	for _, h := range s.cfg.AllowedHosts {
		if strings.EqualFold(h, host) || strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// hostName is host without its port.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

func isLoopbackName(host string) bool {
	name := hostName(host)
	if strings.EqualFold(name, "localhost") || strings.HasSuffix(strings.ToLower(name), ".localhost") {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}

// noCrossSiteWrites refuses state-changing requests that a page on another
// site could make without a CORS preflight: a form or a fetch with a
// "simple" Content-Type (text/plain, form encodings) and no credentials
// header. Writes need "Content-Type: application/json" or an Authorization
// header, which no cross-site page can send unless CORS allows it.
func (s *Server) noCrossSiteWrites(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		// POST is the only state-changing method a cross-site page can
		// send without a preflight.
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "" || isJSON(r.Header.Get("Content-Type")) {
			return next(c)
		}
		return errorf(http.StatusUnsupportedMediaType, collab.CodeBadMessage, "send Content-Type: application/json (or an Authorization header)")
	}
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// originAllowed implements the WebSocket Origin check: melody's default
// accepts every origin, which lets any web page act for a visitor
// (cross-site WebSocket hijacking).
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// requestID keeps an X-Request-Id from a proxy in front (to follow a
// request through both logs) if it looks like one, and drops it otherwise:
// the request-id middleware then makes one. Every response carries it.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !plainID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func plainID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// logger is the request's logger: the server's, with the request id.
func (s *Server) logger(c echo.Context) *slog.Logger {
	if l, ok := c.Get(keyLog).(*slog.Logger); ok {
		return l
	}
	return s.log
}

// requestLog logs every request at debug level: the path (never the query,
// which may hold a token), the status, the time taken. Nothing of a
// document's text or of a token is ever logged.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if len(s.cfg.TrustedProxies) == 0 && forwarded(c.Request()) && !s.warnedForwarded.Swap(true) {
			s.log.Warn("a request came through a proxy (it has forwarding headers) but --trusted-proxies is not set: "+
				"the per-address limits count the proxy's address, which all its clients share; name the proxy with --trusted-proxies",
				"peer", c.Request().RemoteAddr)
		}
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		s.logger(c).Debug("http", "method", c.Request().Method, "path", c.Request().URL.Path, "ip", c.RealIP(),
			"status", c.Response().Status, "bytes", c.Response().Size, "dur", time.Since(start))
		return nil
	}
}

// pprofIndex serves net/http/pprof under /api/admin/debug/pprof/.
func pprofIndex(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/api/admin/debug/pprof/")
	switch name {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "":
		pprof.Index(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}

// bodyDeadline gives a request with a body a minute to send it: a client
// that trickles a body keeps no connection forever. (http.Server's
// ReadTimeout would also cut long responses and WebSockets.)
// bodyLimit refuses a body larger than n bytes with 413: at once when its
// Content-Length says so, or when a chunked one passes n as it is read
// (readJSON).
func bodyLimit(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > n {
				return errorf(http.StatusRequestEntityTooLarge, collab.CodeTooLarge, fmt.Sprintf("the body is %d bytes, at most %d", r.ContentLength, n))
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(c.Response(), r.Body, n)
			}
			return next(c)
		}
	}
}

func bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r := c.Request(); r.ContentLength != 0 && r.Method != http.MethodGet {
			http.NewResponseController(c.Response().Writer).SetReadDeadline(time.Now().Add(time.Minute))
		}
		return next(c)
	}
}

// errAborted: the client closed the connection before its request was
// read.
var errAborted = errors.New("web: request aborted by the client")

// apiError is an error response: {"error": {"code", "message"}}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		code := collab.CodeBadMessage
		switch he.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			code = collab.CodeNotFound
		case http.StatusRequestEntityTooLarge:
			code = collab.CodeTooLarge
		case http.StatusTooManyRequests:
			code = collab.CodeRateLimited
		case http.StatusForbidden:
			code = collab.CodeForbidden
		}
		if he.Code >= 500 {
			code = collab.CodeInternal
		}
		ae = errorf(he.Code, code, http.StatusText(he.Code))
	case errors.Is(err, storage.ErrNotFound):
		ae = errorf(http.StatusNotFound, collab.CodeNotFound, err.Error())
	case errors.Is(err, storage.ErrCompacted):
		ae = errorf(http.StatusGone, collab.CodeRevTooOld, err.Error())
	case errors.Is(err, storage.ErrInvalid):
		ae = errorf(http.StatusBadRequest, collab.CodeBadMessage, err.Error())
	case errors.Is(err, storage.ErrNoSpace):
		ae = errorf(http.StatusInsufficientStorage, collab.CodeStorageFull, err.Error())
	case errors.Is(err, errAborted) || errors.Is(err, context.Canceled):
		// The client went away: nobody reads the answer, and nothing
		// failed here.
		s.logger(c).Debug("request aborted by the client", "path", c.Request().URL.Path, "err", err)
		ae = errorf(http.StatusBadRequest, collab.CodeBadMessage, "request aborted")
	default:
		s.logger(c).Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		ae = errorf(http.StatusInternalServerError, collab.CodeInternal, "internal error")
	}
	if s.cfg.OnError != nil {
		s.cfg.OnError(ae.status, ae.code)
	}
	if ae.status == http.StatusNotFound && s.notFound != nil && isPage(c.Request()) {
		// A person followed a bad link: a page, not the API's JSON.
		servePage(c, http.StatusNotFound, s.notFound)
		return
	}
	c.JSON(ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

func (s *Server) ready(c echo.Context) error {
	if s.draining.Load() {
		return errorf(http.StatusServiceUnavailable, collab.CodeInternal, "shutting down")
	}
	if err := s.cfg.Manager.Writable(); err != nil {
		// Not ready for writes: a load balancer should send editors
		// elsewhere (reads still work here).
		return errorf(http.StatusServiceUnavailable, collab.CodeStorageFull, "not taking edits: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if _, _, err := s.cfg.Store.ListDocuments(ctx, storage.ListOptions{Limit: 1}); err != nil {
		return errorf(http.StatusServiceUnavailable, collab.CodeInternal, "storage unavailable: "+err.Error())
	}
	return c.String(http.StatusOK, "ready\n")
}

func queryInt(c echo.Context, name string, def int64) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, collab.CodeBadMessage, name+" must be an integer")
	}
	return n, nil
}
