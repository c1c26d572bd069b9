package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
)

// admissionSetup is the real binary serving HTTPS, with the API (and so
// the webhook) on api.listen behind a read token, in front of an upstream
// with real images.
type admissionSetup struct {
	url    string // https://api-address
	client *http.Client
	token  string
	alpine string // digest of the vulnerable Alpine image
	clean  string // digest of library/clean:1
	index  string // digest of mirror/multi:1
	slow   string // digest of library/slow:1, whose layer the upstream sends at a crawl
	logs   *harness.LogBuffer
}

// serveAdmission starts the binary with config cfg, serving HTTPS with a
// certificate of pool, and waits until url (its API) answers.
func serveAdmission(t *testing.T, bin, cfg, addr, data, url string, pool *x509.CertPool) (*http.Client, *harness.LogBuffer) {
	t.Helper()
	logs := &harness.LogBuffer{}
	// The harness probes readiness over plain http; start it by hand.
	proc, err := harness.StartProcess(bin, []string{"serve", "--config", cfg, "--listen", addr, "--data", data}, nil, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("portcullis output:\n%s", logs.String())
		}
	})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := client.Get(url + "/api/v1/openapi.json")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return client, logs
}

func startAdmissionSetup(t *testing.T) admissionSetup {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, alpine := pushAlpine(t, up)
	up.Push(t, "team/alpine", "3.16.9", img)
	clean := up.Push(t, "library/clean", "1", testregistryImage(t, 512))
	amd, arm := testregistryImage(t, 512), testregistryImage(t, 512)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	index := up.PushIndex(t, "mirror/multi", "1", mutate.IndexMediaType(idx, types.OCIImageIndex))
	slowImg := testregistryImage(t, 3<<20)
	slow := up.Push(t, "library/slow", "1", slowImg)
	for _, l := range layers(t, slowImg) {
		up.SetBlobDelay(l, time.Minute) // the scan cannot finish within a review
	}

	cert, key, pool := harness.WriteLoopbackCert(t, dir)
	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	tokens := write("tokens.yaml", sha([]byte("webhook-token-1"))[7:]+": {name: kube-apiserver, scopes: [read]}\n")
	policyFile := write("policy.yaml", statusPolicy)
	addr := "127.0.0.1:" + itoa(harness.FreePort(t))
	apiAddr := "127.0.0.1:" + itoa(harness.FreePort(t))
	cfg := write("portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+
		"\ntls: {cert_file: "+cert+", key_file: "+key+"}\napi: {listen: "+apiAddr+", tokens_file: "+tokens+", admission: {timeout: 9s}}\n")
	s := admissionSetup{url: "https://" + apiAddr, token: "webhook-token-1", alpine: alpine.String(), clean: clean.String(), index: index.String(), slow: slow.String()}
	s.client, s.logs = serveAdmission(t, bin, cfg, addr, data, s.url, pool)
	return s
}

// podSpec is a pod spec with these containers (and init containers).
func podSpec(images []string, initImages ...string) string {
	list := func(prefix string, images []string) string {
		var cs []string
		for i, img := range images {
			cs = append(cs, fmt.Sprintf(`{"name":"%s%d","image":%q,"imagePullPolicy":"IfNotPresent","resources":{"limits":{"cpu":"100m","memory":"64Mi"}},"securityContext":{"runAsNonRoot":true}}`, prefix, i, img))
		}
		return "[" + strings.Join(cs, ",") + "]"
	}
	spec := `{"restartPolicy":"Always","containers":` + list("c", images)
	if len(initImages) > 0 {
		spec += `,"initContainers":` + list("init", initImages)
	}
	return spec + `}`
}

