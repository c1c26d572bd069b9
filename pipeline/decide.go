package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// imageFacts are what the policy needs from the image itself, stored with
// the scan so a re-evaluation downloads nothing.
type imageFacts struct {
	Created        time.Time `json:"created,omitzero"`
	CompressedSize int64     `json:"compressedSize"`
	LayerCount     int       `json:"layerCount"`
	// Blobs are the config and layer digests, so blob requests can follow
	// the verdict of the image they belong to.
	Blobs []string `json:"blobs,omitempty"`
	// The manifest itself, the subject of published verdicts and SBOMs.
	ManifestMediaType string `json:"manifestMediaType,omitempty"`
	ManifestSize      int64  `json:"manifestSize,omitempty"`
}

func readImageFacts(img v1.Image) (imageFacts, error) {
	m, err := img.Manifest()
	if err != nil {
		return imageFacts{}, fmt.Errorf("read manifest: %w", err)
	}
	f := imageFacts{LayerCount: len(m.Layers), Blobs: []string{m.Config.Digest.String()}}
	if raw, err := img.RawManifest(); err == nil {
		f.ManifestSize = int64(len(raw))
	}
	if mt, err := img.MediaType(); err == nil {
		f.ManifestMediaType = string(mt)
	}
	for _, l := range m.Layers {
		f.CompressedSize += l.Size
		f.Blobs = append(f.Blobs, l.Digest.String())
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return imageFacts{}, fmt.Errorf("read config: %w", err)
	}
	f.Created = cfg.Created.Time
	return f, nil
}

func (p *Pipeline) policy() *policy.Policy { return p.pol.Load() }

// dbBuiltAt reads the build time from the database version
// ("sha256:…@2026-11-27T08:00:00Z"); zero means no database. The version
// WatchDB saw last serves when there is one: asking the matcher opens the
// database file, too much for every decision on the pull path.
func (p *Pipeline) dbBuiltAt() time.Time {
	if p.o.Matcher == nil {
		return time.Time{}
	}
	version := p.DBVersion()
	if version == "" {
		version = p.o.Matcher.Version()
	}
	_, at, ok := strings.Cut(version, "@")
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}
	}
	return t
}

// facts assembles what the policy sees about a stored record.
func (p *Pipeline) facts(ctx context.Context, rec store.ScanRecord, rule policy.Rule, reference string) policy.Facts {
	return p.factsWith(ctx, rec, rule, reference, true)
}

// factsWith can leave signatures unchecked: an image still being scanned
// gets its on_unscanned verdict without verification work on the pull path.
func (p *Pipeline) factsWith(ctx context.Context, rec store.ScanRecord, rule policy.Rule, reference string, signatures bool) policy.Facts {
	f := policy.Facts{
		Upstream: rec.Upstream, Repository: rec.Repository, Reference: reference, Digest: rec.Digest,
		Signature: policy.SignatureFacts{State: policy.SignatureNotChecked},
		ScanState: rec.State, ScanError: rec.Error,
		DBBuiltAt: p.dbBuiltAt(), FirstAllowedAt: rec.FirstAllowedAt, Now: p.now(),
	}
	if reference != "" && !strings.Contains(reference, ":") {
		f.CurrentTag = reference
	}
	var img imageFacts
	if len(rec.Facts) > 0 && json.Unmarshal(rec.Facts, &img) == nil {
		f.Created, f.CompressedSize, f.LayerCount = img.Created, img.CompressedSize, img.LayerCount
	}
	var findings []vulndb.Finding
	if len(rec.Findings) > 0 && json.Unmarshal(rec.Findings, &findings) == nil {
		for _, v := range findings {
			f.Vulnerabilities = append(f.Vulnerabilities, policy.Vulnerability{
				ID: v.ID, Aliases: slices.Concat(v.Aliases, v.Upstream), Package: v.Package, InstalledVersion: v.InstalledVersion,
				FixedVersions: v.FixedVersions, Severity: v.Severity, Score: v.Score, Published: v.Published,
			})
		}
	}
	if rule.Signature != nil && signatures {
		f.Signature = p.signatureFacts(ctx, rec, rule)
	}
	if rule.Freshness != nil && p.o.Images != nil {
		// Tags change upstream; they are asked for at each evaluation.
		if tags, err := p.o.Images.Tags(ctx, rec.Upstream, rec.Repository); err == nil {
			f.Tags = tags
		} else {
			p.log.Warn("list tags for freshness", "repo", rec.Upstream+"/"+rec.Repository, "err", err)
		}
	}
	return f
}

