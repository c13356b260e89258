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
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tandemdocs/tandem/ot/doctype"
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

type tailCache struct {
	gen  string
	head int64
	seq  uint64
	// ends are the last messages this node saw end (head → sequence):
	// a read of the records after one of them starts at the message
	// after it instead of at a snapshot (a node that lost a race reads
	// only the few messages it missed).
	ends []tailEnd
}

type tailEnd struct {
	head int64
	seq  uint64
}

const maxEnds = 64

type indexJob struct {
	id, gen string
	recs    []record
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

// meta is a document's entry in DOCS.
type meta struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Gen     string    `json:"gen"`
	Oldest  int64     `json:"oldest"`
	Indexed int64     `json:"indexed"` // the exactly-once index holds every record up to this revision
	// Base is the time of revision Oldest when the document was imported
	// there (storage.Portable) and has no message on the log yet.
	Base time.Time `json:"base,omitzero"`
	// Type is the document type; "" is plain (and older data).
	Type string `json:"type,omitempty"`
}

// entry is a message of the log: one append.
type entry struct {
	Records []record `json:"records"`
}

type record struct {
	Rev    int64           `json:"rev"`
	Op     json.RawMessage `json:"op"` // in the document type's wire form
	Source string          `json:"src,omitempty"`
	Seq    uint64          `json:"seq,omitempty"`
	User   string          `json:"user,omitempty"`
	Time   time.Time       `json:"time"`
}

func (r record) record(t doctype.Type) (storage.Record, error) {
	op, _, err := t.ParseOp(r.Op)
	if err != nil {
		return storage.Record{}, fmt.Errorf("%w: revision %d: %v", storage.ErrCorrupt, r.Rev, err)
	}
	return storage.Record{Rev: r.Rev, Op: op, Source: r.Source, Seq: r.Seq, User: r.User, Time: r.Time}, nil
}

// snapValue is a snapshot's entry in SNAPS.
type snapValue struct {
	Text string `json:"text"`
	// From is the log sequence to read the records after the snapshot
	// from (on the document's subject): the first message that may hold
	// one.
	From uint64 `json:"from"`
}

func (s *Store) logSubject(id, gen string) string {
	// Ids may hold '.', a subject's token separator; '~' is not in ids.
	return s.subject + "." + strings.ReplaceAll(id, ".", "~") + "." + gen
}

// key is an id as a bucket key or key token: '.' separates a key's
// tokens, and '=' is not in ids.
func key(id string) string        { return strings.ReplaceAll(id, ".", "=") }
func unkey(k string) string       { return strings.ReplaceAll(k, "=", ".") }
func scope(id, gen string) string { return key(id) + "." + gen + "." }

func snapKey(id, gen string, rev int64) string { return fmt.Sprintf("%s%020d", scope(id, gen), rev) }

func subKey(id, gen, source string, seq uint64) string {
	return scope(id, gen) + hex.EncodeToString([]byte(source)) + "." + strconv.FormatUint(seq, 10)
}

func wrap(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %v", storage.ErrClosed, err)
	}
	return err
}

