package ot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// check verifies the rope's invariants: cached counts, one leaf depth, fanout
// bounds, leaves non-empty, within the size limit and valid UTF-8.
func (r *Rope) check() error {
	if r.root == nil {
		return nil
	}
	lmax, kmax := r.leafMax(), r.kidsMax()
	leafDepth := -1
	var walk func(n *node, depth int, at []int) error
	walk = func(n *node, depth int, at []int) error {
		path := func() string { return fmt.Sprint("root", at) }
		if n.kids == nil {
			if len(n.data) == 0 {
				return fmt.Errorf("%s: empty leaf", path())
			}
			if len(n.data) > lmax || cap(n.data) > lmax {
				return fmt.Errorf("%s: leaf of %d bytes (cap %d) over the limit %d", path(), len(n.data), cap(n.data), lmax)
			}
			if !utf8.Valid(n.data) {
				return fmt.Errorf("%s: leaf is not valid UTF-8: %q", path(), n.data)
			}
			if c := utf8.RuneCount(n.data); n.chars != c || n.bytes != len(n.data) {
				return fmt.Errorf("%s: leaf caches %d chars %d bytes, holds %d chars %d bytes", path(), n.chars, n.bytes, c, len(n.data))
			}
			if leafDepth < 0 {
				leafDepth = depth
			} else if depth != leafDepth {
				return fmt.Errorf("%s: leaf at depth %d, others at %d", path(), depth, leafDepth)
			}
			return nil
		}
		if n.data != nil {
			return fmt.Errorf("%s: internal node with data", path())
		}
		lo := kmax / 2
		if depth == 0 {
			lo = 2
		}
		if len(n.kids) < lo || len(n.kids) > kmax {
			return fmt.Errorf("%s: %d children, want %d..%d", path(), len(n.kids), lo, kmax)
		}
		chars, nbytes := 0, 0
		for i, k := range n.kids {
			if k == nil {
				return fmt.Errorf("%s: nil child %d", path(), i)
			}
			if err := walk(k, depth+1, append(at, i)); err != nil {
				return err
			}
			chars += k.chars
			nbytes += k.bytes
		}
		if chars != n.chars || nbytes != n.bytes {
			return fmt.Errorf("%s: caches %d chars %d bytes, children hold %d chars %d bytes", path(), n.chars, n.bytes, chars, nbytes)
		}
		for _, k := range n.kids[len(n.kids):cap(n.kids)] {
			if k != nil {
				return fmt.Errorf("%s: stale child pointer past len", path())
			}
		}
		return nil
	}
	return walk(r.root, 0, nil)
}

// dump returns the tree's shape and text, to check that failed calls leave a
// rope exactly as it was.
func (r *Rope) dump() string {
	var sb strings.Builder
	var walk func(n *node)
	walk = func(n *node) {
		if n.kids == nil {
			fmt.Fprintf(&sb, "%q", n.data)
			return
		}
		sb.WriteByte('(')
		for _, k := range n.kids {
			walk(k)
		}
		sb.WriteByte(')')
	}
	if r.root != nil {
		walk(r.root)
	}
	return sb.String()
}

// height returns the number of levels of the tree.
func (r *Rope) height() int {
	h := 0
	for n := r.root; n != nil; h++ {
		if n.kids == nil {
			return h + 1
		}
		n = n.kids[0]
	}
	return h
}

// ropeShapes are the tree limits the tests run under: tiny ones to build deep
// trees from short texts, and the defaults.
var ropeShapes = []struct{ lmax, kmax int }{{16, 4}, {17, 5}, {32, 8}, {0, 0}}

func newShapedRope(t testing.TB, s string, lmax, kmax int) *Rope {
	t.Helper()
	r := &Rope{lmax: lmax, kmax: kmax}
	if err := r.reset(s); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, r, s)
	return r
}

// mustCheck fails t unless r holds want and keeps its invariants.
func mustCheck(t testing.TB, r *Rope, want string) {
	t.Helper()
	if err := r.check(); err != nil {
		t.Fatalf("invariant broken: %v\ntree: %s", err, r.dump())
	}
	if got := r.String(); got != want {
		t.Fatalf("rope holds\n%q\nwant\n%q", got, want)
	}
	if r.Len() != utf8.RuneCountInString(want) || r.ByteLen() != len(want) {
		t.Fatalf("Len %d ByteLen %d, want %d %d", r.Len(), r.ByteLen(), utf8.RuneCountInString(want), len(want))
	}
}

