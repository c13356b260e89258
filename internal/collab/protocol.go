package collab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/protocol"
)

// ProtocolVersion is sent in every hello; see docs/protocol.md.
const ProtocolVersion = protocol.Version

// Error codes and close codes: package protocol's (their definitions and
// meanings are there).
const (
	CodeInvalidOp      = protocol.CodeInvalidOp
	CodeRevAhead       = protocol.CodeRevAhead
	CodeRevTooOld      = protocol.CodeRevTooOld
	CodeTooLarge       = protocol.CodeTooLarge
	CodeRejected       = protocol.CodeRejected
	CodeNotFound       = protocol.CodeNotFound
	CodeForbidden      = protocol.CodeForbidden
	CodeRateLimited    = protocol.CodeRateLimited
	CodeTooFarBehind   = protocol.CodeTooFarBehind
	CodeBadMessage     = protocol.CodeBadMessage
	CodeInternal       = protocol.CodeInternal
	CodeStorageFull    = protocol.CodeStorageFull
	CodeSourceDenied   = protocol.CodeSourceDenied
	CodeDocumentFull   = protocol.CodeDocumentFull
	CodeBadSeq         = protocol.CodeBadSeq
	CloseResync        = protocol.CloseResync
	CloseNotFound      = protocol.CloseNotFound
	CloseTokenExpired  = protocol.CloseTokenExpired
	CloseTryAgainLater = protocol.CloseTryAgainLater
	CloseGoingAway     = protocol.CloseGoingAway
	ClosePolicy        = protocol.ClosePolicy
)