// workload is an object of kind holding spec, as kubectl would send it.
func workload(kind, spec string) (group, version, resource, object string) {
	meta := `"metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}}`
	tmpl := `{"metadata":{"labels":{"app":"web"}},"spec":` + spec + `}`
	sel := `"selector":{"matchLabels":{"app":"web"}}`
	jobSpec := strings.Replace(spec, `"restartPolicy":"Always"`, `"restartPolicy":"Never"`, 1)
	jobTmpl := `{"metadata":{"labels":{"app":"web"}},"spec":` + jobSpec + `}`
	switch kind {
	case "Pod":
		return "", "v1", "pods", `{"apiVersion":"v1","kind":"Pod",` + meta + `,"spec":` + spec + `}`
	case "Deployment":
		return "apps", "v1", "deployments", `{"apiVersion":"apps/v1","kind":"Deployment",` + meta + `,"spec":{"replicas":2,` + sel + `,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},"template":` + tmpl + `}}`
	case "StatefulSet":
		return "apps", "v1", "statefulsets", `{"apiVersion":"apps/v1","kind":"StatefulSet",` + meta + `,"spec":{"serviceName":"web","replicas":1,` + sel + `,"template":` + tmpl + `,"volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}`
	case "DaemonSet":
		return "apps", "v1", "daemonsets", `{"apiVersion":"apps/v1","kind":"DaemonSet",` + meta + `,"spec":{` + sel + `,"template":` + tmpl + `}}`
	case "ReplicaSet":
		return "apps", "v1", "replicasets", `{"apiVersion":"apps/v1","kind":"ReplicaSet",` + meta + `,"spec":{"replicas":1,` + sel + `,"template":` + tmpl + `}}`
	case "Job":
		return "batch", "v1", "jobs", `{"apiVersion":"batch/v1","kind":"Job",` + meta + `,"spec":{"backoffLimit":2,"template":` + jobTmpl + `}}`
	case "CronJob":
		return "batch", "v1", "cronjobs", `{"apiVersion":"batch/v1","kind":"CronJob",` + meta + `,"spec":{"schedule":"*/5 * * * *","jobTemplate":{"spec":{"template":` + jobTmpl + `}}}}`
	}
	panic("unknown kind " + kind)
}

// review is an AdmissionReview v1 as the API server sends it.
func review(uid, kind, operation, object string) string {
	group, version, resource, _ := workload(kind, podSpec(nil))
	gvk := fmt.Sprintf(`{"group":%q,"version":%q,"kind":%q}`, group, version, kind)
	gvr := fmt.Sprintf(`{"group":%q,"version":%q,"resource":%q}`, group, version, resource)
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `","kind":` + gvk + `,"resource":` + gvr +
		`,"requestKind":` + gvk + `,"requestResource":` + gvr + `,"name":"web","namespace":"shop","operation":"` + operation +
		`","userInfo":{"username":"alice","groups":["system:authenticated"]},"object":` + object + `,"oldObject":null,"dryRun":false,` +
		`"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}`
}

// reviewAnswer is the part of the answer the tests read.
type reviewAnswer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Code    int    `json:"code"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"status"`
		Warnings  []string `json:"warnings"`
		Patch     []byte   `json:"patch"`
		PatchType string   `json:"patchType"`
	} `json:"response"`
}

func (s admissionSetup) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TLS == nil {
		t.Fatal("not over TLS")
	}
	return resp.StatusCode, raw
}

func (s admissionSetup) admit(t *testing.T, path, body string) reviewAnswer {
	t.Helper()
	code, raw := s.post(t, path, body)
	var a reviewAnswer
	if err := json.Unmarshal(raw, &a); err != nil || code != http.StatusOK || a.APIVersion != "admission.k8s.io/v1" || a.Kind != "AdmissionReview" {
		t.Fatalf("%d %v: %s", code, err, raw)
	}
	return a
}