// mix is text with 1-, 2-, 3- and 4-byte code points and combining marks.
const mix = "héllo wörld, 中文字符, e\u0301\u0301 👍🏽 𝄞 a\u200db ﬀ ∑ 😀😀 end"

func TestRopeTable(t *testing.T) {
	long := strings.Repeat(mix, 40)
	type step struct {
		name string
		do   func(r *Rope) error
		want string // document afterwards
	}
	ins := func(pos int, s string) func(*Rope) error { return func(r *Rope) error { return r.Insert(pos, s) } }
	del := func(pos, n int) func(*Rope) error { return func(r *Rope) error { return r.Delete(pos, n) } }
	app := func(op ...Component) func(*Rope) error { return func(r *Rope) error { return r.Apply(op) } }
	tests := []struct {
		name  string
		start string
		steps []step
	}{
		{"empty", "", []step{
			{"insert into empty", ins(0, "abc"), "abc"},
			{"delete all", del(0, 3), ""},
			{"empty insert", ins(0, ""), ""},
			{"zero delete", del(0, 0), ""},
			{"apply to empty", app(Insert("😀x")), "😀x"},
			{"noop op", app(), "😀x"},
			{"skip only", app(Skip(2)), "😀x"},
		}},
		{"ascii", "hello world", []step{
			{"insert middle", ins(5, ","), "hello, world"},
			{"insert end", ins(12, "!"), "hello, world!"},
			{"insert start", ins(0, ">"), ">hello, world!"},
			{"delete middle", del(6, 2), ">helloworld!"},
			{"apply replace", app(Skip(1), DeleteText("hello"), Insert("HELLO")), ">HELLOworld!"},
			{"apply unnormalized", app(Skip(1), Skip(1), Delete(1), Delete(1), Insert("a"), Insert("b"), Skip(1)), ">HabLOworld!"},
		}},
		{"unicode", mix, []step{
			{"insert after emoji", ins(utf8.RuneCountInString("héllo wörld, 中文字符, e\u0301\u0301 👍"), "X"),
				"héllo wörld, 中文字符, e\u0301\u0301 👍X🏽 𝄞 a\u200db ﬀ ∑ 😀😀 end"},
			{"delete combining marks", del(utf8.RuneCountInString("héllo wörld, 中文字符, e"), 2),
				"héllo wörld, 中文字符, e 👍X🏽 𝄞 a\u200db ﬀ ∑ 😀😀 end"},
			{"delete text CJK", app(Skip(13), DeleteText("中文"), Insert("汉")), "héllo wörld, 汉字符, e 👍X🏽 𝄞 a\u200db ﬀ ∑ 😀😀 end"},
		}},
		{"long", long, []step{
			{"delete nearly all", del(1, utf8.RuneCountInString(long)-2), "hd"},
			{"big insert", ins(1, long), "h" + long + "d"},
			{"delete middle again", del(1, utf8.RuneCountInString(long)), "hd"},
		}},
	}
	for _, tc := range tests {
		for _, sh := range ropeShapes {
			t.Run(fmt.Sprintf("%s/%d-%d", tc.name, sh.lmax, sh.kmax), func(t *testing.T) {
				r := newShapedRope(t, tc.start, sh.lmax, sh.kmax)
				for _, st := range tc.steps {
					if err := st.do(r); err != nil {
						t.Fatalf("%s: %v", st.name, err)
					}
					mustCheck(t, r, st.want)
				}
			})
		}
	}
}

