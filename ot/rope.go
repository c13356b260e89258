package ot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// ErrOutOfRange reports a position or range outside a Rope's document. It is
// wrapped with the bounds that were asked for; test for it with errors.Is.
var ErrOutOfRange = errors.New("ot: position out of range")

// Tree shape, chosen by measurement (BenchmarkReplay and the Rope
// micro-benchmarks, medians of 5 runs on a 2-core amd64 machine): 1 KiB
// leaves with fanout 16 replay seph-blog1 at about 50 ns per patch, as fast as
// 512-byte leaves but with half the allocations (leaf splits) and less
// memory; 2 KiB and 4 KiB leaves slow non-ASCII text by 20-60%, where a
// position within a leaf is found by scanning it. Fanouts 8, 16 and 32 were
// within noise of each other on the traces; 16 was the best overall.
const (
	defaultLeafMax = 1024 // most UTF-8 bytes in a leaf
	defaultKidsMax = 16   // most children of an internal node
	minLeafCap     = 32   // smallest buffer allocated for a leaf
)

// Rope is a mutable document of Unicode text held as a balanced tree of UTF-8
// chunks: the representation a server keeps for an open document, where the
// string [Apply] would copy the whole text for every keystroke.
//
// # Structure
//
// The tree is a B-tree whose leaves all sit at one depth. A leaf holds up to
// 1 KiB of UTF-8 (never a split code point, never empty); an internal node
// holds 2 to 16 children (at least 8 except at the root). Every node caches
// the code points and bytes beneath it, so finding a position descends one
// path, scanning at most 16 cached counts per level. Within a leaf, a
// position is a byte offset at once when the leaf is ASCII (as many bytes as
// code points); otherwise the leaf is scanned eight bytes at a time.
//
// An insert that fits goes into its leaf in place (leaf buffers grow by
// doubling up to 1 KiB). A full leaf is split at the insertion point, so that
// typing at the end of a leaf leaves that leaf full and continues in a new
// one; a large insert is cut into full leaves. A delete removes the leaves and
// subtrees it covers whole, trims the two leaves at its ends, and merges or
// rebalances leaves under 256 bytes and nodes under 8 children with a
// neighbour, collapsing a root left with one child, so memory stays
// proportional to the text: about 1.1 (freshly built) to 2 bytes of heap per
// byte of text.
//
// # Cost
//
// With n the document length: Len and ByteLen are O(1); Insert, Delete and
// each component of Apply cost O(log n) plus the size of the change, never
// O(n); Slice costs O(log n) plus the slice's size; String and WriteTo are
// O(n). A position is found in O(log n) cached counts plus a scan of one
// leaf (at most 1 KiB, none for ASCII leaves).
//
// # Errors and safety
//
// Positions and lengths count code points, as in [Op]. The text is always
// valid UTF-8: [NewRope] and Insert reject invalid input with [ErrInvalidOp].
// Methods never panic on bad arguments; they return errors wrapping
// [ErrOutOfRange], [ErrInvalidOp], [ErrTooLong] or [ErrDeleteMismatch], and a
// method that fails leaves the rope unchanged.
//
// The zero Rope is an empty document ready to use. A Rope must not be copied
// after first use, and it is not safe for concurrent use: a server serializes
// the operations on each document (readers may share it only while no one
// writes).
type Rope struct {
	root *node // nil for the empty document
	// lmax and kmax override the leaf and fanout limits (tests use small
	// ones to build deep trees); 0 means the defaults.
	lmax, kmax int
}

// node is a leaf (kids == nil, text in data) or an internal node.
type node struct {
	chars int     // code points beneath the node
	bytes int     // UTF-8 bytes beneath the node
	kids  []*node // an internal node's children, left to right
	data  []byte  // a leaf's text: valid UTF-8, 1..leafMax bytes
}

func (r *Rope) leafMax() int {
	if r.lmax > 0 {
		return r.lmax
	}
	return defaultLeafMax
}

func (r *Rope) kidsMax() int {
	if r.kmax > 0 {
		return r.kmax
	}
	return defaultKidsMax
}

// underfull reports whether n should be merged with a neighbour.
func (r *Rope) underfull(n *node) bool {
	if n.kids == nil {
		return len(n.data) < r.leafMax()/4
	}
	return len(n.kids) < r.kidsMax()/2
}

