// Package markdown makes a rich-text document (ot/rich) from Markdown:
// CommonMark with GitHub's strikethrough, task lists and autolinks, parsed
// by goldmark. It maps Markdown onto Quill's formats: headings, paragraphs,
// bulleted, numbered and task lists, quotes and code blocks as the block
// format of each line's "\n"; bold, italic, strike, inline code and links
// on text; images as image embeds with their alt text.
//
// Links and images keep only URLs that ot/rich.SafeURL allows (a
// javascript: link keeps its text and loses its link); raw HTML is kept as
// text, never as markup.
package markdown

import (
	"fmt"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	extast "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"

	"github.com/tandemdocs/tandem/ot/rich"
)

// MaxSize bounds the Markdown ToDelta reads.
const MaxSize = 4 << 20

// ToDelta converts Markdown to a rich-text document (normalized, ending
// with "\n" as Quill's documents do).
func ToDelta(src []byte) (rich.Delta, error) {
	if len(src) > MaxSize {
		return nil, fmt.Errorf("markdown: %d bytes (at most %d)", len(src), MaxSize)
	}
	md := goldmark.New(goldmark.WithExtensions(extension.Strikethrough, extension.TaskList, extension.Linkify))
	root := md.Parser().Parse(text.NewReader(src))
	c := converter{src: src}
	c.blocks(root, nil)
	if n := len(c.out); n == 0 || !endsLine(c.out[n-1]) {
		c.out = append(c.out, rich.Insert("\n", nil))
	}
	d, err := rich.NormalizeDocument(c.out)
	if err != nil {
		return nil, fmt.Errorf("markdown: %w", err)
	}
	return d, nil
}

func endsLine(c rich.Component) bool { return strings.HasSuffix(c.Text(), "\n") }

type converter struct {
	src []byte
	out rich.Delta
}

func (c *converter) text(s string, attrs []rich.Attr) {
	if s != "" {
		c.out = append(c.out, rich.Insert(s, rich.MakeAttrs(attrs...)))
	}
}

func (c *converter) newline(block []rich.Attr) {
	c.out = append(c.out, rich.Insert("\n", rich.MakeAttrs(block...)))
}

// blocks converts n's block children; block is the line format the
// enclosing list or quote gives them.
func (c *converter) blocks(n ast.Node, block []rich.Attr) {
	for k := n.FirstChild(); k != nil; k = k.NextSibling() {
		switch b := k.(type) {
		case *ast.Heading:
			c.inlines(b, nil, block)
			c.newline(append(withoutKey(block, "header"), rich.Attr{Key: "header", Value: rich.Number(float64(b.Level))}))
		case *ast.Paragraph, *ast.TextBlock:
			line := block
			if cb, ok := b.FirstChild().(*extast.TaskCheckBox); ok && hasKey(block, "list") {
				state := "unchecked"
				if cb.IsChecked {
					state = "checked"
				}
				line = append(withoutKey(block, "list"), rich.Attr{Key: "list", Value: rich.String(state)})
			}
			c.inlines(b, nil, line)
			c.newline(line)
		case *ast.List:
			kind := "bullet"
			if b.IsOrdered() {
				kind = "ordered"
			}
			c.blocks(b, append(withoutKey(block, "list"), rich.Attr{Key: "list", Value: rich.String(kind)}))
		case *ast.ListItem:
			c.blocks(b, block)
		case *ast.Blockquote:
			c.blocks(b, append(withoutKey(block, "blockquote"), rich.Attr{Key: "blockquote", Value: rich.Bool(true)}))
		case *ast.FencedCodeBlock, *ast.CodeBlock, *ast.HTMLBlock:
			attrs := block
			if _, html := b.(*ast.HTMLBlock); !html {
				attrs = append(withoutKey(block, "code-block"), rich.Attr{Key: "code-block", Value: rich.Bool(true)})
			}
			lines := b.Lines()
			for i := 0; i < lines.Len(); i++ {
				seg := lines.At(i)
				c.text(strings.TrimRight(string(seg.Value(c.src)), "\r\n"), nil)
				c.newline(attrs)
			}
		case *ast.ThematicBreak:
			// Quill has no rule by default.
		default:
			c.blocks(k, block)
		}
	}
}

