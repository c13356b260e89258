package doctype

import (
	"errors"
	"fmt"
	"html"

	"github.com/tandemdocs/tandem/ot/rich"
)

// The export formats of a document.
const (
	FormatText     = "text"
	FormatMarkdown = "markdown"
	FormatHTML     = "html"
	FormatDelta    = "delta"
)

// ErrUnknownFormat reports an export format that is not one of Formats.
var ErrUnknownFormat = errors.New("doctype: unknown export format")

// Formats lists the export formats.
var Formats = []string{FormatHTML, FormatMarkdown, FormatText, FormatDelta}

// Export is a document exported in a format.
type Export struct {
	Data      []byte
	MediaType string // with its charset
	Ext       string // the file name extension, with its dot
}

// ExportContent exports content (a document of type t, as
// Document.Content gives it) titled title in format: HTML (a whole page
// with the allow-listed markup of rich.HTML: every value escaped, safe
// links only), Markdown, plain text or a Delta. A plain document's text is
// one unformatted paragraph per line in HTML and as it is in Markdown.
func ExportContent(t Type, content, title, format string) (Export, error) {
	return t.Export(content, title, format)
}

// exportDelta exports a document as a Delta in format.
func exportDelta(delta rich.Delta, title, format string) (Export, error) {
	switch format {
	case FormatText:
		return Export{[]byte(rich.PlainText(delta)), "text/plain; charset=utf-8", ".txt"}, nil
	case FormatMarkdown:
		return Export{[]byte(rich.Markdown(delta)), "text/markdown; charset=utf-8", ".md"}, nil
	case FormatHTML:
		page := "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + html.EscapeString(title) +
			"</title></head>\n<body>\n" + rich.HTML(delta) + "</body></html>\n"
		return Export{[]byte(page), "text/html; charset=utf-8", ".html"}, nil
	case FormatDelta:
		if delta == nil {
			delta = rich.Delta{}
		}
		return Export{delta.AppendJSON(nil), "application/json", ".json"}, nil
	}
	return Export{}, fmt.Errorf("%w: %q (html, markdown, text or delta)", ErrUnknownFormat, format)
}
