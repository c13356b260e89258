package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserOfflineReload: with the server gone, reloading the editor
// still opens it (the service worker's copy of the page) with the edits
// that were never sent, and they reach the server once it is back.
func TestBrowserOfflineReload(t *testing.T) {
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	id := ts.createDoc(t, "Offline", "Packing list:\n")
	ann := newTab(t, browser, "Ann", "#e11d48")
	ann.openCM(ts.URL, id)
	ann.waitJS(`navigator.serviceWorker.controller !== null`, "controlled by the service worker")

	// The server goes away with an edit unsent.
	ts.shutdown()
	ann.waitJS(`window.tandem.client.status !== 'connected'`, "disconnected")
	ann.caretBefore("")
	ann.do(typeText("- umbrella ☔"))
	ann.waitJS(`window.tandem.client.pending > 0`, "holding the edit")

	ann.do(chromedp.Reload())
	ann.waitJS(`window.tandem?.shown?.() === 'Packing list:\n- umbrella ☔'`, "the reloaded editor with the unsent edit")
	if st := eval[string](ann, `window.tandem.client.status`); st == "connected" {
		t.Fatalf("connected to a server that is down: %s", ann.state())
	}
	if ind := eval[string](ann, `document.querySelector('#conn').textContent`); !strings.Contains(ind, "saved on this device") {
		t.Errorf("the indicator says %q", ind)
	}
	// The title kept with the edits, and a way to try again at once.
	if title := eval[string](ann, `document.querySelector('#doc-title').textContent`); title != "Offline" {
		t.Errorf("the title after the reload: %q", title)
	}
	// (Within seconds, not the 12 s and more the first connection can take
	// to fail: the page counts from its load.)
	ann.waitJS(`!document.querySelector('#retry').hidden || performance.now() > 8000`, "offering Retry now")
	if eval[bool](ann, `document.querySelector('#retry').hidden`) {
		t.Errorf("no Retry 8 s after the reload: %s", ann.state())
	}

	// The list page, with the server down: the documents this browser
	// remembers, not "Failed to fetch" over an empty list.
	ann.do(chromedp.Navigate(ts.URL + "/"))
	ann.waitJS(`document.querySelectorAll('#doc-list li').length === 1 && document.querySelector('#doc-list').textContent.includes('Offline')`, "listing the remembered document")
	if msg := eval[string](ann, `document.querySelector('#list-error').textContent`); strings.Contains(msg, "Failed to fetch") {
		t.Errorf("the list page says %q", msg)
	}
	ann.do(chromedp.Navigate(ts.URL + "/d/" + id))
	ann.waitJS(`window.tandem?.shown?.() === 'Packing list:\n- umbrella ☔'`, "the editor again, from the list")

	// The server is back (same data, same address): the edit arrives.
	back := ts.restartAt(t)
	eval[bool](ann, `(window.tandem.client.retry(), true)`)
	waitConverged(t, back.URL, id, "Packing list:\n- umbrella ☔", ann)
}
