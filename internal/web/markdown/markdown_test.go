package markdown

import (
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/ot/rich"
)

func TestToDelta(t *testing.T) {
	src := "# Title\n\nSome **bold**, _it_, ~~gone~~ and `code` with [a link](https://example.com).\n\n" +
		"- one\n- two\n\n1. first\n\n- [x] done\n- [ ] todo\n\n> quoted\n\n```go\nx := 1\n```\n\n![pic](https://example.com/a.png)\n"
	d, err := ToDelta([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"insert":"Title"},{"insert":"\n","attributes":{"header":1}},` +
		`{"insert":"Some "},{"insert":"bold","attributes":{"bold":true}},{"insert":", "},{"insert":"it","attributes":{"italic":true}},{"insert":", "},` +
		`{"insert":"gone","attributes":{"strike":true}},{"insert":" and "},{"insert":"code","attributes":{"code":true}},{"insert":" with "},` +
		`{"insert":"a link","attributes":{"link":"https://example.com"}},{"insert":".\none"},{"insert":"\n","attributes":{"list":"bullet"}},` +
		`{"insert":"two"},{"insert":"\n","attributes":{"list":"bullet"}},{"insert":"first"},{"insert":"\n","attributes":{"list":"ordered"}},` +
		`{"insert":"done"},{"insert":"\n","attributes":{"list":"checked"}},{"insert":"todo"},{"insert":"\n","attributes":{"list":"unchecked"}},` +
		`{"insert":"quoted"},{"insert":"\n","attributes":{"blockquote":true}},{"insert":"x := 1"},{"insert":"\n","attributes":{"code-block":true}},` +
		`{"insert":{"image":"https://example.com/a.png"},"attributes":{"alt":"pic"}},{"insert":"\n"}]`
	if got := string(d.AppendJSON(nil)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Back to Markdown: the same structure.
	back := rich.Markdown(d)
	for _, s := range []string{"# Title", "**bold**", "_it_", "~~gone~~", "`code`", "[a link](<https://example.com>)", "- one", "1. first", "- [x] done", "> quoted", "```\nx := 1\n```", "![pic](<https://example.com/a.png>)"} {
		if !strings.Contains(back, s) {
			t.Errorf("Markdown(ToDelta(src)) lacks %q:\n%s", s, back)
		}
	}
}

func TestToDeltaHostile(t *testing.T) {
	src := "[x](javascript:alert(1)) <script>alert(1)</script> ![y](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n" +
		"<div onclick=\"alert(1)\">block</div>\n\n[long](https://example.com/" + strings.Repeat("a", 3000) + ")\n"
	d, err := ToDelta([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	js := string(d.AppendJSON(nil))
	if strings.Contains(js, `"link":"javascript`) || strings.Contains(js, `"image":"javascript`) {
		t.Errorf("an unsafe URL became a link or image: %s", js)
	}
	if !strings.Contains(js, `<script>alert(1)</script>`) {
		t.Errorf("raw HTML should stay as text: %s", js)
	}
	html := rich.HTML(d)
	for _, bad := range []string{"<script", "<img src=x", "<div", "javascript:"} {
		if strings.Contains(html, bad) {
			t.Errorf("HTML of imported Markdown holds %q: %s", bad, html)
		}
	}
	if _, err := ToDelta(make([]byte, MaxSize+1)); err == nil {
		t.Error("oversized Markdown accepted")
	}
	if d, err := ToDelta(nil); err != nil || string(d.AppendJSON(nil)) != `[{"insert":"\n"}]` {
		t.Errorf("empty Markdown: %s, %v", d.AppendJSON(nil), err)
	}
}

// FuzzToDelta: any Markdown gives a valid document or an error, never a
// panic, and its HTML export holds no script.
func FuzzToDelta(f *testing.F) {
	for _, s := range []string{"# a\n\n**b** _c_", "- [x] a\n  - b\n> c", "```\nx\n```", "[a](javascript:b) ![c](d)", "<b>x</b>", "***a*** ~~b~~ `c`", "1. a\n2. b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		d, err := ToDelta(src)
		if err != nil {
			return
		}
		if err := d.CheckDocument(); err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		h := strings.ToLower(rich.HTML(d))
		if strings.Contains(h, "<script") || strings.Contains(h, `href="javascript`) || strings.Contains(h, `src="javascript`) {
			t.Fatalf("%q: HTML %s", src, h)
		}
	})
}
