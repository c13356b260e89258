package rich

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/ot"
)

func js(d Delta) string { return string(d.AppendJSON(nil)) }

// checkProperties checks the algebra on one case: transform converges
// both ways, apply of a composition equals applying one then the other,
// invert round-trips, normal forms are fixed points, JSON round-trips,
// and a Document agrees with the value functions.
func checkProperties(t *testing.T, doc, a, b Delta) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("doc %s\na %s\nb %s\n"+format, append([]any{js(doc), js(a), js(b)}, args...)...)
	}
	must := func(d Delta, err error) Delta {
		t.Helper()
		if err != nil {
			fail("%v", err)
		}
		return d
	}
	docA := must(Apply(doc, a))
	docB := must(Apply(doc, b))
	for _, side := range []ot.Side{ot.Left, ot.Right} {
		other := ot.Right
		if side == ot.Right {
			other = ot.Left
		}
		a2 := must(Transform(a, b, side))
		b2 := must(Transform(b, a, other))
		x, y := must(Apply(docB, a2)), must(Apply(docA, b2))
		if js(x) != js(y) {
			fail("transform (%s) does not converge: %s vs %s", side, js(x), js(y))
		}
		ab := must(Compose(a, b2))
		if z := must(Apply(doc, ab)); js(z) != js(y) {
			fail("apply(compose) %s, apply then apply %s", js(z), js(y))
		}
	}
	inv := must(Invert(a, doc))
	if back := must(Apply(docA, inv)); js(back) != js(doc) {
		fail("invert: %s gives %s", js(inv), js(back))
	}
	for _, d := range []Delta{a, b, docA} {
		n := must(Normalize(d))
		if js(n) != js(d) {
			fail("normalize not idempotent: %s -> %s", js(d), js(n))
		}
		p := must(ParseJSON(d.AppendJSON(nil)))
		if js(p) != js(d) {
			fail("JSON round trip: %s -> %s", js(d), js(p))
		}
	}
	td, err := NewDocument(doc)
	if err != nil {
		fail("NewDocument: %v", err)
	}
	tinv := must(td.Invert(a))
	if js(tinv) != js(inv) {
		fail("Document.Invert %s, Invert %s", js(tinv), js(inv))
	}
	if err := td.Apply(a); err != nil {
		fail("Document.Apply: %v", err)
	}
	if js(td.Delta()) != js(docA) || td.Len() != docA.Len() {
		fail("Document.Apply: %s (len %d), Apply: %s", js(td.Delta()), td.Len(), js(docA))
	}
	// ByteSize estimates the JSON: less only by escapes, more by the
	// overhead of runs held split.
	if got, want := td.ByteSize(), len(td.AppendJSON(nil)); got < want-want/10-16 || got > want+80*td.nodes+64 {
		fail("ByteSize %d for %d bytes of JSON in %d runs", got, want, len(td.Delta()))
	}
}

func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 20000; i++ {
		doc := randDoc(r, r.IntN(8))
		checkProperties(t, doc, randOp(r, doc.Len()), randOp(r, doc.Len()))
	}
}

// TestDocumentLongHistory applies thousands of random ops to one Document
// (splitting runs, rebuilding) and to a Delta value, comparing them, and
// slices against the value.
func TestDocumentLongHistory(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	doc := randDoc(r, 40)
	td, err := NewDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		op := randOp(r, doc.Len())
		if doc, err = Apply(doc, op); err != nil {
			t.Fatal(err)
		}
		if err := td.Apply(op); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 || td.Len() != doc.Len() {
			if js(td.Delta()) != js(doc) {
				t.Fatalf("op %d (%s): Document %s, value %s", i, js(op), js(td.Delta()), js(doc))
			}
			if got := string(td.AppendJSON(nil)); got != js(doc) {
				t.Fatalf("op %d: Document.AppendJSON %s, value %s", i, got, js(doc))
			}
			s, e := r.IntN(doc.Len()+1), r.IntN(doc.Len()+1)
			if s > e {
				s, e = e, s
			}
			want, _ := Normalize(deltaSlicer(doc).slice(s, e))
			if got := td.Slice(s, e); js(got) != js(want) {
				t.Fatalf("Slice(%d, %d) = %s, want %s", s, e, js(got), js(want))
			}
		}
		if doc.Len() > 3000 { // keep it bounded: delete a random stretch
			op := Delta{Retain(r.IntN(1000), nil), Delete(1500)}
			op, _ = Normalize(op)
			doc, _ = Apply(doc, op)
			if err := td.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
	}
	if td.nodes > td.compactAt {
		t.Fatalf("%d nodes, rebuild due at %d", td.nodes, td.compactAt)
	}
}