// errNilRope is returned by the mutating methods of a nil *Rope.
var errNilRope = errors.New("ot: nil *Rope")

// NewRope returns a rope holding s. It fails with an error wrapping
// [ErrInvalidOp] if s is not valid UTF-8 (including encoded surrogates),
// naming the byte offset of the first invalid byte: a document is text, and
// a rope never holds anything else. Building costs O(len(s)).
func NewRope(s string) (*Rope, error) {
	r := &Rope{}
	if err := r.reset(s); err != nil {
		return nil, err
	}
	return r, nil
}

// reset replaces the rope's text by s.
func (r *Rope) reset(s string) error {
	if err := validText(s); err != nil {
		return fmt.Errorf("rope: new: %w", err)
	}
	r.root = nil
	if s != "" {
		r.root = r.build(s)
	}
	return nil
}

// validText returns an ErrInvalidOp error naming the first invalid byte of s.
func validText(s string) error {
	if utf8.ValidString(s) {
		return nil
	}
	i := 0
	for i < len(s) {
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			break
		}
		i += size
	}
	return fmt.Errorf("%w: text is not valid UTF-8 (byte %d)", ErrInvalidOp, i)
}

// Len returns the document's length in code points. It costs O(1).
func (r *Rope) Len() int {
	if r == nil || r.root == nil {
		return 0
	}
	return r.root.chars
}

// ByteLen returns the document's length in UTF-8 bytes. It costs O(1).
func (r *Rope) ByteLen() int {
	if r == nil || r.root == nil {
		return 0
	}
	return r.root.bytes
}

// String returns the whole document.
func (r *Rope) String() string {
	if r == nil || r.root == nil {
		return ""
	}
	var sb strings.Builder
	sb.Grow(r.root.bytes)
	r.root.appendAll(&sb)
	return sb.String()
}

func (n *node) appendAll(sb *strings.Builder) {
	if n.kids == nil {
		sb.Write(n.data)
		return
	}
	for _, k := range n.kids {
		k.appendAll(sb)
	}
}

// Slice returns the code points [start, end) of the document. It fails with
// an error wrapping ErrOutOfRange unless 0 <= start <= end <= Len().
func (r *Rope) Slice(start, end int) (string, error) {
	size := r.Len()
	if start < 0 || start > end || end > size {
		return "", fmt.Errorf("rope: slice [%d:%d] of a %d-code-point document: %w", start, end, size, ErrOutOfRange)
	}
	if start == end {
		return "", nil
	}
	var sb strings.Builder
	sb.Grow(r.root.byteIndex(end) - r.root.byteIndex(start))
	r.root.chunks(start, end, func(b []byte) bool {
		sb.Write(b)
		return true
	})
	return sb.String(), nil
}

// WriteTo writes the document to w, leaf by leaf, without copying it. It
// returns the number of bytes written and the first error of w.
func (r *Rope) WriteTo(w io.Writer) (int64, error) {
	if r == nil || r.root == nil {
		return 0, nil
	}
	var total int64
	var err error
	r.root.chunks(0, r.root.chars, func(b []byte) bool {
		var k int
		k, err = w.Write(b)
		total += int64(k)
		if err == nil && k != len(b) {
			err = io.ErrShortWrite
		}
		return err == nil
	})
	return total, err
}

// Insert inserts s before the code point at pos, 0 <= pos <= Len(). It fails
// with an error wrapping ErrOutOfRange for a bad pos, or ErrInvalidOp if s is
// not valid UTF-8.
func (r *Rope) Insert(pos int, s string) error {
	if r == nil {
		return errNilRope
	}
	if size := r.Len(); pos < 0 || pos > size {
		return fmt.Errorf("rope: insert at %d in a %d-code-point document: %w", pos, size, ErrOutOfRange)
	}
	if err := validText(s); err != nil {
		return fmt.Errorf("rope: insert at %d: %w", pos, err)
	}
	r.insert(pos, s, utf8.RuneCountInString(s))
	return nil
}

// Delete deletes n code points from pos. It fails with an error wrapping
// ErrOutOfRange unless 0 <= pos, 0 <= n and pos+n <= Len().
func (r *Rope) Delete(pos, n int) error {
	if r == nil {
		return errNilRope
	}
	if size := r.Len(); pos < 0 || n < 0 || pos > size || n > size-pos {
		return fmt.Errorf("rope: delete %d at %d in a %d-code-point document: %w", n, pos, size, ErrOutOfRange)
	}
	r.delete(pos, n)
	return nil
}

