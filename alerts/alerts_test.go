package alerts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/portcullis/portcullis/pipeline"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// received is one request a test receiver got.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on 127.0.0.1 that records what it gets
// and answers with respond (nil: 200).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	arrived chan struct{}
	respond func(n int, w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond, arrived: make(chan struct{}, 1000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, received{at: time.Now(), header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		rc.arrived <- struct{}{}
		if rc.respond != nil {
			rc.respond(n, w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// wait waits (bounded) for n requests in all.
func (rc *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for len(rc.requests()) < n {
		select {
		case <-rc.arrived:
		case <-deadline:
			t.Fatalf("%d requests after 20 s, want %d", len(rc.requests()), n)
		}
	}
	return rc.requests()
}

// rig runs an Alerter fed by a channel, with a metrics reader and a fake
// sleep that records the waits between attempts.
type rig struct {
	a      *Alerter
	events chan pipeline.Event
	reader *sdkmetric.ManualReader
	mu     sync.Mutex
	waits  []time.Duration
	done   chan struct{}
}

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	r := &rig{events: make(chan pipeline.Event), reader: sdkmetric.NewManualReader(), done: make(chan struct{})}
	o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader)).Meter("test")
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.sleep == nil {
		o.sleep = func(ctx context.Context, d time.Duration) error {
			r.mu.Lock()
			r.waits = append(r.waits, d)
			r.mu.Unlock()
			return ctx.Err()
		}
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	ctx, cancel := context.WithCancel(context.Background())
	go func() { a.Run(ctx, r.events); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *rig) send(e pipeline.Event) { r.events <- e }

func (r *rig) recordedWaits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.waits)
}

// count reads portcullis_alerts_total{webhook,result}.
func (r *rig) count(t *testing.T, webhook, result string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis_alerts_total" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				w, _ := dp.Attributes.Value(attribute.Key("webhook"))
				res, _ := dp.Attributes.Value(attribute.Key("result"))
				if w.AsString() == webhook && res.AsString() == result {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// waitCount waits (bounded) for the counter to reach n.
func (r *rig) waitCount(t *testing.T, webhook, result string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); r.count(t, webhook, result) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("alerts_total{%s,%s} = %d after 20 s, want %d", webhook, result, r.count(t, webhook, result), n)
		}
	}
}

// blockEvent is a verdict event as the pipeline publishes it.
func blockEvent(id, repo string) pipeline.Event {
	return pipeline.Event{Type: "verdict", ID: id, At: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		Image: "docker.io/" + repo + "@" + testDigest, Digest: testDigest, From: "allow", To: "block", Reasons: []string{"VULNERABLE"},
		Upstream: "docker.io", Repository: repo, Tag: "3.16.9", Rule: "strict", Details: "/api/v1/scans/" + testDigest, DBVersion: "sha256:ab@2026-12-01T00:00:00Z",
		Causes: []pipeline.EventReason{{Code: "VULNERABLE", Verdict: "block", Message: "1 HIGH vulnerability (CVE-2023-42366 busybox 1.35.0-r17 → 1.35.0-r18)",
			Vulnerabilities: []pipeline.EventVuln{{ID: "CVE-2023-42366", Package: "busybox", InstalledVersion: "1.35.0-r17", FixedVersions: []string{"1.35.0-r18"}, Severity: "HIGH"}}}}}
}

func testHook(name, url, format string, events ...string) Webhook {
	return Webhook{Name: name, URL: url, Format: format, Events: events}
}

// Each format's payload carries what its receivers require (Slack: text
// and blocks; CloudEvents 1.0: the required attributes, structured mode),
// names the image, rule, reasons with CVE ids and fixed versions and the
// details link, and json/cloudevents bodies are signed with the secret.
func TestPayloadPerFormat(t *testing.T) {
	secret := []byte("s3cret")
	wantImage := "docker.io/library/alpine:3.16.9@" + testDigest
	for _, tc := range []struct {
		format, publicURL, wantType, wantDetails string
		signed                                   bool
	}{
		{FormatSlack, "https://portcullis.example", "application/json", "<https://portcullis.example/api/v1/scans/" + testDigest + "|details>", false},
		{FormatSlack, "", "application/json", "`/api/v1/scans/" + testDigest + "`", false},
		{FormatCloudEvents, "https://portcullis.example", "application/cloudevents+json; charset=utf-8", "https://portcullis.example/api/v1/scans/" + testDigest, true},
		{FormatJSON, "", "application/json", "/api/v1/scans/" + testDigest, true},
	} {
		t.Run(tc.format+"/"+tc.publicURL, func(t *testing.T) {
			rc := newReceiver(t, nil)
			w := testHook("hook", rc.URL, tc.format, KindBlock)
			if tc.signed {
				w.Secret = secret
			}
			r := newRig(t, Options{Webhooks: []Webhook{w}, PublicURL: tc.publicURL})
			r.send(blockEvent("e1", "library/alpine"))
			got := rc.wait(t, 1)[0]
			if ct := got.header.Get("Content-Type"); ct != tc.wantType {
				t.Errorf("Content-Type %q, want %q", ct, tc.wantType)
			}
			sig := got.header.Get("Portcullis-Signature")
			if tc.signed {
				m := hmac.New(sha256.New, secret)
				m.Write(got.body)
				if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); sig != want {
					t.Errorf("signature %q, want %q", sig, want)
				}
			} else if sig != "" {
				t.Errorf("unsigned webhook sent signature %q", sig)
			}
			switch tc.format {
			case FormatSlack:
				checkSlack(t, got.body, wantImage, tc.wantDetails)
			case FormatCloudEvents:
				var ce map[string]json.RawMessage
				if err := json.Unmarshal(got.body, &ce); err != nil {
					t.Fatal(err)
				}
				for _, attr := range []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"} {
					if len(ce[attr]) == 0 || string(ce[attr]) == `""` {
						t.Errorf("CloudEvent lacks %s: %s", attr, got.body)
					}
				}
				var attrs struct {
					SpecVersion, ID, Source, Type, Time, DataContentType string
				}
				_ = json.Unmarshal(got.body, &attrs)
				if attrs.SpecVersion != "1.0" || attrs.Type != "dev.portcullis.alert.block" || attrs.Source != tc.publicURL || attrs.DataContentType != "application/json" {
					t.Errorf("attributes %+v", attrs)
				}
				if _, err := time.Parse(time.RFC3339, attrs.Time); err != nil {
					t.Errorf("time %q: %v", attrs.Time, err)
				}
				checkDocument(t, ce["data"], wantImage, tc.wantDetails)
			case FormatJSON:
				checkDocument(t, got.body, wantImage, tc.wantDetails)
			}
		})
	}
}

