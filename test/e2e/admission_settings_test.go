package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// stallingUpstream is a hostile registry that answers its ping but never
// sends a manifest: each manifest request hangs until the client gives up
// (or the test ends). It counts the manifest requests it got.
type stallingUpstream struct {
	url       string
	manifests atomic.Int32
}

func startStallingUpstream(t *testing.T) *stallingUpstream {
	t.Helper()
	s := &stallingUpstream{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
		case strings.Contains(r.URL.Path, "/manifests/"):
			s.manifests.Add(1)
			select {
			case <-r.Context().Done():
			case <-release:
			case <-time.After(time.Minute): // bounded even if nobody hangs up
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	s.url = srv.URL
	return s
}

// admissionSettingsSetup is the real binary serving HTTPS with no
// api.listen, so the webhook is on the pull port, in front of the test
// registry (as docker.io, and as mirror.example whose rule admits what is
// not scanned yet with a warning) and a stalling upstream (stall.example).
type admissionSettingsSetup struct {
	admissionSetup
	stall *stallingUpstream
}

// admissionSettingsPolicy is the status API tests' policy plus a rule for
// each extra upstream.
const admissionSettingsPolicy = statusPolicy + `
  - name: stalled
    match: {upstreams: [stall.example]}
    mode: enforce
    on_unscanned: {wait: 30s, then: block}
  - name: fail-open
    match: {upstreams: [mirror.example]}
    mode: enforce
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: warn}
`

// startAdmissionSettingsSetup starts it with these api.admission settings
// and, with token, an api.tokens_file holding that read token.
func startAdmissionSettingsSetup(t *testing.T, admission, token string) admissionSettingsSetup {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, alpine := pushAlpine(t, up)
	up.Push(t, "team/alpine", "3.16.9", img)
	clean := up.Push(t, "library/clean", "1", testregistryImage(t, 512))
	slowImg := testregistryImage(t, 3<<20)
	slow := up.Push(t, "library/slow", "1", slowImg)
	for _, l := range layers(t, slowImg) {
		up.SetBlobDelay(l, time.Minute) // the scan cannot finish within a review
	}
	stall := startStallingUpstream(t)

	cert, key, pool := harness.WriteLoopbackCert(t, dir)
	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	api := "api: {admission: " + admission + "}"
	if token != "" {
		api = "api: {tokens_file: " + write("tokens.yaml", sha([]byte(token))[7:]+": {name: kube-apiserver, scopes: [read]}\n") + ", admission: " + admission + "}"
	}
	addr := "127.0.0.1:" + itoa(harness.FreePort(t))
	cfg := write("portcullis.yaml", "default_upstream: docker.io\nupstreams:\n  - {name: docker.io, url: "+up.URL()+"}\n  - {name: mirror.example, url: "+up.URL()+"}\n"+
		"  - {name: stall.example, url: "+stall.url+"}\npolicy: "+write("policy.yaml", admissionSettingsPolicy)+
		"\ntls: {cert_file: "+cert+", key_file: "+key+"}\n"+api+"\n")
	s := admissionSettingsSetup{admissionSetup: admissionSetup{url: "https://" + addr, token: token, alpine: alpine.String(), clean: clean.String(), slow: slow.String()}, stall: stall}
	s.client, s.logs = serveAdmission(t, bin, cfg, addr, data, s.url, pool)
	return s
}

// inNamespace is review's review for an object in namespace ns.
func inNamespace(review, ns string) string {
	return strings.ReplaceAll(review, `"namespace":"shop"`, `"namespace":"`+ns+`"`)
}

// admissionLogs are the "admission" log lines about the review uid.
func admissionLogs(t *testing.T, logs *harness.LogBuffer, uid string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "admission" && line["uid"] == uid {
			out = append(out, line)
		}
	}
	return out
}

// Without api.listen the webhook is on the pull port, behind the API
// tokens; exempt namespaces are admitted without a look; a review is
// answered before the API server's ?timeout= (and within
// api.admission.timeout without one) even when the upstream stalls, and a
// scan outlasting it ends in the rule's on_unscanned verdict.
func TestAdmissionSettings(t *testing.T) {
	s := startAdmissionSettingsSetup(t, "{timeout: 4s, exempt_namespaces: [kube-system]}", "webhook-token-2")

	t.Run("pull port needs a token", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"clean:1"}))
		for _, token := range []string{"", "not-a-token"} {
			anon := s.admissionSetup
			anon.token = token
			code, raw := anon.post(t, "/api/v1/admission", review("t", "Pod", "CREATE", object))
			var e struct{ Code, Message string }
			if code != http.StatusUnauthorized || json.Unmarshal(raw, &e) != nil || e.Code != "UNAUTHORIZED" {
				t.Fatalf("token %q: %d %s", token, code, raw)
			}
		}
	})

	// The same review, in an exempt namespace and in another one.
	tests := []struct {
		name, image string
		denyWants   string
	}{
		{name: "blocked image", image: "alpine:3.16.9", denyWants: "alpine:3.16.9"},
		{name: "image whose upstream stalls", image: "stall.example/team/app:1", denyWants: "not resolved within the admission timeout"},
	}
	for i, tt := range tests {
		t.Run("exempt namespace/"+tt.name, func(t *testing.T) {
			_, _, _, object := workload("Deployment", podSpec([]string{tt.image}))
			body := review(fmt.Sprintf("ns-%d", i), "Deployment", "CREATE", object)
			asked := s.stall.manifests.Load()
			a := s.admit(t, "/api/v1/admission?timeout=2s", inNamespace(body, "kube-system"))
			if !a.Response.Allowed || a.Response.Status != nil || len(a.Response.Warnings) > 0 {
				t.Fatalf("exempt namespace: %+v", a.Response)
			}
			if n := s.stall.manifests.Load(); n != asked {
				t.Fatalf("an exempt review asked the upstream for %d manifests", n-asked)
			}
			start := time.Now()
			a = s.admit(t, "/api/v1/admission?timeout=2s", body)
			if took := time.Since(start); took >= 2*time.Second {
				t.Errorf("answered after %s, past the API server's 2s", took)
			}
			if a.Response.Allowed || a.Response.Status == nil || !strings.Contains(a.Response.Status.Message, tt.denyWants) {
				t.Fatalf("namespace shop: %+v %+v", a.Response, a.Response.Status)
			}
		})
	}

	t.Run("upstream stalls, no timeout from the API server: api.admission.timeout", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"stall.example/team/other:1"}))
		asked := s.stall.manifests.Load()
		a := s.admit(t, "/api/v1/admission", review("cfg-timeout", "Pod", "CREATE", object))
		if a.Response.Allowed || !strings.Contains(a.Response.Status.Message, "stall.example/team/other:1: not resolved within the admission timeout") {
			t.Fatalf("%+v %+v", a.Response, a.Response.Status)
		}
		if s.stall.manifests.Load() == asked {
			t.Fatal("the stalling upstream was never asked")
		}
	})

	t.Run("unknown image judged within the wait", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"clean:1"}))
		if a := s.admit(t, "/api/v1/admission?timeout=10s", review("judged", "Pod", "CREATE", object)); !a.Response.Allowed || len(a.Response.Warnings) > 0 {
			t.Fatalf("%+v %+v", a.Response, a.Response.Status)
		}
	})

	// Last: its scan holds a worker. The wait ends at the review's
	// deadline (80% of 2s) and the rule's on_unscanned "then" (warn)
	// decides, as it would for a pull.
	t.Run("scan outlasting the review: on_unscanned decides", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"mirror.example/library/slow:1"}))
		start := time.Now()
		a := s.admit(t, "/api/v1/admission?timeout=2s", review("slow", "Pod", "CREATE", object))
		if took := time.Since(start); took >= 2*time.Second {
			t.Errorf("answered after %s, past the API server's 2s", took)
		}
		warnings := strings.Join(a.Response.Warnings, "\n")
		if !a.Response.Allowed || !strings.Contains(warnings, "mirror.example/library/slow:1") || !strings.Contains(warnings, "not scanned yet") {
			t.Fatalf("%+v %+v", a.Response, a.Response.Status)
		}
	})
}