// decide evaluates the policy for a finished record and writes the decision
// into it (not into the store), the verdict change it makes included; once
// the record is stored, announce makes both known.
func (p *Pipeline) decide(ctx context.Context, rec *store.ScanRecord, reference string) (policy.Decision, *store.VerdictChange) {
	if strings.Contains(reference, ":") { // a digest: use the tag it was pulled by
		reference = p.tagOf(digest.Digest(rec.Digest), rec.Tag)
	}
	rec.Tag = reference
	pol := p.policy()
	rule := pol.Select(rec.Upstream, rec.Repository)
	facts := p.facts(ctx, *rec, rule, reference)
	d := policy.Evaluate(rule, facts)
	if rule.Signature != nil {
		// Who signed (key ids, identities) is kept with the result.
		if raw, err := json.Marshal(facts.Signature); err == nil {
			rec.Signature = raw
		}
	}
	raw, err := json.Marshal(d)
	if err == nil {
		rec.Decision = raw
	}
	var change *store.VerdictChange
	if string(d.Effective) != rec.Verdict {
		change = p.recordChange(rec, d, pol.Version())
	}
	rec.Verdict, rec.PolicyVersion = string(d.Effective), pol.Version()
	if d.Effective != policy.Block && rec.FirstAllowedAt.IsZero() {
		rec.FirstAllowedAt = p.now()
	}
	return d, change
}

// announce makes a stored decision known: the verdict change, if any, as a
// log line and an event, and the verdict and SBOM published. It runs once
// the record is written, so a decision another writer overrode is never
// announced, and a retried write announces once.
func (p *Pipeline) announce(ctx context.Context, rec store.ScanRecord, d policy.Decision, change *store.VerdictChange) {
	if change != nil {
		p.publish(Event{Type: "verdict", At: change.At, Image: rec.Upstream + "/" + rec.Repository + "@" + rec.Digest, Digest: rec.Digest,
			From: change.From, To: change.To, Reasons: change.Reasons})
		level := slog.LevelInfo
		if change.From != "" && d.Effective == policy.Block {
			level = slog.LevelWarn // newly failing
		}
		p.log.Log(ctx, level, "verdict changed", "image", rec.Upstream+"/"+rec.Repository+"@"+rec.Digest,
			"from", change.From, "to", change.To, "reasons", change.Reasons, "policy_version", change.PolicyVersion, "db_version", rec.DBVersion)
	}
	if err := p.publishArtifacts(ctx, rec, d); err != nil {
		p.log.Error("publish verdict and SBOM", "digest", rec.Digest, "err", err)
	}
}

// toGate turns a policy decision into what the proxy serves.
func toGate(d policy.Decision, rec store.ScanRecord) proxy.Decision {
	where := rec.Upstream + "/" + rec.Repository + "@" + rec.Digest
	switch d.Effective {
	case policy.Block:
		return proxy.Decision{Verdict: proxy.Block, Details: "/api/v1/scans/" + rec.Digest,
			Message: fmt.Sprintf("portcullis: blocked %s: %s", where, d.Message(300))}
	case policy.Warn:
		return proxy.Decision{Verdict: proxy.Warn, Message: d.Message(300), Details: "/api/v1/scans/" + rec.Digest}
	}
	return proxy.Decision{Verdict: proxy.Allow}
}

// noteTag remembers the tag a digest was pulled by.
func (p *Pipeline) noteTag(d digest.Digest, reference string) {
	if reference == "" || strings.Contains(reference, ":") {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tags) >= settledLimit {
		p.tags = map[digest.Digest]string{}
	}
	p.tags[d] = reference
}

func (p *Pipeline) tagOf(d digest.Digest, stored string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.tags[d]; ok {
		return t
	}
	return stored
}

// EvaluateOnce scans and judges one image like the gate, without storing
// anything: 'portcullis policy test'. reference is the tag or digest asked.
func (p *Pipeline) EvaluateOnce(ctx context.Context, upstream, repo, reference string, d digest.Digest) (policy.Decision, store.ScanRecord, error) {
	inv, findings, facts, dbVersion, err := p.evaluate(ctx, job{upstream: upstream, repo: repo, digest: d})
	if err != nil {
		return policy.Decision{}, store.ScanRecord{}, err
	}
	rec := store.ScanRecord{Digest: d.String(), State: store.ScanDone, Upstream: upstream, Repository: repo,
		ScannerVersion: p.o.ScannerVersion, DBVersion: dbVersion, QueuedAt: p.now(), UpdatedAt: p.now()}
	if err := encodeResult(&rec, inv, findings, facts); err != nil {
		return policy.Decision{}, rec, err
	}
	decision, _ := p.decide(ctx, &rec, reference)
	return decision, rec, nil
}

// encodeResult stores a scan's result in its record, as JSON.
func encodeResult(rec *store.ScanRecord, inv *scanner.Inventory, findings []vulndb.Finding, facts imageFacts) error {
	var err error
	if rec.Inventory, err = json.Marshal(inv); err != nil {
		return err
	}
	if rec.Findings, err = json.Marshal(findings); err != nil {
		return err
	}
	rec.Facts, err = json.Marshal(facts)
	return err
}

// maxHistory bounds the verdict history kept per digest.
const maxHistory = 50

// recordChange appends a verdict change to the record's history and
// returns it.
func (p *Pipeline) recordChange(rec *store.ScanRecord, d policy.Decision, policyVersion string) *store.VerdictChange {
	change := store.VerdictChange{At: p.now(), From: rec.Verdict, To: string(d.Effective), PolicyVersion: policyVersion, DBVersion: rec.DBVersion}
	for _, r := range d.Reasons {
		change.Reasons = append(change.Reasons, r.Code)
	}
	rec.History = append(rec.History, change)
	if len(rec.History) > maxHistory {
		rec.History = rec.History[len(rec.History)-maxHistory:]
	}
	return &change
}
