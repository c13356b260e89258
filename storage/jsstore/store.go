// Package jsstore is a [storage.Store] on NATS JetStream, for several
// Tandem nodes serving the same documents. It passes the conformance suite
// in package storagetest against an embedded NATS server.
//
// The model:
//
//   - The op log is one stream (LOG). Each commit of a document is one
//     message on the document's subject, log.<id>.<generation>, holding the
//     append's records (one or many: the group commit stays one write). A
//     commit is a publish that expects the subject's last sequence to be
//     the one the committer read: JetStream's compare-and-swap, so of two
//     nodes appending at the same head one wins and the other gets
//     storage.ErrConflict. The log is the truth about a document's head:
//     the last message on its subject says it.
//   - Metadata (title, creation, generation, the oldest retained revision)
//     is a key-value bucket (DOCS), updated with compare-and-swap on the
//     entry's revision. A deleted id is a new generation when created
//     again, so nothing of the old one can leak into it.
//   - Snapshots are a key-value bucket (SNAPS): key <id>.<gen>.<rev>, and
//     beside the text the log sequence to read the tail from.
//   - The exactly-once index is a bucket (SUBS): <id>.<gen>.<source>.<seq>
//     gives the revision. It is written after the log, so a node that dies
//     between the two leaves it behind; the document's entry in DOCS keeps
//     the revision indexed up to, and a lookup first indexes whatever the
//     log holds beyond it. Publishes carry a message id
//     (<id>.<gen>.<first revision>.<writer>) for JetStream's
//     de-duplication window besides.
//
// Every write is acknowledged by JetStream once stored; for it to be
// durable the server must sync its writes (sync_interval: always) and, in
// a cluster, the stream and buckets must have replicas (Options.Replicas,
// 3 in production): an acknowledged write is then on a majority. Reads go
// to each stream's leader (no direct gets, which any replica answers): a
// node must read every write acknowledged before, its own and others'.
package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/storage"
)

// Options configure Open.
type Options struct {
	// Conn is a connection to the NATS server (or cluster). The store does
	// not close it.
	Conn *nats.Conn
	// Prefix names the stream and buckets (default "TANDEM").
	Prefix string
	// Replicas of the stream and buckets (3 in a cluster). 0 keeps what
	// exists, and creates what does not with 1; another value creates or
	// updates them with it.
	Replicas int
	// OpenOnly opens the stream and buckets that exist and changes
	// nothing: for tools reading a cluster. Open fails when there are
	// none.
	OpenOnly bool
	// Timeout bounds each JetStream request (default 10 s).
	Timeout time.Duration
}

// Store is a storage.Store on JetStream.
type Store struct {
	js      jetstream.JetStream
	log     jetstream.Stream
	docs    jetstream.KeyValue
	snaps   jetstream.KeyValue
	subs    jetstream.KeyValue
	cursors jetstream.KeyValue // the change log's readers (nil for a tool that opens an older cluster's)
	subsKV  string             // the subject prefix of subs' keys, for bulk writes
	subject string             // the log's subject prefix
	// writer is this store's random id, in its publishes' message ids:
	// JetStream's de-duplication is for a publish sent again by the same
	// writer; two writers at one head are told apart by the
	// compare-and-swap (a shared id would make one wait on the other's
	// publish in a cluster).
	writer  string
	timeout time.Duration

	mu     sync.RWMutex
	closed bool

	// The exactly-once index is written off the commit's path: acks wait
	// for the log only. What is not indexed yet (or was lost with a
	// crash) is indexed from the log by the next lookup.
	indexq    chan indexJob
	wg        sync.WaitGroup
	stopIndex context.CancelFunc // Close abandons what is queued: lookups repair it
	indexCtx  context.Context

	// tails caches each document's last log message as this node last
	// saw it: a commit at that head publishes at once, expecting that
	// message's sequence, without reading first (one round trip, and a
	// short window for the compare-and-swap: under contention a node
	// that reads before each publish keeps losing to one that does not).
	// A stale entry only costs a conflict.
	tailsMu sync.Mutex
	tails   map[string]tailCache
}

var _ storage.Portable = (*Store)(nil)

