// Package browsertest starts headless Chromium for the browser tests
// (the authorization pages, the developer portal): the flags of
// STACK.md, a temporary profile, and a skip — or, with
// LAPIS_REQUIRE_BROWSER=1 (CI), a failure — when no Chromium is found.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Options size the browser.
type Options struct {
	// Width and Height are the window size (default 1000×1400; 420×900
	// is a phone).
	Width, Height int
	// Timeout bounds the whole browser session (default 2 minutes).
	Timeout time.Duration
}

// Chromium finds a Chromium or Chrome binary: LAPIS_CHROMIUM first, then
// the usual names on PATH ("" when there is none).
func Chromium() string {
	if p := os.Getenv("LAPIS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts headless Chromium for t and returns its context; the
// browser stops when the test ends. Without a Chromium binary the test
// is skipped, or fails when LAPIS_REQUIRE_BROWSER=1.
func New(t testing.TB, o Options) context.Context {
	t.Helper()
	bin := Chromium()
	if bin == "" {
		if os.Getenv("LAPIS_REQUIRE_BROWSER") == "1" {
			t.Fatal("no Chromium binary found (apt-get install chromium) and LAPIS_REQUIRE_BROWSER=1")
		}
		t.Skip("browser test skipped: no Chromium binary found (install Debian's chromium, or set LAPIS_CHROMIUM); set LAPIS_REQUIRE_BROWSER=1 to fail instead")
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1000, 1400
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(o.Width, o.Height),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, o.Timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc() // waits for the browser to exit, before TempDir is removed
	})
	// Start the browser now, so a broken installation is reported as such.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	// Headless Chromium keeps a window at least 500 pixels wide: a
	// phone's 420 would be laid out at 500. Emulate the exact viewport.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(o.Width), int64(o.Height))); err != nil {
		t.Fatalf("viewport %dx%d: %v", o.Width, o.Height, err)
	}
	return ctx
}
