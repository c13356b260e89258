package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandemdocs/tandem/internal/web"
	"github.com/tandemdocs/tandem/ot/rich"
	"github.com/tandemdocs/tandem/storage"
)

// TestBrowserRich: a formatted document in the demo's Quill editor, in a
// real browser with two people formatting and typing in one paragraph.
// Every check compares the server's Delta with what each browser's client
// holds and what its Quill shows.
func TestBrowserRich(t *testing.T) {
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	base := ts.URL
	id, _ := ts.createRich(t, `"title":"Plan","delta":[{"insert":"Hello world\n"}]`)
	ann := newTab(t, browser, "Ann", "#e11d48")
	bob := newTab(t, browser, "Bob", "#2563eb")
	var wg sync.WaitGroup
	for _, tb := range []*tab{ann, bob} {
		wg.Go(func() { tb.openCM(base, id) })
	}
	wg.Wait()
	for _, tb := range []*tab{ann, bob} {
		if n := eval[int](tb, `document.querySelectorAll('.ql-toolbar button, .ql-toolbar .ql-picker').length`); n < 10 {
			t.Errorf("%s: a toolbar of %d controls", tb.name, n)
		}
	}

	t.Run("BoldWhileTheOtherTypesInside", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann makes "Hello world" bold with Ctrl+B while Bob types inside it.
		quillSelect(ann, 0, 11)
		quillSelect(bob, 5, 0)
		var wg sync.WaitGroup
		wg.Go(func() { ann.do(key('b', chromedp.ModifierCtrl)) })
		wg.Go(func() { bob.do(typeText(", dear")) })
		wg.Wait()
		doc := waitRichConverged(t, base, id, ann, bob)
		if got := plainOf(doc); got != "Hello, dear world\n" {
			t.Fatalf("text %q", got)
		}
		// Ann's bold holds on what she selected, whatever the order.
		for _, word := range []string{"Hello", "world"} {
			if !isBold(doc, word) {
				t.Errorf("%q is not bold: %s", word, mustJSON(doc))
			}
		}
	})

	t.Run("HeadingAndListOnOneLine_EmojiAndCJK", func(t *testing.T) {
		bind(t, ann, bob)
		quillSelect(ann, 0, 0)
		quillSelect(bob, 17, 0)
		var wg sync.WaitGroup
		// Ann makes the line a heading with the toolbar's picker; Bob makes
		// it a list item with the toolbar's button, and types emoji and CJK.
		wg.Go(func() {
			ann.do(chromedp.Click(chromedp.CSS(`.ql-toolbar .ql-header .ql-picker-label`)))
			ann.do(chromedp.Click(chromedp.CSS(`.ql-toolbar .ql-header .ql-picker-item[data-value="1"]`)))
		})
		wg.Go(func() {
			bob.do(chromedp.Click(chromedp.CSS(`.ql-toolbar button.ql-list[value="bullet"]`)))
			bob.do(typeText(" 😀 漢字 👨‍👩‍👧"))
		})
		wg.Wait()
		doc := waitRichConverged(t, base, id, ann, bob)
		if got := plainOf(doc); got != "Hello, dear world 😀 漢字 👨‍👩‍👧\n" {
			t.Fatalf("text %q", got)
		}
		// Depending on the order, the line keeps one of the two or both
		// (a Delta can hold both; in Quill they exclude each other, and
		// both Quills show the same one: waitRichConverged).
		last := doc[len(doc)-1]
		if last.Attributes["header"] == nil && last.Attributes["list"] == nil {
			t.Errorf("the line's attributes %v, want a header or a list", last.Attributes)
		}
	})

	t.Run("UndoOwnFormattingLeavesTheOthers", func(t *testing.T) {
		bind(t, ann, bob)
		quillSelect(ann, 7, 4) // "dear"
		ann.do(key('i', chromedp.ModifierCtrl))
		waitRichConverged(t, base, id, ann, bob)
		quillSelect(bob, 0, 0)
		bob.do(typeText("Oh! "))
		waitRichConverged(t, base, id, ann, bob)
		ann.do(key('z', chromedp.ModifierCtrl))
		doc := waitRichConverged(t, base, id, ann, bob)
		if got := plainOf(doc); !strings.HasPrefix(got, "Oh! Hello, dear world") {
			t.Fatalf("Ann's undo took Bob's typing: %q", got)
		}
		if isItalic(doc, "dear") {
			t.Errorf("Ann's italic survived her undo: %s", mustJSON(doc))
		}
		if !isBold(doc, "Hello") {
			t.Errorf("the bold went too: %s", mustJSON(doc))
		}
	})

	t.Run("ConflictingLineFormatsShowTheSame", func(t *testing.T) {
		bind(t, ann, bob)
		// Bob, offline, makes the first line a numbered list item; Ann makes
		// it a heading. Back online, the line held both for a moment (a
		// Delta can): both Quills show the same one, and the document is
		// settled to hold only that one. (The line starts with neither: on
		// a list line Quill's heading clears the list, and the one
		// committed first wins that key.)
		eval[bool](ann, `(window.tandem.quill.formatLine(0, 1, {header: false, list: false}, 'user'), true)`)
		waitRichConverged(t, base, id, ann, bob)
		bob.setNetwork("offline")
		bob.waitJS(`window.tandem.client.status !== 'connected'`, "offline")
		// Offline, Bob still sees Ann among the people here, greyed.
		bob.waitJS(`[...document.querySelectorAll('#people .person.stale')].some(p => p.textContent.includes('Ann'))`, "keeping Ann listed, greyed")
		eval[bool](bob, `(window.tandem.quill.formatLine(0, 1, 'list', 'ordered', 'user'), true)`)
		eval[bool](ann, `(window.tandem.quill.formatLine(0, 1, 'header', 2, 'user'), true)`)
		waitRichConverged(t, base, id, ann)
		bob.setNetwork("online")
		doc := waitRichConverged(t, base, id, ann, bob)
		first := doc[0].Attributes
		for _, c := range doc {
			var s string
			if json.Unmarshal(c.Insert, &s) == nil && strings.Contains(s, "\n") {
				first = c.Attributes
				break
			}
		}
		if first["list"] != "ordered" || first["header"] != nil {
			t.Errorf("the first line's attributes %v: want the list only (both Quills show it)", first)
		}
		if got := eval[string](ann, `(f => JSON.stringify([f.list ?? null, f.header ?? null]))(window.tandem.quill.getFormat(0, 1))`); got != `["ordered",null]` {
			t.Errorf("Ann's Quill shows %s", got)
		}
		// And off again, for the subtests after: Ann clears both.
		eval[bool](ann, `(window.tandem.quill.formatLine(0, 1, {header: false, list: false}, 'user'), true)`)
		waitRichConverged(t, base, id, ann, bob)
	})

	t.Run("HistoryShowsDeletedWordsAndRestores", func(t *testing.T) {
		bind(t, ann, bob)
		eval[bool](ann, `(window.tandemHistoryPause = 1, true)`) // every revision its own session
		before := eval[string](ann, `JSON.stringify(window.tandem.client.doc)`)
		// Ann deletes ", dear" (six characters after "Oh! Hello").
		quillSelect(ann, 9, 6)
		ann.do(key('\b', 0))
		waitRichConverged(t, base, id, ann, bob)
		eval[bool](ann, `(document.querySelector('#history-toggle').click(), true)`)
		ann.waitJS(`[...document.querySelectorAll('#history-text del')].some(d => d.textContent === ', dear')`, "the deleted words shown struck through")
		// Back one version, and restore it.
		eval[bool](ann, `(() => { const s = document.querySelector('#history-slider'); s.value = String(Number(s.max) - 1); s.dispatchEvent(new Event('input')); return true })()`)
		ann.waitJS(`document.querySelector('#history-text').textContent.includes(', dear') && !document.querySelector('#history-text del')`, "showing the version before")
		eval[bool](ann, `(document.querySelector('#history-restore').click(), true)`)
		ann.waitJS(`!document.querySelector('#history-confirm').hidden`, "asking to confirm")
		eval[bool](ann, `(document.querySelector('#history-confirm-yes').click(), true)`)
		waitRichConverged(t, base, id, ann, bob)
		if got := eval[string](bob, `JSON.stringify(window.tandem.client.doc)`); canonical(json.RawMessage(got)) != canonical(json.RawMessage(before)) {
			t.Errorf("restored:\n%s\nwant the version before:\n%s", got, before)
		}
	})

	t.Run("OthersCaretsWithNames", func(t *testing.T) {
		bind(t, ann, bob)
		quillSelect(bob, 3, 0)
		ann.waitJS(`[...document.querySelectorAll('.ql-cursor .ql-cursor-name')].some(n => n.textContent === 'Bob')`, "showing Bob's caret with his name")
	})

	t.Run("PhoneLayout", func(t *testing.T) {
		bind(t, ann, bob)
		for _, size := range []struct{ w, h int64 }{{1280, 800}, {390, 844}} {
			ann.do(chromedp.EmulateViewport(size.w, size.h))
			ann.waitJS(fmt.Sprintf(`innerWidth === %d`, size.w), "resized")
			got := eval[string](ann, `(() => {
			  const out = [];
			  const bar = document.querySelector('.ql-toolbar').getBoundingClientRect();
			  const text = document.querySelector('.ql-editor').getBoundingClientRect();
			  if (bar.right > innerWidth + 1) out.push('the toolbar runs off the screen: ' + bar.right);
			  if (text.width < innerWidth * 0.7) out.push('the text is ' + text.width + 'px wide');
			  if (text.height < 120) out.push('the text is ' + text.height + 'px high');
			  if (document.documentElement.scrollWidth > innerWidth) out.push('page wider than the screen: ' + document.documentElement.scrollWidth);
			  return out.join('; ');
			})()`)
			if got != "" {
				t.Errorf("layout at %dx%d: %s", size.w, size.h, got)
			}
			shot, err := chromedp.Run(ann.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			checkNotBlank(t, shot)
			if err := os.WriteFile(artifactPath(t, fmt.Sprintf("quill-%dx%d.png", size.w, size.h)), shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ann.do(chromedp.EmulateViewport(1280, 800))
		ann.waitJS(`innerWidth === 1280`, "resized back")
	})

	t.Run("HostileEmbedsAndLinks", func(t *testing.T) {
		bind(t, ann, bob)
		// Bob's client sends what Quill's UI would not: a javascript: link
		// and an image whose address is script. Nothing of it runs in Ann's
		// page, and her editor shows no such link.
		eval[bool](bob, `(() => {
		  const c = window.tandem.client
		  c.edit([{ insert: 'click', attributes: { link: 'javascript:window.__pwned=1' } }, { insert: { image: 'javascript:window.__pwned=2' } }, { insert: '\n' }])
		  return true })()`)
		waitRichConverged(t, base, id, ann, bob)
		ann.waitJS(`document.querySelector('.ql-editor a') !== null`, "showing the link")
		got := eval[string](ann, `JSON.stringify({pwned: window.__pwned ?? null, hrefs: [...document.querySelectorAll('.ql-editor a')].map(a => a.getAttribute('href')), imgs: [...document.querySelectorAll('.ql-editor img')].map(i => i.getAttribute('src'))})`)
		if strings.Contains(got, "javascript:") || !strings.Contains(got, `"pwned":null`) {
			t.Errorf("Ann's page: %s", got)
		}
		ann.do(chromedp.Click(chromedp.CSS(`.ql-editor a`)))
		if p := eval[string](ann, `String(window.__pwned ?? null)`); p != "null" {
			t.Errorf("the link ran: %s", p)
		}
	})
	t.Run("EmbedsQuillHasNoBlotFor", func(t *testing.T) {
		bind(t, ann, bob)
		// Another application's embeds ({mention: …}, {formula: …}) arrive:
		// Quill shows them as uneditable "[key]" and keeps their length, so
		// typing after them lands where it should.
		eval[bool](bob, `(() => {
		  window.tandem.client.edit([{ insert: { mention: { id: 7, name: '<b>Bob</b>' } } }, { insert: { formula: 'e=mc^2' } }, { insert: ' ' }])
		  return true })()`)
		waitRichConverged(t, base, id, ann, bob)
		quillSelect(ann, 3, 0)
		ann.do(typeText("ok"))
		doc := waitRichConverged(t, base, id, ann, bob)
		if got := plainOf(doc); !strings.HasPrefix(got, "\ufffc\ufffc ok") {
			t.Errorf("the text after the embeds: %q", got)
		}
		if got := eval[string](ann, `JSON.stringify(window.tandem.quill.getContents().ops.slice(0, 2))`); got != `[{"insert":{"mention":{"id":7,"name":"<b>Bob</b>"}}},{"insert":{"formula":"e=mc^2"}}]` {
			t.Errorf("Quill holds %s", got)
		}
		if n := eval[int](ann, `document.querySelectorAll('.ql-editor b').length`); n != 0 {
			t.Errorf("an embed's value became markup (%d <b>)", n)
		}
	})

	t.Run("NameOnAPhone", func(t *testing.T) {
		bind(t, ann, bob)
		// On a phone the top bar has no room for the name field: tapping
		// oneself among the people asks for the name.
		ann.do(chromedp.EmulateViewport(390, 844))
		ann.waitJS(`innerWidth === 390`, "resized")
		if eval[bool](ann, `document.querySelector('#my-name').getClientRects().length > 0`) {
			t.Skip("the name field is shown at 390 px: nothing to ask")
		}
		eval[bool](ann, `(window.prompt = () => 'Ann on a phone', document.querySelector('#people .person.is-me').click(), true)`)
		ann.waitConnected()
		bob.waitJS(`[...window.tandem.client.peers.values()].some(p => p.name === 'Ann on a phone')`, "seeing Ann's new name")
		ann.do(chromedp.EmulateViewport(1280, 800))
	})
}

// TestBrowserRichOfflineAndReader: formatting typed offline survives a
// reload and reaches the server once; a reader's page cannot change the
// document.
func TestBrowserRichOfflineAndReader(t *testing.T) {
	browser := startBrowser(t)
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, serverOpts{web: web.Config{Auth: v}})
	if err := ts.store.CreateDocument(context.Background(), storage.Document{ID: "notes", Title: "Notes", Type: "rich", Created: time.Now()}, `[{"insert":"Agenda\n"}]`); err != nil {
		t.Fatal(err)
	}
	annTok := token(t, secret, "ann", time.Hour, "notes:write")
	bobTok := token(t, secret, "bob", time.Hour, "notes:read")
	admin := token(t, secret, "test", time.Hour, "*:admin")
	ann := newTab(t, browser, "Ann", "#e11d48")
	bob := newTab(t, browser, "Bob", "#2563eb")
	ann.do(chromedp.Navigate(ts.URL + "/d/notes#token=" + annTok))
	ann.waitConnected()
	bob.do(chromedp.Navigate(ts.URL + "/d/notes#token=" + bobTok))
	bob.waitConnected()

	t.Run("Reader", func(t *testing.T) {
		bind(t, ann, bob)
		if !eval[bool](bob, `document.querySelector('.ql-editor').getAttribute('contenteditable') === 'false' && !document.querySelector('.ql-toolbar') && !!document.querySelector('.view-only')`) {
			t.Fatalf("Bob's editor is editable or has a toolbar: %s", bob.state())
		}
		if st := eval[string](bob, `document.querySelector('#conn-text').textContent`); st != "Connected · view only" {
			t.Errorf("a reader's status: %q", st)
		}
		bob.do(chromedp.Click(chromedp.CSS(`.ql-editor`)))
		bob.do(typeText("XYZ"))
		bob.do(key('b', chromedp.ModifierCtrl))
		quillSelect(ann, 6, 0)
		ann.do(typeText(" today"))
		doc := waitRichConvergedAs(t, ts.URL, admin, "notes", ann, bob)
		if got := plainOf(doc); got != "Agenda today\n" {
			t.Errorf("text %q", got)
		}
	})

	t.Run("OfflineReload", func(t *testing.T) {
		bind(t, ann, bob)
		ann.waitJS(`navigator.serviceWorker.controller !== null`, "controlled by the service worker")
		ann.setNetwork("offline")
		ann.waitJS(`window.tandem.client.status !== 'connected'`, "offline")
		quillSelect(ann, 0, 6)
		ann.do(key('b', chromedp.ModifierCtrl))
		quillSelect(ann, 12, 0)
		ann.do(typeText("\nfirst 🍜"))
		ann.waitJS(`window.tandem.client.pending > 0`, "holding the edits")
		want := eval[string](ann, `JSON.stringify(window.tandem.client.doc)`)
		ann.do(chromedp.Reload())
		ann.waitJS(fmt.Sprintf(`window.tandem?.quill && JSON.stringify(window.tandem.client.doc) === %q`, want), "the reloaded editor with the unsent edits")
		if got := eval[string](ann, `window.tandem.shown()`); got != "Agenda today\nfirst 🍜\n" {
			t.Errorf("the reloaded Quill shows %q", got)
		}
		if title := eval[string](ann, `document.querySelector('#doc-title').textContent`); title != "Notes" {
			t.Errorf("the title after a reload offline: %q", title)
		}
		ann.setNetwork("online")
		doc := waitRichConvergedAs(t, ts.URL, admin, "notes", ann, bob)
		if !isBold(doc, "Agenda") || plainOf(doc) != "Agenda today\nfirst 🍜\n" {
			t.Errorf("after the reload: %s", mustJSON(doc))
		}
	})
}

// quillSelect selects length units from index in the tab's Quill, as the
// user would (source "user": the binding sends it).
func quillSelect(tb *tab, index, length int) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`(window.tandem.quill.focus(), window.tandem.quill.setSelection(%d, %d, 'user'), true)`, index, length))
}

