package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

const exportUsage = `usage: tandem export --from FILE [--from INCR ...] --out DIR [--doc ID [--rev N]] [--format F] [--history]
       tandem export --data-dir DATA --out DIR [--doc ID [--rev N]] [--format F] [--history]
       tandem export --nats URL --out DIR [--doc ID [--rev N]] [--format F] [--history]

Writes documents out of a backup file (restored into a temporary directory,
so the server keeps running) or a stopped server's data directory, no
server needed, or out of a running cluster (--nats):

  DIR/<id>.txt             a plain document's text (at its head, or at --rev N)
  DIR/<id>.json            a rich document's Delta (Quill's op array)
  DIR/<id>.html|.md|.txt   with --format html|markdown|text|delta: every
                           document in that form (HTML: allow-listed markup,
                           every value escaped, safe links only)
  DIR/<id>.history.jsonl   with --history: the content at the oldest retained
                           revision, {"rev","base":true,"text"} (a rich
                           document's Delta JSON as a string), then one line
                           per revision up to the one exported:
                           {"rev","user","src","seq","time","op"}
  DIR/manifest.json        written last: [{"id","title","type","rev","head",
                           "oldest","created","updated","authors","file",
                           "history"}]

DIR must not exist or be empty. The environment can set --data-dir
(TANDEM_DATA_DIR) and --nats (TANDEM_NATS).
`

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newToolFlags("export", exportUsage, stderr)
	var from fileList
	fs.Var(&from, "from", "a backup file; repeat it for a full backup and its incrementals, in order")
	dataDir := fs.String("data-dir", "", "a stopped server's data directory (opened read-only)")
	out := fs.String("out", "", "the directory to write (required; must not exist or be empty)")
	docID := fs.String("doc", "", "export only this document")
	rev := fs.Int64("rev", -1, "with --doc: export the text at this revision (it must be in the retained history)")
	history := fs.Bool("history", false, "also write each document's history as JSON lines")
	format := fs.String("format", "", "html, markdown, text or delta (default: a plain document's text, a rich document's Delta)")
	nf := addNATSFlags(fs)
	fs.fromEnv("data-dir", "TANDEM_DATA_DIR")
	fs.exclusive = []string{"from", "data-dir", "nats"}
	if err := fs.parse(args); err != nil {
		return err
	}
	files := append(from, fs.Args()...)
	switch {
	case *out == "":
		return errors.New("export: --out DIR is required")
	case *nf.url != "" && (*dataDir != "" || len(files) > 0):
		return errors.New("export: give one of --from, --data-dir or --nats")
	case *rev != -1 && *docID == "":
		return errors.New("export: --rev needs --doc: a revision is a revision of one document")
	case *rev < -1:
		return errors.New("export: --rev must be a revision, 0 or more")
	case *format != "" && !slices.Contains(doctype.Formats, *format):
		return fmt.Errorf("export: --format %q: one of html, markdown, text, delta", *format)
	}
	if err := checkEmptyDir(*out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	log := toolLogger(stderr)
	var s storage.Store
	var closeSource func()
	var err error
	if *nf.url != "" {
		s, closeSource, err = nf.open(ctx, -1)
	} else {
		s, closeSource, err = openSource(*dataDir, files, "export", log)
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer closeSource()
	start := time.Now()

	var docs []storage.Document
	if *docID != "" {
		d, err := s.Document(ctx, *docID)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalid) {
				return fmt.Errorf("export: no document %q in the backup or data directory", *docID)
			}
			return fmt.Errorf("export: %w", err)
		}
		docs = append(docs, d)
	} else {
		for after := ""; ; {
			page, next, err := s.ListDocuments(ctx, storage.ListOptions{After: after, Limit: 1000})
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			docs = append(docs, page...)
			if next == "" {
				break
			}
			after = next
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	done := 0
	p := newProgress(stderr, func() string { return fmt.Sprintf("export: %d/%d documents", done, len(docs)) })
	manifest := make([]manifestEntry, 0, len(docs))
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			p.done()
			return fmt.Errorf("export: interrupted: %w", err)
		}
		at := d.Head
		if *rev >= 0 {
			at = *rev
		}
		e, err := exportDoc(ctx, s, d, at, *history, *format, *out)
		if err != nil {
			p.done()
			return fmt.Errorf("export: %w", err)
		}
		manifest = append(manifest, e)
		done++
		p.tick()
	}
	p.done()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(manifest); err != nil {
		return fmt.Errorf("export: manifest: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(*out, "manifest.json"), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stderr, "export: %d documents to %s in %v\n", len(manifest), *out, time.Since(start).Round(time.Millisecond))
	return nil
}

// checkEmptyDir: dir must not exist, or be an empty directory.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("%s is not empty: export into a new or empty directory", dir)
	case err == nil, errors.Is(err, os.ErrNotExist):
		return nil
	}
	if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
		return fmt.Errorf("%s is a file, not a directory", dir)
	}
	return err
}

