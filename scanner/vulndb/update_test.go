package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// zipOf builds an all.zip-like archive of the given records.
func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	return zipWith(t, files, zip.Deflate)
}

// zipWith builds an archive of files, in name order, each entry
// compressed by method.
func zipWith(t *testing.T, files map[string][]byte, method uint16) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// osvServer serves one archive with an ETag and records the conditional
// headers it was sent.
type osvServer struct {
	mu      sync.Mutex
	body    []byte
	etag    string
	lastMod string // if set, sent instead of an ETag
	status  int    // if set, every answer
	seen    []string
}

func (s *osvServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, r.Header.Get("If-None-Match")+"|"+r.Header.Get("If-Modified-Since"))
	switch {
	case s.status != 0:
		w.WriteHeader(s.status)
		return
	case s.etag != "" && r.Header.Get("If-None-Match") == s.etag,
		s.lastMod != "" && r.Header.Get("If-Modified-Since") == s.lastMod:
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if s.etag != "" {
		w.Header().Set("ETag", s.etag)
	}
	if s.lastMod != "" {
		w.Header().Set("Last-Modified", s.lastMod)
	}
	w.Write(s.body)
}

func (s *osvServer) set(body []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag = body, etag
}

func (s *osvServer) lastSeen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

func TestUpdate(t *testing.T) {
	files := recordFiles(t, "npm")
	srv := &osvServer{}
	srv.set(zipOf(t, files), `"v1"`)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	src := []Source{{Ecosystem: "npm", URL: ts.URL + "/npm/all.zip"}}
	db := openTestDB(t)
	ctx := context.Background()

	var progress bytes.Buffer
	st, err := db.Update(ctx, src, ts.Client(), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 8 || st.Ecosystems["npm"] != 8 || srv.lastSeen() != "|" {
		t.Fatalf("first update: %+v, request headers %q", st, srv.lastSeen())
	}
	if !strings.Contains(progress.String(), "updated: 8 records") {
		t.Errorf("progress: %q", progress.String())
	}
	v1 := db.Version()
	status, _ := db.Status()
	if len(status.Sources) != 1 || status.Sources[0].ETag != `"v1"` || status.Sources[0].Records != 8 || status.Sources[0].ChangedAt.IsZero() {
		t.Errorf("status after first update: %+v", status.Sources)
	}

	// Unchanged upstream: a conditional request, a 304, nothing imported.
	st, err = db.Update(ctx, src, ts.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv.lastSeen() != `"v1"|` || st.Records != 0 || st.Unchanged != 1 || db.Version() != v1 {
		t.Errorf("second update: %+v, If-None-Match %q, version %s → %s", st, srv.lastSeen(), v1, db.Version())
	}

	// New content: one record changed upstream, one gone.
	delete(files, "GHSA-fvqr-27wr-82fm.json")
	files["GHSA-4xc9-xhrj-v574.json"] = bytes.Replace(files["GHSA-4xc9-xhrj-v574.json"], []byte(`"fixed": "4.17.11"`), []byte(`"fixed": "4.17.12"`), 1)
	srv.set(zipOf(t, files), `"v2"`)
	st, err = db.Update(ctx, src, ts.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 7 || st.Removed != 1 || db.Version() == v1 {
		t.Errorf("third update: %+v", st)
	}
	fs := match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"})
	if got := ids(fs); !slices.Contains(got, "GHSA-4xc9-xhrj-v574") || slices.Contains(got, "GHSA-fvqr-27wr-82fm") {
		t.Errorf("after the update lodash 4.17.11 matches %v", got)
	}
	if st, _ := db.Status(); st.Records != 7 || st.Sources[0].ETag != `"v2"` {
		t.Errorf("status after third update: %+v", st)
	}

	// A record the source now ships broken is skipped, and the stored copy
	// kept rather than dropped as "no longer listed".
	broken := files["GHSA-jf85-cpcp-j695.json"]
	files["GHSA-jf85-cpcp-j695.json"] = bytes.Replace(broken, []byte(`"introduced": "0"`), []byte(`"introduced": ""`), 1)
	srv.set(zipOf(t, files), `"v3"`)
	st, err = db.Update(ctx, src, ts.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 || st.Removed != 0 || !strings.Contains(st.Problems[0], "GHSA-jf85-cpcp-j695.json") {
		t.Errorf("fourth update: %+v", st)
	}
	if got := ids(match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"})); !slices.Contains(got, "GHSA-jf85-cpcp-j695") {
		t.Errorf("record shipped broken was dropped: %v", got)
	}
}

// TestUpdateFailures: a failing source is reported and recorded, the others
// still import; Last-Modified works when there is no ETag.
func TestUpdateFailures(t *testing.T) {
	good := &osvServer{body: zipOf(t, recordFiles(t, "npm")), lastMod: "Wed, 01 Jan 2025 00:00:00 GMT"}
	bad := &osvServer{status: http.StatusInternalServerError}
	notZip := &osvServer{body: []byte("<html>captive portal</html>"), etag: `"x"`}
	tg, tb, tn := httptest.NewServer(good), httptest.NewServer(bad), httptest.NewServer(notZip)
	defer tg.Close()
	defer tb.Close()
	defer tn.Close()
	sources := []Source{
		{Ecosystem: "npm", URL: tg.URL + "/npm/all.zip"},
		{Ecosystem: "PyPI", URL: tb.URL + "/PyPI/all.zip"},
		{Ecosystem: "Go", URL: tn.URL + "/Go/all.zip"},
	}
	db := openTestDB(t)
	st, err := db.Update(context.Background(), sources, nil, nil)
	if err == nil || !strings.Contains(err.Error(), tb.URL) || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "not a zip") {
		t.Errorf("Update error = %v", err)
	}
	if st.Records != 8 {
		t.Errorf("good source not imported: %+v", st)
	}
	status, _ := db.Status()
	errs := map[string]string{}
	for _, s := range status.Sources {
		errs[s.Ecosystem] = s.Error
	}
	if errs["npm"] != "" || errs["PyPI"] == "" || errs["Go"] == "" {
		t.Errorf("source errors: %v", errs)
	}
	if _, err := db.Update(context.Background(), sources[:1], nil, nil); err != nil {
		t.Fatal(err)
	}
	if good.lastSeen() != "|Wed, 01 Jan 2025 00:00:00 GMT" {
		t.Errorf("If-Modified-Since not sent: %q", good.lastSeen())
	}
}

func TestDefaultSources(t *testing.T) {
	got := map[string]string{}
	for _, s := range DefaultSources() {
		got[s.Ecosystem] = s.URL
	}
	for eco, url := range map[string]string{
		"Debian":      "https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip",
		"Alpine":      "https://osv-vulnerabilities.storage.googleapis.com/Alpine/all.zip",
		"Go":          "https://osv-vulnerabilities.storage.googleapis.com/Go/all.zip",
		"PyPI":        "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip",
		"Rocky Linux": "https://osv-vulnerabilities.storage.googleapis.com/Rocky%20Linux/all.zip",
	} {
		if got[eco] != url {
			t.Errorf("DefaultSources()[%s] = %q, want %q", eco, got[eco], url)
		}
	}
}

func TestSourcesAtMirror(t *testing.T) {
	for _, base := range []string{"http://127.0.0.1:8080/osv", "http://127.0.0.1:8080/osv/"} {
		got := SourcesAt(base)
		if len(got) != len(DefaultSources()) {
			t.Fatalf("SourcesAt(%q): %d sources", base, len(got))
		}
		for _, s := range got {
			if s.Ecosystem == "Rocky Linux" && s.URL != "http://127.0.0.1:8080/osv/Rocky%20Linux/all.zip" {
				t.Errorf("SourcesAt(%q): %s at %q", base, s.Ecosystem, s.URL)
			}
		}
	}
}

// An update that downloaded nothing leaves no database version: an empty
// database must not pass for one ("vulnerability database missing").
func TestFailedFirstUpdateLeavesNoVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Update(t.Context(), SourcesAt(srv.URL), srv.Client(), nil); err == nil {
		t.Fatal("update from a failing server succeeded")
	}
	if st, err := db.Status(); err != nil || st.Version != "" || !st.BuiltAt.IsZero() || len(st.Sources) == 0 {
		t.Fatalf("status after a failed first update: %+v, %v", st, err)
	}
}
