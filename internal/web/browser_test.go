package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	"image/png"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser tests drive Debian's chromium (headless) against a real
// server: Badger in a temp dir, the collab manager and the routes of
// web.New, with the embedded demo page and client library.
//
// Without a chromium binary they skip, unless TANDEM_REQUIRE_BROWSER=1 (CI
// sets it): then they fail. TANDEM_CHROMIUM names the binary explicitly.

// findChromium returns the browser binary, or "".
func findChromium() string {
	if p := os.Getenv("TANDEM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts one headless chromium for the test, with a fresh
// profile, and returns its context (tabs are children of it).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := findChromium()
	if bin == "" {
		msg := "browser tests need chromium: no chromium, chromium-browser or google-chrome on PATH " +
			"(install it with `apt-get install -y chromium`, or set TANDEM_CHROMIUM to the binary)"
		if os.Getenv("TANDEM_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; TANDEM_REQUIRE_BROWSER=1 makes this a failure")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.DisableGPU,
		// Without these Chromium keeps trying to reach outside hosts.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", bin, err)
	}
	return ctx
}

// initScript runs in every page of a tab before the page's own scripts: it
// sets the user's name and colour, as the demo keeps them.
const initScript = `localStorage.setItem('tandem.name', %q); localStorage.setItem('tandem.color', %q);`

// tab is one browser tab in its own browser context (separate storage,
// as a second person on another machine).
type tab struct {
	t     *testing.T
	ctx   context.Context
	name  string
	color string

	mu         sync.Mutex
	exceptions []string // uncaught JavaScript exceptions of the tab's pages
}

func newTab(t *testing.T, browser context.Context, name, color string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(initScript, name, color)}); err != nil {
		t.Fatal(err)
	}
	// Accept "leave the page?" (the demo asks when edits are unsent).
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			t.Logf("%s: accepting %s dialog", name, ev.Type)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	tb := &tab{t: t, ctx: ctx, name: name, color: color}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			tb.mu.Lock()
			tb.exceptions = append(tb.exceptions, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.exceptions {
			t.Errorf("%s: uncaught exception in the page: %s", name, e)
		}
	})
	return tb
}

// bind makes the tabs report to t, a subtest, until it ends: a helper that
// fails then fails that subtest, where it happened, instead of calling
// FailNow on the parent from the subtest's goroutine (which ends the
// parent and silently skips the subtests after it).
func bind(t *testing.T, tabs ...*tab) {
	for _, tb := range tabs {
		prev := tb.t
		tb.t = t
		t.Cleanup(func() { tb.t = prev })
	}
}

// do runs actions with a deadline.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: eval %s: %v", tb.name, js, err)
	}
	return v
}

// open loads the editor of document id and waits until it is connected
// and editable.
func (tb *tab) open(base, id string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(base + "/d/" + id + "?editor=textarea"))
	tb.waitConnected()
}

// openCM loads the editor of document id with CodeMirror (the demo's
// default) and waits until it is connected and editable.
func (tb *tab) openCM(base, id string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(base + "/d/" + id))
	tb.waitConnected()
}

func (tb *tab) waitConnected() {
	tb.t.Helper()
	tb.waitJS(`window.tandem?.client?.status === 'connected' && (window.tandem.client.type === 'rich' ? !!window.tandem.quill
	  : window.tandem.mode === 'codemirror' ? !!window.tandem.view : !document.querySelector('#editor').disabled)`, "connected")
}

