package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/portcullis/portcullis/proxy"
)

func TestNormalizeImage(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	tests := []struct{ image, ref, registry, err string }{
		{"alpine", "docker.io/library/alpine:latest", "docker.io", ""},
		{"alpine:3.20", "docker.io/library/alpine:3.20", "docker.io", ""},
		{"docker.io/alpine", "docker.io/library/alpine:latest", "docker.io", ""},
		{"index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "docker.io", ""},
		{"registry-1.docker.io/team/app:1", "docker.io/team/app:1", "docker.io", ""},
		{"team/app", "docker.io/team/app:latest", "docker.io", ""},
		{"GHCR.io/org/app:1.0", "ghcr.io/org/app:1.0", "ghcr.io", ""},
		{"localhost/app", "localhost/app:latest", "localhost", ""},
		{"registry.local:5000/a/b:tag", "registry.local:5000/a/b:tag", "registry.local:5000", ""},
		{"alpine:3.20@" + d, "docker.io/library/alpine@" + d, "docker.io", ""},
		{"quay.io/x/y@" + d, "quay.io/x/y@" + d, "quay.io", ""},
		{"", "", "", "empty image"},
		{"alp ine", "", "", "spaces"},
		{"alpine\n", "", "", "control"},
		{"ghcr.io/", "", "", "no repository"},
		{strings.Repeat("a", 2000), "", "", "longer than"},
	}
	for _, tt := range tests {
		ref, registry, err := normalizeImage(tt.image)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.image, err, tt.err)
			}
			continue
		}
		if err != nil || ref != tt.ref || registry != tt.registry {
			t.Errorf("%q: %q %q %v, want %q %q", tt.image, ref, registry, err, tt.ref, tt.registry)
		}
	}
}

// admissionResolver resolves docker.io and ghcr.io references: repository
// "multi" is an index, "missing" is not there, "slow" and "stalled" never
// answer.
type admissionResolver struct{}

const mirrorDigest = "sha256:" + "5e" + "00000000000000000000000000000000000000000000000000000000000000"

func (admissionResolver) Resolve(ctx context.Context, ref string) (proxy.Resolved, error) {
	registry, rest, _ := strings.Cut(ref, "/")
	if registry != "docker.io" && registry != "ghcr.io" {
		return proxy.Resolved{}, fmt.Errorf("%w: %w: %q", proxy.ErrBadReference, proxy.ErrUnknownRegistry, ref)
	}
	repo, _, _ := strings.Cut(rest, ":")
	repo, _, _ = strings.Cut(repo, "@")
	switch {
	case strings.HasSuffix(repo, "/missing"):
		return proxy.Resolved{}, notFound{}
	case strings.HasSuffix(repo, "/slow"):
		<-ctx.Done()
		return proxy.Resolved{}, ctx.Err()
	case strings.HasSuffix(repo, "/stalled"):
		// As the proxy reports it: its own cause, not the context's.
		<-ctx.Done()
		return proxy.Resolved{}, fmt.Errorf("UNAVAILABLE: fetch manifest %s: upstream did not answer in time", ref)
	case strings.HasSuffix(repo, "/multi"):
		return proxy.Resolved{Upstream: registry, Repository: repo, Digest: indexDigest, MediaType: string(types.OCIImageIndex)}, nil
	}
	return proxy.Resolved{Upstream: registry, Repository: repo, Digest: mirrorDigest, MediaType: string(types.OCIManifestSchema1)}, nil
}

func (admissionResolver) IndexChildren(ctx context.Context, upstream, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	return fakeResolver{}.IndexChildren(ctx, upstream, repo, d)
}

type notFound struct{}

func (notFound) Error() string   { return "MANIFEST_UNKNOWN: no such manifest" }
func (notFound) HTTPStatus() int { return http.StatusNotFound }

// repoGate decides by repository name: */blocked blocks, */warned warns,
// */hang waits for the context; it records the digests it was asked about.
type repoGate struct{ asked chan string }

