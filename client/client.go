// Package client is a Go client for Tandem's WebSocket protocol (version
// 2, docs/protocol.md): it joins a document, keeps a local copy of its
// text, and edits it the way the browser client does.
//
// The model is ShareDB's: local edits apply at once to the local text; at
// most one op is in flight (sent, not yet acknowledged) and the edits made
// meanwhile are composed into one pending op, sent when the ack comes.
// Ops from others are transformed against the in-flight and pending ops
// (theirs on the right, ours on the left, as the server breaks ties) and
// applied. The client's source key makes resubmission exactly-once: after
// Reconnect the in-flight op is sent again with its sequence number and
// the server acknowledges it with its original revision if it had it.
//
// An op the server refuses for now (rate_limited: the connection's budget
// is spent; storage_full: the disk is) stays in flight and is sent again,
// same seq, rebased on whatever arrived meanwhile, after a pause: the
// server's retryAfter hint when it gives one, doubling while it keeps
// refusing and back to the start once it takes one. Edits made meanwhile
// compose behind it as usual. An op refused as too_far_behind (too much
// work to transform from its base) is sent again after a reconnect, which
// catches the client up first.
//
// It is what `tandem bench` drives and what tests use as a well-behaved
// client; it never panics on what a server sends (a malformed message is
// an error, the connection is closed).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/ot/rich"
	"github.com/tandemdocs/tandem/protocol"
)

// Options configure a connection. All fields are optional.
type Options struct {
	// Key is the client's secret source key (docs/protocol.md): "" lets
	// the server issue one, which the client keeps for reconnects.
	Key string
	// Token is an access token, sent as "Authorization: Bearer".
	Token string
	// User, Name and Color identify the client to others in open mode
	// (with a token they come from the token).
	User, Name, Color string
	// Header is sent with the WebSocket's upgrade request: an
	// application's session cookie (when Tandem is embedded behind its
	// login), an Origin.
	Header http.Header
	// Dialer dials the WebSocket (websocket.DefaultDialer).
	Dialer *websocket.Dialer

	// Handlers, called from the connection's reader goroutine, after the
	// client's state has changed and without its lock held (they may call
	// the client, but not wait in Synced, which waits for them to
	// return). Each may be nil.
	//
	// OnSend: an op with seq is being sent (the first time; a resend
	// after Reconnect is not reported).
	OnSend func(seq uint64)
	// OnAck: the in-flight op with seq was committed as revision rev.
	OnAck func(seq uint64, rev int64)
	// OnRemote: another client's op (its source and seq) was applied.
	OnRemote func(src string, seq uint64, rev int64)
	// OnError: the server refused something with a stable code.
	OnError func(code, message string)
	// OnRetry: the in-flight op with seq was refused for now (code is
	// rate_limited or storage_full) and will be sent again after pause.
	OnRetry func(code string, seq uint64, pause time.Duration)

	// RetryPause is the first pause before an op refused for now is sent
	// again, when the server gives no hint (default 100 ms for
	// rate_limited, 1 s for storage_full); it doubles with each refusal in
	// a row, up to MaxRetryPause (default 10 s).
	RetryPause, MaxRetryPause time.Duration
}

