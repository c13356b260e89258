package ot_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/ot"
)

// The golden vectors in testdata/vectors.json were computed by ShareDB's text
// type, the npm package ot-text-unicode 4.0.0, with the generator in
// testdata/gen (see its README.md). These tests check that the engine gives
// the same results, and that its JSON is byte for byte what JavaScript's
// JSON.stringify writes. They do not need Node.
//
// Every case in the file is one line written by JSON.stringify without
// indentation, so each op in it (kept here as json.RawMessage, which holds the
// bytes verbatim) is exactly JSON.stringify's output for that op.

const goldenPath = "testdata/vectors.json"

type goldenVectors struct {
	About             json.RawMessage           `json:"about"`
	Transform         []goldenTransform         `json:"transform"`
	Compose           []goldenCompose           `json:"compose"`
	Apply             []goldenApply             `json:"apply"`
	Normalize         []goldenNormalize         `json:"normalize"`
	TransformPosition []goldenTransformPosition `json:"transformPosition"`
	Invert            []goldenInvert            `json:"invert"`
}

// goldenTransform: Left and Right are transform(op1, op2, side); Check is
// apply(apply(doc, op2), transform(op1, op2, 'left')).
type goldenTransform struct {
	Name  string          `json:"name"`
	Doc   string          `json:"doc"`
	Op1   json.RawMessage `json:"op1"`
	Op2   json.RawMessage `json:"op2"`
	Left  json.RawMessage `json:"left"`
	Right json.RawMessage `json:"right"`
	Check string          `json:"check"`
}

// goldenCompose: A applies to Doc giving Mid, B applies to Mid; Result is
// compose(a, b) and Final is apply(doc, result).
type goldenCompose struct {
	Name   string          `json:"name"`
	Doc    string          `json:"doc"`
	A      json.RawMessage `json:"a"`
	B      json.RawMessage `json:"b"`
	Mid    string          `json:"mid"`
	Result json.RawMessage `json:"result"`
	Final  string          `json:"final"`
}

type goldenApply struct {
	Name   string          `json:"name"`
	Doc    string          `json:"doc"`
	Op     json.RawMessage `json:"op"`
	Result string          `json:"result"`
}

// goldenNormalize: Op is deliberately not normalized (split components,
// trailing skips, mixed delete forms), though each component is valid.
type goldenNormalize struct {
	Name   string          `json:"name"`
	Op     json.RawMessage `json:"op"`
	Result json.RawMessage `json:"result"`
}

// goldenTransformPosition: Result is text-unicode's transformPosition, which
// is ot.TransformPosition with side ot.Left.
type goldenTransformPosition struct {
	Name   string          `json:"name"`
	Doc    string          `json:"doc"`
	Pos    int             `json:"pos"`
	Op     json.RawMessage `json:"op"`
	Result int             `json:"result"`
}

// goldenInvert: Result is invertWithDoc(op, doc); After is apply(doc, op).
type goldenInvert struct {
	Name   string          `json:"name"`
	Doc    string          `json:"doc"`
	Op     json.RawMessage `json:"op"`
	After  string          `json:"after"`
	Result json.RawMessage `json:"result"`
}

func loadGolden(t *testing.T) *goldenVectors {
	t.Helper()
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("reading golden vectors: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v goldenVectors
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", goldenPath, err)
	}
	for kind, n := range map[string]int{
		"transform":         len(v.Transform),
		"compose":           len(v.Compose),
		"apply":             len(v.Apply),
		"normalize":         len(v.Normalize),
		"transformPosition": len(v.TransformPosition),
		"invert":            len(v.Invert),
	} {
		if n == 0 {
			t.Fatalf("%s: no %s cases", goldenPath, kind)
		}
	}
	return &v
}

// goldenName names a subtest: the case's index and, for hand-written cases,
// its name. The kind is the parent test's name.
func goldenName(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("%03d", i)
	}
	return fmt.Sprintf("%03d_%s", i, name)
}

