package rich

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/internal/traces"
)

// The engines side by side: the plain type and this one on the same
// trace, converted to rich ops whose inserts carry random formatting.

var formats = []Attrs{
	nil, nil, nil, nil,
	MakeAttrs(Attr{"bold", Bool(true)}),
	MakeAttrs(Attr{"italic", Bool(true)}),
	MakeAttrs(Attr{"bold", Bool(true)}, Attr{"italic", Bool(true)}),
	MakeAttrs(Attr{"link", String("https://example.com/page")}),
	MakeAttrs(Attr{"code", Bool(true)}),
}

type traceOps struct {
	start       string
	plain       []ot.Op
	rich        []Delta
	richDoc     Delta
	patchLength int
}

func loadTraceOps(b *testing.B, name string) traceOps {
	tr := traces.Load(b, name)
	r := rand.New(rand.NewPCG(1, 2))
	var t traceOps
	t.start = tr.StartContent
	t.richDoc = Delta{}
	if tr.StartContent != "" {
		t.richDoc = Delta{Insert(tr.StartContent, nil)}
	}
	for _, p := range tr.Patches() {
		var po ot.Op
		var ro Delta
		if p.Pos > 0 {
			po, ro = append(po, ot.Skip(p.Pos)), append(ro, Retain(p.Pos, nil))
		}
		if p.Del > 0 {
			po, ro = append(po, ot.Delete(p.Del)), append(ro, Delete(p.Del))
		}
		if p.Ins != "" {
			po, ro = append(po, ot.Insert(p.Ins)), append(ro, Insert(p.Ins, formats[r.IntN(len(formats))]))
		}
		t.plain = append(t.plain, po)
		t.rich = append(t.rich, ro)
	}
	return t
}

