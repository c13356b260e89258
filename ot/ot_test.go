package ot_test

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot"
)

// propAlphabet mixes ASCII with the characters that break code-unit
// arithmetic: CJK, astral emoji, a ZWJ sequence's parts, combining marks.
var propAlphabet = []rune("abcdef<&\" \n漢字か😀🎉👨\u200d👩e\u0301\u0308🇫🇷")

func propString(r *rand.Rand, maxLen int) string {
	n := r.IntN(maxLen + 1)
	var sb strings.Builder
	for range n {
		sb.WriteRune(propAlphabet[r.IntN(len(propAlphabet))])
	}
	return sb.String()
}

// propOp returns a random op valid on doc. Deletes carry their text half of
// the time.
func propOp(r *rand.Rand, doc string) ot.Op {
	runes := []rune(doc)
	var op ot.Op
	pos := 0
	for pos < len(runes) || r.IntN(3) == 0 {
		switch r.IntN(4) {
		case 0, 1:
			if pos < len(runes) {
				n := 1 + r.IntN(min(len(runes)-pos, 5))
				op = append(op, ot.Skip(n))
				pos += n
			}
		case 2:
			if s := propString(r, 4); s != "" {
				op = append(op, ot.Insert(s))
			}
		case 3:
			if pos < len(runes) {
				n := 1 + r.IntN(min(len(runes)-pos, 4))
				if r.IntN(2) == 0 {
					op = append(op, ot.DeleteText(string(runes[pos:pos+n])))
				} else {
					op = append(op, ot.Delete(n))
				}
				pos += n
			}
		}
		if r.IntN(4) == 0 {
			break
		}
	}
	return op
}

func mustApply(t *testing.T, doc string, op ot.Op) string {
	t.Helper()
	out, err := ot.Apply(doc, op)
	if err != nil {
		t.Fatalf("Apply(%q, %v): %v", doc, op, err)
	}
	return out
}