// getMeta reads a document's metadata and its entry's revision.
func (s *Store) getMeta(ctx context.Context, id string) (meta, uint64, error) {
	if err := storage.CheckID(id); err != nil {
		return meta{}, 0, err
	}
	var e jetstream.KeyValueEntry
	err := untilAnswered(ctx, func() (err error) { e, err = s.docs.Get(ctx, key(id)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return meta{}, 0, fmt.Errorf("%w: document %s", storage.ErrNotFound, id)
	}
	if err != nil {
		return meta{}, 0, fmt.Errorf("document %s: %w", id, wrap(err))
	}
	var m meta
	if err := json.Unmarshal(e.Value(), &m); err != nil || m.ID != id || m.Gen == "" {
		return meta{}, 0, fmt.Errorf("%w: document %s: metadata", storage.ErrCorrupt, id)
	}
	return m, e.Revision(), nil
}

// putMeta writes m over the entry at revision rev (compare-and-swap),
// retrying change on a conflict.
func (s *Store) updateMeta(ctx context.Context, id string, change func(*meta) error) error {
	for {
		m, rev, err := s.getMeta(ctx, id)
		if err != nil {
			return err
		}
		if err := change(&m); err != nil {
			return err
		}
		b, _ := json.Marshal(m)
		err = untilAnswered(ctx, func() error { _, err := s.docs.Update(ctx, key(id), b, rev); return err })
		if err == nil {
			return nil
		}
		if !wrongLast(err) {
			return fmt.Errorf("document %s: %w", id, wrap(err))
		}
	}
}

// tail is the last message on a document's subject: its head and sequence
// (0, 0 when it has none), and its time.
func (s *Store) tail(ctx context.Context, id, gen string) (head int64, seq uint64, updated time.Time, err error) {
	var msg *jetstream.RawStreamMsg
	err = untilAnswered(ctx, func() (err error) { msg, err = s.log.GetLastMsgForSubject(ctx, s.logSubject(id, gen)); return err })
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, time.Time{}, nil
	}
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	var e entry
	if err := json.Unmarshal(msg.Data, &e); err != nil || len(e.Records) == 0 {
		return 0, 0, time.Time{}, fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, msg.Sequence)
	}
	last := e.Records[len(e.Records)-1]
	return last.Rev, msg.Sequence, last.Time, nil
}

func (s *Store) document(ctx context.Context, id string) (storage.Document, meta, uint64, error) {
	m, _, err := s.getMeta(ctx, id)
	if err != nil {
		return storage.Document{}, meta{}, 0, err
	}
	head, seq, updated, err := s.tail(ctx, id, m.Gen)
	if err != nil {
		return storage.Document{}, meta{}, 0, err
	}
	if seq == 0 {
		// No commit yet: the document is where it was created (0) or
		// imported (Oldest).
		head, updated = m.Oldest, m.Created
		if !m.Base.IsZero() {
			updated = m.Base
		}
	}
	if head < m.Oldest {
		return storage.Document{}, meta{}, 0, fmt.Errorf("%w: document %s: head %d before the oldest revision %d", storage.ErrCorrupt, id, head, m.Oldest)
	}
	s.noteTail(id, tailCache{gen: m.Gen, head: head, seq: seq})
	return storage.Document{ID: id, Title: m.Title, Created: m.Created, Updated: updated, Head: head, Oldest: m.Oldest, Type: m.Type}, m, seq, nil
}

func (s *Store) noteTail(id string, t tailCache) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	if t.seq == 0 {
		// No message yet: nothing to expect that a deleted and created
		// again document could not also match.
		delete(s.tails, id)
		return
	}
	old, ok := s.tails[id]
	if ok && old.gen == t.gen {
		t.ends = old.ends
		if old.seq > t.seq {
			t.head, t.seq = old.head, old.seq // keep the newest
		}
	}
	t.ends = noteEnd(t.ends, tailEnd{t.head, t.seq})
	s.tails[id] = t
}

func noteEnd(ends []tailEnd, e tailEnd) []tailEnd {
	for _, x := range ends {
		if x == e {
			return ends
		}
	}
	if len(ends) == maxEnds {
		ends = append(ends[:0:0], ends[1:]...)
	}
	return append(ends, e)
}

// noteEnd remembers that message seq ends at revision head.
func (s *Store) noteEnd(id, gen string, e tailEnd) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	if !ok || t.gen != gen {
		return
	}
	t.ends = noteEnd(t.ends, e)
	s.tails[id] = t
}

// startAfter returns the log sequence to read the records after from:
// the message after the last one seen to end at or before from (0: not
// known).
func (s *Store) startAfter(id, gen string, from int64) uint64 {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	if !ok || t.gen != gen {
		return 0
	}
	var best tailEnd
	for _, e := range t.ends {
		if e.head <= from && e.head >= best.head && e.seq > best.seq {
			best = e
		}
	}
	if best.seq == 0 {
		return 0
	}
	return best.seq + 1
}

func (s *Store) cachedTail(id string) (tailCache, bool) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	t, ok := s.tails[id]
	return t, ok
}

