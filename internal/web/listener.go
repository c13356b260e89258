package web

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// ConnLimits bound the TCP connections a listener lets through. Zero
// fields are unlimited.
type ConnLimits struct {
	// Total connections open at once. Past it a connection is still taken,
	// within Headroom more, and marked: its requests are answered at once
	// with 503 and Retry-After (Server.atCapacity), except health checks and
	// the admin's, and OnFull is told so that idle connections make room.
	// Past Total+Headroom a new connection is closed at once. Nothing waits
	// in the kernel's backlog, where a client would hang unanswered.
	Total int
	// Headroom (default: 64, or 5% of Total if more) is the room kept above
	// Total for health checks, the admin and the refusals themselves.
	Headroom int
	// OnFull, if set, is called (on a goroutine of its own, at most ten
	// times a second) when a connection arrives past Total: the server
	// closes idle connections then (Server.ShedIdle).
	OnFull func()
	// PerIP connections open at once from one address: past it, a new one
	// is closed at once.
	PerIP int
	// AttemptsPerSecond and AttemptBurst bound how fast one address may
	// open connections; past it, a new one is closed at once.
	AttemptsPerSecond float64
	AttemptBurst      int
	// ExemptLoopback leaves loopback peers out of the per-address limits
	// (a reverse proxy on this machine would otherwise put every client
	// behind one address).
	ExemptLoopback bool
	// Exempt are more addresses left out of the per-address limits: the
	// trusted reverse proxies, whose clients the HTTP layer tells apart
	// (Config.TrustedProxies, MaxWebSocketsPerAddr).
	Exempt []*net.IPNet
	// OnRefused, if set, is told of each connection closed by these
	// limits: reason "rate", "per_ip" or "total" (for metrics).
	OnRefused func(reason string)
}

// LimitListener applies lim to ln. Addresses are the connection's own
// (the peer's IP), never a forwarded header.
func LimitListener(ln net.Listener, lim ConnLimits, log *slog.Logger) net.Listener {
	if log == nil {
		log = slog.Default()
	}
	if lim.Total > 0 {
		if lim.Headroom <= 0 {
			lim.Headroom = max(64, lim.Total/20)
		}
		ln = &capListener{Listener: ln, lim: lim}
	}
	if lim.PerIP <= 0 && lim.AttemptsPerSecond <= 0 {
		return ln
	}
	l := &ipLimitListener{Listener: ln, lim: lim, log: log, open: newPerAddr(lim.PerIP)}
	if lim.AttemptsPerSecond > 0 {
		l.attempts = middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(lim.AttemptsPerSecond), Burst: max(1, lim.AttemptBurst)})
	}
	return l
}

// capListener counts the connections open, marks those past Total and
// closes those past Total+Headroom.
type capListener struct {
	net.Listener
	lim      ConnLimits
	open     atomic.Int64
	lastFull atomic.Int64 // unix nanoseconds of the last OnFull
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.open.Add(1)
		if n > int64(l.lim.Total) {
			if now := time.Now().UnixNano(); l.lim.OnFull != nil && now-l.lastFull.Load() > int64(100*time.Millisecond) {
				l.lastFull.Store(now)
				go l.lim.OnFull()
			}
		}
		if n > int64(l.lim.Total+l.lim.Headroom) {
			l.open.Add(-1)
			c.Close()
			if l.lim.OnRefused != nil {
				l.lim.OnRefused("total")
			}
			continue
		}
		return &capConn{Conn: c, over: n > int64(l.lim.Total), release: func() { l.open.Add(-1) }}, nil
	}
}

// capConn is a connection the capListener counts; over: it came past Total.
type capConn struct {
	net.Conn
	over    bool
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

type overCapKey struct{}

// ConnContext marks the context of a connection that came past the
// listener's Total (for http.Server.ConnContext): its requests get 503.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	for {
		switch cc := c.(type) {
		case *capConn:
			if cc.over {
				return context.WithValue(ctx, overCapKey{}, true)
			}
			return ctx
		case *ipConn:
			c = cc.Conn
		default:
			return ctx
		}
	}
}

func overCap(ctx context.Context) bool {
	v, _ := ctx.Value(overCapKey{}).(bool)
	return v
}

type ipLimitListener struct {
	net.Listener
	lim ConnLimits
	log *slog.Logger

	attempts *middleware.RateLimiterMemoryStore // per address
	open     *perAddr
}

// perAddr counts what each address holds open, up to max each.
type perAddr struct {
	max int // 0: no bound

	mu sync.Mutex
	n  map[string]int
}

func newPerAddr(max int) *perAddr { return &perAddr{max: max, n: map[string]int{}} }

// take counts one more for addr, or reports false at the bound.
func (p *perAddr) take(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.n[addr] >= p.max {
		return false
	}
	p.n[addr]++
	return true
}

// give releases one of addr's.
func (p *perAddr) give(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[addr]--; p.n[addr] <= 0 {
		delete(p.n, addr)
	}
}

func (l *ipLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := peerIP(c)
		if l.exempt(net.ParseIP(ip)) {
			return c, nil
		}
		if reason := l.admit(ip); reason != "" {
			l.log.Debug("connection refused", "ip", ip, "reason", reason)
			c.Close()
			if l.lim.OnRefused != nil {
				l.lim.OnRefused(reason)
			}
			continue
		}
		return &ipConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *ipLimitListener) exempt(ip net.IP) bool {
	if ip == nil {
		return false
	}
	if l.lim.ExemptLoopback && ip.IsLoopback() {
		return true
	}
	for _, n := range l.lim.Exempt {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// admit counts a new connection from ip, or says why not: "rate" (too
// many attempts) or "per_ip" (too many open).
func (l *ipLimitListener) admit(ip string) string {
	if l.attempts != nil {
		if ok, _ := l.attempts.Allow(ip); !ok {
			return "rate"
		}
	}
	if !l.open.take(ip) {
		return "per_ip"
	}
	return ""
}

func (l *ipLimitListener) release(ip string) { l.open.give(ip) }

func peerIP(c net.Conn) string {
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		return host
	}
	return c.RemoteAddr().String()
}

// ipConn releases its address's slot once, when closed.
type ipConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *ipConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
