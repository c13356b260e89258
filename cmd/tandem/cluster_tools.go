package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
	"github.com/tandemdocs/tandem/storage/jsstore"
)

// natsToolFlags are the flags of a tool that reads or writes a cluster.
type natsToolFlags struct {
	url, creds, ca *string
	timeout        *time.Duration
}

func addNATSFlags(fs *toolFlags) natsToolFlags {
	n := natsToolFlags{
		url:     fs.String("nats", "", "NATS server URL(s) of a cluster, comma-separated (nats://host:4222)"),
		creds:   fs.String("nats-creds", "", "NATS credentials file for --nats"),
		ca:      fs.String("nats-ca", "", "PEM file of the CA of the NATS servers' certificates"),
		timeout: fs.Duration("nats-timeout", 30*time.Second, "how long one JetStream request may take"),
	}
	fs.fromEnv("nats", envName("nats"))
	fs.fromEnv("nats-creds", envName("nats-creds"))
	fs.fromEnv("nats-ca", envName("nats-ca"))
	return n
}

// open connects and opens the cluster's documents. With replicas < 0 it
// only opens what exists (reading tools); otherwise it creates what does
// not, with that many replicas (0: keep what exists, 1 for what is new).
func (n natsToolFlags) open(ctx context.Context, replicas int) (*jsstore.Store, func(), error) {
	nc, err := connectNATS(*n.url, *n.creds, *n.ca, nats.MaxReconnects(10))
	if err != nil {
		return nil, nil, err
	}
	o := jsstore.Options{Conn: nc, Timeout: *n.timeout, Replicas: max(replicas, 0), OpenOnly: replicas < 0}
	s, err := jsstore.Open(ctx, o)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("--nats %s: %w", *n.url, err)
	}
	return s, func() { s.Close(); nc.Close() }, nil
}

// countSet counts the non-empty values.
func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// natsBackup is 'tandem backup --nats'.
func natsBackup(ctx context.Context, nf natsToolFlags, w io.Writer, stderr io.Writer) (backupResult, error) {
	src, closeSrc, err := nf.open(ctx, -1)
	if err != nil {
		return backupResult{}, err
	}
	defer closeSrc()
	total, err := storage.CountDocuments(ctx, src)
	if err != nil {
		return backupResult{}, err
	}
	done := 0
	p := newProgress(stderr, func() string { return fmt.Sprintf("backup: %d/%d documents copied", done, total) })
	bc := &byteCounter{}
	var res backupResult
	res.docs, res.next, err = jsstore.BackupTo(ctx, src, io.MultiWriter(w, bc), func(n int) { done = n; p.tick() }, toolLogger(stderr))
	p.done()
	res.bytes = bc.count()
	return res, err
}

// restoreCluster is 'tandem restore --nats'.
func restoreCluster(ctx context.Context, nf natsToolFlags, replicas int, skipExisting bool, files []string, stderr io.Writer) error {
	start := time.Now()
	log := toolLogger(stderr)
	src, closeSrc, err := openSource("", files, "restore", log)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer closeSrc()
	dst, closeDst, err := nf.open(ctx, replicas)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer closeDst()
	var ids, existing []string
	err = storage.EachDocument(ctx, src, func(d storage.Document) error {
		switch _, err := dst.Document(ctx, d.ID); {
		case err == nil:
			existing = append(existing, d.ID)
		case errors.Is(err, storage.ErrNotFound):
			ids = append(ids, d.ID)
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if len(existing) > 0 && !skipExisting {
		shown := strings.Join(existing[:min(len(existing), 5)], ", ")
		if len(existing) > 5 {
			shown += ", …"
		}
		return fmt.Errorf("restore: %s of the backup already in the cluster (%s): restore never overwrites a document; --skip-existing loads the others",
			plural(len(existing), "document"), shown)
	}
	done, records := 0, 0
	p := newProgress(stderr, func() string { return fmt.Sprintf("restore: %d/%d documents", done, len(ids)) })
	for _, id := range ids {
		res, err := storage.Copy(ctx, dst, src, id)
		if err != nil {
			p.done()
			return fmt.Errorf("restore: %w (%d of %s restored and kept; run again with --skip-existing to load the rest)", err, done, plural(len(ids), "document"))
		}
		done++
		records += res.Records
		p.tick()
	}
	p.done()
	skipped := ""
	if len(existing) > 0 {
		skipped = fmt.Sprintf(", %s already there left as they were", plural(len(existing), "document"))
	}
	fmt.Fprintf(stderr, "restore: %s (%d revisions) from %s into the cluster at %s in %v%s\n",
		plural(done, "document"), records, plural(len(files), "backup file"), *nf.url, time.Since(start).Round(time.Millisecond), skipped)
	return nil
}

// copyCluster copies a cluster's documents into a temporary store for
// 'tandem verify --nats'. A document that does not copy is a problem, not
// an error.
func copyCluster(ctx context.Context, nf natsToolFlags, stderr io.Writer) (*badgerstore.Store, func(), []badgerstore.Problem, error) {
	src, closeSrc, err := nf.open(ctx, -1)
	if err != nil {
		return nil, nil, nil, err
	}
	defer closeSrc()
	dst, _, closeDst, err := badgerstore.OpenTemp("verify", toolLogger(stderr))
	if err != nil {
		return nil, nil, nil, err
	}
	total, err := storage.CountDocuments(ctx, src)
	if err != nil {
		closeDst()
		return nil, nil, nil, err
	}
	done := 0
	p := newProgress(stderr, func() string { return fmt.Sprintf("verify: %d/%d documents copied", done, total) })
	var problems []badgerstore.Problem
	err = storage.CopyAll(ctx, dst, src, func(id string, _ storage.CopyResult, err error) error {
		done++
		p.tick()
		switch {
		case err == nil:
		case errors.Is(err, storage.ErrCorrupt), errors.Is(err, storage.ErrInvalid):
			problems = append(problems, badgerstore.Problem{Doc: id, Rev: -1, What: err.Error()})
		default:
			return err // cannot read: not a finding
		}
		return nil
	})
	p.done()
	if err != nil {
		closeDst()
		return nil, nil, nil, err
	}
	return dst, closeDst, problems, nil
}