// Peer is another participant of the document.
type Peer struct {
	Client, User, Name, Color string
	Sel                       []ot.Selection
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: closed")

// ErrResync: the server sent the document's text instead of the ops since
// the client's revision while an op was in flight; the client cannot tell
// whether the text includes it. Dial again (the op is lost to this
// client's view; the server applied it at most once).
var ErrResync = errors.New("client: the server sent the text while an op was in flight: resynchronize")

// ErrUnsupportedType: the document is of a type this client does not edit
// (it edits plain-text documents; a rich-text document's ops are Quill
// Deltas, see package ot/rich).
var ErrUnsupportedType = errors.New("client: the document is not a plain-text document")

// ServerError is an error message from the server.
type ServerError struct {
	Code, Message string
	Seq           uint64 // the seq it is about, if any
	// Reason: why the application refused the op (code "rejected").
	Reason string
}

func (e *ServerError) Error() string { return "tandem: " + e.Code + ": " + e.Message }

// Doc is one connection to one document. Its methods are safe for
// concurrent use.
type Doc struct {
	base, id string
	opts     Options

	writeMu sync.Mutex // one writer on the connection at a time

	mu       sync.Mutex
	conn     *websocket.Conn
	key, src string
	clientID string
	title    string
	rev      int64
	typ      doctype.Type     // the document's (from hello)
	text     doctype.Document // the server's document plus our edits
	inflight *doctype.Op
	inSeq    uint64
	pending  *doctype.Op
	seq      uint64
	peers    map[string]*Peer
	withSel  int // peers with a selection (none: no need to move them)
	anchors  []*Anchor
	acked    chan struct{} // closed and replaced whenever synced() becomes true
	// dispatching: handler calls made (or to be made) outside the lock
	// and not yet returned.
	dispatching int
	refused     int         // refusals in a row of the in-flight op (rate_limited, storage_full)
	retry       *time.Timer // sends the refused in-flight op again
	closed      bool
	err         error         // why the connection ended
	done        chan struct{} // closed when the reader ends
}

// Dial connects to document id on the server at baseURL (http:// or
// https://) and waits for its hello.
func Dial(ctx context.Context, baseURL, id string, opts Options) (*Doc, error) {
	d := &Doc{base: strings.TrimSuffix(baseURL, "/"), id: id, opts: opts, key: opts.Key, rev: -1, peers: map[string]*Peer{}}
	d.acked = make(chan struct{})
	if err := d.connect(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// connect dials, reads the hello and starts the reader.
func (d *Doc) connect(ctx context.Context) error {
	d.mu.Lock()
	q := url.Values{}
	for k, v := range map[string]string{"key": d.key, "user": d.opts.User, "name": d.opts.Name, "color": d.opts.Color} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if d.rev >= 0 {
		q.Set("rev", fmt.Sprint(d.rev))
	}
	d.mu.Unlock()
	u := "ws" + strings.TrimPrefix(d.base, "http") + "/api/docs/" + url.PathEscape(d.id) + "/ws?" + q.Encode()
	h := d.opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if d.opts.Token != "" {
		h.Set("Authorization", "Bearer "+d.opts.Token)
	}
	dialer := d.opts.Dialer
	if dialer == nil {
		dialer = websocket.DefaultDialer
	}
	conn, resp, err := dialer.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			var body struct{ Error ServerError }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if body.Error.Code != "" {
				return fmt.Errorf("client: dial %s: %s: %w", d.id, resp.Status, &body.Error)
			}
			return fmt.Errorf("client: dial %s: %s", d.id, resp.Status)
		}
		return fmt.Errorf("client: dial %s: %w", d.id, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	_, data, err := conn.ReadMessage()
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return fmt.Errorf("client: waiting for the hello of %s: %w", d.id, err)
	}
	msgs, err := protocol.ParseFrame(data)
	if err != nil || len(msgs) == 0 || msgs[0].Type != "hello" {
		conn.Close()
		if err == nil && len(msgs) > 0 && msgs[0].Type == "error" {
			return fmt.Errorf("client: join %s: %w", d.id, &ServerError{Code: msgs[0].Code, Message: msgs[0].Message})
		}
		return fmt.Errorf("client: join %s: no hello: %.200s", d.id, data)
	}
	d.mu.Lock()
	ev, err := d.hello(msgs[0])
	if err != nil {
		d.mu.Unlock()
		conn.Close()
		return err
	}
	d.conn = conn
	d.done = make(chan struct{})
	d.err = nil
	d.stopRetryLocked() // the resend below is the retry
	resend := d.resendLocked()
	d.dispatching += len(ev)
	d.mu.Unlock()
	d.dispatch(ev)
	go d.read(conn, d.done, msgs[1:])
	if resend != nil {
		return d.write(conn, resend)
	}
	return nil
}

// hello takes the server's state: the text, or the ops since our revision
// (our own in-flight op among them counts as its ack).
func (d *Doc) hello(m message) (events, error) {
	var ev events
	typ, err := doctype.Lookup(m.DocType)
	if err != nil {
		return ev, fmt.Errorf("%w: %s is a %s document", ErrUnsupportedType, d.id, m.DocType)
	}
	if d.typ != nil && d.typ.Name() != typ.Name() {
		return ev, fmt.Errorf("client: hello: %s was a %s document and is now %s", d.id, d.typ.Name(), typ.Name())
	}
	d.typ = typ
	if m.Key != "" {
		d.key = m.Key
	}
	d.src, d.clientID, d.title = m.Src, m.Client, m.Title
	d.peers, d.withSel = map[string]*Peer{}, 0
	for _, p := range m.Peers {
		d.peers[p.Client] = &Peer{Client: p.Client, User: p.User, Name: p.Name, Color: p.Color, Sel: p.Sel}
		if len(p.Sel) > 0 {
			d.withSel++
		}
	}
	switch {
	case m.Text != nil || m.Delta != nil:
		if (d.inflight != nil || d.pending != nil) && d.rev >= 0 {
			return ev, ErrResync
		}
		content := string(m.Delta)
		if m.Text != nil {
			content = *m.Text
		}
		r, err := typ.NewDocument(content)
		if err != nil {
			return ev, fmt.Errorf("client: hello: %w", err)
		}
		// A fresh connection: whatever was edited locally before the
		// first hello is rebased on the server's text (nothing yet).
		d.text, d.rev = r, m.Rev
	default:
		if d.text == nil || m.From != d.rev {
			return ev, fmt.Errorf("client: hello: ops from %d, the client is at %d", m.From, d.rev)
		}
		for _, o := range m.Ops {
			o.Type = "op"
			// Our own in-flight op among them is its ack; the next op
			// goes out with the resend after the hello.
			e, _, err := d.handle(o)
			if err != nil {
				return ev, err
			}
			ev = append(ev, e...)
		}
		d.rev = max(d.rev, m.Rev)
	}
	return ev, nil
}

// resendLocked is the in-flight op to send again after a reconnect (with
// its seq: exactly-once), or the pending one if nothing was in flight.
func (d *Doc) resendLocked() []byte {
	if d.inflight == nil {
		return d.flushLocked()
	}
	return d.opFrame(d.inflight, d.inSeq)
}

func (d *Doc) opFrame(op *doctype.Op, seq uint64) []byte {
	b := fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":`, d.rev, seq)
	b = op.AppendJSON(b)
	return append(b, '}')
}

// flushLocked makes the pending op the in-flight one and returns its
// frame, if nothing is in flight.
func (d *Doc) flushLocked() []byte {
	if d.inflight != nil || d.pending == nil || d.conn == nil {
		return nil
	}
	if d.pending.IsNoop() {
		// Others' edits undid it (a delete of text they deleted first):
		// nothing to send.
		d.pending = nil
		d.signalIfSynced()
		return nil
	}
	d.inflight, d.pending = d.pending, nil
	d.seq++
	d.inSeq = d.seq
	if d.opts.OnSend != nil {
		d.opts.OnSend(d.inSeq) // under the lock: before any ack of it
	}
	return d.opFrame(d.inflight, d.inSeq)
}

func (d *Doc) write(conn *websocket.Conn, frame []byte) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	if err := conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}

// Edit applies op (in code points, on Text) locally and sends it, or
// composes it with the edits waiting for the in-flight op's ack. It edits
// a plain-text document; EditRich edits a rich-text one.
func (d *Doc) Edit(op ot.Op) error {
	return d.editAt(nil, func(int) doctype.Op { return doctype.PlainOp(op) })
}

// EditRich is Edit for a rich-text document: op is a Quill Delta in code
// points, on Delta.
func (d *Doc) EditRich(op rich.Delta) error {
	return d.editAt(nil, func(int) doctype.Op { return doctype.RichOp(op) })
}

// Anchor is a position in the document that moves with every edit, ours
// and others' (text inserted exactly at it goes after it), like a marker.
type Anchor struct{ pos int }

// Anchor returns an anchor at pos.
func (d *Doc) Anchor(pos int) *Anchor {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := &Anchor{pos: pos}
	d.anchors = append(d.anchors, a)
	return a
}

// EditAt is Edit with the op made from a's position, atomically: no
// other edit moves the anchor in between. a may be nil (build gets 0).
func (d *Doc) EditAt(a *Anchor, build func(pos int) ot.Op) error {
	return d.editAt(a, func(pos int) doctype.Op { return doctype.PlainOp(build(pos)) })
}

func (d *Doc) editAt(a *Anchor, build func(pos int) doctype.Op) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	pos := 0
	if a != nil {
		pos = a.pos
	}
	op := build(pos)
	if err := d.text.Apply(op); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("client: edit: %w", err)
	}
	if d.pending == nil {
		d.pending = &op
	} else {
		c, err := d.typ.Compose(*d.pending, op)
		if err != nil {
			d.mu.Unlock()
			return fmt.Errorf("client: edit: %w", err)
		}
		d.pending = &c
	}
	if d.pending.IsNoop() {
		// Typed and taken back before it was sent: nothing to send (the
		// server refuses an empty op).
		d.pending = nil
		d.signalIfSynced()
	}
	d.moveAnchors(op)
	conn := d.conn
	frame := d.flushLocked()
	d.mu.Unlock()
	if frame != nil && conn != nil {
		return d.write(conn, frame)
	}
	return nil
}

