package store

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// The records in testdata/records were written by the code that kept the
// inventory, findings, decision and signature as json.RawMessage
// (json.Marshal of the record, as Bolt and Redis store it). State files and
// Redis databases hold such records: the typed records must read them with
// the same content, and write them back byte for byte the same.

const oldDigest = "sha256:5c0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func oldRecord(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "records", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(raw, []byte("\n"))
}

func oldScanRecords() map[string]ScanRecord {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	layer := "sha256:aa0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	return map[string]ScanRecord{
		"scan_record_v1.json": {
			Digest: oldDigest, Revision: 3, State: ScanDone, Upstream: "docker.io", Repository: "library/alpine",
			ScannerVersion: "scanner-7", DBVersion: "sha256:dbdb@2026-11-27T08:00:00Z", QueuedAt: at, UpdatedAt: at.Add(time.Minute),
			Inventory: &scanner.Inventory{ImageDigest: oldDigest, ScannerVersion: "scanner-7",
				OS: scanner.OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"},
				Layers: []scanner.Layer{{Digest: layer, DiffID: "sha256:bb0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
					Size: 2811, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}},
				Packages: []scanner.Package{
					{Name: "ssl_client", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", SourceName: "busybox", SourceVersion: "1.35.0-r17",
						PURL: "pkg:apk/alpine/ssl_client@1.35.0-r17", Type: "apk", Location: "/lib/apk/db/installed", Layer: layer},
					{Name: "golang.org/x/net", Version: "v0.17.0", Ecosystem: "Go", PURL: "pkg:golang/golang.org/x/net@v0.17.0",
						Type: "go-binary", Location: "/usr/bin/app", Layer: layer},
				}},
			Findings: []vulndb.Finding{
				{ID: "ALPINE-CVE-2023-42366", Aliases: []string{"CVE-2023-42366"}, Upstream: []string{"CVE-2023-42366"}, Summary: "heap overflow in awk",
					Ecosystem: "Alpine:v3.16", Package: "ssl_client", AffectedPackage: "busybox", InstalledVersion: "1.35.0-r17",
					FixedVersions: []string{"1.35.0-r18"}, Severity: "MEDIUM", Score: 5.5,
					CVSSVector: "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H", Published: time.Date(2023, 11, 18, 0, 0, 0, 0, time.UTC)},
				{ID: "GO-2023-2102", Ecosystem: "Go", Package: "golang.org/x/net", InstalledVersion: "v0.17.0", Severity: "UNKNOWN"},
			},
			Facts: &ImageFacts{Created: at.Add(-48 * time.Hour), CompressedSize: 2811, LayerCount: 1, Blobs: []string{"sha256:cc", layer},
				ManifestMediaType: "application/vnd.oci.image.manifest.v1+json", ManifestSize: 402},
		},
		// Nothing found: findings are [] (matched, none), not absent.
		"scan_record_clean_v1.json": {
			Digest: oldDigest, Revision: 2, State: ScanDone, Upstream: "docker.io", Repository: "library/alpine",
			ScannerVersion: "scanner-7", QueuedAt: at, UpdatedAt: at.Add(time.Minute),
			Inventory: &scanner.Inventory{ImageDigest: oldDigest, Packages: []scanner.Package{},
				Note: "artifact, not a container image: config type application/vnd.dev.cosign.simplesigning.v1+json"},
			Findings: []vulndb.Finding{}, Facts: &ImageFacts{},
		},
		// Pending: neither inventory nor findings.
		"scan_record_pending_v1.json": {
			Digest: oldDigest, Revision: 1, State: ScanPending, Upstream: "docker.io", Repository: "library/alpine", QueuedAt: at, UpdatedAt: at,
		},
	}
}

