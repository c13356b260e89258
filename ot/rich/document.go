package rich

import (
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot/internal/jsontext"
)

// Document is a mutable rich-text document: the representation a server
// keeps for an open document, where [Apply] on a Delta value would copy the
// whole document for every keystroke.
//
// # Structure
//
// The document's inserts are runs (text of at most 256 code points with one
// set of attributes, or one embed) held in a treap: a binary tree in
// document order whose nodes also satisfy a heap order on pseudo-random
// priorities, which keeps its expected depth O(log n). Every node caches the
// code points beneath it. Applying a component splits the tree at the
// component's position (and end) and merges the pieces back, each O(log n)
// expected; an insert of text that continues the run before it (same
// attributes, room left) goes into that run in place, so typing does not
// add a node per keystroke. Splitting leaves runs cut where edits happened;
// when the nodes have doubled since the tree was last built, it is rebuilt
// from its merged runs (O(n), amortized O(1) per node made).
//
// The priorities come from a counter mixed by splitmix64: a Document's
// shape is a function of its history, with no randomness or clock.
//
// # Cost
//
// With n the document's runs: Len is O(1); each component of Apply costs
// O(log n) expected plus the size of what it inserts, deletes or formats;
// Slice costs O(log n) plus the slice; Delta and AppendJSON are O(n).
type Document struct {
	root *node
	seq  uint64 // priorities: splitmix64 of a counter
	// nodes counts the tree's nodes; compactAt is when to rebuild.
	nodes, compactAt int
}

type node struct {
	left, right *node
	prio        uint64
	size        int // code points of the subtree
	bytes       int // about the bytes of the subtree's JSON (ByteSize)
	runBytes    int // runBytes(run), kept with it
	run         Component
}

// setRun replaces t's run (its sizes are fixed by update).
func (t *node) setRun(c Component) {
	t.run, t.runBytes = c, runBytes(c)
}

func byteSize(t *node) int {
	if t == nil {
		return 0
	}
	return t.bytes
}

// runBytes is about the bytes of a run's JSON: {"insert":"…","attributes":{…}},
func runBytes(c Component) int {
	n := 14 + len(c.text)
	if c.embed != nil {
		n += 4 + len(c.embed.Key) + len(c.embed.Value)
	}
	if len(c.attrs) > 0 {
		n += 15
		for _, a := range c.attrs {
			n += 4 + len(a.Key) + len(a.Value.json)
		}
	}
	return n
}

func size(t *node) int {
	if t == nil {
		return 0
	}
	return t.size
}

func (t *node) update() {
	t.size = size(t.left) + t.run.n + size(t.right)
	t.bytes = byteSize(t.left) + t.runBytes + byteSize(t.right)
}

// NewDocument returns a Document holding doc, which must be a document
// (inserts only, no null attributes).
func NewDocument(doc Delta) (*Document, error) {
	if err := doc.CheckDocument(); err != nil {
		return nil, err
	}
	d := &Document{}
	d.build(doc)
	return d, nil
}

func (d *Document) prio() uint64 {
	d.seq += 0x9e3779b97f4a7c15
	z := d.seq
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (d *Document) newNode(c Component) *node {
	d.nodes++
	rb := runBytes(c)
	return &node{prio: d.prio(), size: c.n, bytes: rb, runBytes: rb, run: c}
}

// runs cuts an insert into runs of at most maxRun code points.
func runs(c Component, fn func(Component)) {
	if !c.isText() || c.n <= maxRun {
		fn(c)
		return
	}
	s := c.text
	for len(s) > 0 {
		i, k := 0, 0
		for i < len(s) && k < maxRun {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
			k++
		}
		fn(Component{kind: KindInsert, n: k, text: s[:i], attrs: c.attrs})
		s = s[i:]
	}
}

// build replaces the tree with a fresh one of doc's merged runs, in O(n):
// a Cartesian tree made with a stack, in document order.
func (d *Document) build(doc Delta) {
	var b builder
	for _, c := range doc {
		b.push(c)
	}
	var stack []*node
	d.nodes = 0
	for _, c := range b.done() {
		runs(c, func(r Component) {
			x := d.newNode(r)
			var last *node
			for len(stack) > 0 && stack[len(stack)-1].prio < x.prio {
				last = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			}
			x.left = last
			if len(stack) > 0 {
				stack[len(stack)-1].right = x
			}
			stack = append(stack, x)
		})
	}
	d.root = nil
	if len(stack) > 0 {
		d.root = stack[0]
		fixSizes(d.root)
	}
	d.compactAt = 2*d.nodes + 64
}

func fixSizes(t *node) int {
	if t == nil {
		return 0
	}
	fixSizes(t.left)
	fixSizes(t.right)
	t.update()
	return t.size
}

// cut splits an insert run after k of its code points (0 < k < c.n).
func cut(c Component, k int) (Component, Component) {
	i := 0
	for j := 0; j < k; j++ {
		_, size := utf8.DecodeRuneInString(c.text[i:])
		i += size
	}
	a, b := c, c
	a.n, a.text = k, c.text[:i]
	b.n, b.text = c.n-k, c.text[i:]
	return a, b
}

// split cuts t into the first pos code points and the rest.
func (d *Document) split(t *node, pos int) (*node, *node) {
	if t == nil {
		return nil, nil
	}
	ls := size(t.left)
	switch {
	case pos <= ls:
		l, r := d.split(t.left, pos)
		t.left = r
		t.update()
		return l, t
	case pos >= ls+t.run.n:
		l, r := d.split(t.right, pos-ls-t.run.n)
		t.right = l
		t.update()
		return t, r
	}
	a, b := cut(t.run, pos-ls)
	t.setRun(a)
	right := t.right
	t.right = nil
	t.update()
	return t, d.merge(d.newNode(b), right)
}

func (d *Document) merge(a, b *node) *node {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = d.merge(a.right, b)
		a.update()
		return a
	}
	b.left = d.merge(a, b.left)
	b.update()
	return b
}