// Append inserts text at the end of a plain document as it is when the
// edit is made. Edit(Insert(Len(), text)) reads the length and edits in
// two steps, and others' ops that arrive in between move where it lands.
func (d *Doc) Append(text string) error {
	// build runs under d.mu: the length is the text's as the op applies.
	return d.editAt(nil, func(int) doctype.Op { return doctype.PlainOp(Insert(d.text.Len(), text)) })
}

// SetSelection sends the client's selections (code points of Text).
func (d *Doc) SetSelection(sel []ot.Selection) error {
	d.mu.Lock()
	conn := d.conn
	if d.closed || conn == nil {
		d.mu.Unlock()
		return ErrClosed
	}
	// A selection is in the server's coordinates at rev: take the local
	// edits out of it.
	b := fmt.Appendf(nil, `{"type":"sel","rev":%d,"sel":[`, d.rev)
	for i, s := range sel {
		s = d.toServer(s)
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"anchor":%d,"head":%d}`, s.Anchor, s.Head)
	}
	d.mu.Unlock()
	return d.write(conn, append(b, "]}"...))
}

// toServer moves a local selection back through the pending and in-flight
// ops (approximately: a caret inside local inserts goes to their start).
func (d *Doc) toServer(s ot.Selection) ot.Selection {
	for _, op := range []*doctype.Op{d.pending, d.inflight} {
		if op == nil {
			continue
		}
		s = d.typ.TransformSelection(s, op.InverseShape(), ot.Left)
	}
	return s
}

// Text returns the local text: the server's plus the edits not yet
// acknowledged (a rich document's text, without its formatting and
// embeds).
func (d *Doc) Text() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := doctype.RichDocument(d.text); r != nil {
		return rich.PlainText(r.Delta())
	}
	return d.text.Content()
}

// Delta returns a rich-text document's local content (nil for a plain
// one).
func (d *Doc) Delta() rich.Delta {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := doctype.RichDocument(d.text); r != nil {
		return r.Delta()
	}
	return nil
}

// Type returns the document's type, "plain" or "rich".
func (d *Doc) Type() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.typ.Name()
}

// Len returns the local text's length in code points.
func (d *Doc) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.text.Len()
}

// Rev returns the newest revision the client has seen.
func (d *Doc) Rev() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rev
}

// Source returns the client's public source id (its ops carry it).
func (d *Doc) Source() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.src
}

// Key returns the client's secret source key (to reconnect as the same
// source from another process).
func (d *Doc) Key() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.key
}

// Pending reports whether edits wait to be acknowledged.
func (d *Doc) Pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight != nil || d.pending != nil
}

// Peers returns the other participants.
func (d *Doc) Peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Peer, 0, len(d.peers))
	for _, p := range d.peers {
		c := *p
		c.Sel = slices.Clone(p.Sel) // moved in place by later ops
		out = append(out, c)
	}
	return out
}

// Synced waits until every local edit is acknowledged (and the handlers
// of what arrived, OnAck among them, have returned), the connection ends
// or ctx does.
func (d *Doc) Synced(ctx context.Context) error {
	for {
		d.mu.Lock()
		if d.synced() {
			d.mu.Unlock()
			return nil
		}
		acked, done, err := d.acked, d.done, d.err
		d.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-acked:
		case <-done:
			d.mu.Lock()
			err := d.err
			d.mu.Unlock()
			if err == nil {
				err = errors.New("client: connection closed")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Done is closed when the current connection ends; Err says why.
func (d *Doc) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

// Err is why the connection ended (nil while it is up).
func (d *Doc) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Reconnect drops the connection, if any, and connects again as the same
// source from the newest revision seen: the server sends the ops missed,
// and the in-flight op is sent again with its seq (acknowledged once,
// whichever connection committed it).
func (d *Doc) Reconnect(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	conn, done := d.conn, d.done
	d.conn = nil
	d.mu.Unlock()
	if conn != nil {
		conn.Close()
		<-done
	}
	return d.connect(ctx)
}

// Close closes the connection. Edits not yet acknowledged are not waited
// for (see Synced).
func (d *Doc) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.stopRetryLocked()
	conn, done := d.conn, d.done
	d.mu.Unlock()
	if conn == nil {
		return nil
	}
	d.writeMu.Lock()
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
	d.writeMu.Unlock()
	err := conn.Close()
	<-done
	return err
}

// read handles the server's frames until the connection ends.
func (d *Doc) read(conn *websocket.Conn, done chan struct{}, first []message) {
	var err error
	defer func() {
		d.mu.Lock()
		if d.conn == conn {
			d.conn = nil
		}
		d.err = err
		close(done)
		d.mu.Unlock()
		conn.Close()
	}()
	msgs := first
	var frames protocol.FrameReader
	for {
		for _, m := range msgs {
			d.mu.Lock()
			ev, frame, herr := d.handle(m)
			d.dispatching += len(ev)
			d.mu.Unlock()
			d.dispatch(ev)
			if herr != nil {
				err = herr
				return
			}
			if frame != nil {
				if err = d.write(conn, frame); err != nil {
					return
				}
			}
		}
		var data []byte
		if _, data, err = conn.ReadMessage(); err != nil {
			err = fmt.Errorf("client: %w", err)
			return
		}
		if msgs, err = frames.Parse(data); err != nil {
			return
		}
	}
}

// handle applies one server message; d.mu is held. It returns the events
// to report and a frame to send (the next op).
func (d *Doc) handle(m message) (events, []byte, error) {
	switch m.Type {
	case "ack":
		if d.inflight == nil || m.Seq != d.inSeq {
			return nil, nil, fmt.Errorf("client: ack of seq %d, in flight %d", m.Seq, d.inSeq)
		}
		d.inflight = nil
		d.refused = 0
		d.stopRetryLocked()
		d.rev = max(d.rev, m.Rev)
		ev := events{func(d *Doc) {
			if d.opts.OnAck != nil {
				d.opts.OnAck(m.Seq, m.Rev)
			}
		}}
		frame := d.flushLocked()
		d.signalIfSynced()
		return ev, frame, nil
	case "op":
		if m.Src == d.src && d.inflight != nil && m.Seq == d.inSeq {
			// Our own op, committed by an earlier connection: the ack.
			return d.handle(message{Type: "ack", Seq: m.Seq, Rev: m.Rev})
		}
		ev, err := d.remote(m)
		return ev, nil, err
	case "sel":
		if p := d.peers[m.Client]; p != nil {
			switch {
			case len(p.Sel) == 0 && len(m.Sel) > 0:
				d.withSel++
			case len(p.Sel) > 0 && len(m.Sel) == 0:
				d.withSel--
			}
			p.Sel = m.Sel
		}
	case "join":
		if p := d.peers[m.Client]; p != nil && len(p.Sel) > 0 {
			d.withSel--
		}
		d.peers[m.Client] = &Peer{Client: m.Client, User: m.User, Name: m.Name, Color: m.Color}
	case "leave":
		if p := d.peers[m.Client]; p != nil && len(p.Sel) > 0 {
			d.withSel--
		}
		delete(d.peers, m.Client)
	case "error":
		if m.Code == "invalid_op" && m.Seq != 0 && d.inflight != nil && m.Seq == d.inSeq && d.inflight.IsNoop() {
			// Others' edits, which we have, already did what it does: the
			// server committed nothing for it. Drop it and go on, quietly.
			d.inflight, d.refused = nil, 0
			d.stopRetryLocked()
			frame := d.flushLocked()
			d.signalIfSynced()
			return nil, frame, nil
		}
		ev := events{func(d *Doc) {
			if d.opts.OnError != nil {
				d.opts.OnError(m.Code, m.Message)
			}
		}}
		if m.Seq == 0 || d.inflight == nil || m.Seq != d.inSeq {
			return ev, nil, nil
		}
		if pause, ok := d.retryLocked(m); ok {
			seq, code := m.Seq, m.Code
			ev = append(ev, func(d *Doc) {
				if d.opts.OnRetry != nil {
					d.opts.OnRetry(code, seq, pause)
				}
			})
			return ev, nil, nil
		}
		if m.Code == "too_far_behind" {
			// Too much work to transform from where it was based: catch up
			// (a reconnect from our revision brings the ops missed and
			// sends the op again, rebased, same seq).
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				d.Reconnect(ctx) // a failure leaves the client disconnected: Err and Synced say why
			}()
			return ev, nil, nil
		}
		// The op was refused for good: drop it (its effect stays in the
		// local text until the caller resynchronizes).
		return ev, nil, &ServerError{Code: m.Code, Message: m.Message, Seq: m.Seq, Reason: m.Reason}
	case "hello":
		return nil, nil, errors.New("client: a second hello")
	}
	return nil, nil, nil
}

// retryLocked schedules the resend of the in-flight op that m refused for
// now (docs/protocol.md: rate_limited and storage_full are retried with
// the same seq); ok is false for a refusal that is final.
func (d *Doc) retryLocked(m message) (pause time.Duration, ok bool) {
	first, limit := d.opts.RetryPause, d.opts.MaxRetryPause
	switch m.Code {
	case "rate_limited":
		if first <= 0 {
			first = 100 * time.Millisecond
		}
	case "storage_full":
		if first <= 0 {
			first = time.Second
		}
	default:
		return 0, false
	}
	if limit <= 0 {
		limit = 10 * time.Second
	}
	pause = first << min(d.refused, 16)
	d.refused++
	pause = max(min(pause, limit), time.Duration(m.RetryAfter)*time.Millisecond)
	// Up to a quarter more, so that clients refused together do not all
	// come back at once.
	pause += time.Duration(rand.Int64N(int64(pause)/4 + 1))
	d.stopRetryLocked()
	conn, seq := d.conn, d.inSeq
	d.retry = time.AfterFunc(pause, func() {
		d.mu.Lock()
		if d.closed || d.conn != conn || d.inflight == nil || d.inSeq != seq {
			d.mu.Unlock() // acknowledged meanwhile, or a reconnect resent it
			return
		}
		frame := d.opFrame(d.inflight, d.inSeq)
		d.mu.Unlock()
		d.write(conn, frame) // a failed write ends the reader: the connection's end says why
	})
	return pause, true
}

func (d *Doc) stopRetryLocked() {
	if d.retry != nil {
		d.retry.Stop()
		d.retry = nil
	}
}

// remote applies another client's op at m.Rev, transformed against our
// in-flight and pending ops.
func (d *Doc) remote(m message) (events, error) {
	if m.Rev != d.rev+1 {
		return nil, fmt.Errorf("client: op at revision %d, the client is at %d", m.Rev, d.rev)
	}
	op, _, err := d.typ.ParseOp(m.Op)
	if err != nil {
		return nil, fmt.Errorf("client: op at revision %d: %w", m.Rev, err)
	}
	for _, mine := range []**doctype.Op{&d.inflight, &d.pending} {
		if *mine == nil {
			continue
		}
		a, err := d.typ.Transform(**mine, op, ot.Left)
		if err != nil {
			return nil, fmt.Errorf("client: transform at revision %d: %w", m.Rev, err)
		}
		if op, err = d.typ.Transform(op, **mine, ot.Right); err != nil {
			return nil, fmt.Errorf("client: transform at revision %d: %w", m.Rev, err)
		}
		*mine = &a
	}
	if err := d.text.Apply(op); err != nil {
		return nil, fmt.Errorf("client: apply the op at revision %d: %w", m.Rev, err)
	}
	d.moveAnchors(op)
	d.rev = m.Rev
	for _, p := range d.peers {
		if d.withSel == 0 {
			break
		}
		if len(p.Sel) == 0 {
			continue
		}
		side := ot.Left
		if p.Client == m.Client {
			side = ot.Right // the author's caret stays after its insert
		}
		for i, s := range p.Sel {
			p.Sel[i] = d.typ.TransformSelection(s, op, side)
		}
	}
	src, seq, rev := m.Src, m.Seq, m.Rev
	return events{func(d *Doc) {
		if d.opts.OnRemote != nil {
			d.opts.OnRemote(src, seq, rev)
		}
	}}, nil
}

func (d *Doc) moveAnchors(op doctype.Op) {
	for _, a := range d.anchors {
		p := d.typ.TransformSelection(ot.Selection{Anchor: a.pos, Head: a.pos}, op, ot.Left)
		a.pos = p.Anchor
	}
}

func (d *Doc) signalIfSynced() {
	if d.synced() {
		close(d.acked)
		d.acked = make(chan struct{})
	}
}

// synced: every local edit is acknowledged, and the handlers of what
// arrived (OnAck among them) have returned; d.mu is held.
func (d *Doc) synced() bool {
	return d.inflight == nil && d.pending == nil && d.dispatching == 0
}

// dispatch runs handler calls counted in d.dispatching (without the lock),
// then counts them done: Synced waits for them, so that a caller who
// counts acks in OnAck has counted every one when Synced returns.
func (d *Doc) dispatch(ev events) {
	if len(ev) == 0 {
		return
	}
	ev.run(d)
	d.mu.Lock()
	d.dispatching -= len(ev)
	d.signalIfSynced()
	d.mu.Unlock()
}

// events are handler calls made after the lock is released.
type events []func(*Doc)

func (ev events) run(d *Doc) {
	for _, f := range ev {
		f(d)
	}
}

// message is any server message (package protocol's).
type message = protocol.Message

// Insert is the op that inserts text at pos (a code point offset).
func Insert(pos int, text string) ot.Op {
	if pos > 0 {
		return ot.Op{ot.Skip(pos), ot.Insert(text)}
	}
	return ot.Op{ot.Insert(text)}
}

// Delete is the op that deletes n code points at pos.
func Delete(pos, n int) ot.Op {
	if pos > 0 {
		return ot.Op{ot.Skip(pos), ot.Delete(n)}
	}
	return ot.Op{ot.Delete(n)}
}