func checkDocument(t *testing.T, raw []byte, wantImage, wantDetails string) {
	t.Helper()
	var doc Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Type != "block" || doc.ID == "" || doc.Image != wantImage || doc.Rule != "strict" || doc.Verdict != "block" || doc.DetailsURL != wantDetails {
		t.Fatalf("document %s", raw)
	}
	if len(doc.Reasons) != 1 || len(doc.Reasons[0].Vulnerabilities) != 1 {
		t.Fatalf("reasons %s", raw)
	}
	if v := doc.Reasons[0].Vulnerabilities[0]; v.ID != "CVE-2023-42366" || !slices.Equal(v.FixedVersions, []string{"1.35.0-r18"}) {
		t.Fatalf("vulnerability %+v", v)
	}
}

func checkSlack(t *testing.T, raw []byte, wantImage, wantDetails string) {
	t.Helper()
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, wantImage) || !strings.Contains(msg.Text, "CVE-2023-42366") {
		t.Errorf("text %q", msg.Text)
	}
	if len(msg.Blocks) == 0 || len(msg.Blocks) > 50 || msg.Blocks[0].Type != "header" || msg.Blocks[0].Text.Type != "plain_text" {
		t.Fatalf("blocks %s", raw)
	}
	var all strings.Builder
	for _, b := range msg.Blocks {
		switch b.Type {
		case "header":
			if len([]rune(b.Text.Text)) > 150 {
				t.Errorf("header over 150 characters")
			}
		case "section":
			if b.Text == nil || b.Text.Type != "mrkdwn" || len([]rune(b.Text.Text)) > 3000 {
				t.Errorf("section %+v", b)
			}
			all.WriteString(b.Text.Text + "\n")
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				t.Errorf("context %+v", b)
			}
		default:
			t.Errorf("block type %q", b.Type)
		}
	}
	for _, want := range []string{wantImage, "*Rule* strict", "CVE-2023-42366 busybox 1.35.0-r17 → fixed in 1.35.0-r18 (HIGH)", wantDetails} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("sections lack %q:\n%s", want, all.String())
		}
	}
}

