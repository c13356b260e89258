package rich

import (
	"math"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot"
)

// iter walks a Delta a piece at a time, as quill-delta's Op iterator: past
// the end it yields an endless retain.
type iter struct {
	ops  Delta
	i    int
	off  int // code points of ops[i] already taken
	offB int // bytes of ops[i].text already taken
}

func (it *iter) hasNext() bool { return it.i < len(it.ops) }

func (it *iter) peekLen() int {
	if it.i < len(it.ops) {
		return it.ops[it.i].n - it.off
	}
	return math.MaxInt
}

func (it *iter) peekKind() Kind {
	if it.i < len(it.ops) {
		return it.ops[it.i].kind
	}
	return KindRetain
}

// next takes up to n code points of the current component (all of it for
// n >= what is left).
func (it *iter) next(n int) Component {
	if it.i >= len(it.ops) {
		return Component{kind: KindRetain, n: n}
	}
	c := it.ops[it.i]
	left := c.n - it.off
	if n >= left {
		n = left
	}
	out := c
	out.n = n
	if c.isText() {
		if it.off == 0 && n == c.n {
			out.text = c.text
		} else {
			end := it.offB
			for k := 0; k < n; k++ {
				_, size := utf8.DecodeRuneInString(c.text[end:])
				end += size
			}
			out.text = c.text[it.offB:end]
			it.offB = end
		}
	}
	if n == left {
		it.i++
		it.off, it.offB = 0, 0
	} else {
		it.off += n
	}
	return out
}

// Compose returns the op that does a then b (quill-delta's Delta#compose).
// a may be a document: the result is then b applied to it, unchecked (see
// [Apply] for the checked form).
func Compose(a, b Delta) (Delta, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	if err := b.Check(); err != nil {
		return nil, err
	}
	return compose(a, b), nil
}

func compose(a, b Delta) Delta {
	ai, bi := iter{ops: a}, iter{ops: b}
	out := builder{ops: make(Delta, 0, len(a)+len(b))}
	for ai.hasNext() || bi.hasNext() {
		switch {
		case bi.peekKind() == KindInsert:
			out.push(bi.next(math.MaxInt))
		case ai.peekKind() == KindDelete:
			out.push(ai.next(math.MaxInt))
		case !bi.hasNext():
			// b retains the rest unchanged: a's rest as it is.
			out.push(ai.next(math.MaxInt))
		default:
			n := min(ai.peekLen(), bi.peekLen())
			ac, bc := ai.next(n), bi.next(n)
			switch bc.kind {
			case KindRetain:
				c := ac
				c.attrs = composeAttrs(ac.attrs, bc.attrs, ac.kind == KindRetain)
				out.push(c)
			case KindDelete:
				if ac.kind == KindRetain {
					out.push(bc)
				}
				// (an insert then deleted: nothing)
			}
		}
	}
	return out.done()
}