func oldDecisionRecords() map[string]DecisionRecord {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	return map[string]DecisionRecord{
		"decision_record_v1.json": {
			Digest: oldDigest, Upstream: "docker.io", Repository: "library/alpine", Revision: 2, Rule: "alpine", Tag: "3.16",
			Decision: &policy.Decision{Verdict: policy.Block, Effective: policy.Warn, Mode: policy.ModeWarn, PolicyVersion: "sha256:9f", Rule: "alpine",
				Reasons: []policy.Reason{
					{Code: policy.CodeVulnerable, Verdict: policy.Block, Message: "1 vulnerability at MEDIUM or above (ALPINE-CVE-2023-42366 in ssl_client)",
						// As JSON gives them back: numbers are float64, lists []any.
						Data: map[string]any{"count": float64(1), "max_severity": "MEDIUM", "ids": []any{"ALPINE-CVE-2023-42366"},
							"compressed_size": float64(5000000000), "grace_ends": "2026-12-04T09:00:00Z"}},
					{Code: policy.CodeUnsigned, Verdict: policy.Warn, Message: "no signature"},
				}},
			Verdict: "warn",
			Signature: &policy.SignatureFacts{State: policy.SignatureVerified, Signers: []policy.Signer{{KeyID: "ci-key"},
				{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"}}},
			PolicyVersion: "sha256:9f", DBVersion: "sha256:dbdb@2026-11-27T08:00:00Z",
			ScannedAt: at.Add(time.Minute), FirstAllowedAt: at.Add(2 * time.Minute), UpdatedAt: at.Add(2 * time.Minute),
			History: []VerdictChange{{At: at.Add(2 * time.Minute), To: "warn", Reasons: []string{"VULNERABLE", "UNSIGNED"},
				PolicyVersion: "sha256:9f", DBVersion: "sha256:dbdb@2026-11-27T08:00:00Z"}},
		},
		// A rule without a signature requirement: no signature kept.
		"decision_record_plain_v1.json": {
			Digest: oldDigest, Upstream: "ghcr.io", Repository: "org/app", Revision: 1, Rule: "default",
			Decision: &policy.Decision{Verdict: policy.Allow, Effective: policy.Allow, Mode: policy.ModeEnforce, Rule: "default"},
			Verdict:  "allow", UpdatedAt: at.Add(3 * time.Minute),
		},
	}
}

func TestOldRecordsDecodeTyped(t *testing.T) {
	for name, want := range oldScanRecords() {
		t.Run(name, func(t *testing.T) {
			raw := oldRecord(t, name)
			var got ScanRecord
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded:\n%+v\nwant:\n%+v", got, want)
			}
			again, err := json.Marshal(got)
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("written again differently (%v):\n%s\nwas:\n%s", err, again, raw)
			}
		})
	}
	for name, want := range oldDecisionRecords() {
		t.Run(name, func(t *testing.T) {
			raw := oldRecord(t, name)
			var got DecisionRecord
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded:\n%+v\nwant:\n%+v", got, want)
			}
			again, err := json.Marshal(got)
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("written again differently (%v):\n%s\nwas:\n%s", err, again, raw)
			}
		})
	}
}

