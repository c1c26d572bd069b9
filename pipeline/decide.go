package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

func readImageFacts(img v1.Image) (store.ImageFacts, error) {
	m, err := img.Manifest()
	if err != nil {
		return store.ImageFacts{}, fmt.Errorf("read manifest: %w", err)
	}
	f := store.ImageFacts{LayerCount: len(m.Layers), Blobs: []string{m.Config.Digest.String()}}
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
		return store.ImageFacts{}, fmt.Errorf("read config: %w", err)
	}
	f.Created = cfg.Created.Time
	if cfg.OS != "" || cfg.Architecture != "" {
		f.Platform = cfg.OS + "/" + cfg.Architecture
		if cfg.Variant != "" {
			f.Platform += "/" + cfg.Variant
		}
	}
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
	return builtAt(version)
}

// facts assembles what the policy sees about a stored result, pulled
// through dec's repository by dec's tag.
func (p *Pipeline) facts(ctx context.Context, rec store.ScanRecord, dec store.DecisionRecord, rule policy.Rule) policy.Facts {
	return p.factsWith(ctx, rec, dec, rule, true)
}

// factsWith can leave out what needs an upstream (signatures, tags): an
// image still being scanned gets its on_unscanned verdict without that work
// on the pull path.
func (p *Pipeline) factsWith(ctx context.Context, rec store.ScanRecord, dec store.DecisionRecord, rule policy.Rule, online bool) policy.Facts {
	f := policy.Facts{
		Upstream: dec.Upstream, Repository: dec.Repository, Reference: cmp.Or(dec.Tag, rec.Digest), Digest: rec.Digest,
		Signature: policy.SignatureFacts{State: policy.SignatureNotChecked},
		ScanState: rec.State, ScanError: rec.Error, CurrentTag: dec.Tag,
		DBBuiltAt: p.dbBuiltAt(), DBMaxAge: p.o.DBMaxAge, FirstAllowedAt: dec.FirstAllowedAt, Now: p.now(),
	}
	if img := rec.Facts; img != nil {
		f.Created, f.CompressedSize, f.LayerCount = img.Created, img.CompressedSize, img.LayerCount
	}
	findings := make([]vulndb.Finding, 0, len(rec.Findings))
	for _, v := range rec.Findings {
		vulndb.Classify(&v) // a record matched before findings had kinds
		findings = append(findings, v)
	}
	// VEX statements take findings out before the rule judges them.
	if len(findings) > 0 {
		findings, f.Suppressed, f.VEXNotes = p.applyVEX(ctx, findings, rec.Digest, dec.Upstream, dec.Repository, rule, online)
	}
	for _, v := range findings {
		f.Vulnerabilities = append(f.Vulnerabilities, policy.Vulnerability{
			Kind: v.Kind, ID: v.ID, Path: v.Path, Aliases: slices.Concat(v.Aliases, v.Upstream), Ecosystem: v.Ecosystem, Package: v.Package, InstalledVersion: v.InstalledVersion,
			FixedVersions: v.FixedVersions, Severity: v.Severity, Score: v.Score, Published: v.Published,
		})
	}
	if !online {
		return f
	}
	if rule.Signature != nil {
		sctx, span := p.startSpan(ctx, spanVerify)
		f.Signature = p.signatureFacts(sctx, rec.Digest, dec.Upstream, dec.Repository, rule)
		endSpan(span, nil, attrSignature.String(string(f.Signature.State)))
	}
	if rule.Freshness != nil && p.o.Images != nil {
		// Tags change upstream; they are asked for at each evaluation, in
		// the repository the pull named.
		if tags, err := p.o.Images.Tags(ctx, dec.Upstream, dec.Repository); err == nil {
			f.Tags = tags
		} else {
			p.log.Warn("list tags for freshness", "repo", dec.Upstream+"/"+dec.Repository, "err", err)
		}
	}
	return f
}

