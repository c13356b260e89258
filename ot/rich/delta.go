package rich

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot"
)

// Bounds on what one component may carry. rich-text checks none of these;
// they keep one op from making a document that costs every reader
// megabytes, and are generous for what Quill's formats use.
const (
	MaxAttrKey   = 64       // bytes in an attribute name
	MaxAttrValue = 2048     // bytes of an attribute value's JSON (a long link fits)
	MaxAttrs     = 32       // attributes on one component
	MaxEmbed     = 64 << 10 // bytes of an embed's JSON (upload images; link them)
	maxLen       = 1 << 40  // a retain or delete count: far from overflowing int
	maxRun       = 256      // code points of text in one node of a Document
	maxNumber    = 1 << 53  // |number| in an attribute: exact in JavaScript
	nullJSON     = "null"   // an attribute value that removes the key
	noLimit      = math.MaxInt
)

// Error is a rejected op or document: Code is stable (clients and tests
// match on it), the message says where. It wraps [ot.ErrInvalidOp], or
// [ot.ErrTooLong] for a retain or delete past the end of the document, so
// that callers handling both types test one set of errors.
type Error struct {
	Code string
	Msg  string
	base error
}

// The codes of Error.
const (
	CodeBadJSON        = "bad_json"        // not an array of component objects
	CodeEmptyComponent = "empty_component" // retain 0, delete 0, insert ""
	CodeBadComponent   = "bad_component"   // not exactly one of insert, retain, delete; a delete with attributes
	CodeBadEmbed       = "bad_embed"       // an embed that is not a one-key object, or too large
	CodeBadAttribute   = "bad_attribute"   // a key or value out of bounds, a value that is not a string, number or boolean
	CodeNullInInsert   = "null_in_insert"  // an insert or document with a null attribute
	CodeNotDocument    = "not_document"    // a document with a retain or delete
	CodePastEnd        = "past_end"        // a retain or delete past the end of the document
)

func (e *Error) Error() string { return "rich: " + e.Code + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.base }

func errorf(code, format string, args ...any) error {
	base := ot.ErrInvalidOp
	if code == CodePastEnd {
		base = ot.ErrTooLong
	}
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), base: base}
}

// ErrorCode is err's Code if it is (or wraps) an *Error, else "".
func ErrorCode(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ""
}

// Value is an attribute's value, held as its canonical JSON: a string, a
// number, true or false, or null (only in a retain, where it removes the
// attribute). Values compare with ==.
type Value struct{ json string }

// String returns the Value of a JSON string.
func String(s string) Value { return Value{string(ot.AppendJSONString(nil, s))} }

// Bool returns the Value true or false.
func Bool(b bool) Value {
	if b {
		return Value{"true"}
	}
	return Value{"false"}
}

// Number returns the Value of a number, written as JavaScript writes it.
// NaN and infinities have no JSON form: they give null.
func Number(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Null()
	}
	return Value{jsNumber(f)}
}

// Null returns the value that removes an attribute.
func Null() Value { return Value{nullJSON} }

// IsNull reports whether v removes its attribute.
func (v Value) IsNull() bool { return v.json == nullJSON }

// JSON returns v's canonical JSON.
func (v Value) JSON() string { return v.json }

// Attr is one attribute of a component.
type Attr struct {
	Key   string
	Value Value
}

// Attrs is a set of attributes sorted by key, each key once: the canonical
// form, which is also the JSON's key order. (rich-text keeps JavaScript's
// insertion order; key order carries no meaning, and a sorted form compares
// with ==, element by element.) Build one with [MakeAttrs]; an Attrs is never
// modified once built.
type Attrs []Attr

// MakeAttrs returns the attributes of kv, sorted; a repeated key keeps its
// last value.
func MakeAttrs(kv ...Attr) Attrs {
	if len(kv) == 0 {
		return nil
	}
	a := slices.Clone(kv)
	slices.SortStableFunc(a, func(x, y Attr) int { return strings.Compare(x.Key, y.Key) })
	out := a[:0]
	for i, at := range a {
		if i+1 < len(a) && a[i+1].Key == at.Key {
			continue
		}
		out = append(out, at)
	}
	return out
}

// Get returns the value of key, and whether a has it.
func (a Attrs) Get(key string) (Value, bool) {
	i, ok := slices.BinarySearchFunc(a, key, func(at Attr, k string) int { return strings.Compare(at.Key, k) })
	if !ok {
		return Value{}, false
	}
	return a[i].Value, true
}

// Equal reports whether a and b hold the same attributes.
func (a Attrs) Equal(b Attrs) bool { return slices.Equal(a, b) }

func (a Attrs) hasNull() bool {
	for _, at := range a {
		if at.Value.IsNull() {
			return true
		}
	}
	return false
}

// Embed is a non-text insert: a JSON object with one key, such as
// {"image":"https://…"} or {"mention":{"id":"u1"}}. It counts as one code
// point. Value is the key's value as compact JSON, kept as given.
type Embed struct {
	Key   string
	Value string
}

// Kind is the kind of a Component.
type Kind uint8