// Error is a protocol error: a stable code, a message for people, and the
// sequence number of the op it answers, if any.
type Error struct {
	Code    string
	Message string
	Seq     uint64
	HasSeq  bool
	// Reason: why the application refused an op (CodeRejected; a Refusal's
	// Reason).
	Reason string
	// RetryAfter, when > 0, is how long the client should wait before
	// sending the refused message again (rate_limited: until the budget
	// has the tokens). On the wire: "retryAfter", in milliseconds.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// protoErr is kept out of line: inlined, each call's arguments take room
// in the frames of the parser that every reading goroutine runs through.
//
//go:noinline
func protoErr(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ClientMessage is a decoded client frame.
type ClientMessage struct {
	Type string // "op", "sel" or "restored"
	Rev  int64
	Seq  uint64
	Op   doctype.Op
	// Span is the number of code points the op covers as written (a
	// trailing skip included, which parsing normalizes away): the document
	// at Rev must be at least that long.
	Span int
	Sel  []ot.Selection
}

// maxSelections bounds the ranges one selection message may carry.
const maxSelections = 64

// maxPosition bounds positions in selections: far beyond any document
// (MaxDocBytes), and far from overflowing when moved through ops.
const maxPosition = 1 << 40

// ParseClientMessage decodes one client frame. It returns an *Error with
// code bad_message or invalid_op for anything it rejects, and then the zero
// ClientMessage.
func ParseClientMessage(t doctype.Type, frame []byte) (ClientMessage, *Error) {
	var m ClientMessage
	if err := parseClientMessage(&m, t, frame); err != nil {
		return ClientMessage{}, err
	}
	return m, nil
}

// parseClientMessage is ParseClientMessage into *m (left zero on an
// error). It runs on every connection's reading goroutine, for every
// frame: its frames are kept small (results through pointers, errors built
// out of line), because such a stack stays as large as the deepest call it
// ever made.
func parseClientMessage(m *ClientMessage, t doctype.Type, frame []byte) *Error {
	if !utf8.Valid(frame) {
		return protoErr(CodeBadMessage, "frame is not valid UTF-8")
	}
	raw, ok := scanClientMessage(frame)
	if !ok {
		var err *Error
		if raw, err = decodeClientMessage(frame); err != nil {
			return err
		}
	}
	if err := raw.check(m, t); err != nil {
		*m = ClientMessage{}
		return err
	}
	return nil
}

// rawClientMessage is a client message as read, before its checks.
type rawClientMessage struct {
	Type           string
	Rev            int64
	Seq            uint64
	HasRev, HasSeq bool
	Op             []byte // nil: none
	Sel            []ot.Selection
}

// decodeClientMessage reads any client message with encoding/json
// (unknown fields refused).
func decodeClientMessage(frame []byte) (rawClientMessage, *Error) {
	var raw struct {
		Type string          `json:"type"`
		Rev  *int64          `json:"rev"`
		Seq  *uint64         `json:"seq"`
		Op   json.RawMessage `json:"op"`
		Sel  []ot.Selection  `json:"sel"`
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return rawClientMessage{}, protoErr(CodeBadMessage, "not a protocol message: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return rawClientMessage{}, protoErr(CodeBadMessage, "one message per frame")
	}
	out := rawClientMessage{Type: raw.Type, Op: raw.Op, Sel: raw.Sel, HasRev: raw.Rev != nil, HasSeq: raw.Seq != nil}
	if raw.Rev != nil {
		out.Rev = *raw.Rev
	}
	if raw.Seq != nil {
		out.Seq = *raw.Seq
	}
	return out, nil
}

// scanClientMessage reads the message every keystroke sends, a flat object
// of "type", "rev", "seq" and "op" (an array, parsed by ot), without
// encoding/json's allocations; ok is false for anything else, or anything
// it does not expect (escapes, repeated keys, other fields), which
// decodeClientMessage then reads as before.
func scanClientMessage(frame []byte) (raw rawClientMessage, ok bool) {
	b := skipJSONSpace(frame)
	if len(b) == 0 || b[0] != '{' {
		return raw, false
	}
	b = skipJSONSpace(b[1:])
	for first := true; ; first = false {
		if len(b) > 0 && b[0] == '}' {
			return raw, !first && len(skipJSONSpace(b[1:])) == 0
		}
		key, n := plainString(b)
		if n == 0 {
			return raw, false
		}
		b = skipJSONSpace(b[n:])
		if len(b) == 0 || b[0] != ':' {
			return raw, false
		}
		b = skipJSONSpace(b[1:])
		switch string(key) {
		case "type":
			v, n := plainString(b)
			if n == 0 || raw.Type != "" || len(v) == 0 {
				return raw, false
			}
			raw.Type, b = internType(v), b[n:]
		case "rev", "seq":
			n := 0
			for n < len(b) && (b[n] == '-' || b[n] >= '0' && b[n] <= '9') {
				n++
			}
			num := b[:n]
			if !protocol.IsJSONInteger(num) {
				return raw, false
			}
			if key[0] == 'r' {
				v, err := strconv.ParseInt(string(num), 10, 64)
				if err != nil || raw.HasRev {
					return raw, false
				}
				raw.Rev, raw.HasRev = v, true
			} else {
				v, err := strconv.ParseUint(string(num), 10, 64)
				if err != nil || raw.HasSeq {
					return raw, false
				}
				raw.Seq, raw.HasSeq = v, true
			}
			b = b[n:]
		case "op":
			n := arrayEnd(b)
			// (json.Valid allocates nothing; it keeps malformed JSON
			// inside the op a bad_message, as encoding/json says.)
			if n == 0 || raw.Op != nil || !json.Valid(b[:n]) {
				return raw, false
			}
			raw.Op, b = b[:n], b[n:]
		default:
			return raw, false
		}
		b = skipJSONSpace(b)
		switch {
		case len(b) > 0 && b[0] == ',':
			b = skipJSONSpace(b[1:])
			if len(b) == 0 || b[0] != '"' {
				return raw, false
			}
		case len(b) > 0 && b[0] == '}':
		default:
			return raw, false
		}
	}
}

// internType returns the message types as constants (no allocation).
func internType(v []byte) string {
	switch string(v) {
	case "op":
		return "op"
	case "sel":
		return "sel"
	case "restored":
		return "restored"
	}
	return string(v)
}

func skipJSONSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// plainString reads a JSON string of printable ASCII without escapes at
// the start of b: its contents and its length with the quotes (0 if it is
// not one).
func plainString(b []byte) ([]byte, int) {
	if len(b) == 0 || b[0] != '"' {
		return nil, 0
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], i + 1
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, 0
		}
	}
	return nil, 0
}

// arrayEnd is the length of the JSON array at the start of b, with its
// strings skipped (escapes included), or 0; what is inside is ot's to
// check.
func arrayEnd(b []byte) int {
	if len(b) == 0 || b[0] != '[' {
		return 0
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return 0
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}

// check validates a message read by either reader.
func (raw *rawClientMessage) check(m *ClientMessage, t doctype.Type) *Error {
	*m = ClientMessage{Type: raw.Type}
	switch raw.Type {
	case "op":
		if !raw.HasSeq {
			return protoErr(CodeBadMessage, "op message without seq")
		}
		m.Seq = raw.Seq
		if m.Seq == 0 {
			return &Error{Code: CodeBadSeq, Message: "seq numbers a source's ops from 1", Seq: 0, HasSeq: true}
		}
		if !raw.HasRev || raw.Rev < 0 {
			return &Error{Code: CodeBadMessage, Message: "op message needs a revision >= 0", Seq: m.Seq, HasSeq: true}
		}
		m.Rev = raw.Rev
		if raw.Op == nil {
			return &Error{Code: CodeInvalidOp, Message: "op message without op", Seq: m.Seq, HasSeq: true}
		}
		op, span, err := t.ParseOp(raw.Op)
		if err != nil {
			return &Error{Code: CodeInvalidOp, Message: err.Error(), Seq: m.Seq, HasSeq: true}
		}
		m.Op, m.Span = op, span
	case "sel":
		if !raw.HasRev || raw.Rev < 0 {
			return protoErr(CodeBadMessage, "sel message needs a revision >= 0")
		}
		m.Rev = raw.Rev
		if len(raw.Sel) > maxSelections {
			return protoErr(CodeBadMessage, "at most %d selections", maxSelections)
		}
		for _, s := range raw.Sel {
			if s.Anchor < 0 || s.Head < 0 || s.Anchor > maxPosition || s.Head > maxPosition {
				return protoErr(CodeBadMessage, "selection positions must be 0..%d", maxPosition)
			}
		}
		m.Sel = raw.Sel
	case "restored":
		if !raw.HasRev || raw.Rev < 0 {
			return protoErr(CodeBadMessage, "restored message needs the revision restored, >= 0")
		}
		if raw.HasSeq || raw.Op != nil || raw.Sel != nil {
			return protoErr(CodeBadMessage, "a restored message has only a rev")
		}
		m.Rev = raw.Rev
	case "":
		return protoErr(CodeBadMessage, "message without type")
	default:
		return protoErr(CodeBadMessage, "unknown message type %q", raw.Type)
	}
	return nil
}

// The encoders below write server messages by hand: ops go out exactly as
// text-unicode's JSON.stringify writes them (encoding/json would re-escape
// them), and a hub encodes each message once for all its receivers.

func appendString(b []byte, s string) []byte { return ot.AppendJSONString(b, s) }

// appendContent appends a hello's document under its type's key: "text"
// (a string) for a plain document, "delta" (Quill's op array) for a rich
// one.
func appendContent(b []byte, t doctype.Type, d doctype.Document) []byte {
	return t.AppendContentJSON(appendField(b, t.ContentKey()), d.Content())
}

func appendField(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendObject appends {fields}, where fields writes each field with its
// leading comma (appendField); the first comma is dropped.
func appendObject(b []byte, fields func([]byte) []byte) []byte {
	start := len(b)
	b = fields(append(b, '{'))
	if len(b) > start+1 && b[start+1] == ',' {
		b = append(b[:start+1], b[start+2:]...)
	}
	return append(b, '}')
}

func appendSelections(b []byte, sel []ot.Selection) []byte {
	b = append(b, '[')
	for i, s := range sel {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"anchor":`...)
		b = strconv.AppendInt(b, int64(s.Anchor), 10)
		b = append(b, `,"head":`...)
		b = strconv.AppendInt(b, int64(s.Head), 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// opMessage is a committed op as sent to clients (in op messages and in a
// hello's catch-up list).
func appendOpFields(b []byte, rec *committed) []byte {
	b = appendField(b, "rev")
	b = strconv.AppendInt(b, rec.Rev, 10)
	b = appendField(b, "op")
	b = rec.Op.AppendJSON(b)
	if rec.Client != "" {
		b = appendField(b, "client")
		b = appendString(b, rec.Client)
	}
	if rec.Source != "" {
		b = appendField(b, "src")
		b = appendString(b, rec.Source)
		b = appendField(b, "seq")
		b = strconv.AppendUint(b, rec.Seq, 10)
	}
	if rec.User != "" {
		b = appendField(b, "user")
		b = appendString(b, rec.User)
	}
	b = appendField(b, "time")
	b = strconv.AppendInt(b, rec.Time.UnixMilli(), 10)
	return b
}

func encodeOp(rec *committed) []byte {
	// Room for the fields and a typical keystroke's op, so that the
	// buffer is allocated once.
	b := make([]byte, 0, 160+len(rec.Client)+len(rec.Source)+len(rec.User))
	b = append(b, `{"type":"op"`...)
	b = appendOpFields(b, rec)
	return append(b, '}')
}

func encodeAck(seq uint64, rev int64) []byte {
	b := make([]byte, 0, 48)
	b = append(b, `{"type":"ack","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"rev":`...)
	b = strconv.AppendInt(b, rev, 10)
	return append(b, '}')
}

func encodeSel(client string, rev int64, sel []ot.Selection) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"type":"sel","client":`...)
	b = appendString(b, client)
	b = appendField(b, "rev")
	b = strconv.AppendInt(b, rev, 10)
	b = appendField(b, "sel")
	b = appendSelections(b, sel)
	return append(b, '}')
}

// encodeBatch encodes messages as one: a JSON array, or the message itself
// if there is only one; skip >= 0 leaves parts[skip] out.
func encodeBatch(parts [][]byte, skip int) []byte {
	n, size := 0, 2
	for i, p := range parts {
		if i != skip {
			n++
			size += len(p) + 1
		}
	}
	if n == 1 {
		for i, p := range parts {
			if i != skip {
				return p
			}
		}
	}
	b := append(make([]byte, 0, size), '[')
	for i, p := range parts {
		if i == skip {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return append(b, ']')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// peer is the client as others see it (without its selection).
func (cl *client) peer() Peer {
	return Peer{Client: cl.id, User: cl.info.User, Name: cl.info.Name, Color: cl.info.Color, Source: cl.info.Source}
}

func appendPeerFields(b []byte, p Peer) []byte {
	b = appendField(b, "client")
	b = appendString(b, p.Client)
	b = appendField(b, "user")
	b = appendString(b, p.User)
	b = appendField(b, "name")
	b = appendString(b, p.Name)
	b = appendField(b, "color")
	b = appendString(b, p.Color)
	return b
}

func encodeJoin(p Peer) []byte {
	b := append(make([]byte, 0, 128), `{"type":"join"`...)
	b = appendPeerFields(b, p)
	return append(b, '}')
}

func encodeRestored(clientID string, rev int64) []byte {
	b := append(make([]byte, 0, 64), `{"type":"restored","client":`...)
	b = appendString(b, clientID)
	b = appendField(b, "rev")
	b = strconv.AppendInt(b, rev, 10)
	return append(b, '}')
}

func encodeTitle(title string) []byte {
	b := append(make([]byte, 0, 32+len(title)), `{"type":"title","title":`...)
	b = appendString(b, title)
	return append(b, '}')
}

func encodeLeave(clientID string) []byte {
	b := append(make([]byte, 0, 64), `{"type":"leave","client":`...)
	b = appendString(b, clientID)
	return append(b, '}')
}

// EncodeError encodes an error message.
func EncodeError(e *Error) []byte {
	b := append(make([]byte, 0, 96), `{"type":"error","code":`...)
	b = appendString(b, e.Code)
	b = appendField(b, "message")
	b = appendString(b, e.Message)
	if e.Reason != "" {
		b = appendField(b, "reason")
		b = appendString(b, e.Reason)
	}
	if e.HasSeq {
		b = appendField(b, "seq")
		b = strconv.AppendUint(b, e.Seq, 10)
	}
	if e.RetryAfter > 0 {
		b = appendField(b, "retryAfter")
		b = strconv.AppendInt(b, max(1, e.RetryAfter.Milliseconds()), 10)
	}
	return append(b, '}')
}