func (s *Store) forgetTail(id string) {
	s.tailsMu.Lock()
	delete(s.tails, id)
	s.tailsMu.Unlock()
}

func newGen() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CreateDocument implements storage.Store.
func (s *Store) CreateDocument(ctx context.Context, doc storage.Document, text string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := storage.CheckCreate(doc, text); err != nil {
		return err
	}
	m := meta{ID: doc.ID, Title: doc.Title, Created: doc.Created.UTC().Round(0), Gen: newGen(), Type: doc.Type}
	// The snapshot first: a document is visible only with its text.
	sv, _ := json.Marshal(snapValue{Text: text, From: 1})
	if err := untilAnswered(ctx, func() error { _, err := s.snaps.Put(ctx, snapKey(doc.ID, m.Gen, 0), sv); return err }); err != nil {
		return fmt.Errorf("document %s: snapshot: %w", doc.ID, wrap(err))
	}
	b, _ := json.Marshal(m)
	if err := untilAnswered(ctx, func() error { _, err := s.docs.Create(ctx, key(doc.ID), b); return err }); err != nil {
		s.snaps.Purge(ctx, snapKey(doc.ID, m.Gen, 0))
		if wrongLast(err) {
			return fmt.Errorf("%w: document %s", storage.ErrExists, doc.ID)
		}
		return fmt.Errorf("document %s: %w", doc.ID, wrap(err))
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeCreate, Doc: doc.ID, Title: doc.Title, Type: doc.Type, Time: time.Now()})
}

// Document implements storage.Store.
func (s *Store) Document(ctx context.Context, id string) (storage.Document, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return storage.Document{}, err
	}
	defer done()
	d, _, _, err := s.document(ctx, id)
	return d, err
}

// ListDocuments implements storage.Store.
func (s *Store) ListDocuments(ctx context.Context, opts storage.ListOptions) ([]storage.Document, string, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, "", err
	}
	defer done()
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	var ids []string
	lister, err := s.docs.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return []storage.Document{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("list documents: %w", wrap(err))
	}
	for k := range lister.Keys() {
		if id := unkey(k); id > opts.After {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]storage.Document, 0, min(limit, len(ids)))
	next := ""
	for i, id := range ids {
		if len(out) == limit {
			next = ids[i-1]
			break
		}
		d, _, _, err := s.document(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, next, nil
}

// DeleteDocument implements storage.Store.
func (s *Store) DeleteDocument(ctx context.Context, id string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	m, rev, err := s.getMeta(ctx, id)
	if err != nil {
		return err
	}
	s.forgetTail(id)
	if err := s.docs.Purge(ctx, key(id), jetstream.LastRevision(rev)); err != nil {
		if wrongLast(err) {
			return fmt.Errorf("%w: document %s changed while being deleted", storage.ErrConflict, id)
		}
		return fmt.Errorf("document %s: %w", id, wrap(err))
	}
	// What belonged to the generation goes; a new document of the id has
	// another.
	if err := s.log.Purge(ctx, jetstream.WithPurgeSubject(s.logSubject(id, m.Gen))); err != nil {
		return fmt.Errorf("document %s: purge the log: %w", id, wrap(err))
	}
	for _, kv := range []jetstream.KeyValue{s.snaps, s.subs} {
		if err := purgePrefix(ctx, kv, scope(id, m.Gen)); err != nil {
			return fmt.Errorf("document %s: %w", id, err)
		}
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeDelete, Doc: id, Time: time.Now()})
}