// The three kinds of component; the zero Kind is invalid.
const (
	KindRetain Kind = iota + 1 // keep n code points, changing attributes if it has any
	KindInsert                 // insert text or an embed, with attributes
	KindDelete                 // delete n code points
)

func (k Kind) String() string {
	switch k {
	case KindRetain:
		return "retain"
	case KindInsert:
		return "insert"
	case KindDelete:
		return "delete"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Component is one step of a Delta. Build components with Retain, Insert,
// InsertEmbed and Delete.
type Component struct {
	kind  Kind
	n     int    // code points: the count, the text's, or 1 for an embed
	text  string // an insert's text
	embed *Embed // an embed insert's embed
	attrs Attrs
}

// Retain keeps n code points and, with attrs, changes their attributes (a
// null value removes the key).
func Retain(n int, attrs Attrs) Component { return Component{kind: KindRetain, n: n, attrs: attrs} }

// Insert inserts text with attributes.
func Insert(text string, attrs Attrs) Component {
	return Component{kind: KindInsert, n: utf8.RuneCountInString(text), text: text, attrs: attrs}
}

// InsertEmbed inserts an embed with attributes.
func InsertEmbed(e Embed, attrs Attrs) Component {
	return Component{kind: KindInsert, n: 1, embed: &e, attrs: attrs}
}

// Delete deletes n code points.
func Delete(n int) Component { return Component{kind: KindDelete, n: n} }

// Kind returns c's kind.
func (c Component) Kind() Kind { return c.kind }

// Len returns the code points c covers or inserts.
func (c Component) Len() int { return c.n }

// Text returns an insert's text ("" for an embed).
func (c Component) Text() string { return c.text }

// Embed returns an insert's embed, or nil.
func (c Component) Embed() *Embed { return c.embed }

// Attrs returns c's attributes.
func (c Component) Attrs() Attrs { return c.attrs }

func (c Component) isText() bool { return c.kind == KindInsert && c.embed == nil }

// check reports what is wrong with c as a component of an op (inDoc: of a
// document, where only inserts without nulls are allowed).
func (c Component) check(i int, inDoc bool) error {
	switch c.kind {
	case KindRetain, KindDelete:
		if inDoc {
			return errorf(CodeNotDocument, "component %d is a %s: a document holds only inserts", i, c.kind)
		}
		if c.n <= 0 {
			return errorf(CodeEmptyComponent, "component %d: %s %d", i, c.kind, c.n)
		}
		if c.n > maxLen {
			return errorf(CodePastEnd, "component %d: %s %d", i, c.kind, c.n)
		}
		if c.kind == KindDelete && len(c.attrs) > 0 {
			return errorf(CodeBadComponent, "component %d: a delete has no attributes", i)
		}
	case KindInsert:
		if c.embed != nil {
			if err := c.embed.check(i); err != nil {
				return err
			}
		} else {
			if c.text == "" {
				return errorf(CodeEmptyComponent, "component %d: empty insert", i)
			}
			if !utf8.ValidString(c.text) {
				return errorf(CodeBadComponent, "component %d: insert is not valid UTF-8", i)
			}
		}
		if c.attrs.hasNull() {
			return errorf(CodeNullInInsert, "component %d: an insert's attribute is null", i)
		}
	default:
		return errorf(CodeBadComponent, "component %d: zero component", i)
	}
	return checkAttrs(c.attrs, i)
}

func checkAttrs(a Attrs, i int) error {
	if len(a) > MaxAttrs {
		return errorf(CodeBadAttribute, "component %d: %d attributes (at most %d)", i, len(a), MaxAttrs)
	}
	for j, at := range a {
		if at.Key == "" || len(at.Key) > MaxAttrKey || !utf8.ValidString(at.Key) {
			return errorf(CodeBadAttribute, "component %d: attribute key %.80q (1 to %d bytes of UTF-8)", i, at.Key, MaxAttrKey)
		}
		if j > 0 && a[j-1].Key >= at.Key {
			return errorf(CodeBadAttribute, "component %d: attributes not sorted or a key repeated (build them with MakeAttrs)", i)
		}
		if at.Value.json == "" || len(at.Value.json) > MaxAttrValue {
			return errorf(CodeBadAttribute, "component %d: attribute %q: value of %d bytes (1 to %d)", i, at.Key, len(at.Value.json), MaxAttrValue)
		}
	}
	return nil
}

func (e *Embed) check(i int) error {
	if e.Key == "" || len(e.Key) > MaxAttrKey || !utf8.ValidString(e.Key) {
		return errorf(CodeBadEmbed, "component %d: embed key %.80q (1 to %d bytes of UTF-8)", i, e.Key, MaxAttrKey)
	}
	if e.Value == "" || len(e.Key)+len(e.Value) > MaxEmbed {
		return errorf(CodeBadEmbed, "component %d: embed %q of %d bytes (at most %d)", i, e.Key, len(e.Value), MaxEmbed)
	}
	return nil
}

// Delta is an op, or a document. As an op it walks the document from its
// start: retain n code points (changing their attributes if the retain has
// any), insert, delete n; past its last component it retains the rest. A
// document is a Delta of inserts only, without null attributes.
type Delta []Component

// Check reports the first thing wrong with d as an op.
func (d Delta) Check() error { return d.check(false) }

// CheckDocument reports the first thing wrong with d as a document.
func (d Delta) CheckDocument() error { return d.check(true) }

func (d Delta) check(inDoc bool) error {
	for i, c := range d {
		if err := c.check(i, inDoc); err != nil {
			return err
		}
	}
	return nil
}

// BaseLen is the length of the shortest document d applies to: what its
// retains and deletes cover.
func (d Delta) BaseLen() int {
	n := 0
	for _, c := range d {
		if c.kind != KindInsert {
			n += c.n
		}
	}
	return n
}

// Len is the code points of a document (or the length of what an op's
// inserts and retains leave).
func (d Delta) Len() int {
	n := 0
	for _, c := range d {
		if c.kind != KindDelete {
			n += c.n
		}
	}
	return n
}

// IsNoop reports whether applying d changes nothing.
func (d Delta) IsNoop() bool {
	for _, c := range d {
		if c.kind != KindRetain || len(c.attrs) > 0 {
			return false
		}
	}
	return true
}

// Normalize checks d and returns its canonical form: adjacent inserts of
// text with equal attributes merged, as are adjacent retains with equal
// attributes and adjacent deletes; an insert before a delete at the same
// place; no trailing retain without attributes. This is quill-delta's
// form (Delta#push and #chop), with attribute keys sorted.
func Normalize(d Delta) (Delta, error) { return normalize(d, false) }

// NormalizeDocument is Normalize for a document.
func NormalizeDocument(d Delta) (Delta, error) { return normalize(d, true) }

func normalize(d Delta, inDoc bool) (Delta, error) {
	if err := d.check(inDoc); err != nil {
		return nil, err
	}
	var b builder
	for _, c := range d {
		b.push(c)
	}
	return b.done(), nil
}

// builder makes a canonical Delta, as quill-delta's Delta#push and #chop.
// Text merged into one insert is gathered in buf (at component bufAt) so
// that many merges cost their length once, not a copy each.
type builder struct {
	ops   Delta
	buf   []byte
	bufAt int // index in ops of the component whose text is in buf, or -1
	init  bool
}

func (b *builder) flush() {
	if b.init && b.bufAt >= 0 {
		b.ops[b.bufAt].text = string(b.buf)
		b.bufAt = -1
	}
}

// mergeText appends c's text to ops[j].
func (b *builder) mergeText(j int, c Component) {
	if !b.init {
		b.init, b.bufAt = true, -1
	}
	if b.bufAt != j {
		b.flush()
		b.buf = append(b.buf[:0], b.ops[j].text...)
		b.bufAt = j
	}
	b.buf = append(b.buf, c.text...)
	b.ops[j].n += c.n
}

func (b *builder) retain(n int, attrs Attrs) {
	if n > 0 {
		b.push(Component{kind: KindRetain, n: n, attrs: attrs})
	}
}

func (b *builder) delete(n int) {
	if n > 0 {
		b.push(Component{kind: KindDelete, n: n})
	}
}

func (b *builder) push(c Component) {
	if len(c.attrs) == 0 {
		c.attrs = nil
	}
	if !b.init {
		b.init, b.bufAt = true, -1
	}
	idx := len(b.ops)
	if idx > 0 {
		last := b.ops[idx-1]
		if c.kind == KindDelete && last.kind == KindDelete {
			b.ops[idx-1].n += c.n
			return
		}
		// An insert and a delete at one place: the insert first.
		if last.kind == KindDelete && c.kind == KindInsert {
			idx--
			if idx == 0 {
				b.insertAt(0, c)
				return
			}
			last = b.ops[idx-1]
		}
		if c.attrs.Equal(last.attrs) {
			if c.isText() && last.isText() {
				b.mergeText(idx-1, c)
				return
			}
			if c.kind == KindRetain && last.kind == KindRetain {
				b.ops[idx-1].n += c.n
				return
			}
		}
	}
	b.insertAt(idx, c)
}

func (b *builder) insertAt(i int, c Component) {
	if i == len(b.ops) {
		b.ops = append(b.ops, c)
		return
	}
	if b.bufAt >= i {
		b.bufAt++
	}
	b.ops = slices.Insert(b.ops, i, c)
}

// done returns the Delta without its trailing plain retain.
func (b *builder) done() Delta {
	b.flush()
	if n := len(b.ops); n > 0 && b.ops[n-1].kind == KindRetain && len(b.ops[n-1].attrs) == 0 {
		b.ops = b.ops[:n-1]
	}
	return b.ops
}

// jsNumber writes f as JavaScript's Number#toString does (JSON.stringify's
// form): shortest round-trip digits, exponent notation only below 1e-6 or
// from 1e21.
func jsNumber(f float64) string {
	if f == 0 {
		return "0" // -0 too, as JavaScript writes it
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1 // n: where the decimal point goes
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	s := sign + digits[:1]
	if k > 1 {
		s += "." + digits[1:]
	}
	if n-1 >= 0 {
		return s + "e+" + strconv.Itoa(n-1)
	}
	return s + "e" + strconv.Itoa(n-1)
}
