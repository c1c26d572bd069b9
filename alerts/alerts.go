// Package alerts delivers the pipeline's events to webhooks: chat
// (Slack incoming webhooks), CloudEvents receivers and plain JSON
// endpoints. Delivery never holds up a pull or the pipeline: each webhook
// has a bounded queue and its own worker, which retries with backoff.
//
// Every replica sees every event (the store's pub/sub); a lease in the
// store's Leases, taken per webhook and event before queueing, makes one
// replica deliver it and suppresses repeats within the dedupe window,
// cluster-wide.
package alerts

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/store"
)

// Alert kinds a webhook subscribes to (config `events`).
const (
	KindBlock           = "block"          // a verdict became block in a repository
	KindWarn            = "warn"           // a verdict became warn in a repository
	KindVerdictChange   = "verdict_change" // any change of an effective verdict
	KindNewlyVulnerable = pipeline.EventNewlyVulnerable
	KindDBStale         = pipeline.EventDBStale
	KindDBUpdated       = pipeline.EventDBUpdated
	// KindAudit is an entry of the audit log: a quarantine, an
	// exception, their ends, a policy reload (audit.go).
	KindAudit = pipeline.EventAudit
)

// Kinds lists every alert kind.
func Kinds() []string {
	return []string{KindBlock, KindWarn, KindVerdictChange, KindNewlyVulnerable, KindDBStale, KindDBUpdated, KindAudit}
}

// Formats of a webhook's payload.
const (
	FormatSlack       = "slack"
	FormatCloudEvents = "cloudevents"
	FormatJSON        = "json"
)

// Webhook is one configured receiver.
type Webhook struct {
	Name   string
	URL    string // http(s); a secret (Slack's URLs are): never logged
	Format string
	Events []string
	// Secret signs json and cloudevents bodies (Portcullis-Signature).
	Secret []byte
	// MinSeverity keeps newly_vulnerable alerts to images failing for a
	// vulnerability at least this severe; "" keeps all.
	MinSeverity string
	// DedupeWindow: the same alert (kind, digest, repository) is sent once
	// per window; 0 means DefaultDedupeWindow.
	DedupeWindow time.Duration
	// QueueSize bounds the alerts waiting for delivery; 0 means
	// DefaultQueueSize. When full, new alerts are dropped.
	QueueSize int
}

// Defaults.
const (
	DefaultDedupeWindow   = 10 * time.Minute
	DefaultQueueSize      = 256
	DefaultAttemptTimeout = 10 * time.Second
	DefaultMaxAttempts    = 6
	DefaultBaseBackoff    = time.Second
	DefaultMaxBackoff     = time.Minute
	// DefaultMaxRetryAfter caps a receiver's Retry-After, so one receiver
	// cannot park its worker for hours.
	DefaultMaxRetryAfter = 5 * time.Minute
	// leaseTimeout bounds taking an alert's lease in the store.
	leaseTimeout = 2 * time.Second
)