// Open creates the stream and buckets if they do not exist, and returns
// the store.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Conn == nil {
		return nil, errors.New("jsstore: no NATS connection")
	}
	if o.Prefix == "" {
		o.Prefix = "TANDEM"
	}
	if o.Replicas < 0 {
		return nil, errors.New("jsstore: negative replicas")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("jsstore: %w", err)
	}
	s := &Store{js: js, subject: strings.ToLower(o.Prefix) + ".log", timeout: o.Timeout, tails: map[string]tailCache{}, writer: newGen()}
	keep := o.Replicas == 0 || o.OpenOnly
	replicas := max(o.Replicas, 1)
	if keep {
		s.log, err = js.Stream(ctx, o.Prefix+"_LOG")
	}
	switch {
	case keep && err == nil:
	case keep && !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("jsstore: log stream: %w", err)
	case o.OpenOnly:
		return nil, fmt.Errorf("jsstore: no Tandem documents in this JetStream (no stream %s_LOG): %w", o.Prefix, err)
	default:
		s.log, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        o.Prefix + "_LOG",
			Subjects:    []string{s.subject + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			AllowDirect: false, // see leaderReads
			Duplicates:  2 * time.Minute,
		})
		if err != nil {
			return nil, fmt.Errorf("jsstore: log stream: %w", err)
		}
	}
	if !o.OpenOnly {
		if s.log, err = leaderReads(ctx, js, s.log); err != nil {
			return nil, fmt.Errorf("jsstore: log stream: %w", err)
		}
	}
	bucket := func(name string) (jetstream.KeyValue, error) {
		kv, err := s.openBucket(ctx, js, o, name, keep, replicas)
		if err != nil {
			return nil, fmt.Errorf("jsstore: %s bucket: %w", name, err)
		}
		return kv, nil
	}
	if s.docs, err = bucket("DOCS"); err != nil {
		return nil, err
	}
	if s.snaps, err = bucket("SNAPS"); err != nil {
		return nil, err
	}
	if s.subs, err = bucket("SUBS"); err != nil {
		return nil, err
	}
	if s.cursors, err = bucket("CURSORS"); err != nil && !o.OpenOnly {
		return nil, err
	}
	s.subsKV = "$KV." + o.Prefix + "_SUBS."
	s.indexq = make(chan indexJob, 1024)
	s.indexCtx, s.stopIndex = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.indexer()
	return s, nil
}

// openBucket opens (or creates) a key-value bucket with reads from its
// leader. It never updates a bucket with CreateOrUpdateKeyValue, which
// turns direct gets on again: a node that bound it then would send its
// reads where nobody answers once another node turned them off.
func (s *Store) openBucket(ctx context.Context, js jetstream.JetStream, o Options, name string, keep bool, replicas int) (jetstream.KeyValue, error) {
	bucket := o.Prefix + "_" + name
	kv, err := js.KeyValue(ctx, bucket)
	switch {
	case err == nil:
	case !errors.Is(err, jetstream.ErrBucketNotFound) || o.OpenOnly:
		return nil, err
	default:
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Storage: jetstream.FileStorage, Replicas: replicas, History: 1,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket) // another node created it first
		}
		if err != nil {
			return nil, err
		}
	}
	if o.OpenOnly {
		return kv, nil
	}
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	if !keep && st.CachedInfo().Config.Replicas != replicas {
		cfg := st.CachedInfo().Config
		cfg.Replicas = replicas
		if st, err = js.UpdateStream(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if _, err := leaderReads(ctx, js, st); err != nil {
		return nil, err
	}
	// Bound again, now that the stream's reads are its leader's.
	return js.KeyValue(ctx, bucket)
}

// leaderReads turns off direct gets on a stream. With replicas, a direct
// get is answered by any replica, and a follower may not have the last
// writes yet: a node would read a head older than its own commit, or
// (worse) a watermark of the exactly-once index ahead of the index's
// entries, and apply a resent op twice. Reads through the stream's API are
// answered by its leader, which has every acknowledged write.
func leaderReads(ctx context.Context, js jetstream.JetStream, st jetstream.Stream) (jetstream.Stream, error) {
	cfg := st.CachedInfo().Config
	if !cfg.AllowDirect {
		return st, nil
	}
	cfg.AllowDirect = false
	st, err := js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// A replicated stream elects its leader again after an update: until
	// it has one, requests to it find no responder.
	for {
		info, err := st.Info(ctx)
		if err == nil && (info.Cluster == nil || info.Cluster.Leader != "") {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stream %s has no leader after its update: %w", cfg.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// begin checks the store is open and bounds ctx.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, nil, storage.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, func() { cancel(); s.mu.RUnlock() }, nil
}

func wrap(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %v", storage.ErrClosed, err)
	}
	return err
}

// Close implements storage.Store. It does not close the connection.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.closed = true
	s.stopIndex()
	close(s.indexq)
	s.wg.Wait()
	return nil
}

// wrongLast reports whether err is a compare-and-swap that lost: a key
// that exists (Create) or has another revision (Update), an expected last
// sequence that is not. A clustered stream answers with another code than
// a single server.
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return true
		}
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// untilAnswered runs write again while JetStream has no responder for it
// (a replicated stream between two leaders, or just created or updated
// and not yet known to every server): nothing was stored, so sending it
// again is safe. ctx bounds it.
func untilAnswered(ctx context.Context, write func() error) error {
	for {
		err := write()
		if !unanswered(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unanswered: nobody answered the request (nothing was done).
func unanswered(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// errDuplicateInProcess is JetStream's answer (in a cluster) to a publish
// whose message id another publish in flight has.
const errDuplicateInProcess jetstream.ErrorCode = 10158

// Unavailable reports whether err says JetStream cannot answer yet rather
// than that something is wrong: a request timed out, the cluster has no
// leader yet, or not enough servers for the replicas asked for (a cluster
// coming up). Opening again later may succeed.
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10008, 10005: // JetStream system temporarily unavailable; no suitable peers for placement
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