// composeAttrs is AttributeMap.compose: b's values over a's; nulls kept
// only when composing two retains (keepNull), where they still have to
// remove the key from the document.
func composeAttrs(a, b Attrs, keepNull bool) Attrs {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 && (keepNull || !b.hasNull()) {
		return b
	}
	out := make(Attrs, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Key < b[j].Key):
			out = append(out, a[i])
			i++
		default:
			if i < len(a) && a[i].Key == b[j].Key {
				i++
			}
			if keepNull || !b[j].Value.IsNull() {
				out = append(out, b[j])
			}
			j++
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Transform returns op rebased onto other, both made on the same document,
// as rich-text's transform(op, other, side): with [ot.Left] other has
// priority (quill-delta's other.transform(op, true)), so at a tie other's
// insert comes first and where both set one attribute other's value stands;
// with [ot.Right] op's insert comes first and op's value stands.
//
// A server transforms a submitted op against each committed one with Left,
// and a client its pending op against each server op with Left (and the
// server op against its pending one with Right): the op committed first
// wins both ties, on every side. The plain type's Left means the opposite
// for inserts (op's insert first), as text-unicode's does: each type keeps
// its reference's meaning.
func Transform(op, other Delta, side ot.Side) (Delta, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if err := other.Check(); err != nil {
		return nil, err
	}
	return transform(nil, other, op, side == ot.Left), nil
}

// TransformAppend is Transform building the result in dst's memory
// (which it overwrites): a server transforming an op through many
// revisions reuses two buffers.
func TransformAppend(dst, op, other Delta, side ot.Side) (Delta, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if err := other.Check(); err != nil {
		return nil, err
	}
	return transform(dst, other, op, side == ot.Left), nil
}

// transform is quill-delta's this.transform(other, priority), into dst.
func transform(dst, this, other Delta, priority bool) Delta {
	ti, oi := iter{ops: this}, iter{ops: other}
	if dst == nil {
		dst = make(Delta, 0, len(this)+len(other))
	}
	out := builder{ops: dst[:0]}
	for ti.hasNext() || oi.hasNext() {
		switch {
		case ti.peekKind() == KindInsert && (priority || oi.peekKind() != KindInsert):
			out.retain(ti.next(math.MaxInt).n, nil)
		case oi.peekKind() == KindInsert:
			out.push(oi.next(math.MaxInt))
		case !ti.hasNext():
			// this retains the rest: other's rest as it is.
			out.push(oi.next(math.MaxInt))
		default:
			n := min(ti.peekLen(), oi.peekLen())
			tc, oc := ti.next(n), oi.next(n)
			switch {
			case tc.kind == KindDelete:
				// this deleted it: other's delete is redundant, its retain moot
			case oc.kind == KindDelete:
				out.push(oc)
			default:
				out.retain(n, transformAttrs(tc.attrs, oc.attrs, priority))
			}
		}
	}
	return out.done()
}

// transformAttrs is AttributeMap.transform(a, b, priority): b's changes
// rebased onto a's; with priority a's keys win.
func transformAttrs(a, b Attrs, priority bool) Attrs {
	if len(a) == 0 || !priority {
		return b
	}
	var out Attrs
	for _, at := range b {
		if _, ok := a.Get(at.Key); !ok {
			out = append(out, at)
		}
	}
	return out
}

// TransformPosition returns where pos ends up after op, as quill-delta's
// transformPosition: a position inside deleted text moves to where the
// deletion was; at text inserted exactly at pos, side Left keeps the
// position before it (rich-text's transformCursor for another user's op)
// and Right moves it past (a user's own op, as a caret moves when its user
// types).
func TransformPosition(pos int, op Delta, side ot.Side) int {
	if pos < 0 {
		pos = 0
	}
	priority := side == ot.Left
	offset := 0
	for _, c := range op {
		if offset > pos {
			break
		}
		switch {
		case c.kind == KindDelete:
			pos -= min(c.n, pos-offset)
			continue
		case c.kind == KindInsert && (offset < pos || !priority):
			pos = addSat(pos, c.n)
		}
		offset = addSat(offset, c.n)
	}
	return pos
}

func addSat(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// TransformSelection moves a selection through op as the plain type's
// [ot.TransformSelection] does, with this type's positions: a caret moves
// as TransformPosition with side; a range does not grow from text inserted
// at its edges; a range whose text is all deleted collapses to a caret.
func TransformSelection(sel ot.Selection, op Delta, side ot.Side) ot.Selection {
	if sel.IsCaret() {
		p := TransformPosition(sel.Anchor, op, side)
		return ot.Selection{Anchor: p, Head: p}
	}
	start, end := sel.Anchor, sel.Head
	if end < start {
		start, end = end, start
	}
	start = TransformPosition(start, op, ot.Right)
	end = TransformPosition(end, op, ot.Left)
	start = min(start, end)
	if sel.Head < sel.Anchor {
		return ot.Selection{Anchor: end, Head: start}
	}
	return ot.Selection{Anchor: start, Head: end}
}

// slicer gives the document's inserts over [start, end): a Delta value or
// a Document.
type slicer interface {
	slice(start, end int) Delta
}

type deltaSlicer Delta

func (d deltaSlicer) slice(start, end int) Delta {
	it := iter{ops: Delta(d)}
	var out Delta
	for at := 0; at < end && it.hasNext(); {
		if at < start {
			at += it.next(start - at).n
			continue
		}
		c := it.next(end - at)
		out = append(out, c)
		at += c.n
	}
	return out
}

// Invert returns the op that undoes op applied to doc (quill-delta's
// Delta#invert(base)): inserts become deletes, deletes re-insert what doc
// held there, and attribute changes restore doc's attributes. rich-text
// has no invert (ShareDB cannot undo rich text on the server); this one
// needs the document op was applied to.
func Invert(op, doc Delta) (Delta, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if err := doc.CheckDocument(); err != nil {
		return nil, err
	}
	if op.BaseLen() > doc.Len() {
		return nil, errorf(CodePastEnd, "op covers %d code points, the document has %d", op.BaseLen(), doc.Len())
	}
	return invert(op, deltaSlicer(doc)), nil
}

func invert(op Delta, base slicer) Delta {
	var out builder
	at := 0
	for _, c := range op {
		switch {
		case c.kind == KindInsert:
			out.delete(c.n)
		case c.kind == KindRetain && len(c.attrs) == 0:
			out.retain(c.n, nil)
			at += c.n
		default:
			for _, bc := range base.slice(at, at+c.n) {
				if c.kind == KindDelete {
					out.push(bc)
				} else {
					out.retain(bc.n, invertAttrs(c.attrs, bc.attrs))
				}
			}
			at += c.n
		}
	}
	return out.done()
}

// invertAttrs is AttributeMap.invert(attr, base): what sets base's values
// back where attr changed them.
func invertAttrs(attr, base Attrs) Attrs {
	var out Attrs
	i, j := 0, 0
	for i < len(attr) || j < len(base) {
		switch {
		case j == len(base) || (i < len(attr) && attr[i].Key < base[j].Key):
			// set where base had nothing: remove it again
			out = append(out, Attr{attr[i].Key, Null()})
			i++
		case i == len(attr) || base[j].Key < attr[i].Key:
			j++ // unchanged
		default:
			if attr[i].Value != base[j].Value {
				out = append(out, base[j])
			}
			i++
			j++
		}
	}
	return out
}

// Apply returns doc with op applied. It refuses an op that retains or
// deletes past the end of doc (rich-text would write the retain into the
// document) and anything Check or CheckDocument refuses.
func Apply(doc, op Delta) (Delta, error) {
	if err := doc.CheckDocument(); err != nil {
		return nil, err
	}
	if err := op.Check(); err != nil {
		return nil, err
	}
	if op.BaseLen() > doc.Len() {
		return nil, errorf(CodePastEnd, "op covers %d code points, the document has %d", op.BaseLen(), doc.Len())
	}
	return compose(doc, op), nil
}
