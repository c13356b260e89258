package web

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/olahol/melody"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/internal/web/markdown"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/ot/rich"
	"github.com/tandemdocs/tandem/storage"
)

// docJSON is a document in API responses.
type docJSON struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Rev     int64     `json:"rev"`
	Oldest  int64     `json:"oldest"`
	// Type is "plain" or "rich".
	Type string  `json:"type"`
	Text *string `json:"text,omitempty"`
	// Delta is a rich document's content (Quill's op array); Text is
	// then its plain text.
	Delta json.RawMessage `json:"delta,omitempty"`
}

func toJSON(d storage.Document) docJSON {
	return docJSON{ID: d.ID, Title: d.Title, Created: d.Created, Updated: d.Updated, Rev: d.Head, Oldest: d.Oldest, Type: d.DocType().Name()}
}

// withContent adds a document's content to out: its text, and under its
// type's key (when that is not "text") the content itself.
func withContent(out docJSON, t doctype.Type, content string) docJSON {
	text, _ := t.Text(content) // stored content: checked when written
	out.Text = &text
	if t.ContentKey() == "delta" {
		out.Delta = t.AppendContentJSON(nil, content)
	}
	return out
}

const maxTitleBytes = 1024

func (s *Server) createDoc(c echo.Context) error {
	p, err := s.who(c)
	if err != nil {
		return err
	}
	id, err := newDocID(p)
	if err != nil {
		return err
	}
	if s.cfg.LimitLoopback || !isLoopback(c.RealIP()) {
		if ok, _ := s.creations.Allow(p.key(c)); !ok {
			return errorf(http.StatusTooManyRequests, collab.CodeRateLimited, "too many documents created: slow down")
		}
	}
	if err := s.cfg.Manager.Writable(); err != nil {
		return err
	}
	// The strings are decoded by ot's JSON reader, which refuses unpaired
	// surrogate escapes ("\ud83d") that encoding/json turns into U+FFFD.
	var body struct {
		Title    *json.RawMessage `json:"title"`
		Type     *json.RawMessage `json:"type"`
		Text     *json.RawMessage `json:"text"`
		Markdown *json.RawMessage `json:"markdown"`
		Delta    json.RawMessage  `json:"delta"`
	}
	if err := readJSON(c, &body, `{"title", "type": "plain"|"rich", "text" | "markdown" | "delta"}`); err != nil {
		return err
	}
	doc := storage.Document{ID: id, Created: time.Now().UTC()}
	if body.Title != nil {
		if doc.Title, err = decodeString("title", *body.Title); err != nil {
			return err
		}
	}
	if err := checkTitle(doc.Title); err != nil {
		return err
	}
	typ := doctype.Plain()
	if body.Type != nil {
		name, err := decodeString("type", *body.Type)
		if err != nil {
			return err
		}
		if typ, err = doctype.Lookup(name); err != nil {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, `type must be "plain" or "rich"`)
		}
	}
	doc.Type = typ.Name()
	content, err := s.initialContent(typ, body.Text, body.Markdown, body.Delta)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.CreateDocument(c.Request().Context(), doc, content); err != nil {
		if errors.Is(err, storage.ErrInvalid) {
			return errorf(http.StatusRequestEntityTooLarge, collab.CodeTooLarge, err.Error())
		}
		return err
	}
	d, err := s.cfg.Store.Document(c.Request().Context(), doc.ID)
	if err != nil {
		return err
	}
	out := withContent(toJSON(d), typ, content)
	c.Response().Header().Set("Location", "/api/docs/"+doc.ID)
	return c.JSON(http.StatusCreated, out)
}