// BenchmarkEngines replays seph-blog1 (and the other sequential traces)
// with each type: apply (into a Rope or a Document), and transform and
// compose of each patch with the next. ns/op is per patch.
func BenchmarkEngines(b *testing.B) {
	for _, name := range traces.Sequential {
		b.Run(name, func(b *testing.B) {
			t := loadTraceOps(b, name)
			n := len(t.plain)
			b.Run("plain/apply", func(b *testing.B) {
				for b.Loop() {
					r, _ := ot.NewRope(t.start)
					for _, op := range t.plain {
						if err := r.Apply(op); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/patch")
			})
			b.Run("rich/apply", func(b *testing.B) {
				for b.Loop() {
					d, _ := NewDocument(t.richDoc)
					for _, op := range t.rich {
						if err := d.Apply(op); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/patch")
			})
			b.Run("plain/transform", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := ot.Transform(t.plain[i%n], t.plain[(i+1)%n], ot.Left); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("rich/transform", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := Transform(t.rich[i%n], t.rich[(i+1)%n], ot.Left); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("plain/compose", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := ot.Compose(t.plain[i%n], t.plain[(i+1)%n]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("rich/compose", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := Compose(t.rich[i%n], t.rich[(i+1)%n]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// formattedDoc is about size bytes of text in paragraphs (some headings,
// list items and quotes), with runs of bold, italic and links.
func formattedDoc(size int) Delta {
	r := rand.New(rand.NewPCG(5, 5))
	words := strings.Fields("the quick brown fox jumps over the lazy dog 漢字 café naïve 😀 résumé")
	var d Delta
	for total := 0; total < size; {
		var sb strings.Builder
		for k := 1 + r.IntN(12); k > 0; k-- {
			sb.WriteString(words[r.IntN(len(words))])
			sb.WriteByte(' ')
		}
		d = append(d, Insert(sb.String(), formats[r.IntN(len(formats))]))
		total += sb.Len()
		if r.IntN(8) == 0 {
			var line Attrs
			switch r.IntN(4) {
			case 0:
				line = MakeAttrs(Attr{"header", Number(2)})
			case 1:
				line = MakeAttrs(Attr{"list", String("bullet")})
			case 2:
				line = MakeAttrs(Attr{"blockquote", Bool(true)})
			}
			d = append(d, Insert("\n", line))
			total++
		}
	}
	d = append(d, Insert("\n", nil))
	out, err := NormalizeDocument(d)
	if err != nil {
		panic(err)
	}
	return out
}

// BenchmarkLargeDocument: keystroke-sized ops (type a character, delete
// one, bold a word) at random places in a 1 MB formatted document, and
// the same keystrokes into a Rope of its text.
func BenchmarkLargeDocument(b *testing.B) {
	doc := formattedDoc(1 << 20)
	n := doc.Len()
	r := rand.New(rand.NewPCG(8, 8))
	var plain []ot.Op
	var rich []Delta
	for i := 0; i < 4096; i++ {
		pos := r.IntN(n - 10)
		switch i % 4 {
		case 0, 1:
			plain = append(plain, ot.Op{ot.Skip(pos), ot.Insert("é")})
			rich = append(rich, Delta{Retain(pos, nil), Insert("é", formats[i%len(formats)])})
		case 2:
			plain = append(plain, ot.Op{ot.Skip(pos), ot.Delete(1), ot.Insert("x")})
			rich = append(rich, Delta{Retain(pos, nil), Delete(1), Insert("x", nil)})
		case 3:
			plain = append(plain, ot.Op{ot.Skip(pos), ot.Insert("y")})
			rich = append(rich, Delta{Retain(pos, nil), Retain(6, MakeAttrs(Attr{"bold", Bool(true)}))})
		}
	}
	var text strings.Builder
	for _, c := range doc {
		text.WriteString(c.text)
	}
	b.Logf("%d bytes, %d code points, %d runs", text.Len(), n, len(doc))
	b.Run("plain/apply", func(b *testing.B) {
		rope, _ := ot.NewRope(text.String())
		for i := 0; b.Loop(); i++ {
			if err := rope.Apply(plain[i%len(plain)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rich/apply", func(b *testing.B) {
		d, _ := NewDocument(doc)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := d.Apply(rich[i%len(rich)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rich/apply-value", func(b *testing.B) {
		// Apply on the Delta value: O(n), what a Document avoids.
		for i := 0; b.Loop(); i++ {
			if _, err := Apply(doc, rich[i%len(rich)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rich/snapshot", func(b *testing.B) {
		d, _ := NewDocument(doc)
		var buf []byte
		for b.Loop() {
			buf = d.AppendJSON(buf[:0])
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkSnapshotJSON: a document's content as snapshots write it
// (Document.AppendJSON), beside the plain type's (Rope.String), for a
// 100 KB document typed by ten people in their own formats, and for the
// 1 MB formatted document. ns/op is per snapshot.
func BenchmarkSnapshotJSON(b *testing.B) {
	typed, _ := NewDocument(nil)
	rng := rand.New(rand.NewPCG(1, 2))
	formats := []Attrs{nil, MakeAttrs(Attr{Key: "bold", Value: Bool(true)}), MakeAttrs(Attr{Key: "italic", Value: Bool(true)})}
	at := make([]int, 10)
	for typed.ByteSize() < 100_000 {
		w := rng.IntN(10)
		if at[w] > typed.Len() {
			at[w] = typed.Len()
		}
		op := Delta{Retain(at[w], nil), Insert("x", formats[w%3])}
		if at[w] == 0 {
			op = op[1:]
		}
		if err := typed.Apply(op); err != nil {
			b.Fatal(err)
		}
		at[w]++
	}
	large, _ := NewDocument(formattedDoc(1 << 20))
	for _, c := range []struct {
		name string
		d    *Document
	}{{"typed-100KB", typed}, {"formatted-1MB", large}} {
		b.Run(c.name+"/rich", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = c.d.AppendJSON(buf[:0])
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(c.name+"/plain", func(b *testing.B) {
			r, _ := ot.NewRope(PlainText(c.d.Delta()))
			b.ReportAllocs()
			for b.Loop() {
				_ = r.String()
			}
			b.SetBytes(int64(r.ByteLen()))
		})
	}
}
