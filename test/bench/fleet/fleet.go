// Package fleet fills a store with a realistic fleet of scanned images
// (scan records with inventories and findings, verdicts in one to three
// repositories each, verdict histories), through the store's own API, for
// the benchmarks of the pages and lists that read them at scale.
package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// Counts says what Fill wrote, for checks against what a page shows.
type Counts struct {
	Images   int
	Verdicts map[string]int // allow, warn, block, pending → (digest, repository) verdicts
	// VulnImages counts the images each vulnerability id affects.
	VulnImages map[string]int
}

// Upstream is the upstream name of every repository Fill writes.
const Upstream = "docker.io"

// Repositories is how many repositories the images are spread over.
const Repositories = 50

// vulnPool is how many distinct vulnerability ids findings draw from;
// low ids are drawn far more often (a few CVEs are everywhere).
const vulnPool = 500

// VulnID names the i-th vulnerability of the pool.
func VulnID(i int) string { return fmt.Sprintf("CVE-2024-%05d", 10000+i) }

// Digest is the i-th image's digest.
func Digest(i int) string { return fmt.Sprintf("sha256:%064x", uint64(i)*0x9e3779b97f4a7c15+1) }

// Fill writes n images into st, the same ones for the same seed: each a
// done scan record (inventory of 40 packages, 0 to 30 findings) and
// verdicts in 1 to 3 repositories: about 60% allow, 20% warn, 15% block,
// 5% pending.
func Fill(ctx context.Context, st store.Store, n int, seed uint64) (Counts, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	c := Counts{Verdicts: map[string]int{}, VulnImages: map[string]int{}}
	severities := []string{vulndb.SeverityCritical, vulndb.SeverityHigh, vulndb.SeverityMedium, vulndb.SeverityLow, vulndb.SeverityUnknown}
	base := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	for i := range n {
		d := Digest(i)
		repo := fmt.Sprintf("team%d/app%d", i%7, i%Repositories)
		inv := &scanner.Inventory{ImageDigest: d, OS: scanner.OS{ID: "debian", VersionID: "12"}, ScannerVersion: scanner.Version}
		for p := range 40 {
			inv.Packages = append(inv.Packages, scanner.Package{Name: fmt.Sprintf("pkg%d", p), Version: fmt.Sprintf("1.%d.%d", p, i%10),
				Ecosystem: "Debian:12", PURL: fmt.Sprintf("pkg:deb/debian/pkg%d@1.%d.%d", p, p, i%10), Type: "dpkg"})
		}
		findings := []vulndb.Finding{}
		seen := map[string]bool{}
		for range rng.IntN(31) {
			v := int(float64(vulnPool) * rng.Float64() * rng.Float64()) // skewed to low ids
			id := VulnID(v)
			if seen[id] {
				continue
			}
			seen[id] = true
			c.VulnImages[id]++
			findings = append(findings, vulndb.Finding{ID: id, Ecosystem: "Debian:12", Package: fmt.Sprintf("pkg%d", v%40),
				InstalledVersion: "1.0", FixedVersions: []string{"1.1"}, Severity: severities[v%len(severities)], Summary: "a flaw in pkg"})
		}
		at := base.Add(time.Duration(i) * time.Minute)
		scan := store.ScanRecord{Digest: d, State: store.ScanDone, Upstream: Upstream, Repository: repo, ScannerVersion: scanner.Version,
			DBVersion: "bench-db", QueuedAt: at, UpdatedAt: at, Inventory: inv, Findings: findings,
			Facts: &store.ImageFacts{Created: at.Add(-time.Hour), CompressedSize: int64(1+i%300) << 20, LayerCount: 1 + i%12}}
		if err := st.PutScan(ctx, &scan); err != nil {
			return c, fmt.Errorf("fill image %d: %w", i, err)
		}
		for r := range 1 + rng.IntN(3) {
			where := repo
			if r > 0 {
				where = fmt.Sprintf("mirror%d/app%d", r, i%Repositories)
			}
			verdict, label := drawVerdict(rng)
			rec := store.DecisionRecord{Digest: d, Upstream: Upstream, Repository: where, Rule: "default", Tag: fmt.Sprintf("v%d", i%20),
				Verdict: string(verdict), PolicyVersion: "bench-policy", DBVersion: "bench-db", ScannedAt: at, UpdatedAt: at,
				History: []store.VerdictChange{{At: at, To: string(verdict), PolicyVersion: "bench-policy", DBVersion: "bench-db"}}}
			if label != "pending" {
				dec := &policy.Decision{Verdict: verdict, Effective: verdict, Rule: "default", Mode: policy.ModeEnforce}
				if verdict != policy.Allow && len(findings) > 0 {
					dec.Reasons = []policy.Reason{{Code: policy.CodeVulnerable, Verdict: verdict, Message: findings[0].ID + " in " + findings[0].Package}}
				}
				rec.Decision = dec
			}
			if err := st.PutDecision(ctx, &rec); err != nil {
				return c, fmt.Errorf("fill verdict %d in %s: %w", i, where, err)
			}
			c.Verdicts[label]++
		}
		c.Images++
	}
	return c, nil
}

// drawVerdict picks a verdict and the label the API shows for it.
func drawVerdict(rng *rand.Rand) (policy.Verdict, string) {
	switch x := rng.IntN(100); {
	case x < 60:
		return policy.Allow, "allow"
	case x < 80:
		return policy.Warn, "warn"
	case x < 95:
		return policy.Block, "block"
	default:
		return policy.Allow, "pending" // no decision yet
	}
}

// FillDir fills the embedded state file of a portcullis data directory
// (<dataDir>/state.db) with n images and closes it, so a portcullis
// started on dataDir serves them.
func FillDir(ctx context.Context, dataDir string, n int, seed uint64) (Counts, error) {
	st, err := store.OpenBolt(filepath.Join(dataDir, "state.db"))
	if err != nil {
		return Counts{}, err
	}
	c, err := Fill(ctx, st, n, seed)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close state of %s: %w", dataDir, cerr)
	}
	return c, err
}