func TestUnmarshalRejects(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"null", `null`},
		{"object", `{"d":1}`},
		{"zero skip", `[0]`},
		{"negative skip", `[-1,"a"]`},
		{"fractional skip", `[1.5,"a"]`},
		{"exponent skip", `[1e2,"a"]`},
		{"leading zero", `[01,"a"]`},
		{"huge skip", `[99999999999999999999,"a"]`},
		{"empty insert", `[""]`},
		{"zero delete", `[{"d":0}]`},
		{"negative delete", `[{"d":-3}]`},
		{"empty delete text", `[{"d":""}]`},
		{"delete null", `[{"d":null}]`},
		{"unknown key", `[{"x":1}]`},
		{"extra key", `[{"d":1,"e":2}]`},
		{"empty object", `[{}]`},
		{"nested array", `[[1]]`},
		{"bool", `[true]`},
		{"invalid utf8", "[\"a\xffb\"]"},
		{"lone high surrogate", `["\ud83d"]`},
		{"lone low surrogate", `["\ude00"]`},
		{"high then letter", `["\ud83dx"]`},
		{"high then high", `["\ud83d\ud83d"]`},
		{"surrogate in delete", `[{"d":"\ud83d"}]`},
		{"raw control char", "[\"a\x01\"]"},
		{"bad escape", `["\x"]`},
		{"short escape", `["\u12"]`},
		{"unterminated", `["abc`},
		{"trailing comma", `[1,"a",]`},
		{"trailing data", `[1,"a"] x`},
		{"empty input", ``},
		{"missing comma", `[1 "a"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var op ot.Op
			err := json.Unmarshal([]byte(tt.in), &op)
			if err == nil {
				t.Fatalf("Unmarshal(%s) = %v, want an error", tt.in, op)
			}
			// encoding/json checks syntax itself first; direct calls must
			// report ErrInvalidOp.
			if _, err := ot.ParseJSON([]byte(tt.in)); !errors.Is(err, ot.ErrInvalidOp) {
				t.Fatalf("ParseJSON(%s) error = %v, want ErrInvalidOp", tt.in, err)
			}
		})
	}
}

func TestUnmarshalNormalizes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[]`, `[]`},
		{` [ 1 , "a" ] `, `[1,"a"]`},
		{`[3]`, `[]`},
		{`[1,2,"a","b",4]`, `[3,"ab"]`},
		{`[{"d":1},{"d":2}]`, `[{"d":3}]`},
		{`[{"d":"a"},{"d":"b"}]`, `[{"d":"ab"}]`},
		{`[{"d":"a"},{"d":2}]`, `[{"d":3}]`},
		{`["\ud83d\ude00"]`, `["😀"]`},
		{`["\u00e9\/\"\\\n\t\u0001"]`, `["é/\"\\\n\t\u0001"]`},
		{`[{"\u0064":2}]`, `[{"d":2}]`},
		{`["<&>\u2028"]`, "[\"<&>\u2028\"]"},
	}
	for _, tt := range tests {
		op, err := ot.ParseJSON([]byte(tt.in))
		if err != nil {
			t.Errorf("ParseJSON(%s): %v", tt.in, err)
			continue
		}
		// MarshalJSON itself, not json.Marshal, which HTML-escapes what
		// marshalers return.
		got, err := op.MarshalJSON()
		if err != nil {
			t.Errorf("MarshalJSON(%v): %v", op, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("ParseJSON(%s) marshals to %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestMarshalRejectsMalformed(t *testing.T) {
	for _, op := range []ot.Op{
		{ot.Skip(0)},
		{ot.Insert("")},
		{ot.Delete(-1)},
		{ot.Insert("a\xff")},
		{ot.Component{}},
	} {
		if b, err := json.Marshal(op); err == nil {
			t.Errorf("Marshal(%#v) = %s, want an error", op, b)
		}
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		doc  string
		op   ot.Op
		want string
		err  error
	}{
		{"", nil, "", nil},
		{"abc", ot.Op{ot.Insert("x")}, "xabc", nil},
		{"abc", ot.Op{ot.Skip(3), ot.Insert("x")}, "abcx", nil},
		{"a😀b", ot.Op{ot.Skip(1), ot.Delete(1)}, "ab", nil},
		{"a😀b", ot.Op{ot.Skip(2), ot.Insert("漢")}, "a😀漢b", nil},
		{"e\u0301x", ot.Op{ot.Skip(1), ot.DeleteText("\u0301")}, "ex", nil},
		{"abc", ot.Op{ot.Skip(4)}, "", ot.ErrTooLong},
		{"abc", ot.Op{ot.Skip(2), ot.Delete(2)}, "", ot.ErrTooLong},
		{"abc", ot.Op{ot.DeleteText("abd")}, "", ot.ErrDeleteMismatch},
		{"abc", ot.Op{ot.Skip(0)}, "", ot.ErrInvalidOp},
		{"abc", ot.Op{ot.Insert("")}, "", ot.ErrInvalidOp},
	}
	for _, tt := range tests {
		got, err := ot.Apply(tt.doc, tt.op)
		if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
			t.Errorf("Apply(%q, %v) = %q, %v; want %q, %v", tt.doc, tt.op, got, err, tt.want, tt.err)
		}
	}
}

func TestTransformPosition(t *testing.T) {
	op := ot.Op{ot.Skip(2), ot.Insert("xy"), ot.Skip(2), ot.Delete(3)}
	// doc "abcdefgh" becomes "abxycdh".
	tests := []struct {
		pos         int
		left, right int
	}{
		{0, 0, 0}, {1, 1, 1}, {2, 2, 4}, {3, 5, 5}, {4, 6, 6},
		{5, 6, 6}, {6, 6, 6}, {7, 6, 6}, {8, 7, 7}, {-3, 0, 0},
	}
	for _, tt := range tests {
		if got := ot.TransformPosition(tt.pos, op, ot.Left); got != tt.left {
			t.Errorf("TransformPosition(%d, Left) = %d, want %d", tt.pos, got, tt.left)
		}
		if got := ot.TransformPosition(tt.pos, op, ot.Right); got != tt.right {
			t.Errorf("TransformPosition(%d, Right) = %d, want %d", tt.pos, got, tt.right)
		}
	}
}

func TestTransformSelection(t *testing.T) {
	tests := []struct {
		name string
		sel  ot.Selection
		op   ot.Op
		side ot.Side
		want ot.Selection
	}{
		{"caret left stays", ot.Selection{2, 2}, ot.Op{ot.Skip(2), ot.Insert("x")}, ot.Left, ot.Selection{2, 2}},
		{"caret right moves", ot.Selection{2, 2}, ot.Op{ot.Skip(2), ot.Insert("x")}, ot.Right, ot.Selection{3, 3}},
		{"range start insert outside", ot.Selection{2, 4}, ot.Op{ot.Skip(2), ot.Insert("x")}, ot.Left, ot.Selection{3, 5}},
		{"range end insert outside", ot.Selection{2, 4}, ot.Op{ot.Skip(4), ot.Insert("x")}, ot.Right, ot.Selection{2, 4}},
		{"backward range", ot.Selection{4, 2}, ot.Op{ot.Skip(2), ot.Insert("x")}, ot.Left, ot.Selection{5, 3}},
		{"inside insert grows", ot.Selection{2, 4}, ot.Op{ot.Skip(3), ot.Insert("xy")}, ot.Left, ot.Selection{2, 6}},
		{"replaced range collapses", ot.Selection{5, 6}, ot.Op{ot.Skip(5), ot.Delete(1), ot.Insert("xy")}, ot.Left, ot.Selection{5, 5}},
	}
	for _, tt := range tests {
		if got := ot.TransformSelection(tt.sel, tt.op, tt.side); got != tt.want {
			t.Errorf("%s: TransformSelection(%v, %v, %v) = %v, want %v", tt.name, tt.sel, tt.op, tt.side, got, tt.want)
		}
	}
}

func TestFunctionsDoNotModifyInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 500 {
		doc := propString(r, 12)
		a, b := propOp(r, doc), propOp(r, doc)
		a2, b2 := append(ot.Op(nil), a...), append(ot.Op(nil), b...)
		ot.Transform(a, b, ot.Left)
		ot.Transform(b, a, ot.Right)
		ot.Invert(a, doc)
		if ab, err := ot.Transform(b, a, ot.Right); err == nil {
			ot.Compose(a, ab)
		}
		ot.Normalize(a)
		if a.String() != a2.String() || b.String() != b2.String() {
			t.Fatalf("inputs changed: %v -> %v, %v -> %v", a2, a, b2, b)
		}
	}
}

// TestProperties checks the algebra on seeded random documents and ops: the
// same checks the fuzz targets make, run in every CI.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := range n {
		doc := propString(r, 16)
		a, b := propOp(r, doc), propOp(r, doc)
		checkProperties(t, doc, a, b, r.IntN(utf8.RuneCountInString(doc)+1))
		if t.Failed() {
			t.Fatalf("case %d failed", i)
		}
	}
}