// keysWithPrefix lists a bucket's keys that start with prefix.
func keysWithPrefix(ctx context.Context, kv jetstream.KeyValue, prefix string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, wrap(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

func purgePrefix(ctx context.Context, kv jetstream.KeyValue, prefix string) error {
	keys, err := keysWithPrefix(ctx, kv, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := kv.Purge(ctx, k); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// SetTitle implements storage.Store.
func (s *Store) SetTitle(ctx context.Context, id, title string) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := s.updateMeta(ctx, id, func(m *meta) error { m.Title = title; return nil }); err != nil {
		return err
	}
	return s.logChange(ctx, changeEvent{Kind: storage.ChangeRename, Doc: id, Title: title, Time: time.Now()})
}

// Commit implements storage.Store. Each append is its own publish (a
// compare-and-swap on its document's log); they are made in order, so two
// appends to one document in one call both succeed when the second builds
// on the first.
func (s *Store) Commit(ctx context.Context, appends []storage.Append) ([]error, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	results := make([]error, len(appends))
	committed := 0
	for i, a := range appends {
		results[i] = s.append(ctx, a)
		if results[i] == nil {
			committed++
		}
		if errors.Is(results[i], storage.ErrClosed) && committed == 0 {
			return nil, results[i]
		}
	}
	return results, nil
}

func (s *Store) append(ctx context.Context, a storage.Append) error {
	if err := storage.CheckAppend(a); err != nil {
		return err
	}
	var gen string
	var seq uint64
	if t, ok := s.cachedTail(a.DocID); ok && t.head == a.Head && a.Snapshot == nil {
		// At the head this node last saw: publish at once; if another
		// writer moved it, the publish is refused (a conflict).
		gen, seq = t.gen, t.seq
	} else {
		d, m, tailSeq, err := s.document(ctx, a.DocID)
		if err != nil {
			return err
		}
		if a.Head != d.Head {
			return fmt.Errorf("%w: document %s: append expects head %d, the head is %d", storage.ErrConflict, a.DocID, a.Head, d.Head)
		}
		if a.Snapshot != nil && a.Snapshot.Rev < d.Oldest {
			return fmt.Errorf("%w: document %s: snapshot at revision %d is older than the retained history (from %d)", storage.ErrInvalid, a.DocID, a.Snapshot.Rev, d.Oldest)
		}
		gen, seq = m.Gen, tailSeq
	}
	e := entry{Records: make([]record, len(a.Records))}
	for i, r := range a.Records {
		e.Records[i] = record{Rev: r.Rev, Op: r.Op.AppendJSON(nil), Source: r.Source, Seq: r.Seq, User: r.User, Time: r.Time.UTC().Round(0)}
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: document %s: %v", storage.ErrInvalid, a.DocID, err)
	}
	subject := s.logSubject(a.DocID, gen)
	var ack *jetstream.PubAck
	err = untilAnswered(ctx, func() (err error) {
		ack, err = s.js.Publish(ctx, subject, body,
			jetstream.WithExpectLastSequencePerSubject(seq),
			jetstream.WithMsgID(fmt.Sprintf("%s.%s.%d.%s", a.DocID, gen, a.Head+1, s.writer)))
		return err
	})
	if err != nil {
		s.forgetTail(a.DocID)
		var apiErr *jetstream.APIError
		switch {
		case wrongLast(err):
			if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
				// A replicated stream refuses while another writer's
				// append to the subject is still being replicated: wait
				// until it is readable, so that the caller, reading what
				// beat it, finds it.
				s.awaitTailPast(ctx, a.DocID, gen, seq)
			}
			return fmt.Errorf("%w: document %s: another writer appended at head %d first", storage.ErrConflict, a.DocID, a.Head)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errDuplicateInProcess:
			// An earlier publish of this append is still being stored.
			return fmt.Errorf("%w: document %s: an append at head %d is being stored", storage.ErrConflict, a.DocID, a.Head)
		}
		return fmt.Errorf("document %s: publish: %w", a.DocID, wrap(err))
	}
	if ack.Duplicate {
		s.forgetTail(a.DocID)
		// The same id within the window: a publish of this append was
		// stored before. Reading the log says what it holds.
		return fmt.Errorf("%w: document %s: a commit at head %d was already stored", storage.ErrConflict, a.DocID, a.Head)
	}
	s.noteTail(a.DocID, tailCache{gen: gen, head: e.Records[len(e.Records)-1].Rev, seq: ack.Sequence})
	select {
	case s.indexq <- indexJob{a.DocID, gen, e.Records}:
	default:
		// The indexer is behind: a lookup indexes from the log.
	}
	if snap := a.Snapshot; snap != nil {
		// Where its tail starts is known from this publish, unless the
		// snapshot is older than the append (then it is looked for).
		var from uint64
		switch first, last := e.Records[0].Rev, e.Records[len(e.Records)-1].Rev; {
		case snap.Rev == last:
			from = ack.Sequence + 1
		case snap.Rev >= first-1:
			from = ack.Sequence
		}
		if err := s.putSnapshot(ctx, a.DocID, gen, *snap, from); err != nil {
			return err
		}
	}
	return nil
}

// awaitTailPast waits (briefly: ctx and a second bound it) until the
// document's last message is not the one at seq.
func (s *Store) awaitTailPast(ctx context.Context, id, gen string, seq uint64) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		if _, last, _, err := s.tail(ctx, id, gen); err != nil || last != seq {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// indexer writes the exactly-once entries of committed records, in commit
// order, until the store closes.
func (s *Store) indexer() {
	defer s.wg.Done()
	for job := range s.indexq {
		if s.indexCtx.Err() != nil {
			continue // closed: drain without writing
		}
		ctx, cancel := context.WithTimeout(s.indexCtx, s.timeout)
		err := s.index(ctx, job.id, job.gen, job.recs)
		cancel()
		_ = err // a lookup repairs what failed here
	}
}

// index writes the exactly-once entries of recs and moves the document's
// watermark past them.
func (s *Store) index(ctx context.Context, id, gen string, recs []record) error {
	for _, r := range recs {
		if r.Source == "" {
			continue
		}
		k := subKey(id, gen, r.Source, r.Seq)
		err := untilAnswered(ctx, func() error { _, err := s.subs.Create(ctx, k, []byte(strconv.FormatInt(r.Rev, 10))); return err })
		if err != nil && !wrongLast(err) {
			return fmt.Errorf("document %s: exactly-once index: %w", id, wrap(err))
		}
	}
	// The watermark only moves over a contiguous run: records indexed
	// past a gap (a job dropped, another node's commit not indexed yet)
	// are indexed again by the lookup that repairs the gap.
	first, last := recs[0].Rev, recs[len(recs)-1].Rev
	return s.updateMeta(ctx, id, func(m *meta) error {
		if m.Gen == gen && m.Indexed >= first-1 && m.Indexed < last {
			m.Indexed = last
		}
		return nil
	})
}

// scan calls f with the log's records of a document, in order, from the
// message at sequence from on, until f returns false or the log's end.
// f's ends says whether r is the last record of its message.
func (s *Store) scan(ctx context.Context, id, gen string, from uint64, f func(r record, seq uint64, ends bool) bool) error {
	subject := s.logSubject(id, gen)
	for seq := max(from, 1); ; seq++ {
		var msg *jetstream.RawStreamMsg
		err := untilAnswered(ctx, func() (err error) {
			msg, err = s.log.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("document %s: log: %w", id, wrap(err))
		}
		var e entry
		if err := json.Unmarshal(msg.Data, &e); err != nil {
			return fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, msg.Sequence)
		}
		for i, r := range e.Records {
			if !f(r, msg.Sequence, i == len(e.Records)-1) {
				return nil
			}
		}
		seq = msg.Sequence
	}
}

// bulkRead: a read of more records than this streams the messages
// through a consumer instead of one request per message (a cold open, a
// backup, a client far behind).
const bulkRead = 32

// scanBulk is scan through an ordered consumer: the messages come in
// batches, without a request each. f must return false at the record it
// needs last: the consumer does not say where the log ends, so a read
// past it waits for a second before it ends.
func (s *Store) scanBulk(ctx context.Context, id, gen string, from uint64, f func(r record, seq uint64, ends bool) bool) error {
	cons, err := s.js.OrderedConsumer(ctx, s.log.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.logSubject(id, gen)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	})
	if err != nil {
		return fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	for {
		n, done, err := s.fetch(ctx, cons, id, f)
		switch {
		case err != nil:
			return err
		case done || n == 0: // f is done, or the end of the log
			return nil
		}
	}
}

// fetch passes f the records of one batch of cons's messages (n: how many
// messages); done when f returned false.
func (s *Store) fetch(ctx context.Context, cons jetstream.Consumer, id string, f func(r record, seq uint64, ends bool) bool) (n int, done bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	batch, err := cons.Fetch(256, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, false, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	for msg := range batch.Messages() {
		n++
		meta, err := msg.Metadata()
		if err != nil {
			return n, false, fmt.Errorf("document %s: log: %w", id, err)
		}
		var e entry
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			return n, false, fmt.Errorf("%w: document %s: log message %d", storage.ErrCorrupt, id, meta.Sequence.Stream)
		}
		for i, r := range e.Records {
			if !f(r, meta.Sequence.Stream, i == len(e.Records)-1) {
				return n, true, nil
			}
		}
	}
	switch err := batch.Error(); {
	case ctx.Err() != nil:
		return n, false, fmt.Errorf("document %s: log: %w", id, ctx.Err())
	case err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded):
		return n, false, fmt.Errorf("document %s: log: %w", id, wrap(err))
	}
	return n, false, nil
}

// snapshotAt returns the newest snapshot at or before rev.
func (s *Store) snapshotAt(ctx context.Context, id, gen string, rev int64) (storage.Snapshot, snapValue, bool, error) {
	keys, err := keysWithPrefix(ctx, s.snaps, scope(id, gen))
	if err != nil {
		return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("document %s: snapshots: %w", id, err)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		r, err := strconv.ParseInt(keys[i][strings.LastIndexByte(keys[i], '.')+1:], 10, 64)
		if err != nil || r > rev {
			continue
		}
		var e jetstream.KeyValueEntry
		err = untilAnswered(ctx, func() (err error) { e, err = s.snaps.Get(ctx, keys[i]); return err })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("document %s: snapshot %d: %w", id, r, wrap(err))
		}
		var v snapValue
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return storage.Snapshot{}, snapValue{}, false, fmt.Errorf("%w: document %s: snapshot %d", storage.ErrCorrupt, id, r)
		}
		return storage.Snapshot{Rev: r, Content: v.Text}, v, true, nil
	}
	return storage.Snapshot{}, snapValue{}, false, nil
}

