package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserCodeMirror: the demo's default editor, CodeMirror 6 bound by
// /js/codemirror.js, in a real browser with two (then three) people.
func TestBrowserCodeMirror(t *testing.T) {
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	base := ts.URL

	const head, tail = "# Kyoto 🗾\n\nPacking:\n- ", "\n\n## Ideas\n- "
	id := ts.createDoc(t, "Trip notes", head+"|"+tail)
	ann := newTab(t, browser, "Ann", "#e11d48")
	bob := newTab(t, browser, "Bob", "#2563eb")
	var wg sync.WaitGroup
	for _, tb := range []*tab{ann, bob} {
		wg.Go(func() { tb.openCM(base, id) })
	}
	wg.Wait()
	prefix, annText, bobText := "", "", ""
	want := func() string { return prefix + head + annText + "|" + tail + bobText }

	t.Run("ConcurrentTyping", func(t *testing.T) {
		bind(t, ann, bob)
		ann.caretBefore("|")
		bob.caretBefore("")
		a, b := "héllo 😀 👨‍👩‍👧 漢字 ", "temples ⛩️ and ramen 🍜\n- wörld 日本語"
		var wg sync.WaitGroup
		wg.Go(func() { ann.do(typeText(a)) })
		wg.Go(func() { bob.do(typeText(b)) })
		wg.Wait()
		annText, bobText = a, b
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("RemoteCaretAndLabel", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann sees Bob's caret at the end of the last line, labelled with
		// his name in his colour; and the other way round.
		for _, c := range []struct {
			viewer   *tab
			name     string
			lastLine bool
		}{{ann, "Bob", true}, {bob, "Ann", false}} {
			c.viewer.waitJS(fmt.Sprintf(`(() => {
			  const label = [...document.querySelectorAll('.cm-tandem-caret .cm-tandem-label')].find(l => l.textContent === %q);
			  if (!label) return false;
			  const line = label.closest('.cm-line');
			  const lines = [...document.querySelectorAll('.cm-content .cm-line')];
			  return %v ? line === lines[lines.length - 1] : line.textContent.includes('|');
			})()`, c.name, c.lastLine), "showing "+c.name+"'s caret where it is")
		}
		// The label sits on the caret's own line, not over the line above.
		if got := eval[string](ann, `(() => {
		  const label = [...document.querySelectorAll('.cm-tandem-caret .cm-tandem-label')].find(l => l.textContent === 'Bob');
		  const line = label.closest('.cm-line').getBoundingClientRect();
		  const box = label.getBoundingClientRect();
		  return box.top >= line.top - 2 && box.bottom <= line.bottom + 2 ? '' : 'label ' + box.top + '–' + box.bottom + ', line ' + line.top + '–' + line.bottom;
		})()`); got != "" {
			t.Errorf("Bob's label covers another line: %s", got)
		}
		// Markdown headings are bold, not underlined like links.
		if got := eval[string](ann, `(() => {
		  const line = [...document.querySelectorAll('.cm-content .cm-line')].find(l => l.textContent.startsWith('# '));
		  const spans = [...line.querySelectorAll('span')];
		  const bad = spans.filter(s => getComputedStyle(s).textDecorationLine.includes('underline'));
		  return bad.length ? 'underlined: ' + bad.map(s => s.textContent).join(',') : (spans.some(s => Number(getComputedStyle(s).fontWeight) >= 600) ? '' : 'not bold');
		})()`); got != "" {
			t.Errorf("the heading: %s", got)
		}
	})

	t.Run("SelectionStaysWhereItBelongs", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann's caret is before "|"; Bob types at the very start. Ann's caret
		// moves with her text, not with the offsets.
		ann.caretBefore("|")
		bob.caretBefore("# Kyoto")
		bob.do(typeText("✈️ "))
		prefix = "✈️ "
		waitConverged(t, base, id, want(), ann, bob)
		if ok := eval[bool](ann, `(() => { const v = window.tandem.view; return v.state.selection.main.head === v.state.doc.toString().indexOf('|') })()`); !ok {
			t.Fatalf("Ann's caret moved off its place: %s", ann.state())
		}
		ann.do(typeText("!"))
		annText += "!"
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("UndoOwnEditsOnly", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann types at the top, Bob at the end; Ann's Ctrl+Z undoes her
		// words only, Ctrl+Shift+Z brings them back.
		before := want()
		ann.caretBefore("# Kyoto")
		ann.do(typeText("DRAFT "))
		bob.caretBefore("")
		bob.do(typeText(" 🍵"))
		bobText += " 🍵"
		withAnn := strings.Replace(want(), "# Kyoto", "DRAFT # Kyoto", 1)
		waitConverged(t, base, id, withAnn, ann, bob)
		ann.do(key('z', chromedp.ModifierCtrl))
		waitConverged(t, base, id, want(), ann, bob)
		if want() == before {
			t.Fatal("test bug: Bob's edit is missing")
		}
		ann.do(key('z', chromedp.ModifierCtrl|chromedp.ModifierShift))
		waitConverged(t, base, id, withAnn, ann, bob)
		ann.do(key('z', chromedp.ModifierCtrl))
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("ReadableLabels", func(t *testing.T) {
		bind(t, ann, bob)
		// A yellow participant's label is written in black.
		carol := newTab(t, browser, "Carol", "#facc15")
		carol.openCM(base, id)
		carol.caretBefore("##")
		carol.do(typeText(" "))
		bob.waitJS(`(() => {
		  const l = [...document.querySelectorAll('.cm-tandem-label')].find(l => l.textContent === 'Carol');
		  return l && getComputedStyle(l).color === 'rgb(0, 0, 0)';
		})()`, "showing Carol's label in black on yellow")
		carol.do(key('z', chromedp.ModifierCtrl))
		waitConverged(t, base, id, want(), ann, bob, carol)
	})

	t.Run("PreviewIsSanitised", func(t *testing.T) {
		bind(t, ann, bob)
		// Bob types HTML that would run script in anyone's preview: Ann's
		// preview shows the text, runs none of it, and keeps safe links.
		const evil = "\n<img src=x onerror=\"window.__pwned='img'\">\n[click](javascript:window.__pwned='link')\n<script>window.__pwned='script'</script>\n<a href=\"https://example.com/\">fine</a> **bold**\n"
		if !eval[bool](ann, `document.querySelector('#preview').hidden`) {
			t.Fatal("the preview is on before anyone turned it on")
		}
		eval[bool](ann, `(document.querySelector('#preview-toggle').click(), true)`)
		bob.caretBefore("")
		eval[bool](bob, fmt.Sprintf(`(() => { const v = window.tandem.view; v.dispatch(v.state.replaceSelection(%q)); return true })()`, evil))
		bobText += evil
		waitConverged(t, base, id, want(), ann, bob)
		ann.waitJS(`document.querySelector('#preview strong')?.textContent === 'bold'`, "rendering the Markdown")
		ann.waitJS(`document.querySelector('#preview a[href="https://example.com/"]')?.rel.includes('noopener')`, "keeping the safe link")
		// Give an img's error event its chance, and follow the bad link.
		eval[bool](ann, `(document.querySelectorAll('#preview a').forEach(a => a.getAttribute('href') !== 'https://example.com/' && a.click()), true)`)
		ann.waitJS(`[...document.querySelectorAll('#preview img')].every(i => i.complete)`, "images settled")
		got := eval[string](ann, `JSON.stringify({pwned: window.__pwned ?? null,
		  handlers: [...document.querySelectorAll('#preview *')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on')),
		  scripts: document.querySelectorAll('#preview script').length,
		  js: [...document.querySelectorAll('#preview a')].filter(a => /^\s*javascript:/i.test(a.getAttribute('href') || '')).length})`)
		if got != `{"pwned":null,"handlers":[],"scripts":0,"js":0}` {
			t.Fatalf("the preview let script through: %s", got)
		}
		// The page itself refuses inline script (Content-Security-Policy).
		if csp := eval[bool](ann, `(() => { const s = document.createElement('script'); s.textContent = "window.__inline = 1"; document.body.append(s); return window.__inline === undefined })()`); !csp {
			t.Fatal("an inline script ran: the page's CSP does not forbid it")
		}
		eval[bool](ann, `(document.querySelector('#preview-toggle').click(), true)`)
	})

	t.Run("Rename", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann renames the document from its title; Bob's page follows.
		eval[bool](ann, `(document.querySelector('#doc-title').click(), true)`)
		ann.waitJS(`document.activeElement === document.querySelector('#doc-title-input')`, "editing the title")
		ann.do(chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)), typeText("Kyoto, spring 🌸\n"))
		bob.waitJS(`document.querySelector('#doc-title').textContent === 'Kyoto, spring 🌸' && document.title.startsWith('Kyoto, spring 🌸')`, "showing the new title")
		ann.waitJS(`!document.querySelector('#doc-title').hidden && document.querySelector('#doc-title-input').hidden`, "back to the title")
		if title := eval[string](bob, `window.tandem.client.title`); title != "Kyoto, spring 🌸" {
			t.Fatalf("Bob's client has the title %q", title)
		}
	})

	t.Run("UndoButtons", func(t *testing.T) {
		bind(t, ann, bob)
		// A fresh tab has nothing to undo: its buttons say so.
		dan := newTab(t, browser, "Dan", "#0891b2")
		dan.openCM(base, id)
		dan.waitJS(`document.querySelector('#undo').disabled && document.querySelector('#redo').disabled`, "undo and redo disabled")
		dan.caretBefore("")
		dan.do(typeText("x"))
		dan.waitJS(`!document.querySelector('#undo').disabled && document.querySelector('#redo').disabled`, "undo enabled after an edit")
		eval[bool](dan, `(document.querySelector('#undo').click(), true)`)
		dan.waitJS(`document.querySelector('#undo').disabled && !document.querySelector('#redo').disabled`, "redo enabled after the undo")
		waitConverged(t, base, id, want(), ann, bob, dan)
	})

	t.Run("HistorySessionsAndRestore", func(t *testing.T) {
		bind(t, ann, bob)
		// Sessions are runs of edits without a pause (shortened here to 3
		// s: typing a few keys on a loaded machine stays well within it);
		// two people typing at once make one session.
		const pause = 3 * time.Second
		for _, tb := range []*tab{ann, bob} {
			eval[bool](tb, fmt.Sprintf(`(window.tandemHistoryPause = %d, true)`, pause.Milliseconds()))
		}
		before := want()
		// The pause itself: wait until the last commit is older than it
		// (by the server's clock, which stamps the commits).
		waitUntilQuiet(t, base, id, pause+500*time.Millisecond)
		ann.caretBefore("# Kyoto")
		bob.caretBefore("")
		var wg sync.WaitGroup
		wg.Go(func() { ann.do(typeText("NEW ")) })
		wg.Go(func() { bob.do(typeText(" + tea")) })
		wg.Wait()
		prefix = strings.Replace(prefix, "✈️ ", "✈️ NEW ", 1)
		bobText += " + tea"
		after := want()
		waitConverged(t, base, id, after, ann, bob)

		eval[bool](ann, `(document.querySelector('#history-toggle').click(), true)`)
		ann.waitJS(`!document.querySelector('#changes-panel').hidden && document.querySelectorAll('#changes .change').length > 1`, "the sessions listed")
		if who := eval[string](ann, `document.querySelector('#changes .change .change-who').textContent`); who != "Ann and Bob" && who != "Bob and Ann" {
			t.Errorf("the newest session is by %q, want Ann and Bob together", who)
		}
		// One step back on the slider: the version before both typed.
		eval[bool](ann, `(() => { const s = document.querySelector('#history-slider'); s.value = String(Number(s.max) - 1); s.dispatchEvent(new Event('input')); return true })()`)
		ann.waitJS(fmt.Sprintf(`document.querySelector('#history-text').textContent === %q`, before), "showing the version before")
		// Restore asks first.
		eval[bool](ann, `(document.querySelector('#history-restore').click(), true)`)
		ann.waitJS(`!document.querySelector('#history-confirm').hidden`, "asking to confirm")
		// One row: the question, Restore and Cancel; the version's line
		// whole.
		if got := eval[string](ann, `(() => {
		  const out = [];
		  const bar = document.querySelector('#history-confirm').getBoundingClientRect();
		  const yes = document.querySelector('#history-confirm-yes').getBoundingClientRect();
		  const no = document.querySelector('#history-confirm-no').getBoundingClientRect();
		  if (Math.abs(yes.top - no.top) > 2) out.push('Restore and Cancel on two rows');
		  if (!document.querySelector('#history-close').hidden) out.push('Back to editing beside Cancel');
		  const rev = document.querySelector('.history-rev');
		  if (rev.scrollWidth > rev.clientWidth + 1) out.push('the version line cut');
		  if (bar.height > 3 * yes.height) out.push('the confirmation ' + bar.height + 'px high');
		  return out.join('; ');
		})()`); got != "" {
			t.Errorf("the restore confirmation: %s", got)
		}
		eval[bool](ann, `(document.querySelector('#history-confirm-yes').click(), true)`)
		waitConverged(t, base, id, before, ann, bob)
		bob.waitJS(`!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.includes('Ann restored')`, "telling Bob who restored")
		// Ann's toast undoes it.
		ann.waitJS(`document.querySelector('#toast .toast-action')?.textContent === 'Undo'`, "offering Undo")
		eval[bool](ann, `(document.querySelector('#toast .toast-action').click(), true)`)
		waitConverged(t, base, id, after, ann, bob)
		if !eval[bool](ann, `document.querySelector('#changes-panel').hidden && document.querySelector('#history-view').hidden`) {
			t.Error("the history's panels are still shown while editing")
		}
	})

	t.Run("Screenshots", func(t *testing.T) {
		bind(t, ann, bob)
		for _, size := range []struct{ w, h int64 }{{1280, 800}, {390, 844}} {
			ann.do(chromedp.EmulateViewport(size.w, size.h))
			ann.waitJS(fmt.Sprintf(`innerWidth === %d`, size.w), "resized")
			shot, err := chromedp.Run(ann.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			checkNotBlank(t, shot)
			if size.w < 500 {
				// A phone: the title whole, the status in words, the people
				// in view, and nothing wider than the screen.
				got := eval[string](ann, `(() => {
				  const vis = e => e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
				  const title = document.querySelector('#doc-title');
				  const out = [];
				  if (title.clientWidth < Math.min(title.scrollWidth, 120)) out.push('title cut to ' + title.clientWidth + 'px of ' + title.scrollWidth);
				  if (!vis(document.querySelector('#conn-text')) || document.querySelector('#conn-text').getBoundingClientRect().width < 40) out.push('no status in words');
				  const people = [...document.querySelectorAll('#people .person')].filter(vis);
				  if (people.length < 2) out.push(people.length + ' people shown');
				  if (document.documentElement.scrollWidth > innerWidth) out.push('page wider than the screen: ' + document.documentElement.scrollWidth);
				  return out.join('; ');
				})()`)
				if got != "" {
					t.Errorf("layout at %dx%d: %s", size.w, size.h, got)
				}
			}
			path := artifactPath(t, fmt.Sprintf("codemirror-%dx%d.png", size.w, size.h))
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ann.do(chromedp.EmulateViewport(1280, 800))
	})

	t.Run("DeletedWhileOpen", func(t *testing.T) {
		bind(t, ann, bob)
		// The document is deleted under Ann: her text stays on screen, read
		// only, with a button to copy it.
		shown := ann.value()
		if status, code := ts.deleteDoc(t, id); status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", status, code)
		}
		ann.waitJS(`!document.querySelector('#editor-error').hidden && document.querySelector('#editor-error').textContent.includes('deleted')`, "saying the document was deleted")
		if got := ann.value(); got != shown {
			t.Fatalf("the text changed when the document was deleted: %q", got)
		}
		if !eval[bool](ann, `window.tandem.view.state.readOnly && !!document.querySelector('#editor-error button')`) {
			t.Fatal("the deleted document's text is editable, or there is no copy button")
		}
	})
}

// TestBrowserCodeMirrorLargeDocument: a 1 MB document opens and stays
// editable, and the time from a key press to the next frame is measured
// (logged, never asserted: CI machines vary).
func TestBrowserCodeMirrorLargeDocument(t *testing.T) {
	if testing.Short() {
		t.Skip("a 1 MB document: -short skips it")
	}
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "Line %d: the quick brown fox 🦊 jumps over the lazy dog 犬.\n", i)
		if i%5 == 4 {
			b.WriteString("\n")
		}
	}
	text := b.String()
	id := ts.createDoc(t, "Large", text)
	ann := newTab(t, browser, "Ann", "#e11d48")
	bob := newTab(t, browser, "Bob", "#2563eb")
	start := time.Now()
	ann.openCM(ts.URL, id)
	t.Logf("1 MB document open and editable in %v", time.Since(start).Round(time.Millisecond))
	bob.openCM(ts.URL, id)

	// Keystroke to frame: from keydown to the first animation frame after
	// the change is in the DOM.
	eval[bool](ann, `(window.__lat = [], document.addEventListener('keydown', () => {
	  const t0 = performance.now(); requestAnimationFrame(() => setTimeout(() => window.__lat.push(performance.now() - t0))) }, true), true)`)
	ann.caretBefore("Line 5000:")
	const typed = "typing in the middle 😀 "
	// One key at a time, each after the last one's frame: the latency of
	// a key, not of a backlog.
	n := 0
	for _, r := range typed {
		ann.do(typeText(string(r)))
		n++
		ann.waitJS(fmt.Sprintf(`window.__lat.length >= %d`, n), "the key's frame")
	}
	bob.caretBefore("Line 9000:")
	bob.do(typeText("and here 漢字 "))
	want := strings.Replace(strings.Replace(text, "Line 5000:", typed+"Line 5000:", 1), "Line 9000:", "and here 漢字 Line 9000:", 1)
	waitConverged(t, ts.URL, id, want, ann, bob)
	lat := eval[[]float64](ann, `window.__lat`)
	if len(lat) == 0 {
		t.Fatal("no keystroke was timed")
	}
	slices.Sort(lat)
	t.Logf("keystroke to frame, 1 MB document, %d keys: median %.1f ms, max %.1f ms", len(lat), lat[len(lat)/2], lat[len(lat)-1])
}

// waitUntilQuiet waits until document id's last commit is at least quiet
// old, by the server's own record of it.
func waitUntilQuiet(t *testing.T, base, id string, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(quiet + 30*time.Second)
	for {
		resp, err := http.Get(base + "/api/docs/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Updated time.Time }
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(d.Updated) >= quiet {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %s still changing after %v", id, quiet+30*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
