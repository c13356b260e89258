package rich

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/tandemdocs/tandem/ot/internal/jsontext"
)

// AppendJSON appends d as Quill's op array: {"insert":"text"} or
// {"insert":{"image":"…"}}, {"retain":n}, {"delete":n}, each with
// "attributes" when it has any. Keys are written in quill-delta's order
// (the component's key, then attributes), attribute keys sorted, strings
// as JSON.stringify writes them.
func (d Delta) AppendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, c := range d {
		if i > 0 {
			b = append(b, ',')
		}
		b = c.appendJSON(b)
	}
	return append(b, ']')
}

func (c Component) appendJSON(b []byte) []byte {
	switch c.kind {
	case KindRetain:
		b = append(b, `{"retain":`...)
		b = strconv.AppendInt(b, int64(c.n), 10)
	case KindDelete:
		b = append(b, `{"delete":`...)
		b = strconv.AppendInt(b, int64(c.n), 10)
	default:
		b = append(b, `{"insert":`...)
		if c.embed != nil {
			b = append(b, '{')
			b = jsontext.AppendString(b, c.embed.Key)
			b = append(b, ':')
			b = append(b, c.embed.Value...)
			b = append(b, '}')
		} else {
			b = jsontext.AppendString(b, c.text)
		}
	}
	if len(c.attrs) > 0 {
		b = append(b, `,"attributes":`...)
		b = c.attrs.AppendJSON(b)
	}
	return append(b, '}')
}

// AppendJSON appends a as a JSON object, keys sorted.
func (a Attrs) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, at := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, at.Key)
		b = append(b, ':')
		b = append(b, at.Value.json...)
	}
	return append(b, '}')
}

// MarshalJSON is AppendJSON.
func (d Delta) MarshalJSON() ([]byte, error) { return d.AppendJSON(nil), nil }

// UnmarshalJSON parses and normalizes an op; see ParseJSON.
func (d *Delta) UnmarshalJSON(data []byte) error {
	op, err := ParseJSON(data)
	if err != nil {
		return err
	}
	*d = op
	return nil
}

// ParseJSON parses an op from Quill's JSON form and returns it normalized.
// It refuses, with an [*Error]: anything but an array of objects; objects
// with other keys than insert, retain, delete and attributes, or not
// exactly one of the first three; counts that are not positive integers
// (0, 1.5, 1e3, "3"); empty inserts; embeds that are not one-key objects or
// larger than MaxEmbed; a retain whose value is an object (quill-delta 5's
// embed retain, which rich-text 4 does not have); attributes that are not
// an object, null attributes on an insert, attribute values that are
// arrays or objects, and the bounds MaxAttrKey, MaxAttrValue, MaxAttrs;
// invalid UTF-8 and lone UTF-16 surrogate escapes (which encoding/json
// would silently make U+FFFD).
func ParseJSON(data []byte) (Delta, error) {
	p := parser{data: data}
	d, err := p.delta(false)
	if err != nil {
		return nil, err
	}
	return Normalize(d)
}

// ParseJSONSpan is ParseJSON that also returns the code points the op's
// retains and deletes cover as written, a trailing retain included
// (normalizing drops it): the shortest document the op was made for.
func ParseJSONSpan(data []byte) (Delta, int, error) {
	p := parser{data: data}
	d, err := p.delta(false)
	if err != nil {
		return nil, 0, err
	}
	span := d.BaseLen()
	d, err = Normalize(d)
	return d, span, err
}

// ParseDocumentJSON parses a document (inserts only) and normalizes it.
func ParseDocumentJSON(data []byte) (Delta, error) {
	p := parser{data: data}
	d, err := p.delta(true)
	if err != nil {
		return nil, err
	}
	return NormalizeDocument(d)
}

type parser struct {
	data []byte
	pos  int
}

