// Package doctype is the one seam between Tandem's document types and
// everything that carries documents: a [Type] says how to parse, transform
// and compose its ops, move selections through them, and hold its
// documents; an [Op] carries an op of either type as a plain value (no
// allocation to box it), and a [Document] is a document of either type as
// a server holds it.
//
// Two types exist: "plain" (package ot: text, ShareDB's text-unicode
// format) and "rich" (package ot/rich: Quill's Delta, ShareDB's rich-text
// semantics). A document's type is chosen when it is created and never
// changes; storage records it, and every layer asks its Type rather than
// switching on the name. Lookup("") is the plain type, so that documents
// stored before types existed keep working.
package doctype

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/rich"
)

// The names of the types, as stored, sent in hello and chosen at creation.
const (
	PlainName = "plain"
	RichName  = "rich"
)

// ErrUnknownType reports a type name that is not one of the above.
var ErrUnknownType = errors.New("doctype: unknown document type")

// ErrWrongType reports an op of one type given to the other.
var ErrWrongType = fmt.Errorf("%w: an op of the other document type", ot.ErrInvalidOp)

// Op is an op of either type. The zero Op is the plain no-op.
type Op struct {
	plain  ot.Op
	rich   rich.Delta
	isRich bool
}

// PlainOp wraps a plain-text op.
func PlainOp(op ot.Op) Op { return Op{plain: op} }

// RichOp wraps a rich-text op.
func RichOp(d rich.Delta) Op { return Op{rich: d, isRich: true} }

// Plain returns the plain op (nil for a rich one).
func (o Op) Plain() ot.Op { return o.plain }

// Rich returns the rich op (nil for a plain one).
func (o Op) Rich() rich.Delta { return o.rich }

// IsRich reports whether o is a rich-text op.
func (o Op) IsRich() bool { return o.isRich }

// AppendJSON appends o's wire form: the plain type's array
// ([5,"hi",{"d":2}]) or Quill's op array.
func (o Op) AppendJSON(b []byte) []byte {
	if o.isRich {
		return o.rich.AppendJSON(b)
	}
	out, err := o.plain.AppendJSON(b)
	if err != nil {
		// Only a malformed op fails; ops here were parsed or made by the
		// engine. Write the empty op rather than broken JSON.
		return append(b, "[]"...)
	}
	return out
}

// String is o's wire form, for messages.
func (o Op) String() string { return string(o.AppendJSON(nil)) }

// MarshalJSON is AppendJSON.
func (o Op) MarshalJSON() ([]byte, error) { return o.AppendJSON(nil), nil }

// IsNoop reports whether applying o changes nothing.
func (o Op) IsNoop() bool {
	if o.isRich {
		return o.rich.IsNoop()
	}
	return o.plain.IsNoop()
}

// Clone returns a copy of o that shares no memory a caller could modify.
func (o Op) Clone() Op {
	o.plain = slices.Clone(o.plain)
	o.rich = slices.Clone(o.rich)
	return o
}

// Scrub zeroes the memory of o up to its capacity: a buffer kept for
// reuse (Type.TransformAppend's dst) then keeps no text alive.
func (o Op) Scrub() {
	clear(o.plain[:cap(o.plain)])
	clear(o.rich[:cap(o.rich)])
}

// LenChange is how much applying o changes a document's length in code
// points.
func (o Op) LenChange() int {
	if o.isRich {
		n := 0
		for _, c := range o.rich {
			switch c.Kind() {
			case rich.KindInsert:
				n += c.Len()
			case rich.KindDelete:
				n -= c.Len()
			}
		}
		return n
	}
	return o.plain.TargetLen() - o.plain.BaseLen()
}

// InverseShape is an op that moves positions back through o: inserts
// become deletes, deletes become inserts of as many placeholders, and
// attributes are dropped. It is not an inverse (deleted text is not
// restored): a client moves its selections from its local document to the
// server's with it.
func (o Op) InverseShape() Op {
	if o.isRich {
		var inv rich.Delta
		for _, c := range o.rich {
			switch c.Kind() {
			case rich.KindRetain:
				inv = append(inv, rich.Retain(c.Len(), nil))
			case rich.KindInsert:
				inv = append(inv, rich.Delete(c.Len()))
			case rich.KindDelete:
				inv = append(inv, rich.Insert(strings.Repeat("x", c.Len()), nil))
			}
		}
		n, _ := rich.Normalize(inv)
		return Op{rich: n, isRich: true}
	}
	var inv ot.Op
	for _, c := range o.plain {
		switch c.Kind() {
		case ot.KindSkip:
			inv = append(inv, ot.Skip(c.Len()))
		case ot.KindInsert:
			inv = append(inv, ot.Delete(c.Len()))
		case ot.KindDelete:
			inv = append(inv, ot.Insert(strings.Repeat("x", c.Len())))
		}
	}
	n, _ := ot.Normalize(inv)
	return Op{plain: n}
}