func (g repoGate) Check(ctx context.Context, s proxy.Subject) (proxy.Decision, error) {
	if g.asked != nil {
		g.asked <- s.Repository + "@" + s.Digest.String()
	}
	switch {
	case strings.HasSuffix(s.Repository, "/blocked"):
		return proxy.Decision{Verdict: proxy.Block, Message: "portcullis: blocked " + s.Repository + ": 1 CRITICAL vulnerability (CVE-2024-0001)"}, nil
	case strings.HasSuffix(s.Repository, "/warned"):
		return proxy.Decision{Verdict: proxy.Warn, Message: "1 HIGH vulnerability (CVE-2024-0002)"}, nil
	case strings.HasSuffix(s.Repository, "/hang"):
		<-ctx.Done()
		return proxy.Decision{}, ctx.Err()
	}
	return proxy.Decision{Verdict: proxy.Allow}, nil
}

func podReview(uid, namespace, op string, images ...string) string {
	var cs []string
	for i, img := range images {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":%q}`, i, img))
	}
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"` + namespace + `","operation":"` + op + `",` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}}}`
}

func postReview(t *testing.T, h *Handler, path, body string) admissionv1.AdmissionReview {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var out admissionv1.AdmissionReview
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("%v %s", err, w.Body)
	}
	return out
}

func TestAdmissionDecisions(t *testing.T) {
	tests := []struct {
		name      string
		admission Admission
		namespace string
		images    []string
		allowed   bool
		message   []string // in status.message
		warnings  []string // in the warnings
	}{
		{name: "allowed", images: []string{"team/ok", "ghcr.io/org/ok:1"}, allowed: true},
		{name: "blocked with reasons", images: []string{"team/ok", "team/blocked:1"}, message: []string{"team/blocked:1: portcullis: blocked team/blocked", "CVE-2024-0001"}},
		{name: "warned", images: []string{"team/warned"}, allowed: true, warnings: []string{"team/warned: 1 HIGH", "CVE-2024-0002"}},
		{name: "audit admits what enforce denies", admission: Admission{Audit: true}, images: []string{"team/blocked"}, allowed: true,
			warnings: []string{"audit mode", "would deny team/blocked", "CVE-2024-0001"}},
		{name: "exempt namespace", admission: Admission{ExemptNamespaces: []string{"kube-system"}}, namespace: "kube-system", images: []string{"team/blocked"}, allowed: true},
		{name: "other namespace not exempt", admission: Admission{ExemptNamespaces: []string{"kube-system"}}, namespace: "shop", images: []string{"team/blocked"}},
		{name: "unknown registry denied", images: []string{"quay.example.org/a/b:1"}, message: []string{"quay.example.org/a/b:1", "registry quay.example.org is not served by this mirror"}},
		{name: "unknown registry allowed by setting", admission: Admission{AllowUnknownRegistries: true}, images: []string{"quay.example.org/a/b:1"}, allowed: true,
			warnings: []string{"not served by this mirror", "unknown_registries is allow"}},
		{name: "not found", images: []string{"team/missing:1"}, message: []string{"not found through the mirror"}},
		{name: "invalid reference", images: []string{"team/ok", "bad ref"}, message: []string{"bad ref: invalid image reference"}},
		{name: "resolution cut by the timeout", admission: Admission{Timeout: 50 * time.Millisecond}, images: []string{"team/slow"}, message: []string{"admission timeout"}},
		{name: "resolution cut by the timeout, upstream's own error", admission: Admission{Timeout: 50 * time.Millisecond}, images: []string{"team/stalled"},
			message: []string{"team/stalled: not resolved within the admission timeout", "upstream did not answer in time"}},
		{name: "judgement cut by the timeout", admission: Admission{Timeout: 50 * time.Millisecond}, images: []string{"team/hang"}, message: []string{"not judged within the admission timeout"}},
		{name: "no platform", admission: Admission{Platform: v1.Platform{OS: "windows", Architecture: "amd64"}}, images: []string{"team/multi"}, message: []string{"no manifest for the platform windows/amd64"}},
		{name: "no gate: scanning off", admission: Admission{Gate: nil}, images: []string{"team/blocked"}, allowed: true, warnings: []string{"scanning is off"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.admission
			if !strings.HasPrefix(tt.name, "no gate") {
				a.Gate = repoGate{}
			}
			h := &Handler{Resolver: admissionResolver{}, Admission: a}
			uid := fmt.Sprintf("uid-%d", i)
			out := postReview(t, h, "/api/v1/admission", podReview(uid, tt.namespace, "CREATE", tt.images...)).Response
			if string(out.UID) != uid || out.Allowed != tt.allowed {
				t.Fatalf("uid %q allowed %v: %+v", out.UID, out.Allowed, out)
			}
			if !tt.allowed && (out.Result == nil || out.Result.Code != http.StatusForbidden) {
				t.Fatalf("denied without 403: %+v", out.Result)
			}
			for _, want := range tt.message {
				if !strings.Contains(out.Result.Message, want) {
					t.Errorf("message lacks %q: %s", want, out.Result.Message)
				}
			}
			warnings := strings.Join(out.Warnings, "\n")
			for _, want := range tt.warnings {
				if !strings.Contains(warnings, want) {
					t.Errorf("warnings lack %q: %q", want, out.Warnings)
				}
			}
			if len(tt.warnings) == 0 && len(out.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", out.Warnings)
			}
		})
	}
}

