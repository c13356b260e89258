package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/backupfile"
)

const backupUsage = `usage: tandem backup --server URL --out FILE [--since V] [--token TOKEN]
       tandem backup --data-dir DIR --out FILE [--since V]
       tandem backup --nats URL --out FILE

Writes a consistent backup of every document: one cut, while the server
keeps serving (--server, through its admin endpoint), or of a stopped
server's data directory (--data-dir). --since V makes it incremental: what
changed since the backup that printed V. The last line on stdout is the
version to pass as --since next time. FILE appears only once it is whole.
Restore with 'tandem restore', read with 'tandem export' and 'tandem verify'.

--nats backs up a cluster's documents (docs/cluster.md), in the same
format: it restores into a single node, or into a cluster with 'tandem
restore --nats'. Each document is as of one revision; documents are read
one after another. Cluster backups are full (no --since): the documents are
copied into a temporary store in $TMPDIR first, which needs their size in
free space there. A cluster node's --server backup is the same.

The environment can set --server (TANDEM_SERVER), --data-dir
(TANDEM_DATA_DIR), --nats (TANDEM_NATS), --token (TANDEM_ADMIN_TOKEN) and
--token-file (TANDEM_ADMIN_TOKEN_FILE). An online backup needs the server's
admin token: --token, --token-file, or by default the admin-token file
'tandem serve' keeps in its data directory ($TANDEM_DATA_DIR, else ./data).
`

func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newToolFlags("backup", backupUsage, stderr)
	server := fs.String("server", "", "a running server's URL, e.g. http://localhost:8080 (online backup)")
	dataDir := fs.String("data-dir", "", "a stopped server's data directory (offline backup)")
	out := fs.String("out", "", "the backup file to write (required)")
	since := fs.Uint64("since", 0, "make an incremental backup of what changed since this version (printed by the previous backup); 0: full")
	token := fs.String("token", "", "the server's admin token (--admin-token of tandem serve)")
	tokenFile := fs.String("token-file", "", "a file holding the server's admin token (default, without --token: admin-token in $TANDEM_DATA_DIR or ./data, the one tandem serve makes in its data directory, if it is there)")
	force := fs.Bool("force", false, "replace --out if it exists (once the new backup is whole)")
	nf := addNATSFlags(fs)
	fs.fromEnv("server", "TANDEM_SERVER")
	fs.fromEnv("data-dir", "TANDEM_DATA_DIR")
	fs.fromEnv("token", "TANDEM_ADMIN_TOKEN")
	fs.fromEnv("token-file", "TANDEM_ADMIN_TOKEN_FILE")
	fs.exclusive = []string{"server", "data-dir", "nats"}
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("backup: unexpected arguments %q", fs.Args())
	}
	switch {
	case *out == "":
		return errors.New("backup: --out FILE is required")
	case countSet(*server, *dataDir, *nf.url) > 1:
		return errors.New("backup: give one of --server (online), --data-dir (offline) or --nats (a cluster) (TANDEM_SERVER, TANDEM_DATA_DIR and TANDEM_NATS count too)")
	case countSet(*server, *dataDir, *nf.url) == 0:
		return errors.New("backup: give --server URL (a running server), --data-dir DIR (a stopped one's data) or --nats URL (a cluster)")
	case *nf.url != "" && *since != 0:
		return errors.New("backup: a cluster's backups are full: leave out --since")
	}
	if fi, err := os.Stat(*out); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("backup: --out %s is a directory; give a file name", *out)
		}
		if !*force {
			return fmt.Errorf("backup: %s exists: choose another name, or --force to replace it", *out)
		}
	}

	f, err := createAtomic(*out, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.abort() // a no-op after commit
	start := time.Now()
	var res backupResult
	switch {
	case *server != "":
		tok := *token
		if tok == "" {
			if tok, err = adminTokenFrom(*tokenFile); err != nil {
				return fmt.Errorf("backup: %w (nothing written to %s)", err, *out)
			}
		}
		res, err = onlineBackup(ctx, *server, tok, *since, f, stderr)
	case *nf.url != "":
		res, err = natsBackup(ctx, nf, f, stderr)
	default:
		res, err = offlineBackup(ctx, *dataDir, *since, f, stderr)
	}
	if err != nil {
		return fmt.Errorf("backup: %w (nothing written to %s)", err, *out)
	}
	if err := f.commit(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	kind := "full"
	if *since > 0 {
		kind = fmt.Sprintf("incremental since %d", *since)
	}
	fmt.Fprintf(stderr, "backup: wrote %s: %s, %d documents, %s, in %v; for the next incremental backup: --since %d\n",
		*out, humanBytes(res.bytes), res.docs, kind, time.Since(start).Round(time.Millisecond), res.next)
	fmt.Fprintln(stdout, res.next)
	return nil
}

type backupResult struct {
	next  uint64
	docs  int
	bytes int64
}

// ctxWriter fails writes once ctx is done, which stops a backup stream
// (Ctrl-C).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func offlineBackup(ctx context.Context, dir string, since uint64, w io.Writer, stderr io.Writer) (backupResult, error) {
	s, err := openDataDir(dir, "backup", toolLogger(stderr))
	if err != nil {
		return backupResult{}, err
	}
	defer s.Close()
	docs, err := storage.CountDocuments(ctx, s)
	if err != nil {
		return backupResult{}, err
	}
	bc := &byteCounter{}
	p := newProgress(stderr, func() string { return fmt.Sprintf("backup: %s, %d documents", humanBytes(bc.count()), docs) })
	bc.p = p
	var tr backupfile.Tracker
	next, err := s.Backup(ctx, ctxWriter{ctx, io.MultiWriter(w, bc, &tr)}, since)
	p.done()
	if err != nil {
		return backupResult{}, err
	}
	if _, err := finishBackup(&tr); err != nil {
		return backupResult{}, fmt.Errorf("the backup written is not whole: %w", err)
	}
	return backupResult{next: next, docs: docs, bytes: bc.count()}, nil
}