// Records implements storage.Store.
func (s *Store) Records(ctx context.Context, id string, from, to int64) ([]storage.Record, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return nil, err
	}
	if err := storage.CheckRecordsRange(id, from, to); err != nil {
		return nil, err
	}
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := storage.CheckRecords(d, from, to); err != nil {
		return nil, err
	}
	return s.records(ctx, id, m, from, to)
}

func (s *Store) records(ctx context.Context, id string, m meta, from, to int64) ([]storage.Record, error) {
	gen, t := m.Gen, doctype.MustLookup(m.Type)
	out := make([]storage.Record, 0, to-from)
	if from == to {
		return out, nil
	}
	start := s.startAfter(id, gen, from)
	if start == 0 {
		start = 1
		if _, v, ok, err := s.snapshotAt(ctx, id, gen, from); err != nil {
			return nil, err
		} else if ok {
			start = v.From
		}
	}
	var endSeq uint64 // the message ending exactly at to, if the read ended there
	var decodeErr error
	collect := func(r record, seq uint64, ends bool) bool {
		if r.Rev > from && r.Rev <= to {
			rec, err := r.record(t)
			if err != nil {
				decodeErr = fmt.Errorf("document %s: %w", id, err)
				return false
			}
			out = append(out, rec)
		}
		if r.Rev == to && ends {
			endSeq = seq
		}
		return r.Rev < to
	}
	var err error
	if to-from > bulkRead {
		err = s.scanBulk(ctx, id, gen, start, collect)
		if err != nil && unanswered(err) && ctx.Err() == nil {
			// No consumer now (a stream between leaders): a message at a
			// time, each sent again until answered.
			out, endSeq, decodeErr = out[:0], 0, nil
			err = s.scan(ctx, id, gen, start, collect)
		}
	} else {
		err = s.scan(ctx, id, gen, start, collect)
	}
	if err == nil && decodeErr != nil {
		return nil, decodeErr
	}
	if err == nil && endSeq > 0 {
		s.noteEnd(id, gen, tailEnd{to, endSeq})
	}
	if err != nil {
		return nil, err
	}
	for i, r := range out {
		if r.Rev != from+1+int64(i) {
			return nil, fmt.Errorf("%w: document %s: the log has revision %d where %d belongs", storage.ErrCorrupt, id, r.Rev, from+1+int64(i))
		}
	}
	if int64(len(out)) != to-from {
		return nil, fmt.Errorf("%w: document %s: the log holds %d of revisions %d..%d", storage.ErrCorrupt, id, len(out), from+1, to)
	}
	return out, nil
}