// Options wires an Alerter.
type Options struct {
	Webhooks []Webhook
	// Leases make one replica deliver each alert and suppress repeats
	// (store.Coordination.Leases); nil: this process's own.
	Leases store.Leases
	// Owner names this replica in the leases.
	Owner string
	// PublicURL makes the details links absolute; empty: they stay
	// relative (/api/v1/scans/<digest>).
	PublicURL string
	// Source is the CloudEvents source; empty: PublicURL, else
	// "/portcullis".
	Source string
	// Meter records portcullis_alerts_total; nil: no metrics.
	Meter          metric.Meter
	Client         *http.Client // nil: one that follows no redirects
	AttemptTimeout time.Duration
	MaxAttempts    int
	BaseBackoff    time.Duration
	MaxBackoff     time.Duration
	MaxRetryAfter  time.Duration
	Logger         *slog.Logger

	// sleep waits between attempts; tests replace it to see the delays
	// without waiting them.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

// Alerter turns events into alerts and delivers them.
type Alerter struct {
	o       Options
	log     *slog.Logger
	hooks   []*hook
	counter metric.Int64Counter
}

// hook is one webhook's queue and state.
type hook struct {
	Webhook
	events map[string]bool
	queue  chan delivery
}

// delivery is one rendered alert waiting for its webhook's worker.
type delivery struct {
	kind, id string
	body     []byte
}

var webhookName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// New checks the webhooks and builds an Alerter; Run delivers.
func New(o Options) (*Alerter, error) {
	o.AttemptTimeout = cmp.Or(o.AttemptTimeout, DefaultAttemptTimeout)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, DefaultMaxAttempts)
	o.BaseBackoff = cmp.Or(o.BaseBackoff, DefaultBaseBackoff)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, DefaultMaxBackoff)
	o.MaxRetryAfter = cmp.Or(o.MaxRetryAfter, DefaultMaxRetryAfter)
	o.Source = cmp.Or(o.Source, o.PublicURL, "/portcullis")
	o.Owner = cmp.Or(o.Owner, "portcullis")
	if o.Leases == nil {
		o.Leases = store.NewLocalLeases(0)
	}
	if o.Client == nil {
		o.Client = &http.Client{
			// A redirect would re-send the alert somewhere the
			// configuration never named (and a POST turned GET).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.sleep == nil {
		o.sleep = sleepCtx
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("portcullis/alerts")
	}
	a := &Alerter{o: o, log: cmp.Or(o.Logger, slog.Default())}
	var err error
	a.counter, err = o.Meter.Int64Counter("portcullis_alerts_total",
		metric.WithDescription("Alerts by webhook and result: sent, failed, dropped (queue full), suppressed (duplicate or filtered)."))
	if err != nil {
		return nil, fmt.Errorf("alerts counter: %w", err)
	}
	seen := map[string]bool{}
	for i, w := range o.Webhooks {
		if err := checkWebhook(w); err != nil {
			return nil, fmt.Errorf("alerts.webhooks[%d] (%s): %w", i, w.Name, err)
		}
		if seen[w.Name] {
			return nil, fmt.Errorf("alerts.webhooks[%d]: name %q used twice", i, w.Name)
		}
		seen[w.Name] = true
		w.DedupeWindow = cmp.Or(w.DedupeWindow, DefaultDedupeWindow)
		w.QueueSize = cmp.Or(w.QueueSize, DefaultQueueSize)
		w.MinSeverity = strings.ToUpper(w.MinSeverity)
		h := &hook{Webhook: w, events: map[string]bool{}, queue: make(chan delivery, w.QueueSize)}
		for _, k := range w.Events {
			h.events[k] = true
		}
		a.hooks = append(a.hooks, h)
	}
	return a, nil
}

func checkWebhook(w Webhook) error {
	if !webhookName.MatchString(w.Name) {
		return fmt.Errorf("name must be 1-64 letters, digits, '.', '_' or '-'")
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL itself is a secret: not in the message.
		return errors.New("url must be http(s)://host/…")
	}
	switch w.Format {
	case FormatSlack, FormatCloudEvents, FormatJSON:
	default:
		return fmt.Errorf("format %q must be slack, cloudevents or json", w.Format)
	}
	if len(w.Events) == 0 {
		return fmt.Errorf("events: name at least one of %s", strings.Join(Kinds(), ", "))
	}
	for _, k := range w.Events {
		if !slices.Contains(Kinds(), k) {
			return fmt.Errorf("events: unknown event %q (known: %s)", k, strings.Join(Kinds(), ", "))
		}
	}
	if w.MinSeverity != "" && severityRank(strings.ToUpper(w.MinSeverity)) < 0 {
		return fmt.Errorf("min_severity %q must be CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN", w.MinSeverity)
	}
	if len(w.Secret) > 0 && w.Format == FormatSlack {
		return errors.New("secret_file signs json and cloudevents bodies; Slack checks no signature")
	}
	if w.DedupeWindow < 0 || w.QueueSize < 0 {
		return errors.New("dedupe_window and queue size must not be negative")
	}
	return nil
}

// Run delivers alerts for events until ctx ends or events is closed; then
// it waits for the webhook workers (which finish what is queued unless ctx
// ended).
func (a *Alerter) Run(ctx context.Context, events <-chan pipeline.Event) {
	var wg sync.WaitGroup
	for _, h := range a.hooks {
		wg.Go(func() { a.work(ctx, h) })
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				for _, h := range a.hooks {
					close(h.queue)
				}
				return
			}
			a.handle(ctx, e)
		}
	}
}

// alert is one kind of alert an event makes, for one webhook.
type alert struct {
	kind  string
	event pipeline.Event
	key   string // what makes two alerts the same, for dedupe
}