// serverURL accepts "host:port" as well as a URL.
func serverURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--server %q is not an http(s) URL", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func onlineBackup(ctx context.Context, server, token string, since uint64, w io.Writer, stderr io.Writer) (backupResult, error) {
	base, err := serverURL(server)
	if err != nil {
		return backupResult{}, err
	}
	u := base + "/api/admin/backup?since=" + strconv.FormatUint(since, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return backupResult{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// No overall timeout (a backup takes as long as it takes), but a server
	// that does not answer at all is an error.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = time.Minute
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return backupResult{}, fmt.Errorf("ask %s for a backup (is the server running there?): %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return backupResult{}, backupRefused(base, resp, token != "")
	}
	docs, _ := strconv.Atoi(resp.Header.Get(web.HeaderDocuments))
	bc := &byteCounter{}
	p := newProgress(stderr, func() string { return fmt.Sprintf("backup: %s, %d documents", humanBytes(bc.count()), docs) })
	bc.p = p
	var frames backupfile.Tracker
	_, err = io.Copy(io.MultiWriter(w, bc, &frames), resp.Body)
	p.done()
	if err != nil {
		if ctx.Err() != nil {
			return backupResult{}, fmt.Errorf("interrupted after %s", humanBytes(bc.count()))
		}
		return backupResult{}, fmt.Errorf("the backup stream from %s broke off after %s: %w (the server's log may say why)", base, humanBytes(bc.count()), err)
	}
	info, err := finishBackup(&frames)
	if err != nil {
		return backupResult{}, fmt.Errorf("the backup stream from %s is not whole: %w", base, err)
	}
	if info.Since != since {
		return backupResult{}, fmt.Errorf("the server sent a backup since version %d, %d was asked for", info.Since, since)
	}
	next := info.Next
	// The HTTP trailer says the same as the file's own; a proxy may drop
	// trailers, so the file's is the fallback.
	if v := resp.Trailer.Get(web.HeaderNextVersion); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n != info.Next {
			return backupResult{}, fmt.Errorf("the server's %s trailer %q differs from the backup's own (%d)", web.HeaderNextVersion, v, info.Next)
		}
	}
	return backupResult{next: next, docs: docs, bytes: bc.count()}, nil
}

// adminTokenFrom reads the admin token from file, or, with file "", from
// the server's data directory if it has one there ("" if not): the one
// TANDEM_DATA_DIR names (as in the container image), else ./data.
func adminTokenFrom(file string) (string, error) {
	if file != "" {
		return readTokenFile(file)
	}
	dir := os.Getenv("TANDEM_DATA_DIR")
	if dir == "" {
		dir = "data"
	}
	tok, err := readTokenFile(filepath.Join(dir, adminTokenFile))
	if err != nil {
		return "", nil // none there: the server will say what it wants
	}
	return tok, nil
}

// backupRefused turns an error response into an error that says what to
// do.
func backupRefused(base string, resp *http.Response, withToken bool) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if withToken {
			return fmt.Errorf("%s refused the admin token (401): check --token / --token-file against the server's --admin-token or <data-dir>/admin-token", base)
		}
		return fmt.Errorf("%s wants an admin token (401): pass --token (TANDEM_ADMIN_TOKEN) or --token-file: the server's --admin-token, or the token it keeps in <data-dir>/admin-token", base)
	case http.StatusForbidden:
		return fmt.Errorf("%s refused the backup (403): %s", base, msg)
	case http.StatusNotFound:
		return fmt.Errorf("%s has no backup endpoint (404): is it a tandem server of this version? (%s)", base, msg)
	}
	return fmt.Errorf("%s answered %s: %s", base, resp.Status, msg)
}

// helpRequested: -h was given; the usage is printed already.
func helpRequested(err error) bool { return errors.Is(err, flag.ErrHelp) }
