package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
)

// nextEvent waits (bounded) for the next event of one of types.
func nextEvent(t *testing.T, events <-chan pipeline.Event, types ...string) pipeline.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-events:
			if slices.Contains(types, e.Type) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %v event after 20 s", types)
		}
	}
}

// A database import that makes cached, allowed images fail announces them
// once, in one newly_vulnerable event that names every repository they
// were pulled from and the vulnerabilities that made them fail; then the
// new version is announced as db_updated. The verdict events carry what
// an alert names: rule, tag, reasons with ids and fixed versions, details.
func TestDatabaseImportAnnouncesNewlyVulnerableImages(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	img, err := tarball.ImageFromPath(alpineTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.upstreamHost + "/team/alpine:stable")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, `
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: allow
`)
	pl := r.gated(pol)
	run(t, pl)
	for _, s := range []proxy.Subject{
		{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)},
		{Upstream: "docker.io", Repository: "team/alpine", Reference: "stable", Digest: d, MediaType: string(types.OCIManifestSchema1)},
	} {
		if dec, err := pl.Check(context.Background(), s); err != nil || dec.Verdict != proxy.Warn || dec.Message != "vulnerability database missing" {
			t.Fatalf("%s before the import (no database, on_error allow: tagged): %+v %v", s.Repository, dec, err)
		}
	}
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { pl.WatchDB(ctx, 50*time.Millisecond); close(watching) }()
	defer func() { cancel(); <-watching }()
	time.Sleep(200 * time.Millisecond) // WatchDB has read the (empty) version: the import is an update
	r.importDB(t)

	nv := nextEvent(t, events, pipeline.EventNewlyVulnerable)
	if nv.DBVersion == "" || nv.DBBuiltAt.IsZero() || nv.ID == "" || nv.MoreImages != 0 {
		t.Fatalf("newly_vulnerable: %+v", nv)
	}
	var where []string
	for _, im := range nv.Images {
		if im.Digest != d.String() || im.Rule != "strict" || len(im.Causes) != 1 {
			t.Fatalf("affected image %+v", im)
		}
		c := im.Causes[0]
		if c.Code != "VULNERABLE" || len(c.Vulnerabilities) == 0 || c.Vulnerabilities[0].ID != "ALPINE-CVE-2023-42366" ||
			!slices.Equal(c.Vulnerabilities[0].FixedVersions, []string{"1.35.0-r18"}) {
			t.Fatalf("cause %+v", c)
		}
		where = append(where, im.Upstream+"/"+im.Repository+":"+im.Tag)
	}
	slices.Sort(where)
	if want := []string{"docker.io/library/alpine:3.16.9", "docker.io/team/alpine:stable"}; !slices.Equal(where, want) {
		t.Fatalf("affected %v, want %v", where, want)
	}
	up := nextEvent(t, events, pipeline.EventDBUpdated)
	if up.DBVersion != nv.DBVersion {
		t.Fatalf("db_updated %+v after newly_vulnerable of %s", up, nv.DBVersion)
	}

	rec, err := r.state.Decision(context.Background(), d.String(), "docker.io", "library/alpine")
	if err != nil || rec.Verdict != "block" {
		t.Fatalf("stored verdict %q %v", rec.Verdict, err)
	}
}

// A verdict event names what an alert needs: the tag it was pulled by,
// the rule, the reasons with vulnerability ids and fixed versions, the
// database version and the details path.
func TestVerdictEventCarriesAlertDetails(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	pol := mustPolicy(t, `
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`)
	pl := r.gated(pol)
	run(t, pl)
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()
	s := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	if dec, err := pl.Check(context.Background(), s); err != nil || dec.Verdict != proxy.Block {
		t.Fatalf("check: %+v %v", dec, err)
	}
	e := nextEvent(t, events, "verdict")
	if e.To != "block" || e.From != "" || e.Tag != "3.16.9" || e.Rule != "strict" || e.Upstream != "docker.io" || e.Repository != "library/alpine" ||
		e.Details != "/api/v1/scans/"+d.String() || e.DBVersion == "" || e.ID == "" || len(e.Causes) != 1 {
		t.Fatalf("verdict event %+v", e)
	}
	v := e.Causes[0].Vulnerabilities
	if len(v) == 0 || v[0].ID != "ALPINE-CVE-2023-42366" || !slices.Equal(v[0].FixedVersions, []string{"1.35.0-r18"}) || v[0].Package == "" || v[0].InstalledVersion == "" {
		t.Fatalf("vulnerabilities %+v", v)
	}
}

// A database older than the policy's max_db_age is announced, once per
// version.
func TestStaleDatabaseIsAnnouncedOnce(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	pol := mustPolicy(t, `
rules:
  - name: fresh
    match: {}
    vulnerabilities: {block: HIGH, max_db_age: 1s}
  - name: lax
    match: {repositories: ["lax/*"]}
    vulnerabilities: {block: HIGH, max_db_age: 30d}
`)
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Policy: pol, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { pl.WatchDB(ctx, 50*time.Millisecond); close(watching) }()
	defer func() { cancel(); <-watching }()
	e := nextEvent(t, events, pipeline.EventDBStale, pipeline.EventDBUpdated)
	if e.Type != pipeline.EventDBStale || e.MaxDBAge != "1s" || e.DBVersion == "" || e.DBBuiltAt.IsZero() {
		t.Fatalf("event %+v (the version in force at start is no update)", e)
	}
	// Many more checks, no second announcement of the same version.
	time.Sleep(500 * time.Millisecond)
	for {
		select {
		case e := <-events:
			t.Fatalf("second event %+v", e)
		default:
			return
		}
	}
}
