package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem/storage"
)

// The browser client (docs/client.md) and the demo application, embedded in
// the binary: no build step, no CDN.
//
//go:embed static
var staticFiles embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	etag  string
	ctype string
	cache string
	gz    []byte // body gzipped, when that is smaller by a worthwhile margin
}

// loadAssets reads every embedded file once, with a content-hash ETag (the
// embedded files have no modification time for Last-Modified).
func loadAssets() map[string]*asset {
	out := map[string]*asset{}
	err := fs.WalkDir(staticFiles, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &asset{
			body: body,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		switch ext := path.Ext(p); ext {
		case ".js", ".mjs":
			// Browsers refuse modules served with another type.
			a.ctype = "text/javascript; charset=utf-8"
		case ".html":
			a.ctype = "text/html; charset=utf-8"
		case ".css":
			a.ctype = "text/css; charset=utf-8"
		default:
			a.ctype = mime.TypeByExtension(ext)
			if a.ctype == "" {
				a.ctype = "application/octet-stream"
			}
		}
		if strings.HasSuffix(p, ".html") || p == "static/sw.js" {
			// The page names its scripts without a version: revalidate it
			// every time so that a new binary's page is never stale.
			a.cache = "no-cache"
		} else {
			// Modules import each other: a short lifetime keeps a
			// deployment from mixing old and new modules for long; the
			// ETag makes revalidation cheap.
			a.cache = "public, max-age=60"
		}
		a.gz = gzipped(body)
		out[strings.TrimPrefix(p, "static")] = a
		return nil
	})
	if err != nil {
		panic("web: embedded static files: " + err.Error())
	}
	if out["/index.html"] == nil {
		panic("web: static/index.html is not embedded")
	}
	return out
}

// mountStatic serves the demo: "/" (the document list) and "/d/:id" (the
// editor) are the same page, routed in the browser by location.pathname;
// "/js/*" and "/css/*" are the modules and the style sheet.
func (s *Server) mountStatic(e *echo.Echo) {
	assets := loadAssets()
	s.notFound = assets["/notfound.html"]
	page := func(c echo.Context) error { return serveAsset(c, assets["/index.html"]) }
	editor := func(c echo.Context) error {
		if storage.CheckID(c.Param("id")) != nil {
			return echo.ErrNotFound
		}
		return page(c)
	}
	file := func(c echo.Context) error {
		// Only the exact, clean path of an asset: no "..", no "//".
		p := c.Request().URL.Path
		a := assets[p]
		if a == nil || path.Clean(p) != p {
			return echo.ErrNotFound
		}
		return serveAsset(c, a)
	}
	methods := []string{http.MethodGet, http.MethodHead}
	e.Match(methods, "/js/*", file)
	if s.cfg.NoDemo {
		return
	}
	e.Match(methods, "/", page)
	e.Match(methods, "/d/:id", editor)
	// The service worker's scope is the directory it is served from: the
	// root, so that it can open /d/{id} without the server.
	e.Match(methods, "/sw.js", file)
	e.Match(methods, "/css/*", file)
}

// gzipped compresses an asset once, at start: CodeMirror's bundle is 342
// kB, 114 kB gzipped. Nil when it would save less than a tenth.
func gzipped(body []byte) []byte {
	if len(body) < 1024 {
		return nil
	}
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(body)
	w.Close()
	if b.Len() > len(body)*9/10 {
		return nil
	}
	return b.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip.
func acceptsGzip(r *http.Request) bool {
	for e := range strings.SplitSeq(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(e), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// isPage tells a browser's page request (GET or HEAD of a page address,
// HTML acceptable) from API and asset requests.
func isPage(r *http.Request) bool {
	p := r.URL.Path
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		!strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/js/") && !strings.HasPrefix(p, "/css/") &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// servePage answers with an HTML page and a status of its own (no caching).
func servePage(c echo.Context, status int, a *asset) {
	pageHeaders(c.Response().Header())
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Blob(status, a.ctype, a.body)
}

// pageHeaders are the security headers of every HTML page.
func pageHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	// img-src https: for the images of formatted documents (embedded by
	// address); no script source beyond the page's own files.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "+
		"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
}

func serveAsset(c echo.Context, a *asset) error {
	h := c.Response().Header()
	h.Set("Cache-Control", a.cache)
	h.Set("X-Content-Type-Options", "nosniff")
	if !strings.HasPrefix(a.ctype, "text/html") {
		// Pages on other origins may import the client modules (module
		// scripts are fetched with CORS); they are public.
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		pageHeaders(h)
	}
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(c.Request()) {
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	if etagMatch(c.Request().Header.Get("If-None-Match"), etag) {
		h.Del("Content-Encoding")
		return c.NoContent(http.StatusNotModified)
	}
	if c.Request().Method == http.MethodHead {
		h.Set(echo.HeaderContentType, a.ctype)
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, a.ctype, body)
}

// etagMatch implements If-None-Match's weak comparison for our strong tags.
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