// checkProperties checks convergence, compose, invert, normalization and
// position bounds for two ops a and b valid on doc.
func checkProperties(t *testing.T, doc string, a, b ot.Op, pos int) {
	t.Helper()
	da, db := mustApply(t, doc, a), mustApply(t, doc, b)

	// Convergence (TP1), both ways round.
	bA, err := ot.Transform(b, a, ot.Right)
	if err != nil {
		t.Fatalf("Transform(%v, %v, Right): %v", b, a, err)
	}
	aB, err := ot.Transform(a, b, ot.Left)
	if err != nil {
		t.Fatalf("Transform(%v, %v, Left): %v", a, b, err)
	}
	if x, y := mustApply(t, da, bA), mustApply(t, db, aB); x != y {
		t.Fatalf("diverged on %q: a=%v b=%v: %q vs %q", doc, a, b, x, y)
	}

	// Compose equals sequential apply.
	ab, err := ot.Compose(a, bA)
	if err != nil {
		t.Fatalf("Compose(%v, %v): %v", a, bA, err)
	}
	if x, y := mustApply(t, doc, ab), mustApply(t, da, bA); x != y {
		t.Fatalf("Compose(%v, %v) = %v applies to %q, sequential gives %q", a, bA, ab, x, y)
	}

	// Invert round-trips.
	inv, err := ot.Invert(a, doc)
	if err != nil {
		t.Fatalf("Invert(%v, %q): %v", a, doc, err)
	}
	if back := mustApply(t, da, inv); back != doc {
		t.Fatalf("Invert(%v, %q) = %v gives %q", a, doc, inv, back)
	}

	// Every returned op is normalized: normalizing it again changes nothing
	// and its JSON round-trips.
	for _, op := range []ot.Op{bA, aB, ab, inv} {
		js, err := op.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%#v): %v", op, err)
		}
		back, err := ot.ParseJSON(js)
		if err != nil || back.String() != string(js) {
			t.Fatalf("JSON round trip of %s: %v, %v", js, back, err)
		}
		if !isNormalized(op) {
			t.Fatalf("result %v is not normalized", op)
		}
	}

	// Positions stay inside the document.
	newLen := utf8.RuneCountInString(da)
	for _, side := range []ot.Side{ot.Left, ot.Right} {
		if p := ot.TransformPosition(pos, a, side); p < 0 || p > newLen {
			t.Fatalf("TransformPosition(%d, %v, %v) = %d outside [0, %d]", pos, a, side, p, newLen)
		}
	}
	sel := ot.TransformSelection(ot.Selection{Anchor: pos, Head: utf8.RuneCountInString(doc)}, a, ot.Left)
	if sel.Anchor < 0 || sel.Head > newLen || sel.Anchor > sel.Head {
		t.Fatalf("TransformSelection(%d..end, %v) = %v outside [0, %d] or reversed", pos, a, sel, newLen)
	}
}