// ByteSize estimates the size of the document's JSON in bytes, kept as
// the document changes: O(1). It counts the runs as held, so runs held
// split (until the next rebuild) count their overhead each; escapes are
// not counted.
func (d *Document) ByteSize() int { return byteSize(d.root) }

// Len returns the document's length in code points.
func (d *Document) Len() int { return size(d.root) }

// Apply applies op, or changes nothing and returns an error: op is checked
// whole (see Delta.Check) and must not retain or delete past the end.
func (d *Document) Apply(op Delta) error {
	if err := op.Check(); err != nil {
		return err
	}
	if n := op.BaseLen(); n > d.Len() {
		return errorf(CodePastEnd, "op covers %d code points, the document has %d", n, d.Len())
	}
	pos := 0
	for _, c := range op {
		switch {
		case c.kind == KindRetain && len(c.attrs) == 0:
			pos += c.n
		case c.kind == KindRetain:
			l, rest := d.split(d.root, pos)
			m, r := d.split(rest, c.n)
			format(m, c.attrs)
			d.root = d.merge(l, d.merge(m, r))
			pos += c.n
		case c.kind == KindDelete && d.deleteInRun(pos, c.n):
			// within one run: cut in place
		case c.kind == KindDelete:
			l, rest := d.split(d.root, pos)
			m, r := d.split(rest, c.n)
			d.nodes -= count(m)
			d.root = d.merge(l, r)
		case c.isText() && d.insertInRun(pos, c):
			// typed into a run of the same format: in place
			pos += c.n
		default:
			l, r := d.split(d.root, pos)
			if !(c.isText() && extendLast(l, c)) {
				var mid *node
				runs(c, func(x Component) { mid = d.merge(mid, d.newNode(x)) })
				l = d.merge(l, mid)
			}
			d.root = d.merge(l, r)
			pos += c.n
		}
	}
	if d.nodes > d.compactAt {
		d.build(d.Delta())
	}
	return nil
}

// runPath is the path from the root to the run holding position pos:
// for an insert, the run pos is inside or at the end of; otherwise the
// run whose code points start at or after pos. It returns false when
// there is none (or the tree is deeper than the path holds).
func (d *Document) runPath(pos int, insert bool, path *[96]*node) (depth, start int, ok bool) {
	t, off := d.root, 0
	for t != nil && depth < len(path) {
		path[depth] = t
		depth++
		ls := size(t.left)
		start = off + ls
		end := start + t.run.n
		switch {
		case pos < start || insert && pos == start:
			t = t.left
		case pos > end || !insert && pos >= end:
			off = end
			t = t.right
		default:
			return depth, start, true
		}
	}
	return 0, 0, false
}

// insertInRun inserts text c into the run at pos in place, when that run
// is text with c's attributes and room for it: typing, the common case,
// needs no split. It reports whether it did.
func (d *Document) insertInRun(pos int, c Component) bool {
	var path [96]*node
	depth, start, ok := d.runPath(pos, true, &path)
	if !ok {
		return false
	}
	r := &path[depth-1].run
	if !r.isText() || !r.attrs.Equal(c.attrs) || r.n+c.n > maxRun {
		return false
	}
	head, tail := r.text, ""
	if at := pos - start; at < r.n {
		a, b := cut(*r, at)
		head, tail = a.text, b.text
	}
	r.text = head + c.text + tail
	r.n += c.n
	path[depth-1].runBytes += len(c.text)
	for _, p := range path[:depth] {
		p.size += c.n
		p.bytes += len(c.text)
	}
	return true
}