// TestRejects: each malformed op or document gives its stable code, and
// a Document refused an op is unchanged.
func TestRejects(t *testing.T) {
	for _, tc := range []struct{ json, code string }{
		{`{}`, CodeBadJSON},
		{`null`, CodeBadJSON},
		{`[1]`, CodeBadJSON},
		{`[{"retain":0}]`, CodeEmptyComponent},
		{`[{"delete":0}]`, CodeEmptyComponent},
		{`[{"insert":""}]`, CodeEmptyComponent},
		{`[{"retain":1.5}]`, CodeBadComponent},
		{`[{"retain":-1}]`, CodeBadComponent},
		{`[{"retain":"3"}]`, CodeBadComponent},
		{`[{"retain":1e3}]`, CodeBadComponent},
		{`[{"retain":99999999999999999}]`, CodePastEnd},
		{`[{"retain":{"image":"x"}}]`, CodeBadComponent},
		{`[{"retain":1,"delete":1}]`, CodeBadComponent},
		{`[{"insert":"a","insert":"b"}]`, CodeBadComponent},
		{`[{"delete":1,"attributes":{"bold":true}}]`, CodeBadComponent},
		{`[{"attributes":{"bold":true}}]`, CodeBadComponent},
		{`[{"insert":"a","foo":1}]`, CodeBadComponent},
		{`[{}]`, CodeBadComponent},
		{`[{"insert":"a","attributes":{"bold":null}}]`, CodeNullInInsert},
		{`[{"insert":{}}]`, CodeBadEmbed},
		{`[{"insert":{"image":"a","video":"b"}}]`, CodeBadEmbed},
		{`[{"insert":{"image":}}]`, CodeBadEmbed},
		{`[{"insert":7}]`, CodeBadEmbed},
		{`[{"insert":{"image":"` + strings.Repeat("x", MaxEmbed) + `"}}]`, CodeBadEmbed},
		{`[{"insert":"a","attributes":{"x":[1]}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"x":{"y":1}}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"":true}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"` + strings.Repeat("k", MaxAttrKey+1) + `":true}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"link":"` + strings.Repeat("x", MaxAttrValue) + `"}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"n":1e300}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":{"b":true,"b":false}}]`, CodeBadAttribute},
		{`[{"insert":"a","attributes":7}]`, CodeBadAttribute},
		{`[{"insert":"\ud83d"}]`, CodeBadComponent},
		{`[{"insert":"a"}] x`, CodeBadJSON},
	} {
		_, err := ParseJSON([]byte(tc.json))
		if got := ErrorCode(err); got != tc.code {
			t.Errorf("ParseJSON(%.80s) = %v (code %q), want code %q", tc.json, err, got, tc.code)
		}
		if err != nil && !errors.Is(err, ot.ErrInvalidOp) && !errors.Is(err, ot.ErrTooLong) {
			t.Errorf("ParseJSON(%.80s): %v wraps neither ot error", tc.json, err)
		}
	}
	many := `[{"insert":"a","attributes":{`
	for i := 0; i <= MaxAttrs; i++ {
		if i > 0 {
			many += ","
		}
		many += `"k` + strings.Repeat("x", i) + `":1`
	}
	if _, err := ParseJSON([]byte(many + `}}]`)); ErrorCode(err) != CodeBadAttribute {
		t.Errorf("%d attributes: %v", MaxAttrs+1, err)
	}
	if _, err := ParseDocumentJSON([]byte(`[{"retain":1}]`)); ErrorCode(err) != CodeNotDocument {
		t.Errorf("a document with a retain: %v", err)
	}

	doc, _ := ParseDocumentJSON([]byte(`[{"insert":"abc","attributes":{"bold":true}}]`))
	td, _ := NewDocument(doc)
	for _, op := range []string{`[{"retain":4}]`, `[{"retain":2},{"delete":2}]`, `[{"insert":"x"},{"retain":4,"attributes":{"i":true}}]`} {
		d, _, err := ParseJSONSpan([]byte(op))
		if err != nil {
			t.Fatal(err)
		}
		err = td.Apply(d)
		if ErrorCode(err) != CodePastEnd && op != `[{"retain":4}]` {
			t.Errorf("Apply(%s) = %v, want %s", op, err, CodePastEnd)
		}
		if _, err := Apply(doc, d); ErrorCode(err) != CodePastEnd && op != `[{"retain":4}]` {
			t.Errorf("value Apply(%s) = %v, want %s", op, err, CodePastEnd)
		}
		if js(td.Delta()) != js(doc) {
			t.Fatalf("refused op %s changed the document: %s", op, js(td.Delta()))
		}
	}
	// A trailing retain past the end is dropped by normalizing, so
	// servers check the span as written.
	if _, span, _ := ParseJSONSpan([]byte(`[{"retain":4}]`)); span != 4 {
		t.Errorf("span %d, want 4", span)
	}
}

func TestNumbersAsJavaScriptWritesThem(t *testing.T) {
	for in, want := range map[float64]string{
		1: "1", -1: "-1", 1.5: "1.5", 0.1: "0.1", 1e21: "1e+21", 1e20: "100000000000000000000",
		1e-7: "1e-7", 1e-6: "0.000001", 123456.789: "123456.789", 2.5e-10: "2.5e-10", -0.0: "0",
	} {
		if got := Number(in).JSON(); got != want {
			t.Errorf("Number(%g) = %s, want %s", in, got, want)
		}
	}
}