// goldenRaw checks that a recorded JSON value is exactly as JSON.stringify
// wrote it (no whitespace: nobody reformatted the file) and returns it as a
// string.
func goldenRaw(t *testing.T, field string, raw json.RawMessage) string {
	t.Helper()
	if len(raw) == 0 {
		t.Fatalf("field %q is missing", field)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("field %q: %v", field, err)
	}
	if !bytes.Equal(buf.Bytes(), raw) {
		t.Fatalf("field %q is not compact (was %s reformatted? regenerate it): %s", field, goldenPath, raw)
	}
	return string(raw)
}

// goldenOp builds the op recorded in raw component by component with the
// constructors, so that an unnormalized op stays unnormalized (UnmarshalJSON
// normalizes; it is checked separately in TestGoldenUnmarshalJSON).
func goldenOp(t *testing.T, field string, raw json.RawMessage) ot.Op {
	t.Helper()
	goldenRaw(t, field, raw)
	var comps []json.RawMessage
	if err := json.Unmarshal(raw, &comps); err != nil || comps == nil {
		t.Fatalf("field %q: not a JSON array: %s (%v)", field, raw, err)
	}
	op := ot.Op{}
	for i, c := range comps {
		switch {
		case c[0] == '"':
			var s string
			if err := json.Unmarshal(c, &s); err != nil {
				t.Fatalf("field %q component %d: %v", field, i, err)
			}
			op = append(op, ot.Insert(s))
		case c[0] == '{':
			var m map[string]json.RawMessage
			if err := json.Unmarshal(c, &m); err != nil || len(m) != 1 || m["d"] == nil {
				t.Fatalf("field %q component %d: not a delete: %s", field, i, c)
			}
			d := m["d"]
			if d[0] == '"' {
				var s string
				if err := json.Unmarshal(d, &s); err != nil {
					t.Fatalf("field %q component %d: %v", field, i, err)
				}
				op = append(op, ot.DeleteText(s))
			} else {
				n, err := strconv.Atoi(string(d))
				if err != nil {
					t.Fatalf("field %q component %d: bad delete count %s", field, i, d)
				}
				op = append(op, ot.Delete(n))
			}
		default:
			n, err := strconv.Atoi(string(c))
			if err != nil {
				t.Fatalf("field %q component %d: bad skip %s", field, i, c)
			}
			op = append(op, ot.Skip(n))
		}
	}
	return op
}

// goldenJSON is the engine's JSON for op. It calls MarshalJSON directly:
// json.Marshal would pass the bytes through encoding/json's HTML escaping
// (<, >, & and U+2028 become \u003c...), which JSON.stringify does not do.
func goldenJSON(op ot.Op) string {
	b, err := op.MarshalJSON()
	if err != nil {
		return fmt.Sprintf("<MarshalJSON error: %v>", err)
	}
	return string(b)
}

func TestGoldenTransform(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.Transform {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			op1 := goldenOp(t, "op1", c.Op1)
			op2 := goldenOp(t, "op2", c.Op2)
			in := fmt.Sprintf("doc=%q op1=%s op2=%s", c.Doc, c.Op1, c.Op2)
			for _, s := range []struct {
				side ot.Side
				name string
				want json.RawMessage
			}{{ot.Left, "left", c.Left}, {ot.Right, "right", c.Right}} {
				want := goldenRaw(t, s.name, s.want)
				got, err := ot.Transform(op1, op2, s.side)
				if err != nil {
					t.Errorf("Transform(op1, op2, %s): %s\n  error: %v\n  want:  %s", s.name, in, err, want)
					continue
				}
				if g := goldenJSON(got); g != want {
					t.Errorf("Transform(op1, op2, %s): %s\n  want: %s\n  got:  %s", s.name, in, want, g)
				}
				if s.side != ot.Left {
					continue
				}
				mid, err := ot.Apply(c.Doc, op2)
				if err != nil {
					t.Errorf("Apply(doc, op2): %s\n  error: %v", in, err)
					continue
				}
				end, err := ot.Apply(mid, got)
				if err != nil {
					t.Errorf("Apply(Apply(doc, op2), left): %s left=%s\n  mid=%q\n  error: %v\n  want: %q", in, goldenJSON(got), mid, err, c.Check)
				} else if end != c.Check {
					t.Errorf("Apply(Apply(doc, op2), left): %s left=%s\n  want: %q\n  got:  %q", in, goldenJSON(got), c.Check, end)
				}
			}
		})
	}
}

