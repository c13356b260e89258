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

	// The server is back (same data, same address): the edit arrives.
	back := ts.restartAt(t)
	eval[bool](ann, `(window.tandem.client.retry(), true)`)
	waitConverged(t, back.URL, id, "Packing list:\n- umbrella ☔", ann)
}