func TestRopeZeroValue(t *testing.T) {
	var r Rope
	if r.Len() != 0 || r.ByteLen() != 0 || r.String() != "" {
		t.Fatal("zero rope is not empty")
	}
	if err := r.Insert(0, "ok"); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, &r, "ok")
	var nilRope *Rope
	if nilRope.Len() != 0 || nilRope.String() != "" {
		t.Fatal("nil rope is not empty")
	}
	if err := nilRope.Insert(0, "x"); err == nil {
		t.Fatal("insert into a nil rope succeeded")
	}
	if err := nilRope.Delete(0, 0); err == nil {
		t.Fatal("delete from a nil rope succeeded")
	}
	if err := nilRope.Apply(Op{Insert("x")}); err == nil {
		t.Fatal("apply to a nil rope succeeded")
	}
	if n, err := nilRope.WriteTo(io.Discard); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

func TestRopeErrors(t *testing.T) {
	r := newShapedRope(t, "añb😀", 16, 4)
	before := r.dump()
	cases := []struct {
		name string
		err  error
		fn   func() error
	}{
		{"insert negative", ErrOutOfRange, func() error { return r.Insert(-1, "x") }},
		{"insert past end", ErrOutOfRange, func() error { return r.Insert(5, "x") }},
		{"insert invalid utf8", ErrInvalidOp, func() error { return r.Insert(1, "a\xffb") }},
		{"insert surrogate", ErrInvalidOp, func() error { return r.Insert(1, "\xed\xa0\x80") }},
		{"delete negative pos", ErrOutOfRange, func() error { return r.Delete(-1, 1) }},
		{"delete negative n", ErrOutOfRange, func() error { return r.Delete(1, -1) }},
		{"delete past end", ErrOutOfRange, func() error { return r.Delete(3, 2) }},
		{"delete pos past end", ErrOutOfRange, func() error { return r.Delete(5, 0) }},
		{"delete huge", ErrOutOfRange, func() error { return r.Delete(1, int(^uint(0)>>1)) }},
		{"slice reversed", ErrOutOfRange, func() error { _, err := r.Slice(3, 2); return err }},
		{"slice negative", ErrOutOfRange, func() error { _, err := r.Slice(-1, 2); return err }},
		{"slice past end", ErrOutOfRange, func() error { _, err := r.Slice(0, 5); return err }},
	}
	for _, tc := range cases {
		err := tc.fn()
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
		if after := r.dump(); after != before {
			t.Fatalf("%s changed the rope: %s -> %s", tc.name, before, after)
		}
	}
	if _, err := NewRope("ok\xc3"); !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), "byte 2") {
		t.Errorf("NewRope of invalid UTF-8: %v", err)
	}
	for _, c := range [][2]int{{0, 0}, {0, 4}, {1, 3}, {3, 4}, {4, 4}, {2, 2}} {
		got, err := r.Slice(c[0], c[1])
		want := string([]rune("añb😀")[c[0]:c[1]])
		if err != nil || got != want {
			t.Errorf("Slice(%d, %d) = %q, %v; want %q", c[0], c[1], got, err, want)
		}
	}
}