// initialContent is a new document's content from a creation request: a
// plain document from text; a rich one from a Delta, from Markdown, or
// from text (one unformatted paragraph), ending with "\n" as Quill's
// documents do.
func (s *Server) initialContent(typ doctype.Type, textRaw, mdRaw *json.RawMessage, deltaRaw json.RawMessage) (string, error) {
	given := 0
	for _, set := range []bool{textRaw != nil, mdRaw != nil, len(deltaRaw) > 0} {
		if set {
			given++
		}
	}
	if given > 1 {
		return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, "give one of text, markdown and delta")
	}
	text := ""
	if textRaw != nil {
		var err error
		if text, err = decodeString("text", *textRaw); err != nil {
			return "", err
		}
	}
	if !utf8.ValidString(text) {
		return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, "text must be valid UTF-8")
	}
	tooLarge := func(n int) error {
		return errorf(http.StatusRequestEntityTooLarge, collab.CodeTooLarge, fmt.Sprintf("the document is %d bytes; a document holds at most %d", n, s.cfg.MaxDocBytes))
	}
	if typ.ContentKey() != "delta" {
		if mdRaw != nil || len(deltaRaw) > 0 {
			return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, `markdown and delta make rich documents: add "type": "rich"`)
		}
		if len(text) > s.cfg.MaxDocBytes {
			return "", tooLarge(len(text))
		}
		return typ.FromText(text), nil
	}
	var delta rich.Delta
	switch {
	case len(deltaRaw) > 0:
		var err error
		if delta, err = rich.ParseDocumentJSON(deltaRaw); err != nil {
			return "", errorf(http.StatusBadRequest, collab.CodeInvalidOp, "delta: "+err.Error())
		}
	case mdRaw != nil:
		md, err := decodeString("markdown", *mdRaw)
		if err != nil {
			return "", err
		}
		if len(md) > s.cfg.MaxDocBytes {
			return "", tooLarge(len(md))
		}
		if delta, err = markdown.ToDelta([]byte(md)); err != nil {
			return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, err.Error())
		}
	default:
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		delta = rich.Delta{rich.Insert(text, nil)}
	}
	if n := delta.Len(); n == 0 || !endsWithNewline(delta) {
		delta = append(delta, rich.Insert("\n", nil))
	}
	content := string(delta.AppendJSON(nil))
	if len(content) > s.cfg.MaxDocBytes {
		return "", tooLarge(len(content))
	}
	return content, nil
}

func endsWithNewline(d rich.Delta) bool {
	return len(d) > 0 && strings.HasSuffix(d[len(d)-1].Text(), "\n")
}

// readJSON decodes the request's body, if it has one, into v strictly:
// valid UTF-8 (encoding/json would quietly turn invalid UTF-8 into
// U+FFFD), no unknown fields, one value.
func readJSON(c echo.Context, v any, shape string) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	if !isJSON(c.Request().Header.Get("Content-Type")) {
		return errorf(http.StatusUnsupportedMediaType, collab.CodeBadMessage, "send the body as JSON "+shape+", with Content-Type: application/json")
	}
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, collab.CodeTooLarge, "the body is too large")
		}
		// The client went away mid-body: its business, not a server
		// error.
		return errAborted
	}
	if !utf8.Valid(raw) {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "body must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "body must be JSON "+shape+": "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "body must be one JSON value "+shape)
	}
	return nil
}

func checkTitle(title string) error {
	if len(title) > maxTitleBytes || !utf8.ValidString(title) {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, fmt.Sprintf("title must be valid UTF-8 of at most %d bytes", maxTitleBytes))
	}
	return nil
}

// patchDoc renames a document: {"title": "…"}, for writers. Everyone in
// the document hears of it at once (a title message).
func (s *Server) patchDoc(c echo.Context) error {
	d, err := s.document(c, RoleWrite)
	if err != nil {
		return err
	}
	var body struct {
		Title *json.RawMessage `json:"title"`
	}
	if err := readJSON(c, &body, `{"title"}`); err != nil {
		return err
	}
	if body.Title == nil {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, `body must be JSON {"title"}: no title`)
	}
	title, err := decodeString("title", *body.Title)
	if err != nil {
		return err
	}
	if err := checkTitle(title); err != nil {
		return err
	}
	if err := s.cfg.Manager.Writable(); err != nil {
		return err
	}
	if err := s.cfg.Manager.Rename(c.Request().Context(), d.ID, title); err != nil {
		return err
	}
	d.Title = title
	return c.JSON(http.StatusOK, toJSON(d))
}

