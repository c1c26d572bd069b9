package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Accessibility basics, checked on the page the tab shows. Each check
// returns what is wrong (nothing when all is well), so one run lists every
// problem of a page; the self-test (TestChecksCatchProblems) shows each one
// failing on a page built to be wrong.

// namedSelector lists the elements that need an accessible name.
const namedSelector = "img, button, input, select, textarea, a"

// maxChecked bounds how many elements one check looks at on a page.
const maxChecked = 2000

// unnamedControls returns the images, buttons, form fields and links that
// chromium's accessibility tree gives no name (no label, aria-label, alt or
// text). Elements out of the tree (hidden inputs, display: none) need none.
func (tb *tab) unnamedControls() []string {
	tb.t.Helper()
	var problems []string
	tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		nodes, err := chromedp.Nodes(chromedp.CSSAll(namedSelector), chromedp.AtLeast(0))(ctx, t)
		if err != nil {
			return fmt.Errorf("find %s: %w", namedSelector, err)
		}
		if len(nodes) > maxChecked {
			return fmt.Errorf("%d elements to name: more than the %d this check looks at", len(nodes), maxChecked)
		}
		for _, n := range nodes {
			res, err := cdp.Call(ctx, t, accessibility.GetPartialAXTree, accessibility.GetPartialAXTreeParams{
				BackendNodeID: n.BackendNodeID, FetchRelatives: new(false),
			})
			if err != nil {
				return fmt.Errorf("accessibility tree of %s: %w", describeNode(n), err)
			}
			for _, ax := range res.Nodes {
				if ax.BackendDOMNodeID != n.BackendNodeID || ax.Ignored {
					continue
				}
				if axString(ax.Name) == "" {
					problems = append(problems, describeNode(n)+" has no accessible name")
				}
			}
		}
		return nil
	}))
	return problems
}

// axString is an accessibility value as text, trimmed.
func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Value, &s) != nil {
		return strings.TrimSpace(string(v.Value))
	}
	return strings.TrimSpace(s)
}

func describeNode(n *chromedp.Node) string {
	var b strings.Builder
	b.WriteString("<" + strings.ToLower(n.NodeName))
	for i := 0; i+1 < len(n.Attributes); i += 2 {
		fmt.Fprintf(&b, " %s=%q", n.Attributes[i], n.Attributes[i+1])
	}
	return b.String() + ">"
}

// headingProblems checks the visible headings: exactly one h1, the first
// heading is the h1, and no level is skipped going down (h2 → h4).
func (tb *tab) headingProblems() []string {
	tb.t.Helper()
	levels := evalIn[[]struct {
		Level int
		Text  string
	}](tb, `[...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].filter(h => h.checkVisibility()).slice(0, `+fmt.Sprint(maxChecked)+`)
		.map(h => ({level: +h.tagName[1], text: h.textContent.trim().slice(0, 60)}))`)
	var problems []string
	h1 := 0
	for i, h := range levels {
		if h.Level == 1 {
			h1++
		}
		if i == 0 && h.Level != 1 {
			problems = append(problems, fmt.Sprintf("the first heading is h%d %q, not the h1", h.Level, h.Text))
		}
		if i > 0 && h.Level > levels[i-1].Level+1 {
			problems = append(problems, fmt.Sprintf("h%d %q follows h%d %q: a level skipped", h.Level, h.Text, levels[i-1].Level, levels[i-1].Text))
		}
	}
	if h1 != 1 {
		problems = append(problems, fmt.Sprintf("%d h1 elements; want exactly one", h1))
	}
	return problems
}

// badgeContrast is the contrast of one verdict badge's text against the
// background it is drawn on.
type badgeContrast struct {
	Class, Text, FG, BG string
	Ratio               float64
}

// contrastJS measures every .verdict badge: colours as the browser resolved
// them (any CSS colour syntax, drawn on a canvas to get sRGB), the
// background composited from the badge up to the first opaque ancestor
// (white when none is), and the WCAG 2 contrast ratio.
const contrastJS = `(() => {
  const cv = document.createElement('canvas'); cv.width = cv.height = 1;
  const cx = cv.getContext('2d', {willReadFrequently: true});
  const rgba = c => { cx.clearRect(0, 0, 1, 1); cx.fillStyle = '#000'; cx.fillStyle = c; cx.fillRect(0, 0, 1, 1);
    const d = cx.getImageData(0, 0, 1, 1).data; return [d[0], d[1], d[2], d[3] / 255]; };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const lum = c => { const ch = c.slice(0, 3).map(v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]; };
  const css = c => 'rgb(' + c.slice(0, 3).map(Math.round).join(',') + ')';
  return [...document.querySelectorAll('.verdict')].filter(e => e.checkVisibility()).slice(0, ` + "2000" + `).map(e => {
    const layers = [];
    for (let n = e; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    const fg = over(rgba(getComputedStyle(e).color), bg);
    const l1 = lum(fg), l2 = lum(bg);
    return {class: e.className, text: e.textContent.trim(), fg: css(fg), bg: css(bg),
      ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05)};
  });
})()`

