package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ParseFrame unpacks one server frame: a message or a JSON array of them.
// The messages every client gets many of (op, ack, sel) are read by a
// small scanner of their flat shape, which a busy document makes worth it
// (encoding/json was most of a client's time); anything else, or anything
// the scanner does not expect, goes through encoding/json.
func ParseFrame(data []byte) ([]Message, error) {
	var r FrameReader
	return r.Parse(data)
}

// FrameReader is ParseFrame for one connection's reader: it reuses its
// slice of messages (valid until the next parse) and keeps the strings
// every message repeats (types, sources, client ids) instead of
// allocating them per message.
type FrameReader struct {
	msgs  []Message
	names map[string]string
}

// maxNames bounds a FrameReader's kept strings (a document's clients come
// and go; past this many, strings are allocated as they come).
const maxNames = 4096

// name returns raw as a string, kept if it is one of the repeated fields.
func (r *FrameReader) name(raw []byte) string {
	if s, ok := r.names[string(raw)]; ok {
		return s
	}
	s := string(raw)
	if r.names == nil {
		r.names = map[string]string{}
	}
	if len(r.names) < maxNames {
		r.names[s] = s
	}
	return s
}

// Parse is ParseFrame; the messages are valid until the next call.
func (r *FrameReader) Parse(data []byte) ([]Message, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		out := r.msgs[:0]
		clear(r.msgs)
		rest := data[1:]
		for {
			rest = skipSpace(rest)
			if len(rest) > 0 && rest[0] == ']' && len(out) == 0 {
				if len(skipSpace(rest[1:])) != 0 {
					return nil, fmt.Errorf("protocol: frame %.200s: data after the array", data)
				}
				return nil, nil
			}
			end := valueEnd(rest)
			if end < 0 {
				return nil, fmt.Errorf("protocol: frame %.200s: malformed array", data)
			}
			m, err := r.message(rest[:end])
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			r.msgs = out
			rest = skipSpace(rest[end:])
			if len(rest) == 0 {
				return nil, fmt.Errorf("protocol: frame %.200s: unterminated array", data)
			}
			if rest[0] == ']' {
				if len(skipSpace(rest[1:])) != 0 {
					return nil, fmt.Errorf("protocol: frame %.200s: data after the array", data)
				}
				return out, nil
			}
			if rest[0] != ',' {
				return nil, fmt.Errorf("protocol: frame %.200s: malformed array", data)
			}
			rest = rest[1:]
		}
	}
	m, err := r.message(data)
	if err != nil {
		return nil, err
	}
	clear(r.msgs)
	r.msgs = append(r.msgs[:0], m)
	return r.msgs, nil
}

func (r *FrameReader) message(data []byte) (Message, error) {
	if m, ok := r.scanFlat(data); ok {
		return m, nil
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("protocol: message %.200s: %w", data, err)
	}
	return m, nil
}

// scanFlat reads an object of string, integer and (for "op") raw array
// fields; ok is false for anything else (the caller falls back).
func (r *FrameReader) scanFlat(data []byte) (m Message, ok bool) {
	if len(data) < 2 || data[0] != '{' || !bytes.HasPrefix(data, []byte(`{"type":"`)) {
		return m, false
	}
	rest := data[1:]
	for first := true; ; first = false {
		rest = skipSpace(rest)
		if len(rest) > 0 && rest[0] == '}' {
			return m, !first && len(skipSpace(rest[1:])) == 0 && m.Type != "" && m.Type != "hello"
		}
		key, n, ok := scanRaw(rest)
		if !ok {
			return m, false
		}
		rest = skipSpace(rest[n:])
		if len(rest) == 0 || rest[0] != ':' {
			return m, false
		}
		rest = skipSpace(rest[1:])
		end := valueEnd(rest)
		if end <= 0 {
			return m, false
		}
		val := rest[:end]
		switch p := m.stringField(key); {
		case p != nil:
			n, escaped, ok := stringEnd(val)
			if !ok || n != len(val) {
				return m, false
			}
			if !escaped && repeated(key) {
				*p = r.name(val[1 : n-1])
				break
			}
			str, _, ok := scanString(val)
			if !ok {
				return m, false // an escape JSON does not have
			}
			*p = str
		case string(key) == "op":
			if !json.Valid(val) {
				return m, false
			}
			m.Op = json.RawMessage(val)
		default:
			// An integer field, or one for encoding/json (sel, ops,
			// peers, text, ...).
			if !IsJSONInteger(val) {
				return m, false
			}
			v, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || !m.setInt(key, v) {
				return m, false
			}
		}
		rest = skipSpace(rest[end:])
		switch {
		case len(rest) > 0 && rest[0] == ',':
			if rest = skipSpace(rest[1:]); len(rest) == 0 || rest[0] != '"' {
				return m, false
			}
		case len(rest) > 0 && rest[0] == '}':
		default:
			return m, false
		}
	}
}