// alertsOf lists the alerts one event makes.
func alertsOf(e pipeline.Event) []alert {
	where := e.Digest + "\x00" + e.Upstream + "/" + e.Repository
	switch e.Type {
	case "verdict":
		var out []alert
		switch e.To {
		case KindBlock, KindWarn:
			out = append(out, alert{kind: e.To, event: e, key: where})
		}
		if e.From != "" && e.From != e.To {
			// The transition is part of what is the same: a change back
			// within the window is news.
			out = append(out, alert{kind: KindVerdictChange, event: e, key: where + "\x00" + e.From + ">" + e.To})
		}
		return out
	case KindNewlyVulnerable:
		return []alert{{kind: e.Type, event: e}} // keyed per webhook, after filtering
	case KindDBStale, KindDBUpdated:
		return []alert{{kind: e.Type, event: e, key: e.DBVersion}}
	case KindAudit:
		if e.Audit == nil {
			return nil
		}
		// Every replica announces nothing twice, but a record is news
		// once: its ID is unique.
		return []alert{{kind: KindAudit, event: e, key: e.Audit.ID}}
	}
	return nil
}

// handle queues the alerts e makes to the webhooks that want them. It
// never waits on a receiver: a full queue drops the alert.
func (a *Alerter) handle(ctx context.Context, e pipeline.Event) {
	for _, al := range alertsOf(e) {
		for _, h := range a.hooks {
			if !h.events[al.kind] {
				continue
			}
			al := al
			if al.kind == KindNewlyVulnerable {
				al.event.Images = filterSeverity(e.Images, h.MinSeverity)
				if len(al.event.Images) == 0 && e.MoreImages == 0 {
					a.count(ctx, h, "suppressed")
					a.log.Debug("alert below min_severity", "webhook", h.Name, "event", al.kind, "event_id", e.ID)
					continue
				}
				al.key = newlyVulnerableKey(al.event)
			}
			a.queue(ctx, h, al)
		}
	}
}

// queue takes the alert's lease (cluster-wide: one replica sends, once
// per window) and hands the rendered alert to the webhook's worker.
func (a *Alerter) queue(ctx context.Context, h *hook, al alert) {
	sum := sha256.Sum256([]byte(al.key))
	lease := "alert/" + h.Name + "/" + al.kind + "/" + hex.EncodeToString(sum[:16])
	// Bounded: a store that does not answer must not stall the reading of
	// events (the subscription drops what a stalled reader misses).
	lctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	got, err := a.o.Leases.Acquire(lctx, lease, a.o.Owner, h.DedupeWindow)
	cancel()
	switch {
	case err != nil:
		// Better a repeat than a lost alert: deliver without the lease.
		a.log.Warn("alert lease unavailable; delivering without duplicate suppression", "webhook", h.Name, "event", al.kind, "err", err)
	case !got:
		a.count(ctx, h, "suppressed")
		a.log.Debug("duplicate alert suppressed", "webhook", h.Name, "event", al.kind, "event_id", al.event.ID)
		return
	}
	d, err := a.render(h, al)
	if err != nil {
		a.count(ctx, h, "failed")
		a.log.Error("render alert", "webhook", h.Name, "event", al.kind, "err", err)
		return
	}
	select {
	case h.queue <- d:
	default:
		a.count(ctx, h, "dropped")
		a.log.Warn("alert queue full; alert dropped", "webhook", h.Name, "event", al.kind, "event_id", al.event.ID, "queue", cap(h.queue))
	}
}

func (a *Alerter) count(ctx context.Context, h *hook, result string) {
	a.counter.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("webhook", h.Name), attribute.String("result", result)))
}

// newlyVulnerableKey makes the same update's alert about the same images
// one alert, whichever replica announced it.
func newlyVulnerableKey(e pipeline.Event) string {
	var ims []string
	for _, im := range e.Images {
		ims = append(ims, im.Digest+"@"+im.Upstream+"/"+im.Repository)
	}
	sort.Strings(ims)
	return e.DBVersion + "\x00" + strings.Join(ims, "\x00") + fmt.Sprintf("\x00+%d", e.MoreImages)
}

// filterSeverity keeps the images failing for a vulnerability at least
// min severe. An image whose reasons were shed (too large an event) is
// kept: an alert too many beats a missed one.
func filterSeverity(images []pipeline.AffectedImage, min string) []pipeline.AffectedImage {
	if min == "" {
		return images
	}
	floor := severityRank(min)
	var out []pipeline.AffectedImage
	for _, im := range images {
		keep := len(im.Causes) == 0
		for _, c := range im.Causes {
			for _, v := range c.Vulnerabilities {
				if severityRank(strings.ToUpper(v.Severity)) >= floor {
					keep = true
				}
			}
		}
		if keep {
			out = append(out, im)
		}
	}
	return out
}

// severityRank orders severities; -1 for a name that is none.
func severityRank(s string) int {
	switch s {
	case "CRITICAL":
		return 4
	case "HIGH":
		return 3
	case "MEDIUM":
		return 2
	case "LOW":
		return 1
	case "UNKNOWN", "":
		return 0
	}
	return -1
}
