// Package webtest starts a headless Chromium for the pages' browser tests (chromedp) and saves
// screenshots of pages at a phone's and a desktop's width.
//
// The browser is Debian's chromium (apt-get install chromium), found at LOYALTY_TEST_CHROMIUM,
// /usr/bin/chromium or on PATH. Without one, browser tests skip with a message saying how to run
// them; in CI (CI=true) a missing browser fails them instead, so they never skip silently there.
// With LOYALTY_TEST_SCREENSHOTS set to a folder, Screenshots writes PNGs of each page into it.
package webtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// ExecPath returns the Chromium binary to drive, or "".
func ExecPath() string {
	if p := os.Getenv("LOYALTY_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser starts a headless Chromium for t, closed when t ends, and returns a context (a tab)
// to run chromedp actions in with Do, Get, Click and the rest. extra options go to the
// allocator (IgnoreCertErrors for a server with a throwaway test CA).
func Browser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := ExecPath()
	if path == "" {
		msg := "browser tests need Chromium: apt-get install chromium (or set LOYALTY_TEST_CHROMIUM to a Chrome or Chromium binary); .ci/run installs it"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox will not start
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// Start the browser now, without a deadline (a deadline on the first run would end the
	// browser with it), so a broken install fails here with its own message.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// IgnoreCertErrors lets the browser accept a server certificate it does not trust: for a test
// server whose certificate comes from a throwaway CA (internal/testca).
var IgnoreCertErrors = chromedp.Flag("ignore-certificate-errors", true)

// Tab opens another tab of the browser ctx, sharing its cookies. With noScript, JavaScript is
// off in it, to prove a page works without it.
func Tab(t testing.TB, ctx context.Context, noScript bool) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	return open(t, tab, noScript)
}

// Incognito opens a tab with cookies of its own (a new browser context): another person at
// another device.
func Incognito(t testing.TB, ctx context.Context, noScript bool) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return open(t, tab, noScript)
}

func open(t testing.TB, tab context.Context, noScript bool) context.Context {
	t.Helper()
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	if noScript {
		if _, err := chromedp.Call(tab, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatalf("switch JavaScript off: %v", err)
		}
	}
	return tab
}

// Timeout bounds one step: long enough for a loaded 2-core machine, short enough that a page
// that never shows what is awaited fails the test instead of hanging it.
var Timeout = 90 * time.Second

// Get runs one action that returns a value in ctx, within Timeout, and fails t on an error.
func Get[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(rctx, a)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("browser: %v (at %s)", err, loc)
	}
	return v
}

// Do runs steps in ctx, within Timeout, and fails t on an error.
func Do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	Get(t, ctx, chromedp.Steps(steps...))
}

// Navigate opens url in ctx and waits for it to load.
func Navigate(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	Do(t, ctx, chromedp.Navigate(url))
}

// Submit clicks the element matching the CSS selector sel (a form's button) and waits for the
// page that answers to load: how a form is sent with or without JavaScript.
func Submit(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if _, err := chromedp.RunResponse(rctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("submit %s: %v (at %s)", sel, err, loc)
	}
}

// Fill sets the value of the input matching the CSS selector sel, typing it as a keyboard
// would (a handheld scanner is a keyboard).
func Fill(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	Do(t, ctx, Type(sel, value)...)
}

// Type clears the input matching the CSS selector sel and types keys into it (kb.Enter for
// Enter). It is chromedp.SendKeys without the race: SendKeys focuses the field and sends the
// keys, as this does, but first reads the field's attributes without the lock that chromedp's
// own event loop takes to change them, which the race detector reports when the page changes
// the field's attributes at that moment (chromedp v0.23.1).
func Type(sel, keys string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{chromedp.Clear(chromedp.CSS(sel)), chromedp.Focus(chromedp.CSS(sel), chromedp.NodeVisible), chromedp.KeyEvent(keys)}
}

// Text returns the visible text of the first element matching the CSS selector sel, waiting
// for it to be there.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(Get(t, ctx, chromedp.Text(chromedp.CSS(sel))))
}

// WaitText waits until the visible text of the first element matching sel contains want (the
// page may change it by script or by loading another page), and fails t with what it shows
// instead when Timeout passes.
func WaitText(t testing.TB, ctx context.Context, sel, want string) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.innerText.includes(%q); })()`, sel, want)
	for {
		ok, err := chromedp.Run(rctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if rctx.Err() != nil {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
				`(() => { const e = document.querySelector(%q); return e ? e.innerText : "(no element)"; })()`, sel)))
			t.Fatalf("waiting for %q in %s: it shows %q", want, sel, got)
		}
		select { // the page changes by itself (a reload, a script): look again shortly
		case <-rctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Widths are the screenshot widths: a phone and a desktop.
var Widths = []struct {
	Name          string
	Width, Height int64
	Mobile        bool
}{
	{"phone", 390, 844, true},
	{"desktop", 1280, 900, false},
}

// Dir returns the folder named by LOYALTY_TEST_SCREENSHOTS (created), or "" when it is unset.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LOYALTY_TEST_SCREENSHOTS")
	if dir == "" {
		return ""
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Screenshots saves the page shown in ctx as name-phone.png and name-desktop.png (the whole
// page) into Dir when LOYALTY_TEST_SCREENSHOTS is set, and leaves the desktop width on. It returns
// the desktop PNG either way, for a test to decode.
func Screenshots(t testing.TB, ctx context.Context, name string) []byte {
	t.Helper()
	dir := Dir(t)
	var desktop []byte
	for _, w := range Widths {
		Do(t, ctx, chromedp.EmulateViewport(w.Width, w.Height, func(p *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
			p.Mobile = w.Mobile
		}))
		png := Get(t, ctx, chromedp.FullScreenshot(100))
		if w.Name == "desktop" {
			desktop = png
		}
		if dir != "" {
			if err := os.WriteFile(filepath.Join(dir, name+"-"+w.Name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return desktop
}