func hasKey(a []rich.Attr, key string) bool {
	for _, x := range a {
		if x.Key == key {
			return true
		}
	}
	return false
}

func withoutKey(a []rich.Attr, key string) []rich.Attr {
	out := make([]rich.Attr, 0, len(a)+1)
	for _, x := range a {
		if x.Key != key {
			out = append(out, x)
		}
	}
	return out
}

func with(a []rich.Attr, key string, v rich.Value) []rich.Attr {
	return append(withoutKey(a, key), rich.Attr{Key: key, Value: v})
}

// inlines converts n's inline children with the inline formats attrs;
// block is the format of the line they are on (a hard break ends it).
func (c *converter) inlines(n ast.Node, attrs []rich.Attr, block []rich.Attr) {
	for k := n.FirstChild(); k != nil; k = k.NextSibling() {
		switch x := k.(type) {
		case *ast.Text:
			c.text(string(x.Segment.Value(c.src)), attrs)
			switch {
			case x.HardLineBreak():
				c.newline(block)
			case x.SoftLineBreak():
				c.text(" ", attrs)
			}
		case *ast.String:
			c.text(string(x.Value), attrs)
		case *ast.Emphasis:
			key := "italic"
			if x.Level >= 2 {
				key = "bold"
			}
			c.inlines(x, with(attrs, key, rich.Bool(true)), block)
		case *extast.Strikethrough:
			c.inlines(x, with(attrs, "strike", rich.Bool(true)), block)
		case *ast.CodeSpan:
			c.inlines(x, with(attrs, "code", rich.Bool(true)), block)
		case *ast.Link:
			if u, ok := safeLink(string(x.Destination)); ok {
				c.inlines(x, with(attrs, "link", rich.String(u)), block)
			} else {
				c.inlines(x, attrs, block)
			}
		case *ast.AutoLink:
			label := string(x.Label(c.src))
			url := string(x.URL(c.src))
			if x.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(strings.ToLower(url), "mailto:") {
				url = "mailto:" + url
			}
			if u, ok := safeLink(url); ok {
				c.text(label, with(attrs, "link", rich.String(u)))
			} else {
				c.text(label, attrs)
			}
		case *ast.Image:
			alt := plain(x, c.src)
			if u, ok := rich.SafeURL(string(x.Destination), true); ok && len(u) < rich.MaxEmbed/2 {
				var a rich.Attrs
				if alt != "" && len(alt) <= rich.MaxAttrValue/2 {
					a = rich.MakeAttrs(rich.Attr{Key: "alt", Value: rich.String(alt)})
				}
				c.out = append(c.out, rich.InsertEmbed(rich.Embed{Key: "image", Value: string(rich.String(u).JSON())}, a))
			} else {
				c.text(alt, attrs)
			}
		case *ast.RawHTML:
			segs := x.Segments
			for i := 0; i < segs.Len(); i++ {
				s := segs.At(i)
				c.text(string(s.Value(c.src)), attrs)
			}
		case *extast.TaskCheckBox:
			// the line's list format (blocks)
		default:
			c.inlines(k, attrs, block)
		}
	}
}

// safeLink is a link SafeURL allows that fits an attribute.
func safeLink(u string) (string, bool) {
	u, ok := rich.SafeURL(u, false)
	return u, ok && len(rich.String(u).JSON()) <= rich.MaxAttrValue
}

// plain is the text of n's inline children.
func plain(n ast.Node, src []byte) string {
	var sb strings.Builder
	_ = ast.Walk(n, func(k ast.Node, entering bool) (ast.WalkStatus, error) {
		if t, ok := k.(*ast.Text); ok && entering {
			sb.Write(t.Segment.Value(src))
		}
		return ast.WalkContinue, nil
	})
	return sb.String()
}