// waitJS polls a JavaScript condition.
func (tb *tab) waitJS(cond, what string) {
	tb.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if eval[bool](tb, `!!(`+cond+`)`) {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: not %s after 15s: %s", tb.name, what, tb.state())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tb *tab) state() string {
	return eval[string](tb, `JSON.stringify({status: window.tandem?.client?.status, pending: window.tandem?.client?.pending,
	  rev: window.tandem?.client?.rev, shown: window.tandem?.shown?.(), indicator: document.querySelector('#conn')?.textContent})`)
}

// value is the text the tab's editor shows.
func (tb *tab) value() string { return eval[string](tb, `window.tandem.shown()`) }

// caretBefore puts the caret before the first occurrence of marker (or at
// the end when marker is "").
func (tb *tab) caretBefore(marker string) {
	tb.t.Helper()
	ok := eval[bool](tb, fmt.Sprintf(`(() => {
	  const v = window.tandem.shown();
	  const i = %q === '' ? v.length : v.indexOf(%q);
	  if (i < 0) return false;
	  window.tandem.setCaret(i);
	  return true;
	})()`, marker, marker))
	if !ok {
		tb.t.Fatalf("%s: no %q in %q", tb.name, marker, tb.value())
	}
}

// typeText types s into the focused textarea key by key, as a keyboard
// would. chromedp's kb encodes printable characters; format characters
// such as U+200D (ZERO WIDTH JOINER, inside "👨‍👩‍👧") get a char event
// of their own, as an input method would send them.
func typeText(s string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range s {
			events := kb.Encode(r)
			switch {
			case r == '\n':
				// One keyDown that carries its text, as a real Enter key: the
				// browser makes the keypress itself, and not when the page
				// handled the keydown (CodeMirror does). kb's separate char
				// event would insert a second line break there.
				enter := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter",
					WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Text: "\r", UnmodifiedText: "\r"}
				up := enter
				up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
				events = []*input.DispatchKeyEventParams{&enter, &up}
			case !unicode.IsPrint(r):
				events = []*input.DispatchKeyEventParams{{Type: input.DispatchKeyEventTypeChar, Text: string(r), UnmodifiedText: string(r)}}
			}
			for _, ev := range events {
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// key presses a key with modifiers (kb.Encode of r).
func key(r rune, modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	if modifiers&chromedp.ModifierShift != 0 {
		// A real keyboard reports Shift+z as "Z" (CodeMirror's keymaps
		// go by that).
		r = unicode.ToUpper(r)
	}
	return chromedp.KeyEvent(string(r), chromedp.KeyModifiers(modifiers))
}

// serverText is the document's text as the server has it.
func serverText(t *testing.T, base, id string) (string, int64) {
	t.Helper()
	return serverTextAs(t, base, "", id)
}

// serverTextAs reads the server's text with a bearer token ("" for none).
func serverTextAs(t *testing.T, base, tok, id string) (string, int64) {
	t.Helper()
	var d struct {
		Text string
		Rev  int64
	}
	if err := getJSONAs(base+"/api/docs/"+id, tok, &d); err != nil {
		t.Fatal(err)
	}
	return d.Text, d.Rev
}

// getJSONAs GETs url with a bearer token ("" for none) and decodes the
// answer into out; an answer other than 200 is an error.
func getJSONAs(url, tok string, out any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// waitConverged waits until every tab has nothing pending and shows the
// server's text, and checks that text is want.
func waitConverged(t *testing.T, base, id, want string, tabs ...*tab) {
	t.Helper()
	waitConvergedAs(t, base, "", id, want, tabs...)
}

// waitConvergedAs is waitConverged reading the server's text with a token.
func waitConvergedAs(t *testing.T, base, tok, id, want string, tabs ...*tab) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		srv, _ := serverTextAs(t, base, tok, id)
		same := srv == want
		for _, tb := range tabs {
			if !same {
				break
			}
			same = eval[bool](tb, fmt.Sprintf(`window.tandem.client.pending === 0 && window.tandem.client.status === 'connected' &&
			  window.tandem.client.text === %q && window.tandem.shown() === %q`, want, want))
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("not converged after 20s\nwant   %q\nserver %q", want, srv)
			for _, tb := range tabs {
				msg += fmt.Sprintf("\n%-6s %s", tb.name, tb.state())
			}
			msg += "\n" + missingOrExtra(want, srv)
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// missingOrExtra compares the characters of want and got as multisets.
func missingOrExtra(want, got string) string {
	count := map[rune]int{}
	for _, r := range want {
		count[r]++
	}
	for _, r := range got {
		count[r]--
	}
	var b strings.Builder
	for r, n := range count {
		switch {
		case n > 0:
			fmt.Fprintf(&b, "missing %q ×%d; ", r, n)
		case n < 0:
			fmt.Fprintf(&b, "extra %q ×%d; ", r, -n)
		}
	}
	if b.Len() == 0 {
		return "same characters, different order"
	}
	return b.String()
}

// setNetwork sets a tab's network:
//
//   - "offline": every request fails, and navigator.onLine is false (the
//     page gets the "offline" event);
//   - "online".
//
// Checked with Chromium 150 and 156: emulating offline does not close a
// WebSocket that is already open, it only stalls it (its frames are
// delivered when the network comes back) while new connections fail. The
// client drops its socket itself on the "offline" event (client.js
// _onOffline) and reconnects on "online", which is what the test relies on;
// a client that did not would sit on the stalled socket until its ack
// timeout.
//
// The DevTools calls for this have changed shape across the Chromium
// versions Debian ships (148 requires emulateNetworkConditionsByRule's
// top-level "offline", which later versions deprecate and cdproto v0.159 no
// longer sends), so the parameters are written out here; a browser that
// refuses the per-rule calls gets the older emulateNetworkConditions that
// every version still takes. Neither call fails WebSocket handshakes on
// every version, nor does setBlockedURLs (checked: 150 and 156 open a
// WebSocket under all three), so a test that needs new WebSockets to fail
// while pages load says so to the server (testServer.refuseWebSockets).
func (tb *tab) setNetwork(mode string) {
	tb.t.Helper()
	var rules []*network.Conditions
	switch mode {
	case "offline":
		rules = append(rules, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
	case "online":
	default:
		tb.t.Fatalf("setNetwork %q", mode)
	}
	offline := mode == "offline"
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		tb.t.Fatalf("%s: Network.enable: %v", tb.name, err)
	}
	_, errRules := chromedp.Call(ctx, emulateByRule, byRuleParams{Offline: offline, MatchedNetworkConditions: rules})
	_, errState := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{
		Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
	if errRules == nil && errState == nil {
		return
	}
	tb.t.Logf("%s: this chromium refuses the per-rule network calls (%v; %v): using emulateNetworkConditions", tb.name, errRules, errState)
	if _, err := chromedp.Call(ctx, emulateConditions, emulateConditionsParams{
		Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		tb.t.Fatalf("%s: Network.emulateNetworkConditions: %v", tb.name, err)
	}
}

// The DevTools network calls, with their parameters as every Chromium from
// 148 on takes them (see setNetwork).
type (
	byRuleParams struct {
		Offline                  bool                  `json:"offline"`
		MatchedNetworkConditions []*network.Conditions `json:"matchedNetworkConditions"`
	}
	emulateConditionsParams struct {
		Offline            bool    `json:"offline"`
		Latency            float64 `json:"latency"`
		DownloadThroughput float64 `json:"downloadThroughput"`
		UploadThroughput   float64 `json:"uploadThroughput"`
	}
)

var (
	emulateByRule     = cdp.Command[byRuleParams, json.RawMessage]{Method: network.CommandEmulateNetworkConditionsByRule}
	emulateConditions = cdp.Command[emulateConditionsParams, json.RawMessage]{Method: "Network.emulateNetworkConditions"}
)

// artifactPath is where a test artifact goes: $TANDEM_ARTIFACTS or a
// temp dir.
func artifactPath(t *testing.T, name string) string {
	dir := os.Getenv("TANDEM_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// checkNotBlank decodes an image and checks it has some structure: several
// colours and a pixel variance well above a blank page's.
func checkNotBlank(t *testing.T, data []byte) {
	t.Helper()
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot does not decode: %v", err)
	}
	b := img.Bounds()
	colors := map[uint32]bool{}
	var sum, sumSq, n float64
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[(r>>11)<<10|(g>>11)<<5|bl>>11] = true
			l := 0.299*float64(r>>8) + 0.587*float64(g>>8) + 0.114*float64(bl>>8)
			sum += l
			sumSq += l * l
			n++
		}
	}
	mean := sum / n
	std := math.Sqrt(sumSq/n - mean*mean)
	t.Logf("screenshot: %s %dx%d, %d colours, luminance mean %.0f std %.1f", format, b.Dx(), b.Dy(), len(colors), mean, std)
	if len(colors) < 8 || std < 3 {
		t.Fatalf("screenshot looks blank: %d colours, luminance std %.1f", len(colors), std)
	}
}

func TestBrowser(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	ts := startServer(t, serverOpts{})
	base := ts.URL
	t.Logf("browser started in %v", time.Since(start).Round(time.Millisecond))

	// Ann types before "|", Bob at the end: each one's caret must stay in
	// place while the other's edits arrive, so the text is exactly known.
	const head, tail = "Trip to Kyoto 🗾\n\nPacking list:\n- passport\n- ", "\n\nIdeas:\n- "
	id := ts.createDoc(t, "Trip notes", head+"|"+tail)
	ann := newTab(t, browser, "Ann", "#e11d48")
	bob := newTab(t, browser, "Bob", "#2563eb")
	var wg sync.WaitGroup
	for _, tb := range []*tab{ann, bob} {
		wg.Go(func() { tb.open(base, id) })
	}
	wg.Wait()

	annText, bobText := "", ""
	want := func() string { return head + annText + "|" + tail + bobText }
	typeBoth := func(a, b string) {
		t.Helper()
		ann.caretBefore("|")
		bob.caretBefore("")
		var wg sync.WaitGroup
		wg.Go(func() { ann.do(typeText(a)) })
		wg.Go(func() { bob.do(typeText(b)) })
		wg.Wait()
		annText += a
		bobText += b
	}

	t.Run("ConcurrentTyping", func(t *testing.T) {
		bind(t, ann, bob)
		typeBoth("héllo 😀 👨‍👩‍👧 漢字 ", "temples ⛩️ and ramen 🍜\n- wörld 日本語 ñ")
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("RemoteCaret", func(t *testing.T) {
		bind(t, ann, bob)
		// Each tab shows the other's caret with its name, inside the textarea.
		for _, c := range []struct{ viewer, other *tab }{{ann, bob}, {bob, ann}} {
			js := fmt.Sprintf(`(() => {
			  const ta = document.querySelector('#editor').getBoundingClientRect();
			  const overlay = document.querySelector('#overlay');
			  const label = [...overlay.querySelectorAll('*')].find(e => e.children.length === 0 && e.textContent.trim() === %q);
			  if (!label) return 'no overlay element named ' + %q + ' in ' + overlay.innerHTML;
			  // The caret drawn for the same client (textarea.js: .tandem-caret[data-client]), else the label.
			  const caret = (label.dataset.client && overlay.querySelector('.tandem-caret[data-client="' + label.dataset.client + '"]')) || label;
			  const r = caret.getBoundingClientRect();
			  const inside = (x, y) => x >= ta.left - 1 && x <= ta.right + 1 && y >= ta.top - 1 && y <= ta.bottom + 1;
			  if (r.height === 0) return 'caret has no size';
			  if (!inside(r.left, r.top) || !inside(r.left, r.bottom)) return 'caret outside the textarea: ' + JSON.stringify([r, ta]);
			  if (getComputedStyle(label).visibility === 'hidden' || getComputedStyle(caret).display === 'none') return 'caret hidden';
			  return '';
			})()`, c.other.name, c.other.name)
			deadline := time.Now().Add(10 * time.Second)
			for {
				msg := eval[string](c.viewer, js)
				if msg == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s does not see %s's caret: %s", c.viewer.name, c.other.name, msg)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// A selection too: Bob selects his word "wörld".
		eval[bool](bob, `(() => { const t = document.querySelector('#editor'); const i = t.value.indexOf('ramen');
		  t.focus(); t.setSelectionRange(i, i + 5); return true })()`)
		// A third person for the screenshot: Ann sees two carets.
		cleo := newTab(t, browser, "Cleo", "#16a34a")
		cleo.open(base, id)
		cleo.caretBefore("passport")
		ann.caretBefore("|")
		ann.waitJS(`document.querySelectorAll('#overlay .tandem-caret').length === 2 && document.querySelectorAll('#overlay .tandem-selection').length > 0`, "showing two carets and a selection")
		time.Sleep(100 * time.Millisecond)

		shot, err := chromedp.Run(ann.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		p := artifactPath(t, "editor-two-carets.png")
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the editor with two carets: %s", p)
		checkNotBlank(t, shot)
		if _, err := png.DecodeConfig(bytes.NewReader(shot)); err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
	})

	t.Run("OfflineAndBack", func(t *testing.T) {
		bind(t, ann, bob)
		ann.setNetwork("offline")
		ann.waitJS(`window.tandem.client.status === 'offline'`, "offline")
		typeBoth(" offline ✈️ edits", " online 🌐")
		ann.waitJS(`window.tandem.client.pending > 0`, "holding its edits")
		// The indicator tells the user.
		ind := eval[string](ann, `document.querySelector('#conn').textContent`)
		if !strings.Contains(ind, "your changes are saved on this device") {
			t.Errorf("offline indicator %q does not say where the unsent edits are", ind)
		}
		// Bob's edit reached the server (waited for: his client has nothing
		// pending); Ann's did not.
		bob.waitJS(`window.tandem.client.pending === 0 && window.tandem.client.status === 'connected'`, "his edits acknowledged")
		if srv, _ := serverText(t, base, id); strings.Contains(srv, "offline ✈️") || !strings.Contains(srv, "online 🌐") {
			t.Fatalf("server text while Ann is offline: %q", srv)
		}
		typeBoth("✓", "✓")
		ann.setNetwork("online")
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("ReloadKeepsUnsentEdits", func(t *testing.T) {
		bind(t, ann, bob)
		// The server out of reach, the page still at hand (from the
		// service worker or the cache).
		ts.refuseWebSockets.Store(true)
		ann.setNetwork("offline")
		ann.waitJS(`window.tandem.client.status === 'offline'`, "offline")
		ann.caretBefore("|")
		ann.do(typeText(" unsent 📝"))
		annText += " unsent 📝"
		ann.waitJS(`window.tandem.client.pending > 0`, "holding its edits")
		ann.setNetwork("online")
		ann.do(chromedp.Reload())
		// The page comes back with the unsent edit, before any connection.
		ann.waitJS(`window.tandem?.client && document.querySelector('#editor').value.includes(' unsent 📝')`, "showing the unsent edit after the reload")
		if st := eval[string](ann, `window.tandem.client.status`); st == "connected" {
			t.Fatalf("connected although the server refuses WebSockets")
		}
		ts.refuseWebSockets.Store(false)
		eval[bool](ann, `(window.tandem.client.retry(), true)`)
		waitConverged(t, base, id, want(), ann, bob)

		// A plain reload shows the document.
		bob.do(chromedp.Reload())
		bob.waitConnected()
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("UndoRedo", func(t *testing.T) {
		bind(t, ann, bob)
		ann.caretBefore("|")
		ann.do(typeText("XY"))
		waitConverged(t, base, id, head+annText+"XY|"+tail+bobText, ann, bob)
		ann.do(key('z', chromedp.ModifierCtrl))
		waitConverged(t, base, id, want(), ann, bob)
		ann.do(key('z', chromedp.ModifierCtrl|chromedp.ModifierShift))
		annText += "XY"
		waitConverged(t, base, id, want(), ann, bob)
	})
	t.Run("Composition", func(t *testing.T) {
		bind(t, ann, bob)
		// Ann composes with an input method while Bob types: the text in
		// composition is not sent (nor disturbed) until it is committed,
		// and nothing is lost on either side.
		ann.caretBefore("|")
		call := func(f func(ctx context.Context) error) {
			ctx, cancel := context.WithTimeout(ann.ctx, 10*time.Second)
			defer cancel()
			if err := f(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, step := range []string{"に", "にほ", "にほん"} {
			call(func(ctx context.Context) error {
				n := int64(len([]rune(step)))
				_, err := chromedp.Call(ctx, input.ImeSetComposition, input.ImeSetCompositionParams{Text: step, SelectionStart: n, SelectionEnd: n})
				return err
			})
		}
		if v := ann.value(); !strings.Contains(v, "にほん|") {
			t.Fatalf("no composition in Ann's textarea: %q", v)
		}
		bob.caretBefore("")
		bob.do(typeText(" while Ann composes"))
		bobText += " while Ann composes"
		// Bob's edit reaches Ann, held back while she composes.
		deadline := time.Now().Add(10 * time.Second)
		for srv, _ := serverText(t, base, id); !strings.Contains(srv, "Ann composes"); srv, _ = serverText(t, base, id) {
			if time.Now().After(deadline) {
				t.Fatalf("Bob's edit did not reach the server: %q", srv)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if srv, _ := serverText(t, base, id); strings.Contains(srv, "にほ") {
			t.Fatalf("text in composition reached the server: %q", srv)
		}
		call(func(ctx context.Context) error {
			_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: "日本"})
			return err
		})
		annText += "日本"
		waitConverged(t, base, id, want(), ann, bob)
	})

	t.Run("Rename", func(t *testing.T) {
		bind(t, ann, bob)
		// Bob renames himself: the client reconnects under the new name,
		// and Ann's list of people follows.
		eval[bool](bob, `(() => { const n = document.querySelector('#my-name'); n.value = 'Robert';
		  n.dispatchEvent(new Event('change')); return true })()`)
		bob.waitConnected()
		ann.waitJS(`[...document.querySelectorAll('#people .person-name')].some(e => e.textContent === 'Robert') &&
		  ![...document.querySelectorAll('#people .person-name')].some(e => e.textContent === 'Bob')`, "listing Robert instead of Bob")
		bob.caretBefore("")
		bob.do(typeText("!"))
		bobText += "!"
		waitConverged(t, base, id, want(), ann, bob)
	})
	t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond))
}