func TestGoldenCompose(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.Compose {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			a := goldenOp(t, "a", c.A)
			b := goldenOp(t, "b", c.B)
			want := goldenRaw(t, "result", c.Result)
			in := fmt.Sprintf("doc=%q a=%s b=%s (apply(doc, a)=%q)", c.Doc, c.A, c.B, c.Mid)

			mid, err := ot.Apply(c.Doc, a)
			if err != nil || mid != c.Mid {
				t.Errorf("Apply(doc, a): %s\n  want: %q\n  got:  %q, %v", in, c.Mid, mid, err)
			} else if end, err := ot.Apply(mid, b); err != nil || end != c.Final {
				t.Errorf("Apply(Apply(doc, a), b): %s\n  want: %q\n  got:  %q, %v", in, c.Final, end, err)
			}

			got, err := ot.Compose(a, b)
			if err != nil {
				t.Fatalf("Compose(a, b): %s\n  error: %v\n  want:  %s", in, err, want)
			}
			if g := goldenJSON(got); g != want {
				t.Errorf("Compose(a, b): %s\n  want: %s\n  got:  %s", in, want, g)
			}
			end, err := ot.Apply(c.Doc, got)
			if err != nil || end != c.Final {
				t.Errorf("Apply(doc, Compose(a, b)): %s composed=%s\n  want: %q\n  got:  %q, %v", in, goldenJSON(got), c.Final, end, err)
			}
		})
	}
}

func TestGoldenApply(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.Apply {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			op := goldenOp(t, "op", c.Op)
			got, err := ot.Apply(c.Doc, op)
			if err != nil {
				t.Fatalf("Apply: doc=%q op=%s\n  error: %v\n  want:  %q", c.Doc, c.Op, err, c.Result)
			}
			if got != c.Result {
				t.Errorf("Apply: doc=%q op=%s\n  want: %q\n  got:  %q", c.Doc, c.Op, c.Result, got)
			}
		})
	}
}

func TestGoldenNormalize(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.Normalize {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			op := goldenOp(t, "op", c.Op)
			want := goldenRaw(t, "result", c.Result)
			got, err := ot.Normalize(op)
			if err != nil {
				t.Fatalf("Normalize: op=%s\n  error: %v\n  want:  %s", c.Op, err, want)
			}
			if g := goldenJSON(got); g != want {
				t.Errorf("Normalize: op=%s\n  want: %s\n  got:  %s", c.Op, want, g)
			}
		})
	}
}

func TestGoldenTransformPosition(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.TransformPosition {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			op := goldenOp(t, "op", c.Op)
			if got := ot.TransformPosition(c.Pos, op, ot.Left); got != c.Result {
				t.Errorf("TransformPosition(pos, op, Left): doc=%q pos=%d op=%s\n  want: %d\n  got:  %d", c.Doc, c.Pos, c.Op, c.Result, got)
			}
		})
	}
}

func TestGoldenInvert(t *testing.T) {
	v := loadGolden(t)
	for i, c := range v.Invert {
		t.Run(goldenName(i, c.Name), func(t *testing.T) {
			op := goldenOp(t, "op", c.Op)
			want := goldenRaw(t, "result", c.Result)
			in := fmt.Sprintf("doc=%q op=%s (apply(doc, op)=%q)", c.Doc, c.Op, c.After)
			got, err := ot.Invert(op, c.Doc)
			if err != nil {
				t.Fatalf("Invert(op, doc): %s\n  error: %v\n  want:  %s", in, err, want)
			}
			if g := goldenJSON(got); g != want {
				t.Errorf("Invert(op, doc): %s\n  want: %s\n  got:  %s", in, want, g)
			}
			after, err := ot.Apply(c.Doc, op)
			if err != nil || after != c.After {
				t.Fatalf("Apply(doc, op): %s\n  want: %q\n  got:  %q, %v", in, c.After, after, err)
			}
			back, err := ot.Apply(after, got)
			if err != nil || back != c.Doc {
				t.Errorf("Apply(Apply(doc, op), Invert(op, doc)): %s inverse=%s\n  want: %q\n  got:  %q, %v", in, goldenJSON(got), c.Doc, back, err)
			}
		})
	}
}