// Snapshot implements storage.Store.
func (s *Store) Snapshot(ctx context.Context, id string, rev int64) (storage.Snapshot, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return storage.Snapshot{}, err
	}
	if rev < 0 {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: snapshot at negative revision %d", storage.ErrInvalid, id, rev)
	}
	m, _, err := s.getMeta(ctx, id)
	if err != nil {
		return storage.Snapshot{}, err
	}
	snap, _, ok, err := s.snapshotAt(ctx, id, m.Gen, rev)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if !ok || snap.Rev < m.Oldest {
		return storage.Snapshot{}, fmt.Errorf("%w: document %s: no snapshot at or before revision %d", storage.ErrNotFound, id, rev)
	}
	return snap, nil
}

// SaveSnapshot implements storage.Store.
func (s *Store) SaveSnapshot(ctx context.Context, id string, snap storage.Snapshot) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := storage.CheckID(id); err != nil {
		return err
	}
	if !utf8.ValidString(snap.Content) {
		return fmt.Errorf("%w: document %s: snapshot at revision %d is not valid UTF-8", storage.ErrInvalid, id, snap.Rev)
	}
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return err
	}
	if err := storage.CheckSnapshotRev(d, snap.Rev); err != nil {
		return err
	}
	return s.putSnapshot(ctx, id, m.Gen, snap, 0)
}