// decide evaluates, under the rule of dec's repository, the policy for a
// finished result and writes the decision into dec (not into the store),
// the verdict change it makes included; once dec is stored, announce makes
// both known.
func (p *Pipeline) decide(ctx context.Context, rec store.ScanRecord, dec *store.DecisionRecord) (policy.Decision, *store.VerdictChange) {
	pol := p.policy()
	rule := pol.Select(dec.Upstream, dec.Repository)
	facts := p.facts(ctx, rec, *dec, rule)
	_, span := p.startSpan(ctx, spanPolicy, attrUpstream.String(dec.Upstream), attrRepository.String(dec.Repository))
	d := policy.Evaluate(rule, facts)
	d.Suppressed, d.VEX = facts.Suppressed, facts.VEXNotes
	endSpan(span, nil, attrRule.String(rule.Name), attrVerdict.String(string(d.Effective)))
	for _, r := range d.Reasons {
		if r.Data["source"] == "database" {
			// Per stored decision, not per pull: pulls reuse it.
			p.log.Warn("judged without a usable vulnerability database", "image", dec.Upstream+"/"+dec.Repository+"@"+rec.Digest,
				"verdict", d.Effective, "reason", r.Message)
			break
		}
	}
	dec.Signature = nil
	if rule.Signature != nil {
		// Who signed (key ids, identities) is kept with the verdict.
		sig := facts.Signature
		dec.Signature = &sig
	}
	dec.Decision = &d
	// The version the findings were written with: a later re-match that
	// finds the same only marks the record (decisionCurrent), and this
	// verdict stands through any number of such marks.
	dec.DBVersion, dec.ScannedAt = rec.FindingsVersion(), rec.UpdatedAt
	var change *store.VerdictChange
	if string(d.Effective) != dec.Verdict {
		change = p.recordChange(dec, d, pol.Version())
	}
	dec.Rule, dec.Verdict, dec.PolicyVersion = rule.Name, string(d.Effective), pol.Version()
	dec.UpdatedAt = p.now()
	if d.Effective != policy.Block && dec.FirstAllowedAt.IsZero() {
		dec.FirstAllowedAt = p.now()
	}
	return d, change
}

// decideIn decides the verdict on a stored result in upstream/repo (as
// pulled by tag, when not empty), stores it and announces it. Another
// writer's newer verdict is read again and decided on, never overwritten.
func (p *Pipeline) decideIn(ctx context.Context, rec store.ScanRecord, upstream, repo, tag string) (policy.Decision, error) {
	if err := p.linkImageFacts(ctx, upstream, repo, rec); err != nil {
		return policy.Decision{}, err
	}
	// One decider per verdict in this process: a pull asking for a verdict
	// the scan worker is deciding finds it decided, not decided (and
	// announced) twice.
	unlock := p.lockDecision(rec.Digest + "\x00" + upstream + "/" + repo)
	defer unlock()
	pol := p.policy()
	rule := pol.Select(upstream, repo)
	var d policy.Decision
	var change *store.VerdictChange
	current := false
	written, err := store.UpdateDecision(ctx, p.o.Store, rec.Digest, upstream, repo, func(dec *store.DecisionRecord) (bool, error) {
		if decisionCurrent(*dec, rec, pol.Version(), rule, tag) && dec.Decision != nil {
			d, current = *dec.Decision, true
			if tag != "" && !slices.Contains(dec.Tags, tag) {
				dec.Tags = store.AddTagSeen(dec.Tags, tag)
				return true, nil
			}
			return false, nil
		}
		if tag != "" {
			dec.Tag, dec.Tags = tag, store.AddTagSeen(dec.Tags, tag)
		}
		d, change = p.decideForWrite(ctx, rec, dec)
		return true, nil
	})
	if err != nil || current {
		return d, err
	}
	p.decided(ctx, rec, *written, d, change)
	return d, nil
}

// decisionCurrent reports whether dec still stands for the stored result
// rec under the policy in force, for a pull by tag (empty: by digest).
func decisionCurrent(dec store.DecisionRecord, rec store.ScanRecord, policyVersion string, rule policy.Rule, tag string) bool {
	// A re-match that found the same findings marks the record with the
	// new version (store.MatchMarker) and leaves its verdicts as they are:
	// made on the version the findings were written with, they stand.
	sameFindings := rec.FindingsFrom(dec.DBVersion)
	return dec.Revision > 0 && dec.PolicyVersion == policyVersion && sameFindings &&
		dec.ScannedAt.Equal(rec.UpdatedAt) && (rule.Freshness == nil || tag == "" || tag == dec.Tag)
}

// lockDecision serializes the deciders of one verdict in this process.
func (p *Pipeline) lockDecision(key string) (unlock func()) {
	p.mu.Lock()
	l := p.decisionLocks[key]
	if l == nil {
		l = &keyLock{}
		p.decisionLocks[key] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(p.decisionLocks, key)
		}
		p.mu.Unlock()
	}
}

type keyLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; the entry goes with the last
}

