package doctype

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/rich"
)

func TestLookup(t *testing.T) {
	for name, want := range map[string]string{"": PlainName, "plain": PlainName, "rich": RichName} {
		if typ, err := Lookup(name); err != nil || typ.Name() != want {
			t.Errorf("Lookup(%q) = %v, %v", name, typ, err)
		}
	}
	if _, err := Lookup("sheet"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Lookup(sheet): %v", err)
	}
}

// TestOpJSON: an op decoded without its type comes back as the type it
// was, and an op of one type is refused by the other.
func TestOpJSON(t *testing.T) {
	for _, c := range []struct {
		typ  Type
		json string
	}{
		{Plain(), `[3,"hi",{"d":2}]`},
		{Plain(), `[{"d":"ab"},"x"]`},
		{Plain(), `["x"]`},
		{Rich(), `[{"retain":3},{"insert":"hi","attributes":{"bold":true}},{"delete":2}]`},
		{Rich(), `[{"delete":1},{"insert":{"image":"https://x"}}]`},
		{Rich(), `[{"insert":"x"}]`},
	} {
		op, _, err := c.typ.ParseOp([]byte(c.json))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(op)
		var back Op
		if err := json.Unmarshal(b, &back); err != nil || back.IsRich() != op.IsRich() || back.String() != op.String() {
			t.Errorf("%s: back %s (rich %v), %v", c.json, back, back.IsRich(), err)
		}
		other := Rich()
		if c.typ.Name() == RichName {
			other = Plain()
		}
		if _, err := other.Transform(op, op, ot.Left); !errors.Is(err, ErrWrongType) {
			t.Errorf("%s transformed by the other type: %v", c.json, err)
		}
		d, _ := other.NewDocument("")
		if err := d.Apply(op); !errors.Is(err, ErrWrongType) {
			t.Errorf("%s applied to the other type's document: %v", c.json, err)
		}
	}
	// The empty op is both types' no-op.
	var empty Op
	if err := json.Unmarshal([]byte(`[]`), &empty); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []Type{Plain(), Rich()} {
		d, _ := typ.NewDocument("")
		if err := d.Apply(empty); err != nil {
			t.Errorf("%s: the empty op: %v", typ.Name(), err)
		}
	}
}

// TestDocuments: both types' documents apply, invert and report content.
func TestDocuments(t *testing.T) {
	pd, _ := Plain().NewDocument("héllo 😀")
	op, _, _ := Plain().ParseOp([]byte(`[1,{"d":4},"ey"]`))
	inv, err := pd.Invert(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := pd.Apply(op); err != nil || pd.Content() != "hey 😀" {
		t.Fatalf("%q %v", pd.Content(), err)
	}
	if err := pd.Apply(inv); err != nil || pd.Content() != "héllo 😀" {
		t.Fatalf("after invert %q %v", pd.Content(), err)
	}
	rd, err := Rich().NewDocument(`[{"insert":"ab\n"}]`)
	if err != nil {
		t.Fatal(err)
	}
	rop := RichOp(rich.Delta{rich.Retain(2, rich.MakeAttrs(rich.Attr{Key: "bold", Value: rich.Bool(true)}))})
	rinv, _ := rd.Invert(rop)
	if err := rd.Apply(rop); err != nil || rd.Content() != `[{"insert":"ab","attributes":{"bold":true}},{"insert":"\n"}]` {
		t.Fatalf("%s %v", rd.Content(), err)
	}
	if err := rd.Apply(rinv); err != nil || rd.Content() != `[{"insert":"ab\n"}]` {
		t.Fatalf("after invert %s %v", rd.Content(), err)
	}
	if _, err := Rich().NewDocument(`[{"retain":1}]`); err == nil {
		t.Error("a rich document with a retain accepted")
	}
}

func TestExportContent(t *testing.T) {
	ex, err := ExportContent(Rich(), `[{"insert":"Hi","attributes":{"bold":true}},{"insert":"\n","attributes":{"header":2}}]`, "T <x>", FormatHTML)
	if err != nil || string(ex.Data) != "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>T &lt;x&gt;</title></head>\n<body>\n<h2><strong>Hi</strong></h2>\n</body></html>\n" {
		t.Errorf("%q %v", ex.Data, err)
	}
	if ex, _ := ExportContent(Plain(), "a\nb", "", FormatDelta); string(ex.Data) != `[{"insert":"a\nb"}]` {
		t.Errorf("plain delta %s", ex.Data)
	}
	if _, err := ExportContent(Plain(), "", "", "pdf"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("pdf: %v", err)
	}
}

// TestContentForms: each type's content in hello and the REST API, its
// text, a document made from text, and its native export, for both types.
func TestContentForms(t *testing.T) {
	for _, c := range []struct {
		typ              Type
		content          string
		key, json, text  string
		fromText, native string
	}{
		{Plain(), "a \"q\"\n😀", "text", `"a \"q\"\n😀"`, "a \"q\"\n😀", "x", FormatText},
		{Rich(), `[{"insert":"Hi","attributes":{"bold":true}},{"insert":{"image":"https://e.x/i.png"}},{"insert":"\n"}]`, "delta",
			`[{"insert":"Hi","attributes":{"bold":true}},{"insert":{"image":"https://e.x/i.png"}},{"insert":"\n"}]`, "Hi\n", `[{"insert":"x\n"}]`, FormatDelta},
		{Rich(), "", "delta", `[]`, "", `[{"insert":"x\n"}]`, FormatDelta},
	} {
		name := c.typ.Name()
		if got := c.typ.ContentKey(); got != c.key {
			t.Errorf("%s: key %q", name, got)
		}
		if got := string(c.typ.AppendContentJSON(nil, c.content)); got != c.json {
			t.Errorf("%s: JSON %s, want %s", name, got, c.json)
		}
		if got, err := c.typ.Text(c.content); err != nil || got != c.text {
			t.Errorf("%s: text %q %v, want %q", name, got, err, c.text)
		}
		if got := c.typ.FromText("x"); got != c.fromText {
			t.Errorf("%s: from text %s, want %s", name, got, c.fromText)
		}
		if _, err := c.typ.NewDocument(c.typ.FromText("x")); err != nil {
			t.Errorf("%s: a document from text: %v", name, err)
		}
		if got := c.typ.NativeFormat(); got != c.native {
			t.Errorf("%s: native format %q", name, got)
		}
		ex, err := c.typ.Export(c.content, "T", c.native)
		if err != nil {
			t.Fatalf("%s: export: %v", name, err)
		}
		if c.native == FormatDelta && string(ex.Data) != c.json {
			t.Errorf("%s: native export %s", name, ex.Data)
		}
		if c.native == FormatText && string(ex.Data) != c.text {
			t.Errorf("%s: native export %q", name, ex.Data)
		}
	}
	if _, err := Rich().Text("[{"); err == nil {
		t.Error("rich Text of bad content: no error")
	}
}
