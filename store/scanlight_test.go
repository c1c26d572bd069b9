package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// BenchmarkBoltScanWithoutInventory reads a record the size of a Debian
// image's (600 packages, 150 findings: about 75 kB of JSON) whole, as the
// re-match and the publisher must, and without its inventory, as deciding
// a verdict and the gate do. Read allocs/op and B/op: the garbage the
// bulk work leaves to the collector while pulls run.
func BenchmarkBoltScanWithoutInventory(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := fmt.Sprintf("sha256:%064x", 1)
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	r := store.ScanRecord{Digest: d, State: store.ScanDone, DBVersion: "sha256:aa@2026-12-01T00:00:00Z", QueuedAt: at, UpdatedAt: at,
		Inventory: &scanner.Inventory{ImageDigest: d}, Findings: []vulndb.Finding{},
		Facts: &store.ImageFacts{LayerCount: 3, Blobs: []string{d}, ManifestMediaType: "application/vnd.oci.image.manifest.v1+json"}}
	for i := range 600 {
		r.Inventory.Packages = append(r.Inventory.Packages, scanner.Package{Name: fmt.Sprintf("libpackage-%d", i), Version: fmt.Sprintf("2.%d.1-3+deb12u1", i),
			Ecosystem: "Debian:12", SourceName: fmt.Sprintf("package-%d", i), Layer: "sha256:" + fmt.Sprintf("%064x", i%3)})
	}
	for i := range 150 {
		r.Findings = append(r.Findings, vulndb.Finding{ID: fmt.Sprintf("CVE-2026-%d", i), Ecosystem: "Debian:12", Package: fmt.Sprintf("libpackage-%d", i),
			InstalledVersion: fmt.Sprintf("2.%d.1-3+deb12u1", i), FixedVersions: []string{fmt.Sprintf("2.%d.1-3+deb12u2", i)}, Severity: "HIGH"})
	}
	if err := s.PutScan(ctx, &r); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		read func() (store.ScanRecord, error)
	}{
		{"whole", func() (store.ScanRecord, error) { return s.Scan(ctx, d) }},
		{"without-inventory", func() (store.ScanRecord, error) { return s.ScanWithoutInventory(ctx, d) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := c.read()
				if err != nil || len(got.Findings) != 150 {
					b.Fatalf("read %d findings, %v", len(got.Findings), err)
				}
			}
		})
	}
}