// Apply applies op to the document, atomically: it first checks that every
// component is well formed (ErrInvalidOp), that op fits the document
// (ErrTooLong) and that every delete carrying its text matches the document
// (ErrDeleteMismatch), and on any error leaves the rope unchanged. op need
// not be normalized. It costs O(log n) per component plus the size of the
// inserted and deleted text.
func (r *Rope) Apply(op Op) error {
	if r == nil {
		return errNilRope
	}
	if err := op.Check(); err != nil {
		return fmt.Errorf("rope: apply: %w", err)
	}
	size := r.Len()
	pos := 0 // in the original document
	for i, c := range op {
		if c.kind == KindInsert {
			continue
		}
		if c.n > size-pos {
			return fmt.Errorf("%w: rope: apply: component %d (%s %d at %d) ends past the end of a %d-code-point document",
				ErrTooLong, i, c.kind, c.n, pos, size)
		}
		if c.kind == KindDelete && c.text != "" && !r.root.equal(pos, pos+c.n, c.text) {
			held, _ := r.Slice(pos, pos+c.n)
			return fmt.Errorf("%w: rope: apply: component %d deletes %s at %d, the document holds %s",
				ErrDeleteMismatch, i, quoteShort(c.text), pos, quoteShort(held))
		}
		pos += c.n
	}
	pos = 0 // in the document being changed
	for _, c := range op {
		switch c.kind {
		case KindSkip:
			pos += c.n
		case KindInsert:
			r.insert(pos, c.text, c.n)
			pos += c.n
		case KindDelete:
			r.delete(pos, c.n)
		}
	}
	return nil
}

// quoteShort quotes s for an error message, eliding the middle of long text.
func quoteShort(s string) string {
	const most = 64
	if utf8.RuneCountInString(s) <= most {
		return fmt.Sprintf("%q", s)
	}
	head := 0
	for k := 0; k < most/2; k++ {
		_, size := utf8.DecodeRuneInString(s[head:])
		head += size
	}
	tail := len(s)
	for k := 0; k < most/2; k++ {
		_, size := utf8.DecodeLastRuneInString(s[:tail])
		tail -= size
	}
	return fmt.Sprintf("%q…%q", s[:head], s[tail:])
}

// ---- reading ----

// byteIndex returns the byte offset of code point pos, 0 <= pos <= n.chars.
func (n *node) byteIndex(pos int) int {
	b := 0
	for n.kids != nil {
		kids := n.kids
		i := 0
		for ; i < len(kids)-1 && pos >= kids[i].chars; i++ {
			pos -= kids[i].chars
			b += kids[i].bytes
		}
		n = kids[i]
	}
	return b + leafOffset(n.data, n.chars, pos)
}

// chunks calls fn with the bytes of code points [start, end) of n, leaf by
// leaf in order, while fn returns true. It reports whether fn always did.
func (n *node) chunks(start, end int, fn func([]byte) bool) bool {
	if n.kids == nil {
		d := n.data
		b0 := leafOffset(d, n.chars, start)
		var b1 int
		if n.chars == len(d) {
			b1 = end
		} else if end == n.chars {
			b1 = len(d)
		} else {
			b1 = skipRunes(d, b0, end-start)
		}
		return fn(d[b0:b1])
	}
	at := 0
	for _, k := range n.kids {
		kend := at + k.chars
		if kend > start && at < end {
			if !k.chunks(max(start, at)-at, min(end, kend)-at, fn) {
				return false
			}
		}
		if kend >= end {
			break
		}
		at = kend
	}
	return true
}

// equal reports whether code points [start, end) of n are text.
func (n *node) equal(start, end int, text string) bool {
	rest := text
	ok := n.chunks(start, end, func(b []byte) bool {
		if len(b) > len(rest) || string(b) != rest[:len(b)] {
			return false
		}
		rest = rest[len(b):]
		return true
	})
	return ok && rest == ""
}

// ---- UTF-8 offsets ----

const hiBits = 0x8080808080808080

// contBytes returns a mask with bit 7 set in each byte of w that is a UTF-8
// continuation byte (10xxxxxx).
func contBytes(w uint64) uint64 { return w &^ (w << 1) & hiBits }

