package rich

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseJSON: no input panics; what is accepted is JSON, and its
// canonical form parses back to itself.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`[{"insert":"Hi","attributes":{"bold":true}},{"retain":3,"attributes":{"color":null}},{"delete":2}]`,
		`[{"insert":{"image":"https://example.com/a.png"},"attributes":{"width":"120"}}]`,
		`[{"insert":{"mention":{"id":"u1","name":"Zoë"}}},{"insert":"😀👩‍💻🇫🇷\n","attributes":{"header":1}}]`,
		`[{"retain":1,"attributes":{"size":1.5,"n":-2,"b":false}}]`,
		`[{"insert":"\u00e9\ud83d\ude00\"\\"}]`, `[]`, `[{"retain":0}]`, `[{"insert":{}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseJSON(data)
		if err != nil {
			if ErrorCode(err) == "" {
				t.Fatalf("%q: error without a code: %v", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("%q accepted, but it is not JSON", data)
		}
		out := d.AppendJSON(nil)
		again, err := ParseJSON(out)
		if err != nil || js(again) != string(out) {
			t.Fatalf("%q -> %s -> %s, %v", data, out, js(again), err)
		}
	})
}

// FuzzProperties: the algebra of checkProperties on documents and ops
// generated from the fuzzer's seed.
func FuzzProperties(f *testing.F) {
	for i := uint64(0); i < 8; i++ {
		f.Add(i, uint8(3))
	}
	f.Fuzz(func(t *testing.T, seed uint64, parts uint8) {
		r := rand.New(rand.NewPCG(seed, binary.LittleEndian.Uint64([]byte("richtext"))))
		doc := randDoc(r, int(parts%12))
		checkProperties(t, doc, randOp(r, doc.Len()), randOp(r, doc.Len()))
	})
}

// FuzzApply: any document and op, as bytes, applied to a Document and to
// the value: both agree, or both refuse and the Document is unchanged.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`[{"insert":"abc","attributes":{"bold":true}}]`), []byte(`[{"retain":1},{"delete":1},{"insert":"x"}]`))
	f.Add([]byte(`[{"insert":{"image":"a"}},{"insert":"\n"}]`), []byte(`[{"retain":2,"attributes":{"bold":true}}]`))
	f.Fuzz(func(t *testing.T, docJSON, opJSON []byte) {
		doc, err := ParseDocumentJSON(docJSON)
		if err != nil {
			return
		}
		op, err := ParseJSON(opJSON)
		if err != nil {
			return
		}
		td, err := NewDocument(doc)
		if err != nil {
			t.Fatal(err)
		}
		want, werr := Apply(doc, op)
		gerr := td.Apply(op)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("value: %v, Document: %v", werr, gerr)
		}
		if werr != nil {
			if js(td.Delta()) != js(doc) {
				t.Fatalf("a refused op changed the Document")
			}
			return
		}
		if js(td.Delta()) != js(want) {
			t.Fatalf("Document %s, value %s", js(td.Delta()), js(want))
		}
		// The snapshot's streaming encoder writes what the Delta's does.
		if got := string(td.AppendJSON(nil)); got != js(want) {
			t.Fatalf("Document.AppendJSON %s, Delta %s", got, js(want))
		}
	})
}

var tagPattern = regexp.MustCompile(`<[^>]*>`)

// FuzzExport: no document makes an export panic or writes a script, an
// event handler or an unsafe URL into the HTML.
func FuzzExport(f *testing.F) {
	f.Add([]byte(`[{"insert":"a","attributes":{"link":"javascript:x","bold":true}},{"insert":{"image":"x\" onerror=\"y"}},{"insert":"\n","attributes":{"header":1}}]`))
	f.Add([]byte(`[{"insert":"<script>\n","attributes":{"code-block":"js"}},{"insert":"b\n","attributes":{"list":"checked"}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParseDocumentJSON(data)
		if err != nil {
			return
		}
		h := strings.ToLower(HTML(doc))
		// Text is escaped, so every < starts a tag this package wrote.
		for _, tag := range tagPattern.FindAllString(h, -1) {
			for _, bad := range []string{"<script", " on", "style=", `="javascript`, `="data`, `="vbscript`} {
				if strings.Contains(tag, bad) {
					t.Fatalf("%s: HTML tag %s holds %q", data, tag, bad)
				}
			}
		}
		_ = Markdown(doc)
		_ = PlainText(doc)
	})
}
