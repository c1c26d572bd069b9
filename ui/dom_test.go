package ui

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// doc is a parsed page, with the few selectors the tests need.
type doc struct{ root *html.Node }

func parseDoc(t *testing.T, body string) doc {
	t.Helper()
	n, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc{n}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	for _, c := range strings.Fields(v) {
		if c == class {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// all lists the elements under n (n included) that match.
func all(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

// sel matches a simple selector: tag, #id, .class, [attr] or [attr=value],
// combined without spaces (e.g. `tr[data-rule=apps]`, `a.next`).
func sel(s string) func(*html.Node) bool {
	var tag, id string
	var classes []string
	var attrs [][2]string
	for s != "" {
		switch s[0] {
		case '#', '.':
			end := strings.IndexAny(s[1:], "#.[")
			if end < 0 {
				end = len(s) - 1
			}
			if s[0] == '#' {
				id = s[1 : end+1]
			} else {
				classes = append(classes, s[1:end+1])
			}
			s = s[end+1:]
		case '[':
			end := strings.IndexByte(s, ']')
			k, v, ok := strings.Cut(s[1:end], "=")
			if !ok {
				v = "\x00any"
			}
			attrs = append(attrs, [2]string{k, strings.Trim(v, `"`)})
			s = s[end+1:]
		default:
			end := strings.IndexAny(s, "#.[")
			if end < 0 {
				end = len(s)
			}
			tag, s = s[:end], s[end:]
		}
	}
	return func(n *html.Node) bool {
		if tag != "" && n.Data != tag {
			return false
		}
		if v, _ := attr(n, "id"); id != "" && v != id {
			return false
		}
		for _, c := range classes {
			if !hasClass(n, c) {
				return false
			}
		}
		for _, a := range attrs {
			v, ok := attr(n, a[0])
			if !ok || (a[1] != "\x00any" && v != a[1]) {
				return false
			}
		}
		return true
	}
}

// find is the elements matching a descendant selector ("#a tr[x] .count").
func (d doc) find(selector string) []*html.Node {
	nodes := []*html.Node{d.root}
	for _, part := range strings.Fields(selector) {
		var next []*html.Node
		seen := map[*html.Node]bool{}
		for _, n := range nodes {
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				for _, m := range all(c, sel(part)) {
					if !seen[m] {
						seen[m] = true
						next = append(next, m)
					}
				}
			}
		}
		nodes = next
	}
	return nodes
}

func (d doc) one(t *testing.T, selector string) *html.Node {
	t.Helper()
	got := d.find(selector)
	if len(got) == 0 {
		t.Fatalf("no %s on the page", selector)
	}
	return got[0]
}

// checkCommon checks what every page has (Contract 3) and what the CSP
// forbids: one h1, headings in order, the skip link, main#main, the nav
// links, no inline script or style, no event handler attributes.
func checkCommon(t *testing.T, d doc, title string) {
	t.Helper()
	if got := text(d.one(t, "title")); title != "" && !strings.HasPrefix(got, title+" — Portcullis") {
		t.Errorf("title %q, want it to start with %q", got, title+" — Portcullis")
	}
	if n := len(d.find("h1")); n != 1 {
		t.Errorf("%d h1 elements, want 1", n)
	}
	level := 0
	for _, h := range all(d.root, func(n *html.Node) bool {
		return len(n.Data) == 2 && n.Data[0] == 'h' && n.Data[1] >= '1' && n.Data[1] <= '6'
	}) {
		l := int(h.Data[1] - '0')
		if l > level+1 {
			t.Errorf("heading %s %q skips a level after h%d", h.Data, text(h), level)
		}
		level = l
	}
	if skip := d.find("a.skip[href=#main]"); len(skip) != 1 {
		t.Errorf("%d skip links to #main", len(skip))
	}
	d.one(t, "main#main")
	for _, href := range []string{"/ui/", "/ui/images", "/ui/policy"} {
		d.one(t, "nav a[href="+href+"]")
	}
	d.one(t, "form#search input[name=ref]")
	for _, n := range all(d.root, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s=%q>: inline style or handler breaks the CSP", n.Data, a.Key, a.Val)
			}
			if (a.Key == "href" || a.Key == "src" || a.Key == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("<%s %s=%q>: a javascript: URL", n.Data, a.Key, a.Val)
			}
		}
		if n.Data == "script" {
			if src, _ := attr(n, "src"); src == "" || n.FirstChild != nil {
				t.Errorf("inline script: %q", text(n))
			}
		}
		if n.Data == "style" {
			t.Error("inline <style> element")
		}
	}
}
