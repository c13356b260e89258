package ot_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/ot"
)

// Keystroke-sized ops, as a server transforms them: one insert or delete
// somewhere in a long document.
func keystrokes(n, docLen int) []ot.Op {
	r := rand.New(rand.NewPCG(9, 9))
	ops := make([]ot.Op, n)
	for i := range ops {
		pos := r.IntN(docLen)
		if r.IntN(4) == 0 {
			ops[i] = ot.Op{ot.Skip(pos), ot.Delete(1)}
		} else {
			ops[i] = ot.Op{ot.Skip(pos), ot.Insert("é")}
		}
	}
	return ops
}

func BenchmarkTransform(b *testing.B) {
	ops := keystrokes(1024, 100_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ot.Transform(ops[i%1024], ops[(i+1)%1024], ot.Left); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompose(b *testing.B) {
	ops := keystrokes(1024, 100_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ot.Compose(ops[i%1024], ops[(i+1)%1024]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply is the string Apply on a 100k-code-point document: O(n)
// per call, for comparison with the rope (BenchmarkRopeApply).
func BenchmarkApply(b *testing.B) {
	doc := strings.Repeat("abcdefghij", 10_000)
	ops := keystrokes(1024, 90_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ot.Apply(doc, ops[i%1024]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	data := []byte(`[48213,"h\u00e9llo 😀",{"d":3}]`)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ot.ParseJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	op := ot.Op{ot.Skip(48213), ot.Insert("héllo 😀\n"), ot.Delete(3)}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = op.AppendJSON(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