// leafOffset returns the byte offset of code point pos in d, which holds
// chars code points.
func leafOffset(d []byte, chars, pos int) int {
	switch {
	case chars == len(d): // ASCII
		return pos
	case pos <= chars/2:
		return skipRunes(d, 0, pos)
	default:
		return backRunes(d, chars-pos)
	}
}

// skipRunes returns the byte offset n code points after byte offset i of d,
// or len(d) if d ends first.
func skipRunes(d []byte, i, n int) int {
	for i+8 <= len(d) {
		w := binary.LittleEndian.Uint64(d[i:])
		starts := 8 - bits.OnesCount64(contBytes(w))
		if starts > n {
			break
		}
		n -= starts
		i += 8
	}
	for ; i < len(d); i++ {
		if d[i]&0xC0 != 0x80 {
			if n == 0 {
				break
			}
			n--
		}
	}
	return i
}

// backRunes returns the byte offset of the n-th code point counted back from
// the end of d (n >= 0), or 0 if d starts first.
func backRunes(d []byte, n int) int {
	i := len(d)
	if n == 0 {
		return i
	}
	for i >= 8 {
		w := binary.LittleEndian.Uint64(d[i-8:])
		starts := 8 - bits.OnesCount64(contBytes(w))
		if starts >= n {
			break
		}
		n -= starts
		i -= 8
	}
	for i > 0 {
		i--
		if d[i]&0xC0 != 0x80 {
			n--
			if n == 0 {
				break
			}
		}
	}
	return i
}

// countRunes returns the number of code points of valid UTF-8 d.
func countRunes(d []byte) int {
	cont, i := 0, 0
	for ; i+8 <= len(d); i += 8 {
		cont += bits.OnesCount64(contBytes(binary.LittleEndian.Uint64(d[i:])))
	}
	for ; i < len(d); i++ {
		if d[i]&0xC0 == 0x80 {
			cont++
		}
	}
	return len(d) - cont
}

// runeStart reports whether b starts a code point.
func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// ---- building ----

// leafCap returns the buffer capacity for a leaf of need bytes: a power of
// two from minLeafCap, at most lmax.
func leafCap(need, lmax int) int {
	c := minLeafCap
	for c < need {
		c <<= 1
	}
	return max(min(c, lmax), need)
}

// cuts returns the piece boundaries for cutting t bytes of UTF-8, whose byte
// at offset k is at(k), into the fewest pieces of at most leafMax bytes, all
// about the same size and cut at code point boundaries. The result starts
// with 0 and ends with t.
func (r *Rope) cuts(t int, at func(int) byte) []int {
	room := r.leafMax() - 4
	g := (t + room - 1) / room
	out := make([]int, g+1)
	out[g] = t
	for k := 1; k < g; k++ {
		c := k * t / g
		for !runeStart(at(c)) {
			c--
		}
		out[k] = c
	}
	return out
}

// build returns a tree holding s, valid non-empty UTF-8, with full leaves.
func (r *Rope) build(s string) *node {
	cuts := r.cuts(len(s), func(k int) byte { return s[k] })
	leaves := make([]*node, len(cuts)-1)
	for k := range leaves {
		piece := s[cuts[k]:cuts[k+1]]
		d := make([]byte, len(piece))
		copy(d, piece)
		leaves[k] = &node{chars: countRunes(d), bytes: len(d), data: d}
	}
	return r.stack(leaves)
}

// stack builds internal levels over nodes of one height until one root is
// left, and returns it.
func (r *Rope) stack(nodes []*node) *node {
	for len(nodes) > 1 {
		nodes = r.group(nodes)
	}
	return nodes[0]
}

// group returns parents for nodes: the fewest that hold at most kidsMax
// children each, all about the same size (so at least kidsMax/2 when there
// are more than kidsMax nodes).
func (r *Rope) group(nodes []*node) []*node {
	kmax := r.kidsMax()
	g := (len(nodes) + kmax - 1) / kmax
	out := make([]*node, g)
	lo := 0
	for k := range out {
		hi := (k + 1) * len(nodes) / g
		p := &node{kids: make([]*node, hi-lo, kmax+1)}
		copy(p.kids, nodes[lo:hi])
		p.sum()
		out[k] = p
		lo = hi
	}
	return out
}