// TestRopeApplyAtomic checks that Apply leaves the rope exactly as it was, tree
// and all, on every kind of error, including when earlier components would
// have changed it.
func TestRopeApplyAtomic(t *testing.T) {
	doc := strings.Repeat("abc中文😀", 20) // 120 code points
	bad := []struct {
		name string
		op   Op
		err  error
	}{
		{"zero component", Op{Skip(1), {}}, ErrInvalidOp},
		{"zero skip", Op{Insert("x"), Skip(0)}, ErrInvalidOp},
		{"negative delete", Op{Delete(2), Delete(-1)}, ErrInvalidOp},
		{"empty insert", Op{Delete(1), Insert("")}, ErrInvalidOp},
		{"invalid utf8 insert", Op{Delete(1), Insert("\xff")}, ErrInvalidOp},
		{"invalid utf8 delete text", Op{Delete(1), DeleteText("\xc3")}, ErrInvalidOp},
		{"forged insert length", Op{Delete(1), {kind: KindInsert, n: 5, text: "ab"}}, ErrInvalidOp},
		{"unknown kind", Op{Insert("a"), {kind: 9, n: 1}}, ErrInvalidOp},
		{"skip past end", Op{Insert("x"), Delete(3), Skip(118)}, ErrTooLong},
		{"delete past end", Op{Skip(100), Insert("x"), Delete(21)}, ErrTooLong},
		{"huge delete", Op{Insert("x"), Delete(int(^uint(0) >> 1))}, ErrTooLong},
		{"mismatch at end", Op{Delete(3), Insert("zz"), Skip(109), DeleteText("文😀abc中文😁")}, ErrDeleteMismatch},
		{"mismatch across leaves", Op{Insert("x"), Skip(1), DeleteText("bc中文😀abc中文😀abc中文😀abc中文😀abc中文😀abc中文😀abd")}, ErrDeleteMismatch},
		{"mismatch short", Op{Insert("q"), DeleteText("b")}, ErrDeleteMismatch},
	}
	for _, sh := range ropeShapes {
		r := newShapedRope(t, doc, sh.lmax, sh.kmax)
		before := r.dump()
		for _, tc := range bad {
			err := r.Apply(tc.op)
			if !errors.Is(err, tc.err) {
				t.Errorf("%d-%d %s: got %v, want %v", sh.lmax, sh.kmax, tc.name, err, tc.err)
			}
			if after := r.dump(); after != before {
				t.Fatalf("%d-%d %s changed the rope", sh.lmax, sh.kmax, tc.name)
			}
			mustCheck(t, r, doc)
		}
		// The same shapes of op succeed when they fit.
		good := Op{Delete(3), Insert("zz"), Skip(109), DeleteText("文😀abc中文😀")}
		if err := r.Apply(good); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, r, "zz"+doc[3:len(doc)-len("文😀abc中文😀")])
	}
	t.Run("message", func(t *testing.T) {
		r, _ := NewRope("hello")
		err := r.Apply(Op{Skip(1), DeleteText("EL")})
		if err == nil || !strings.Contains(err.Error(), `component 1 deletes "EL" at 1, the document holds "el"`) {
			t.Errorf("mismatch error: %v", err)
		}
		err = r.Apply(Op{Skip(3), Delete(3)})
		if err == nil || !strings.Contains(err.Error(), "component 1 (delete 3 at 3)") {
			t.Errorf("too long error: %v", err)
		}
	})
}

type limitWriter struct {
	buf   bytes.Buffer
	room  int
	short bool // report a short write instead of an error
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) <= w.room {
		w.room -= len(p)
		return w.buf.Write(p)
	}
	n := w.room
	w.room = 0
	w.buf.Write(p[:n])
	if w.short {
		return n, nil
	}
	return n, errors.New("disk full")
}

