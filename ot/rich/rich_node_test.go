package rich

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tandemdocs/tandem/ot"
)

var (
	refCases = flag.Int("rich.cases", 5000, "random cases for TestAgainstRichText")
	refSeed  = flag.Uint64("rich.seed", 1, "seed of TestAgainstRichText's cases")
)

// refCase is one case as testdata/ref/ref.js reads it (UTF-16 units).
type refCase struct {
	ID  int             `json:"id"`
	Doc json.RawMessage `json:"doc"`
	A   json.RawMessage `json:"a"`
	B   json.RawMessage `json:"b"`
	Pos int             `json:"pos"`
}

// refResult is what rich-text made of a case.
type refResult struct {
	ID          int    `json:"id"`
	ApplyA      string `json:"applyA"`
	ApplyB      string `json:"applyB"`
	Left        string `json:"left"`
	Right       string `json:"right"`
	Compose     string `json:"compose"`
	Invert      string `json:"invert"`
	CursorOwn   int    `json:"cursorOwn"`
	CursorOther int    `json:"cursorOther"`
}

// startReference runs testdata/ref/ref.js, or skips the test when node or
// the npm packages are missing (scripts/test.sh installs them; CI sets
// TANDEM_REQUIRE_NODE=1, which makes their absence a failure).
func startReference(t *testing.T) (*exec.Cmd, *bufio.Writer, *bufio.Scanner, func()) {
	t.Helper()
	dir := filepath.Join("testdata", "ref")
	skip := func(why string) {
		if os.Getenv("TANDEM_REQUIRE_NODE") == "1" {
			t.Fatalf("TANDEM_REQUIRE_NODE=1 but %s", why)
		}
		t.Skipf("%s: run npm ci --prefix ot/rich/testdata/ref (scripts/test.sh does)", why)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "rich-text")); err != nil {
		skip("npm rich-text is not installed in " + dir)
	}
	cmd := exec.Command(node, "ref.js")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	w := bufio.NewWriter(in)
	return cmd, w, sc, func() { in.Close() }
}

// TestAgainstRichText is the differential test: seeded random documents
// and pairs of concurrent ops (emoji, ZWJ sequences, flags, CJK, embeds,
// attributes set and removed) go through npm rich-text 4.1.0 and through
// this package; apply, transform both ways, compose, invert and both
// cursor transforms must give the same canonical JSON (after converting
// rich-text's UTF-16 counts to code points).
func TestAgainstRichText(t *testing.T) {
	cmd, w, sc, closeIn := startReference(t)
	r := rand.New(rand.NewPCG(*refSeed, 0x5eed))
	type local struct {
		doc, a, b Delta
		pos       int
	}
	cases := make([]local, *refCases)
	for i := range cases {
		doc := randDoc(r, r.IntN(6))
		n := doc.Len()
		cases[i] = local{doc: doc, a: randOp(r, n), b: randOp(r, n), pos: r.IntN(n + 1)}
	}
	go func() {
		defer closeIn()
		for i, c := range cases {
			wd := units(c.doc)
			line, err := json.Marshal(refCase{
				ID: i, Doc: c.doc.AppendJSON(nil),
				A: toUnits(c.a, wd).AppendJSON(nil), B: toUnits(c.b, wd).AppendJSON(nil),
				Pos: posUnits(c.pos, wd),
			})
			if err != nil {
				panic(err)
			}
			w.Write(line)
			w.WriteByte('\n')
		}
		w.Flush()
	}()
	diffs := 0
	report := func(i int, what string, c local, got, want any) {
		diffs++
		if diffs <= 10 {
			t.Errorf("case %d (seed %d): %s:\n doc %s\n a   %s\n b   %s\n got  %v\n want %v (rich-text)",
				i, *refSeed, what, c.doc.AppendJSON(nil), c.a.AppendJSON(nil), c.b.AppendJSON(nil), got, want)
		}
	}
	seen := 0
	for sc.Scan() {
		var res refResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatalf("reference output %q: %v", sc.Text(), err)
		}
		i := res.ID
		c := cases[i]
		seen++
		applyA, err := Apply(c.doc, c.a)
		if err != nil {
			t.Fatalf("case %d: Apply(doc, a): %v", i, err)
		}
		applyB, err := Apply(c.doc, c.b)
		if err != nil {
			t.Fatalf("case %d: Apply(doc, b): %v", i, err)
		}
		must := func(d Delta, err error) Delta {
			t.Helper()
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			return d
		}
		left := must(Transform(c.a, c.b, ot.Left))
		right := must(Transform(c.a, c.b, ot.Right))
		b2 := must(Transform(c.b, c.a, ot.Right))
		composed := must(Compose(c.a, b2))
		inv := must(Invert(c.a, c.doc))
		wA, wB := units(applyA), units(applyB)
		check := func(what, got, want string) {
			if got != want {
				report(i, what, c, got, want)
			}
		}
		check("apply a", string(applyA.AppendJSON(nil)), res.ApplyA)
		check("apply b", string(applyB.AppendJSON(nil)), res.ApplyB)
		check("transform left", string(toUnits(left, wB).AppendJSON(nil)), res.Left)
		check("transform right", string(toUnits(right, wB).AppendJSON(nil)), res.Right)
		check("compose", string(toUnits(composed, units(c.doc)).AppendJSON(nil)), res.Compose)
		check("invert", string(toUnits(inv, wA).AppendJSON(nil)), res.Invert)
		if got := posUnits(TransformPosition(c.pos, c.a, ot.Right), wA); got != res.CursorOwn {
			report(i, "cursor (own op)", c, got, res.CursorOwn)
		}
		if got := posUnits(TransformPosition(c.pos, c.a, ot.Left), wA); got != res.CursorOther {
			report(i, "cursor (other's op)", c, got, res.CursorOther)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("reference: %v", err)
	}
	if seen != len(cases) {
		t.Fatalf("the reference answered %d of %d cases", seen, len(cases))
	}
	if diffs > 0 {
		t.Fatalf("%d differences from rich-text in %d cases", diffs, len(cases))
	}
	t.Logf("%d cases (seed %d): no difference from rich-text 4.1.0", len(cases), *refSeed)
}

func ExampleTransform() {
	doc := Delta{Insert("Hello world\n", nil)}
	bold := Delta{Retain(6, nil), Retain(5, MakeAttrs(Attr{"bold", Bool(true)}))}
	typed := Delta{Retain(11, nil), Insert("!", nil)}
	// The server committed bold first; typed is rebased onto it.
	rebased, _ := Transform(typed, bold, ot.Left)
	doc, _ = Apply(doc, bold)
	doc, _ = Apply(doc, rebased)
	fmt.Println(string(doc.AppendJSON(nil)))
	// Output: [{"insert":"Hello "},{"insert":"world","attributes":{"bold":true}},{"insert":"!\n"}]
}