// Every workload kind, through the real HTTPS handler, answered from the
// verdicts of real images: allowed, denied with the reasons of each blocked
// image, allowed with warnings; an image nobody pulled yet is evaluated
// within the wait (its first review already carries the scan's findings).
func TestAdmissionWebhook(t *testing.T) {
	s := startAdmissionSetup(t)
	tests := []struct {
		name, kind   string
		images, init []string
		allowed      bool
		denyWants    []string // in status.message
		warnWants    []string // in the warnings
	}{
		// First review of the vulnerable image: never pulled, never
		// scanned; the answer names the vulnerability the scan found.
		{name: "unknown image is evaluated, then denied", kind: "Deployment", images: []string{"alpine:3.16.9"},
			denyWants: []string{"alpine:3.16.9", "portcullis: blocked docker.io/library/alpine@" + s.alpine, "ALPINE-CVE-2023-42366"}},
		{name: "clean pod allowed", kind: "Pod", images: []string{"docker.io/library/clean:1"}, allowed: true},
		{name: "warned image allowed with warning", kind: "StatefulSet", images: []string{"team/alpine:3.16.9"}, allowed: true,
			warnWants: []string{"team/alpine:3.16.9", "ALPINE-CVE-2023-42366"}},
		{name: "blocked init container denies", kind: "DaemonSet", images: []string{"clean:1"}, init: []string{"index.docker.io/library/alpine:3.16.9"},
			denyWants: []string{"index.docker.io/library/alpine:3.16.9", "ALPINE-CVE-2023-42366"}},
		{name: "by digest", kind: "ReplicaSet", images: []string{"docker.io/library/alpine:ignored@" + s.alpine}, denyWants: []string{"ALPINE-CVE-2023-42366"}},
		{name: "multi-platform image", kind: "Job", images: []string{"mirror/multi:1", "clean"}, denyWants: []string{"clean: ", "not found through the mirror"}},
		{name: "registry not through the mirror", kind: "CronJob", images: []string{"quay.example.org/team/tool:2"},
			denyWants: []string{"quay.example.org/team/tool:2", "not through the mirror"}},
		{name: "cronjob allowed", kind: "CronJob", images: []string{"mirror/multi:1"}, allowed: true},
		{name: "warned and blocked: both said", kind: "Deployment", images: []string{"team/alpine:3.16.9", "alpine:3.16.9"},
			denyWants: []string{"alpine:3.16.9"}, warnWants: []string{"team/alpine:3.16.9"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, object := workload(tt.kind, podSpec(tt.images, tt.init...))
			uid := fmt.Sprintf("0b7c7e52-0000-4000-8000-%012d", i)
			a := s.admit(t, "/api/v1/admission?timeout=10s", review(uid, tt.kind, "CREATE", object))
			if a.Response.UID != uid || a.Response.Allowed != tt.allowed {
				t.Fatalf("uid %q allowed %v, want %q %v: %+v", a.Response.UID, a.Response.Allowed, uid, tt.allowed, a.Response)
			}
			if !tt.allowed && (a.Response.Status == nil || a.Response.Status.Code != 403 || a.Response.Status.Reason != "Forbidden") {
				t.Fatalf("denial without a 403 status: %+v", a.Response.Status)
			}
			for _, want := range tt.denyWants {
				if !strings.Contains(a.Response.Status.Message, want) {
					t.Errorf("denial lacks %q: %s", want, a.Response.Status.Message)
				}
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
		})
	}
	t.Run("ephemeral container", func(t *testing.T) {
		object := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"},"spec":{"containers":[{"name":"c","image":"clean:1"}],` +
			`"ephemeralContainers":[{"name":"debug","image":"alpine:3.16.9","targetContainerName":"c"}]}}`
		a := s.admit(t, "/api/v1/admission", strings.Replace(review("eph", "Pod", "UPDATE", object), `"options"`, `"subResource":"ephemeralcontainers","options"`, 1))
		if a.Response.Allowed || !strings.Contains(a.Response.Status.Message, "ALPINE-CVE-2023-42366") {
			t.Fatalf("%+v", a.Response)
		}
	})
	// Last: its scan holds a worker. The review waits for the scan until
	// its own deadline (8s: 80% of the API server's 10s), then the rule's
	// on_unscanned "then" decides, as it would for a pull.
	t.Run("scan outlasting the review: on_unscanned decides", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"slow:1"}))
		a := s.admit(t, "/api/v1/admission?timeout=10s", review("slow", "Pod", "CREATE", object))
		if a.Response.Allowed || !strings.Contains(a.Response.Status.Message, "blocked docker.io/library/slow@"+s.slow) ||
			!strings.Contains(a.Response.Status.Message, "not scanned yet") {
			t.Fatalf("%+v", a.Response.Status)
		}
	})
	t.Run("delete is not judged", func(t *testing.T) {
		_, _, _, object := workload("Pod", podSpec([]string{"alpine:3.16.9"}))
		if a := s.admit(t, "/api/v1/admission", review("del", "Pod", "DELETE", object)); !a.Response.Allowed {
			t.Fatalf("%+v", a.Response)
		}
	})
}

// The mutating webhook pins every image to the digest that was judged,
// with a JSON patch whose paths lead to the image fields.
func TestAdmissionMutatePinsDigests(t *testing.T) {
	s := startAdmissionSetup(t)
	for _, kind := range []string{"Pod", "Deployment", "CronJob"} {
		t.Run(kind, func(t *testing.T) {
			_, _, _, object := workload(kind, podSpec([]string{"clean:1", "mirror/multi:1"}, "docker.io/library/clean:1"))
			a := s.admit(t, "/api/v1/admission/mutate", review("m-"+kind, kind, "CREATE", object))
			if !a.Response.Allowed || a.Response.PatchType != "JSONPatch" {
				t.Fatalf("%+v", a.Response)
			}
			var ops []struct{ Op, Path, Value string }
			if err := json.Unmarshal(a.Response.Patch, &ops); err != nil {
				t.Fatalf("patch is not a JSON patch: %v: %s", err, a.Response.Patch)
			}
			var doc any
			if err := json.Unmarshal([]byte(object), &doc); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, op := range ops {
				old, ok := jsonPointer(doc, op.Path)
				if op.Op != "replace" || !ok || !strings.HasSuffix(op.Path, "/image") {
					t.Fatalf("op %+v does not replace an image field of the object", op)
				}
				got[old.(string)+" "+strings.TrimPrefix(op.Path, "/spec")] = op.Value
			}
			want := map[string]string{"clean:1": "docker.io/library/clean@" + s.clean, "docker.io/library/clean:1": "docker.io/library/clean@" + s.clean,
				"mirror/multi:1": "docker.io/mirror/multi@" + s.index}
			if len(ops) != 3 {
				t.Fatalf("want 3 operations, got %+v", ops)
			}
			for k, v := range got {
				image, _, _ := strings.Cut(k, " ")
				if want[image] != v {
					t.Errorf("%s pinned to %q, want %q", k, v, want[image])
				}
			}
		})
	}
	// A blocked image is denied, not pinned.
	_, _, _, object := workload("Pod", podSpec([]string{"alpine:3.16.9"}))
	if a := s.admit(t, "/api/v1/admission/mutate", review("m-block", "Pod", "CREATE", object)); a.Response.Allowed || len(a.Response.Patch) > 0 {
		t.Fatalf("%+v", a.Response)
	}
}