// putSnapshot saves snap with the log sequence its tail starts from: the
// message holding revision snap.Rev+1, or, with no record after it yet,
// the next message on the log. A caller that knows it passes it as from
// (0: look for it in the log).
func (s *Store) putSnapshot(ctx context.Context, id, gen string, snap storage.Snapshot, from uint64) error {
	if from == 0 {
		var err error
		if from, err = s.tailStart(ctx, id, gen, snap.Rev); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(snapValue{Text: snap.Content, From: from})
	if err := untilAnswered(ctx, func() error { _, err := s.snaps.Put(ctx, snapKey(id, gen, snap.Rev), b); return err }); err != nil {
		return fmt.Errorf("document %s: snapshot %d: %w", id, snap.Rev, wrap(err))
	}
	return nil
}

// tailStart finds the log sequence of the message holding revision rev+1
// (or, when there is none yet, the one after the last message read),
// reading forward from the snapshot before rev. Not the log's tail at the
// time: another writer may append rev+1 between the read and that.
func (s *Store) tailStart(ctx context.Context, id, gen string, rev int64) (uint64, error) {
	start := uint64(1)
	if _, v, ok, err := s.snapshotAt(ctx, id, gen, rev); err != nil {
		return 0, err
	} else if ok {
		start = v.From
	}
	from, last := uint64(0), uint64(0)
	err := s.scan(ctx, id, gen, start, func(r record, seq uint64, _ bool) bool {
		last = seq
		if r.Rev > rev {
			from = seq
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case from > 0:
		return from, nil
	case last > 0:
		return last + 1, nil
	}
	return start, nil
}

// LookupSubmission implements storage.Store.
func (s *Store) LookupSubmission(ctx context.Context, id, source string, seq uint64) (int64, bool, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer done()
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return 0, false, err
	}
	if source == "" || len(source) > storage.MaxSourceLen {
		return 0, false, nil
	}
	if err := s.catchUpIndex(ctx, id, d, m); err != nil {
		return 0, false, err
	}
	var e jetstream.KeyValueEntry
	err = untilAnswered(ctx, func() (err error) { e, err = s.subs.Get(ctx, subKey(id, m.Gen, source, seq)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("document %s: exactly-once index: %w", id, wrap(err))
	}
	rev, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: document %s: exactly-once entry", storage.ErrCorrupt, id)
	}
	return rev, true, nil
}

// catchUpIndex indexes the records the exactly-once index is behind on: a
// writer that died between the log and the index, an indexer behind.
func (s *Store) catchUpIndex(ctx context.Context, id string, d storage.Document, m meta) error {
	if m.Indexed >= d.Head {
		return nil
	}
	var recs []record
	start := uint64(1)
	if _, v, ok, err := s.snapshotAt(ctx, id, m.Gen, m.Indexed); err != nil {
		return err
	} else if ok {
		start = v.From
	}
	if err := s.scan(ctx, id, m.Gen, start, func(r record, _ uint64, _ bool) bool {
		if r.Rev > m.Indexed {
			recs = append(recs, r)
		}
		return true
	}); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	return s.index(ctx, id, m.Gen, recs)
}

// Compact implements storage.Store.
func (s *Store) Compact(ctx context.Context, id string, before int64) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	d, m, _, err := s.document(ctx, id)
	if err != nil {
		return err
	}
	if err := storage.CheckCompact(d, before); err != nil {
		return err
	}
	if before <= d.Oldest {
		return nil
	}
	// The records about to go must be in the exactly-once index: it is
	// all that will be left of them.
	if err := s.catchUpIndex(ctx, id, d, m); err != nil {
		return err
	}
	// A snapshot at before, so that loading and history keep working.
	snap, v, ok, err := s.snapshotAt(ctx, id, m.Gen, before)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: document %s: no snapshot at or before %d", storage.ErrCorrupt, id, before)
	}
	if snap.Rev != before {
		recs, err := s.records(ctx, id, m, snap.Rev, before)
		if err != nil {
			return err
		}
		rope, err := doctype.MustLookup(m.Type).NewDocument(snap.Content)
		if err != nil {
			return fmt.Errorf("%w: document %s: snapshot %d: %v", storage.ErrCorrupt, id, snap.Rev, err)
		}
		for _, r := range recs {
			if err := rope.Apply(r.Op); err != nil {
				return fmt.Errorf("%w: document %s: revision %d does not apply: %v", storage.ErrCorrupt, id, r.Rev, err)
			}
		}
		if err := s.putSnapshot(ctx, id, m.Gen, storage.Snapshot{Rev: before, Content: rope.Content()}, 0); err != nil {
			return err
		}
		_, v, _, err = s.snapshotAt(ctx, id, m.Gen, before)
		if err != nil {
			return err
		}
	}
	if err := s.updateMeta(ctx, id, func(mm *meta) error {
		if mm.Gen != m.Gen {
			return fmt.Errorf("%w: document %s was deleted and created again", storage.ErrConflict, id)
		}
		mm.Oldest = max(mm.Oldest, before)
		return nil
	}); err != nil {
		return err
	}
	// The messages wholly before the new oldest revision, and the
	// snapshots before it, go; the document's last message always stays
	// (it says the head).
	_, last, _, err := s.tail(ctx, id, m.Gen)
	if err != nil {
		return err
	}
	if upTo := min(v.From, last); upTo > 1 {
		if err := s.log.Purge(ctx, jetstream.WithPurgeSubject(s.logSubject(id, m.Gen)), jetstream.WithPurgeSequence(upTo)); err != nil {
			return fmt.Errorf("document %s: purge the log: %w", id, wrap(err))
		}
	}
	keys, err := keysWithPrefix(ctx, s.snaps, scope(id, m.Gen))
	if err != nil {
		return err
	}
	for _, k := range keys {
		r, err := strconv.ParseInt(k[strings.LastIndexByte(k, '.')+1:], 10, 64)
		if err == nil && r < before {
			if err := s.snaps.Purge(ctx, k); err != nil {
				return fmt.Errorf("document %s: %w", id, wrap(err))
			}
		}
	}
	return nil
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
