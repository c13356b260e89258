package ot

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Errors returned by the engine. They are wrapped with details; test for them
// with errors.Is.
var (
	// ErrInvalidOp reports a malformed operation: an empty or non-positive
	// component, invalid UTF-8, a lone surrogate, an unknown JSON form.
	ErrInvalidOp = errors.New("ot: invalid op")
	// ErrTooLong reports an operation that skips or deletes past the end of
	// the document it is applied to.
	ErrTooLong = errors.New("ot: op is too long for the document")
	// ErrDeleteMismatch reports a delete that carries its text ({"d":"text"})
	// where the document holds different text.
	ErrDeleteMismatch = errors.New("ot: deleted text does not match the document")
)

// Kind is the kind of a Component.
type Kind uint8

// The three kinds of component. The zero Kind is invalid, so a zero Component
// is rejected everywhere.
const (
	KindSkip   Kind = iota + 1 // retain n code points
	KindInsert                 // insert a string
	KindDelete                 // delete n code points
)

func (k Kind) String() string {
	switch k {
	case KindSkip:
		return "skip"
	case KindInsert:
		return "insert"
	case KindDelete:
		return "delete"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Component is one step of an operation. Build components with Skip, Insert,
// Delete and DeleteText; the zero Component is invalid.
type Component struct {
	kind Kind
	// valid: text is valid UTF-8 of n code points. The constructors check
	// it once, and the engine keeps it (it cuts texts only at code point
	// boundaries and joins valid texts), so that checking an op the engine
	// made costs per component, not per byte: a large insert transformed
	// through many revisions is not read again at each. (Next to kind: the
	// Component stays 32 bytes.)
	valid bool
	// n is the component's length in code points: the skip or delete count,
	// or the number of code points of an insert.
	n int
	// text is the inserted text, or for a delete the deleted text when it is
	// known ("" when the delete only carries a count).
	text string
}

// Skip returns a component that retains n code points.
func Skip(n int) Component { return Component{kind: KindSkip, n: n} }

// Insert returns a component that inserts s.
func Insert(s string) Component {
	return Component{kind: KindInsert, n: utf8.RuneCountInString(s), text: s, valid: utf8.ValidString(s)}
}

// Delete returns a component that deletes n code points.
func Delete(n int) Component { return Component{kind: KindDelete, n: n} }

// DeleteText returns a component that deletes s, which must be the text at
// that place in the document when the operation is applied. Such a delete
// carries what it removes, so that the operation can be inverted without the
// document.
func DeleteText(s string) Component {
	return Component{kind: KindDelete, n: utf8.RuneCountInString(s), text: s, valid: utf8.ValidString(s)}
}

// Kind reports the component's kind.
func (c Component) Kind() Kind { return c.kind }

// Len reports the component's length in code points: the skip or delete count,
// or the length of the inserted text.
func (c Component) Len() int { return c.n }

// Text returns the inserted text of an insert, the deleted text of a delete
// that carries it, and "" otherwise.
func (c Component) Text() string { return c.text }

// String formats the component as its JSON form.
func (c Component) String() string {
	b, err := appendComponent(nil, c)
	if err != nil {
		return fmt.Sprintf("<invalid %v>", c.kind)
	}
	return string(b)
}

// check reports whether c is well formed.
func (c Component) check() error {
	switch c.kind {
	case KindSkip:
		if c.n <= 0 {
			return fmt.Errorf("%w: skip must be a positive integer, got %d", ErrInvalidOp, c.n)
		}
	case KindInsert:
		if c.text == "" {
			return fmt.Errorf("%w: empty insert", ErrInvalidOp)
		}
		if c.valid {
			return nil
		}
		if !utf8.ValidString(c.text) {
			return fmt.Errorf("%w: insert is not valid UTF-8", ErrInvalidOp)
		}
		if c.n != utf8.RuneCountInString(c.text) {
			return fmt.Errorf("%w: insert length does not match its text", ErrInvalidOp)
		}
	case KindDelete:
		if c.n <= 0 {
			return fmt.Errorf("%w: delete must be positive, got %d", ErrInvalidOp, c.n)
		}
		if c.text != "" && !c.valid {
			if !utf8.ValidString(c.text) {
				return fmt.Errorf("%w: deleted text is not valid UTF-8", ErrInvalidOp)
			}
			if c.n != utf8.RuneCountInString(c.text) {
				return fmt.Errorf("%w: delete length does not match its text", ErrInvalidOp)
			}
		}
	default:
		return fmt.Errorf("%w: component of unknown kind %d", ErrInvalidOp, c.kind)
	}
	return nil
}

// Op is a text operation: a list of components that walks the document from
// its start. Positions and lengths count Unicode code points. Past its last
// component an op retains the rest of the document, so an op never needs a
// trailing skip.
//
// An Op is a value: the functions of this package never modify the ops they
// are given, and the ops they return share no memory that is later written.
//
// Every function accepts any well-formed op; every op it returns is
// normalized: no empty components, adjacent components of one kind merged, no
// trailing skip. Normalized ops are the only form the engine returns, and two
// normalized ops that do the same thing are equal component by component
// (insert/delete order at one place aside, which is kept as given, exactly as
// in ShareDB's text-unicode).
type Op []Component

// String formats the op as its JSON form.
func (op Op) String() string {
	b, err := op.MarshalJSON()
	if err != nil {
		return "<invalid op: " + err.Error() + ">"
	}
	return string(b)
}

// BaseLen returns the length in code points of the shortest document op can be
// applied to: the sum of its skips and deletes.
func (op Op) BaseLen() int {
	n := 0
	for _, c := range op {
		if c.kind != KindInsert {
			n += c.n
		}
	}
	return n
}

// TargetLen returns the length of the document op makes from a document of
// BaseLen code points. Applied to a document of length L >= BaseLen, op makes
// a document of L - BaseLen + TargetLen code points.
func (op Op) TargetLen() int {
	n := 0
	for _, c := range op {
		if c.kind != KindDelete {
			n += c.n
		}
	}
	return n
}

// IsNoop reports whether op changes nothing.
func (op Op) IsNoop() bool {
	for _, c := range op {
		if c.kind != KindSkip {
			return false
		}
	}
	return true
}

// Check reports whether every component of op is well formed. It does not
// require op to be normalized.
func (op Op) Check() error {
	for i, c := range op {
		if err := c.check(); err != nil {
			return fmt.Errorf("component %d: %w", i, err)
		}
	}
	return nil
}

// normalized reports whether op is well formed and normalized.
func (op Op) normalized() bool {
	for i, c := range op {
		if c.check() != nil {
			return false
		}
		if i > 0 && op[i-1].kind == c.kind {
			return false
		}
	}
	return len(op) == 0 || op[len(op)-1].kind != KindSkip
}

// Normalize checks op and returns its normalized form: adjacent components of
// one kind merged and the trailing skip dropped. Two adjacent deletes that both
// carry their text stay a delete with text; otherwise the text is dropped, as
// in text-unicode.
func Normalize(op Op) (Op, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if op.normalized() {
		return op, nil
	}
	var b builder
	for _, c := range op {
		b.push(c)
	}
	return b.done(), nil
}

// mustNormal returns op normalized, or the error that makes it invalid.
func mustNormal(op Op) (Op, error) {
	if op.normalized() {
		return op, nil
	}
	return Normalize(op)
}

// builder appends components with text-unicode's merge rules.
type builder struct {
	op Op
}

// push appends c, merging it into the last component when they are of one
// kind. Empty components are dropped.
func (b *builder) push(c Component) {
	if c.n == 0 {
		return
	}
	last := len(b.op) - 1
	if last < 0 || b.op[last].kind != c.kind {
		b.op = append(b.op, c)
		return
	}
	p := &b.op[last]
	switch c.kind {
	case KindSkip:
		p.n += c.n
	case KindInsert:
		p.text += c.text
		p.n += c.n
		p.valid = p.valid && c.valid
	case KindDelete:
		if p.text != "" && c.text != "" {
			p.text += c.text
			p.valid = p.valid && c.valid
		} else {
			p.text, p.valid = "", false
		}
		p.n += c.n
	}
}

// done returns the built op without its trailing skip.
func (b *builder) done() Op {
	op := b.op
	if n := len(op); n > 0 && op[n-1].kind == KindSkip {
		op = op[:n-1]
	}
	return op
}