// newDocID picks the id of a document p creates: a UUID if p may write
// every document, else a UUID under the first prefix ("acme-*") p may
// write in; forbidden if neither.
func newDocID(p principal) (string, error) {
	id := uuid.NewString()
	if p.role(id) >= RoleWrite {
		return id, nil
	}
	if p.id == nil || p.authorize != nil {
		return "", errorf(http.StatusForbidden, collab.CodeForbidden, "you may not create documents")
	}
	for _, g := range p.id.Grants {
		if r, err := ParseRole(g.Role); err == nil && r >= RoleWrite && strings.HasSuffix(g.ID, "*") && len(g.ID) > 1 {
			return strings.TrimSuffix(g.ID, "*") + id, nil
		}
	}
	return "", errorf(http.StatusForbidden, collab.CodeForbidden, "this token may not create documents")
}

// decodeString decodes a JSON string (or null) strictly: as the text of an
// insert op, so that the same rules hold here as over the WebSocket.
func decodeString(field string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" || string(raw) == `""` {
		return "", nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, field+" must be a string")
	}
	op, err := ot.ParseJSON(append(append([]byte{'['}, raw...), ']'))
	if err != nil || len(op) != 1 {
		return "", errorf(http.StatusBadRequest, collab.CodeBadMessage, field+" is not a valid string: "+fmt.Sprint(err))
	}
	return op[0].Text(), nil
}

func (s *Server) listDocs(c echo.Context) error {
	p, err := s.who(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 1000 {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "limit must be 1..1000")
	}
	out := struct {
		Docs []docJSON `json:"docs"`
		Next string    `json:"next,omitempty"`
	}{Docs: make([]docJSON, 0, limit)}
	if q := c.QueryParam("ids"); q != "" {
		// The documents named, in that order, that exist and the caller
		// may read (a browser's own list: the demo in open mode).
		ids := strings.Split(q, ",")
		if len(ids) > int(limit) {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, fmt.Sprintf("ids names %d documents, more than limit (%d)", len(ids), limit))
		}
		for _, id := range ids {
			if storage.CheckID(id) != nil || p.role(id) < RoleRead {
				continue
			}
			d, err := s.cfg.Store.Document(c.Request().Context(), id)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out.Docs = append(out.Docs, toJSON(d))
		}
		return c.JSON(http.StatusOK, out)
	}
	// Only what the caller may read. A page may come back short (with a
	// next token) when most documents are someone else's: the scan is
	// bounded per request.
	after, scanned := c.QueryParam("after"), 0
	for len(out.Docs) < int(limit) && scanned < 10*int(limit)+1000 {
		docs, next, err := s.cfg.Store.ListDocuments(c.Request().Context(), storage.ListOptions{After: after, Limit: int(limit)})
		if err != nil {
			return err
		}
		for i, d := range docs {
			scanned++
			if p.role(d.ID) >= RoleRead {
				out.Docs = append(out.Docs, toJSON(d))
			}
			if len(out.Docs) == int(limit) {
				if i < len(docs)-1 || next != "" {
					out.Next = d.ID
				}
				return c.JSON(http.StatusOK, out)
			}
		}
		if next == "" {
			return c.JSON(http.StatusOK, out)
		}
		after, out.Next = next, next
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getDoc(c echo.Context) error {
	id, err := docID(c)
	if err != nil {
		return err
	}
	if _, err := s.allow(c, id, RoleRead); err != nil {
		return err
	}
	d, doc, err := storage.Load(c.Request().Context(), s.cfg.Store, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, withContent(toJSON(d), d.DocType(), doc.Content()))
}

func (s *Server) getText(c echo.Context) error {
	d, err := s.document(c, RoleRead)
	if err != nil {
		return err
	}
	id := d.ID
	rev, err := queryInt(c, "rev", d.Head)
	if err != nil {
		return err
	}
	switch {
	case rev < 0:
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "rev must be 0 or more")
	case rev > d.Head:
		return errorf(http.StatusBadRequest, collab.CodeRevAhead, fmt.Sprintf("rev %d is past the head, %d", rev, d.Head))
	}
	content, err := storage.ContentAt(c.Request().Context(), s.cfg.Store, id, rev)
	if err != nil {
		return err
	}
	out := withContent(docJSON{}, d.DocType(), content)
	resp := map[string]any{"id": id, "rev": rev, "type": d.DocType().Name(), "text": out.Text}
	if out.Delta != nil {
		resp["delta"] = out.Delta
	}
	return c.JSON(http.StatusOK, resp)
}