// sum recomputes an internal node's counts from its children.
func (n *node) sum() {
	n.chars, n.bytes = 0, 0
	for _, k := range n.kids {
		n.chars += k.chars
		n.bytes += k.bytes
	}
}

// ---- insert ----

// insert inserts s, valid UTF-8 of sc code points, at pos, 0 <= pos <= Len().
func (r *Rope) insert(pos int, s string, sc int) {
	if s == "" {
		return
	}
	if r.root == nil {
		r.root = r.build(s)
		return
	}
	extra := r.ins(r.root, pos, s, sc)
	for len(extra) > 0 {
		level := make([]*node, 0, 1+len(extra))
		level = append(level, r.root)
		level = append(level, extra...)
		parents := r.group(level)
		r.root, extra = parents[0], parents[1:]
	}
}

// ins inserts s at pos into the subtree n. When n overflows, n keeps the
// first part and ins returns the new right siblings of n (of n's height), in
// order; otherwise it returns nil.
func (r *Rope) ins(n *node, pos int, s string, sc int) []*node {
	if n.kids == nil {
		return r.insLeaf(n, pos, s, sc)
	}
	kids := n.kids
	i := 0
	for ; i < len(kids)-1 && pos > kids[i].chars; i++ {
		pos -= kids[i].chars
	}
	k := kids[i]
	lmax := r.leafMax()
	if k.kids == nil && pos == k.chars && len(k.data)+len(s) > lmax && i+1 < len(kids) &&
		len(kids[i+1].data)+len(s) <= lmax {
		// At the end of a full leaf whose right neighbour has room: insert
		// there instead of splitting.
		i, k, pos = i+1, kids[i+1], 0
	}
	n.chars += sc
	n.bytes += len(s)
	extra := r.ins(k, pos, s, sc)
	if extra == nil {
		return nil
	}
	// Put extra after kids[i].
	if len(kids)+len(extra) <= cap(kids) {
		kids = kids[:len(kids)+len(extra)]
		copy(kids[i+1+len(extra):], kids[i+1:])
		copy(kids[i+1:], extra)
	} else {
		nk := make([]*node, 0, max(len(kids)+len(extra), r.kidsMax()+1))
		nk = append(nk, kids[:i+1]...)
		nk = append(nk, extra...)
		nk = append(nk, kids[i+1:]...)
		kids = nk
	}
	n.kids = kids
	if len(kids) <= r.kidsMax() {
		return nil
	}
	// Overflow: n keeps the first group, the others become new siblings.
	groups := r.group(kids)
	n.kids, n.chars, n.bytes = groups[0].kids, groups[0].chars, groups[0].bytes
	return groups[1:]
}

// insLeaf inserts s at code point pos of leaf n.
func (r *Rope) insLeaf(n *node, pos int, s string, sc int) []*node {
	d := n.data
	off := leafOffset(d, n.chars, pos)
	need := len(d) + len(s)
	lmax := r.leafMax()
	if need > lmax {
		return r.splitLeaf(n, off, s, sc)
	}
	if need <= cap(d) {
		d = d[:need]
		copy(d[off+len(s):], d[off:])
		copy(d[off:], s)
	} else {
		nd := make([]byte, need, leafCap(need, lmax))
		copy(nd, d[:off])
		copy(nd[off:], s)
		copy(nd[off+len(s):], d[off:])
		d = nd
	}
	n.data = d
	n.chars += sc
	n.bytes = need
	return nil
}

