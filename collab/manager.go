package collab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tandemdocs/tandem/storage"
)

// Conn is a hub's view of one client connection. Implementations must be
// safe for use from several goroutines and must never block.
type Conn interface {
	// Send queues one encoded server message for the client. A non-nil
	// error (ErrQueueFull) means the connection could not take it: the hub
	// closes it with CloseResync, so no message is ever silently lost.
	Send(msg []byte) error
	// Close ends the connection with a WebSocket close code and reason.
	Close(code int, reason string)
}

// ClientInfo describes a connecting client.
type ClientInfo struct {
	// Source identifies the client across reconnects (a UUID the client
	// keeps); "" makes the server assign one, sent back in hello.
	Source string
	// User, Name and Color are shown to other participants. Tandem has no
	// accounts: they are what the client says.
	User, Name, Color string
	// LastRev is the last revision the client saw, to catch up from; -1 for
	// a client that has nothing.
	LastRev int64
}

// Config tunes a Manager. Zero fields take the defaults in parentheses.
type Config struct {
	// SnapshotEvery: a snapshot is written with the records every this many
	// revisions (100), so loading reads at most that many records.
	SnapshotEvery int64
	// IdleTimeout: a document with no clients is unloaded after this long,
	// with a final snapshot (30s).
	IdleTimeout time.Duration
	// HistoryInMemory: committed records a hub keeps for transforming
	// late ops and catching clients up (1000); older ones are read from the
	// store.
	HistoryInMemory int
	// CatchUpMax: a reconnecting client further behind than this many
	// revisions gets the text instead of the ops (5000).
	CatchUpMax int64
	// MaxInsertBytes bounds the text one op inserts (256 KiB).
	MaxInsertBytes int
	// MaxDocBytes bounds a document's size (8 MiB).
	MaxDocBytes int
	// MaxBatch bounds the appends in one durable write (256).
	MaxBatch int
	// RatePerSecond and RateBurst limit each client's messages (200, 400).
	RatePerSecond, RateBurst float64
	// Logger (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.SnapshotEvery <= 0 {
		c.SnapshotEvery = 100
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.HistoryInMemory <= 0 {
		c.HistoryInMemory = 1000
	}
	if c.CatchUpMax <= 0 {
		c.CatchUpMax = 5000
	}
	if c.MaxInsertBytes <= 0 {
		c.MaxInsertBytes = 256 << 10
	}
	if c.MaxDocBytes <= 0 {
		c.MaxDocBytes = 8 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 200
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 400
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ErrShuttingDown is returned by Connect once Close has begun.
var ErrShuttingDown = errors.New("collab: server is shutting down")

// Manager owns the hubs of the open documents and the group committer they
// share.
type Manager struct {
	store     storage.Store
	cfg       Config
	log       *slog.Logger
	committer *committer

	mu      sync.Mutex
	hubs    map[string]*hub
	closing bool
	running sync.WaitGroup // hub goroutines
}

// NewManager returns a manager over store. Close it to shut down.
func NewManager(store storage.Store, cfg Config) *Manager {
	cfg.setDefaults()
	m := &Manager{store: store, cfg: cfg, log: cfg.Logger, hubs: map[string]*hub{}}
	m.committer = newCommitter(store, cfg.MaxBatch, cfg.Logger)
	return m
}

// Client is one connection's handle on its document.
type Client struct {
	c   *client
	hub *hub
}

// ID is the connection's client id, as other participants see it.
func (c *Client) ID() string { return c.c.id }

// Source is the client's source id (assigned by the server if the client
// gave none).
func (c *Client) Source() string { return c.c.info.Source }

// Connect joins conn to document docID: the document is loaded if it is not
// open, the client gets its hello (the document, or the ops since
// info.LastRev, and the peers), and the others get a join. It fails with an
// *Error (not_found, internal) or ErrShuttingDown.
func (m *Manager) Connect(ctx context.Context, docID string, conn Conn, info ClientInfo) (*Client, error) {
	if err := storage.CheckID(docID); err != nil {
		return nil, protoErr(CodeNotFound, "no document %q", docID)
	}
	if info.Source == "" {
		info.Source = uuid.NewString()
	}
	if len(info.Source) > storage.MaxSourceLen || len(info.User) > 256 || len(info.Name) > 256 || len(info.Color) > 64 {
		return nil, protoErr(CodeBadMessage, "source, user, name or color too long")
	}
	h, err := m.acquire(ctx, docID)
	if err != nil {
		return nil, err
	}
	c := &client{id: uuid.NewString(), conn: conn, info: info}
	c.limiter = newLimiter(m.cfg.RatePerSecond, m.cfg.RateBurst, m.cfg.Now())
	reply := make(chan error, 1)
	if !h.post(func() { reply <- h.join(c) }) {
		m.unref(h)
		return nil, protoErr(CodeInternal, "document %s is closing; retry", docID)
	}
	select {
	case err := <-reply:
		if err != nil {
			return nil, err
		}
	case <-h.quit:
		return nil, protoErr(CodeInternal, "document %s closed; retry", docID)
	}
	return &Client{c: c, hub: h}, nil
}

// Handle processes one frame from the client, in the order received. It
// never blocks on other clients.
func (c *Client) Handle(frame []byte) {
	h := c.hub
	if !c.c.limiter.allow(h.m.cfg.Now()) {
		e := protoErr(CodeRateLimited, "too many messages: at most %.0f per second", h.m.cfg.RatePerSecond)
		if m, perr := ParseClientMessage(frame); perr == nil && m.Type == "op" {
			e.Seq, e.HasSeq = m.Seq, true
		}
		c.reply(EncodeError(e))
		return
	}
	msg, perr := ParseClientMessage(frame)
	if perr != nil {
		c.reply(EncodeError(perr))
		return
	}
	h.post(func() { h.handle(c.c, msg) })
}

// reply answers the client from its read goroutine, without the hub.
func (c *Client) reply(msg []byte) {
	if err := c.c.conn.Send(msg); err != nil {
		c.c.conn.Close(CloseResync, "outbound queue full: reconnect and catch up")
	}
}

// Disconnect tells the hub the connection is gone.
func (c *Client) Disconnect() {
	h := c.hub
	h.post(func() { h.leave(c.c) })
}

// acquire returns the document's hub, loading it if needed, with one more
// reference held for the caller.
func (m *Manager) acquire(ctx context.Context, id string) (*hub, error) {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return nil, ErrShuttingDown
	}
	h := m.hubs[id]
	creator := h == nil
	if creator {
		h = newHub(m, id)
		m.hubs[id] = h
	}
	h.refs++
	m.mu.Unlock()

	if creator {
		h.loadErr = h.load(ctx)
		m.mu.Lock()
		if h.loadErr == nil && m.closing {
			h.loadErr = ErrShuttingDown
		}
		if h.loadErr == nil {
			// Under m.mu, with closing checked: Close's Wait counts it.
			m.running.Add(1)
		}
		m.mu.Unlock()
		if h.loadErr == nil {
			go h.run()
		} else {
			m.mu.Lock()
			if m.hubs[id] == h {
				delete(m.hubs, id)
			}
			m.mu.Unlock()
		}
		close(h.ready)
	}
	select {
	case <-h.ready:
	case <-ctx.Done():
		m.unref(h)
		// Once loaded, the hub must still unload when nobody comes.
		go func() {
			<-h.ready
			if h.loadErr == nil {
				h.post(h.maybeIdle)
			}
		}()
		return nil, ctx.Err()
	}
	if h.loadErr != nil {
		m.unref(h)
		if errors.Is(h.loadErr, ErrShuttingDown) {
			return nil, ErrShuttingDown
		}
		if errors.Is(h.loadErr, storage.ErrNotFound) {
			return nil, protoErr(CodeNotFound, "no document %q", id)
		}
		m.log.Error("load document", "doc", id, "err", h.loadErr)
		return nil, protoErr(CodeInternal, "document %s could not be loaded", id)
	}
	return h, nil
}

func (m *Manager) unref(h *hub) {
	m.mu.Lock()
	h.refs--
	m.mu.Unlock()
}

// release removes an idle hub from the map if nobody holds a reference.
func (m *Manager) release(h *hub) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.refs > 0 {
		return false
	}
	if m.hubs[h.id] == h {
		delete(m.hubs, h.id)
	}
	return true
}

