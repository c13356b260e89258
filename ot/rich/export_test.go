package rich

import (
	"strings"
	"testing"
)

func mustDoc(t *testing.T, s string) Delta {
	t.Helper()
	d, err := ParseDocumentJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestExports(t *testing.T) {
	doc := mustDoc(t, `[
		{"insert":"Title"},{"insert":"\n","attributes":{"header":1}},
		{"insert":"Some "},{"insert":"bold","attributes":{"bold":true}},{"insert":" and "},
		{"insert":"a link","attributes":{"link":"https://example.com/?a=1&b=2","italic":true}},{"insert":".\n"},
		{"insert":"one"},{"insert":"\n","attributes":{"list":"bullet"}},
		{"insert":"two"},{"insert":"\n","attributes":{"list":"bullet"}},
		{"insert":"first"},{"insert":"\n","attributes":{"list":"ordered"}},
		{"insert":"quoted"},{"insert":"\n","attributes":{"blockquote":true}},
		{"insert":"x < y"},{"insert":"\n","attributes":{"code-block":true}},
		{"insert":"y > z"},{"insert":"\n","attributes":{"code-block":true}},
		{"insert":{"image":"https://example.com/a.png"},"attributes":{"alt":"a \"pic\""}},{"insert":"\n"}
	]`)
	wantHTML := `<h1>Title</h1>
<p>Some <strong>bold</strong> and <a href="https://example.com/?a=1&amp;b=2" rel="noopener noreferrer nofollow"><em>a link</em></a>.</p>
<ul><li>one</li><li>two</li></ul>
<ol><li>first</li></ol>
<blockquote>quoted</blockquote>
<pre><code>x &lt; y
y &gt; z</code></pre>
<p><img src="https://example.com/a.png" alt="a &#34;pic&#34;"></p>
`
	if got := HTML(doc); got != wantHTML {
		t.Errorf("HTML:\n%s\nwant\n%s", got, wantHTML)
	}
	wantMD := "# Title\n\nSome **bold** and [_a link_](<https://example.com/?a=1&b=2>).\n\n- one\n- two\n\n1. first\n\n> quoted\n\n```\nx < y\ny > z\n```\n\n![a \"pic\"](<https://example.com/a.png>)\n"
	if got := Markdown(doc); got != wantMD {
		t.Errorf("Markdown:\n%q\nwant\n%q", got, wantMD)
	}
	if got, want := PlainText(doc), "Title\nSome bold and a link.\none\ntwo\nfirst\nquoted\nx < y\ny > z\n\n"; got != want {
		t.Errorf("PlainText %q, want %q", got, want)
	}
}

// TestExportHostile: what one user stores cannot run in another's
// browser through an export.
func TestExportHostile(t *testing.T) {
	doc := mustDoc(t, `[
		{"insert":"click","attributes":{"link":"javascript:alert(1)"}},
		{"insert":"tab","attributes":{"link":"java\tscript:alert(1)"}},
		{"insert":"upper","attributes":{"link":"JAVASCRIPT:alert(1)"}},
		{"insert":"data","attributes":{"link":"data:text/html,<script>alert(1)</script>"}},
		{"insert":"quote","attributes":{"link":"https://x\" onmouseover=\"alert(1)"}},
		{"insert":"<script>alert(1)</script><img src=x onerror=alert(1)>"},
		{"insert":{"image":"javascript:alert(1)"}},
		{"insert":{"image":"x\" onerror=\"alert(1)"}},
		{"insert":{"image":"data:image/svg+xml,<svg onload=alert(1)>"}},
		{"insert":{"image":"https://ok.example/i.png\" onerror=\"alert(1)"}},
		{"insert":{"video":"javascript:alert(1)"}},
		{"insert":"x","attributes":{"style":"background:url(javascript:alert(1))","onclick":"alert(1)","class":"evil","header":"<h1>"}},
		{"insert":"\n","attributes":{"header":"1 onclick=alert(1)","list":"<ul>"}}
	]`)
	out := HTML(doc)
	for _, bad := range []string{"javascript:", "JAVASCRIPT", "<script", "onerror=\"", "onmouseover=\"", "onload", "onclick=", "style=", "class=", "data:", "<svg"} {
		if strings.Contains(out, bad) {
			t.Errorf("HTML export holds %q:\n%s", bad, out)
		}
	}
	md := Markdown(doc)
	for _, bad := range []string{"](<javascript", "](<data", "](<JAVASCRIPT", "<script", "<img"} {
		if strings.Contains(strings.ReplaceAll(md, `\<`, ""), bad) { // (\< is an escaped, literal <)
			t.Errorf("Markdown export holds %q:\n%s", bad, md)
		}
	}
	for _, u := range []string{"https://a.b/c", "http://a", "mailto:a@b.c", "HTTPS://A.B"} {
		if _, ok := SafeURL(u, false); !ok {
			t.Errorf("SafeURL(%q) refused", u)
		}
	}
	for _, u := range []string{"javascript:x", " javascript:x", "java\nscript:x", "vbscript:x", "data:x", "//evil", "https://", "https://a b", "mailto:"} {
		if _, ok := SafeURL(u, false); ok {
			t.Errorf("SafeURL(%q) allowed", u)
		}
	}
}
