package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed templates/*.html
var templateFiles embed.FS

// pageNames are the templates that make whole pages with layout.html.
var pageNames = []string{"overview", "images", "image", "vulnerability", "policy", "login", "error"}

// pages holds one parsed template set per page.
type pages struct{ sets map[string]*template.Template }

// maxShown bounds any one string a page shows (a hostile repository name,
// tag or advisory text of megabytes stays a line).
const maxShown = 300

func parsePages() (*pages, error) {
	funcs := template.FuncMap{
		"short":     short,
		"shortN":    shortN,
		"when":      when,
		"ago":       ago,
		"bytes":     humanBytes,
		"badge":     badgeClass,
		"imageURL":  imageURL,
		"vulnURL":   vulnURL,
		"osvURL":    osvURL,
		"shortHash": shortHash,
		"join":      joinShort,
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", name, err)
		}
		p.sets[name] = t
	}
	return p, nil
}

// pageData is what every page's template gets; Page is the page's own.
type pageData struct {
	Title   string // the page name: <title> starts with it
	Nav     string // which nav link is current
	Visitor *visitor
	Tokens  bool   // logging in is on
	User    string // the token's name, with tokens
	Admin   bool   // may use the admin forms
	CSRF    string
	Error   string // shown in a red banner
	Message string // shown in a neutral banner
	Page    any
}

// render writes a page whole or not at all: a template failing midway is
// a clean 500, never half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	d.Tokens = h.o.Tokens != nil
	if d.Visitor != nil {
		d.User, d.Admin = d.Visitor.name, d.Visitor.admin
	}
	if d.Visitor != nil && d.CSRF == "" && (d.Visitor.session != "" || h.o.Tokens == nil) {
		d.CSRF = h.formCSRF(w, r, d.Visitor)
	}
	var buf bytes.Buffer
	if err := h.pages.sets[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "ui render failed", slog.String("page", name), slog.String("error", err.Error()))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error rendering the page; see the server log\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// errorPage answers an error as a page (every error carries the security
// headers too: ServeHTTP set them first).
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, v *visitor, status int, title, msg string) {
	h.render(w, r, status, "error", pageData{Title: title, Visitor: v, Error: msg})
}

// short cuts s to maxShown characters.
func short(s string) string { return shortN(maxShown, s) }

func shortN(n int, s string) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func shortHash(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 12 {
		return short(d)
	}
	return algo + ":" + hex[:12]
}

func joinShort(list []string) string { return short(strings.Join(list, ", ")) }

func when(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how old t is, in the largest whole unit.
func ago(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days ago"
}

func humanBytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// badgeClass is the CSS class of a verdict badge; anything unexpected is
// shown as pending, never as allow.
func badgeClass(verdict string) string {
	switch verdict {
	case "allow", "warn", "block":
		return "verdict-" + verdict
	}
	return "verdict-pending"
}

// maxRefLink bounds the repository put into a link or command: past it
// (no registry takes such names) the link names the digest only.
const maxRefLink = 512

// imageURL links an image's detail page, in one repository.
func imageURL(digest, upstream, repo string) string {
	u := "/ui/images/" + url.PathEscape(digest)
	if upstream != "" && repo != "" && len(upstream)+len(repo) <= maxRefLink {
		u += "?" + url.Values{"repository": {upstream + "/" + repo}}.Encode()
	}
	return u
}

// validVulnID accepts the characters OSV ids use (what the API accepts).
func validVulnID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	return strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == ""
}

// vulnURL links the vulnerability page of id; "" (no link) for an id that
// is not one.
func vulnURL(id string) string {
	if !validVulnID(id) {
		return ""
	}
	return "/ui/vulnerabilities/" + url.PathEscape(id)
}

// osvURL links the advisory at osv.dev: always https://osv.dev/…, with the
// id as one escaped path segment, so no stored text becomes a link
// anywhere else (a javascript: URL in an advisory stays text).
func osvURL(id string) string {
	if !validVulnID(id) {
		return ""
	}
	return "https://osv.dev/vulnerability/" + url.PathEscape(id)
}
