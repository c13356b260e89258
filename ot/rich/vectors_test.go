package rich

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandemdocs/tandem/ot"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json")

// vector is one case of testdata/vectors.json: the browser client's rich
// type (internal/web/static/js/rich.js, tested by internal/web/jstest/rich.test.mjs) must
// give these results, which are this package's (and so rich-text's, by
// TestAgainstRichText). Lengths are code points.
type vector struct {
	Doc         json.RawMessage `json:"doc"`
	A           json.RawMessage `json:"a"`
	B           json.RawMessage `json:"b"`
	Pos         int             `json:"pos"`
	ApplyA      json.RawMessage `json:"applyA"`
	Left        json.RawMessage `json:"left"`
	Right       json.RawMessage `json:"right"`
	Compose     json.RawMessage `json:"compose"`
	Invert      json.RawMessage `json:"invert"`
	CursorOwn   int             `json:"cursorOwn"`
	CursorOther int             `json:"cursorOther"`
}

func makeVectors(t *testing.T) []byte {
	r := rand.New(rand.NewPCG(21, 21))
	var vs []vector
	for i := 0; i < 200; i++ {
		doc := randDoc(r, r.IntN(6))
		a, b := randOp(r, doc.Len()), randOp(r, doc.Len())
		pos := r.IntN(doc.Len() + 1)
		applyA, err1 := Apply(doc, a)
		left, err2 := Transform(a, b, ot.Left)
		right, err3 := Transform(a, b, ot.Right)
		b2, err4 := Transform(b, a, ot.Right)
		comp, err5 := Compose(a, b2)
		inv, err6 := Invert(a, doc)
		for _, err := range []error{err1, err2, err3, err4, err5, err6} {
			if err != nil {
				t.Fatal(err)
			}
		}
		vs = append(vs, vector{
			Doc: doc.AppendJSON(nil), A: a.AppendJSON(nil), B: b.AppendJSON(nil), Pos: pos,
			ApplyA: applyA.AppendJSON(nil), Left: left.AppendJSON(nil), Right: right.AppendJSON(nil),
			Compose: comp.AppendJSON(nil), Invert: inv.AppendJSON(nil),
			CursorOwn: TransformPosition(pos, a, ot.Right), CursorOther: TransformPosition(pos, a, ot.Left),
		})
	}
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, v := range vs {
		line, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
		if i < len(vs)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	return buf.Bytes()
}

// TestVectors keeps testdata/vectors.json what this package computes
// (go test ./ot/rich -run TestVectors -update rewrites it).
func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	want := makeVectors(t)
	if *updateVectors {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test ./ot/rich -run TestVectors -update", path)
	}
}