// decideAll decides again every verdict stored on digest d, and the first
// one in the repository of also (when it has none), from the stored result.
func (p *Pipeline) decideAll(ctx context.Context, d string, also job) error {
	// Deciding never reads the inventory (see store.InventorySkipper).
	rec, err := store.ScanWithoutInventory(ctx, p.o.Store, d)
	if err != nil {
		return err
	}
	if rec.State == store.ScanPending {
		return nil
	}
	type where struct{ upstream, repo string }
	var repos []where
	seen := map[where]bool{}
	err = p.o.Store.Decisions(ctx, d, func(r store.DecisionRecord) bool {
		w := where{r.Upstream, r.Repository}
		seen[w] = true
		repos = append(repos, w)
		return true
	})
	if err != nil {
		return err
	}
	tag := ""
	if w := (where{also.upstream, also.repo}); also.upstream != "" && !seen[w] {
		repos = append(repos, w)
		tag = also.tag
	}
	for _, w := range repos {
		t := ""
		if w.upstream == also.upstream && w.repo == also.repo {
			t = tag
		}
		if _, err := p.decideIn(ctx, rec, w.upstream, w.repo, t); err != nil {
			return err
		}
	}
	return nil
}

// announce makes a stored decision's verdict change, if any, known as a
// log line and an event. It runs once the record is written, so a decision
// another writer overrode is never announced, and a retried write
// announces once.
func (p *Pipeline) announce(ctx context.Context, rec store.ScanRecord, dec store.DecisionRecord, d policy.Decision, change *store.VerdictChange) {
	image := dec.Upstream + "/" + dec.Repository + "@" + dec.Digest
	if change != nil {
		p.publish(verdictEvent(rec, dec, d, *change))
		level := slog.LevelInfo
		if change.From != "" && d.Effective == policy.Block {
			level = slog.LevelWarn // newly failing
		}
		p.log.Log(ctx, level, "verdict changed", "image", image, "rule", dec.Rule,
			"from", change.From, "to", change.To, "reasons", change.Reasons, "policy_version", change.PolicyVersion, "db_version", rec.DBVersion)
	}
}

// decideForWrite decides dec (see decide) about to be written, and queues
// its publication first: a decider that dies right after the write leaves
// the job behind.
func (p *Pipeline) decideForWrite(ctx context.Context, rec store.ScanRecord, dec *store.DecisionRecord) (policy.Decision, *store.VerdictChange) {
	d, change := p.decide(ctx, rec, dec)
	p.queuePublication(ctx, dec.Digest, dec.Upstream, dec.Repository)
	return d, change
}

// decided follows a written decision: remembered verdicts on the digest
// go, the change is announced, and the publication is queued again (the
// job queued before the write may have been running already).
func (p *Pipeline) decided(ctx context.Context, rec store.ScanRecord, written store.DecisionRecord, d policy.Decision, change *store.VerdictChange) {
	p.forget(digest.Digest(rec.Digest))
	p.o.Metrics.Verdict(ctx, string(d.Verdict), string(d.Mode))
	p.announce(ctx, rec, written, d, change)
	p.queuePublication(ctx, written.Digest, written.Upstream, written.Repository)
}

// toGate turns a policy decision into what the proxy serves.
func toGate(d policy.Decision, upstream, repo, dgst string) proxy.Decision {
	where := upstream + "/" + repo + "@" + dgst
	// The record lists every repository's verdict on the digest.
	details := "/api/v1/scans/" + dgst
	switch d.Effective {
	case policy.Block:
		return proxy.Decision{Verdict: proxy.Block, Details: details, Reason: blockReason(d),
			Message: fmt.Sprintf("portcullis: blocked %s: %s", where, d.Message(300))}
	case policy.Warn:
		return proxy.Decision{Verdict: proxy.Warn, Message: d.Message(300), Details: details}
	}
	return proxy.Decision{Verdict: proxy.Allow}
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
	setResult(&rec, inv, findings, facts)
	dec := store.DecisionRecord{Digest: rec.Digest, Upstream: upstream, Repository: repo, Tag: tagOf(reference)}
	decision, _ := p.decide(ctx, rec, &dec)
	return decision, rec, nil
}

// setResult puts a scan's result in its record. Findings are never nil in
// a done record: none found is stored as [], not as "not matched".
func setResult(rec *store.ScanRecord, inv *scanner.Inventory, findings []vulndb.Finding, facts store.ImageFacts) {
	if findings == nil {
		findings = []vulndb.Finding{}
	}
	rec.Inventory, rec.Findings, rec.Facts = inv, findings, &facts
}

// maxHistory bounds the verdict history kept per digest.
const maxHistory = 50

// recordChange appends a verdict change to the record's history and
// returns it.
func (p *Pipeline) recordChange(rec *store.DecisionRecord, d policy.Decision, policyVersion string) *store.VerdictChange {
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

// tagOf is the tag a reference names, or "" for a digest.
func tagOf(reference string) string {
	if strings.Contains(reference, ":") {
		return ""
	}
	return reference
}
