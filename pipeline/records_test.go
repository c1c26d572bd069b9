package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// A finished result without an inventory (written by hand, or by an older
// version) is judged on what it has, publishes nothing, and does not stop
// the re-match of the other results. The re-match used to fail on it and
// never reach the records after it.
func TestDoneResultWithoutInventory(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	d := r.pushAlpine(t)
	r.importDB(t)
	at := time.Now().UTC().Add(-time.Hour)
	bare := store.ScanRecord{Digest: d.String(), State: store.ScanDone, Upstream: "docker.io", Repository: "library/alpine",
		ScannerVersion: scanner.Version, DBVersion: "sha256:older@2026-01-01T00:00:00Z", QueuedAt: at, UpdatedAt: at,
		Facts: &store.ImageFacts{LayerCount: 1, ManifestMediaType: string(types.OCIManifestSchema1), ManifestSize: 400}}
	other := "sha256:ff00000000000000000000000000000000000000000000000000000000000000"
	withInventory := store.ScanRecord{Digest: other, State: store.ScanDone, Upstream: "docker.io", Repository: "library/other",
		ScannerVersion: scanner.Version, DBVersion: bare.DBVersion, QueuedAt: at, UpdatedAt: at,
		Inventory: &scanner.Inventory{ImageDigest: other, OS: scanner.OS{ID: "alpine", VersionID: "3.16.9", Ecosystem: "Alpine:v3.16"},
			Packages: []scanner.Package{{Name: "busybox", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", Type: "apk"}}}}
	for _, rec := range []*store.ScanRecord{&bare, &withInventory} {
		if err := r.state.PutScan(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans,
		ScannerVersion: scanner.Version, Matcher: r.db, Artifacts: r.state,
		Policy: mustPolicy(t, "rules:\n  - {name: lenient, match: {}, vulnerabilities: {warn: UNKNOWN}, on_unscanned: {wait: 30s, then: block}}\n"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	run(t, pl)

	n, err := pl.Rematch(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Rematch: %d, %v; want the one result with an inventory re-matched", n, err)
	}
	if rec, err := r.state.Scan(ctx, other); err != nil || rec.DBVersion != r.db.Version() || len(rec.Findings) == 0 {
		t.Fatalf("re-matched result: db %q findings %d, %v", rec.DBVersion, len(rec.Findings), err)
	}
	if rec, err := r.state.Scan(ctx, d.String()); err != nil || rec.DBVersion != bare.DBVersion || rec.Inventory != nil {
		t.Fatalf("result without inventory: %+v, %v", rec, err)
	}

	// The gate judges it (no findings: allowed); there is nothing to publish.
	subj := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	if dec, err := pl.Check(ctx, subj); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("gate: %+v, %v", dec, err)
	}
	if dec, err := r.state.Decision(ctx, d.String(), "docker.io", "library/alpine"); err != nil || dec.Verdict != "allow" || dec.Decision == nil {
		t.Fatalf("stored verdict: %+v, %v", dec, err)
	}
	if refs, err := r.state.Referrers(ctx, store.SubjectKey("docker.io", "library/alpine", d.String())); err != nil || len(refs) != 0 {
		t.Fatalf("published without an inventory: %d referrers, %v", len(refs), err)
	}
}
