package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
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
	pubs, err := r.state.Queue("publications")
	if err != nil {
		t.Fatal(err)
	}
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans,
		ScannerVersion: scanner.Version, Matcher: r.db, Artifacts: r.state, Publications: pubs,
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

// A stored result whose findings do not read is not a result with nothing
// found: the gate gives the rule's on_error verdict. The decider used to
// drop findings it could not decode and allow the image.
func TestUnreadableFindingsAreNotNoFindings(t *testing.T) {
	ctx := context.Background()
	d := digest.FromString("image")
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":3}]}`,
		types.OCIManifestSchema1, digest.FromString("config"), digest.FromString("layer"))
	at := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	for _, tc := range []struct{ name, findings string }{
		{"findings not a list", `{"id":"CVE-2026-1","severity":"CRITICAL"}`},
		{"a finding not an object", `["CVE-2026-1"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A state file holding the damaged record, written past the store.
			path := filepath.Join(t.TempDir(), "state.db")
			st, err := store.OpenBolt(path)
			if err != nil {
				t.Fatal(err)
			}
			placeholder := store.ScanRecord{Digest: d.String(), State: store.ScanPending}
			err = st.PutScan(ctx, &placeholder)
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = raw.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("scans")).Put([]byte(d.String()), []byte(`{"digest":"`+d.String()+`","revision":1,"state":"done",`+
					`"upstream":"docker.io","repository":"team/app","queuedAt":"`+at+`","updatedAt":"`+at+`",`+
					`"inventory":{"imageDigest":"`+d.String()+`","os":{"id":"alpine"},"layers":null,"packages":[],"scannerVersion":""},`+
					`"findings":`+tc.findings+`,"facts":{"compressedSize":5,"layerCount":1}}`))
			})
			raw.Close()
			if err != nil {
				t.Fatal(err)
			}
			st, err = store.OpenBolt(path)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// A database, so that "no findings" can allow.
			dbDir := filepath.Join(t.TempDir(), "vulndb")
			db, err := vulndb.Open(dbDir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = db.Import(ctx, []string{alpineOSV}, nil)
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			queue, err := st.Queue("scans")
			if err != nil {
				t.Fatal(err)
			}
			pl := pipeline.New(pipeline.Options{Store: st, Queue: queue, ScannerVersion: scanner.Version, Matcher: vulndb.NewShared(dbDir),
				Policy: mustPolicy(t, "rules:\n  - {name: strict, match: {}, vulnerabilities: {block: LOW}, on_error: block, on_unscanned: {wait: 5s, then: warn}}\n"),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			run(t, pl)
			subj := proxy.Subject{Upstream: "docker.io", Repository: "team/app", Reference: "1.0", Digest: d,
				MediaType: string(types.OCIManifestSchema1), Manifest: []byte(manifest)}
			dec, err := pl.Check(ctx, subj)
			if err != nil || dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "stored record is not valid") {
				t.Fatalf("gate on a record whose findings do not read: %+v, %v; want block (on_error)", dec, err)
			}
		})
	}
}