// minContrast is WCAG 2's AA minimum for normal text.
const minContrast = 4.5

// contrastProblems returns the verdict badges whose contrast is below 4.5:1,
// and the verdicts in want that no badge on the page shows.
func (tb *tab) contrastProblems(want ...string) []string {
	tb.t.Helper()
	badges := evalIn[[]badgeContrast](tb, contrastJS)
	var problems []string
	seen := map[string]bool{}
	for _, b := range badges {
		for _, c := range strings.Fields(b.Class) {
			seen[c] = true
		}
		if b.Ratio < minContrast {
			problems = append(problems, fmt.Sprintf("badge %q (%s): %s on %s has contrast %.2f:1, below %.1f:1", b.Text, b.Class, b.FG, b.BG, b.Ratio, minContrast))
		}
	}
	for _, v := range want {
		if !seen["verdict-"+v] {
			problems = append(problems, "no .verdict-"+v+" badge on the page to measure")
		}
	}
	return problems
}

// narrowWidth is the phone width every page must fit.
const narrowWidth = 375

// overflowJS reports the layout viewport's width, the document's scroll
// width, and the first elements that stick out to the right, not counting
// those inside a container that scrolls on its own (a wide table may).
const overflowJS = `(() => {
  const root = document.documentElement, limit = root.clientWidth;
  const scrolls = e => { for (let n = e.parentElement; n && n !== root && n !== document.body; n = n.parentElement) {
    const o = getComputedStyle(n).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') return true; } return false; };
  const wide = [...document.body.querySelectorAll('*')].slice(0, 5000)
    .filter(e => e.getBoundingClientRect().right > limit + 1 && !scrolls(e)).slice(0, 3)
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : '')
      + ' right=' + Math.round(e.getBoundingClientRect().right));
  return {inner: window.innerWidth, client: limit, scroll: root.scrollWidth, wide};
})()`

// narrowProblems loads url in a phone-sized viewport (mobile emulation, so
// the page's viewport meta tag counts) and reports horizontal scrolling at
// the document level. The tab is back at desktop size afterwards.
func (tb *tab) narrowProblems(url string) []string {
	tb.t.Helper()
	tb.do(chromedp.EmulateViewport(narrowWidth, 800, chromedp.EmulateMobile))
	defer tb.do(chromedp.EmulateViewport(viewportWidth, viewportHeight))
	tb.open(url)
	r := evalIn[struct {
		Inner, Client, Scroll int
		Wide                  []string
	}](tb, overflowJS)
	var problems []string
	if r.Inner != narrowWidth {
		problems = append(problems, fmt.Sprintf("at %d px the layout viewport is %d px wide: the page lacks <meta name=viewport content=\"width=device-width\">", narrowWidth, r.Inner))
	}
	if r.Scroll > r.Client {
		problems = append(problems, fmt.Sprintf("at %d px the document scrolls sideways: %d px wide in a %d px viewport (sticking out: %s)", narrowWidth, r.Scroll, r.Client, strings.Join(r.Wide, ", ")))
	}
	return problems
}

// skipLinkProblems loads url fresh, presses Tab and expects the skip link
// (a.skip to #main) to have focus; Enter on it must move focus to main
// itself (which takes tabindex="-1" for that).
func (tb *tab) skipLinkProblems(url string) []string {
	tb.t.Helper()
	tb.open(url)
	evalIn[bool](tb, `(document.activeElement && document.activeElement.blur(), true)`)
	tb.do(chromedp.KeyEvent(kb.Tab))
	first := evalIn[string](tb, `document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : ''`)
	if !evalIn[bool](tb, `!!document.activeElement && document.activeElement.matches('a.skip[href="#main"]')`) {
		return []string{fmt.Sprintf("the first Tab focuses %q, not the skip link a.skip[href=\"#main\"]", first)}
	}
	tb.do(chromedp.KeyEvent(kb.Enter))
	if tb.waitFor(`document.activeElement === document.getElementById('main')`, 2*time.Second) {
		return nil
	}
	r := evalIn[struct{ Hash, Focus string }](tb, `({hash: location.hash, focus: document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : ''})`)
	return []string{fmt.Sprintf("Enter on the skip link does not move focus to main#main (location %q, focus on %q; main needs tabindex=\"-1\")", r.Hash, r.Focus)}
}