// detach removes a hub from the map so the next Connect loads the document
// afresh, whatever its references.
func (m *Manager) detach(h *hub) {
	m.mu.Lock()
	if m.hubs[h.id] == h {
		delete(m.hubs, h.id)
	}
	m.mu.Unlock()
}

func (m *Manager) refs(h *hub) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return h.refs
}

// DocumentDeleted closes the connections of a document that was deleted,
// with CloseNotFound, and unloads it. Call it before deleting the document
// from the store, so that no commit lands after the delete.
func (m *Manager) DocumentDeleted(ctx context.Context, id string) {
	m.mu.Lock()
	h := m.hubs[id]
	m.mu.Unlock()
	if h == nil {
		return
	}
	done := make(chan struct{})
	if h.post(func() { h.shutdown(CloseNotFound, "document deleted", done) }) {
		select {
		case <-done:
		case <-h.quit: // gone before it took the message: nothing to close
		case <-ctx.Done():
		}
	}
}

// Open reports how many documents are loaded.
func (m *Manager) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.hubs)
}

// Close shuts down: no new connections; every hub finishes the commits it
// has started, acknowledges and broadcasts them, writes a final snapshot,
// and closes its connections with 1001 going away. It returns when all of
// that is done or ctx ends.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	hubs := make([]*hub, 0, len(m.hubs))
	for _, h := range m.hubs {
		hubs = append(hubs, h)
	}
	m.mu.Unlock()
	for _, h := range hubs {
		h.post(func() { h.shutdown(CloseGoingAway, "server shutting down", nil) })
	}
	done := make(chan struct{})
	go func() { m.running.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("collab: shutdown: %w", ctx.Err())
	}
	m.committer.close()
	return err
}
