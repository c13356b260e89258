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

	"github.com/tandemdocs/tandem/internal/clientstate"
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
	// Seq is the newest seq the key has used (Doc.Seq), when it is
	// reused by another Doc (another process): its ops go on from Seq+1.
	// Starting a used key from 0 again would make the server take the
	// new ops for the old ones it has already committed, and drop them.
	Seq uint64
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
type Peer = clientstate.Peer

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: closed")

// ErrResync: the server sent the document's text instead of the ops since
// the client's revision while an op was in flight; the client cannot tell
// whether the text includes it. Dial again (the op is lost to this
// client's view; the server applied it at most once).
var ErrResync = clientstate.ErrResync

// ErrUnsupportedType: the document is of a type this client does not edit
// (it edits plain-text documents; a rich-text document's ops are Quill
// Deltas, see package ot/rich).
var ErrUnsupportedType = clientstate.ErrUnsupportedType

// ServerError is an error message from the server (Reason: why the
// application refused the op, for code "rejected").
type ServerError = clientstate.ServerError

// Doc is one connection to one document. Its methods are safe for
// concurrent use.
type Doc struct {
	base, id string
	opts     Options

	writeMu sync.Mutex // one writer on the connection at a time

	mu   sync.Mutex
	conn *websocket.Conn
	st   *clientstate.State // the document as this client sees it (package clientstate: the pure part)
	// acked is closed and replaced whenever synced() becomes true.
	acked chan struct{}
	// dispatching: handler calls made (or to be made) outside the lock
	// and not yet returned.
	dispatching int
	retry       *time.Timer // sends the refused in-flight op again
	closed      bool
	err         error         // why the connection ended
	done        chan struct{} // closed when the reader ends
}

// Dial connects to document id on the server at baseURL (http:// or
// https://) and waits for its hello.
func Dial(ctx context.Context, baseURL, id string, opts Options) (*Doc, error) {
	st := clientstate.New(opts.Key)
	st.Seq = opts.Seq
	st.RetryPause, st.MaxRetryPause = opts.RetryPause, opts.MaxRetryPause
	st.Jitter = func(n int64) int64 { return rand.Int64N(n + 1) }
	d := &Doc{base: strings.TrimSuffix(baseURL, "/"), id: id, opts: opts, st: st}
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
	for k, v := range map[string]string{"key": d.st.Key, "user": d.opts.User, "name": d.opts.Name, "color": d.opts.Color} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if d.st.Rev >= 0 {
		q.Set("rev", fmt.Sprint(d.st.Rev))
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
	notices, err := d.st.Hello(msgs[0])
	if err != nil {
		d.mu.Unlock()
		conn.Close()
		if errors.Is(err, ErrUnsupportedType) {
			return fmt.Errorf("client: %s: %w", d.id, err)
		}
		return err
	}
	ev := d.events(notices)
	d.conn = conn
	d.st.Connected = true
	d.done = make(chan struct{})
	d.err = nil
	d.stopRetryLocked() // the resend below is the retry
	resend, sent := d.st.Resend()
	if sent && d.opts.OnSend != nil {
		d.opts.OnSend(d.st.InSeq) // under the lock: before any ack of it
	}
	d.signalIfSynced()
	d.dispatching += len(ev)
	d.mu.Unlock()
	d.dispatch(ev)
	go d.read(conn, d.done, msgs[1:])
	if resend != nil {
		return d.write(conn, resend)
	}
	return nil
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
type Anchor = clientstate.Anchor

// Anchor returns an anchor at pos.
func (d *Doc) Anchor(pos int) *Anchor {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.NewAnchor(pos)
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
		pos = a.Pos()
	}
	frame, err := d.st.Edit(build(pos))
	if err != nil {
		d.mu.Unlock()
		return err
	}
	if frame != nil && d.opts.OnSend != nil {
		d.opts.OnSend(d.st.InSeq) // under the lock: before any ack of it
	}
	d.signalIfSynced()
	conn := d.conn
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
	return d.editAt(nil, func(int) doctype.Op { return doctype.PlainOp(Insert(d.st.Text.Len(), text)) })
}

// SetSelection sends the client's selections (code points of Text).
func (d *Doc) SetSelection(sel []ot.Selection) error {
	d.mu.Lock()
	conn := d.conn
	if d.closed || conn == nil {
		d.mu.Unlock()
		return ErrClosed
	}
	// A selection is in the server's coordinates at rev: the local edits
	// are taken out of it.
	frame := d.st.SelectionFrame(sel)
	d.mu.Unlock()
	return d.write(conn, frame)
}

// Text returns the local text: the server's plus the edits not yet
// acknowledged (a rich document's text, without its formatting and
// embeds).
func (d *Doc) Text() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := doctype.RichDocument(d.st.Text); r != nil {
		return rich.PlainText(r.Delta())
	}
	return d.st.Text.Content()
}