// stringField is the string field key names, or nil. (A switch on
// string(key) compares bytes: no allocation.)
func (m *Message) stringField(key []byte) *string {
	switch string(key) {
	case "type":
		return &m.Type
	case "src":
		return &m.Src
	case "client":
		return &m.Client
	case "code":
		return &m.Code
	case "message":
		return &m.Message
	case "doc":
		return &m.Doc
	case "doctype":
		return &m.DocType
	case "reason":
		return &m.Reason
	case "user":
		return &m.User
	case "name":
		return &m.Name
	case "color":
		return &m.Color
	case "title":
		return &m.Title
	case "key":
		return &m.Key
	}
	return nil
}

// repeated reports whether the string field key names is one that many
// messages share (worth keeping in FrameReader.names).
func repeated(key []byte) bool {
	switch string(key) {
	case "type", "src", "client", "user", "color", "code":
		return true
	}
	return false
}

// setInt sets the integer field key names; false if there is none (or
// the value does not fit it).
func (m *Message) setInt(key []byte, v int64) bool {
	switch string(key) {
	case "rev":
		m.Rev = v
	case "from":
		m.From = v
	case "protocol":
		m.Protocol = int(v)
	case "seq":
		if v < 0 {
			return false
		}
		m.Seq = uint64(v)
	case "retryAfter":
		m.RetryAfter = v
	case "time":
		m.Time = v
	case "more":
		m.More = int(v)
	default:
		return false
	}
	return true
}

// IsJSONInteger reports whether b is an integer as JSON writes one (no
// leading zeros, no fraction or exponent). The server's parser uses it too.
func IsJSONInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// scanRaw reads a JSON string without escapes at the start of b (a key):
// its bytes and length.
func scanRaw(b []byte) ([]byte, int, bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, 0, false
	}
	for i := 1; i < len(b); i++ {
		switch {
		case b[i] == '"':
			return b[1:i], i + 1, true
		case b[i] == '\\' || b[i] < 0x20 || b[i] >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// stringEnd is the length of the JSON string at the start of b, and
// whether it has escapes; ok is false if it is not one (or not UTF-8).
// It allocates nothing: most strings in a frame are only skipped.
func stringEnd(b []byte) (n int, escaped, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return 0, false, false
	}
	ascii := true
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			if !ascii && !utf8.Valid(b[1:i]) {
				return 0, false, false // encoding/json's replacement rules
			}
			return i + 1, escaped, true
		case c < 0x20:
			return 0, false, false
		case c >= 0x80:
			ascii = false
		}
	}
	return 0, false, false
}

// scanString reads a JSON string at the start of b: its value and length.
func scanString(b []byte) (string, int, bool) {
	n, escaped, ok := stringEnd(b)
	if !ok {
		return "", 0, false
	}
	if !escaped {
		return string(b[1 : n-1]), n, true
	}
	// Escapes are rare in these messages: JSON's rules are encoding/json's
	// (strconv's differ: \a, \x, \').
	var js string
	if json.Unmarshal(b[:n], &js) != nil {
		return "", 0, false
	}
	return js, n, true
}

// valueEnd is the length of the JSON value at the start of b (strings,
// numbers, literals, and arrays and objects balanced), or -1.
func valueEnd(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	switch b[0] {
	case '"':
		n, _, ok := stringEnd(b)
		if !ok {
			return -1
		}
		return n
	case '[', '{':
		depth := 0
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '"':
				n, _, ok := stringEnd(b[i:])
				if !ok {
					return -1
				}
				i += n - 1
			case '[', '{':
				depth++
			case ']', '}':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for i, c := range b {
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' {
			return i
		}
	}
	return len(b)
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