func isNormalized(op ot.Op) bool {
	for i, c := range op {
		if c.Len() <= 0 || (i > 0 && op[i-1].Kind() == c.Kind()) {
			return false
		}
	}
	return len(op) == 0 || op[len(op)-1].Kind() != ot.KindSkip
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"héllo 😀", `"héllo 😀"`},
		{"a\"b\\c\n\t\r\b\f\x01\x1f", `"a\"b\\c\n\t\r\b\f\u0001\u001f"`},
		{"<&>\u2028", "\"<&>\u2028\""},
		{"bad\xffbyte\xe2\x82", `"bad\ufffdbyte\ufffd\ufffd"`},
	}
	for _, tt := range tests {
		got := string(ot.AppendJSONString(nil, tt.in))
		if got != tt.want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("AppendJSONString(%q) = %s is not valid JSON", tt.in, got)
		}
	}
}

func TestTransformPositionSaturates(t *testing.T) {
	big := math.MaxInt - 1
	for _, side := range []ot.Side{ot.Left, ot.Right} {
		if got := ot.TransformPosition(big, ot.Op{ot.Insert("abc")}, side); got < 0 {
			t.Errorf("side %v: position %d moved to %d", side, big, got)
		}
		sel := ot.TransformSelection(ot.Selection{Anchor: big, Head: 3}, ot.Op{ot.Insert("xyz")}, side)
		if sel.Anchor < 0 || sel.Head < 0 {
			t.Errorf("side %v: selection went negative: %+v", side, sel)
		}
	}
}

func TestParseJSONSpan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		op   string
		span int
	}{
		{`[1,"x",10]`, `[1,"x"]`, 11},
		{`[1,"x"]`, `[1,"x"]`, 1},
		{`[2,{"d":3},4]`, `[2,{"d":3}]`, 9},
		{`["a"]`, `["a"]`, 0},
		{`[]`, `[]`, 0},
	} {
		op, span, err := ot.ParseJSONSpan([]byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if op.String() != tc.op || span != tc.span {
			t.Errorf("%s: got %s span %d, want %s span %d", tc.in, op, span, tc.op, tc.span)
		}
	}
	if _, _, err := ot.ParseJSONSpan([]byte(`[0]`)); err == nil {
		t.Error("[0] accepted")
	}
}

// TestParseCounts: skip and delete counts are positive integers up to
// 2^40, read in place; anything else is refused with what it was.
func TestParseCounts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int    // the op's base length, when accepted
		err  string // part of the error, when refused
	}{
		{`[7]`, 0, ""}, // a trailing skip normalizes away
		{`[7,"x"]`, 7, ""},
		{`[{"d":12}]`, 12, ""},
		{`[1099511627776,"x"]`, 1 << 40, ""},
		{`[1099511627777,"x"]`, 0, "skip 1099511627777 is too large"},
		{`[{"d":99999999999999999999999}]`, 0, "delete 99999999999999999999999 is too large"},
		{`[99999999999999999999.5,"x"]`, 0, `skip must be a positive integer, got "99999999999999999999.5"`},
		{`[0,"x"]`, 0, `skip must be a positive integer, got "0"`},
		{`[01,"x"]`, 0, `skip must be a positive integer, got "01"`},
		{`[-1,"x"]`, 0, `skip must be a positive integer, got "-1"`},
		{`[1e3,"x"]`, 0, `skip must be a positive integer, got "1e3"`},
		{`[{"d":1.0}]`, 0, `delete must be a positive integer, got "1.0"`},
	} {
		op, err := ot.ParseJSON([]byte(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.err == "" && op.BaseLen() != tc.want:
			t.Errorf("%s: base length %d, want %d", tc.in, op.BaseLen(), tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.in, err, tc.err)
		}
	}
}