// The API server's ?timeout= shortens ours; a judgement that hangs is cut
// well before the API server gives up.
func TestAdmissionHonoursAPIServerTimeout(t *testing.T) {
	h := &Handler{Resolver: admissionResolver{}, Admission: Admission{Gate: repoGate{}, Timeout: time.Minute}}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		// No t.Fatal off the test's goroutine: hand the answer back.
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/admission?timeout=100ms", strings.NewReader(podReview("u", "", "CREATE", "team/hang"))))
		done <- w
	}()
	select {
	case w := <-done:
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.Allowed ||
			!strings.Contains(out.Response.Result.Message, "admission timeout") {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	case <-time.After(30 * time.Second): // bound on the test, not a timed assertion
		t.Fatal("the review outlived the API server's timeout by far")
	}
}

// Each distinct image is judged once, however many containers name it;
// past the bound the review is refused, not judged image by image.
func TestAdmissionBounds(t *testing.T) {
	asked := make(chan string, 1000)
	h := &Handler{Resolver: admissionResolver{}, Admission: Admission{Gate: repoGate{asked: asked}}}
	same := make([]string, 50)
	for i := range same {
		same[i] = "team/ok:1"
	}
	if out := postReview(t, h, "/api/v1/admission", podReview("u", "", "CREATE", same...)).Response; !out.Allowed || len(asked) != 1 {
		t.Fatalf("allowed %v, gate asked %d times", out.Allowed, len(asked))
	}
	many := make([]string, maxDistinctImages+1)
	for i := range many {
		many[i] = fmt.Sprintf("team/ok:%d", i)
	}
	out := postReview(t, h, "/api/v1/admission", podReview("u", "", "CREATE", many...)).Response
	if out.Allowed || out.Result.Code != http.StatusBadRequest || !strings.Contains(out.Result.Message, "distinct images") || len(asked) != 1 {
		t.Fatalf("%+v (gate asked %d times)", out, len(asked))
	}
	// Long reasons are cut, on a rune boundary.
	long := strings.Repeat("é", 5000)
	if got := truncate(long, maxDenialMessage); len(got) > maxDenialMessage || !strings.HasSuffix(got, "…") || !json.Valid([]byte(quote(got))) {
		t.Fatalf("truncate: %d bytes", len(got))
	}
}

// An update is judged on the images it adds: a workload that runs a
// blocked image can still be scaled, but not given another blocked image.
func TestAdmissionUpdateJudgesAddedImages(t *testing.T) {
	h := &Handler{Resolver: admissionResolver{}, Admission: Admission{Gate: repoGate{}}}
	oldPod := `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c0","image":"team/blocked:1"}]}}`
	withOld := func(body string) string {
		return strings.Replace(body, `"object":`, `"oldObject":`+oldPod+`,"object":`, 1)
	}
	if out := postReview(t, h, "/api/v1/admission", withOld(podReview("u", "", "UPDATE", "team/blocked:1"))).Response; !out.Allowed {
		t.Fatalf("unchanged image judged again: %+v", out.Result)
	}
	out := postReview(t, h, "/api/v1/admission", withOld(podReview("u", "", "UPDATE", "team/blocked:1", "team/blocked:2"))).Response
	if out.Allowed || !strings.Contains(out.Result.Message, "team/blocked:2") || strings.Contains(out.Result.Message, "team/blocked:1") {
		t.Fatalf("%+v", out.Result)
	}
	// A create with the same old object (which the API server never sends) is judged whole.
	if out := postReview(t, h, "/api/v1/admission", withOld(podReview("u", "", "CREATE", "team/blocked:1"))).Response; out.Allowed {
		t.Fatal("create not judged")
	}
}

