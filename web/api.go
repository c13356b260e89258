package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/olahol/melody"

	"github.com/tandemdocs/tandem/collab"
	"github.com/tandemdocs/tandem/ot"
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
	Text    *string   `json:"text,omitempty"`
}

func toJSON(d storage.Document) docJSON {
	return docJSON{ID: d.ID, Title: d.Title, Created: d.Created, Updated: d.Updated, Rev: d.Head, Oldest: d.Oldest}
}

const maxTitleBytes = 1024

func (s *Server) createDoc(c echo.Context) error {
	if err := s.cfg.Manager.Writable(); err != nil {
		return err
	}
	// The strings are decoded by ot's JSON reader, which refuses unpaired
	// surrogate escapes ("\ud83d") that encoding/json turns into U+FFFD.
	var body struct {
		Title *json.RawMessage `json:"title"`
		Text  *json.RawMessage `json:"text"`
	}
	if c.Request().ContentLength != 0 {
		// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
		raw, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		if !utf8.Valid(raw) {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, "body must be valid UTF-8")
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return errorf(http.StatusBadRequest, collab.CodeBadMessage, "body must be JSON {\"title\", \"text\"}: "+err.Error())
		}
	}
	doc := storage.Document{ID: uuid.NewString(), Created: time.Now().UTC()}
	text := ""
	var err error
	if body.Title != nil {
		if doc.Title, err = decodeString("title", *body.Title); err != nil {
			return err
		}
	}
	if body.Text != nil {
		if text, err = decodeString("text", *body.Text); err != nil {
			return err
		}
	}
	if len(doc.Title) > maxTitleBytes || !utf8.ValidString(doc.Title) {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "title must be valid UTF-8 of at most 1024 bytes")
	}
	if !utf8.ValidString(text) {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "text must be valid UTF-8")
	}
	if err := s.cfg.Store.CreateDocument(c.Request().Context(), doc, text); err != nil {
		if errors.Is(err, storage.ErrInvalid) {
			return errorf(http.StatusRequestEntityTooLarge, collab.CodeTooLarge, err.Error())
		}
		return err
	}
	d, err := s.cfg.Store.Document(c.Request().Context(), doc.ID)
	if err != nil {
		return err
	}
	out := toJSON(d)
	out.Text = &text
	c.Response().Header().Set("Location", "/api/docs/"+doc.ID)
	return c.JSON(http.StatusCreated, out)
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
	limit, err := queryInt(c, "limit", 50)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 1000 {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "limit must be 1..1000")
	}
	docs, next, err := s.cfg.Store.ListDocuments(c.Request().Context(), storage.ListOptions{After: c.QueryParam("after"), Limit: int(limit)})
	if err != nil {
		return err
	}
	out := struct {
		Docs []docJSON `json:"docs"`
		Next string    `json:"next,omitempty"`
	}{Docs: make([]docJSON, 0, len(docs)), Next: next}
	for _, d := range docs {
		out.Docs = append(out.Docs, toJSON(d))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getDoc(c echo.Context) error {
	id, err := docID(c)
	if err != nil {
		return err
	}
	d, rope, err := storage.Load(c.Request().Context(), s.cfg.Store, id)
	if err != nil {
		return err
	}
	out := toJSON(d)
	text := rope.String()
	out.Text = &text
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getText(c echo.Context) error {
	d, err := s.document(c)
	if err != nil {
		return err
	}
	id := d.ID
	rev, err := queryInt(c, "rev", d.Head)
	if err != nil {
		return err
	}
	if rev < 0 || rev > d.Head {
		return errorf(http.StatusBadRequest, collab.CodeRevAhead, "rev must be 0..head")
	}
	text, err := storage.TextAt(c.Request().Context(), s.cfg.Store, id, rev)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "rev": rev, "text": text})
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

// document returns the metadata of the route's document.
func (s *Server) document(c echo.Context) (storage.Document, error) {
	id, err := docID(c)
	if err != nil {
		return storage.Document{}, err
	}
	return s.cfg.Store.Document(c.Request().Context(), id)
}

// maxOpsPage bounds one history response.
const maxOpsPage = 1000

func (s *Server) getOps(c echo.Context) error {
	d, err := s.document(c)
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
		Rev    int64     `json:"rev"`
		Op     ot.Op     `json:"op"`
		User   string    `json:"user,omitempty"`
		Source string    `json:"src,omitempty"`
		Seq    uint64    `json:"seq,omitempty"`
		Time   time.Time `json:"time"`
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
	d, err := s.document(c)
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
	return c.NoContent(http.StatusNoContent)
}

// Session keys.
const (
	keyDoc    = "doc"
	keyInfo   = "info"
	keyConn   = "conn"
	keyClient = "client"
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
	q := c.Request().URL.Query()
	info := collab.ClientInfo{Key: q.Get("key"), Source: q.Get("src"), User: q.Get("user"), Name: q.Get("name"), Color: q.Get("color"), LastRev: -1}
	if v := q.Get("rev"); v != "" {
		rev, err := queryInt(c, "rev", -1)
		if err != nil {
			return err
		}
		info.LastRev = rev
	}
	keys := map[string]any{keyDoc: id, keyInfo: info}
	// After the upgrade the connection is hijacked: never return an error
	// for echo to write.
	if err := s.ws.HandleRequestWithKeys(c.Response(), c.Request(), keys); err != nil {
		s.log.Debug("websocket upgrade failed", "doc", id, "err", err)
	}
	return nil
}

func (s *Server) wsConnect(ss *melody.Session) {
	id := ss.MustGet(keyDoc).(string)
	info := ss.MustGet(keyInfo).(collab.ClientInfo)
	conn := newSessionConn(ss)
	ss.Set(keyConn, conn)
	client, err := s.cfg.Manager.Connect(ss.Request.Context(), id, conn, info)
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
			}
			conn.Close(code, pe.Code)
		case errors.Is(err, collab.ErrShuttingDown):
			conn.Close(collab.CloseGoingAway, "server shutting down")
		default:
			conn.Close(collab.CloseResync, "internal error")
		}
		return
	}
	ss.Set(keyClient, client)
}

func (s *Server) wsMessage(ss *melody.Session, msg []byte) {
	if v, ok := ss.Get(keyClient); ok {
		v.(*collab.Client).Handle(msg)
	}
}

func (s *Server) wsBinary(ss *melody.Session, _ []byte) {
	if v, ok := ss.Get(keyClient); ok {
		v.(*collab.Client).HandleBinary()
	}
}

func (s *Server) wsDisconnect(ss *melody.Session) {
	if v, ok := ss.Get(keyClient); ok {
		v.(*collab.Client).Disconnect()
	}
	if v, ok := ss.Get(keyConn); ok {
		v.(*sessionConn).stop()
	}
}

func (s *Server) wsSent(ss *melody.Session, _ []byte) {
	if v, ok := ss.Get(keyConn); ok {
		v.(*sessionConn).sent()
	}
}

// wsError runs on melody's goroutines, possibly its writer: no locks of
// ours, no melody calls. A full buffer means a message was dropped: the
// connection must go, for resync.
func (s *Server) wsError(ss *melody.Session, err error) {
	if errors.Is(err, melody.ErrMessageBufferFull) {
		if v, ok := ss.Get(keyConn); ok {
			go v.(*sessionConn).forceClose(collab.CloseResync, "outbound buffer full: reconnect and catch up")
		}
		return
	}
	s.log.Debug("websocket", "err", err)
}