// A state file written before the records were typed: Bolt reads its
// records into the typed ones, lists them, and writes on top of them.
func TestBoltReadsOldRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	scan := oldRecord(t, "scan_record_v1.json")
	decisions := map[string][]byte{}
	for name, r := range oldDecisionRecords() {
		decisions[r.Upstream+"/"+r.Repository] = oldRecord(t, name)
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(scansBucket).Put([]byte(oldDigest), scan); err != nil {
			return err
		}
		for where, raw := range decisions {
			if err := tx.Bucket(decisionsBucket).Put(key(oldDigest, where), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	wantScan := oldScanRecords()["scan_record_v1.json"]
	got, err := b.Scan(ctx, oldDigest)
	if err != nil || !reflect.DeepEqual(got, wantScan) {
		t.Fatalf("Scan: %v\n%+v", err, got)
	}
	n := 0
	if err := b.Scans(ctx, func(r ScanRecord) bool { n++; return reflect.DeepEqual(r, wantScan) }); err != nil || n != 1 {
		t.Fatalf("Scans: %d records, %v", n, err)
	}
	wantDecisions := map[string]DecisionRecord{}
	for _, r := range oldDecisionRecords() {
		wantDecisions[r.Upstream+"/"+r.Repository] = r
	}
	for where, want := range wantDecisions {
		got, err := b.Decision(ctx, oldDigest, want.Upstream, want.Repository)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Decision in %s: %v\n%+v", where, err, got)
		}
	}
	n = 0
	err = b.Decisions(ctx, oldDigest, func(r DecisionRecord) bool {
		if !reflect.DeepEqual(r, wantDecisions[r.Upstream+"/"+r.Repository]) {
			t.Errorf("Decisions: %+v", r)
		}
		n++
		return true
	})
	if err != nil || n != len(wantDecisions) {
		t.Fatalf("Decisions: %d records, %v", n, err)
	}

	// A match mark on a record written before revisions were kept apart
	// is dropped (the re-match then rewrites it whole), never misapplied.
	mark := MatchMark{Digest: oldDigest, Revision: got.Revision, DBVersion: "sha256:ff@2026-12-01T00:00:00Z"}
	if dropped, err := b.MarkMatched(ctx, []MatchMark{mark}); err != nil || len(dropped) != 1 {
		t.Fatalf("MarkMatched on an old record: dropped %v, %v", dropped, err)
	}
	if again, err := b.Scan(ctx, oldDigest); err != nil || !reflect.DeepEqual(again, wantScan) {
		t.Fatalf("after a dropped mark: %v\n%+v", err, again)
	}

	// A write on top of the old record, at the revision read.
	got.Findings = got.Findings[:1]
	if err := b.PutScan(ctx, &got); err != nil || got.Revision != 4 {
		t.Fatalf("PutScan on an old record: revision %d, %v", got.Revision, err)
	}
	if again, err := b.Scan(ctx, oldDigest); err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("after PutScan: %v\n%+v", err, again)
	}
}

// A record whose typed parts do not decode fails to read as a whole, with
// an error that names it, never half read.
func TestBoltRecordWithBadTypedPartFails(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct{ name, scan, decision string }{
		{"inventory not an object", `{"digest":"` + oldDigest + `","state":"done","inventory":"packages"}`, ""},
		{"findings not a list", `{"digest":"` + oldDigest + `","state":"done","findings":{"id":"CVE-1"}}`, ""},
		{"decision not an object", "", `{"digest":"` + oldDigest + `","upstream":"docker.io","repository":"a/b","decision":[1]}`},
		{"signature not an object", "", `{"digest":"` + oldDigest + `","upstream":"docker.io","repository":"a/b","signature":"verified"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.db.Update(func(tx *bolt.Tx) error {
				if tc.scan != "" {
					return tx.Bucket(scansBucket).Put([]byte(oldDigest), []byte(tc.scan))
				}
				return tx.Bucket(decisionsBucket).Put(key(oldDigest, "docker.io/a/b"), []byte(tc.decision))
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.scan != "" {
				if r, err := b.Scan(ctx, oldDigest); err == nil || !strings.Contains(err.Error(), oldDigest) || !strings.Contains(err.Error(), "stored record is not valid") {
					t.Fatalf("Scan: %+v, %v", r, err)
				}
				if err := b.Scans(ctx, func(ScanRecord) bool { return true }); err == nil {
					t.Fatal("Scans read a bad record")
				}
				return
			}
			if r, err := b.Decision(ctx, oldDigest, "docker.io", "a/b"); err == nil || !strings.Contains(err.Error(), oldDigest) || !strings.Contains(err.Error(), "stored record is not valid") {
				t.Fatalf("Decision: %+v, %v", r, err)
			}
			if err := b.Decisions(ctx, oldDigest, func(DecisionRecord) bool { return true }); err == nil {
				t.Fatal("Decisions read a bad record")
			}
		})
	}
}
