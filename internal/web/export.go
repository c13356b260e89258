package web

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// exportDoc answers GET /api/docs/{id}/export?format=html|markdown|text|delta
// [&rev=N]: the document (at its head or revision N) as a download. The
// HTML keeps only allow-listed markup (see rich.HTML) and is served with a
// Content-Security-Policy that runs no script even if something slipped
// through.
func (s *Server) exportDoc(c echo.Context) error {
	d, err := s.document(c, RoleRead)
	if err != nil {
		return err
	}
	rev, err := queryInt(c, "rev", d.Head)
	if err != nil {
		return err
	}
	if rev < d.Oldest || rev > d.Head {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, "rev must be within the retained history")
	}
	format := c.QueryParam("format")
	if format == "" {
		format = doctype.FormatHTML
	}
	content, err := storage.ContentAt(c.Request().Context(), s.cfg.Store, d.ID, rev)
	if err != nil {
		return err
	}
	ex, err := doctype.ExportContent(d.DocType(), content, d.Title, format)
	if errors.Is(err, doctype.ErrUnknownFormat) {
		return errorf(http.StatusBadRequest, collab.CodeBadMessage, err.Error())
	}
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; img-src http: https:; style-src 'unsafe-inline'; sandbox")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fileName(d.Title, d.ID) + ex.Ext}))
	return c.Blob(http.StatusOK, ex.MediaType, ex.Data)
}

// fileName is a download's name: the title's letters, digits and a few
// marks, or the id.
func fileName(title, id string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_', r == '.':
			return r
		case r == ' ':
			return '-'
		}
		return -1
	}, title)
	name = strings.Trim(name, ".-")
	if r := []rune(name); len(r) > 80 {
		name = string(r[:80])
	}
	if name == "" {
		return id
	}
	return name
}
