package web_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandemdocs/tandem/internal/web"
)

// TestBrowserWithTokens: the demo on a server that requires tokens, opened
// as `tandem token --link` prints it (the token in the #fragment): Ann,
// with write access, edits; Bob, with read access, sees her edits and her
// name (from her token, not from the page) and cannot type; the token
// leaves the address bar; a page without a token or with an expired one
// says what to do.
func TestBrowserWithTokens(t *testing.T) {
	browser := startBrowser(t)
	v, err := web.NewVerifier([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, serverOpts{web: web.Config{Auth: v}})
	seedDoc(t, ts, "trip", "Kyoto: ")
	seedDoc(t, ts, "secret-plans", "not for Bob")
	annTok := token(t, secret, "ann", time.Hour, "trip:write")
	bobTok := token(t, secret, "bob", time.Hour, "trip:read")
	admin := token(t, secret, "test", time.Hour, "*:admin")

	ann := newTab(t, browser, "Page name", "#000000")
	bob := newTab(t, browser, "Page name", "#000000")
	var wg sync.WaitGroup
	for _, p := range []struct {
		tb  *tab
		tok string
	}{{ann, annTok}, {bob, bobTok}} {
		wg.Go(func() {
			p.tb.do(chromedp.Navigate(ts.URL + "/d/trip?editor=textarea#token=" + p.tok))
			p.tb.waitConnected()
		})
	}
	wg.Wait()
	for _, tb := range []*tab{ann, bob} {
		if href := eval[string](tb, `location.href`); strings.Contains(href, "token") {
			t.Errorf("the token stayed in the address bar: %s", href)
		}
	}
	if name := eval[string](ann, `document.querySelector('#my-name').value`); name != "Name ann" {
		t.Errorf("Ann's page calls her %q, want her token's name", name)
	}

	ann.caretBefore("")
	ann.do(typeText("temples"))
	waitConvergedAs(t, ts.URL, admin, "trip", "Kyoto: temples", ann, bob)
	bob.waitJS(`[...window.tandem.client.peers.values()].some(p => p.name === 'Name ann')`, "showing Ann by her token's name")

	// Bob's editor is read-only: his keys change nothing, here or on the
	// server.
	if !eval[bool](bob, `document.querySelector('#editor').readOnly && !!document.querySelector('.view-only')`) {
		t.Errorf("Bob's editor is not marked read-only: %s", bob.state())
	}
	bob.caretBefore("")
	bob.do(typeText("XYZ"))
	ann.caretBefore("")
	ann.do(typeText("!"))
	waitConvergedAs(t, ts.URL, admin, "trip", "Kyoto: temples!", ann, bob)

	// The list shows only what the token opens.
	bob.do(chromedp.Navigate(ts.URL + "/"))
	bob.waitJS(`document.querySelectorAll('#doc-list li').length === 1`, "listing one document")
	if list := eval[string](bob, `document.querySelector('#doc-list').textContent`); strings.Contains(list, "secret") {
		t.Errorf("Bob's list: %q", list)
	}

	// No token: the page says how to get in. An expired one: it says so.
	carol := newTab(t, browser, "Carol", "#16a34a")
	carol.do(chromedp.Navigate(ts.URL + "/"))
	carol.waitJS(`!document.querySelector('#list-error').hidden && document.querySelector('#list-error').textContent.includes('access link')`, "asking for an access link")
	expired := token(t, secret, "carol", -time.Minute, "trip:write")
	carol.do(chromedp.Navigate(ts.URL + "/d/trip#token=" + expired))
	carol.waitJS(`!document.querySelector('#editor-error').hidden && document.querySelector('#editor-error').textContent.includes('expired')`, "saying the link expired")
	// ... and stops saying "Connecting…" and "Loading…", without promising
	// to keep edits where there is no editor.
	carol.waitJS(`document.querySelector('#conn-text').textContent === 'Not connected' && !document.querySelector('[aria-busy]')`, "not connected, nothing loading")
	if msg := eval[string](carol, `document.querySelector('#editor-error').textContent`); strings.Contains(msg, "kept") {
		t.Errorf("the expired banner promises kept edits with no editor: %q", msg)
	}
	// A garbled token: the same.
	carol.do(chromedp.Navigate(ts.URL + "/d/trip#token=garbled.not.a.token"))
	carol.do(chromedp.Reload())
	carol.waitJS(`!document.querySelector('#editor-error').hidden && document.querySelector('#conn-text').textContent === 'Not connected'`, "a garbled link refused, not connecting forever")

	// A reader's list has no New document (the server would refuse it).
	bob.waitJS(`document.querySelector('#new-doc').hidden`, "hiding New document from a reader")
	// In CodeMirror (the default editor) a reader gets no caret to type
	// with, and the status does not say "saved".
	bob.do(chromedp.Navigate(ts.URL + "/d/trip"))
	bob.waitConnected()
	if got := eval[string](bob, `document.querySelector('.cm-content').getAttribute('contenteditable') + ' ' + document.querySelector('#conn-text').textContent`); got != "false Connected · view only" {
		t.Errorf("a reader's CodeMirror: %q", got)
	}
}
