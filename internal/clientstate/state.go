// Package clientstate is the pure part of Tandem's Go client: one
// connection's view of one document as a state machine, with no
// goroutines, no clock, no locks and no I/O. Package client wraps it with
// a WebSocket, a mutex and timers; the simulator (internal/collab's
// TestSim) drives the same code with a simulated network, so what the
// simulator checks is what `tandem bench` and applications run.
//
// The model is ShareDB's: local edits apply at once to the local text; at
// most one op is in flight (sent, not yet acknowledged) and the edits made
// meanwhile are composed into one pending op, sent when the ack comes.
// Ops from others are transformed against the in-flight and pending ops
// (theirs on the right, ours on the left, as the server breaks ties) and
// applied. The source key makes resubmission exactly-once: after a
// reconnect the in-flight op is sent again with its sequence number.
package clientstate

import (
	"errors"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/protocol"
)

// ErrResync: the server sent the document's text instead of the ops since
// the client's revision while an op was in flight; the client cannot tell
// whether the text includes it.
var ErrResync = errors.New("client: the server sent the text while an op was in flight: resynchronize")

// ErrUnsupportedType: the document is of a type this client does not edit.
var ErrUnsupportedType = errors.New("client: the document is not a plain-text document")

// ServerError is an error message from the server.
type ServerError struct {
	Code, Message string
	Seq           uint64 // the seq it is about, if any
	// Reason: why the application refused the op (code "rejected").
	Reason string
}

func (e *ServerError) Error() string { return "tandem: " + e.Code + ": " + e.Message }

// Peer is another participant of the document.
type Peer struct {
	Client, User, Name, Color string
	Sel                       []ot.Selection
}

// Anchor is a position in the document that moves with every edit, ours
// and others' (text inserted exactly at it goes after it), like a marker.
type Anchor struct{ pos int }

// Pos is the anchor's position now.
func (a *Anchor) Pos() int { return a.pos }

// NoticeKind says what a Notice reports.
type NoticeKind int

const (
	Acked    NoticeKind = iota // the in-flight op Seq was committed as Rev
	Remote                     // another client's op (Src, Seq) was applied as Rev
	Refused                    // the server refused something (Code, Message)
	Retrying                   // the in-flight op Seq was refused for now (Code): send it again after Pause
)

// A Notice is something the caller may tell its handlers of, once it has
// released whatever protects the state.
type Notice struct {
	Kind    NoticeKind
	Seq     uint64
	Rev     int64
	Src     string
	Code    string
	Message string
	Pause   time.Duration
}

// Result is what handling a server message asks of the caller.
type Result struct {
	Notices []Notice
	// Frame is to be sent now (the next op, after an ack).
	Frame []byte
	// Sent: Frame carries an op sent for the first time (InSeq).
	Sent bool
	// RetryAfter, if not 0: send RetryFrame(InSeq) after this long (the
	// in-flight op was refused for now).
	RetryAfter time.Duration
	// CatchUp: the in-flight op is too far behind: reconnect from Rev
	// (the hello brings the ops missed, the resend rebases it).
	CatchUp bool
}

// State is one connection's view of one document. The zero value is not
// usable: see New.
type State struct {
	Key, Src, ClientID, Title string
	Rev                       int64            // the newest revision seen; -1 before the first hello
	Type                      doctype.Type     // the document's (from hello)
	Text                      doctype.Document // the server's document plus our edits
	Inflight                  *doctype.Op
	InSeq                     uint64
	Pending                   *doctype.Op
	Seq                       uint64
	Peers                     map[string]*Peer
	// Connected: frames can be sent (a hello came on the connection now
	// up). Ops edited while not connected wait in Pending.
	Connected bool
	// Refused counts refusals in a row of the in-flight op.
	Refused int

	withSel int // peers with a selection (none: no need to move them)
	anchors []*Anchor

	// RetryPause and MaxRetryPause: see client.Options.
	RetryPause, MaxRetryPause time.Duration
	// Jitter returns a number in [0, n]: retry pauses are spread by up to
	// a quarter so that clients refused together do not come back at
	// once. Nil: no spread.
	Jitter func(n int64) int64
}