// TestGoldenUnmarshalJSON checks (*ot.Op).UnmarshalJSON against every op in
// the vectors: it must decode each one and marshal back to the recorded bytes
// of its normalized form (the op itself for ops text-unicode produced or
// accepted, which are all normalized; the recorded normalize result for the
// deliberately unnormalized normalize inputs).
func TestGoldenUnmarshalJSON(t *testing.T) {
	v := loadGolden(t)
	type pair struct {
		field     string
		raw, want json.RawMessage
	}
	check := func(t *testing.T, pairs ...pair) {
		t.Helper()
		for _, p := range pairs {
			want := goldenRaw(t, p.field, p.want)
			var op ot.Op
			if err := op.UnmarshalJSON(p.raw); err != nil {
				t.Errorf("UnmarshalJSON(%s) [%s]: %v\n  want: %s", p.raw, p.field, err, want)
				continue
			}
			if g := goldenJSON(op); g != want {
				t.Errorf("UnmarshalJSON(%s) [%s], then MarshalJSON:\n  want: %s\n  got:  %s", p.raw, p.field, want, g)
			}
			// Through encoding/json as well, as the server decodes messages.
			var viaStd ot.Op
			if err := json.Unmarshal(p.raw, &viaStd); err != nil {
				t.Errorf("json.Unmarshal(%s) [%s]: %v", p.raw, p.field, err)
			} else if g := goldenJSON(viaStd); g != want {
				t.Errorf("json.Unmarshal(%s) [%s], then MarshalJSON:\n  want: %s\n  got:  %s", p.raw, p.field, want, g)
			}
		}
	}
	same := func(field string, raw json.RawMessage) pair { return pair{field, raw, raw} }
	run := func(kind string, n int, name func(int) string, pairs func(int) []pair) {
		t.Run(kind, func(t *testing.T) {
			for i := range n {
				t.Run(goldenName(i, name(i)), func(t *testing.T) { check(t, pairs(i)...) })
			}
		})
	}
	run("transform", len(v.Transform), func(i int) string { return v.Transform[i].Name }, func(i int) []pair {
		c := v.Transform[i]
		return []pair{same("op1", c.Op1), same("op2", c.Op2), same("left", c.Left), same("right", c.Right)}
	})
	run("compose", len(v.Compose), func(i int) string { return v.Compose[i].Name }, func(i int) []pair {
		c := v.Compose[i]
		return []pair{same("a", c.A), same("b", c.B), same("result", c.Result)}
	})
	run("apply", len(v.Apply), func(i int) string { return v.Apply[i].Name }, func(i int) []pair {
		return []pair{same("op", v.Apply[i].Op)}
	})
	run("normalize", len(v.Normalize), func(i int) string { return v.Normalize[i].Name }, func(i int) []pair {
		c := v.Normalize[i]
		return []pair{{"op", c.Op, c.Result}, same("result", c.Result)}
	})
	run("transformPosition", len(v.TransformPosition), func(i int) string { return v.TransformPosition[i].Name }, func(i int) []pair {
		return []pair{same("op", v.TransformPosition[i].Op)}
	})
	run("invert", len(v.Invert), func(i int) string { return v.Invert[i].Name }, func(i int) []pair {
		c := v.Invert[i]
		return []pair{same("op", c.Op), same("result", c.Result)}
	})
}

// TestGoldenAbout guards against testing a file produced by another version
// of text-unicode.
func TestGoldenAbout(t *testing.T) {
	v := loadGolden(t)
	var about struct {
		Source string `json:"source"`
	}
	if err := json.Unmarshal(v.About, &about); err != nil {
		t.Fatalf("about: %v", err)
	}
	if !strings.HasPrefix(about.Source, "ot-text-unicode@4.0.0 ") {
		t.Fatalf("vectors come from %q, want ot-text-unicode@4.0.0", about.Source)
	}
}
