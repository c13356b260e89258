package tandem

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"time"

	"github.com/tandemdocs/tandem/feed"
	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web"
)

// Identity is who a request comes from (see Hooks.Authenticate).
type Identity = web.Identity

// Grant gives a role on documents: ID is "*", an id, or a prefix ending in
// "*" ("acme-*").
type Grant = web.Grant

// Role is what an identity may do with a document; each includes the ones
// below it.
type Role = web.Role

// The roles.
const (
	RoleNone  = web.RoleNone
	RoleRead  = web.RoleRead  // receives the text, ops and presence
	RoleWrite = web.RoleWrite // edits
	RoleAdmin = web.RoleAdmin // deletes; on "*", the admin endpoints
)

// OpCheck is an op on its way into a document (Hooks.CheckOp).
type OpCheck = collab.OpCheck

// Event is one entry of the change feed (Hooks.OnChange, Server.Changes,
// GET /api/changes, webhooks).
type Event = feed.Event

// Refuse returns the error a CheckOp hook refuses an op with: reason is a
// short stable code of the application's (letters, digits, '_', '-', '.';
// at most 64 bytes) that reaches the client with code "rejected", message
// says why for people.
func Refuse(reason, message string) error { return &collab.Refusal{Reason: reason, Message: message} }

// Hooks connect a Server to the application around it. Every hook is
// optional.
type Hooks struct {
	// Authenticate says who makes a request from the application's own
	// sessions (a cookie, a header): it returns the identity, or nil, nil
	// for a request it does not recognise (access tokens decide then, if
	// the server has AuthSecrets or AuthPublicKey; otherwise the request
	// is refused with 401). An error refuses the request (401, with the
	// error's text). It runs on the request's goroutine for every REST
	// request and every WebSocket upgrade (browsers send cookies with
	// both), before any work: keep it fast.
	Authenticate func(r *http.Request) (*Identity, error)

	// Authorize decides the role an identity has on a document, in place
	// of its grants. It is asked for each document a request touches:
	// each one listed, the one a WebSocket opens (whose role is then fixed
	// for the connection's life), a new document's id before it is
	// created (return RoleWrite there to let the user create documents).
	// An error counts as RoleNone and is logged. It runs on the request's
	// goroutine.
	Authorize func(ctx context.Context, who Identity, doc string) (Role, error)

	// CheckOp may refuse an op before it enters its document: a
	// validation or moderation rule. Return Refuse(reason, message) (or
	// any error) to refuse: the client gets code "rejected" with the
	// reason and undoes the op; other clients never see it. It runs on
	// the connection's reading goroutine, never the document's: a slow
	// check slows that connection only, and a connection's ops are
	// checked in order. The op is as the client sent it, made on revision
	// Rev, before it is transformed against concurrent ops. A panic is a
	// refusal.
	CheckOp func(ctx context.Context, op OpCheck) error

	// OnChange observes the change feed: each committed op (with its
	// document, revision, author and time) and each document created,
	// deleted, renamed or restored, after it is durable, in the order the
	// store made them durable (revision order per document). It runs on a
	// goroutine of its own, one event at a time, and never blocks a
	// document: a slow hook only falls behind, reading the feed from the
	// store. An error (or a panic) retries the same event with backoff
	// (100ms doubling to 30s), logged each time: delivery is at least
	// once. The hook stops when Shutdown begins.
	OnChange func(ctx context.Context, e Event) error
	// ChangeReader names OnChange's position in the feed, saved in the
	// store: after a restart, OnChange resumes after the last event it
	// handled (a second or so may be handled again after a crash). Empty:
	// OnChange sees the events from when the Server starts.
	ChangeReader string
}

// startChangeHook starts the goroutine that feeds OnChange.
func (s *Server) startChangeHook(ctx context.Context) error {
	h := s.cfg.Hooks
	f := follower{name: h.ChangeReader, feed: s.feed, log: s.log.With("hook", "OnChange"), handle: h.OnChange}
	after, err := f.start(ctx)
	if err != nil {
		return err
	}
	s.goLoop(func() { f.run(ctx, after) })
	return nil
}

// follower hands the feed's events, one at a time, to a handler that may
// fail, retrying with backoff; with a name, its position is saved in the
// store (at most once a second, and when it stops).
type follower struct {
	name   string
	feed   *feed.Reader
	log    *slog.Logger
	handle func(context.Context, Event) error
}

// start returns the cursor to follow from: the saved position, or the
// newest cursor.
func (f *follower) start(ctx context.Context) (uint64, error) {
	if f.name != "" {
		c, found, err := f.feed.Log().Position(ctx, f.name)
		if err != nil {
			return 0, fmt.Errorf("tandem: change reader %q: %w", f.name, err)
		}
		if found {
			return c, nil
		}
	}
	c, err := f.feed.Last(ctx)
	if err != nil {
		return 0, fmt.Errorf("tandem: change feed: %w", err)
	}
	if f.name != "" {
		if err := f.feed.Log().SetPosition(ctx, f.name, c); err != nil {
			return 0, fmt.Errorf("tandem: change reader %q: %w", f.name, err)
		}
	}
	return c, nil
}