// 500s are retried with doubling backoff until the receiver takes the
// alert; every attempt is logged and the result counted once.
func TestRetriesAfterServerErrors(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	var logs syncBuffer
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock)}, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	r.send(blockEvent("e1", "library/alpine"))
	rc.wait(t, 4)
	r.waitCount(t, "ops", "sent", 1)
	if got := r.recordedWaits(); !slices.Equal(got, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Fatalf("waits %v", got)
	}
	if n := r.count(t, "ops", "failed"); n != 0 {
		t.Fatalf("failed = %d", n)
	}
	if n := strings.Count(logs.String(), `"webhook":"ops","event":"block"`); n != 4 {
		t.Fatalf("%d delivery log lines, want 4:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), rc.URL) {
		t.Fatal("the webhook URL (a secret) was logged")
	}
}

// Retry-After (seconds or an HTTP date) sets the wait, capped; other 4xx
// are not retried.
func TestRetryAfterAndNoRetryOn4xx(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			w.Header().Set("Retry-After", now.Add(30*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusBadGateway)
		case 3:
			// delivered
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock)}, MaxRetryAfter: time.Minute, now: func() time.Time { return now }})
	r.send(blockEvent("e1", "library/alpine"))
	r.waitCount(t, "ops", "sent", 1)
	if got := r.recordedWaits(); !slices.Equal(got, []time.Duration{7 * time.Second, 30 * time.Second, time.Minute}) {
		t.Fatalf("waits %v", got)
	}
	r.send(blockEvent("e2", "other/alpine"))
	r.waitCount(t, "ops", "failed", 1)
	if n := len(rc.requests()); n != 5 {
		t.Fatalf("%d requests: a 400 was retried", n)
	}
}

// A real wait: the retry after "Retry-After: 1" comes no sooner than a
// second after the refused attempt.
func TestRetryAfterIsWaited(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock)}, sleep: sleepCtx})
	r.send(blockEvent("e1", "library/alpine"))
	got := rc.wait(t, 2)
	if gap := got[1].at.Sub(got[0].at); gap < time.Second {
		t.Fatalf("retried after %v, Retry-After said 1s", gap)
	}
	r.waitCount(t, "ops", "sent", 1)
}

// A receiver that never answers costs one attempt timeout per attempt,
// then the alert fails and the worker goes on with the next.
func TestHangingReceiverDoesNotHoldTheWorker(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 2 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock)}, AttemptTimeout: 200 * time.Millisecond, MaxAttempts: 2})
	r.send(blockEvent("e1", "library/alpine"))
	r.send(blockEvent("e2", "other/alpine"))
	r.waitCount(t, "ops", "failed", 1)
	r.waitCount(t, "ops", "sent", 1)
	if got := rc.requests(); len(got) != 3 {
		t.Fatalf("%d requests, want 2 timed-out attempts and 1 delivery", len(got))
	}
}

// A full queue drops new alerts at once (counted, logged) instead of
// making the event reader wait.
func TestFullQueueDrops(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	w := testHook("ops", rc.URL, FormatJSON, KindBlock)
	w.QueueSize = 2
	r := newRig(t, Options{Webhooks: []Webhook{w}, AttemptTimeout: time.Minute})
	r.send(blockEvent("e0", "repo/0"))
	rc.wait(t, 1) // the worker holds e0
	for i := 1; i <= 5; i++ {
		r.send(blockEvent("e", "repo/"+string(rune('0'+i)))) // returns: never waits on the receiver
	}
	r.waitCount(t, "ops", "dropped", 3)
	close(release)
	r.waitCount(t, "ops", "sent", 3)
	if n := r.count(t, "ops", "dropped"); n != 3 {
		t.Fatalf("dropped %d, want 3", n)
	}
}

