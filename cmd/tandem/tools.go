package main

// What the offline tools (backup, restore, export, verify) share: flags
// with a few environment variables, opening a data directory or backup
// files read-only, reading backup files' frames and trailers, progress
// lines, and files written atomically.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandemdocs/tandem/storage/backupfile"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

// fileList is a repeatable flag: --in a --in b.
type fileList []string

func (f *fileList) String() string { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*f = append(*f, v)
	return nil
}

// toolFlags is a tool's flag set. Only the flags listed in env can also be
// set from the environment (TANDEM_DATA_DIR, TANDEM_SERVER,
// TANDEM_ADMIN_TOKEN): the ones that describe the installation, not one
// run. Flags of an exclusive group (where the data comes from: --server,
// --data-dir, --from) take nothing from the environment once one of them is
// on the command line, so that TANDEM_DATA_DIR set for the server (as in
// the container image) does not clash with --from FILE.
type toolFlags struct {
	*flag.FlagSet
	name      string
	env       map[string]string // flag name → environment variable
	exclusive []string
}

func newToolFlags(name, usage string, stderr io.Writer) *toolFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	t := &toolFlags{FlagSet: fs, name: name, env: map[string]string{}}
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	return t
}

// fromEnv lets the environment variable v set flag name.
func (t *toolFlags) fromEnv(name, v string) { t.env[name] = v }

func (t *toolFlags) parse(args []string) error {
	if err := t.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	t.Visit(func(f *flag.Flag) { set[f.Name] = true })
	skip := map[string]bool{}
	for _, n := range t.exclusive {
		if set[n] {
			for _, m := range t.exclusive {
				skip[m] = true
			}
			break
		}
	}
	for name, v := range t.env {
		if set[name] || skip[name] {
			continue
		}
		if val, ok := os.LookupEnv(v); ok && val != "" {
			if err := t.Set(name, val); err != nil {
				return fmt.Errorf("%s=%q: %w", v, val, err)
			}
		}
	}
	return nil
}

// toolLogger: Badger's warnings and errors only, on stderr.
func toolLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// inUseHint is added to errors about a data directory a server holds.
func inUseHint(dir, tool string) string {
	msg := fmt.Sprintf("%s is in use by another process (a running tandem server: Badger locks its directory). "+
		"Take an online backup instead: `tandem backup --server URL --out FILE`", dir)
	if tool != "backup" {
		msg += fmt.Sprintf(", then `tandem %s --from FILE`", tool)
	}
	return msg
}

// openDataDir opens a data directory read-only for an offline tool, with
// errors that say what to do.
func openDataDir(dir, tool string, log *slog.Logger) (*badgerstore.Store, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("data directory %s does not exist", dir)
	case err != nil:
		return nil, fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory (a backup file? use --from)", dir)
	}
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: log, ReadOnly: true, GCInterval: -1, Existing: true})
	switch {
	case err == nil:
	case errors.Is(err, badgerstore.ErrNotTandem):
		return nil, fmt.Errorf("%s is not a Tandem data directory: wrong --data-dir? (%w)", dir, err)
	case strings.Contains(err.Error(), "in use by another process"):
		return nil, errors.New(inUseHint(dir, tool))
	case errors.Is(err, badgerstore.ErrUncleanShutdown):
		return nil, fmt.Errorf("%s was not closed cleanly (the server crashed or was killed) and a read-only open cannot recover it: "+
			"start `tandem serve` on it once and stop it, or take an online backup with `tandem backup --server`: %w", dir, err)
	default:
		return nil, err
	}
	return s, nil
}