func (p *parser) fail(code, format string, args ...any) error {
	return errorf(code, "at byte %d: "+format, append([]any{p.pos}, args...)...)
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// expect consumes c after optional space.
func (p *parser) expect(c byte) bool {
	p.space()
	if p.peek() != c {
		return false
	}
	p.pos++
	return true
}

func (p *parser) delta(doc bool) (Delta, error) {
	if !p.expect('[') {
		return nil, p.fail(CodeBadJSON, "an op must be a JSON array")
	}
	var d Delta
	if p.expect(']') {
		return p.end(d)
	}
	for {
		c, err := p.component()
		if err != nil {
			return nil, err
		}
		if err := c.check(len(d), doc); err != nil {
			return nil, err
		}
		d = append(d, c)
		if p.expect(']') {
			return p.end(d)
		}
		if !p.expect(',') {
			return nil, p.fail(CodeBadJSON, "expected , or ] after component %d", len(d)-1)
		}
	}
}

func (p *parser) end(d Delta) (Delta, error) {
	p.space()
	if p.pos != len(p.data) {
		return nil, p.fail(CodeBadJSON, "data after the op")
	}
	return d, nil
}

func (p *parser) key() (string, error) {
	p.space()
	if p.peek() != '"' {
		return "", p.fail(CodeBadJSON, "expected a key")
	}
	k, next, err := jsontext.ReadString(p.data, p.pos)
	if err != nil {
		return "", errorf(CodeBadJSON, "%s", err)
	}
	p.pos = next
	if !p.expect(':') {
		return "", p.fail(CodeBadJSON, "expected : after key %.40q", k)
	}
	p.space()
	return k, nil
}

func (p *parser) component() (Component, error) {
	if !p.expect('{') {
		return Component{}, p.fail(CodeBadJSON, "a component must be an object")
	}
	var c Component
	seen := 0 // bit 1: insert, 2: retain, 4: delete, 8: attributes
	var attrs Attrs
	if p.expect('}') {
		return c, p.fail(CodeBadComponent, "empty component {}")
	}
	for {
		k, err := p.key()
		if err != nil {
			return c, err
		}
		var bit int
		switch k {
		case "insert":
			bit = 1
			if p.peek() == '"' {
				s, next, err := jsontext.ReadString(p.data, p.pos)
				if err != nil {
					return c, errorf(CodeBadComponent, "%s", err)
				}
				p.pos = next
				c = Insert(s, nil)
			} else {
				e, err := p.embed()
				if err != nil {
					return c, err
				}
				c = InsertEmbed(e, nil)
			}
		case "retain", "delete":
			bit = 2
			kind := KindRetain
			if k == "delete" {
				bit, kind = 4, KindDelete
			}
			if p.peek() == '{' && kind == KindRetain {
				return c, p.fail(CodeBadComponent, "a retain of an embed (quill-delta 5) is not supported")
			}
			n, err := p.count(k)
			if err != nil {
				return c, err
			}
			c = Component{kind: kind, n: n}
		case "attributes":
			bit = 8
			if attrs, err = p.attrs(); err != nil {
				return c, err
			}
		default:
			return c, p.fail(CodeBadComponent, "unknown key %.40q", k)
		}
		if seen&bit != 0 {
			return c, p.fail(CodeBadComponent, "key %q twice", k)
		}
		if bit != 8 && seen&7 != 0 {
			return c, p.fail(CodeBadComponent, "a component is one of insert, retain or delete")
		}
		seen |= bit
		if p.expect('}') {
			break
		}
		if !p.expect(',') {
			return c, p.fail(CodeBadJSON, "expected , or } in a component")
		}
	}
	if seen&7 == 0 {
		return c, p.fail(CodeBadComponent, "a component needs insert, retain or delete")
	}
	if seen&8 != 0 && c.kind == KindDelete {
		return c, p.fail(CodeBadComponent, "a delete has no attributes")
	}
	c.attrs = attrs
	return c, nil
}

func (p *parser) count(what string) (int, error) {
	start := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	digits := p.data[start:p.pos]
	if c := p.peek(); c == '.' || c == 'e' || c == 'E' || len(digits) == 0 || digits[0] == '0' {
		if len(digits) == 1 && digits[0] == '0' && c != '.' && c != 'e' && c != 'E' {
			return 0, p.fail(CodeEmptyComponent, "%s 0", what)
		}
		return 0, p.fail(CodeBadComponent, "%s must be a positive integer", what)
	}
	if len(digits) > 13 {
		return 0, p.fail(CodePastEnd, "%s %s is past any document", what, digits)
	}
	n, _ := strconv.Atoi(string(digits))
	if n > maxLen {
		return 0, p.fail(CodePastEnd, "%s %d is past any document", what, n)
	}
	return n, nil
}

// valueSpan is the extent of the JSON value at p.pos, checked valid.
func (p *parser) valueSpan() ([]byte, bool) {
	start := p.pos
	depth := 0
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; c {
		case '"':
			_, next, err := jsontext.ReadString(p.data, p.pos)
			if err != nil {
				return nil, false
			}
			p.pos = next
			if depth == 0 {
				return p.data[start:p.pos], true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return p.checkSpan(start)
			}
			if depth--; depth == 0 {
				p.pos++
				return p.checkSpan(start)
			}
		case ',':
			if depth == 0 {
				return p.checkSpan(start)
			}
		}
		p.pos++
	}
	return p.checkSpan(start)
}