// splitLeaf inserts s at byte offset off of leaf n, which has no room for it:
// n keeps the first piece of the result, and the others are returned.
func (r *Rope) splitLeaf(n *node, off int, s string, sc int) []*node {
	d := n.data
	t := len(d) + len(s)
	lmax := r.leafMax()
	// at returns byte k of d[:off] + s + d[off:].
	at := func(k int) byte {
		switch {
		case k < off:
			return d[k]
		case k < off+len(s):
			return s[k-off]
		}
		return d[k-len(s)]
	}
	total := n.chars + sc
	ascii := n.chars == len(d) && sc == len(s)
	if t > 2*lmax-8 {
		// A large insert: cut everything into full pieces.
		cuts := r.cuts(t, at)
		pieces := make([]*node, len(cuts)-1)
		for k := range pieces {
			b := make([]byte, cuts[k+1]-cuts[k], leafCap(cuts[k+1]-cuts[k], lmax))
			spliceCopy(b, d, off, s, cuts[k])
			pieces[k] = &node{chars: countRunes(b), bytes: len(b), data: b}
		}
		*n = *pieces[0]
		return pieces[1:]
	}
	// Two pieces, cut where the insert ends when possible: typing goes on
	// at the end of the left piece, which stays full when the insert was at
	// the end of the leaf.
	// Both pieces fit when lo <= cut <= hi, and hi-lo >= 8. The end of the
	// insert, off+len(s), is a code point boundary and at least lo (as
	// len(d) <= lmax); when it is past hi, moving back from hi to a
	// boundary (at most 3 bytes) stays above lo.
	lo, hi := t-lmax, lmax
	cut := min(max(off+len(s), lo), hi)
	for !runeStart(at(cut)) {
		cut--
	}
	right := make([]byte, t-cut, leafCap(t-cut, lmax))
	spliceCopy(right, d, off, s, cut)
	rc := len(right)
	if !ascii {
		rc = countRunes(right)
	}
	// The left piece is d[:off] + s[:cut-off] when cut > off, else d[:cut]
	// (then cut is within 3 bytes of lmax: no room is wasted).
	var left []byte
	switch {
	case cut <= off:
		left = d[:cut]
	case cut <= cap(d):
		left = d[:cut]
		copy(left[off:], s[:cut-off])
	default:
		left = make([]byte, cut, leafCap(cut, lmax))
		copy(left, d[:off])
		copy(left[off:], s[:cut-off])
	}
	n.data = left
	n.bytes = cut
	n.chars = total - rc
	return []*node{{chars: rc, bytes: len(right), data: right}}
}

// spliceCopy copies len(dst) bytes from offset from of d[:off] + s + d[off:].
func spliceCopy(dst, d []byte, off int, s string, from int) {
	w := 0
	if from < off {
		w += copy(dst, d[from:off])
		from = off
	}
	if w < len(dst) && from < off+len(s) {
		w += copy(dst[w:], s[from-off:])
		from = off + len(s)
	}
	if w < len(dst) {
		copy(dst[w:], d[from-len(s):])
	}
}

// ---- delete ----

// delete deletes n code points at pos; the range is within the document.
func (r *Rope) delete(pos, n int) {
	if n == 0 {
		return
	}
	if pos == 0 && n == r.root.chars {
		r.root = nil
		return
	}
	r.del(r.root, pos, pos+n)
	for r.root.kids != nil && len(r.root.kids) == 1 {
		r.root = r.root.kids[0]
	}
}

// del deletes code points [start, end) of n, a proper part of n. Afterwards
// n's children are not underfull (unless n has one child); n itself may be.
// Only the children that hold the range are visited.
func (r *Rope) del(n *node, start, end int) {
	if n.kids == nil {
		r.delLeaf(n, start, end)
		return
	}
	kids := n.kids
	i, at := 0, 0
	for at+kids[i].chars <= start {
		at += kids[i].chars
		i++
	}
	first, w := i, i
	for ; i < len(kids) && at < end; i++ {
		k := kids[i]
		kstart := at
		at += k.chars
		if start <= kstart && at <= end { // covered: drop it
			n.chars -= k.chars
			n.bytes -= k.bytes
			continue
		}
		c, b := k.chars, k.bytes
		r.del(k, max(start, kstart)-kstart, min(end, at)-kstart)
		n.chars -= c - k.chars
		n.bytes -= b - k.bytes
		kids[w] = k
		w++
	}
	if w < i {
		m := copy(kids[w:], kids[i:])
		clear(kids[w+m:])
		n.kids = kids[:w+m]
	}
	// The children left of the range and right of it are untouched; the
	// (at most two) partly deleted ones and the seam between them may be
	// underfull.
	r.fixKids(n, max(first-1, 0), w+1)
}

// delLeaf deletes code points [start, end) of leaf n, not all of it.
func (r *Rope) delLeaf(n *node, start, end int) {
	d := n.data
	var b0, b1 int
	if n.chars == len(d) {
		b0, b1 = start, end
	} else {
		b0 = leafOffset(d, n.chars, start)
		b1 = skipRunes(d, b0, end-start)
	}
	copy(d[b0:], d[b1:])
	d = d[:len(d)-(b1-b0)]
	if c := leafCap(len(d), r.leafMax()); cap(d) > 4*c {
		d = append(make([]byte, 0, c), d...)
	}
	n.data = d
	n.chars -= end - start
	n.bytes = len(d)
}

