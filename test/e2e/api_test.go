package e2e

import (
	"net/http"
	"strings"
	"testing"
)

func TestStatusAPIErrors(t *testing.T) {
	s := start(t)
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/api/v1/scans/not-a-digest", http.StatusBadRequest, "invalid digest"},
		{"GET", "/api/v1/scans/sha256:" + strings.Repeat("a", 64), http.StatusNotFound, "no scan"},
		{"POST", "/api/v1/scans", http.StatusBadRequest, "missing ?image"},
		{"POST", "/api/v1/scans?image=Bad/Name:1", http.StatusBadRequest, "bad image reference"},
		{"POST", "/api/v1/scans?image=evil.example/x:1", http.StatusBadRequest, "not configured"},
		{"POST", "/api/v1/scans?image=team/missing:1", http.StatusNotFound, "UNKNOWN_IMAGE"},
		{"DELETE", "/api/v1/scans/sha256:" + strings.Repeat("a", 64), http.StatusMethodNotAllowed, "use GET"},
		{"GET", "/api/v1/nothing", http.StatusNotFound, "no such endpoint"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, tc.method, s.pc.URL+tc.path)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.says) || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}
