package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// fakeRegistry serves fixed content from memory.
type fakeRegistry struct {
	manifests map[string][]byte
	blobs     map[string][]byte
	err       error // returned for anything missing, instead of ErrNotFound
}

func (f fakeRegistry) missing(what string) error {
	if f.err != nil {
		return f.err
	}
	return fmt.Errorf("%s: %w", what, ErrNotFound)
}

func (f fakeRegistry) Manifest(_ context.Context, repo, ref string) ([]byte, string, string, error) {
	if b, ok := f.manifests[repo+"@"+ref]; ok {
		return b, "application/vnd.oci.image.manifest.v1+json", "", nil
	}
	return nil, "", "", f.missing(ref)
}

func (f fakeRegistry) Blob(_ context.Context, repo, digest string) (io.ReadCloser, error) {
	if b, ok := f.blobs[repo+"@"+digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return nil, f.missing(digest)
}

func (f fakeRegistry) Referrers(context.Context, string, string, string) ([]byte, error) {
	return nil, f.missing("referrers")
}

func roundTrip(t *testing.T, reg Registry, method, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return (&registryTransport{reg: reg}).RoundTrip(req)
}

func TestTransport(t *testing.T) {
	base := "https://" + registryHost + "/v2/"
	reg := fakeRegistry{
		manifests: map[string][]byte{"acme/api@sha256-abc.sig": []byte(`{"schemaVersion":2}`)},
		blobs:     map[string][]byte{"acme/api@sha256:big": bytes.Repeat([]byte("x"), maxBlobBytes+1)},
	}

	t.Run("refuses any other host", func(t *testing.T) {
		for _, u := range []string{"https://rekor.sigstore.dev/api/v1/log", "https://127.0.0.1/v2/", "http://" + registryHost + ".evil/v2/"} {
			if _, err := roundTrip(t, reg, http.MethodGet, u); err == nil {
				t.Errorf("request to %s was answered", u)
			}
		}
	})
	t.Run("read-only", func(t *testing.T) {
		resp, err := roundTrip(t, reg, http.MethodPut, base+"acme/api/manifests/latest")
		if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("PUT: %v %v", resp, err)
		}
	})
	t.Run("serves manifests with digest header", func(t *testing.T) {
		resp, err := roundTrip(t, reg, http.MethodGet, base+"acme/api/manifests/sha256-abc.sig")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %v %v", resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != `{"schemaVersion":2}` || resp.Header.Get("Docker-Content-Digest") != sha256Digest(body) {
			t.Errorf("body %q, digest %q", body, resp.Header.Get("Docker-Content-Digest"))
		}
	})
	t.Run("not found is an OCI 404", func(t *testing.T) {
		resp, err := roundTrip(t, reg, http.MethodGet, base+"acme/api/manifests/nope")
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET: %v %v", resp, err)
		}
		var body struct{ Errors []struct{ Code string } }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != "MANIFEST_UNKNOWN" {
			t.Errorf("error body: %+v %v", body, err)
		}
	})
	t.Run("registry failure is a transport error", func(t *testing.T) {
		_, err := roundTrip(t, fakeRegistry{err: errUpstreamDown}, http.MethodGet, base+"acme/api/blobs/sha256:x")
		var fe *fetchError
		if !errors.As(err, &fe) || !errors.Is(err, errUpstreamDown) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("oversized blob fails while reading", func(t *testing.T) {
		resp, err := roundTrip(t, reg, http.MethodGet, base+"acme/api/blobs/sha256:big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("read: %v", err)
		}
	})
}

func TestSplitPath(t *testing.T) {
	cases := []struct{ path, repo, kind, ref string }{
		{"/v2/acme/api/manifests/sha256-abc.sig", "acme/api", "manifests", "sha256-abc.sig"},
		{"/v2/a/manifests/b/blobs/sha256:1", "a/manifests/b", "blobs", "sha256:1"},
		{"/v2/lib/referrers/sha256:2", "lib", "referrers", "sha256:2"},
		{"/v2/manifests/x", "", "", ""},
		{"/v3/a/manifests/x", "", "", ""},
	}
	for _, c := range cases {
		repo, kind, ref, ok := splitPath(c.path)
		if ok != (c.repo != "") || repo != c.repo || kind != c.kind || ref != c.ref {
			t.Errorf("splitPath(%q) = %q %q %q %v", c.path, repo, kind, ref, ok)
		}
	}
}

// flakyBlobs is the test registry with blob reads failing: the signatures
// exist but cannot be read, which must not pass for "invalid" or "unsigned".
type flakyBlobs struct{ Registry }

func (flakyBlobs) Blob(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errUpstreamDown
}

func TestUnreadableSignatureIsError(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			signer, pubPath := newKeySigner(t)
			img := e.reg.pushImage(t, e.repo)
			f.sign(e, t, img, signer, false)
			r := Verify(context.Background(), flakyBlobs{e.reg.client()}, e.repo, img, Trust{Keys: []string{pubPath}})
			wantState(t, r, StateError, errUpstreamDown.Error())
		})
	}
}
