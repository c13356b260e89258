package collab

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// ClientInfo describes a connecting client.
type ClientInfo struct {
	// Key proves ownership of the client's source: the source is derived
	// from it (SourceOf), so only whoever holds the key can submit as that
	// source. The client keeps it with its unsent edits, across reloads and
	// reconnects. "" makes the server issue one, sent back in hello.
	Key string
	// Source, if given, must be SourceOf(Key): a client that names a source
	// without its key is refused (source_denied). Set by Connect.
	Source string
	// KeyIssued: the server generated Key (so hello carries it). Set by
	// Connect.
	KeyIssued bool
	// User, Name and Color are shown to other participants: what the
	// client says in open mode, what its token says otherwise.
	User, Name, Color string
	// Owner, if set (the authenticated user), is part of what the source
	// is derived from: a source belongs to a user and a key.
	Owner string
	// ReadOnly: the client may read and show its presence, not edit (its
	// ops are refused with forbidden).
	ReadOnly bool
	// LastRev is the last revision the client saw, to catch up from; -1 for
	// a client that has nothing.
	LastRev int64
	// Addr is the client's network address (behind trusted proxies, the one
	// they forwarded): its connections share one budget. "" leaves the
	// connection out of the per-address budget (a loopback peer, which may
	// be a reverse proxy for everyone).
	Addr string
}