// Check reports what is wrong with o as an op of its type.
func (o Op) Check() error {
	if o.isRich {
		return o.rich.Check()
	}
	return o.plain.Check()
}

// Parts is the number of components of o.
func (o Op) Parts() int {
	if o.isRich {
		return len(o.rich)
	}
	return len(o.plain)
}

// InsertedBytes is the UTF-8 text o inserts (an embed counts its JSON).
func (o Op) InsertedBytes() int {
	n := 0
	if o.isRich {
		for _, c := range o.rich {
			if c.Kind() == rich.KindInsert {
				n += len(c.Text())
				if e := c.Embed(); e != nil {
					n += len(e.Key) + len(e.Value)
				}
			}
		}
		return n
	}
	for _, c := range o.plain {
		if c.Kind() == ot.KindInsert {
			n += len(c.Text())
		}
	}
	return n
}

// UnmarshalJSON decodes an op where its type is not at hand (a record
// passed between cluster nodes): the two wire forms never overlap, a rich
// op being an array of objects with insert, retain or delete, a plain one
// an array of counts, strings and {"d": ...}. [] decodes as the plain
// no-op, which both types take as a no-op. Where the type is known, use
// Type.ParseOp.
func (o *Op) UnmarshalJSON(data []byte) error {
	t := Plain()
	if firstKey(data) != "d" && firstKey(data) != "" {
		t = Rich()
	}
	op, _, err := t.ParseOp(data)
	if err != nil {
		return err
	}
	*o = op
	return nil
}

// firstKey is the first key of the first component of an op's JSON if
// that component is an object ("" otherwise): "d" for a plain delete,
// insert, retain or delete (or attributes) for a rich component.
func firstKey(data []byte) string {
	rest := bytes.TrimLeft(data, " \t\r\n")
	if len(rest) == 0 || rest[0] != '[' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '{' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return "?"
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return "?"
	}
	return string(rest[1 : 1+end])
}

// asPlain and asRich unwrap an op for a type; an empty op of either type
// is the other's no-op too.
func asPlain(o Op) (ot.Op, bool) {
	if !o.isRich {
		return o.plain, true
	}
	return nil, len(o.rich) == 0
}

func asRich(o Op) (rich.Delta, bool) {
	if o.isRich {
		return o.rich, true
	}
	return nil, len(o.plain) == 0
}

// Type is a document type.
type Type interface {
	// Name is the type's name: PlainName or RichName.
	Name() string
	// ParseOp decodes an op from its wire form and normalizes it; span is
	// the code points its retains and deletes cover as written (a
	// document it applies to is at least that long).
	ParseOp(data []byte) (op Op, span int, err error)
	// Transform rebases op onto other (both made on one document); see
	// each type's Transform for what side means.
	Transform(op, other Op, side ot.Side) (Op, error)
	// TransformAppend is Transform that may reuse dst's memory.
	TransformAppend(dst, op, other Op, side ot.Side) (Op, error)
	// Compose returns the op that does a then b.
	Compose(a, b Op) (Op, error)
	// TransformSelection moves a selection through op.
	TransformSelection(sel ot.Selection, op Op, side ot.Side) ot.Selection
	// NewDocument makes a document from its content (see Document.Content).
	NewDocument(content string) (Document, error)

	// ContentKey is the JSON key that carries a document's content in hello
	// and in the REST API: "text" (a JSON string) for plain, "delta"
	// (Quill's op array) for rich.
	ContentKey() string
	// AppendContentJSON appends content (Document.Content) as the JSON
	// value under ContentKey.
	AppendContentJSON(b []byte, content string) []byte
	// Text returns content's text, without formatting (rich.PlainText:
	// embeds left out).
	Text(content string) (string, error)
	// FromText returns the content of a document holding text, unformatted.
	FromText(text string) string
	// NativeFormat is the export format that holds the whole document:
	// FormatText for plain, FormatDelta for rich.
	NativeFormat() string
	// Export returns content titled title in an export format.
	Export(content, title, format string) (Export, error)
}