// docID returns the route's document id, or a not_found error for one that
// cannot name a document.
func docID(c echo.Context) (string, error) {
	id := c.Param("id")
	if storage.CheckID(id) != nil {
		return "", errorf(http.StatusNotFound, collab.CodeNotFound, "no document "+id)
	}
	return id, nil
}

// document returns the metadata of the route's document, if the caller
// has role on it.
func (s *Server) document(c echo.Context, role Role) (storage.Document, error) {
	id, err := docID(c)
	if err != nil {
		return storage.Document{}, err
	}
	if _, err := s.allow(c, id, role); err != nil {
		return storage.Document{}, err
	}
	return s.cfg.Store.Document(c.Request().Context(), id)
}

// maxOpsPage bounds one history response.
const maxOpsPage = 1000

func (s *Server) getOps(c echo.Context) error {
	d, err := s.document(c, RoleRead)
	if err != nil {
		return err
	}
	id := d.ID
	from, err := queryInt(c, "from", d.Oldest)
	if err != nil {
		return err
	}
	to, err := queryInt(c, "to", min(d.Head, from+maxOpsPage))
	if err != nil {
		return err
	}
	if from < 0 || to < from || to > d.Head {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "need 0 <= from <= to <= head")
	}
	if to-from > maxOpsPage {
		return errorf(http.StatusBadRequest, collab.CodeTooLarge, "at most 1000 ops per request")
	}
	recs, err := s.cfg.Store.Records(c.Request().Context(), id, from, to)
	if err != nil {
		return err
	}
	type opJSON struct {
		Rev    int64      `json:"rev"`
		Op     doctype.Op `json:"op"`
		User   string     `json:"user,omitempty"`
		Source string     `json:"src,omitempty"`
		Seq    uint64     `json:"seq,omitempty"`
		Time   time.Time  `json:"time"`
	}
	out := struct {
		From int64    `json:"from"`
		To   int64    `json:"to"`
		Head int64    `json:"head"`
		Ops  []opJSON `json:"ops"`
	}{From: from, To: to, Head: d.Head, Ops: make([]opJSON, 0, len(recs))}
	for _, r := range recs {
		out.Ops = append(out.Ops, opJSON{Rev: r.Rev, Op: r.Op, User: r.User, Source: r.Source, Seq: r.Seq, Time: r.Time})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deleteDoc(c echo.Context) error {
	d, err := s.document(c, RoleAdmin)
	if err != nil {
		return err
	}
	// Checked before the document's connections are closed: the delete
	// itself would be refused.
	if err := s.cfg.Manager.Writable(); err != nil {
		return err
	}
	id := d.ID
	s.cfg.Manager.DocumentDeleted(c.Request().Context(), id)
	if err := s.cfg.Store.DeleteDocument(c.Request().Context(), id); err != nil {
		return err
	}
	s.cfg.Manager.Deleted(id)
	return c.NoContent(http.StatusNoContent)
}

// keyLog is an echo context's key for the request's logger; keyConn is a
// melody session's one key, its *sessionConn.
const (
	keyLog  = "log"
	keyConn = "conn"
)

func (s *Server) openWS(c echo.Context) error {
	if s.draining.Load() {
		return errorf(http.StatusServiceUnavailable, collab.CodeInternal, "shutting down")
	}
	id, err := docID(c)
	if err != nil {
		return err
	}
	if !s.originAllowed(c.Request()) {
		return errorf(http.StatusForbidden, collab.CodeForbidden, "origin not allowed")
	}
	// Refused before the upgrade: a client without access never gets a
	// WebSocket.
	p, err := s.allow(c, id, RoleRead)
	if err != nil {
		return err
	}
	q := c.Request().URL.Query()
	info := collab.ClientInfo{Key: q.Get("key"), Source: q.Get("src"), User: q.Get("user"), Name: q.Get("name"), Color: q.Get("color"), LastRev: -1}
	var expires time.Time
	if p.id != nil {
		// Who it is comes from the token or the application's login, not
		// the query.
		info.User, info.Name, info.Color, info.Owner = p.id.User, p.id.Name, p.id.Color, p.id.User
		info.ReadOnly = p.role(id) < RoleWrite
		expires = p.id.Expires
	}
	if v := q.Get("rev"); v != "" {
		rev, err := queryInt(c, "rev", -1)
		if err != nil {
			return err
		}
		info.LastRev = rev
	}
	// The client's address (forwarded by a trusted proxy, else the peer's)
	// shares its budgets and its connection cap with its other
	// connections; a loopback peer, which may be a proxy for everyone, is
	// left out unless LimitLoopback.
	if addr := c.RealIP(); s.cfg.LimitLoopback || !isLoopback(addr) {
		info.Addr = addr
		if !s.wsPerAddr.take(addr) {
			c.Response().Header().Set("Retry-After", "10")
			return errorf(http.StatusTooManyRequests, collab.CodeRateLimited,
				fmt.Sprintf("too many WebSockets from this address (at most %d): close some first", s.cfg.MaxWebSocketsPerAddr))
		}
	}
	conn := newSessionConn(id, info, expires, c.Response().Header().Get(echo.HeaderXRequestID))
	keys := map[string]any{keyConn: conn}
	// melody reads a session on the goroutine that calls it, for the
	// session's life. Called here, that goroutine's stack would keep the
	// whole request's frames (echo's middleware, net/http's) for as long
	// as the WebSocket lives: a goroutine of its own starts shallow, and
	// this handler returns once the connection is hijacked, freeing its
	// goroutine (and net/http's buffers, which gorilla does not use).
	// (w, r and keys are the goroutine's arguments, not a closure's: a
	// closure still needed after the call would keep them reachable.)
	failed := make(chan error, 1)
	go func(w http.ResponseWriter, r *http.Request, keys map[string]any, failed chan<- error) {
		if err := s.ws.HandleRequestWithKeys(w, r, keys); err != nil {
			failed <- err
		}
	}(c.Response(), c.Request(), keys, failed)
	select {
	case <-conn.upgraded:
	case err := <-failed:
		// Refused before the hijack (gorilla wrote the answer): never
		// return an error for echo to write.
		s.logger(c).Debug("websocket upgrade failed", "err", err)
		if info.Addr != "" {
			s.wsPerAddr.give(info.Addr)
		}
	}
	return nil
}

// sessionLog is the logger of a WebSocket session: its request id,
// document and user.
func (s *Server) sessionLog(ss *melody.Session) *slog.Logger {
	if c := sessionOf(ss); c != nil {
		return c.log(s.log)
	}
	return s.log
}

// sessionOf is a session's sessionConn.
func sessionOf(ss *melody.Session) *sessionConn {
	if v, ok := ss.Get(keyConn); ok {
		return v.(*sessionConn)
	}
	return nil
}

func (s *Server) wsConnect(ss *melody.Session) {
	conn := sessionOf(ss)
	conn.s = ss
	// The connection is hijacked: the HTTP handler may return. Nothing
	// here needs the request again, and melody would keep it (headers,
	// URL, context) for as long as the connection lives.
	close(conn.upgraded)
	ss.Request = nil
	if exp := conn.expires; !exp.IsZero() {
		// A session outlives its token only until the token's expiry: then
		// it is closed with a code of its own, and the client comes back
		// with a fresh token (docs/protocol.md).
		conn.expiry = time.AfterFunc(time.Until(exp), func() {
			conn.Close(collab.CloseTokenExpired, "token expired: reconnect with a fresh token")
		})
	}
	// (The request ends when the HTTP handler returns, right after the
	// upgrade: the join must not end with it.)
	//
	// The join runs on a goroutine of its own: this is the goroutine that
	// reads the connection for its whole life, and a stack grown deep
	// once (the document's load, the join) stays large until a collection
	// finds it mostly unused, for each of thousands of connections.
	var client *collab.Client
	var err error
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		client, err = s.cfg.Manager.Connect(context.Background(), conn.doc, conn, conn.info)
	}()
	<-joined
	if err != nil {
		var pe *collab.Error
		switch {
		case errors.As(err, &pe):
			conn.Send(collab.EncodeError(pe), func() {})
			code := collab.CloseResync
			switch pe.Code {
			case collab.CodeNotFound:
				code = collab.CloseNotFound
			case collab.CodeSourceDenied, collab.CodeBadMessage:
				code = collab.ClosePolicy
			case collab.CodeDocumentFull:
				code = collab.CloseTryAgainLater
			}
			conn.Close(code, pe.Code)
		case errors.Is(err, collab.ErrShuttingDown):
			conn.Close(collab.CloseGoingAway, "server shutting down")
		default:
			conn.log(s.log).Error("websocket join failed", "err", err)
			conn.Close(collab.CloseResync, "internal error")
		}
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			conn.log(s.log).Debug("websocket refused", "err", err)
		}
		return
	}
	conn.client.Store(client)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		conn.log(s.log).Debug("websocket open")
	}
}

