package rich

import (
	"encoding/json"
	"html"
	"strconv"
	"strings"
)

// Exports of a document as HTML, Markdown and plain text, following
// Quill's model: a line's block format (header, list, blockquote,
// code-block) is the attributes of the "\n" that ends it; text carries
// inline formats (bold, italic, underline, strike, code, link, script).
//
// The HTML is safe to serve to another user's browser: every text and
// attribute value is escaped; the only tags written are p, br, h1–h6, ul,
// ol, li, blockquote, pre, code, strong, em, u, s, sub, sup, a (href only)
// and img (src and alt only); no style, class or event attribute is ever
// written, whatever the document holds; links keep only the http, https and
// mailto schemes and images only http and https (anything else, such as
// javascript: or data:, is dropped and its text kept). Formats outside this
// list (color, font, size, align, indent) are not exported.

// line is one line of a document: its inline runs and its block format.
type line struct {
	runs  Delta
	block Attrs
}

// lines cuts a document into lines. A document that does not end with
// "\n" has a last line without block format.
func lines(doc Delta) []line {
	var out []line
	var cur line
	for _, c := range doc {
		if c.embed != nil {
			cur.runs = append(cur.runs, c)
			continue
		}
		text := c.text
		for {
			i := strings.IndexByte(text, '\n')
			if i < 0 {
				break
			}
			if i > 0 {
				cur.runs = append(cur.runs, Insert(text[:i], c.attrs))
			}
			cur.block = c.attrs
			out = append(out, cur)
			cur = line{}
			text = text[i+1:]
		}
		if text != "" {
			cur.runs = append(cur.runs, Insert(text, c.attrs))
		}
	}
	if len(cur.runs) > 0 {
		out = append(out, cur)
	}
	return out
}

func attrString(a Attrs, key string) (string, bool) {
	v, ok := a.Get(key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal([]byte(v.json), &s) != nil {
		return "", false
	}
	return s, true
}

func attrTrue(a Attrs, key string) bool {
	v, ok := a.Get(key)
	return ok && v.json != "false" && v.json != "null" && v.json != `""` && v.json != "0"
}

func header(a Attrs) int {
	v, ok := a.Get("header")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v.json)
	if err != nil || n < 1 || n > 6 {
		return 0
	}
	return n
}

// SafeURL returns u if it is a link a browser may follow: http, https or
// mailto, with no whitespace or control character anywhere (browsers drop
// those from URLs, which is how "java\tscript:" gets through naive
// checks); image: http or https only.
func SafeURL(u string, image bool) (string, bool) {
	for _, r := range u {
		if r <= ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return "", false
		}
	}
	lower := strings.ToLower(u)
	for _, scheme := range []string{"https://", "http://", "mailto:"} {
		if strings.HasPrefix(lower, scheme) && len(u) > len(scheme) {
			if image && scheme == "mailto:" {
				return "", false
			}
			return u, true
		}
	}
	return "", false
}

func blockOf(a Attrs) string {
	if n := header(a); n > 0 {
		return "h" + strconv.Itoa(n)
	}
	if l, ok := attrString(a, "list"); ok {
		if l == "ordered" {
			return "ol"
		}
		return "ul"
	}
	if attrTrue(a, "code-block") { // true, or the block's language
		return "pre"
	}
	if attrTrue(a, "blockquote") {
		return "blockquote"
	}
	return "p"
}

// HTML returns doc as an HTML fragment (see the package's export notes for
// what it keeps).
func HTML(doc Delta) string {
	var sb strings.Builder
	ls := lines(doc)
	for i := 0; i < len(ls); {
		kind := blockOf(ls[i].block)
		j := i + 1
		if kind == "ul" || kind == "ol" || kind == "pre" {
			for j < len(ls) && blockOf(ls[j].block) == kind {
				j++
			}
		}
		switch kind {
		case "ul", "ol":
			sb.WriteString("<" + kind + ">")
			for _, l := range ls[i:j] {
				sb.WriteString("<li>")
				if c, ok := attrString(l.block, "list"); ok && (c == "checked" || c == "unchecked") {
					if c == "checked" {
						sb.WriteString("☑ ")
					} else {
						sb.WriteString("☐ ")
					}
				}
				inlineHTML(&sb, l.runs)
				sb.WriteString("</li>")
			}
			sb.WriteString("</" + kind + ">")
		case "pre":
			sb.WriteString("<pre><code>")
			for k, l := range ls[i:j] {
				if k > 0 {
					sb.WriteByte('\n')
				}
				for _, r := range l.runs {
					sb.WriteString(html.EscapeString(r.text))
				}
			}
			sb.WriteString("</code></pre>")
		default:
			sb.WriteString("<" + kind + ">")
			if len(ls[i].runs) == 0 {
				sb.WriteString("<br>")
			}
			inlineHTML(&sb, ls[i].runs)
			sb.WriteString("</" + kind + ">")
		}
		sb.WriteByte('\n')
		i = j
	}
	return sb.String()
}

// inline formats, outermost first (after the link), with their tags.
var inlineTags = []struct{ key, tag string }{
	{"bold", "strong"}, {"italic", "em"}, {"underline", "u"}, {"strike", "s"}, {"code", "code"},
}