// openSource opens where a tool reads from: a data directory, or backup
// files (a full one and incrementals, in order) restored into a temporary
// directory. close releases it and removes the temporary directory.
func openSource(dataDir string, files []string, tool string, log *slog.Logger) (s *badgerstore.Store, close func(), err error) {
	switch {
	case dataDir != "" && len(files) > 0:
		return nil, nil, errors.New("give either --data-dir or --from, not both")
	case dataDir != "":
		s, err := openDataDir(dataDir, tool, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	case len(files) == 0:
		return nil, nil, errors.New("nothing to read: give --from FILE (a backup file) or --data-dir DIR (a stopped server's data)")
	}
	if _, err := checkBackupFiles(files); err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "tandem-"+tool+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("temporary directory for the restore: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	dir := filepath.Join(tmp, "data")
	if err := restoreFiles(dir, files, log); err != nil {
		cleanup()
		return nil, nil, err
	}
	s, err = badgerstore.Open(badgerstore.Options{Dir: dir, Logger: log, ReadOnly: true, GCInterval: -1})
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("open the restored backup: %w", err)
	}
	return s, func() { s.Close(); cleanup() }, nil
}

// restoreFiles restores backup files into dir with badgerstore.Restore.
func restoreFiles(dir string, files []string, log *slog.Logger) error {
	var readers []io.Reader
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("backup file: %w", err)
		}
		defer f.Close()
		readers = append(readers, f)
	}
	if err := badgerstore.Restore(dir, log, readers...); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(files, ", "), err)
	}
	return nil
}

// checkBackupFiles checks files are whole Tandem backups of this build's
// data format that restore in this order (storage/backupfile), and returns
// their trailers.
func checkBackupFiles(files []string) ([]backupfile.Trailer, error) {
	trailers := make([]backupfile.Trailer, len(files))
	for i, name := range files {
		t, err := backupfile.ScanFile(name)
		if err == nil {
			err = t.Check(badgerstore.FormatVersion)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		trailers[i] = t
	}
	return trailers, backupfile.CheckChain(files, trailers)
}

// finishBackup checks a backup that was written (or downloaded) through
// tr was whole and of this build's data format.
func finishBackup(tr *backupfile.Tracker) (backupfile.Trailer, error) {
	t, err := tr.Finish()
	if err == nil {
		err = t.Check(badgerstore.FormatVersion)
	}
	return t, err
}

// isTerminal reports whether w is a terminal (for carriage-return progress
// lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress reports a long run on stderr: a line rewritten in place (\r)
// ten times a second on a terminal, a plain line every few seconds
// otherwise.
type progress struct {
	w      io.Writer
	tty    bool
	every  time.Duration
	render func() string

	mu      sync.Mutex
	last    time.Time
	printed bool
}

func newProgress(w io.Writer, render func() string) *progress {
	p := &progress{w: w, tty: isTerminal(w), render: render, last: time.Now()}
	p.every = 5 * time.Second
	if p.tty {
		p.every = 100 * time.Millisecond
	}
	return p
}

// tick prints if it is time to.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	p.print()
}

func (p *progress) print() {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.render())
	} else {
		fmt.Fprintln(p.w, p.render())
	}
	p.printed = true
}

// done ends the progress line (a terminal's gets its newline).
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.printed {
		fmt.Fprintf(p.w, "\r\033[K")
	}
}

// byteCounter counts bytes written through it and ticks a progress.
type byteCounter struct {
	mu sync.Mutex
	n  int64
	p  *progress
}

func (b *byteCounter) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.n += int64(len(p))
	b.mu.Unlock()
	if b.p != nil {
		b.p.tick()
	}
	return len(p), nil
}

func (b *byteCounter) count() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// atomicFile is a file written under a temporary name in its directory and
// renamed into place by commit, after an fsync; abort (or a failed commit)
// removes it, so that no partial file ever carries the final name.
type atomicFile struct {
	*os.File
	name string
	mode os.FileMode
	done bool
}

// createAtomic starts writing name, which gets mode once committed.
func createAtomic(name string, mode os.FileMode) (*atomicFile, error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.partial")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, name: name, mode: mode}, nil
}

func (a *atomicFile) commit() error {
	if a.done {
		return errors.New("file already committed or aborted")
	}
	a.done = true
	tmp := a.File.Name()
	err := a.File.Sync()
	if cerr := a.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, a.mode)
	}
	if err == nil {
		err = os.Rename(tmp, a.name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", a.name, err)
	}
	syncDir(filepath.Dir(a.name))
	return nil
}

func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
}

// syncDir makes a rename in dir durable (best effort: not every system
// can fsync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeFileAtomic writes data to name through an atomicFile.
func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	f, err := createAtomic(name, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.abort()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.commit()
}