// SourceOf returns the source id that key owns. Sources are public (every
// op carries its source); keys are not, and a source cannot be turned back
// into its key, so knowing a source is no way to submit as it.
func SourceOf(key string) string {
	sum := sha256.Sum256([]byte("tandem source\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// sourceOf is SourceOf for an authenticated owner: the same key under
// another user is another source.
func sourceOf(owner, key string) string {
	if owner == "" {
		return SourceOf(key)
	}
	return SourceOf(owner + "\x00" + key)
}

// Key sizes: at least 128 bits of a client's randomness, in URL-safe
// characters.
const (
	minKeyLen = 22
	maxKeyLen = 128
)

func checkKey(key string) error {
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return fmt.Errorf("a source key is %d to %d characters", minKeyLen, maxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return errors.New("a source key has only letters, digits, '-' and '_'")
		}
	}
	return nil
}

func newKey() string {
	b := make([]byte, 18)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Config tunes a Manager. Zero fields take the defaults in parentheses.
type Config struct {
	// SnapshotEvery: a snapshot is saved every this many revisions (100) —
	// more rarely for a large document whose ops are small next to it (see
	// docs/protocol.md) — so loading reads a bounded number of records.
	SnapshotEvery int64
	// IdleTimeout: a document with no clients is unloaded after this long,
	// with a final snapshot (30s).
	IdleTimeout time.Duration
	// HistoryInMemory: the most committed records a document keeps in
	// memory for transforming late ops and catching clients up (1000);
	// fewer when every client's next message is based later (at least
	// 100). Older ones are read from the store off the document's loop.
	HistoryInMemory int
	// MaxLag: an op or a selection more than this many revisions behind
	// the head is refused with rev_too_old (2000).
	MaxLag int64
	// CatchUpMax: a reconnecting client further behind than this many
	// revisions gets the text instead of the ops (5000).
	CatchUpMax int64
	// MaxInsertBytes bounds the text one op inserts (256 KiB).
	MaxInsertBytes int
	// MaxConflicts: commits in a row a document may lose to other writers
	// (a cluster) before it gives up and its clients resync (100).
	MaxConflicts int
	// MaxDocBytes bounds a document's size (8 MiB).
	MaxDocBytes int
	// MaxBatch bounds the appends in one durable write (256).
	MaxBatch int
	// RatePerSecond and RateBurst limit each connection's work (200, 400):
	// a frame costs one token, and an op or a selection costs one more per
	// WorkPerToken revisions it must be transformed through (50).
	RatePerSecond, RateBurst float64
	WorkPerToken             int64
	// BytesPerToken: an op's text costs a token per this many bytes (16 KiB).
	BytesPerToken int64
	// MaxOpParts bounds the components of one op (5000): past it the op
	// is refused with too_large before any work.
	MaxOpParts int
	// SharedRatePerSecond and SharedBurst bound the work (the tokens past
	// each frame's first) every connection of one client address may make
	// the server do together, and every connection of one authenticated
	// user (a connection's RatePerSecond and RateBurst): more connections,
	// or reconnecting, buy no more of it.
	SharedRatePerSecond, SharedBurst float64
	// DocWorkPerSecond and DocWorkBurst bound the work (the tokens past
	// each frame's first) all the connections of one document may make it
	// do (50× a connection's): typing at the head costs none of it.
	DocWorkPerSecond, DocWorkBurst float64
	// MaxClientsPerDoc bounds a document's connections (2000); past it a
	// join is refused with document_full.
	MaxClientsPerDoc int
	// HelloPeers bounds the peers a hello lists with their selections
	// (100); the others come as a count ("more").
	HelloPeers int
	// PresenceCrowd and PresenceInterval: in a document with more than
	// PresenceCrowd connections (20), selections are not sent as they
	// come but every PresenceInterval (100ms), the latest of each client
	// that moved, in one frame per peer; with more than ten times
	// PresenceCrowd connections the interval grows in proportion (2,000
	// connections: 1 s).
	PresenceCrowd    int
	PresenceInterval time.Duration
	// CommitLinger: after a commit, a document's next append may wait
	// this long for the ops of the clients it just acknowledged, so that
	// they share one synced write (throughput when many clients type as
	// fast as acks come). It stops waiting when the clients do not
	// answer that fast. 0 never waits.
	CommitLinger time.Duration
	// FanOutPace: a document of 16 connections or more makes at most one
	// durable write per FanOutPace per connection (at most 20 ms): each
	// commit costs every connection a frame, and under load this makes
	// the frames carry more ops (without it a busy document can settle
	// into committing ops one by one, too slow to catch up). An op that
	// comes after a quiet interval is written at once. 0 never waits.
	// Default 25µs (200 connections: 5 ms).
	FanOutPace time.Duration
	// QueueMessages and QueueBytes bound a connection's outbound queue; past
	// them it is closed for resync (4096, 8 MiB).
	QueueMessages, QueueBytes int
	// Observer, if set, is told what the documents do (metrics).
	Observer Observer
	// Broker, if set, carries commits between Managers that share the
	// store (a cluster); without it this Manager assumes it is the store's
	// only writer, and still handles a conflict if it is not.
	Broker Broker
	// TurnWait: how long a document holds its next commit when another
	// Manager lost a race for it and asks for a turn (25ms; with a
	// Broker only; negative: never).
	TurnWait time.Duration
	// Presence, if set, carries presence between the nodes of a cluster
	// (see PresenceBroker): this Manager's participants are shown on the
	// other nodes and theirs here. Node names this Manager among them (a
	// random id); every PresenceHeartbeat (2s) it sends each open
	// document's whole list, and a node not heard of for three
	// heartbeats has its participants removed.
	Presence          PresenceBroker
	Node              string
	PresenceHeartbeat time.Duration
	// CheckOp, if set, may refuse an op before it enters its document: a
	// validation or moderation rule of the application. It runs on the
	// connection's reading goroutine, after the op is parsed and paid for
	// and never on the document's, so a slow check slows that connection
	// only; ops of one connection are checked in order. The op is the one
	// the client sent, made on revision Rev and not yet transformed. An
	// error refuses it: the client gets an error with code "rejected", the
	// op's seq, and the error's Reason if it is a *Refusal, and undoes the
	// op. A panic in the hook is a refusal too.
	CheckOp func(ctx context.Context, op OpCheck) error
	// Logger (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// OpCheck is an op on its way into a document (Config.CheckOp).
type OpCheck struct {
	Doc    string
	Type   string // the document type's name
	User   string // the authenticated user ("" in open mode)
	Source string // the client's source id
	Seq    uint64
	Rev    int64 // the revision the op was made on
	Op     doctype.Op
}

// Refusal is an error a CheckOp hook returns to refuse an op with a
// reason of its own: a short stable code (letters, digits, '_', '-', '.';
// at most 64 bytes) that the client's application can act on, and a
// message for people.
type Refusal struct {
	Reason  string
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

func (c *Config) setDefaults() {
	positive(&c.SnapshotEvery, 100)
	positive(&c.IdleTimeout, 30*time.Second)
	positive(&c.HistoryInMemory, 1000)
	positive(&c.MaxLag, 2000)
	positive(&c.CatchUpMax, 5000)
	positive(&c.MaxInsertBytes, 256<<10)
	positive(&c.MaxConflicts, 100)
	positive(&c.MaxDocBytes, 8<<20)
	positive(&c.MaxBatch, 256)
	positive(&c.RatePerSecond, 200)
	positive(&c.RateBurst, 400)
	positive(&c.WorkPerToken, 50)
	positive(&c.BytesPerToken, 16<<10)
	positive(&c.MaxOpParts, 5000)
	positive(&c.SharedRatePerSecond, c.RatePerSecond)
	positive(&c.SharedBurst, c.RateBurst)
	positive(&c.DocWorkPerSecond, 50*c.RatePerSecond)
	positive(&c.DocWorkBurst, 50*c.RateBurst)
	positive(&c.MaxClientsPerDoc, 2000)
	positive(&c.HelloPeers, 100)
	positive(&c.PresenceCrowd, 20)
	positive(&c.PresenceInterval, 100*time.Millisecond)
	positive(&c.QueueMessages, 4096)
	positive(&c.QueueBytes, 8<<20)
	positive(&c.PresenceHeartbeat, 2*time.Second)
	if c.Node == "" {
		c.Node = uuid.NewString()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// positive sets *p to def unless it is positive already: a zero field of
// a config takes its default.
func positive[T int | int64 | float64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

func (c *Config) turnWait() time.Duration {
	switch {
	case c.Broker == nil || c.TurnWait < 0:
		return 0
	case c.TurnWait == 0:
		return 25 * time.Millisecond
	}
	return c.TurnWait
}

func (c *Config) core() coreConfig {
	return coreConfig{
		SnapshotEvery:    c.SnapshotEvery,
		HistoryInMemory:  c.HistoryInMemory,
		MaxLag:           c.MaxLag,
		CatchUpMax:       c.CatchUpMax,
		MaxInsertBytes:   c.MaxInsertBytes,
		MaxConflicts:     c.MaxConflicts,
		MaxDocBytes:      c.MaxDocBytes,
		WorkPerToken:     c.WorkPerToken,
		MaxWork:          int64(c.RateBurst) * c.WorkPerToken,
		MaxClients:       c.MaxClientsPerDoc,
		HelloPeers:       c.HelloPeers,
		PresenceCrowd:    c.PresenceCrowd,
		PresenceInterval: c.PresenceInterval,
		CommitLinger:     c.CommitLinger,
		FanOutPace:       c.FanOutPace,
		FanOutPaceFrom:   16,
		RemotePresence:   c.Presence != nil,
		Node:             c.Node,
		PresenceTTL:      3 * c.PresenceHeartbeat,
		TurnWait:         c.turnWait(),
		OtherWriters:     c.Broker != nil,
	}
}

// ErrShuttingDown is returned by Connect once Close has begun.
var ErrShuttingDown = errors.New("collab: server is shutting down")

// Manager owns the open documents (one driver each) and the group committer
// they share. It is where a document's reference counting lives: a
// document stays loaded while it has clients (its core knows them) or
// Connects on their way to it (joining, counted under mu).
type Manager struct {
	store     storage.Store
	cfg       Config
	log       *slog.Logger
	committer *committer

	mu       sync.Mutex
	docs     map[string]*driver
	closing  bool
	writeErr error          // the write gate's state, for documents opened later
	running  sync.WaitGroup // drivers that have not finished
	io       sync.WaitGroup // their reads, lookups and snapshots

	queued queueDepth // messages waiting in the connections' outboxes

	// The budgets shared by the connections of one client address, and
	// of one authenticated user.
	addrBudgets, userBudgets *budgets

	renameMu sync.Mutex // one Rename at a time: stored and told in the same order
}

// NewManager returns a manager over store. Close it to shut down.
func NewManager(store storage.Store, cfg Config) *Manager {
	cfg.setDefaults()
	m := &Manager{store: store, cfg: cfg, log: cfg.Logger, docs: map[string]*driver{},
		addrBudgets: newBudgets(cfg.SharedRatePerSecond, int(cfg.SharedBurst)),
		userBudgets: newBudgets(cfg.SharedRatePerSecond, int(cfg.SharedBurst))}
	m.committer = newCommitter(store, cfg.MaxBatch, cfg.Logger, cfg.Observer)
	return m
}

// Client is one connection's handle on its document.
type Client struct {
	id      string
	info    ClientInfo
	d       *driver
	box     *outbox
	limiter *rate.Limiter // the connection's own budget
	// The budgets it shares with the other connections of its address and
	// of its user (nil: none), released by Disconnect.
	addrBudget, userBudget *rate.Limiter
	released               sync.Once
}

// ID is the connection's client id, as other participants see it.
func (c *Client) ID() string { return c.id }

// Source is the client's source id.
func (c *Client) Source() string { return c.info.Source }

// Connect joins conn to document docID: the document is loaded if it is not
// open, the client gets its hello (the document, or the ops since
// info.LastRev, and the peers), and the others get a join. It fails with an
// *Error (not_found, source_denied, bad_message, internal) or
// ErrShuttingDown.
func (m *Manager) Connect(ctx context.Context, docID string, conn Conn, info ClientInfo) (*Client, error) {
	if err := storage.CheckID(docID); err != nil {
		return nil, protoErr(CodeNotFound, "no document %q", docID)
	}
	if len(info.User) > 256 || len(info.Name) > 256 || len(info.Color) > 64 {
		return nil, protoErr(CodeBadMessage, "user, name or color too long")
	}
	switch {
	case info.Key != "":
		if err := checkKey(info.Key); err != nil {
			return nil, protoErr(CodeSourceDenied, "%v", err)
		}
		if src := sourceOf(info.Owner, info.Key); info.Source != "" && info.Source != src {
			return nil, protoErr(CodeSourceDenied, "source %q does not belong to this key", info.Source)
		} else {
			info.Source = src
		}
	case info.Source != "":
		return nil, protoErr(CodeSourceDenied, "source %q given without its key", info.Source)
	default:
		info.Key, info.KeyIssued = newKey(), true
		info.Source = sourceOf(info.Owner, info.Key)
	}
	c := &Client{
		id:      uuid.NewString(),
		info:    info,
		limiter: rate.NewLimiter(rate.Limit(m.cfg.RatePerSecond), int(m.cfg.RateBurst)),
	}
	now := m.cfg.Now()
	if info.Addr != "" {
		c.addrBudget = m.addrBudgets.get(info.Addr, now)
	}
	if info.Owner != "" {
		c.userBudget = m.userBudgets.get(info.Owner, now)
	}
	connected := false
	defer func() {
		if !connected {
			c.release(m) // (c.d may not be set: Connect can fail before it is)
		}
	}()
	// A frame the transport refuses means the connection is gone: the
	// document hears of it at once, not when the transport gets round to a
	// disconnect. Off the caller's goroutine, which may be the driver's.
	c.box = newOutbox(conn, m.cfg.QueueMessages, m.cfg.QueueBytes, func() {
		go c.d.post(input{ev: evOverflow{Client: c.id}})
	})
	c.box.depth = &m.queued
	// A driver that finished between acquire and the join (unloaded, or
	// failed) is no longer in the map: try a fresh one.
	for range 3 {
		d, err := m.acquire(ctx, docID)
		if err != nil {
			return nil, err
		}
		reply := make(chan *Error, 1)
		c.d = d
		if !d.post(input{ev: evJoin{Client: c.id, Info: info}, box: c.box, limiter: c.limiter, reply: reply}) {
			m.joined(d)
			continue
		}
		select {
		case e := <-reply:
			if e != nil {
				return nil, e
			}
			connected = true
			return c, nil
		case <-d.quit:
			continue
		case <-ctx.Done():
			// The join goes on; when it lands the client leaves again.
			go func() {
				select {
				case e := <-reply:
					if e == nil {
						d.post(input{ev: evLeave{Client: c.id}})
					}
				case <-d.quit:
				}
			}()
			return nil, ctx.Err()
		}
	}
	return nil, protoErr(CodeInternal, "document %s is closing; retry", docID)
}

// Handle processes one text frame from the client, in the order received.
// It never blocks on other clients. The frame is paid for first, from every
// budget the connection has (budget.go), before any work is done: a client
// that cannot pay gets rate_limited, with how long to wait, and an op that
// no budget could ever pay for gets too_far_behind.
func (c *Client) Handle(frame []byte) {
	// In two calls, so that the parser's deep frames and the budgets'
	// wide ones are never on the reading goroutine's stack at once (a
	// stack grows to the deepest call it ever made, per connection).
	var msg ClientMessage
	perr := parseClientMessage(&msg, c.d.typ, frame)
	if perr == nil && msg.Type == "op" {
		perr = checkOpSize(&msg, &c.d.m.cfg)
	}
	c.handle(&msg, perr)
}

//go:noinline
func (c *Client) handle(msg *ClientMessage, perr *Error) {
	cfg := &c.d.m.cfg
	now := cfg.Now()
	total, work, distance := int64(1), int64(0), int64(0)
	if perr == nil {
		distance = c.d.head.Load() - msg.Rev
		total, work = messageCost(*msg, distance, cfg)
	}
	var behind *Error
	if burst := int64(c.limiter.Burst()); total > burst {
		if msg.Type == "op" && distance > 0 {
			// Refused before the work: the frame's token only.
			behind = tooFarBehind(msg.Seq, distance, total, burst)
			total, work = 1, 0
		} else {
			work = max(0, work-(total-burst))
			total = burst
		}
	}
	wait, ok := spend(now, price{c.limiter, total}, price{c.addrBudget, work}, price{c.userBudget, work}, price{c.d.work, work})
	if !ok {
		seq, hasSeq := uint64(0), perr == nil && msg.Type == "op"
		if hasSeq {
			seq = msg.Seq
		}
		c.reply(rateLimited(cfg, wait, distance, total, work, seq, hasSeq))
		return
	}
	switch {
	case perr != nil:
		c.reply(perr)
	case behind != nil:
		c.reply(behind)
	case cfg.CheckOp != nil && msg.Type == "op" && c.checkOp(msg) != nil:
	default:
		c.d.post(input{ev: evMessage{Client: c.id, Msg: *msg, Now: now, Paid: int(work)}})
	}
}

// checkOp asks the application's CheckOp hook about an op, and answers the
// client when it refuses.
//
//go:noinline
func (c *Client) checkOp(msg *ClientMessage) (refused *Error) {
	defer func() {
		if p := recover(); p != nil {
			c.d.m.log.Error("CheckOp hook panicked", "doc", c.d.id, "panic", p)
			refused = &Error{Code: CodeRejected, Message: "the server could not check this edit", Seq: msg.Seq, HasSeq: true}
		}
		if refused != nil {
			c.reply(refused)
		}
	}()
	err := c.d.m.cfg.CheckOp(context.Background(), OpCheck{Doc: c.d.id, Type: c.d.typ.Name(), User: c.info.Owner, Source: c.info.Source, Seq: msg.Seq, Rev: msg.Rev, Op: msg.Op})
	if err == nil {
		return nil
	}
	e := &Error{Code: CodeRejected, Message: err.Error(), Seq: msg.Seq, HasSeq: true}
	var r *Refusal
	if errors.As(err, &r) {
		e.Message = r.Message
		if validReason(r.Reason) {
			e.Reason = r.Reason
		}
	}
	return e
}

func validReason(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// The refusals Handle makes are built apart from it (and not inlined):
// Handle runs on every connection's reading goroutine, whose stack stays
// as large as the deepest call it ever made, so its frame is kept small.

//go:noinline
func tooFarBehind(seq uint64, distance, total, burst int64) *Error {
	return &Error{Code: CodeTooFarBehind, Seq: seq, HasSeq: true, Message: fmt.Sprintf(
		"this op is %d revisions behind and costs %d tokens, more than this connection's %d: catch up (reconnect with rev) and send it again", distance, total, burst)}
}

//go:noinline
func rateLimited(cfg *Config, wait time.Duration, distance, total, work int64, seq uint64, hasSeq bool) *Error {
	e := protoErr(CodeRateLimited, "too many messages: at most %.0f per second", cfg.RatePerSecond)
	e.RetryAfter = wait
	if total > 1 {
		e.Message = fmt.Sprintf("too much work: this message is %d revisions behind and costs %d tokens of the %.0f a second this connection has (the work in it, %d, comes from %.0f a second its address and its user each share, and %.0f its document)",
			distance, total, cfg.RatePerSecond, work, cfg.SharedRatePerSecond, cfg.DocWorkPerSecond)
	}
	e.Seq, e.HasSeq = seq, hasSeq
	return e
}

// checkOpSize refuses an op too large to take, before any work: too many
// parts, or more inserted text than an op may carry (transforming never
// changes what an op inserts).
//
//go:noinline
func checkOpSize(msg *ClientMessage, cfg *Config) *Error {
	if msg.Op.Parts() > cfg.MaxOpParts {
		return &Error{Code: CodeTooLarge, Seq: msg.Seq, HasSeq: true,
			Message: fmt.Sprintf("op has %d parts, at most %d", msg.Op.Parts(), cfg.MaxOpParts)}
	}
	inserted := msg.Op.InsertedBytes()
	if inserted > cfg.MaxInsertBytes {
		return &Error{Code: CodeTooLarge, Seq: msg.Seq, HasSeq: true,
			Message: fmt.Sprintf("op inserts %d bytes, at most %d", inserted, cfg.MaxInsertBytes)}
	}
	return nil
}

// HandleBinary answers a binary frame: the protocol has none. It costs a
// token like any frame.
func (c *Client) HandleBinary() {
	if wait, ok := spend(c.d.m.cfg.Now(), price{c.limiter, 1}); !ok {
		c.reply(&Error{Code: CodeRateLimited, RetryAfter: wait, Message: fmt.Sprintf("too many messages: at most %.0f per second", c.d.m.cfg.RatePerSecond)})
		return
	}
	c.reply(protoErr(CodeBadMessage, "binary frames are not part of the protocol: send JSON text frames"))
}

// reply answers the client from its reading goroutine, without the
// document.
func (c *Client) reply(e *Error) {
	c.d.m.cfg.Observer.Refused(e.Code)
	if err := c.box.push(EncodeError(e)); err != nil {
		c.d.post(input{ev: evOverflow{Client: c.id}})
	}
}

// Disconnect tells the document the connection is gone.
func (c *Client) Disconnect() {
	c.release(c.d.m)
	c.d.post(input{ev: evLeave{Client: c.id}})
}

// release gives back the shared budgets (they stay with their key until
// they have refilled).
func (c *Client) release(m *Manager) {
	c.released.Do(func() {
		if c.addrBudget != nil {
			m.addrBudgets.put(c.info.Addr)
		}
		if c.userBudget != nil {
			m.userBudgets.put(c.info.Owner)
		}
	})
}

// acquire returns the document's driver, loading the document if needed,
// with a join counted for the caller (until its join is delivered).
func (m *Manager) acquire(ctx context.Context, id string) (*driver, error) {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return nil, ErrShuttingDown
	}
	d := m.docs[id]
	creator := d == nil
	if creator {
		d = newDriver(m, id)
		m.docs[id] = d
	}
	d.joining++
	m.mu.Unlock()

	if creator {
		d.loadErr = d.load(ctx)
		m.mu.Lock()
		if d.loadErr == nil && m.closing {
			d.loadErr = ErrShuttingDown
		}
		if d.loadErr == nil {
			// Under m.mu, with closing checked: Close's Wait counts it.
			m.running.Add(1)
		} else if m.docs[id] == d {
			delete(m.docs, id)
		}
		writeErr := m.writeErr
		m.mu.Unlock()
		if d.loadErr == nil {
			d.start(writeErr)
		}
		close(d.loaded)
	}
	select {
	case <-d.loaded:
	case <-ctx.Done():
		m.joined(d)
		return nil, ctx.Err()
	}
	if d.loadErr != nil {
		m.joined(d)
		if errors.Is(d.loadErr, ErrShuttingDown) {
			return nil, ErrShuttingDown
		}
		if errors.Is(d.loadErr, storage.ErrNotFound) {
			return nil, protoErr(CodeNotFound, "no document %q", id)
		}
		m.log.Error("load document", "doc", id, "err", d.loadErr)
		return nil, protoErr(CodeInternal, "document %s could not be loaded", id)
	}
	return d, nil
}

// joined uncounts a join: delivered to the driver, or abandoned.
func (m *Manager) joined(d *driver) {
	m.mu.Lock()
	d.joining--
	m.mu.Unlock()
}

// release removes an idle document from the map unless a Connect is on its
// way to it, and reports whether it did.
func (m *Manager) release(d *driver) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d.joining > 0 {
		return false
	}
	if m.docs[d.id] == d {
		delete(m.docs, d.id)
	}
	return true
}

// detach removes a document from the map so the next Connect loads it
// afresh.
func (m *Manager) detach(d *driver) {
	m.mu.Lock()
	if m.docs[d.id] == d {
		delete(m.docs, d.id)
	}
	m.mu.Unlock()
}

// DocumentDeleted closes the connections of a document that was deleted,
// with CloseNotFound, and unloads it. Call it before deleting the document
// from the store, so that no commit lands after the delete; then Deleted.
func (m *Manager) DocumentDeleted(ctx context.Context, id string) {
	m.mu.Lock()
	d := m.docs[id]
	m.mu.Unlock()
	if d == nil {
		return
	}
	m.detach(d)
	if d.post(input{ev: evShutdown{Code: CloseNotFound, Reason: "document deleted"}}) {
		select {
		case <-d.quit:
		case <-ctx.Done():
		}
	}
}

// Deleted tells the other Managers of a cluster (through the Broker) that
// document id was deleted from the store: they close its connections.
func (m *Manager) Deleted(id string) {
	if m.cfg.Broker != nil {
		m.cfg.Broker.Signal(id, Signal{Node: m.cfg.Node, Kind: SignalDeleted})
	}
}

// Rename changes a document's title in the store and tells everyone in it
// (a title message). Renames are done one at a time, so the title the
// clients end with is the one stored.
func (m *Manager) Rename(ctx context.Context, id, title string) error {
	m.renameMu.Lock()
	defer m.renameMu.Unlock()
	if err := m.store.SetTitle(ctx, id, title); err != nil {
		return err
	}
	if m.cfg.Broker != nil {
		m.cfg.Broker.Signal(id, Signal{Node: m.cfg.Node, Kind: SignalTitle})
	}
	m.mu.Lock()
	d := m.docs[id]
	m.mu.Unlock()
	if d == nil {
		return nil // the next load reads the new title
	}
	// A document still loading may have read the old title: it hears too.
	select {
	case <-d.loaded:
	case <-ctx.Done():
		return ctx.Err()
	}
	if d.loadErr == nil {
		d.post(input{ev: evTitle{Title: title}})
	}
	return nil
}

// SetWritable opens or closes the write gate: with a non-nil err (the disk
// is nearly full, say) every document refuses submits with storage_full,
// saying err, until SetWritable(nil). Reads, joins and presence go on.
func (m *Manager) SetWritable(err error) {
	m.mu.Lock()
	m.writeErr = err
	docs := make([]*driver, 0, len(m.docs))
	for _, d := range m.docs {
		docs = append(docs, d)
	}
	m.mu.Unlock()
	for _, d := range docs {
		d.post(input{ev: evWritable{Err: err}})
	}
}

// Writable returns the write gate's state: nil while writes are taken.
func (m *Manager) Writable() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writeErr
}

// Queued returns the messages and bytes waiting in all connections'
// outbound queues.
func (m *Manager) Queued() (msgs, bytes int64) {
	return m.queued.msgs.Load(), m.queued.bytes.Load()
}

// Sent returns the frames handed to the connections' transports and the
// messages they carried, since the Manager started (messages per frame is
// how well the outbound queues batch: every frame is a write).
func (m *Manager) Sent() (frames, msgs int64) {
	return m.queued.sentFrames.Load(), m.queued.sentMsgs.Load()
}

// Open returns the number of documents loaded.
func (m *Manager) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.docs)
}

// Close shuts down: no new connections; every document finishes the
// commits it has started, acknowledges and broadcasts them, writes a final
// snapshot, and closes its connections with 1001 going away. It returns
// when all of that is done or ctx ends.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	docs := make([]*driver, 0, len(m.docs))
	for _, d := range m.docs {
		docs = append(docs, d)
	}
	clear(m.docs)
	m.mu.Unlock()
	for _, d := range docs {
		d.post(input{ev: evShutdown{Code: CloseGoingAway, Reason: "server shutting down", Snapshot: true}})
	}
	done := make(chan struct{})
	go func() { m.running.Wait(); m.io.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("collab: shutdown: %w", ctx.Err())
	}
	m.committer.close()
	return err
}
