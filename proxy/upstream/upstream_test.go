package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/test/testregistry"
)

func TestTokenFlowCachesTokensPerScope(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTokenAuth("bot", "s3cret"), testregistry.WithTokenTTL(2*time.Second))
	img := testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1)
	want := reg.Push(t, "team/app", "1.0", img)
	reg.Push(t, "team/other", "1.0", img)
	reg.ResetCounts()

	c, err := upstream.New(upstream.Config{Name: "private.test", URL: reg.URL(), Username: "bot", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 5 {
		m, err := c.GetManifest(ctx, "team/app", "1.0", nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Digest.String() != want.String() {
			t.Fatalf("digest %s, want %s", m.Digest, want)
		}
	}
	if n := reg.TokenRequests(); n != 1 {
		t.Fatalf("token requests for 5 pulls of one repository: %d, want 1", n)
	}
	if _, err := c.GetManifest(ctx, "team/other", "1.0", nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.TokenRequests(); n != 2 {
		t.Fatalf("token requests after a second repository: %d, want 2 (one per scope)", n)
	}
	time.Sleep(2100 * time.Millisecond) // tokens expire
	if _, err := c.GetManifest(ctx, "team/app", "1.0", nil); err != nil {
		t.Fatalf("after token expiry: %v", err)
	}
	if n := reg.TokenRequests(); n != 3 {
		t.Fatalf("token requests after expiry: %d, want 3", n)
	}
}

func TestTokenFlowWrongPassword(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTokenAuth("bot", "s3cret"))
	reg.Push(t, "team/app", "1.0", testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1))
	c, err := upstream.New(upstream.Config{Name: "private.test", URL: reg.URL(), Username: "bot", Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetManifest(context.Background(), "team/app", "1.0", nil)
	var se *upstream.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v, want a 401 StatusError", err)
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	reg := testregistry.Start(t)
	reg.Push(t, "team/app", "1.0", testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1))
	c, err := upstream.New(upstream.Config{Name: "up.test", URL: reg.URL(), Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	reg.ResetCounts()
	reg.Fail("/manifests/", http.StatusServiceUnavailable, 2, "")
	if _, err := c.GetManifest(context.Background(), "team/app", "1.0", nil); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	reg.Fail("/manifests/", http.StatusServiceUnavailable, 3, "")
	_, err = c.GetManifest(context.Background(), "team/app", "1.0", nil)
	if !upstream.Temporary(err) {
		t.Fatalf("three 503s: %v, want a temporary error", err)
	}
	if n := reg.Count("GET", "/manifests/"); n != 6 {
		t.Fatalf("upstream GETs = %d, want 6 (3 + 3 attempts)", n)
	}
	reg.Fail("/manifests/", http.StatusNotFound, 1, "")
	reg.ResetCounts()
	if _, err := c.GetManifest(context.Background(), "team/app", "1.0", nil); !upstream.IsNotFound(err) {
		t.Fatalf("404: %v", err)
	}
	if n := reg.Count("GET", "/manifests/"); n != 1 {
		t.Fatalf("a 404 was retried: %d attempts", n)
	}
}

func TestUnreachableIsTemporaryAndFast(t *testing.T) {
	reg := testregistry.Start(t)
	reg.Stop()
	c, err := upstream.New(upstream.Config{Name: "down.test", URL: reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = c.GetManifest(context.Background(), "team/app", "1.0", nil)
	if !errors.Is(err, upstream.ErrUnreachable) || !upstream.Temporary(err) {
		t.Fatalf("stopped upstream: %v", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("refused connection took %v with retries", took)
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "ghcr.io", "ftp://x", "https://x/path", "http://"} {
		if _, err := upstream.New(upstream.Config{Name: "x", URL: u}); err == nil {
			t.Errorf("New accepted url %q", u)
		}
	}
}