// Audit mode admits what enforce mode would deny, with warnings naming the
// image and its reasons, and logs each review that would have been denied;
// without api.listen or api.tokens_file the webhook is on the pull port
// and needs no token.
func TestAdmissionAuditMode(t *testing.T) {
	s := startAdmissionSettingsSetup(t, "{mode: audit}", "")
	tests := []struct {
		name, kind string
		images     []string
		warnWants  []string
		logged     bool // an admission log line with audit and one image that would be denied
	}{
		{name: "clean", kind: "Pod", images: []string{"clean:1"}},
		{name: "warned only", kind: "StatefulSet", images: []string{"team/alpine:3.16.9"}, warnWants: []string{"team/alpine:3.16.9", "ALPINE-CVE-2023-42366"}},
		// Last: the output is read while the process writes it; once this
		// line is in, the earlier reviews' lines would be too.
		{name: "would be denied", kind: "Deployment", images: []string{"alpine:3.16.9", "clean:1"},
			warnWants: []string{"audit mode", "would deny alpine:3.16.9", "ALPINE-CVE-2023-42366"}, logged: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, object := workload(tt.kind, podSpec(tt.images))
			uid := fmt.Sprintf("audit-%d", i)
			a := s.admit(t, "/api/v1/admission?timeout=10s", review(uid, tt.kind, "CREATE", object))
			if !a.Response.Allowed || a.Response.Status != nil || a.Response.UID != uid {
				t.Fatalf("%+v %+v", a.Response, a.Response.Status)
			}
			warnings := strings.Join(a.Response.Warnings, "\n")
			for _, want := range tt.warnWants {
				if !strings.Contains(warnings, want) {
					t.Errorf("warnings lack %q: %q", want, a.Response.Warnings)
				}
			}
			if len(tt.warnWants) == 0 && len(a.Response.Warnings) > 0 {
				t.Errorf("unexpected warnings: %q", a.Response.Warnings)
			}
			if !tt.logged {
				return
			}
			var lines []map[string]any
			for deadline := time.Now().Add(5 * time.Second); len(lines) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				lines = admissionLogs(t, s.logs, uid)
			}
			if len(lines) != 1 {
				t.Fatalf("want one admission log line, got %v", lines)
			}
			l := lines[0]
			if l["audit"] != true || l["allowed"] != true || l["denied_images"] != float64(1) || !strings.Contains(fmt.Sprint(l["denied"]), "alpine:3.16.9") {
				t.Fatalf("log line %v", l)
			}
		})
	}
	for i, tt := range tests {
		if lines := admissionLogs(t, s.logs, fmt.Sprintf("audit-%d", i)); !tt.logged && len(lines) > 0 {
			t.Errorf("%s: logged as a would-be denial: %v", tt.name, lines)
		}
	}
}