// deleteInRun deletes n code points at pos in place when they lie inside
// one text run and leave some of it.
func (d *Document) deleteInRun(pos, n int) bool {
	var path [96]*node
	depth, start, ok := d.runPath(pos, false, &path)
	if !ok {
		return false
	}
	r := &path[depth-1].run
	at := pos - start
	if !r.isText() || at+n > r.n || n >= r.n {
		return false
	}
	head, rest := cut(*r, at) // (at may be 0: cut handles it)
	_, tail := cut(rest, n)
	removed := len(r.text) - len(head.text) - len(tail.text)
	r.text = head.text + tail.text
	r.n -= n
	path[depth-1].runBytes -= removed
	for _, p := range path[:depth] {
		p.size -= n
		p.bytes -= removed
	}
	return true
}

// extendLast appends c's text to the last run of t if that run is text
// with c's attributes and has room; it fixes the sizes on the way.
func extendLast(t *node, c Component) bool {
	if t == nil {
		return false
	}
	if t.right != nil {
		if !extendLast(t.right, c) {
			return false
		}
		t.size += c.n
		t.bytes += len(c.text)
		return true
	}
	if !t.run.isText() || !t.run.attrs.Equal(c.attrs) || t.run.n+c.n > maxRun {
		return false
	}
	t.run.text += c.text
	t.run.n += c.n
	t.size += c.n
	t.bytes += len(c.text)
	t.runBytes += len(c.text)
	return true
}

func format(t *node, attrs Attrs) {
	if t == nil {
		return
	}
	format(t.left, attrs)
	t.setRun(Component{kind: t.run.kind, n: t.run.n, text: t.run.text, embed: t.run.embed, attrs: composeAttrs(t.run.attrs, attrs, false)})
	format(t.right, attrs)
	t.update()
}

func count(t *node) int {
	if t == nil {
		return 0
	}
	return count(t.left) + 1 + count(t.right)
}

// Delta returns the document in canonical form.
func (d *Document) Delta() Delta {
	var b builder
	walkNodes(d.root, func(t *node) { b.push(t.run) })
	return b.done()
}

// AppendJSON appends the document's canonical JSON: what Delta().AppendJSON
// writes, without building the Delta (a snapshot of a large document is
// written on the document's goroutine, between edits). Adjacent text runs
// with equal attributes are one insert, their text written piece by piece
// into one JSON string.
func (d *Document) AppendJSON(b []byte) []byte {
	b = append(b, '[')
	var open *Component // the text insert whose string is still open
	closeText := func() {
		b = append(b, '"')
		if len(open.attrs) > 0 {
			b = append(b, `,"attributes":`...)
			b = open.attrs.AppendJSON(b)
		}
		b = append(b, '}')
		open = nil
	}
	first := true
	walkNodes(d.root, func(t *node) {
		c := &t.run
		if c.n == 0 {
			return
		}
		if open != nil {
			if c.isText() && open.attrs.Equal(c.attrs) {
				b = jsontext.AppendStringBody(b, c.text)
				return
			}
			closeText()
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		if c.isText() {
			b = append(b, `{"insert":"`...)
			b = jsontext.AppendStringBody(b, c.text)
			open = c
			return
		}
		b = c.appendJSON(b)
	})
	if open != nil {
		closeText()
	}
	return append(b, ']')
}

// walkNodes calls fn on every node of t, in document order.
func walkNodes(t *node, fn func(*node)) {
	for t != nil {
		walkNodes(t.left, fn)
		fn(t)
		t = t.right
	}
}

// Slice returns the document's inserts over [start, end) (clamped to the
// document), canonical.
func (d *Document) Slice(start, end int) Delta {
	var b builder
	for _, c := range d.slice(max(start, 0), min(end, d.Len())) {
		b.push(c)
	}
	return b.done()
}

func (d *Document) slice(start, end int) Delta {
	var out Delta
	sliceNode(d.root, 0, start, end, &out)
	return out
}

// sliceNode appends the parts of t's runs within [start, end); off is
// where t's subtree starts.
func sliceNode(t *node, off, start, end int, out *Delta) {
	for t != nil && start < end {
		if off >= end || off+t.size <= start {
			return
		}
		ls := size(t.left)
		sliceNode(t.left, off, start, end, out)
		at := off + ls
		if lo, hi := max(start, at), min(end, at+t.run.n); lo < hi {
			c := t.run
			if lo > at {
				_, c = cut(c, lo-at)
			}
			if hi < at+t.run.n {
				c, _ = cut(c, hi-lo)
			}
			*out = append(*out, c)
		}
		off = at + t.run.n
		t = t.right
	}
}

// Invert returns the op that undoes op applied to the document as it is
// now (call it before Apply).
func (d *Document) Invert(op Delta) (Delta, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if n := op.BaseLen(); n > d.Len() {
		return nil, errorf(CodePastEnd, "op covers %d code points, the document has %d", n, d.Len())
	}
	return invert(op, d), nil
}
