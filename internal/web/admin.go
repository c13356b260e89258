package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// Backuper is a store that can stream a consistent backup of itself while
// it serves (badgerstore.Store): every key version since a version, read at
// one timestamp, ending with a trailer; it returns the version to pass as
// since next time.
type Backuper interface {
	Backup(ctx context.Context, w io.Writer, since uint64) (next uint64, err error)
}

// Headers of GET /api/admin/backup.
const (
	// HeaderDocuments is the number of documents when the backup started
	// (for progress reports: the stream itself carries no count).
	HeaderDocuments = "Tandem-Documents"
	// HeaderSince echoes the version the backup starts from (0: full).
	HeaderSince = "Tandem-Since"
	// HeaderNextVersion is an HTTP trailer: the version to pass as since to
	// the next, incremental, backup. It is known only once the stream has
	// ended; the backup file's own trailer frame holds it too.
	HeaderNextVersion = "Tandem-Next-Version"
)

// codeUnauthorized: an admin request without the right bearer token.
const codeUnauthorized = "unauthorized"

// adminOnly guards the admin endpoints: a request must carry the server's
// admin token ("Authorization: Bearer <token>"), or a user token with the
// admin role on every document. Nothing is granted for the address a
// request comes from: a reverse proxy on the same machine makes every
// request loopback, with or without forwarding headers.
func (s *Server) adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.who(c)
		if err == nil && p.role("*") >= RoleAdmin {
			return next(c)
		}
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tandem admin"`)
		if s.cfg.AdminToken == "" && s.cfg.Auth == nil {
			return errorf(http.StatusUnauthorized, codeUnauthorized,
				"this server has no admin token: admin endpoints are closed (start it with --admin-token)")
		}
		return errorf(http.StatusUnauthorized, codeUnauthorized,
			"admin endpoints need the server's admin token (Authorization: Bearer <token>; tandem serve writes it to <data-dir>/admin-token when --admin-token is not given) or a token with the admin role on every document")
	}
}

// tokenMatches compares in constant time (of hashes, so the token's length
// does not leak either).
func tokenMatches(header, token string) bool {
	scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	a := sha256.Sum256([]byte(strings.TrimSpace(got)))
	b := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// isLoopback reports whether an address (host or host:port) is a loopback
// one. It decides which limits apply, never what a request may do.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// forwarded reports whether a request says it came through a proxy.
func forwarded(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// adminBackup streams a consistent backup of the live store:
// GET /api/admin/backup?since=V (0 or absent: full). The body is the backup
// file; the next version comes as the HTTP trailer Tandem-Next-Version (and
// in the file's trailer frame). A backup that fails mid-stream aborts the
// connection, so that the client never takes a partial stream for a whole
// one. One backup runs at a time.
func (s *Server) adminBackup(c echo.Context) error {
	b, ok := s.cfg.Store.(Backuper)
	if !ok {
		return errorf(http.StatusNotImplemented, collab.CodeInternal, "this server's store cannot stream backups")
	}
	var since uint64
	if v := c.QueryParam("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, "since must be a version: a non-negative integer, as printed by the previous backup")
		}
		since = n
	}
	if f, ok := b.(interface{ FullBackupsOnly() bool }); ok && f.FullBackupsOnly() && since != 0 {
		return errorf(http.StatusNotImplemented, collab.CodeBadMessage, "this server is a cluster node: its backups are full, leave out since")
	}
	if s.draining.Load() {
		return errorf(http.StatusServiceUnavailable, collab.CodeInternal, "shutting down")
	}
	if !s.backingUp.CompareAndSwap(false, true) {
		return errorf(http.StatusTooManyRequests, collab.CodeRateLimited, "a backup is already running: try again once it is done")
	}
	defer s.backingUp.Store(false)

	ctx := c.Request().Context()
	docs, err := storage.CountDocuments(ctx, s.cfg.Store)
	if err != nil {
		return err
	}
	start := time.Now()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEOctetStream)
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="tandem-%s.backup"`, start.UTC().Format("20060102T150405Z")))
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderDocuments, strconv.Itoa(docs))
	h.Set(HeaderSince, strconv.FormatUint(since, 10))
	h.Set("Trailer", HeaderNextVersion)
	c.Response().WriteHeader(http.StatusOK)
	c.Response().Flush()

	cw := &countingWriter{w: c.Response()}
	next, err := b.Backup(ctx, cw, since)
	if err != nil {
		s.logger(c).Error("backup failed", "since", since, "bytes", cw.n, "err", err)
		// Abort the connection instead of ending the chunked body cleanly.
		panic(http.ErrAbortHandler)
	}
	h.Set(HeaderNextVersion, strconv.FormatUint(next, 10))
	s.logger(c).Info("backup streamed", "since", since, "next", next, "documents", docs, "bytes", cw.n,
		"dur", time.Since(start).Round(time.Millisecond), "remote", c.Request().RemoteAddr)
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
