package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

const alpineTar = "../../shared/testdata/images/alpine-3.16.9.tar"
const alpineOSV = "../../shared/testdata/osv/alpine"

// rig is a real upstream registry, a real proxy over it, the real scanner
// and a real database: what the pipeline runs with in the server.
type rig struct {
	upstreamHost string
	proxy        *proxy.Proxy
	state        *store.Bolt
	queue        *store.BoltQueue
	db           *vulndb.Shared
	dbDir        string
	images       *countingImages
	scans        *countingScanner
}

// countingImages and countingScanner pass through to the real thing and
// count calls, to prove what was (not) read.
type countingImages struct {
	pipeline.Images
	calls atomic.Int64
}

func (c *countingImages) Image(ctx context.Context, up, repo string, d digest.Digest) (v1.Image, error) {
	c.calls.Add(1)
	return c.Images.Image(ctx, up, repo, d)
}

type countingScanner struct {
	*scanner.Scanner
	calls atomic.Int64
}

func (c *countingScanner) Scan(ctx context.Context, img v1.Image) (*scanner.Inventory, error) {
	c.calls.Add(1)
	time.Sleep(50 * time.Millisecond) // hold the scan open so requests race it
	return c.Scanner.Scan(ctx, img)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	content, err := cache.Open(context.Background(), cache.Config{Parameters: map[string]any{"rootdirectory": filepath.Join(dir, "cache")}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	state, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	client, err := upstream.New(upstream.Config{Name: "docker.io", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{Upstreams: []proxy.Upstream{{Client: client}}, DefaultUpstream: "docker.io",
		Cache: content, Fetcher: cache.NewFetcher(content, time.Minute, 10*time.Second, quiet), State: state, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	queue, err := state.Queue("scans")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{upstreamHost: strings.TrimPrefix(srv.URL, "http://"), proxy: p, state: state, queue: queue, dbDir: filepath.Join(dir, "vulndb")}
	r.db = vulndb.NewShared(r.dbDir)
	r.images = &countingImages{Images: p}
	r.scans = &countingScanner{Scanner: scanner.New()}
	return r
}

func (r *rig) pipeline(t *testing.T) *pipeline.Pipeline {
	return pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Workers: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// gated is a pipeline that judges pulls under pol, as the proxy's gate.
func (r *rig) gated(pol *policy.Policy) *pipeline.Pipeline {
	return pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Policy: pol, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func (r *rig) importDB(t *testing.T) {
	t.Helper()
	db, err := vulndb.Open(r.dbDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Import(context.Background(), []string{alpineOSV}, nil); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) pushAlpine(t *testing.T) digest.Digest {
	t.Helper()
	img, err := tarball.ImageFromPath(alpineTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.upstreamHost + "/library/alpine:3.16.9")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return digest.Digest(d.String())
}

func run(t *testing.T, pl *pipeline.Pipeline) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitDone(t *testing.T, s store.ScanStore, d digest.Digest) store.ScanRecord {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rec, err := s.Scan(context.Background(), d.String())
		if err == nil && rec.State != store.ScanPending {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("scan of %s not finished: %+v %v", d, rec, err)
		}
	}
}

func findingIDs(t *testing.T, rec store.ScanRecord) []string {
	t.Helper()
	var out []string
	for _, f := range rec.Findings {
		out = append(out, f.Package+":"+f.ID)
	}
	return out
}

func TestRacingPullsScanOnce(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	pl := r.pipeline(t)
	run(t, pl)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rec := waitDone(t, r.state, d)
	if rec.State != store.ScanDone || rec.ScannerVersion != scanner.Version || rec.DBVersion == "" {
		t.Fatalf("record %+v", rec)
	}
	if got := strings.Join(findingIDs(t, rec), " "); got != "busybox:ALPINE-CVE-2023-42366 ssl_client:ALPINE-CVE-2023-42366" {
		t.Fatalf("findings %s", got)
	}
	if n := r.scans.calls.Load(); n != 1 {
		t.Fatalf("%d scans for 10 racing pulls, want 1", n)
	}
	// Served again later: nothing new.
	pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json"})
	time.Sleep(100 * time.Millisecond)
	if n := r.scans.calls.Load(); n != 1 {
		t.Fatalf("a served-again digest was scanned again (%d)", n)
	}
}

func TestRematchReadsNoLayers(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	pl := r.pipeline(t)
	run(t, pl)
	if err := pl.Enqueue(context.Background(), "docker.io", "library/alpine", d, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	if rec := waitDone(t, r.state, d); len(findingIDs(t, rec)) != 0 || rec.DBVersion != "" {
		t.Fatalf("before any import: %+v", rec)
	}
	r.importDB(t)
	images := r.images.calls.Load()
	n, err := pl.Rematch(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("rematch: %d, %v", n, err)
	}
	rec, _ := r.state.Scan(context.Background(), d.String())
	if len(findingIDs(t, rec)) != 2 || rec.DBVersion != r.db.Version() || rec.Stale {
		t.Fatalf("after rematch: %+v", rec)
	}
	if r.images.calls.Load() != images || r.scans.calls.Load() != 1 {
		t.Fatal("rematch read the image again")
	}
	if n, _ := pl.Rematch(context.Background()); n != 0 {
		t.Fatalf("second rematch redid %d", n)
	}
}

func TestFailedScanIsRecordedAndNotRetriedAtOnce(t *testing.T) {
	r := newRig(t)
	pl := r.pipeline(t)
	run(t, pl)
	missing := digest.FromString("nothing")
	subj := proxy.Subject{Upstream: "docker.io", Repository: "library/none", Digest: missing, MediaType: "application/vnd.oci.image.manifest.v1+json"}
	pl.Check(context.Background(), subj)
	rec := waitDone(t, r.state, missing)
	if rec.State != store.ScanFailed || !strings.Contains(rec.Error, "MANIFEST_UNKNOWN") {
		t.Fatalf("record %+v", rec)
	}
	pl.Check(context.Background(), subj)
	time.Sleep(100 * time.Millisecond)
	// A retry writes the record (pending, then failed again).
	if again, err := r.state.Scan(context.Background(), missing.String()); err != nil || again.Revision != rec.Revision {
		t.Fatalf("failed scan retried immediately: revision %d → %d (%v)", rec.Revision, again.Revision, err)
	}
}

func TestPendingScansResumeAfterRestart(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	// A previous process queued it and died before scanning.
	now := time.Now()
	if err := r.state.PutScan(context.Background(), &store.ScanRecord{Digest: d.String(), State: store.ScanPending, Upstream: "docker.io", Repository: "library/alpine", QueuedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	run(t, r.pipeline(t))
	if rec := waitDone(t, r.state, d); rec.State != store.ScanDone {
		t.Fatalf("resumed scan: %+v", rec)
	}
}

func TestIndexScansPulledOrAllPlatforms(t *testing.T) {
	r := newRig(t)
	idx, err := random.Index(512, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.upstreamHost + "/team/multi:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	mt, _ := idx.MediaType()
	pl := r.pipeline(t)
	run(t, pl)
	// Served to a client, the index queues nothing: its children are
	// queued when clients pull them.
	pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: "team/multi", Digest: digest.Digest(d.String()), MediaType: string(mt)})
	time.Sleep(100 * time.Millisecond)
	if n := r.scans.calls.Load(); n != 0 {
		t.Fatalf("index pull scanned %d children", n)
	}
	// Asked for explicitly (the API), every platform is scanned.
	if err := pl.Request(context.Background(), "docker.io", "team/multi", digest.Digest(d.String()), string(mt)); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, c := range im.Manifests {
		if rec := waitDone(t, r.state, digest.Digest(c.Digest.String())); rec.State != store.ScanDone {
			t.Fatalf("child %s: %+v", c.Digest, rec)
		}
	}
}

// Artifacts (signatures, SBOMs) are manifests too; they are recorded as
// such, not scanned and not failed.
func TestArtifactsAreNotScanned(t *testing.T) {
	r := newRig(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	artifact := mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), "application/vnd.example.sbom+json")
	ref, _ := name.ParseReference(r.upstreamHost + "/team/app:sbom")
	if err := remote.Write(ref, artifact); err != nil {
		t.Fatal(err)
	}
	d, _ := artifact.Digest()
	pl := r.pipeline(t)
	run(t, pl)
	pl.Enqueue(context.Background(), "docker.io", "team/app", digest.Digest(d.String()), string(types.OCIManifestSchema1))
	rec := waitDone(t, r.state, digest.Digest(d.String()))
	if rec.State != store.ScanDone || rec.Inventory == nil || !strings.Contains(rec.Inventory.Note, "artifact") || r.scans.calls.Load() != 0 {
		t.Fatalf("artifact: %+v, scans %d", rec, r.scans.calls.Load())
	}
}

// The gate waits for the scan, then applies the rule; freshness compares
// the tag the image was pulled by with the repository's tags upstream.
func TestGateFreshnessAndSize(t *testing.T) {
	r := newRig(t)
	var old digest.Digest
	for _, tag := range []string{"1.0.0", "1.0.1", "1.1.0"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(r.upstreamHost + "/team/app:" + tag)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		if tag == "1.0.0" {
			d, _ := img.Digest()
			old = digest.Digest(d.String())
		}
	}
	pol, err := policy.Parse([]byte(`
rules:
  - name: fresh
    match: {upstreams: [docker.io]}
    freshness: {newer_patch_available: block}
    size: {max_layers: 1}
    on_unscanned: {wait: 30s, then: block}
`))
	if err != nil {
		t.Fatal(err)
	}
	pl := r.gated(pol)
	run(t, pl)
	dec, err := pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: "team/app", Reference: "1.0.0", Digest: old, MediaType: string(types.DockerManifestSchema2)})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "1.0.1") || !strings.Contains(dec.Message, "layers") {
		t.Fatalf("decision %+v", dec)
	}
	rec, _ := r.state.Decision(context.Background(), old.String(), "docker.io", "team/app")
	if rec.Tag != "1.0.0" || rec.Verdict != "block" || rec.Decision == nil || !rec.Decision.Has("NEWER_RELEASE") || !rec.Decision.Has("TOO_MANY_LAYERS") {
		t.Fatalf("stored: tag %q verdict %q decision %+v", rec.Tag, rec.Verdict, rec.Decision)
	}
}

// A database import that makes an allowed image fail changes its verdict,
// and the change is kept in its history.
func TestVerdictHistoryOnDatabaseChange(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	pol, err := policy.Parse([]byte(`
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	pl := r.gated(pol)
	run(t, pl)
	subj := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	dec, err := pl.Check(context.Background(), subj)
	if err != nil || dec.Verdict != proxy.Warn || dec.Message != "vulnerability database missing" {
		t.Fatalf("no database yet (on_error allow: tagged): %+v %v", dec, err)
	}
	r.importDB(t)
	if _, err := pl.Rematch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dec, _ := pl.Check(context.Background(), subj); dec.Verdict != proxy.Block {
		t.Fatalf("after the import: %+v", dec)
	}
	rec, _ := r.state.Decision(context.Background(), d.String(), "docker.io", "library/alpine")
	if len(rec.History) != 2 || rec.History[0].To != "warn" || rec.History[1].From != "warn" || rec.History[1].To != "block" {
		t.Fatalf("history %+v", rec.History)
	}
}

// The verdict record keeps the tags a digest was pulled by in its
// repository; a pull by a tag already listed writes nothing, in this
// process or after it (the remembered verdict carries the tags).
func TestTagsSeenAreRecorded(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	pol, err := policy.Parse([]byte(`
rules:
  - name: scanned
    match: {}
    vulnerabilities: {block: CRITICAL}
    on_unscanned: {wait: 30s, then: block}
`))
	if err != nil {
		t.Fatal(err)
	}
	pl := r.gated(pol)
	run(t, pl)
	r.importDB(t)
	pull := func(ref string) store.DecisionRecord {
		t.Helper()
		subj := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: ref, Digest: d, MediaType: string(types.OCIManifestSchema1)}
		if _, err := pl.Check(context.Background(), subj); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		rec, err := r.state.Decision(context.Background(), d.String(), "docker.io", "library/alpine")
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	for _, c := range []struct {
		ref  string
		want []string
	}{
		{"3.16.9", []string{"3.16.9"}},
		{"3.16", []string{"3.16", "3.16.9"}},
		{d.String(), []string{"3.16", "3.16.9"}}, // by digest: no tag
		{"3.16.9", []string{"3.16", "3.16.9"}},   // seen already: not moved
	} {
		if got := pull(c.ref).Tags; !slices.Equal(got, c.want) {
			t.Fatalf("after a pull by %s: tags %v, want %v", c.ref, got, c.want)
		}
	}
	before := pull("3.16").Revision
	for range 3 {
		pull("3.16.9")
		pull("3.16")
	}
	if after := pull("3.16").Revision; after != before {
		t.Errorf("pulls by tags already seen wrote the record (revision %d -> %d)", before, after)
	}
	for i := range 12 {
		pull(fmt.Sprintf("build-%d", i))
	}
	if got := pull("build-11").Tags; len(got) != store.MaxTagsSeen || got[0] != "build-11" || slices.Contains(got, "3.16.9") {
		t.Errorf("after 14 tags: %v, want the newest %d", got, store.MaxTagsSeen)
	}
}
