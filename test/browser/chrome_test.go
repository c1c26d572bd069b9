package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const (
	// browserStartTimeout bounds chromium's start (a cold start on a busy
	// 2-core machine takes a few seconds).
	browserStartTimeout = 60 * time.Second
	// actionTimeout bounds one step in a tab: a navigation with its load, a
	// script, a click.
	actionTimeout = 20 * time.Second
	// maxProblems bounds what one tab records of its console.
	maxProblems = 100
	// screenshotsEnv names the directory the screenshots are also copied to
	// (how the README's pictures are made).
	screenshotsEnv = "PORTCULLIS_SCREENSHOTS"
	// Desktop viewport of every tab unless a test emulates another.
	viewportWidth, viewportHeight = 1200, 820
)

// browser is one headless chromium with its own temporary profile, shared
// by every page a test opens (each in its own tab).
type browser struct {
	ctx context.Context // the first tab's context; new tabs derive from it
}

// chromiumPath finds Debian's chromium (test/run.sh installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found (./test/run.sh installs Debian's chromium)")
	return ""
}

// startBrowser starts chromium headless; it is stopped, and its profile
// removed, when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(viewportWidth, viewportHeight),
		// Chromium makes its singleton socket directory under TMPDIR and
		// leaves it behind: under the test's own directory it goes with it.
		chromedp.Env("TMPDIR="+t.TempDir()),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root ("Running as root
		// without --no-sandbox is not supported"); as any other user the
		// sandbox stays on.
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Do starts the browser and ties its life to ctx, so ctx
	// itself has no deadline: a timer cancels it if the start hangs.
	timer := time.AfterFunc(browserStartTimeout, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		t.Fatalf("chromium did not start within %s: %v", browserStartTimeout, err)
	}
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{ctx: ctx}
}

// tab is one browser tab that records what its console reports as an error:
// console.error calls, uncaught exceptions, and browser log entries at
// error level (a Content-Security-Policy violation, a failed subresource).
type tab struct {
	t       *testing.T
	ctx     context.Context
	console *console
}

// console is what a tab's listener recorded.
type console struct {
	mu       sync.Mutex
	problems []string
}

// in is the same tab used by the (sub)test t: failures go to t.
func (tb *tab) in(t *testing.T) *tab { return &tab{t: t, ctx: tb.ctx, console: tb.console} }

// newTab opens a tab; it closes when the test ends.
func (b *browser) newTab(t *testing.T) *tab {
	t.Helper()
	tb := &tab{t: t, console: &console{}}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(tb.console.listen))
	t.Cleanup(cancel)
	tb.ctx = ctx
	// As with the browser, the first Do opens the tab and ties it to the
	// context it gets: that one must have no deadline.
	timer := time.AfterFunc(actionTimeout, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		t.Fatalf("no new tab within %s: %v", actionTimeout, err)
	}
	if err != nil {
		t.Fatalf("new tab: %v", err)
	}
	tb.do(chromedp.EmulateViewport(viewportWidth, viewportHeight))
	return tb
}

// listen runs in the tab's event loop: it only records.
func (c *console) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d)", d.URL, d.LineNumber+1)
	case *cdplog.EventEntryAdded:
		if ev.Entry == nil || ev.Entry.Level != cdplog.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, msg)
	}
}

// takeProblems returns the console errors recorded since the last call.
func (tb *tab) takeProblems() []string {
	tb.console.mu.Lock()
	defer tb.console.mu.Unlock()
	p := tb.console.problems
	tb.console.problems = nil
	return p
}

// settle waits until the browser has delivered the events of what ran
// before: a round trip through the page's own task queue.
func (tb *tab) settle() {
	tb.t.Helper()
	evalIn[bool](tb, `new Promise(r => setTimeout(() => r(true), 50))`)
}

// checkConsole fails the test for every console error recorded since the
// last check; where names the page.
func (tb *tab) checkConsole(where string) {
	tb.t.Helper()
	tb.settle()
	for _, p := range tb.takeProblems() {
		tb.t.Errorf("%s: %s", where, p)
	}
}

// do runs actions with a deadline.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// open navigates to url, waits for its load and returns the HTTP status of
// the document (after redirects).
func (tb *tab) open(url string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		tb.t.Fatalf("open %s: %v", url, err)
	}
	return resp.Status
}

// navigateBy runs actions that make the page navigate (a click, a form
// submission) and waits for the new document to load.
func (tb *tab) navigateBy(actions ...chromedp.Action[chromedp.Void]) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		tb.t.Fatalf("navigation: %v", err)
	}
	if resp == nil {
		tb.t.Fatal("navigation: the page did not navigate")
	}
	return resp.Status
}

// evalIn evaluates a JavaScript expression (promises awaited) and decodes
// its value into T.
func evalIn[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %.80q: %v", expr, err)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.t.Fatalf("evaluate %.80q: decode %s: %v", expr, raw, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is truthy or timeout passes;
// it reports whether it became true.
func (tb *tab) waitFor(predicate string, timeout time.Duration) bool {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return err == nil
}

// colorScheme makes the page see prefers-color-scheme: scheme ("light" or
// "dark").
func (tb *tab) colorScheme(scheme string) {
	tb.t.Helper()
	tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
	if !evalIn[bool](tb, `matchMedia('(prefers-color-scheme: `+scheme+`)').matches`) {
		tb.t.Fatalf("the page does not see prefers-color-scheme: %s", scheme)
	}
}

// cookies returns the browser's cookies for url.
func (tb *tab) cookies(url string) []*network.Cookie {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		tb.t.Fatalf("cookies: %v", err)
	}
	return res.Cookies
}

// screenshots writes PNG pictures of pages into a temporary directory and,
// when PORTCULLIS_SCREENSHOTS names a directory, copies them there.
type screenshots struct {
	dir  string
	copy string
}

func newScreenshots(t *testing.T) *screenshots {
	t.Helper()
	s := &screenshots{dir: t.TempDir(), copy: os.Getenv(screenshotsEnv)}
	if s.copy != "" {
		if err := os.MkdirAll(s.copy, 0o755); err != nil {
			t.Fatalf("%s: %v", screenshotsEnv, err)
		}
	}
	return s
}

// take captures the tab's viewport as name.png.
func (s *screenshots) take(tb *tab, name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil || cfg.Width != viewportWidth || cfg.Height != viewportHeight {
		tb.t.Fatalf("screenshot %s: %dx%d, %v; want a %dx%d PNG", name, cfg.Width, cfg.Height, err, viewportWidth, viewportHeight)
	}
	for _, dir := range []string{s.dir, s.copy} {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
			tb.t.Fatalf("screenshot %s: %v", name, err)
		}
	}
}