func (p *parser) checkSpan(start int) ([]byte, bool) {
	v := bytes.TrimRight(p.data[start:p.pos], " \t\r\n")
	return v, len(v) > 0 && json.Valid(v)
}

func (p *parser) embed() (Embed, error) {
	if !p.expect('{') {
		return Embed{}, p.fail(CodeBadEmbed, "an insert is a string or a one-key object")
	}
	if p.expect('}') {
		return Embed{}, p.fail(CodeBadEmbed, "an embed has one key, not none")
	}
	k, err := p.key()
	if err != nil {
		return Embed{}, err
	}
	start := p.pos
	raw, ok := p.valueSpan()
	if !ok {
		p.pos = start
		return Embed{}, p.fail(CodeBadEmbed, "embed %.40q: its value is not JSON", k)
	}
	if len(raw) > MaxEmbed {
		return Embed{}, p.fail(CodeBadEmbed, "embed %.40q of %d bytes (at most %d)", k, len(raw), MaxEmbed)
	}
	if !p.expect('}') {
		return Embed{}, p.fail(CodeBadEmbed, "an embed has one key")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return Embed{}, p.fail(CodeBadEmbed, "embed %.40q: %v", k, err)
	}
	return Embed{Key: k, Value: compact.String()}, nil
}

func (p *parser) attrs() (Attrs, error) {
	p.space()
	if p.peek() == 'n' && bytes.HasPrefix(p.data[p.pos:], []byte("null")) {
		p.pos += 4 // "attributes": null, as no attributes
		return nil, nil
	}
	if !p.expect('{') {
		return nil, p.fail(CodeBadAttribute, "attributes must be an object")
	}
	var a Attrs
	if p.expect('}') {
		return nil, nil
	}
	for {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		v, err := p.attrValue(k)
		if err != nil {
			return nil, err
		}
		a = append(a, Attr{Key: k, Value: v})
		if len(a) > MaxAttrs {
			return nil, p.fail(CodeBadAttribute, "more than %d attributes", MaxAttrs)
		}
		if p.expect('}') {
			break
		}
		if !p.expect(',') {
			return nil, p.fail(CodeBadJSON, "expected , or } in attributes")
		}
	}
	sorted := MakeAttrs(a...)
	if len(sorted) != len(a) {
		return nil, p.fail(CodeBadAttribute, "an attribute key repeated")
	}
	return sorted, nil
}

func (p *parser) attrValue(key string) (Value, error) {
	switch c := p.peek(); {
	case c == '"':
		s, next, err := jsontext.ReadString(p.data, p.pos)
		if err != nil {
			return Value{}, errorf(CodeBadAttribute, "attribute %.40q: %s", key, err)
		}
		p.pos = next
		return String(s), nil
	case c == 't' && bytes.HasPrefix(p.data[p.pos:], []byte("true")):
		p.pos += 4
		return Bool(true), nil
	case c == 'f' && bytes.HasPrefix(p.data[p.pos:], []byte("false")):
		p.pos += 5
		return Bool(false), nil
	case c == 'n' && bytes.HasPrefix(p.data[p.pos:], []byte("null")):
		p.pos += 4
		return Null(), nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.pos
		for p.pos < len(p.data) && bytes.IndexByte([]byte("+-.0123456789eE"), p.data[p.pos]) >= 0 {
			p.pos++
		}
		raw := p.data[start:p.pos]
		var f float64
		if !json.Valid(raw) || json.Unmarshal(raw, &f) != nil || f > maxNumber || f < -maxNumber {
			p.pos = start
			return Value{}, p.fail(CodeBadAttribute, "attribute %.40q: a number within ±2^53", key)
		}
		return Number(f), nil
	}
	return Value{}, p.fail(CodeBadAttribute, "attribute %.40q: a value is a string, number, boolean or null", key)
}
