package ot

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Side breaks the tie when two operations insert at the same place.
type Side uint8

const (
	// Left puts the transformed op's insert first (text-unicode's 'left').
	Left Side = iota
	// Right puts the other op's insert first (text-unicode's 'right').
	Right
)

func (s Side) String() string {
	switch s {
	case Left:
		return "left"
	case Right:
		return "right"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

// runeOffset returns the byte offset of the n-th code point of s, and false
// if s has fewer than n code points. Invalid bytes count as one code point
// each, as utf8 decoding treats them.
func runeOffset(s string, n int) (int, bool) {
	i := 0
	for ; n > 0 && i < len(s); n-- {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return i, n == 0
}

// Apply applies op to doc and returns the new document. It fails, leaving
// nothing changed, if op is malformed (ErrInvalidOp), skips or deletes past
// the end of doc (ErrTooLong), or deletes text it carries that doc does not
// hold there (ErrDeleteMismatch). doc is expected to be valid UTF-8.
//
// Apply copies the document: it costs O(len(doc)). Servers keep long
// documents in a Rope, whose Apply costs O(log n) per component.
func Apply(doc string, op Op) (string, error) {
	if err := op.Check(); err != nil {
		return "", err
	}
	grow := len(doc)
	for _, c := range op {
		if c.kind == KindInsert {
			grow += len(c.text)
		}
	}
	var sb strings.Builder
	sb.Grow(grow)
	rest := doc
	pos := 0 // code points of doc consumed
	for i, c := range op {
		switch c.kind {
		case KindInsert:
			sb.WriteString(c.text)
			continue
		case KindSkip, KindDelete:
			k, ok := runeOffset(rest, c.n)
			if !ok {
				return "", fmt.Errorf("%w: component %d (%s %d at %d) ends past the end of a %d-code-point document",
					ErrTooLong, i, c.kind, c.n, pos, pos+utf8.RuneCountInString(rest))
			}
			if c.kind == KindSkip {
				sb.WriteString(rest[:k])
			} else if c.text != "" && rest[:k] != c.text {
				return "", fmt.Errorf("%w: component %d deletes %q at %d, the document holds %q",
					ErrDeleteMismatch, i, c.text, pos, rest[:k])
			}
			rest = rest[k:]
			pos += c.n
		}
	}
	sb.WriteString(rest)
	return sb.String(), nil
}

// taker reads an op component by component, splitting components on demand
// (text-unicode's makeTake).
type taker struct {
	op   Op
	idx  int // next component
	off  int // code points of op[idx] already taken
	boff int // bytes of op[idx].text already taken
}

// take returns up to n code points' worth of the next component, or all of
// it when n < 0 or when it is of the kind that must not be split. Past the
// end of the op it returns an endless skip (n of it), or false when n < 0.
func (t *taker) take(n int, whole Kind) (Component, bool) {
	if t.idx == len(t.op) {
		if n < 0 {
			return Component{}, false
		}
		return Skip(n), true
	}
	c := t.op[t.idx]
	rem := c.n - t.off
	if n < 0 || rem <= n || (c.kind == whole && whole != KindSkip) {
		part := Component{kind: c.kind, n: rem, valid: c.valid}
		if c.text != "" {
			part.text = c.text[t.boff:]
		}
		t.idx, t.off, t.boff = t.idx+1, 0, 0
		return part, true
	}
	part := Component{kind: c.kind, n: n, valid: c.valid}
	if c.text != "" {
		k, _ := runeOffset(c.text[t.boff:], n)
		part.text = c.text[t.boff : t.boff+k]
		t.boff += k
	}
	t.off += n
	return part, true
}

// peekKind returns the kind of the next component, or 0 at the end.
func (t *taker) peekKind() Kind {
	if t.idx == len(t.op) {
		return 0
	}
	return t.op[t.idx].kind
}

// Transform returns op transformed against other, an op applied concurrently
// to the same document: the result does to Apply(doc, other) what op does to
// doc. Where both insert at the same place, side says whose text comes first:
// Left puts op's insert first, Right puts other's first. Two sites that
// transform with opposite sides converge:
//
//	Apply(Apply(doc, a), Transform(b, a, Right)) == Apply(Apply(doc, b), Transform(a, b, Left))
//
// Text that op deletes and other already deleted is not deleted twice. The
// algorithm, and so the result, is text-unicode's.
func Transform(op, other Op, side Side) (Op, error) {
	return TransformAppend(nil, op, other, side)
}

// TransformAppend is Transform writing the result into dst's memory
// (dst[:0], grown as needed) instead of a new op: a caller transforming
// one op through many can alternate two buffers. dst must not share
// memory with op or other.
func TransformAppend(dst, op, other Op, side Side) (Op, error) {
	if side != Left && side != Right {
		return nil, fmt.Errorf("%w: invalid side %d", ErrInvalidOp, side)
	}
	op, err := mustNormal(op)
	if err != nil {
		return nil, fmt.Errorf("transform: op: %w", err)
	}
	other, err = mustNormal(other)
	if err != nil {
		return nil, fmt.Errorf("transform: other op: %w", err)
	}
	if dst == nil {
		dst = make(Op, 0, len(op)+2)
	}
	b := builder{op: dst[:0]}
	t := taker{op: op}
	for _, c2 := range other {
		switch c2.kind {
		case KindSkip:
			for length := c2.n; length > 0; {
				c1, _ := t.take(length, KindInsert)
				b.push(c1)
				if c1.kind != KindInsert {
					length -= c1.n
				}
			}
		case KindInsert:
			if side == Left && t.peekKind() == KindInsert {
				c1, _ := t.take(-1, 0)
				b.push(c1)
			}
			b.push(Skip(c2.n))
		case KindDelete:
			for length := c2.n; length > 0; {
				c1, _ := t.take(length, KindInsert)
				switch c1.kind {
				case KindInsert:
					b.push(c1)
				default: // skipped text, or text both ops delete
					length -= c1.n
				}
			}
		}
	}
	for {
		c1, ok := t.take(-1, 0)
		if !ok {
			break
		}
		b.push(c1)
	}
	return b.done(), nil
}

// Compose returns one op that does what a followed by b does:
//
//	Apply(doc, Compose(a, b)) == Apply(Apply(doc, a), b)
//
// The algorithm, and so the result, is text-unicode's.
func Compose(a, b Op) (Op, error) {
	a, err := mustNormal(a)
	if err != nil {
		return nil, fmt.Errorf("compose: first op: %w", err)
	}
	b, err = mustNormal(b)
	if err != nil {
		return nil, fmt.Errorf("compose: second op: %w", err)
	}
	out := builder{op: make(Op, 0, len(a)+len(b))}
	t := taker{op: a}
	for _, c := range b {
		switch c.kind {
		case KindSkip:
			for length := c.n; length > 0; {
				chunk, _ := t.take(length, KindDelete)
				out.push(chunk)
				if chunk.kind != KindDelete {
					length -= chunk.n
				}
			}
		case KindInsert:
			out.push(c)
		case KindDelete:
			for offset := 0; offset < c.n; {
				chunk, _ := t.take(c.n-offset, KindDelete)
				switch chunk.kind {
				case KindSkip: // b deletes text that a kept
					out.push(sliceDelete(c, offset, offset+chunk.n))
					offset += chunk.n
				case KindInsert: // b deletes text that a inserted: neither remains
					offset += chunk.n
				case KindDelete: // a's delete stays
					out.push(chunk)
				}
			}
		}
	}
	for {
		chunk, ok := t.take(-1, 0)
		if !ok {
			break
		}
		out.push(chunk)
	}
	return out.done(), nil
}

// sliceDelete returns the part [from, to) of delete component c.
func sliceDelete(c Component, from, to int) Component {
	if c.text == "" {
		return Delete(to - from)
	}
	i, _ := runeOffset(c.text, from)
	j, _ := runeOffset(c.text[i:], to-from)
	return Component{kind: KindDelete, n: to - from, text: c.text[i : i+j], valid: c.valid}
}

// Invert returns the op that undoes op, given the document op was applied to:
//
//	Apply(Apply(doc, op), Invert(op, doc)) == doc
//
// Deletes of the inverse carry their text. It fails as Apply(doc, op) would.
// The result equals text-unicode's invertWithDoc.
func Invert(op Op, doc string) (Op, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	b := builder{op: make(Op, 0, len(op))}
	rest := doc
	pos := 0
	for i, c := range op {
		switch c.kind {
		case KindInsert:
			b.push(DeleteText(c.text))
			continue
		case KindSkip, KindDelete:
			k, ok := runeOffset(rest, c.n)
			if !ok {
				return nil, fmt.Errorf("%w: component %d (%s %d at %d) ends past the end of a %d-code-point document",
					ErrTooLong, i, c.kind, c.n, pos, pos+utf8.RuneCountInString(rest))
			}
			if c.kind == KindSkip {
				b.push(c)
			} else {
				if c.text != "" && rest[:k] != c.text {
					return nil, fmt.Errorf("%w: component %d deletes %q at %d, the document holds %q",
						ErrDeleteMismatch, i, c.text, pos, rest[:k])
				}
				b.push(Insert(rest[:k]))
			}
			rest = rest[k:]
			pos += c.n
		}
	}
	return b.done(), nil
}

// TransformPosition returns where position pos (a code point offset into the
// document op applies to, 0 <= pos <= its length) ends up in the document op
// makes. A position inside deleted text moves to where the deletion was. Text
// inserted exactly at pos goes after the position with side Left (the
// position stays before it, as text-unicode's transformPosition does) and
// before it with side Right (the position moves past it, as a caret does when
// its own user types). The result is never negative, and for pos within the
// document it is within the new document.
func TransformPosition(pos int, op Op, side Side) int {
	if pos < 0 {
		pos = 0
	}
	at := 0 // position in the original document reached by op
	for _, c := range op {
		if pos < at || (pos == at && side != Right) {
			break
		}
		switch c.kind {
		case KindSkip:
			at += c.n
		case KindInsert:
			at += c.n
			pos = addSat(pos, c.n)
		case KindDelete:
			pos -= min(c.n, pos-at)
		}
	}
	return pos
}

// addSat adds without wrapping past math.MaxInt: a position far beyond any
// document must not come out negative.
func addSat(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// Selection is a range of text selected by a user, in code points: Anchor is
// where the selection started and Head where it ends (the caret). Head may be
// before Anchor. Anchor == Head is a caret with nothing selected.
type Selection struct {
	Anchor int `json:"anchor"`
	Head   int `json:"head"`
}

// IsCaret reports whether nothing is selected.
func (s Selection) IsCaret() bool { return s.Anchor == s.Head }

// TransformSelection returns where sel ends up in the document op makes. A
// caret moves as TransformPosition moves it with side. A range does not grow
// from text inserted at its edges: its start moves past text inserted there
// and its end stays before it (side matters only for carets). A range whose
// text is all deleted collapses to a caret.
func TransformSelection(sel Selection, op Op, side Side) Selection {
	if sel.IsCaret() {
		p := TransformPosition(sel.Anchor, op, side)
		return Selection{Anchor: p, Head: p}
	}
	start, end := sel.Anchor, sel.Head
	if end < start {
		start, end = end, start
	}
	start = TransformPosition(start, op, Right)
	end = TransformPosition(end, op, Left)
	// When all of the range is deleted and text is inserted in its place,
	// the edges cross: the range collapses before the new text.
	start = min(start, end)
	if sel.Head < sel.Anchor {
		return Selection{Anchor: end, Head: start}
	}
	return Selection{Anchor: start, Head: end}
}