// The mutating endpoint pins tags to the digest judged (the index for a
// multi-platform image), leaves digests as they are, and patches the
// template's paths.
func TestAdmissionMutatePatch(t *testing.T) {
	h := &Handler{Resolver: admissionResolver{}, Admission: Admission{Gate: repoGate{}}}
	body := podReview("u", "", "CREATE", "team/ok:1", "team/multi", "docker.io/team/ok@"+mirrorDigest)
	out := postReview(t, h, "/api/v1/admission/mutate", body).Response
	if !out.Allowed || out.PatchType == nil || *out.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("%+v", out)
	}
	var ops []jsonPatchOp
	if err := json.Unmarshal(out.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	want := []jsonPatchOp{
		{Op: "replace", Path: "/spec/containers/0/image", Value: "docker.io/team/ok@" + mirrorDigest},
		{Op: "replace", Path: "/spec/containers/1/image", Value: "docker.io/team/multi@" + indexDigest},
	}
	if fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Fatalf("patch %+v, want %+v", ops, want)
	}
	// The validating endpoint never patches.
	if out := postReview(t, h, "/api/v1/admission", body).Response; out.Patch != nil {
		t.Fatalf("validating endpoint patched: %s", out.Patch)
	}
}

func TestPodImagesOfEveryKind(t *testing.T) {
	spec := `{"initContainers":[{"name":"i","image":"init"}],"containers":[{"name":"c","image":"main"}],"ephemeralContainers":[{"name":"e","image":"debug"}]}`
	tmpl := `{"template":{"spec":` + spec + `}}`
	tests := []struct{ group, kind, object, prefix string }{
		{"", "Pod", `{"spec":` + spec + `}`, "/spec"},
		{"", "ReplicationController", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"apps", "Deployment", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"apps", "StatefulSet", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"apps", "DaemonSet", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"apps", "ReplicaSet", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"batch", "Job", `{"spec":` + tmpl + `}`, "/spec/template/spec"},
		{"batch", "CronJob", `{"spec":{"jobTemplate":{"spec":` + tmpl + `}}}`, "/spec/jobTemplate/spec/template/spec"},
	}
	for _, tt := range tests {
		req := &admissionRequest{Kind: groupVersionKind{Group: tt.group, Kind: tt.kind}, Object: []byte(tt.object)}
		images, ok, err := podImages(req)
		want := []containerImage{{tt.prefix + "/initContainers/0/image", "init"}, {tt.prefix + "/containers/0/image", "main"}, {tt.prefix + "/ephemeralContainers/0/image", "debug"}}
		if err != nil || !ok || fmt.Sprint(images) != fmt.Sprint(want) {
			t.Errorf("%s: %v %v %v", tt.kind, images, ok, err)
		}
	}
	req := &admissionRequest{Kind: groupVersionKind{Kind: "ConfigMap"}, Object: []byte(`{}`)}
	if _, ok, err := podImages(req); ok || err != nil {
		t.Errorf("ConfigMap: %v %v", ok, err)
	}
	req.Kind.Kind, req.Object = "Pod", []byte(`{"spec":{}} {}`)
	if _, _, err := podImages(req); err == nil {
		t.Error("trailing data accepted")
	}
}

// FuzzAdmissionReview feeds the decoder, the pod spec walk and the image
// normaliser hostile bodies: they answer or fail, never panic, and stay
// within their bounds.
func FuzzAdmissionReview(f *testing.F) {
	f.Add([]byte(podReview("u", "ns", "CREATE", "alpine", "ghcr.io/a/b:1@sha256:"+strings.Repeat("0", 64))))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"batch","kind":"CronJob"},"object":{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"a"}]}}}}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"apps","kind":"Deployment"},"object":{"spec":{"template":{"spec":{"containers":[{"resources":{"limits":{"cpu":"1e999"}}}]}}}}}}`))
	f.Add([]byte(`{"request":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := decodeReview(body)
		if err != nil {
			return
		}
		images, _, err := podImages(review.Request)
		if err != nil {
			return
		}
		if len(images) > maxPodImages {
			t.Fatalf("%d images", len(images))
		}
		for _, ci := range images {
			ref, registry, err := normalizeImage(ci.Image)
			if err == nil && (!strings.HasPrefix(ref, registry+"/") || len(ref) > 2*maxImageRefLength) {
				t.Fatalf("%q -> %q %q", ci.Image, ref, registry)
			}
		}
	})
}
