package ot

import (
	"fmt"
	"strconv"

	"github.com/tandemdocs/tandem/ot/internal/jsontext"
)

// MarshalJSON encodes op in text-unicode's JSON form, byte for byte what
// JavaScript's JSON.stringify writes for the same op: skips as integers,
// inserts as strings, deletes as {"d":N} or {"d":"text"}. It fails on a
// malformed op. It does not normalize: marshal a normalized op to get the
// canonical form.
func (op Op) MarshalJSON() ([]byte, error) {
	return op.AppendJSON(make([]byte, 0, 16+8*len(op)))
}

// AppendJSON appends op's JSON form (as MarshalJSON writes it) to b.
func (op Op) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, '[')
	for i, c := range op {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendComponent(b, c); err != nil {
			return nil, fmt.Errorf("component %d: %w", i, err)
		}
	}
	return append(b, ']'), nil
}

func appendComponent(b []byte, c Component) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	switch c.kind {
	case KindSkip:
		return strconv.AppendInt(b, int64(c.n), 10), nil
	case KindInsert:
		return AppendJSONString(b, c.text), nil
	default:
		b = append(b, `{"d":`...)
		if c.text != "" {
			b = AppendJSONString(b, c.text)
		} else {
			b = strconv.AppendInt(b, int64(c.n), 10)
		}
		return append(b, '}'), nil
	}
}

// AppendJSONString appends s as a JSON string, written as JSON.stringify
// writes it: only '"', '\\' and control characters are escaped, with the
// short escapes where JSON has them. Invalid UTF-8 (which no op holds) is
// written as U+FFFD, so the output is always valid JSON.
func AppendJSONString(b []byte, s string) []byte { return jsontext.AppendString(b, s) }

// UnmarshalJSON decodes op from text-unicode's JSON form and normalizes it
// (adjacent components of one kind are merged and a trailing skip is dropped:
// both are harmless, so they are accepted rather than rejected).
//
// It rejects, with an error wrapping ErrInvalidOp: anything but an array
// (null included); skips that are not positive integers (0, -1, 1.5, 1e3);
// empty inserts; deletes whose d is not a positive integer or a non-empty
// string; objects with any other key; invalid UTF-8; and escaped UTF-16
// surrogates that do not form a pair, such as "\ud83d" (encoding/json would
// silently turn those into U+FFFD; this decoder refuses them so that the
// damage cannot reach a document).
func (op *Op) UnmarshalJSON(data []byte) error {
	p := opParser{data: data}
	parsed, err := p.parseOp()
	if err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidOp, err)
	}
	norm, err := Normalize(parsed)
	if err != nil {
		return err
	}
	*op = norm
	return nil
}

// ParseJSON decodes an op from its JSON form; see Op.UnmarshalJSON.
func ParseJSON(data []byte) (Op, error) {
	var op Op
	if err := op.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return op, nil
}

// ParseJSONSpan is ParseJSON that also returns the op's span as written:
// the code points its skips and deletes cover, a trailing skip included
// (normalizing drops it). A document the op applies to must be at least
// that long; ParseJSON's result alone cannot tell [1,"x",10] from [1,"x"].
func ParseJSONSpan(data []byte) (Op, int, error) {
	p := opParser{data: data}
	parsed, err := p.parseOp()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidOp, err)
	}
	span := parsed.BaseLen()
	norm, err := Normalize(parsed)
	if err != nil {
		return nil, 0, err
	}
	return norm, span, nil
}

// opParser is a small JSON parser for exactly the op grammar. It is hand
// written so that it can see escapes that encoding/json hides (lone
// surrogates) and so that decoding an op does not go through reflection.
type opParser struct {
	data []byte
	pos  int
}

// maxLen bounds skip and delete counts: no document comes near it, and it
// keeps sums of counts far from overflowing int.
const maxLen = 1 << 40