func TestRopeWriteTo(t *testing.T) {
	doc := strings.Repeat(mix, 30)
	for _, sh := range ropeShapes {
		r := newShapedRope(t, doc, sh.lmax, sh.kmax)
		var buf bytes.Buffer
		n, err := r.WriteTo(&buf)
		if err != nil || n != int64(len(doc)) || buf.String() != doc {
			t.Fatalf("WriteTo: %d, %v", n, err)
		}
		for _, short := range []bool{false, true} {
			w := &limitWriter{room: len(doc) / 2, short: short}
			n, err = r.WriteTo(w)
			if err == nil || n != int64(len(doc)/2) || w.buf.String() != doc[:len(doc)/2] {
				t.Fatalf("WriteTo a full writer: %d, %v", n, err)
			}
			if short && !errors.Is(err, io.ErrShortWrite) {
				t.Fatalf("short write gave %v", err)
			}
		}
	}
	var empty Rope
	if n, err := empty.WriteTo(&bytes.Buffer{}); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

// TestRopeShape checks the shape promises: sequential typing fills leaves,
// a big document gets a deep tree, and deleting most of it shrinks the tree.
func TestRopeShape(t *testing.T) {
	var r Rope
	text := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 2000) // 90 000 bytes
	for i, c := range text {
		if err := r.Insert(i, string(c)); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, &r, text)
	leaves, full := 0, 0
	var walk func(n *node)
	walk = func(n *node) {
		if n.kids == nil {
			leaves++
			if len(n.data) >= defaultLeafMax-4 {
				full++
			}
			return
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(r.root)
	if leaves != (len(text)+defaultLeafMax-1)/defaultLeafMax || full < leaves-1 {
		t.Errorf("sequential typing made %d leaves, %d full; want %d full leaves", leaves, full, (len(text)+defaultLeafMax-1)/defaultLeafMax)
	}
	if h := r.height(); h != 3 {
		t.Errorf("height %d, want 3", h)
	}
	// Delete all but the ends, in pieces from the middle.
	for r.Len() > 10 {
		n := min(r.Len()-10, 997)
		if err := r.Delete(5, n); err != nil {
			t.Fatal(err)
		}
		if err := r.check(); err != nil {
			t.Fatal(err)
		}
	}
	if h := r.height(); h != 1 {
		t.Errorf("height %d after deleting nearly everything, want 1", h)
	}
}

// randText returns up to n code points of mixed text.
func randText(rng *rand.Rand, n int) string {
	pieces := []string{"a", "b", "c", " ", "\n", "xyz", "é", "e\u0301", "中", "文字", "😀", "👍🏽", "𝄞", "\u200d", "ß", "\u0301"}
	var sb strings.Builder
	for k := rng.IntN(n + 1); k > 0; k-- {
		if rng.IntN(3) == 0 {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		} else {
			sb.WriteByte(byte('a' + rng.IntN(26)))
		}
	}
	return sb.String()
}

// modelApply applies a valid op to a document held as runes.
func modelApply(doc []rune, op Op) []rune {
	out := make([]rune, 0, len(doc))
	pos := 0
	for _, c := range op {
		switch c.Kind() {
		case KindSkip:
			out = append(out, doc[pos:pos+c.Len()]...)
			pos += c.Len()
		case KindInsert:
			out = append(out, []rune(c.Text())...)
		case KindDelete:
			pos += c.Len()
		}
	}
	return append(out, doc[pos:]...)
}

// randOp returns a random valid op for doc, often unnormalized.
func randOp(rng *rand.Rand, doc []rune) Op {
	var op Op
	pos := 0
	for k := rng.IntN(6); k >= 0; k-- {
		left := len(doc) - pos
		switch rng.IntN(4) {
		case 0, 1:
			if left > 0 {
				n := 1 + rng.IntN(min(left, 1+rng.IntN(40)))
				op = append(op, Skip(n))
				pos += n
			}
		case 2:
			if s := randText(rng, 8); s != "" {
				op = append(op, Insert(s))
			}
		case 3:
			if left > 0 {
				n := 1 + rng.IntN(min(left, 1+rng.IntN(60)))
				if rng.IntN(2) == 0 {
					op = append(op, DeleteText(string(doc[pos:pos+n])))
				} else {
					op = append(op, Delete(n))
				}
				pos += n
			}
		}
	}
	return op
}

// randBadOp returns an op that Apply must reject for doc, and the error.
func randBadOp(rng *rand.Rand, doc []rune) (Op, error) {
	op := randOp(rng, doc)
	base := op.BaseLen()
	switch rng.IntN(3) {
	case 0:
		return append(op, Skip(len(doc)-base+1)), ErrTooLong
	case 1:
		if base < len(doc) {
			s := []rune(string(doc[base:]))
			i := rng.IntN(len(s))
			s[i] = 'Q' + s[i]%2 // differs
			if s[i] == doc[base+i] {
				s[i] = '#'
			}
			if s[i] != doc[base+i] {
				return append(op, DeleteText(string(s))), ErrDeleteMismatch
			}
		}
		return append(op, Delete(len(doc)-base+2)), ErrTooLong
	default:
		i := rng.IntN(len(op) + 1)
		bad := []Component{{}, Skip(0), Delete(0), {kind: KindInsert, n: 1}, Insert("\xf0\x9f")}[rng.IntN(5)]
		return append(op[:i:i], append(Op{bad}, op[i:]...)...), ErrInvalidOp
	}
}

// runRopeModel runs steps random edits on a rope of the given shape, checking
// it against a rune-slice model after every step.
func runRopeModel(t *testing.T, seed uint64, steps, lmax, kmax int) {
	rng := rand.New(rand.NewPCG(seed, uint64(lmax)))
	r := &Rope{lmax: lmax, kmax: kmax}
	var model []rune
	for step := 0; step < steps; step++ {
		what := ""
		size := len(model)
		switch k := rng.IntN(100); {
		case k < 30: // small insert
			pos, s := rng.IntN(size+1), randText(rng, 6)
			what = fmt.Sprintf("Insert(%d, %q)", pos, s)
			if err := r.Insert(pos, s); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			model = append(model[:pos:pos], append([]rune(s), model[pos:]...)...)
		case k < 34: // large insert
			pos, s := rng.IntN(size+1), randText(rng, 300)
			what = fmt.Sprintf("Insert(%d, %d bytes)", pos, len(s))
			if err := r.Insert(pos, s); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			model = append(model[:pos:pos], append([]rune(s), model[pos:]...)...)
		case k < 60: // delete, biased to keep the document a few hundred code points
			pos := rng.IntN(size + 1)
			n := rng.IntN(min(size-pos, 8) + 1)
			if size > 400 && rng.IntN(4) == 0 {
				n = rng.IntN(size - pos + 1)
			}
			what = fmt.Sprintf("Delete(%d, %d)", pos, n)
			if err := r.Delete(pos, n); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			model = append(model[:pos:pos], model[pos+n:]...)
		case k < 85: // op
			op := randOp(rng, model)
			what = "Apply(" + op.String() + ")"
			if err := r.Apply(op); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			want := modelApply(model, op)
			if s, err := Apply(string(model), op); err != nil || s != string(want) {
				t.Fatalf("step %d: string Apply disagrees with the model: %q, %v", step, s, err)
			}
			model = want
		case k < 93: // bad op
			op, wantErr := randBadOp(rng, model)
			before := r.dump()
			what = "bad Apply(" + op.String() + ")"
			if err := r.Apply(op); !errors.Is(err, wantErr) {
				t.Fatalf("step %d %s: got %v, want %v", step, what, err, wantErr)
			}
			if r.dump() != before {
				t.Fatalf("step %d %s changed the rope", step, what)
			}
		case k < 99: // slice
			a := rng.IntN(size + 1)
			b := a + rng.IntN(size-a+1)
			what = fmt.Sprintf("Slice(%d, %d)", a, b)
			got, err := r.Slice(a, b)
			if err != nil || got != string(model[a:b]) {
				t.Fatalf("step %d %s = %q, %v; want %q", step, what, got, err, string(model[a:b]))
			}
		default: // rebuild
			what = "reset"
			if err := r.reset(string(model)); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.check(); err != nil {
			t.Fatalf("step %d %s: %v\ntree: %s", step, what, err, r.dump())
		}
		if got := r.String(); got != string(model) {
			t.Fatalf("step %d %s: rope holds\n%q\nwant\n%q", step, what, got, string(model))
		}
		if r.Len() != len(model) || r.ByteLen() != len(string(model)) {
			t.Fatalf("step %d %s: Len %d ByteLen %d, want %d %d", step, what, r.Len(), r.ByteLen(), len(model), len(string(model)))
		}
	}
}

func TestRopeRandom(t *testing.T) {
	steps := 4000
	if testing.Short() {
		steps = 1000
	}
	for _, sh := range ropeShapes {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%d-%d/seed%d", sh.lmax, sh.kmax, seed), func(t *testing.T) {
				runRopeModel(t, seed, steps, sh.lmax, sh.kmax)
			})
		}
	}
}