func (s *Server) wsMessage(ss *melody.Session, msg []byte) {
	if conn := sessionOf(ss); conn != nil {
		conn.active.Store(time.Now().UnixNano())
		if client := conn.client.Load(); client != nil {
			client.Handle(msg)
		}
	}
}

// ShedIdle closes up to n WebSockets whose clients have sent nothing for
// idleFor, the longest idle first, with 1013 (try again later): when the
// server is at its connection limit, the idle make room for the active.
// It returns how many it closed.
func (s *Server) ShedIdle(n int, idleFor time.Duration) int {
	if n <= 0 {
		return 0
	}
	sessions, err := s.ws.Sessions()
	if err != nil {
		return 0
	}
	type idle struct {
		conn  *sessionConn
		since int64
	}
	cutoff := time.Now().Add(-idleFor).UnixNano()
	var found []idle
	for _, ss := range sessions {
		// Only joined sessions: their melody session is set.
		if c := sessionOf(ss); c != nil && c.client.Load() != nil {
			if c.active.Load() <= cutoff {
				found = append(found, idle{c, c.active.Load()})
			}
		}
	}
	slices.SortFunc(found, func(a, b idle) int { return cmp.Compare(a.since, b.since) })
	found = found[:min(n, len(found))]
	for _, f := range found {
		f.conn.Close(collab.CloseTryAgainLater, "server full: idle connection closed")
	}
	if len(found) > 0 {
		s.log.Warn("at the connection limit: closed idle WebSockets", "closed", len(found), "idle_for", idleFor)
	}
	return len(found)
}