func (f *follower) run(ctx context.Context, after uint64) {
	saved, lastSave := after, time.Now()
	save := func(force bool) {
		if f.name == "" || after == saved || (!force && time.Since(lastSave) < time.Second) {
			return
		}
		// Saved even as the server stops: a context of its own.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := f.feed.Log().SetPosition(sctx, f.name, after); err != nil {
			f.log.Warn("saving the change reader's position", "reader", f.name, "err", err)
			return
		}
		saved, lastSave = after, time.Now()
	}
	defer save(true)
	for ctx.Err() == nil {
		events, next, ok := readFeed(ctx, f.feed, f.log, after, 100)
		if !ok {
			continue
		}
		for _, e := range events {
			if !f.deliver(ctx, e) {
				return
			}
			after = e.Cursor
			save(false)
		}
		after = max(after, next)
		if len(events) == 0 {
			save(true)
			if next == after {
				f.feed.Wait(ctx, after)
			}
		}
	}
}

// deliver hands e to the handler until it takes it; false if ctx ended
// first.
func (f *follower) deliver(ctx context.Context, e Event) bool {
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f.call(ctx, e)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		f.log.Warn("change not handled: retrying", "cursor", e.Cursor, "doc", e.Doc, "kind", e.Kind, "attempt", attempt, "err", err, "in", pause)
		if !sleep(ctx, pause) {
			return false
		}
		pause = min(2*pause, 30*time.Second)
	}
}

func (f *follower) call(ctx context.Context, e Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f.handle(ctx, e)
}

// readFeed reads a page of the feed for a reader that follows it on its
// own (a hook, a webhook). Behind the retention, it says so in the log and
// goes on from the newest cursor (next, with no events); on an error it
// logs, waits a second and reports !ok, for the caller to try again.
func readFeed(ctx context.Context, f *feed.Reader, log *slog.Logger, after uint64, limit int) (events []Event, next uint64, ok bool) {
	events, next, err := f.Read(ctx, after, limit, nil)
	if errors.Is(err, feed.ErrTrimmed) {
		var last uint64
		if last, err = f.Last(ctx); err == nil {
			log.Error("fell behind the change feed's retention: events were missed; going on from the newest", "after", after, "newest", last)
			return nil, last, true
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reading the change feed", "err", err)
			sleep(ctx, time.Second)
		}
		return nil, after, false
	}
	return events, next, true
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Changes returns the change feed after cursor after (0: all that is
// retained), up to limit events (<= 0: 100), and the cursor to continue
// from. It does not wait; WaitChanges does. Remember the cursor of the
// last event handled to resume after it: delivery is at least once, and
// events of one document come in revision order. It fails with
// feed.ErrTrimmed when events after the cursor were trimmed by
// retention, and with an error when the storage keeps no change feed
// (JetStream, for now).
func (s *Server) Changes(ctx context.Context, after uint64, limit int) (events []Event, next uint64, err error) {
	if s.feed == nil {
		return nil, after, errNoFeed
	}
	return s.feed.Read(ctx, after, limit, nil)
}

// WaitChanges returns once there may be events after cursor after, or
// ctx's error.
func (s *Server) WaitChanges(ctx context.Context, after uint64) error {
	if s.feed == nil {
		return errNoFeed
	}
	return s.feed.Wait(ctx, after)
}

// LastChange returns the newest cursor of the change feed: following from
// it gives only what comes next.
func (s *Server) LastChange(ctx context.Context) (uint64, error) {
	if s.feed == nil {
		return 0, errNoFeed
	}
	return s.feed.Last(ctx)
}

var errNoFeed = errors.New("tandem: this storage keeps no change feed")

// Follow iterates over the change feed after cursor after, waiting for
// new events, until the loop stops or ctx ends (then it yields ctx's
// error, once). An error reading the feed is yielded and ends it too
// (feed.ErrTrimmed: events after the cursor were trimmed).
//
//	for e, err := range srv.Follow(ctx, cursor) {
//		if err != nil { ... }
//		index(e); cursor = e.Cursor
//	}
func (s *Server) Follow(ctx context.Context, after uint64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if s.feed == nil {
			yield(Event{}, errNoFeed)
			return
		}
		err := s.feed.Follow(ctx, after, nil, func(e Event) error {
			if !yield(e, nil) {
				return errStopped
			}
			return nil
		})
		if !errors.Is(err, errStopped) {
			yield(Event{}, err)
		}
	}
}

// errStopped ends Follow's loop when the caller's loop stops.
var errStopped = errors.New("stopped")