// manifestEntry is one document in manifest.json.
type manifestEntry struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Type    string    `json:"type"`
	Rev     int64     `json:"rev"` // the revision exported
	Head    int64     `json:"head"`
	Oldest  int64     `json:"oldest"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Authors: the distinct users of the retained history (oldest..head).
	Authors []string `json:"authors"`
	File    string   `json:"file"`
	History string   `json:"history,omitempty"`
}

// historyBase is a history file's first line: where its ops start.
type historyBase struct {
	Rev  int64  `json:"rev"`
	Base bool   `json:"base"`
	Text string `json:"text"`
}

// historyLine is one revision in a history file.
type historyLine struct {
	Rev  int64      `json:"rev"`
	User string     `json:"user"`
	Src  string     `json:"src"`
	Seq  uint64     `json:"seq"`
	Time time.Time  `json:"time"`
	Op   doctype.Op `json:"op"`
}

func exportDoc(ctx context.Context, s storage.Store, d storage.Document, rev int64, history bool, format, out string) (manifestEntry, error) {
	typ := d.DocType()
	e := manifestEntry{ID: d.ID, Title: d.Title, Type: typ.Name(), Rev: rev, Head: d.Head, Oldest: d.Oldest,
		Created: d.Created, Updated: d.Updated, Authors: []string{}}
	text, err := storage.ContentAt(ctx, s, d.ID, rev)
	switch {
	case errors.Is(err, storage.ErrCompacted):
		return e, fmt.Errorf("document %s: revision %d is older than its retained history (revisions %d..%d)", d.ID, rev, d.Oldest, d.Head)
	case errors.Is(err, storage.ErrInvalid) && rev > d.Head:
		return e, fmt.Errorf("document %s: revision %d is past its head, %d", d.ID, rev, d.Head)
	case err != nil:
		return e, fmt.Errorf("document %s at revision %d: %w", d.ID, rev, err)
	}
	if format == "" {
		format = typ.NativeFormat()
	}
	// A plain document's text goes out as it is; anything else through its
	// type's export.
	data, ext := []byte(text), ".txt"
	if format != doctype.FormatText || typ.NativeFormat() != doctype.FormatText {
		ex, err := doctype.ExportContent(typ, text, d.Title, format)
		if err != nil {
			return e, fmt.Errorf("document %s: %w", d.ID, err)
		}
		data, ext = ex.Data, ex.Ext
	}
	e.File = d.ID + ext

	var hist *atomicFile
	var w *bufio.Writer
	var enc *json.Encoder
	if history {
		e.History = d.ID + ".history.jsonl"
		base, err := storage.ContentAt(ctx, s, d.ID, d.Oldest)
		if err != nil {
			return e, fmt.Errorf("document %s at revision %d: %w", d.ID, d.Oldest, err)
		}
		if hist, err = createAtomic(filepath.Join(out, e.History), 0o644); err != nil {
			return e, err
		}
		defer hist.abort() // a no-op after commit
		w = bufio.NewWriterSize(hist, 256<<10)
		enc = json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(historyBase{Rev: d.Oldest, Base: true, Text: base}); err != nil {
			return e, fmt.Errorf("document %s: history: %w", d.ID, err)
		}
	}
	authors := map[string]bool{}
	for from := d.Oldest; from < d.Head; {
		to := min(d.Head, from+1000)
		recs, err := s.Records(ctx, d.ID, from, to)
		if err != nil {
			return e, fmt.Errorf("document %s: history: %w", d.ID, err)
		}
		for _, r := range recs {
			if r.User != "" {
				authors[r.User] = true
			}
			if history && r.Rev <= rev {
				l := historyLine{Rev: r.Rev, User: r.User, Src: r.Source, Seq: r.Seq, Time: r.Time.UTC(), Op: r.Op}
				if err := enc.Encode(l); err != nil {
					return e, fmt.Errorf("document %s: history: revision %d: %w", d.ID, r.Rev, err)
				}
			}
		}
		from = to
	}
	for a := range authors {
		e.Authors = append(e.Authors, a)
	}
	slices.Sort(e.Authors)
	if err := writeFileAtomic(filepath.Join(out, e.File), data, 0o644); err != nil {
		return e, err
	}
	if history {
		if err := w.Flush(); err != nil {
			return e, fmt.Errorf("write %s: %w", e.History, err)
		}
		if err := hist.commit(); err != nil {
			return e, err
		}
	}
	return e, nil
}