func inlineHTML(sb *strings.Builder, runs Delta) {
	for _, r := range runs {
		if r.embed != nil {
			embedHTML(sb, r)
			continue
		}
		var closers []string
		if l, ok := attrString(r.attrs, "link"); ok {
			if u, ok := SafeURL(l, false); ok {
				sb.WriteString(`<a href="` + html.EscapeString(u) + `" rel="noopener noreferrer nofollow">`)
				closers = append(closers, "</a>")
			}
		}
		for _, t := range inlineTags {
			if attrTrue(r.attrs, t.key) {
				sb.WriteString("<" + t.tag + ">")
				closers = append(closers, "</"+t.tag+">")
			}
		}
		if s, ok := attrString(r.attrs, "script"); ok && (s == "sub" || s == "super") {
			tag := "sub"
			if s == "super" {
				tag = "sup"
			}
			sb.WriteString("<" + tag + ">")
			closers = append(closers, "</"+tag+">")
		}
		sb.WriteString(html.EscapeString(r.text))
		for k := len(closers) - 1; k >= 0; k-- {
			sb.WriteString(closers[k])
		}
	}
}

func embedValueString(e *Embed) (string, bool) {
	var s string
	if json.Unmarshal([]byte(e.Value), &s) != nil {
		return "", false
	}
	return s, true
}

func embedHTML(sb *strings.Builder, r Component) {
	src, _ := embedValueString(r.embed)
	switch r.embed.Key {
	case "image":
		if u, ok := SafeURL(src, true); ok {
			alt, _ := attrString(r.attrs, "alt")
			sb.WriteString(`<img src="` + html.EscapeString(u) + `" alt="` + html.EscapeString(alt) + `">`)
		}
	case "video":
		if u, ok := SafeURL(src, true); ok {
			sb.WriteString(`<a href="` + html.EscapeString(u) + `" rel="noopener noreferrer nofollow">` + html.EscapeString(u) + `</a>`)
		}
	case "formula":
		sb.WriteString("<code>" + html.EscapeString(src) + "</code>")
	}
	// Other embeds (mentions, custom blots) have no HTML of their own.
}

// Markdown returns doc as CommonMark (with GFM's ~~strike~~ and task
// lists). Underline, colors and other formats Markdown lacks are dropped;
// unsafe links lose their link and keep their text.
func Markdown(doc Delta) string {
	var sb strings.Builder
	ls := lines(doc)
	prev := ""
	for i := 0; i < len(ls); i++ {
		l := ls[i]
		kind := blockOf(l.block)
		if i > 0 && !(kind == prev && (kind == "ul" || kind == "ol" || kind == "pre" || kind == "blockquote")) {
			if prev == "pre" {
				sb.WriteString("```\n")
			}
			sb.WriteByte('\n')
		}
		switch kind {
		case "pre":
			if prev != "pre" {
				sb.WriteString("```\n")
			}
			for _, r := range l.runs {
				sb.WriteString(r.text)
			}
			sb.WriteByte('\n')
			prev = kind
			continue
		case "ul":
			switch c, _ := attrString(l.block, "list"); c {
			case "checked":
				sb.WriteString("- [x] ")
			case "unchecked":
				sb.WriteString("- [ ] ")
			default:
				sb.WriteString("- ")
			}
		case "ol":
			sb.WriteString("1. ")
		case "blockquote":
			sb.WriteString("> ")
		case "p":
		default:
			sb.WriteString(strings.Repeat("#", header(l.block)) + " ")
		}
		inlineMarkdown(&sb, l.runs, kind == "p")
		sb.WriteByte('\n')
		prev = kind
	}
	if prev == "pre" {
		sb.WriteString("```\n")
	}
	return sb.String()
}

func inlineMarkdown(sb *strings.Builder, runs Delta, lineStart bool) {
	for k, r := range runs {
		if r.embed != nil {
			if src, ok := embedValueString(r.embed); ok && r.embed.Key == "image" {
				if u, ok := SafeURL(src, true); ok {
					alt, _ := attrString(r.attrs, "alt")
					sb.WriteString("![" + escapeMarkdown(alt, false) + "](<" + u + ">)")
				}
			}
			continue
		}
		text := escapeMarkdown(r.text, lineStart && k == 0)
		if attrTrue(r.attrs, "code") {
			text = "`" + strings.ReplaceAll(r.text, "`", "ˋ") + "`"
		}
		var open, closeTags string
		for _, m := range []struct{ key, mark string }{{"bold", "**"}, {"italic", "_"}, {"strike", "~~"}} {
			if attrTrue(r.attrs, m.key) {
				open += m.mark
				closeTags = m.mark + closeTags
			}
		}
		// Emphasis cannot start or end with a space in Markdown: keep the
		// spaces outside the marks.
		trimmed := strings.TrimSpace(text)
		lead := text[:strings.Index(text, trimmed)]
		trail := text[len(lead)+len(trimmed):]
		if trimmed == "" {
			open, closeTags = "", ""
		}
		body := lead + open + trimmed + closeTags + trail
		if l, ok := attrString(r.attrs, "link"); ok {
			if u, ok := SafeURL(l, false); ok {
				body = "[" + body + "](<" + u + ">)"
			}
		}
		sb.WriteString(body)
	}
}

// escapeMarkdown escapes what Markdown would read as markup.
func escapeMarkdown(s string, lineStart bool) string {
	var sb strings.Builder
	for i, r := range s {
		switch r {
		case '\\', '`', '*', '_', '[', ']', '<', '>', '~', '!', '|':
			sb.WriteByte('\\')
		case '#', '-', '+', '=':
			if lineStart && i == 0 {
				sb.WriteByte('\\')
			}
		}
		sb.WriteRune(r)
	}
	out := sb.String()
	if lineStart {
		// "1. " at the start of a line is a list.
		j := 0
		for j < len(out) && out[j] >= '0' && out[j] <= '9' {
			j++
		}
		if j > 0 && j < len(out) && (out[j] == '.' || out[j] == ')') {
			out = out[:j] + `\` + out[j:]
		}
	}
	return out
}

// PlainText returns the document's text: embeds are dropped.
func PlainText(doc Delta) string {
	var sb strings.Builder
	for _, c := range doc {
		sb.WriteString(c.text)
	}
	return sb.String()
}
