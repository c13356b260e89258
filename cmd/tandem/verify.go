package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/badgerstore"
)

const verifyUsage = `usage: tandem verify --from FILE [--from INCR ...]
       tandem verify --data-dir DATA
       tandem verify --nats URL

Checks a backup (restored into a temporary directory) or a stopped
server's data directory: every document is replayed from its snapshots and
records, which must agree, with no revision missing, and every exactly-once
entry must point at a real record. It prints the counts and every problem
("doc <id> rev <n>: <what>"), and exits 1 if there is any.

--nats checks a running cluster's documents: each is copied into a
temporary store in $TMPDIR (checking that its records are dense and every
op applies), and the copy is checked as above.

The environment can set --data-dir (TANDEM_DATA_DIR) and --nats
(TANDEM_NATS).
`

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newToolFlags("verify", verifyUsage, stderr)
	var from fileList
	fs.Var(&from, "from", "a backup file; repeat it for a full backup and its incrementals, in order")
	dataDir := fs.String("data-dir", "", "a stopped server's data directory (opened read-only)")
	nf := addNATSFlags(fs)
	fs.fromEnv("data-dir", "TANDEM_DATA_DIR")
	fs.exclusive = []string{"from", "data-dir", "nats"}
	if err := fs.parse(args); err != nil {
		return err
	}
	files := append(from, fs.Args()...)
	start := time.Now()
	var s *badgerstore.Store
	var closeSource func()
	var copyProblems []badgerstore.Problem
	var err error
	if *nf.url != "" {
		if *dataDir != "" || len(files) > 0 {
			return errors.New("verify: give one of --from, --data-dir or --nats")
		}
		s, closeSource, copyProblems, err = copyCluster(ctx, nf, stderr)
	} else {
		s, closeSource, err = openSource(*dataDir, files, "verify", toolLogger(stderr))
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer closeSource()
	total, err := storage.CountDocuments(ctx, s)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var done atomic.Int64
	p := newProgress(stderr, func() string { return fmt.Sprintf("verify: %d/%d documents", done.Load(), total) })
	rep, err := s.Verify(ctx, func(n int) {
		done.Store(int64(n))
		p.tick()
	})
	p.done()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rep.Problems = append(copyProblems, rep.Problems...)
	for _, pr := range rep.Problems {
		fmt.Fprintln(stdout, problemLine(pr))
	}
	fmt.Fprintf(stdout, "documents %d, records %d, snapshots %d, exactly-once entries %d, stray keys %d: %d problems (%v)\n",
		rep.Documents, rep.Records, rep.Snapshots, rep.Submissions, rep.Stray, len(rep.Problems), time.Since(start).Round(time.Millisecond))
	if len(rep.Problems) > 0 {
		return fmt.Errorf("verify: %d problems", len(rep.Problems))
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// problemLine: "doc <id> rev <n>: <what>", without the parts a problem
// does not have.
func problemLine(p badgerstore.Problem) string {
	switch {
	case p.Doc == "":
		return "store: " + p.What
	case p.Rev < 0:
		return fmt.Sprintf("doc %s: %s", p.Doc, p.What)
	}
	return fmt.Sprintf("doc %s rev %d: %s", p.Doc, p.Rev, p.What)
}
