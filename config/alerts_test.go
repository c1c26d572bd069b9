package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAlertsSection(t *testing.T) {
	dir := t.TempDir()
	urlFile, secretFile := filepath.Join(dir, "url"), filepath.Join(dir, "secret")
	if err := os.WriteFile(urlFile, []byte("https://hooks.example/T0/B0/xyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	raw := `
alerts:
  webhooks:
    - name: security-chat
      url_file: ` + urlFile + `
      format: slack
      events: [block, warn, verdict_change, newly_vulnerable, db_stale, db_updated]
      min_severity: high
    - name: siem
      url: https://siem.example/in
      format: cloudevents
      events: [newly_vulnerable]
      secret_file: ` + secretFile + `
      dedupe_window: 1h
`
	if err := Parse([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	ws := c.Alerts.Webhooks
	if len(ws) != 2 || ws[0].MinSeverity != "HIGH" || time.Duration(ws[0].DedupeWindow) != DefaultDedupeWindow || time.Duration(ws[1].DedupeWindow) != time.Hour {
		t.Fatalf("webhooks %+v", ws)
	}
	if u, err := ws[0].ReadURL(); err != nil || u != "https://hooks.example/T0/B0/xyz" {
		t.Fatalf("ReadURL %q %v", u, err)
	}
	if s, err := ws[1].ReadSecret(); err != nil || string(s) != "s3cret" {
		t.Fatalf("ReadSecret %q %v", s, err)
	}
}

func TestAlertsRejects(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Webhook{Name: "hook", URL: "https://h.example/x", Format: "json", Events: []string{"block"}}
	for name, tc := range map[string]struct {
		mutate func(w *Webhook)
		want   string
	}{
		"unknown format":   {func(w *Webhook) { w.Format = "teams" }, `format "teams"`},
		"unknown event":    {func(w *Webhook) { w.Events = []string{"blocked"} }, `unknown event "blocked"`},
		"no events":        {func(w *Webhook) { w.Events = nil }, "name at least one"},
		"ftp url":          {func(w *Webhook) { w.URL = "ftp://h.example/x" }, "url must be http(s)"},
		"url and file":     {func(w *Webhook) { w.URLFile = existing }, "exactly one"},
		"neither url":      {func(w *Webhook) { w.URL = "" }, "exactly one"},
		"missing url_file": {func(w *Webhook) { w.URL, w.URLFile = "", "/nonexistent/url" }, "url_file"},
		"missing secret":   {func(w *Webhook) { w.SecretFile = "/nonexistent/secret" }, "secret_file"},
		"slack secret":     {func(w *Webhook) { w.Format, w.SecretFile = "slack", existing }, "Slack checks no signature"},
		"bad severity":     {func(w *Webhook) { w.MinSeverity = "severe" }, "min_severity"},
		"tiny window":      {func(w *Webhook) { w.DedupeWindow = Duration(time.Millisecond) }, "dedupe_window"},
		"bad name":         {func(w *Webhook) { w.Name = "a b" }, "name must be"},
	} {
		t.Run(name, func(t *testing.T) {
			c := Default()
			w := ok
			tc.mutate(&w)
			c.Alerts.Webhooks = []Webhook{w}
			err := c.Finish()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Finish: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "h.example/x") {
				t.Fatalf("the error shows the URL: %v", err)
			}
		})
	}
	c := Default()
	c.Alerts.Webhooks = []Webhook{ok, ok}
	if err := c.Finish(); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Fatalf("duplicate name: %v", err)
	}
}