// New returns the state of a client that has not joined yet, with its
// source key ("" lets the server issue one).
func New(key string) *State {
	return &State{Key: key, Rev: -1, Peers: map[string]*Peer{}}
}

// Hello takes the server's hello: the text, or the ops since our revision
// (our own in-flight op among them counts as its ack). The caller then
// sets Connected and sends Resend().
func (s *State) Hello(m protocol.Message) ([]Notice, error) {
	s.Connected = false // nothing goes out until the caller has the hello's resend
	typ, err := doctype.Lookup(m.DocType)
	if err != nil {
		return nil, fmt.Errorf("%w: it is a %s document", ErrUnsupportedType, m.DocType)
	}
	if s.Type != nil && s.Type.Name() != typ.Name() {
		return nil, fmt.Errorf("client: hello: the document was a %s document and is now %s", s.Type.Name(), typ.Name())
	}
	s.Type = typ
	if m.Key != "" {
		s.Key = m.Key
	}
	s.Src, s.ClientID, s.Title = m.Src, m.Client, m.Title
	// The peers are set after the ops: their selections are at the
	// hello's revision, which the ops lead up to.
	s.Peers, s.withSel = map[string]*Peer{}, 0
	ev, err := s.catchUp(m, typ)
	if err != nil {
		return ev, err
	}
	for _, p := range m.Peers {
		s.Peers[p.Client] = &Peer{Client: p.Client, User: p.User, Name: p.Name, Color: p.Color, Sel: p.Sel}
		if len(p.Sel) > 0 {
			s.withSel++
		}
	}
	return ev, nil
}

