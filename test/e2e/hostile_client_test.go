package e2e

import (
	"testing"
)

// tag_ttl: 0 revalidates every request by tag (it used to become 5 minutes,
// so a re-pushed tag was served as its old digest).
func TestTagTTLZeroRevalidatesEveryTagRequest(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams:
  - {name: up.test, url: UPSTREAM_URL, tag_ttl: 0}
`)
	d1 := up.Push(t, "team/app", "latest", ociImage(t, 1024))
	get := func() response { return do(t, "GET", pc.URL+"/v2/team/app/manifests/latest") }
	if r := get(); r.status != 200 || r.header.Get("Docker-Content-Digest") != d1.String() {
		t.Fatalf("first: %d %v", r.status, r.header)
	}
	up.ResetCounts()
	for i := range 3 {
		if r := get(); r.header.Get("Portcullis-Cache") != "revalidated" {
			t.Fatalf("request %d: %d %v", i, r.status, r.header)
		}
	}
	if n := up.Count("HEAD", "/manifests/latest"); n != 3 {
		t.Fatalf("revalidation HEADs = %d, want 3", n)
	}
	d2 := up.Push(t, "team/app", "latest", ociImage(t, 1024))
	if r := get(); r.header.Get("Docker-Content-Digest") != d2.String() {
		t.Fatalf("re-pushed tag served as %s, want %s", r.header.Get("Docker-Content-Digest"), d2)
	}
}
