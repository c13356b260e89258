package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/rich"
)

// createRich creates a rich document from a request body's other fields.
func (ts *testServer) createRich(t testing.TB, fields string) (id string, out map[string]any) {
	t.Helper()
	status, err := ts.call("POST", "/api/docs", strings.NewReader(`{"type":"rich",`+fields+`}`), &out)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create rich %s: %d %v %v", fields, status, err, out)
	}
	return out["id"].(string), out
}

// richOf reads a Delta from a decoded JSON value.
func richOf(t testing.TB, v any) rich.Delta {
	t.Helper()
	b, _ := json.Marshal(v)
	d, err := rich.ParseDocumentJSON(b)
	if err != nil {
		t.Fatalf("delta %s: %v", b, err)
	}
	return d
}

func opOf(t testing.TB, v any) rich.Delta {
	t.Helper()
	b, _ := json.Marshal(v)
	d, err := rich.ParseJSON(b)
	if err != nil {
		t.Fatalf("op %s: %v", b, err)
	}
	return d
}

// richPeer follows a rich document as a client does: its own op pending
// until acked, others' ops transformed against it.
type richPeer struct {
	*wsClient
	doc     rich.Delta
	pending rich.Delta // nil: none
	rev     int64
}

func (p *richPeer) submit(t *testing.T, seq int, op string) {
	t.Helper()
	d, err := rich.ParseJSON([]byte(op))
	if err != nil {
		t.Fatal(err)
	}
	if p.doc, err = rich.Apply(p.doc, d); err != nil {
		t.Fatal(err)
	}
	p.pending = d
	p.send(fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":%s}`, p.rev, seq, op))
}

// until reads messages until rev is reached and nothing is pending.
func (p *richPeer) until(t *testing.T, rev int64) {
	t.Helper()
	for p.rev < rev || p.pending != nil {
		m := p.next()
		switch m["type"] {
		case "ack":
			p.pending, p.rev = nil, int64(m["rev"].(float64))
		case "op":
			op := opOf(t, m["op"])
			var err error
			if p.pending != nil {
				// The server's op wins ties: it was committed first.
				var mine rich.Delta
				if mine, err = rich.Transform(p.pending, op, ot.Left); err != nil {
					t.Fatal(err)
				}
				if op, err = rich.Transform(op, p.pending, ot.Right); err != nil {
					t.Fatal(err)
				}
				p.pending = mine
			}
			if p.doc, err = rich.Apply(p.doc, op); err != nil {
				t.Fatalf("server op %v does not apply: %v", m["op"], err)
			}
			p.rev = int64(m["rev"].(float64))
		case "error":
			t.Fatalf("error: %v", m)
		}
	}
}

// TestRichDocument: a rich document made over REST, edited by two
// WebSocket clients at once (formatting over text the other types into),
// acknowledged, converged, reloaded after a restart, and exported.
func TestRichDocument(t *testing.T) {
	ts := newTestServer(t, collab.Config{})
	start := `[{"insert":"Hello world"},{"insert":"\n","attributes":{"header":1}},{"insert":"漢字 😀 text\n"}]`
	id, created := ts.createRich(t, `"title":"Notes","delta":`+start)
	if created["type"] != "rich" || created["text"] != "Hello world\n漢字 😀 text\n" {
		t.Fatalf("created: %v", created)
	}
	a := &richPeer{wsClient: ts.dial(t, id, "name=Ann&user=ann")}
	ha := a.expect("hello")
	if ha["doctype"] != "rich" || ha["text"] != nil {
		t.Fatalf("hello: %v", ha)
	}
	a.doc = richOf(t, ha["delta"])
	if got := string(a.doc.AppendJSON(nil)); got != start {
		t.Fatalf("hello delta %s, want %s", got, start)
	}
	b := &richPeer{wsClient: ts.dial(t, id, "name=Bob&user=bob")}
	b.doc = richOf(t, b.expect("hello")["delta"])
	a.expect("join")

	// Ann bolds "Hello world" while Bob types inside it and links a word.
	a.submit(t, 1, `[{"retain":11,"attributes":{"bold":true}}]`)
	b.submit(t, 1, `[{"retain":5},{"insert":",","attributes":{"italic":true}},{"retain":7},{"retain":2,"attributes":{"link":"https://example.com"}}]`)
	a.until(t, 2)
	b.until(t, 2)
	if string(a.doc.AppendJSON(nil)) != string(b.doc.AppendJSON(nil)) {
		t.Fatalf("diverged:\n ann %s\n bob %s", a.doc.AppendJSON(nil), b.doc.AppendJSON(nil))
	}
	var text struct {
		Type  string
		Text  string
		Delta json.RawMessage
	}
	if status, err := ts.call("GET", "/api/docs/"+id+"/text", nil, &text); err != nil || status != 200 {
		t.Fatal(status, err)
	}
	if string(text.Delta) != string(a.doc.AppendJSON(nil)) || text.Type != "rich" {
		t.Fatalf("server has %s (%s), clients %s", text.Delta, text.Type, a.doc.AppendJSON(nil))
	}
	// rich-text's semantics: a format applies to the text that existed
	// when it was made, so Bob's concurrent comma keeps only its own.
	if want := `[{"insert":"Hello","attributes":{"bold":true}},{"insert":",","attributes":{"italic":true}},{"insert":" world","attributes":{"bold":true}},`; !strings.HasPrefix(string(text.Delta), want) {
		t.Errorf("got %s, want it to start %s", text.Delta, want)
	}

	// A caret in a rich document moves with the type's position transform.
	a.send(`{"type":"sel","rev":2,"sel":[{"anchor":3,"head":3}]}`)
	if sel := b.expect("sel"); fmt.Sprint(sel["sel"]) != "[map[anchor:3 head:3]]" {
		t.Errorf("sel: %v", sel)
	}

	// Malformed or plain ops change nothing.
	for i, bad := range []string{`[{"retain":99,"attributes":{"bold":true}}]`, `[5,"x"]`, `[{"insert":"x","attributes":{"b":null}}]`, `[{"insert":{"a":1,"b":2}}]`} {
		a.send(fmt.Sprintf(`{"type":"op","rev":2,"seq":%d,"op":%s}`, 10+i, bad))
		if e := a.expect("error"); e["code"] != collab.CodeInvalidOp {
			t.Errorf("%s: %v", bad, e)
		}
	}
	if head, _ := ts.head(t, id); head != 2 {
		t.Fatalf("head %d after refused ops", head)
	}

	// History at a revision, and the ops in Quill's form.
	var at1 struct{ Delta json.RawMessage }
	ts.call("GET", "/api/docs/"+id+"/text?rev=0", nil, &at1)
	if string(at1.Delta) != start {
		t.Errorf("text at 0: %s", at1.Delta)
	}
	var ops struct {
		Ops []struct{ Op json.RawMessage }
	}
	ts.call("GET", "/api/docs/"+id+"/ops", nil, &ops)
	if len(ops.Ops) != 2 || !strings.HasPrefix(string(ops.Ops[0].Op), `[{"retain":`) {
		t.Errorf("ops: %+v", ops)
	}

	// After a restart the document is still rich, at the same content.
	want := string(a.doc.AppendJSON(nil))
	ts = ts.restart(t)
	c := ts.dial(t, id, "")
	hc := c.expect("hello")
	if got, _ := json.Marshal(hc["delta"]); hc["doctype"] != "rich" || string(richOf(t, hc["delta"]).AppendJSON(nil)) != want {
		t.Fatalf("after restart: %v %s, want %s", hc["doctype"], got, want)
	}
}

func TestRichCreateAndExport(t *testing.T) {
	ts := newTestServer(t, collab.Config{})
	// From Markdown, from text, and the refusals.
	mdID, md := ts.createRich(t, `"markdown":"# Plan\n\n- **one**\n- [x](javascript:alert(1))\n"`)
	if fmt.Sprint(md["delta"]) == "" || !strings.Contains(fmt.Sprint(md["delta"]), "header") {
		t.Fatalf("from markdown: %v", md)
	}
	_, tx := ts.createRich(t, `"text":"plain words"`)
	if b, _ := json.Marshal(tx["delta"]); string(b) != `[{"insert":"plain words\n"}]` {
		t.Errorf("from text: %s", b)
	}
	_, empty := ts.createRich(t, `"title":"empty"`)
	if b, _ := json.Marshal(empty["delta"]); string(b) != `[{"insert":"\n"}]` {
		t.Errorf("empty: %s", b)
	}
	expectAPIError(t, ts, "POST", "/api/docs", `{"type":"rich","delta":[{"retain":3}]}`, http.StatusBadRequest, collab.CodeInvalidOp)
	expectAPIError(t, ts, "POST", "/api/docs", `{"type":"rich","delta":[{"insert":"a","attributes":{"bold":null}}]}`, http.StatusBadRequest, collab.CodeInvalidOp)
	expectAPIError(t, ts, "POST", "/api/docs", `{"type":"rich","text":"a","markdown":"b"}`, http.StatusBadRequest, collab.CodeBadMessage)
	expectAPIError(t, ts, "POST", "/api/docs", `{"markdown":"# a"}`, http.StatusBadRequest, collab.CodeBadMessage)
	expectAPIError(t, ts, "POST", "/api/docs", `{"type":"sheet"}`, http.StatusBadRequest, collab.CodeBadMessage)

	// A document one user filled with hostile formatting.
	hostile := `[{"insert":"click","attributes":{"link":"javascript:alert(1)"}},{"insert":"<img src=x onerror=alert(1)>"},` +
		`{"insert":{"image":"javascript:alert(2)"}},{"insert":{"image":"https://example.com/a.png\" onerror=\"alert(3)"}},{"insert":"\n"}]`
	id, _ := ts.createRich(t, `"title":"A <b>title</b>","delta":`+hostile)
	get := func(format string) (string, http.Header) {
		resp, err := http.Get(ts.URL + "/api/docs/" + id + "/export?format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("export %s: %d %s", format, resp.StatusCode, b)
		}
		return string(b), resp.Header
	}
	page, h := get("html")
	for _, bad := range []string{"javascript:", "<img src=x", "onerror=\"", "<b>title"} {
		if strings.Contains(page, bad) {
			t.Errorf("HTML export holds %q:\n%s", bad, page)
		}
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || !strings.HasPrefix(h.Get("Content-Type"), "text/html") ||
		h.Get("Content-Disposition") != "attachment; filename=A-btitleb.html" {
		t.Errorf("headers: %v", h)
	}
	if mdOut, _ := get("markdown"); strings.Contains(mdOut, "](<javascript") {
		t.Errorf("Markdown export links javascript: %s", mdOut)
	}
	if txt, _ := get("text"); txt != "click<img src=x onerror=alert(1)>\n" {
		t.Errorf("text export %q", txt)
	}
	if d, _ := get("delta"); d != hostile {
		t.Errorf("delta export %s", d)
	}
	expectAPIError(t, ts, "GET", "/api/docs/"+id+"/export?format=pdf", "", http.StatusBadRequest, collab.CodeBadMessage)
	// A plain document exports too.
	plain := ts.createDoc(t, "p", "line <one>\nline two")
	resp, err := http.Get(ts.URL + "/api/docs/" + plain + "/export?format=html")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "<p>line &lt;one&gt;</p>\n<p>line two</p>") {
		t.Errorf("plain HTML export: %s", b)
	}
	_ = mdID
}
