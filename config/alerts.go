package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Alerts sends the pipeline's events to chat and webhooks.
type Alerts struct {
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one alert receiver.
type Webhook struct {
	Name string `yaml:"name"`
	// URL, or URLFile holding it: webhook URLs are often secrets
	// (Slack's are), so they are never logged.
	URL     string   `yaml:"url"`
	URLFile string   `yaml:"url_file"`
	Format  string   `yaml:"format"` // slack, cloudevents or json
	Events  []string `yaml:"events"`
	// SecretFile holds the key of the HMAC-SHA256 signature of json and
	// cloudevents bodies (header Portcullis-Signature: sha256=<hex>).
	SecretFile string `yaml:"secret_file"`
	// MinSeverity keeps newly_vulnerable alerts to images failing for a
	// vulnerability at least this severe.
	MinSeverity string `yaml:"min_severity"`
	// DedupeWindow: the same alert for the same digest and repository is
	// sent once per window, cluster-wide; default 10m.
	DedupeWindow Duration `yaml:"dedupe_window"`
}

// AlertEvents and AlertFormats are the names a webhook may use (the alerts
// package defines what they mean).
var (
	AlertEvents  = []string{"block", "warn", "verdict_change", "newly_vulnerable", "db_stale", "db_updated", "audit"}
	AlertFormats = []string{"slack", "cloudevents", "json"}
)

// DefaultDedupeWindow is a webhook's dedupe_window when it sets none.
const DefaultDedupeWindow = 10 * time.Minute

var webhookName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// finishAlerts checks the alerts section; the files' contents are read
// (and the URL in url_file checked) when the server starts.
func (c *Config) finishAlerts(add func(format string, args ...any)) {
	seen := map[string]bool{}
	for i := range c.Alerts.Webhooks {
		w := &c.Alerts.Webhooks[i]
		where := fmt.Sprintf("alerts.webhooks[%d] (%s)", i, w.Name)
		switch {
		case !webhookName.MatchString(w.Name):
			add("%s: name must be 1-64 letters, digits, '.', '_' or '-'", where)
		case seen[w.Name]:
			add("%s: name used twice", where)
		}
		seen[w.Name] = true
		switch {
		case (w.URL == "") == (w.URLFile == ""):
			add("%s: set url or url_file, exactly one", where)
		case w.URL != "":
			if u, err := url.Parse(w.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				add("%s: url must be http(s)://host/…", where) // not quoted: it may be a secret
			}
		default:
			checkFile(add, where+": url_file", w.URLFile)
		}
		if !slices.Contains(AlertFormats, w.Format) {
			add("%s: format %q must be one of %s", where, w.Format, strings.Join(AlertFormats, ", "))
		}
		if len(w.Events) == 0 {
			add("%s: events: name at least one of %s", where, strings.Join(AlertEvents, ", "))
		}
		for _, e := range w.Events {
			if !slices.Contains(AlertEvents, e) {
				add("%s: events: unknown event %q (known: %s)", where, e, strings.Join(AlertEvents, ", "))
			}
		}
		if w.SecretFile != "" {
			if w.Format == "slack" {
				add("%s: secret_file signs json and cloudevents bodies; Slack checks no signature", where)
			}
			checkFile(add, where+": secret_file", w.SecretFile)
		}
		w.MinSeverity = strings.ToUpper(w.MinSeverity)
		switch w.MinSeverity {
		case "", "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN":
		default:
			add("%s: min_severity %q must be CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN", where, w.MinSeverity)
		}
		switch {
		case w.DedupeWindow == 0:
			w.DedupeWindow = Duration(DefaultDedupeWindow)
		case w.DedupeWindow < Duration(time.Second):
			add("%s: dedupe_window must be at least 1s", where)
		}
	}
}

func checkFile(add func(format string, args ...any), what, path string) {
	if st, err := os.Stat(path); err != nil {
		add("%s: %v", what, err)
	} else if st.IsDir() {
		add("%s: %s is a directory", what, path)
	}
}

// ReadURL returns the webhook's URL, from url_file when set (trimmed of
// surrounding white space).
func (w Webhook) ReadURL() (string, error) {
	if w.URLFile == "" {
		return w.URL, nil
	}
	b, err := os.ReadFile(w.URLFile)
	if err != nil {
		return "", fmt.Errorf("webhook %s: read url_file: %w", w.Name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ReadSecret returns the webhook's signing key (nil: none), trimmed of a
// final line break.
func (w Webhook) ReadSecret() ([]byte, error) {
	if w.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(w.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: read secret_file: %w", w.Name, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("webhook %s: secret_file %s is empty", w.Name, w.SecretFile)
	}
	return []byte(s), nil
}
