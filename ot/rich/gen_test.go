package rich

import (
	"math/rand/v2"
	"strings"
	"unicode/utf8"
)

// Random documents and ops for the differential, property and benchmark
// tests: text with emoji (ZWJ sequences, flags, skin tones), CJK and
// combining marks, embeds, and attributes set and removed.

var pieces = []string{
	"a", "b", "c", "hello ", " ", "\n", "é", "e\u0301", "漢", "字", "😀", "👩\u200d💻",
	"🇫🇷", "👍🏽", "\u200d", "\"q\"", "\t", "𝄞",
}

var attrPool = []Attr{
	{"bold", Bool(true)}, {"italic", Bool(true)}, {"underline", Bool(true)},
	{"color", String("#f00")}, {"color", String("#00f")},
	{"link", String("https://example.com/a?b=1&c=<d>")}, {"header", Number(1)},
	{"header", Number(2)}, {"size", Number(1.5)}, {"font", String("serif")},
	{"data-x", String("\"q\" 😀")}, {"bold", Bool(false)},
}

var embedPool = []Embed{
	{"image", `"https://example.com/i.png"`},
	{"mention", `{"id":"u1","name":"Zoë 😀"}`},
	{"formula", `"e=mc^2"`},
	{"video", `"https://example.com/v"`},
}

func randText(r *rand.Rand) string {
	var sb strings.Builder
	for n := 1 + r.IntN(4); n > 0; n-- {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

// randAttrs picks up to n attributes; withNull: some of them null.
func randAttrs(r *rand.Rand, n int, withNull bool) Attrs {
	k := r.IntN(n + 1)
	var kv []Attr
	for ; k > 0; k-- {
		a := attrPool[r.IntN(len(attrPool))]
		if withNull && r.IntN(3) == 0 {
			a.Value = Null()
		}
		kv = append(kv, a)
	}
	return MakeAttrs(kv...)
}

func randInsert(r *rand.Rand) Component {
	if r.IntN(6) == 0 {
		return InsertEmbed(embedPool[r.IntN(len(embedPool))], randAttrs(r, 2, false))
	}
	return Insert(randText(r), randAttrs(r, 2, false))
}

func randDoc(r *rand.Rand, parts int) Delta {
	var d Delta
	for ; parts > 0; parts-- {
		d = append(d, randInsert(r))
	}
	d, err := NormalizeDocument(d)
	if err != nil {
		panic(err)
	}
	return d
}

// randOp makes a normalized op on a document of docLen code points.
func randOp(r *rand.Rand, docLen int) Delta {
	var d Delta
	left := docLen
	for k := 1 + r.IntN(5); k > 0; k-- {
		switch x := r.IntN(10); {
		case x < 4 && left > 0:
			n := 1 + r.IntN(left)
			var attrs Attrs
			if r.IntN(3) == 0 {
				attrs = randAttrs(r, 3, true)
			}
			d = append(d, Retain(n, attrs))
			left -= n
		case x < 6 && left > 0:
			n := 1 + r.IntN(min(left, 4))
			d = append(d, Delete(n))
			left -= n
		default:
			d = append(d, randInsert(r))
		}
	}
	if r.IntN(4) == 0 && left > 0 {
		d = append(d, Retain(left, randAttrs(r, 2, true)))
	}
	d, err := Normalize(d)
	if err != nil {
		panic(err)
	}
	return d
}

// units are the UTF-16 units of each code point of doc (an embed is one).
func units(doc Delta) []int {
	var w []int
	for _, c := range doc {
		if c.embed != nil {
			w = append(w, 1)
			continue
		}
		for _, r := range c.text {
			w = append(w, utf16Len(r))
		}
	}
	return w
}

func utf16Len(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// toUnits rewrites op's counts (code points of the document whose units
// are w) as UTF-16 units.
func toUnits(op Delta, w []int) Delta {
	out := make(Delta, len(op))
	at := 0
	for i, c := range op {
		out[i] = c
		if c.kind == KindInsert {
			continue
		}
		u := 0
		for k := 0; k < c.n; k++ {
			u += w[at+k]
		}
		at += c.n
		out[i].n = u
	}
	return out
}

// posUnits is position pos (code points) in UTF-16 units.
func posUnits(pos int, w []int) int {
	u := 0
	for _, x := range w[:min(pos, len(w))] {
		u += x
	}
	return u
}

func runeCount(s string) int { return utf8.RuneCountInString(s) }
