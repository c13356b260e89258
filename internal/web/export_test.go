package web_test

import (
	"bytes"
	"slices"
	"testing"

	"golang.org/x/net/html"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/ot/rich"
)

// allowedHTML is the export's allow-list: tag → the attributes it may have.
var allowedHTML = map[string][]string{
	"html": nil, "head": nil, "meta": {"charset"}, "title": nil, "body": nil,
	"p": nil, "br": nil, "h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
	"ul": nil, "ol": nil, "li": nil, "blockquote": nil, "pre": nil, "code": nil,
	"strong": nil, "em": nil, "u": nil, "s": nil, "sub": nil, "sup": nil,
	"a": {"href", "rel"}, "img": {"src", "alt"},
}

// FuzzExportHTML parses the HTML export of any document as a browser
// would (golang.org/x/net/html's tokenizer): only allow-listed tags and
// attributes, and every href and src a safe URL.
func FuzzExportHTML(f *testing.F) {
	f.Add([]byte(`[{"insert":"x","attributes":{"link":"javascript:alert(1)","bold":true}},{"insert":{"image":"x\" onerror=\"y"}},{"insert":"\n","attributes":{"header":1}}]`), "t")
	f.Add([]byte(`[{"insert":"<script>alert(1)</script>\n","attributes":{"code-block":"js"}},{"insert":"a\n","attributes":{"list":"checked"}}]`), "</title><script>")
	f.Add([]byte(`[{"insert":{"image":"https://e.com/a.png"},"attributes":{"alt":"\" onload=\"x"}},{"insert":"\n"}]`), "")
	f.Fuzz(func(t *testing.T, data []byte, title string) {
		doc, err := rich.ParseDocumentJSON(data)
		if err != nil {
			return
		}
		ex, err := doctype.ExportContent(doctype.Rich(), string(doc.AppendJSON(nil)), title, doctype.FormatHTML)
		if err != nil {
			t.Fatal(err)
		}
		z := html.NewTokenizer(bytes.NewReader(ex.Data))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				return
			}
			if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
				continue
			}
			tok := z.Token()
			attrs, ok := allowedHTML[tok.Data]
			if !ok {
				t.Fatalf("tag <%s> in %s", tok.Data, ex.Data)
			}
			for _, a := range tok.Attr {
				if !slices.Contains(attrs, a.Key) {
					t.Fatalf("attribute %s on <%s> in %s", a.Key, tok.Data, ex.Data)
				}
				if a.Key == "href" || a.Key == "src" {
					if _, ok := rich.SafeURL(a.Val, a.Key == "src"); !ok {
						t.Fatalf("%s=%q on <%s>", a.Key, a.Val, tok.Data)
					}
				}
			}
		}
	})
}
