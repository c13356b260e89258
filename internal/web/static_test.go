package web_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/internal/collab"
)

// The demo page and the client modules are embedded and served with
// sensible types and cache headers.
func TestStaticFiles(t *testing.T) {
	ts := newTestServer(t, collab.Config{})
	get := func(method, path string, header map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, c := range []struct {
		path, ctype, cache, contains string
	}{
		{"/", "text/html; charset=utf-8", "no-cache", `<script type="module" src="/js/demo.js">`},
		{"/d/6f1c2d3e-0000-4000-8000-000000000000", "text/html; charset=utf-8", "no-cache", `id="editor"`},
		{"/js/demo.js", "text/javascript; charset=utf-8", "public, max-age=60", "bindTextarea"},
		{"/js/client.js", "text/javascript; charset=utf-8", "public, max-age=60", "export function connect"},
		{"/js/textarea.js", "text/javascript; charset=utf-8", "public, max-age=60", "export function bindTextarea"},
		{"/js/ot.js", "text/javascript; charset=utf-8", "public, max-age=60", "export"},
		{"/js/unicode.js", "text/javascript; charset=utf-8", "public, max-age=60", "export"},
		{"/css/demo.css", "text/css; charset=utf-8", "public, max-age=60", ".editor"},
	} {
		resp, body := get(http.MethodGet, c.path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.ctype ||
			resp.Header.Get("Cache-Control") != c.cache || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"),
				resp.Header.Get("Cache-Control"), c.contains, strings.Contains(body, c.contains))
			continue
		}
		if public := !strings.HasPrefix(c.ctype, "text/html"); public != (resp.Header.Get("Access-Control-Allow-Origin") == "*") {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q", c.path, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", c.path)
			continue
		}
		if resp, body := get(http.MethodGet, c.path, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s If-None-Match %s: %d, %d bytes", c.path, etag, resp.StatusCode, len(body))
		}
		if resp, body := get(http.MethodHead, c.path, nil); resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("HEAD %s: %d %q, %d bytes", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	if resp, _ := get(http.MethodGet, "/", nil); !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("the page has no Content-Security-Policy: %q", resp.Header.Get("Content-Security-Policy"))
	}
	for _, p := range []string{"/js/nope.js", "/js/", "/css/../index.html", "/d/", "/d/a/b", "/static/index.html"} {
		if resp, _ := get(http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestNotFoundPage: a page address that names nothing gets an HTML page
// (404) for browsers, JSON for everyone else and for the API.
func TestNotFoundPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	for _, tc := range []struct {
		path, accept string
		html         bool
	}{
		{"/docs", "text/html,application/xhtml+xml", true},
		{"/d/not%20an%20id", "text/html", true},
		{"/d/" + strings.Repeat("x", 200), "text/html", true},
		{"/docs", "application/json", false},
		{"/api/nothing", "text/html", false},
		{"/js/missing.js", "text/html", false},
	} {
		req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
		req.Header.Set("Accept", tc.accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		isHTML := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html")
		if resp.StatusCode != http.StatusNotFound || isHTML != tc.html {
			t.Errorf("GET %s (Accept %s): %d %s, want 404 and html=%v", tc.path, tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), tc.html)
		}
		if tc.html && (!strings.Contains(string(body), "nothing at this address") || resp.Header.Get("Content-Security-Policy") == "") {
			t.Errorf("GET %s: the page %q, CSP %q", tc.path, body, resp.Header.Get("Content-Security-Policy"))
		}
	}
}

// TestVendoredBundles: the vendored bundles are what scripts/vendor/build.sh
// wrote (their SHA-256 in VERSIONS.txt), not hand-edited copies, and they
// are served as modules.
func TestVendoredBundles(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	get := func(path string) ([]byte, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return body, resp.Header.Get("Content-Type")
	}
	versions, _ := get("/js/vendor/VERSIONS.txt")
	sums := 0
	for line := range strings.Lines(string(versions)) {
		sum, name, ok := strings.Cut(strings.TrimSpace(line), "  ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		body, ctype := get("/js/vendor/" + name)
		if got := fmt.Sprintf("%x", sha256.Sum256(body)); got != sum {
			t.Errorf("%s: sha256 %s, VERSIONS.txt says %s: rebuild with scripts/vendor/build.sh", name, got, sum)
		}
		want := "text/javascript"
		if strings.HasSuffix(name, ".css") {
			want = "text/css"
		}
		if !strings.HasPrefix(ctype, want) {
			t.Errorf("%s served as %q", name, ctype)
		}
		sums++
	}
	if sums != 4 {
		t.Fatalf("VERSIONS.txt lists %d bundles, want codemirror.js, preview.js, quill.js and quill.css", sums)
	}
}

// TestAssetsGzipped: a client that takes gzip gets the big modules
// compressed (with their own ETag), one that does not gets them plain.
func TestAssetsGzipped(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, collab.Config{})
	fetch := func(enc, etag string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", ts.URL+"/js/vendor/codemirror.js", nil)
		req.Header.Set("Accept-Encoding", enc) // set by hand: net/http does not decompress then
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	plainResp, plain := fetch("identity", "")
	gzResp, gz := fetch("gzip, deflate, br", "")
	if plainResp.Header.Get("Content-Encoding") != "" || gzResp.Header.Get("Content-Encoding") != "gzip" || len(gz) >= len(plain)/2 {
		t.Fatalf("plain %q %d bytes, gzip %q %d bytes", plainResp.Header.Get("Content-Encoding"), len(plain), gzResp.Header.Get("Content-Encoding"), len(gz))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if !bytes.Equal(unzipped, plain) || gzResp.Header.Get("ETag") == plainResp.Header.Get("ETag") || gzResp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip body differs (%v) or shares the ETag %q / Vary %q", !bytes.Equal(unzipped, plain), gzResp.Header.Get("ETag"), gzResp.Header.Get("Vary"))
	}
	if r, _ := fetch("gzip", gzResp.Header.Get("ETag")); r.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %d", r.StatusCode)
	}
}

// TestServiceWorkerShell: the service worker keeps every module and style
// sheet of the demo, so that the editor of either type opens offline on a
// browser that never loaded it online.
func TestServiceWorkerShell(t *testing.T) {
	t.Parallel()
	sw, err := os.ReadFile("static/sw.js")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(sw), "const SHELL = [")
	end := strings.Index(string(sw)[start:], "]")
	shell := map[string]bool{}
	for _, m := range regexp.MustCompile(`'([^']+)'`).FindAllStringSubmatch(string(sw)[start:start+end], -1) {
		shell[m[1]] = true
	}
	var want []string
	for _, pattern := range []string{"static/js/*.js", "static/js/vendor/*.js", "static/js/vendor/*.css", "static/css/*.css"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			want = append(want, strings.TrimPrefix(f, "static"))
		}
	}
	if len(want) < 15 {
		t.Fatalf("found only %v", want)
	}
	for _, f := range want {
		if !shell[f] {
			t.Errorf("%s is not in sw.js's SHELL: the editor may not open offline", f)
		}
	}
}