// FuzzRope decodes the fuzz input into a sequence of edits, applies them to a
// small-leafed rope and to a rune-slice model, and compares after each.
func FuzzRope(f *testing.F) {
	f.Add([]byte("\x00\x05hello\x01\x02\x03"))
	f.Add([]byte("\x00\x00\x10abcdefghijklmnop\x02\x04\x01\x01\x00\x03\x02\xf0\x9f\x98\x80"))
	f.Add([]byte{0, 0, 200, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 10, 100, 2, 7, 3, 1, 5, 2, 4})
	f.Add([]byte("\x03\x01\x09\x02\x02"))
	f.Add(bytes.Repeat([]byte{0, 3, 40, 2, 5, 1, 2, 3}, 30))
	f.Fuzz(fuzzRope)
}

func fuzzRope(t *testing.T, data []byte) {
	shape := ropeShapes[0]
	if len(data) > 0 {
		shape = ropeShapes[int(data[0])%len(ropeShapes)]
	}
	r := &Rope{lmax: shape.lmax, kmax: shape.kmax}
	var model []rune
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	// text decodes a length byte and then one byte per code point.
	text := func() string {
		palette := []rune("ab \nz\u00e9\u0301中文😀𝄞\u200d")
		n := next()
		var sb strings.Builder
		for ; n > 0 && len(data) > 0; n-- {
			b := next()
			if b < 0x80 && b >= 0x20 {
				sb.WriteByte(byte(b))
			} else {
				sb.WriteRune(palette[b%len(palette)])
			}
		}
		return sb.String()
	}
	// Bound the work per input (the comparisons after each step are
	// O(document)), so the fuzzer spends its time on many inputs.
	for steps := 0; len(data) > 0 && steps < 256; steps++ {
		size := len(model)
		switch next() % 5 {
		case 0:
			pos, s := next()%(size+2), text()
			if size > 2000 {
				s = ""
			}
			err := r.Insert(pos, s)
			if pos > size {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Insert(%d) past %d: %v", pos, size, err)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			model = append(model[:pos:pos], append([]rune(s), model[pos:]...)...)
		case 1:
			pos, n := next(), next()
			err := r.Delete(pos, n)
			if pos+n > size {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Delete(%d, %d) past %d: %v", pos, n, size, err)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			model = append(model[:pos:pos], model[pos+n:]...)
		case 2, 3:
			var op Op
			base := 0
			for k := next() % 5; k >= 0; k-- {
				switch n := next(); n % 4 {
				case 0:
					op = append(op, Skip(n/4))
					base += n / 4
				case 1:
					op = append(op, Delete(n/4))
					base += n / 4
				case 2:
					// Carry the document's text when in range, else
					// mismatching text.
					cnt := n/4 + 1
					if base+cnt <= size {
						s := string(model[base : base+cnt])
						if next()%2 == 0 {
							s = "#" + string(model[base+1:base+cnt])
						}
						op = append(op, DeleteText(s))
					} else {
						op = append(op, DeleteText(strings.Repeat("x", cnt)))
					}
					base += cnt
				default:
					op = append(op, Insert(text()))
				}
			}
			before := r.dump()
			err := r.Apply(op)
			want, wantErr := Apply(string(model), op)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("rope Apply(%v) = %v, string Apply: %v", op, err, wantErr)
			}
			if err != nil {
				for _, e := range []error{ErrInvalidOp, ErrTooLong, ErrDeleteMismatch} {
					if errors.Is(err, e) != errors.Is(wantErr, e) {
						t.Fatalf("rope Apply(%v) = %v, string Apply: %v", op, err, wantErr)
					}
				}
				if r.dump() != before {
					t.Fatalf("failed Apply(%v) changed the rope", op)
				}
				break
			}
			model = []rune(want)
		case 4:
			a, b := next(), next()
			got, err := r.Slice(a, b)
			if a > b || b > size {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Slice(%d, %d) of %d: %v", a, b, size, err)
				}
				break
			}
			if err != nil || got != string(model[a:b]) {
				t.Fatalf("Slice(%d, %d) = %q, %v; want %q", a, b, got, err, string(model[a:b]))
			}
		}
		if err := r.check(); err != nil {
			t.Fatalf("%v\ntree: %s", err, r.dump())
		}
		if got := r.String(); got != string(model) {
			t.Fatalf("rope holds %q, want %q", got, string(model))
		}
	}
}

func ExampleRope() {
	r, err := NewRope("Hello, world!")
	if err != nil {
		panic(err)
	}
	// Replace "world" with "🌍" and append a line.
	op := Op{Skip(7), DeleteText("world"), Insert("🌍"), Skip(1), Insert("\nBye.")}
	if err := r.Apply(op); err != nil {
		panic(err)
	}
	fmt.Println(r.Len(), r.ByteLen())
	r.WriteTo(os.Stdout)
	fmt.Println()

	// A failed op changes nothing.
	err = r.Apply(Op{DeleteText("Goodbye")})
	fmt.Println(errors.Is(err, ErrDeleteMismatch), r.Len())

	s, _ := r.Slice(7, 8)
	fmt.Println(s)
	// Output:
	// 14 17
	// Hello, 🌍!
	// Bye.
	// true 14
	// 🌍
}