// richDoc is a Delta as the tests read it.
type richDoc []struct {
	Insert     json.RawMessage `json:"insert"`
	Attributes map[string]any  `json:"attributes,omitempty"`
}

// waitRichConverged waits until the server has nothing pending from the
// tabs, every tab's client holds the server's Delta, and every tab's Quill
// shows the same thing with the server's text; it returns the Delta.
// (Quill's view is compared with the others', not with the Delta: Quill
// shows one of the block formats a line can have at once, a heading and a
// list item both set concurrently, and unsafe addresses as about:blank.)
func waitRichConverged(t *testing.T, base, id string, tabs ...*tab) richDoc {
	t.Helper()
	return waitRichConvergedAs(t, base, "", id, tabs...)
}

func waitRichConvergedAs(t *testing.T, base, tok, id string, tabs ...*tab) richDoc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		server := serverDelta(t, base, tok, id)
		ok := true
		var firstQuill json.RawMessage
		for _, tb := range tabs {
			st := eval[string](tb, `JSON.stringify({pending: window.tandem.client.pending, doc: window.tandem.client.doc,
			  quill: window.tandem.quill ? window.tandem.quill.getContents().ops : null})`)
			var s struct {
				Pending int
				Doc     json.RawMessage
				Quill   json.RawMessage
			}
			if err := json.Unmarshal([]byte(st), &s); err != nil {
				t.Fatal(err)
			}
			if firstQuill == nil {
				firstQuill = s.Quill
			}
			var shown, want richDoc
			json.Unmarshal(s.Quill, &shown)
			json.Unmarshal(withNewline(server), &want)
			if s.Pending != 0 || canonical(s.Doc) != canonical(server) || canonical(s.Quill) != canonical(firstQuill) || plainOf(shown) != plainOf(want) {
				ok = false
				if time.Now().After(deadline) {
					t.Fatalf("%s has not converged after 30s:\nserver %s\nclient %s (%d pending)\nquill  %s\nthe last ops: %s", tb.name, server, s.Doc, s.Pending, s.Quill, lastOps(base, tok, id))
				}
			}
		}
		if ok {
			var d richDoc
			if err := json.Unmarshal(server, &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastOps is the server's last ten ops of document id, for a failure's
// message.
func lastOps(base, tok, id string) string {
	var out struct{ Ops []json.RawMessage }
	if err := getJSONAs(base+"/api/docs/"+id+"/ops?from=0", tok, &out); err != nil {
		return err.Error()
	}
	if len(out.Ops) > 10 {
		out.Ops = out.Ops[len(out.Ops)-10:]
	}
	var b strings.Builder
	for _, o := range out.Ops {
		b.WriteString("\n  ")
		b.Write(o)
	}
	return b.String()
}

// serverDelta is the server's Delta of document id.
func serverDelta(t *testing.T, base, tok, id string) json.RawMessage {
	t.Helper()
	var out struct{ Delta json.RawMessage }
	if err := getJSONAs(base+"/api/docs/"+id+"/text", tok, &out); err != nil {
		t.Fatalf("GET text: %v", err)
	}
	return out.Delta
}

// canonical is a Delta's canonical JSON (Quill writes attributes in its own
// key order), or "" when it is not a document.
func canonical(page json.RawMessage) string {
	d, err := rich.ParseDocumentJSON(page)
	if err != nil {
		return ""
	}
	if d, err = rich.NormalizeDocument(d); err != nil {
		return ""
	}
	// Through encoding/json once more: an embed's value is kept as written,
	// and the server's JSON escapes "<" where a page's does not.
	var v any
	if json.Unmarshal(d.AppendJSON(nil), &v) != nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// withNewline is d as Quill shows it: always ending with a newline.
func withNewline(d json.RawMessage) json.RawMessage {
	var doc richDoc
	json.Unmarshal(d, &doc)
	if strings.HasSuffix(plainOf(doc), "\n") {
		return d
	}
	var raw []any
	json.Unmarshal(d, &raw)
	b, _ := json.Marshal(append(raw, map[string]any{"insert": "\n"}))
	return b
}

// plainOf is the text of d, an embed as U+FFFC.
func plainOf(d richDoc) string {
	var b strings.Builder
	for _, c := range d {
		var s string
		if json.Unmarshal(c.Insert, &s) == nil {
			b.WriteString(s)
		} else {
			b.WriteString("\ufffc")
		}
	}
	return b.String()
}

func attrOf(d richDoc, word, key string) bool {
	for _, c := range d {
		var s string
		if json.Unmarshal(c.Insert, &s) == nil && strings.Contains(s, word) && c.Attributes[key] != nil {
			return true
		}
	}
	return false
}

func isBold(d richDoc, word string) bool   { return attrOf(d, word, "bold") }
func isItalic(d richDoc, word string) bool { return attrOf(d, word, "italic") }

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestBrowserNewDocumentTypes: "New document" makes a formatted document by
// default (Quill), or Markdown / plain text (CodeMirror) when chosen, and
// the list says which is which.
func TestBrowserNewDocumentTypes(t *testing.T) {
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	ann := newTab(t, browser, "Ann", "#e11d48")
	for _, c := range []struct {
		choice, title, typ, editor string
	}{{"", "Formatted one", "rich", ".ql-editor"}, {"plain", "Notes in Markdown", "plain", ".cm-editor"}} {
		ann.do(chromedp.Navigate(ts.URL + "/"))
		ann.waitJS(`document.querySelector('#new-doc') && !document.querySelector('#list-view').hidden`, "the list page")
		eval[bool](ann, fmt.Sprintf(`(() => {
		  document.querySelector('#new-title').value = %q;
		  if (%q) document.querySelector('#new-type').value = %q;
		  document.querySelector('#new-btn').click();
		  return true })()`, c.title, c.choice, c.choice))
		ann.waitJS(`location.pathname.startsWith('/d/')`, "the new document's editor")
		ann.waitConnected()
		if typ := eval[string](ann, `window.tandem.client.type`); typ != c.typ {
			t.Errorf("%s: a %s document, want %s", c.title, typ, c.typ)
		}
		ann.waitJS(fmt.Sprintf(`document.querySelector(%q) !== null`, c.editor), "the "+c.typ+" editor")
	}
	ann.do(chromedp.Navigate(ts.URL + "/"))
	ann.waitJS(`document.querySelectorAll('#doc-list li').length === 2`, "listing both")
	list := eval[string](ann, `document.querySelector('#doc-list').textContent`)
	for _, want := range []string{"Formatted one", "Formatted ·", "Notes in Markdown", "Markdown ·"} {
		if !strings.Contains(list, want) {
			t.Errorf("the list %q has no %q", list, want)
		}
	}
	if strings.Contains(list, " edits") {
		t.Errorf("the list counts edits: %q", list)
	}
}

// TestBrowserRichNoFinalNewline: Quill's document always ends with a
// newline; a Tandem document need not (an empty one, or one made by the
// API or another client). Formatting that last line makes the newline real
// and keeps the format, in an empty document and in one without it.
func TestBrowserRichNoFinalNewline(t *testing.T) {
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	for _, c := range []struct{ id, content, want string }{
		{"empty", `[]`, `[{"insert":"\n","attributes":{"header":1}}]`},
		{"no-newline", `[{"insert":"abc"}]`, `[{"insert":"abc"},{"insert":"\n","attributes":{"header":1}}]`},
	} {
		if err := ts.store.CreateDocument(context.Background(), storage.Document{ID: c.id, Title: c.id, Type: "rich", Created: time.Now()}, c.content); err != nil {
			t.Fatal(err)
		}
		ann := newTab(t, browser, "Ann", "#e11d48")
		ann.openCM(ts.URL, c.id)
		eval[bool](ann, `(window.tandem.quill.formatLine(0, 1, 'header', 1, 'user'), true)`)
		doc := waitRichConverged(t, ts.URL, c.id, ann)
		if got := mustJSON(doc); canonical(json.RawMessage(got)) != canonical(json.RawMessage(c.want)) {
			t.Errorf("%s: %s, want %s", c.id, got, c.want)
		}
		// The made-up newline is not an undo step: Ctrl+Z takes the heading
		// away and leaves the newline.
		ann.do(key('z', chromedp.ModifierCtrl))
		doc = waitRichConverged(t, ts.URL, c.id, ann)
		if plainOf(doc) != strings.TrimSuffix(plainOf(doc), "\n")+"\n" || attrOf(doc, "\n", "header") {
			t.Errorf("%s after undo: %s", c.id, mustJSON(doc))
		}
	}
}