// jsonPointer follows an RFC 6901 pointer (no escapes needed here).
func jsonPointer(doc any, ptr string) (any, bool) {
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		switch v := doc.(type) {
		case map[string]any:
			next, ok := v[seg]
			if !ok {
				return nil, false
			}
			doc = next
		case []any:
			var i int
			if _, err := fmt.Sscan(seg, &i); err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// Malformed reviews get a review with an error status (or, for a body that
// is no review at all, a 400 with a JSON error), never a 500; the webhook
// needs a token, and a read token is enough.
func TestAdmissionMalformedAndAuth(t *testing.T) {
	s := startAdmissionSetup(t)
	_, _, _, object := workload("Pod", podSpec([]string{"clean:1"}))
	tests := []struct {
		name, body string
		status     int    // HTTP
		code       int    // status.code of the review's answer; 0: no review
		uid        string // echoed
		want       string
	}{
		{"not JSON", "<xml/>", 400, 0, "", "want an AdmissionReview"},
		{"empty", "", 400, 0, "", "want an AdmissionReview"},
		{"v1beta1", strings.Replace(review("u1", "Pod", "CREATE", object), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), 200, 400, "u1", "admissionReviewVersions"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 200, 400, "", "no request"},
		{"no uid", review("", "Pod", "CREATE", object), 200, 400, "", "no uid"},
		{"containers not a list", review("u2", "Pod", "CREATE", `{"apiVersion":"v1","kind":"Pod","spec":{"containers":"alpine"}}`), 200, 400, "u2", "decode Pod"},
		{"image not a string", review("u3", "Deployment", "CREATE", `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":5}]}}}}`), 200, 400, "u3", "decode Deployment"},
		{"empty image", review("u4", "Pod", "CREATE", `{"spec":{"containers":[{"name":"c","image":""}]}}`), 200, 403, "u4", "invalid image reference: empty image"},
		{"no object", review("u5", "Pod", "CREATE", "null"), 200, 400, "u5", "no object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, raw := s.post(t, "/api/v1/admission", tt.body)
			if code != tt.status {
				t.Fatalf("HTTP %d, want %d: %s", code, tt.status, raw)
			}
			if tt.code == 0 {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(raw, &e); err != nil || e.Code != "BAD_REVIEW" || !strings.Contains(e.Message, tt.want) {
					t.Fatalf("%v %s", err, raw)
				}
				return
			}
			var a reviewAnswer
			if err := json.Unmarshal(raw, &a); err != nil || a.Kind != "AdmissionReview" || a.Response.Allowed || a.Response.Status == nil {
				t.Fatalf("%v %s", err, raw)
			}
			if a.Response.UID != tt.uid || a.Response.Status.Code != tt.code || !strings.Contains(a.Response.Status.Message, tt.want) {
				t.Fatalf("got uid %q code %d %q, want %q %d %q", a.Response.UID, a.Response.Status.Code, a.Response.Status.Message, tt.uid, tt.code, tt.want)
			}
		})
	}
	t.Run("auth", func(t *testing.T) {
		anon := s
		anon.token = ""
		if code, raw := anon.post(t, "/api/v1/admission", review("a", "Pod", "CREATE", object)); code != http.StatusUnauthorized {
			t.Fatalf("without a token: %d %s", code, raw)
		}
		// The read token may not queue scans, but may ask for admission.
		if code, raw := s.post(t, "/api/v1/scans?image=clean:1", ""); code != http.StatusForbidden {
			t.Fatalf("read token queued a scan: %d %s", code, raw)
		}
		if a := s.admit(t, "/api/v1/admission", review("a", "Pod", "CREATE", object)); !a.Response.Allowed {
			t.Fatalf("%+v", a.Response)
		}
	})
}