// The same alert for the same digest and repository within the window is
// sent once; another repository, or a change back, is news.
func TestDuplicatesSuppressed(t *testing.T) {
	rc := newReceiver(t, nil)
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock, KindVerdictChange)}})
	r.send(blockEvent("e1", "library/alpine")) // block + verdict_change
	r.send(blockEvent("e2", "library/alpine")) // both repeats
	r.send(blockEvent("e3", "team/alpine"))    // block + verdict_change elsewhere
	back := blockEvent("e4", "library/alpine")
	back.From, back.To = "block", "allow" // verdict_change only
	r.send(back)
	r.waitCount(t, "ops", "sent", 5)
	r.waitCount(t, "ops", "suppressed", 2)
	time.Sleep(100 * time.Millisecond) // nothing more arrives
	var kinds []string
	for _, got := range rc.requests() {
		var doc Document
		_ = json.Unmarshal(got.body, &doc)
		kinds = append(kinds, doc.Type+" "+doc.Repository+" "+doc.Verdict)
	}
	slices.Sort(kinds)
	want := []string{"block library/alpine block", "block team/alpine block", "verdict_change library/alpine allow", "verdict_change library/alpine block", "verdict_change team/alpine block"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("sent %v, want %v", kinds, want)
	}
}

// newly_vulnerable names the images failing for a vulnerability at least
// min_severity; none left: nothing is sent.
func TestNewlyVulnerableMinSeverity(t *testing.T) {
	rc := newReceiver(t, nil)
	high, critical := testHook("high", rc.URL+"/high", FormatJSON, KindNewlyVulnerable), testHook("critical", rc.URL+"/critical", FormatJSON, KindNewlyVulnerable)
	high.MinSeverity, critical.MinSeverity = "high", "CRITICAL"
	r := newRig(t, Options{Webhooks: []Webhook{high, critical}, PublicURL: "https://p.example"})
	img := func(repo, sev string) pipeline.AffectedImage {
		return pipeline.AffectedImage{Digest: testDigest, Upstream: "docker.io", Repository: repo, Tag: "1", Rule: "strict",
			Causes: []pipeline.EventReason{{Code: "VULNERABLE", Verdict: "block", Vulnerabilities: []pipeline.EventVuln{{ID: "CVE-1", Severity: sev, FixedVersions: []string{"2"}}}}}}
	}
	r.send(pipeline.Event{Type: pipeline.EventNewlyVulnerable, ID: "u1", At: time.Now(), DBVersion: "sha256:ab@2026-12-01T00:00:00Z",
		Images: []pipeline.AffectedImage{img("a/high", "HIGH"), img("a/low", "LOW")}})
	r.waitCount(t, "high", "sent", 1)
	r.waitCount(t, "critical", "suppressed", 1)
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	var doc Document
	if err := json.Unmarshal(got[0].body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Type != "newly_vulnerable" || len(doc.Images) != 1 || doc.Images[0].Image != "docker.io/a/high:1@"+testDigest ||
		doc.Images[0].DetailsURL != "https://p.example/api/v1/scans/"+testDigest || doc.Images[0].Reasons[0].Vulnerabilities[0].ID != "CVE-1" {
		t.Fatalf("document %s", got[0].body)
	}
}

// Configuration mistakes are errors at start, never silence.
func TestWebhookChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Webhook
		want string
	}{
		{"format", testHook("a", "https://h.example/x", "teams", KindBlock), `format "teams"`},
		{"event", testHook("a", "https://h.example/x", FormatJSON, "blocked"), `unknown event "blocked"`},
		{"no events", testHook("a", "https://h.example/x", FormatJSON), "name at least one"},
		{"scheme", testHook("a", "ftp://h.example/x", FormatJSON, KindBlock), "url must be http(s)"},
		{"name", testHook("a b", "https://h.example/x", FormatJSON, KindBlock), "name must be"},
		{"severity", Webhook{Name: "a", URL: "https://h.example/x", Format: FormatJSON, Events: []string{KindNewlyVulnerable}, MinSeverity: "SEVERE"}, "min_severity"},
		{"slack secret", Webhook{Name: "a", URL: "https://h.example/x", Format: FormatSlack, Events: []string{KindBlock}, Secret: []byte("x")}, "secret_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Webhooks: []Webhook{tc.w}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(fmtErr(err), "h.example/x") {
				t.Fatalf("error shows the URL: %v", err)
			}
		})
	}
	if _, err := New(Options{Webhooks: []Webhook{testHook("a", "https://h.example/x", FormatJSON, KindBlock), testHook("a", "https://h.example/y", FormatJSON, KindBlock)}}); err == nil {
		t.Fatal("a name used twice was accepted")
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"99999999999999999999999", maxRetryAfterSeconds * time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Wed, 02 Dec 2026 10:00:00 GMT", 0, true}, // in the past
		{"Thursday, 03-Dec-26 10:01:00 GMT", time.Minute, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// syncBuffer is a log sink the workers and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
