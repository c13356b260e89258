package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem/feed"
	"github.com/tandemdocs/tandem/internal/collab"
)

// codeChangesTrimmed: the events after the cursor asked for were trimmed
// by retention (410): read the documents whole, then follow from the
// newest cursor.
const codeChangesTrimmed = "changes_trimmed"

// The change feed's pacing: how long a long poll waits for an event, and
// how often an idle stream sends a comment (proxies close quiet
// connections).
const (
	longPollWait   = 25 * time.Second
	sseHeartbeat   = 15 * time.Second
	maxChangesPage = 1000
)

// getChanges serves the change feed: GET /api/changes?after=CURSOR.
// With Accept: text/event-stream it streams Server-Sent Events (id: the
// cursor; resumed with Last-Event-ID); otherwise it answers a page of
// JSON, waiting up to wait seconds (at most 25) for the first event. A
// caller sees only the events of documents it may read; the cursor moves
// past the others all the same. after=latest starts at the newest event.
func (s *Server) getChanges(c echo.Context) error {
	if s.cfg.Changes == nil {
		return errorf(http.StatusNotFound, collab.CodeNotFound, "this server's storage keeps no change feed")
	}
	p, err := s.who(c)
	if err != nil {
		return err
	}
	r := c.Request()
	ctx := r.Context()
	afterText := c.QueryParam("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		afterText = id
	}
	var after uint64
	switch afterText {
	case "", "0":
	case "latest":
		if after, err = s.cfg.Changes.Last(ctx); err != nil {
			return err
		}
	default:
		if after, err = strconv.ParseUint(afterText, 10, 64); err != nil {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, "after must be a cursor (a non-negative integer) or latest")
		}
	}
	limit, err := queryInt(c, "limit", 100)
	if err != nil {
		return err
	}
	if limit < 1 || limit > maxChangesPage {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, fmt.Sprintf("limit must be 1..%d", maxChangesPage))
	}
	allow := func(doc string) bool { return p.role(doc) >= RoleRead }
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return s.streamChanges(c, after, allow)
	}
	wait, err := queryInt(c, "wait", 0)
	if err != nil {
		return err
	}
	if wait < 0 {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "wait must be seconds, 0 or more")
	}
	deadline := time.Now().Add(min(time.Duration(wait)*time.Second, longPollWait))
	for {
		events, next, err := s.cfg.Changes.Read(ctx, after, int(limit), allow)
		if errors.Is(err, feed.ErrTrimmed) {
			return errorf(http.StatusGone, codeChangesTrimmed, err.Error())
		}
		if err != nil {
			return err
		}
		if len(events) > 0 || time.Now().After(deadline) || s.draining.Load() {
			if events == nil {
				events = []feed.Event{}
			}
			return c.JSON(http.StatusOK, struct {
				Events []feed.Event `json:"events"`
				Next   uint64       `json:"next"`
			}{events, next})
		}
		if next > after {
			after = next // only others' events: look further
			continue
		}
		wctx, cancel := contextUntil(ctx, deadline, s.drained)
		err = s.cfg.Changes.Wait(wctx, after)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// streamChanges streams the feed as Server-Sent Events until the client
// goes or the server shuts down.
func (s *Server) streamChanges(c echo.Context, after uint64, allow func(string) bool) error {
	ctx := c.Request().Context()
	// Refuse a trimmed cursor with a status, before the stream starts.
	events, next, err := s.cfg.Changes.Read(ctx, after, 100, allow)
	if errors.Is(err, feed.ErrTrimmed) {
		return errorf(http.StatusGone, codeChangesTrimmed, err.Error())
	}
	if err != nil {
		return err
	}
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w.Writer)
	// A stream lives long: no write deadline of the server's cuts it.
	_ = rc.SetWriteDeadline(time.Time{})
	write := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write([]byte("retry: 2000\n\n")); err != nil {
		return nil
	}
	for {
		for _, e := range events {
			b, err := json.Marshal(e)
			if err != nil {
				return nil
			}
			frame := fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", e.Cursor, e.Kind, b)
			if err := write(frame); err != nil {
				return nil
			}
		}
		if next > after {
			after = next
			if len(events) == 0 {
				// Only others' events: send the cursor on, so a
				// reconnect does not scan them again.
				if err := write(fmt.Appendf(nil, "id: %d\n: skipped\n\n", after)); err != nil {
					return nil
				}
			}
		} else {
			wctx, cancel := contextUntil(ctx, time.Now().Add(sseHeartbeat), s.drained)
			err := s.cfg.Changes.Wait(wctx, after)
			cancel()
			switch {
			case ctx.Err() != nil || s.draining.Load():
				return nil
			case err != nil: // quiet for a while: show the stream is alive
				if werr := write([]byte(": keep-alive\n\n")); werr != nil {
					return nil
				}
			}
		}
		events, next, err = s.cfg.Changes.Read(ctx, after, 100, allow)
		if err != nil {
			code := "internal"
			if errors.Is(err, feed.ErrTrimmed) {
				code = codeChangesTrimmed
			}
			b, _ := json.Marshal(map[string]string{"code": code, "message": err.Error()})
			write(fmt.Appendf(nil, "event: error\ndata: %s\n\n", b))
			return nil
		}
	}
}

// contextUntil is ctx until deadline, and cancelled when stop closes.
func contextUntil(ctx context.Context, deadline time.Time, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