// catchUp takes a hello's document: its text, or the ops since Rev.
func (s *State) catchUp(m protocol.Message, typ doctype.Type) (ev []Notice, err error) {
	switch {
	case m.Text != nil || m.Delta != nil:
		if (s.Inflight != nil || s.Pending != nil) && s.Rev >= 0 {
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
		s.Text, s.Rev = r, m.Rev
	default:
		if s.Text == nil || m.From != s.Rev {
			return ev, fmt.Errorf("client: hello: ops from %d, the client is at %d", m.From, s.Rev)
		}
		for _, o := range m.Ops {
			o.Type = "op"
			// Our own in-flight op among them is its ack; the next op
			// goes out with the resend after the hello.
			r, err := s.Handle(o)
			if err != nil {
				return ev, err
			}
			ev = append(ev, r.Notices...)
		}
		s.Rev = max(s.Rev, m.Rev)
	}
	return ev, nil
}

// Resend is the in-flight op to send again after a reconnect (with its
// seq: exactly-once), or the pending one if nothing was in flight; sent
// reports the latter (a new seq).
func (s *State) Resend() (frame []byte, sent bool) {
	if s.Inflight == nil {
		f := s.Flush()
		return f, f != nil
	}
	return s.opFrame(s.Inflight, s.InSeq), false
}

// RetryFrame is the frame that sends the in-flight op seq again (after a
// refusal for now), or nil if it is no longer in flight.
func (s *State) RetryFrame(seq uint64) []byte {
	if !s.Connected || s.Inflight == nil || s.InSeq != seq {
		return nil
	}
	return s.opFrame(s.Inflight, s.InSeq)
}

func (s *State) opFrame(op *doctype.Op, seq uint64) []byte {
	b := fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":`, s.Rev, seq)
	b = op.AppendJSON(b)
	return append(b, '}')
}

// Flush makes the pending op the in-flight one and returns its frame, if
// nothing is in flight and the client is connected.
func (s *State) Flush() []byte {
	if s.Inflight != nil || s.Pending == nil || !s.Connected {
		return nil
	}
	if s.Pending.IsNoop() {
		// Others' edits undid it (a delete of text they deleted first):
		// nothing to send.
		s.Pending = nil
		return nil
	}
	s.Inflight, s.Pending = s.Pending, nil
	s.Seq++
	s.InSeq = s.Seq
	return s.opFrame(s.Inflight, s.InSeq)
}

// Edit applies op locally and composes it into the pending op; frame is
// the op to send now, if one can go (sent: always a new seq).
func (s *State) Edit(op doctype.Op) (frame []byte, err error) {
	if s.Text == nil {
		return nil, errors.New("client: edit before the hello")
	}
	if err := s.Text.Apply(op); err != nil {
		return nil, fmt.Errorf("client: edit: %w", err)
	}
	if s.Pending == nil {
		s.Pending = &op
	} else {
		c, err := s.Type.Compose(*s.Pending, op)
		if err != nil {
			return nil, fmt.Errorf("client: edit: %w", err)
		}
		s.Pending = &c
	}
	if s.Pending.IsNoop() {
		// Typed and taken back before it was sent: nothing to send (the
		// server refuses an empty op).
		s.Pending = nil
	}
	s.moveAnchors(op)
	return s.Flush(), nil
}

// NewAnchor returns an anchor at pos, moved by every later edit.
func (s *State) NewAnchor(pos int) *Anchor {
	a := &Anchor{pos: pos}
	s.anchors = append(s.anchors, a)
	return a
}

// SelectionFrame is the frame that sends the client's selections (code
// points of Text), moved into the server's coordinates at Rev.
func (s *State) SelectionFrame(sel []ot.Selection) []byte {
	b := fmt.Appendf(nil, `{"type":"sel","rev":%d,"sel":[`, s.Rev)
	for i, x := range sel {
		x = s.toServer(x)
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"anchor":%d,"head":%d}`, x.Anchor, x.Head)
	}
	return append(b, "]}"...)
}

// toServer moves a local selection back through the pending and in-flight
// ops (approximately: a caret inside local inserts goes to their start).
func (s *State) toServer(x ot.Selection) ot.Selection {
	for _, op := range []*doctype.Op{s.Pending, s.Inflight} {
		if op == nil {
			continue
		}
		x = s.Type.TransformSelection(x, op.InverseShape(), ot.Left)
	}
	return x
}

// Synced: every local edit is acknowledged.
func (s *State) Synced() bool { return s.Inflight == nil && s.Pending == nil }

// Handle applies one server message (after the hello).
func (s *State) Handle(m protocol.Message) (Result, error) {
	var r Result
	switch m.Type {
	case "ack":
		if s.Inflight == nil || m.Seq != s.InSeq {
			return r, fmt.Errorf("client: ack of seq %d, in flight %d", m.Seq, s.InSeq)
		}
		if m.Rev > s.Rev {
			// Our op is the revision: the others' selections, in the
			// server's coordinates at Rev, move through it.
			s.movePeers(*s.Inflight, s.ClientID)
		}
		s.Inflight = nil
		s.Refused = 0
		s.Rev = max(s.Rev, m.Rev)
		r.Notices = append(r.Notices, Notice{Kind: Acked, Seq: m.Seq, Rev: m.Rev})
		r.Frame = s.Flush()
		r.Sent = r.Frame != nil
		return r, nil
	case "op":
		if m.Src == s.Src && s.Inflight != nil && m.Seq == s.InSeq {
			// Our own op, committed by an earlier connection: the ack.
			return s.Handle(protocol.Message{Type: "ack", Seq: m.Seq, Rev: m.Rev})
		}
		n, err := s.remote(m)
		if err != nil {
			return r, err
		}
		r.Notices = append(r.Notices, n)
	case "sel":
		if p := s.Peers[m.Client]; p != nil {
			switch {
			case len(p.Sel) == 0 && len(m.Sel) > 0:
				s.withSel++
			case len(p.Sel) > 0 && len(m.Sel) == 0:
				s.withSel--
			}
			p.Sel = m.Sel
		}
	case "join":
		if p := s.Peers[m.Client]; p != nil && len(p.Sel) > 0 {
			s.withSel--
		}
		s.Peers[m.Client] = &Peer{Client: m.Client, User: m.User, Name: m.Name, Color: m.Color}
	case "leave":
		if p := s.Peers[m.Client]; p != nil && len(p.Sel) > 0 {
			s.withSel--
		}
		delete(s.Peers, m.Client)
	case "error":
		if m.Code == "invalid_op" && m.Seq != 0 && s.Inflight != nil && m.Seq == s.InSeq && s.Inflight.IsNoop() {
			// Others' edits, which we have, already did what it does: the
			// server committed nothing for it. Drop it and go on, quietly.
			s.Inflight, s.Refused = nil, 0
			r.Frame = s.Flush()
			r.Sent = r.Frame != nil
			return r, nil
		}
		r.Notices = append(r.Notices, Notice{Kind: Refused, Code: m.Code, Message: m.Message, Seq: m.Seq})
		if m.Seq == 0 || s.Inflight == nil || m.Seq != s.InSeq {
			return r, nil
		}
		if pause, ok := s.retryPause(m); ok {
			r.Notices = append(r.Notices, Notice{Kind: Retrying, Code: m.Code, Seq: m.Seq, Pause: pause})
			r.RetryAfter = pause
			return r, nil
		}
		if m.Code == "too_far_behind" {
			r.CatchUp = true
			return r, nil
		}
		// The op was refused for good: drop it (its effect stays in the
		// local text until the caller resynchronizes).
		return r, &ServerError{Code: m.Code, Message: m.Message, Seq: m.Seq, Reason: m.Reason}
	case "hello":
		return r, errors.New("client: a second hello")
	}
	return r, nil
}

// retryPause is the pause before the in-flight op that m refused for now
// is sent again (docs/protocol.md: rate_limited and storage_full are
// retried with the same seq); ok is false for a refusal that is final.
func (s *State) retryPause(m protocol.Message) (pause time.Duration, ok bool) {
	first, limit := s.RetryPause, s.MaxRetryPause
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
	pause = first << min(s.Refused, 16)
	s.Refused++
	pause = max(min(pause, limit), time.Duration(m.RetryAfter)*time.Millisecond)
	if s.Jitter != nil {
		pause += time.Duration(s.Jitter(int64(pause) / 4))
	}
	return pause, true
}

// remote applies another client's op at m.Rev, transformed against our
// in-flight and pending ops.
func (s *State) remote(m protocol.Message) (Notice, error) {
	if m.Rev != s.Rev+1 {
		return Notice{}, fmt.Errorf("client: op at revision %d, the client is at %d", m.Rev, s.Rev)
	}
	op, _, err := s.Type.ParseOp(m.Op)
	if err != nil {
		return Notice{}, fmt.Errorf("client: op at revision %d: %w", m.Rev, err)
	}
	// The others' selections are in the server's coordinates: they move
	// through the op as the server committed it, not as it applies to
	// the local text (after our unacknowledged edits).
	s.movePeers(op, m.Client)
	for _, mine := range []**doctype.Op{&s.Inflight, &s.Pending} {
		if *mine == nil {
			continue
		}
		a, err := s.Type.Transform(**mine, op, ot.Left)
		if err != nil {
			return Notice{}, fmt.Errorf("client: transform at revision %d: %w", m.Rev, err)
		}
		if op, err = s.Type.Transform(op, **mine, ot.Right); err != nil {
			return Notice{}, fmt.Errorf("client: transform at revision %d: %w", m.Rev, err)
		}
		*mine = &a
	}
	if err := s.Text.Apply(op); err != nil {
		return Notice{}, fmt.Errorf("client: apply the op at revision %d: %w", m.Rev, err)
	}
	s.moveAnchors(op)
	s.Rev = m.Rev
	return Notice{Kind: Remote, Src: m.Src, Seq: m.Seq, Rev: m.Rev}, nil
}

// movePeers moves the others' selections through the op at the next
// revision (author: the connection that made it).
func (s *State) movePeers(op doctype.Op, author string) {
	for _, p := range s.Peers {
		if s.withSel == 0 {
			break
		}
		if len(p.Sel) == 0 {
			continue
		}
		side := ot.Left
		if p.Client == author {
			side = ot.Right // the author's caret stays after its insert
		}
		for i, x := range p.Sel {
			p.Sel[i] = s.Type.TransformSelection(x, op, side)
		}
	}
}

func (s *State) moveAnchors(op doctype.Op) {
	for _, a := range s.anchors {
		p := s.Type.TransformSelection(ot.Selection{Anchor: a.pos, Head: a.pos}, op, ot.Left)
		a.pos = p.Anchor
	}
}