// Document is a document of one type, as a server holds it.
type Document interface {
	// Apply applies op, or changes nothing and returns an error.
	Apply(op Op) error
	// Invert returns the op that undoes op applied to the document as it
	// is now (call it before Apply).
	Invert(op Op) (Op, error)
	// Len is the document's length in code points.
	Len() int
	// Size is the document's content in bytes (what a snapshot costs).
	Size() int
	// Content is the document as snapshots store it and hello sends it:
	// the text for plain, the Delta's JSON for rich.
	Content() string
}

// Lookup returns the type named name; "" is the plain type.
func Lookup(name string) (Type, error) {
	switch name {
	case "", PlainName:
		return Plain(), nil
	case RichName:
		return Rich(), nil
	}
	return nil, fmt.Errorf("%w: %q (%s or %s)", ErrUnknownType, name, PlainName, RichName)
}

// MustLookup is Lookup for names already checked (a stored document's).
// An unknown name gives the plain type.
func MustLookup(name string) Type {
	t, err := Lookup(name)
	if err != nil {
		return Plain()
	}
	return t
}

// Plain returns the plain-text type.
func Plain() Type { return plainType{} }

// Rich returns the rich-text type.
func Rich() Type { return richType{} }

type plainType struct{}

func (plainType) Name() string { return PlainName }

func (plainType) ParseOp(data []byte) (Op, int, error) {
	op, span, err := ot.ParseJSONSpan(data)
	return Op{plain: op}, span, err
}

func (t plainType) Transform(op, other Op, side ot.Side) (Op, error) {
	return t.TransformAppend(Op{}, op, other, side)
}

func (plainType) TransformAppend(dst, op, other Op, side ot.Side) (Op, error) {
	a, ok1 := asPlain(op)
	b, ok2 := asPlain(other)
	if !ok1 || !ok2 {
		return Op{}, ErrWrongType
	}
	out, err := ot.TransformAppend(dst.plain[:0], a, b, side)
	return Op{plain: out}, err
}

func (plainType) Compose(a, b Op) (Op, error) {
	x, ok1 := asPlain(a)
	y, ok2 := asPlain(b)
	if !ok1 || !ok2 {
		return Op{}, ErrWrongType
	}
	out, err := ot.Compose(x, y)
	return Op{plain: out}, err
}

func (plainType) TransformSelection(sel ot.Selection, op Op, side ot.Side) ot.Selection {
	p, _ := asPlain(op)
	return ot.TransformSelection(sel, p, side)
}

func (plainType) ContentKey() string { return "text" }

func (plainType) AppendContentJSON(b []byte, content string) []byte {
	return ot.AppendJSONString(b, content)
}

func (plainType) Text(content string) (string, error) { return content, nil }
func (plainType) FromText(text string) string         { return text }
func (plainType) NativeFormat() string                { return FormatText }

// Export: a plain document is Markdown as it is, and one unformatted
// paragraph per line in HTML.
func (plainType) Export(content, title, format string) (Export, error) {
	if format == FormatMarkdown {
		return Export{[]byte(content), "text/markdown; charset=utf-8", ".md"}, nil
	}
	var delta rich.Delta
	if content != "" {
		delta = rich.Delta{rich.Insert(content, nil)}
	}
	return exportDelta(delta, title, format)
}

func (plainType) NewDocument(content string) (Document, error) {
	r, err := ot.NewRope(content)
	if err != nil {
		return nil, err
	}
	return plainDoc{r}, nil
}

// PlainRope returns the rope of a plain document, or nil.
func PlainRope(d Document) *ot.Rope {
	if p, ok := d.(plainDoc); ok {
		return p.r
	}
	return nil
}

type plainDoc struct{ r *ot.Rope }

func (d plainDoc) Apply(op Op) error {
	p, ok := asPlain(op)
	if !ok {
		return ErrWrongType
	}
	return d.r.Apply(p)
}

func (d plainDoc) Invert(op Op) (Op, error) {
	p, ok := asPlain(op)
	if !ok {
		return Op{}, ErrWrongType
	}
	inv, err := invertOnRope(p, d.r)
	return Op{plain: inv}, err
}

func (d plainDoc) Len() int        { return d.r.Len() }
func (d plainDoc) Size() int       { return d.r.ByteLen() }
func (d plainDoc) Content() string { return d.r.String() }