func (p *opParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *opParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *opParser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *opParser) parseOp() (Op, error) {
	p.skipSpace()
	if p.peek() != '[' {
		return nil, p.errorf("an op must be a JSON array")
	}
	p.pos++
	var op Op
	p.skipSpace()
	if p.peek() == ']' {
		p.pos++
	} else {
		for {
			p.skipSpace()
			c, err := p.parseComponent()
			if err != nil {
				return nil, fmt.Errorf("component %d: %w", len(op), err)
			}
			op = append(op, c)
			p.skipSpace()
			switch p.peek() {
			case ',':
				p.pos++
				continue
			case ']':
				p.pos++
			default:
				return nil, p.errorf("expected ',' or ']' after component %d", len(op)-1)
			}
			break
		}
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the op")
	}
	return op, nil
}

func (p *opParser) parseComponent() (Component, error) {
	switch c := p.peek(); {
	case c == '"':
		s, err := p.parseString()
		if err != nil {
			return Component{}, err
		}
		if s == "" {
			return Component{}, p.errorf("empty insert")
		}
		return Insert(s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := p.parseCount("skip")
		if err != nil {
			return Component{}, err
		}
		return Skip(n), nil
	case c == '{':
		return p.parseDelete()
	case c == 0:
		return Component{}, p.errorf("unexpected end of input")
	default:
		return Component{}, p.errorf("unexpected %q: a component is a number, a string or {\"d\": ...}", c)
	}
}

// parseCount parses a positive integer, rejecting every other JSON number.
// It reads the digits in place (no string, no strconv) and builds its
// errors out of line: it is the deepest call under every op a server
// reads, on each connection's reading goroutine, whose stack stays as
// large as the deepest call it ever made.
func (p *opParser) parseCount(what string) (int, error) {
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.pos++
			continue
		}
		break
	}
	lit := p.data[start:p.pos]
	if len(lit) == 0 || lit[0] < '1' || lit[0] > '9' {
		return 0, countError(start, what, lit, false)
	}
	n := 0
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, countError(start, what, lit, false)
		}
		d := int(c - '0')
		if n > (maxLen-d)/10 {
			return 0, countError(start, what, lit, true)
		}
		n = n*10 + d
	}
	return n, nil
}

//go:noinline
func countError(start int, what string, lit []byte, tooLarge bool) error {
	if tooLarge {
		// The rest of the literal still decides the message: a later byte
		// that is not a digit makes it not an integer at all.
		for _, c := range lit {
			if c < '0' || c > '9' {
				tooLarge = false
			}
		}
	}
	if tooLarge {
		return fmt.Errorf("at byte %d: %s %s is too large", start, what, lit)
	}
	return fmt.Errorf("at byte %d: %s must be a positive integer, got %q", start, what, lit)
}

func (p *opParser) parseDelete() (Component, error) {
	p.pos++ // '{'
	p.skipSpace()
	if p.peek() == '}' {
		return Component{}, p.errorf(`empty object: a delete is {"d": N} or {"d": "text"}`)
	}
	if p.peek() != '"' {
		return Component{}, p.errorf("expected an object key")
	}
	key, err := p.parseString()
	if err != nil {
		return Component{}, err
	}
	if key != "d" {
		return Component{}, p.errorf("unknown object key %q: a delete is {\"d\": N} or {\"d\": \"text\"}", key)
	}
	p.skipSpace()
	if p.peek() != ':' {
		return Component{}, p.errorf("expected ':' after the key")
	}
	p.pos++
	p.skipSpace()
	var c Component
	switch v := p.peek(); {
	case v == '"':
		s, err := p.parseString()
		if err != nil {
			return Component{}, err
		}
		if s == "" {
			return Component{}, p.errorf("empty delete")
		}
		c = DeleteText(s)
	case v == '-' || (v >= '0' && v <= '9'):
		n, err := p.parseCount("delete")
		if err != nil {
			return Component{}, err
		}
		c = Delete(n)
	default:
		return Component{}, p.errorf("a delete's d must be a positive integer or a non-empty string")
	}
	p.skipSpace()
	switch p.peek() {
	case '}':
		p.pos++
		return c, nil
	case ',':
		return Component{}, p.errorf(`a delete has exactly one key, "d"`)
	default:
		return Component{}, p.errorf("expected '}'")
	}
}

// parseString parses a JSON string, rejecting invalid UTF-8, raw control
// characters and unpaired surrogate escapes.
func (p *opParser) parseString() (string, error) {
	s, next, err := jsontext.ReadString(p.data, p.pos)
	if err != nil {
		return "", err
	}
	p.pos = next
	return s, nil
}