func (s *Server) wsBinary(ss *melody.Session, _ []byte) {
	if conn := sessionOf(ss); conn != nil {
		if client := conn.client.Load(); client != nil {
			client.HandleBinary()
		}
	}
}

func (s *Server) wsDisconnect(ss *melody.Session) {
	conn := sessionOf(ss)
	if conn == nil {
		return
	}
	if conn.info.Addr != "" {
		s.wsPerAddr.give(conn.info.Addr)
	}
	if client := conn.client.Load(); client != nil {
		client.Disconnect()
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			conn.log(s.log).Debug("websocket closed", "dur", time.Since(conn.opened))
		}
	}
	conn.stop()
}

func (s *Server) wsSent(ss *melody.Session, _ []byte) {
	if conn := sessionOf(ss); conn != nil {
		conn.sent()
	}
}

// wsError runs on melody's goroutines, possibly its writer: no locks of
// ours, no melody calls. A full buffer means a message was dropped: the
// connection must go, for resync.
func (s *Server) wsError(ss *melody.Session, err error) {
	if errors.Is(err, melody.ErrMessageBufferFull) {
		if conn := sessionOf(ss); conn != nil {
			go conn.forceClose(collab.CloseResync, "outbound buffer full: reconnect and catch up")
		}
		return
	}
	s.sessionLog(ss).Debug("websocket", "err", err)
}