// invertOnRope inverts op against the rope's text, reading only the
// deleted stretches (ot.Invert would need the whole text as a string).
func invertOnRope(op ot.Op, r *ot.Rope) (ot.Op, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if op.BaseLen() > r.Len() {
		return nil, fmt.Errorf("%w: op covers %d code points, the document has %d", ot.ErrTooLong, op.BaseLen(), r.Len())
	}
	inv := make(ot.Op, 0, len(op))
	at := 0
	for _, c := range op {
		switch c.Kind() {
		case ot.KindSkip:
			inv = append(inv, c)
			at += c.Len()
		case ot.KindDelete:
			s, err := r.Slice(at, at+c.Len())
			if err != nil {
				return nil, err
			}
			inv = append(inv, ot.Insert(s))
			at += c.Len()
		default:
			inv = append(inv, ot.DeleteText(c.Text()))
		}
	}
	return ot.Normalize(inv)
}

type richType struct{}

func (richType) Name() string { return RichName }

func (richType) ParseOp(data []byte) (Op, int, error) {
	d, span, err := rich.ParseJSONSpan(data)
	return Op{rich: d, isRich: true}, span, err
}

func (richType) Transform(op, other Op, side ot.Side) (Op, error) {
	a, ok1 := asRich(op)
	b, ok2 := asRich(other)
	if !ok1 || !ok2 {
		return Op{}, ErrWrongType
	}
	out, err := rich.Transform(a, b, side)
	return Op{rich: out, isRich: true}, err
}

func (richType) TransformAppend(dst, op, other Op, side ot.Side) (Op, error) {
	a, ok1 := asRich(op)
	b, ok2 := asRich(other)
	if !ok1 || !ok2 {
		return Op{}, ErrWrongType
	}
	out, err := rich.TransformAppend(dst.rich[:0], a, b, side)
	return Op{rich: out, isRich: true}, err
}

func (richType) Compose(a, b Op) (Op, error) {
	x, ok1 := asRich(a)
	y, ok2 := asRich(b)
	if !ok1 || !ok2 {
		return Op{}, ErrWrongType
	}
	out, err := rich.Compose(x, y)
	return Op{rich: out, isRich: true}, err
}

func (richType) TransformSelection(sel ot.Selection, op Op, side ot.Side) ot.Selection {
	r, _ := asRich(op)
	return rich.TransformSelection(sel, r, side)
}

func (richType) ContentKey() string { return "delta" }

func (richType) AppendContentJSON(b []byte, content string) []byte {
	if content == "" {
		return append(b, '[', ']')
	}
	return append(b, content...)
}

func (richType) Text(content string) (string, error) {
	d, err := parseRichContent(content)
	return rich.PlainText(d), err
}

// FromText is one unformatted paragraph per line, ending with a newline as
// Quill's documents do.
func (richType) FromText(text string) string {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return string(rich.Delta{rich.Insert(text, nil)}.AppendJSON(nil))
}

func (richType) NativeFormat() string { return FormatDelta }

func (richType) Export(content, title, format string) (Export, error) {
	d, err := parseRichContent(content)
	if err != nil {
		return Export{}, fmt.Errorf("export: %w", err)
	}
	return exportDelta(d, title, format)
}

func parseRichContent(content string) (rich.Delta, error) {
	if content == "" {
		return nil, nil
	}
	return rich.ParseDocumentJSON([]byte(content))
}

func (richType) NewDocument(content string) (Document, error) {
	var delta rich.Delta
	if content != "" {
		var err error
		if delta, err = rich.ParseDocumentJSON([]byte(content)); err != nil {
			return nil, err
		}
	}
	d, err := rich.NewDocument(delta)
	if err != nil {
		return nil, err
	}
	return richDoc{d}, nil
}

// RichDocument returns the rich document of d, or nil.
func RichDocument(d Document) *rich.Document {
	if r, ok := d.(richDoc); ok {
		return r.d
	}
	return nil
}

type richDoc struct{ d *rich.Document }

func (d richDoc) Apply(op Op) error {
	r, ok := asRich(op)
	if !ok {
		return ErrWrongType
	}
	return d.d.Apply(r)
}

func (d richDoc) Invert(op Op) (Op, error) {
	r, ok := asRich(op)
	if !ok {
		return Op{}, ErrWrongType
	}
	inv, err := d.d.Invert(r)
	return Op{rich: inv, isRich: true}, err
}

func (d richDoc) Len() int        { return d.d.Len() }
func (d richDoc) Size() int       { return d.d.ByteSize() }
func (d richDoc) Content() string { return string(d.d.AppendJSON(nil)) }