// Delta returns a rich-text document's local content (nil for a plain
// one).
func (d *Doc) Delta() rich.Delta {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := doctype.RichDocument(d.st.Text); r != nil {
		return r.Delta()
	}
	return nil
}

// Type returns the document's type, "plain" or "rich".
func (d *Doc) Type() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Type.Name()
}

// Len returns the local text's length in code points.
func (d *Doc) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Text.Len()
}

// Rev returns the newest revision the client has seen.
func (d *Doc) Rev() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Rev
}

// Source returns the client's public source id (its ops carry it).
func (d *Doc) Source() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Src
}

// Key returns the client's secret source key (to reconnect as the same
// source from another process).
func (d *Doc) Key() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Key
}

// Seq returns the newest seq the client's source has used: keep it with
// Key to reconnect from another process (Options.Seq).
func (d *Doc) Seq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Seq
}

// Pending reports whether edits wait to be acknowledged.
func (d *Doc) Pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.st.Synced()
}

// Peers returns the other participants.
func (d *Doc) Peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Peer, 0, len(d.st.Peers))
	for _, p := range d.st.Peers {
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
	d.conn, d.st.Connected = nil, false
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
			d.conn, d.st.Connected = nil, false
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
	r, err := d.st.Handle(m)
	ev := d.events(r.Notices)
	if r.Sent && d.opts.OnSend != nil {
		d.opts.OnSend(d.st.InSeq) // under the lock: before any ack of it
	}
	if d.st.Inflight == nil {
		d.stopRetryLocked()
	}
	d.signalIfSynced()
	if err != nil {
		return ev, nil, err
	}
	switch {
	case r.RetryAfter > 0:
		d.retryLater(r.RetryAfter)
	case r.CatchUp:
		// Too much work to transform from where it was based: catch up
		// (a reconnect from our revision brings the ops missed and sends
		// the op again, rebased, same seq).
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d.Reconnect(ctx) // a failure leaves the client disconnected: Err and Synced say why
		}()
	}
	return ev, r.Frame, nil
}

// events turns the state's notices into handler calls.
func (d *Doc) events(notices []clientstate.Notice) events {
	var ev events
	for _, n := range notices {
		switch n.Kind {
		case clientstate.Acked:
			ev = append(ev, func(d *Doc) {
				if d.opts.OnAck != nil {
					d.opts.OnAck(n.Seq, n.Rev)
				}
			})
		case clientstate.Remote:
			ev = append(ev, func(d *Doc) {
				if d.opts.OnRemote != nil {
					d.opts.OnRemote(n.Src, n.Seq, n.Rev)
				}
			})
		case clientstate.Refused:
			ev = append(ev, func(d *Doc) {
				if d.opts.OnError != nil {
					d.opts.OnError(n.Code, n.Message)
				}
			})
		case clientstate.Retrying:
			ev = append(ev, func(d *Doc) {
				if d.opts.OnRetry != nil {
					d.opts.OnRetry(n.Code, n.Seq, n.Pause)
				}
			})
		}
	}
	return ev
}

// retryLater sends the in-flight op again after pause, unless it was
// acknowledged or resent meanwhile.
func (d *Doc) retryLater(pause time.Duration) {
	d.stopRetryLocked()
	conn, seq := d.conn, d.st.InSeq
	d.retry = time.AfterFunc(pause, func() {
		d.mu.Lock()
		var frame []byte
		if !d.closed && d.conn == conn {
			frame = d.st.RetryFrame(seq)
		}
		d.mu.Unlock()
		if frame != nil {
			d.write(conn, frame) // a failed write ends the reader: the connection's end says why
		}
	})
}

func (d *Doc) stopRetryLocked() {
	if d.retry != nil {
		d.retry.Stop()
		d.retry = nil
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
	return d.st.Synced() && d.dispatching == 0
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