// fixKids merges or rebalances n's underfull children among n.kids[lo:hi]
// (the others are known not to be) with their neighbours, until none is
// underfull or n has one child.
func (r *Rope) fixKids(n *node, lo, hi int) {
	for len(n.kids) > 1 {
		hi = min(hi, len(n.kids))
		i := -1
		for j := lo; j < hi; j++ {
			if r.underfull(n.kids[j]) {
				i = j
				break
			}
		}
		if i < 0 {
			return
		}
		// Pair it with its smaller neighbour.
		if i == len(n.kids)-1 || (i > 0 && n.kids[i-1].bytes < n.kids[i+1].bytes) {
			i--
		}
		if r.combine(n, i) {
			// n.kids[i] is the merged node, which may still be underfull.
			lo, hi = min(lo, i), max(hi-1, i+1)
		}
	}
}

// combine merges n.kids[i] and n.kids[i+1] and reports true, or when they do
// not fit in one node, rebalances them so that neither is underfull and
// reports false.
func (r *Rope) combine(n *node, i int) bool {
	a, b := n.kids[i], n.kids[i+1]
	if a.kids == nil {
		t := len(a.data) + len(b.data)
		lmax := r.leafMax()
		if t <= lmax {
			if t <= cap(a.data) {
				a.data = append(a.data, b.data...)
			} else {
				d := make([]byte, 0, leafCap(t, lmax))
				d = append(d, a.data...)
				a.data = append(d, b.data...)
			}
			a.chars += b.chars
			a.bytes = t
			n.removeKid(i + 1)
			return true
		}
		r.rebalanceLeaves(a, b)
		return false
	}
	seam := len(a.kids)
	a.kids = append(a.kids, b.kids...)
	a.sum()
	// Only the children at the seam can be underfull: a or b may have been
	// left with one, underfull, child.
	r.fixKids(a, seam-1, seam+1)
	kmax := r.kidsMax()
	if len(a.kids) <= kmax {
		n.removeKid(i + 1)
		return true
	}
	h := len(a.kids) / 2
	old := len(b.kids)
	b.kids = append(b.kids[:0], a.kids[h:]...)
	if old > len(b.kids) {
		clear(b.kids[len(b.kids):old])
	}
	clear(a.kids[h:])
	a.kids = a.kids[:h]
	a.sum()
	b.sum()
	return false
}

// removeKid removes n.kids[i], which has been merged into its neighbour.
func (n *node) removeKid(i int) {
	last := len(n.kids) - 1
	copy(n.kids[i:], n.kids[i+1:])
	n.kids[last] = nil
	n.kids = n.kids[:last]
}

// rebalanceLeaves moves text between adjacent leaves a and b, which hold more
// than leafMax bytes together, so that each holds about half.
func (r *Rope) rebalanceLeaves(a, b *node) {
	lmax := r.leafMax()
	t := len(a.data) + len(b.data)
	at := func(k int) byte {
		if k < len(a.data) {
			return a.data[k]
		}
		return b.data[k-len(a.data)]
	}
	cut := t / 2
	for !runeStart(at(cut)) {
		cut--
	}
	if cut > len(a.data) {
		// Move the head of b to the end of a.
		m := b.data[:cut-len(a.data)]
		mc := countRunes(m)
		if cut <= cap(a.data) {
			a.data = append(a.data, m...)
		} else {
			d := make([]byte, 0, leafCap(cut, lmax))
			d = append(d, a.data...)
			a.data = append(d, m...)
		}
		rest := copy(b.data, b.data[len(m):])
		b.data = b.data[:rest]
		a.chars += mc
		b.chars -= mc
	} else {
		// Move the tail of a to the front of b.
		m := a.data[cut:]
		mc := countRunes(m)
		nb := t - cut
		if nb <= cap(b.data) {
			old := len(b.data)
			b.data = b.data[:nb]
			copy(b.data[len(m):], b.data[:old])
			copy(b.data, m)
		} else {
			d := make([]byte, nb, leafCap(nb, lmax))
			copy(d, m)
			copy(d[len(m):], b.data)
			b.data = d
		}
		a.data = a.data[:cut]
		a.chars -= mc
		b.chars += mc
	}
	a.bytes = len(a.data)
	b.bytes = len(b.data)
}
