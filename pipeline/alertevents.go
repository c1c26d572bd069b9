package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// Event types beyond "verdict" and "scan": what alerts are made of.
const (
	// EventNewlyVulnerable: a database update made already-cached images
	// fail their policy; one event per update lists them.
	EventNewlyVulnerable = "newly_vulnerable"
	// EventDBStale: the database in force is older than the policy's
	// max_db_age; once per database version per replica.
	EventDBStale = "db_stale"
	// EventDBUpdated: a new database version is in force.
	EventDBUpdated = "db_updated"
)

// EventReason is one reason of a verdict, with the vulnerabilities behind
// it (at most maxEventVulns; MoreVulnerabilities counts the rest).
type EventReason struct {
	Code                string      `json:"code"`
	Verdict             string      `json:"verdict"`
	Message             string      `json:"message"`
	Vulnerabilities     []EventVuln `json:"vulnerabilities,omitempty"`
	MoreVulnerabilities int         `json:"moreVulnerabilities,omitempty"`
}

// EventVuln is a vulnerability as a reason names it.
type EventVuln struct {
	ID               string   `json:"id"`
	Aliases          []string `json:"aliases,omitempty"`
	Package          string   `json:"package,omitempty"`
	InstalledVersion string   `json:"installedVersion,omitempty"`
	FixedVersions    []string `json:"fixedVersions,omitempty"`
	Severity         string   `json:"severity,omitempty"`
	// Kind is "malware" for a malicious package or a known-bad file,
	// "secret" for a leaked secret (empty: a vulnerability); Ecosystem
	// names the package's, Path a file finding's place.
	Kind      string `json:"kind,omitempty"`
	Ecosystem string `json:"ecosystem,omitempty"`
	Path      string `json:"path,omitempty"`
}

// AffectedImage is an image a database update made fail, in the
// repository it was pulled from.
type AffectedImage struct {
	Digest     string        `json:"digest"`
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Rule       string        `json:"rule,omitempty"`
	Causes     []EventReason `json:"causes,omitempty"`
}

// Bounds that keep an event within store.MaxEventPayload: reasons are few
// (one per check), vulnerabilities and images can be many.
const (
	maxEventReasons   = 10
	maxEventVulns     = 10
	maxAffectedImages = 20
	maxAffectedVulns  = 5
)

// newEventID returns a random event id.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// encodeEvent encodes e for the store's events, shedding detail (the
// affected images' reasons, then the event's own) until it fits the
// store's bound on a payload, so a large update is announced rather than
// lost.
func encodeEvent(e *Event) ([]byte, error) {
	for range 4 {
		raw, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		if len(raw) <= store.MaxEventPayload {
			return raw, nil
		}
		switch {
		case hasImageCauses(e.Images):
			for i := range e.Images {
				e.Images[i].Causes = nil
			}
		case len(e.Causes) > 0:
			e.Causes = nil
		case len(e.Images) > 0:
			e.MoreImages += len(e.Images)
			e.Images = nil
		default:
			return nil, fmt.Errorf("event of %d bytes exceeds %d", len(raw), store.MaxEventPayload)
		}
	}
	return nil, fmt.Errorf("event does not fit %d bytes", store.MaxEventPayload)
}

func hasImageCauses(images []AffectedImage) bool {
	for _, im := range images {
		if len(im.Causes) > 0 {
			return true
		}
	}
	return false
}

// eventCauses turns a decision's reasons into an event's, naming at most
// maxVulns vulnerabilities per reason.
func eventCauses(d policy.Decision, maxVulns int) []EventReason {
	var out []EventReason
	for i, r := range d.Reasons {
		if i == maxEventReasons {
			break
		}
		er := EventReason{Code: r.Code, Verdict: string(r.Verdict), Message: r.Message}
		vulns := reasonVulns(r)
		if len(vulns) > maxVulns {
			er.MoreVulnerabilities = len(vulns) - maxVulns
			vulns = vulns[:maxVulns]
		}
		er.Vulnerabilities = vulns
		out = append(out, er)
	}
	return out
}

// reasonVulns reads the vulnerabilities a VULNERABLE reason lists in its
// data (policy.VulnRule.reason writes them), and the findings a MALWARE
// reason lists (policy.FindingData), whether the decision was just made
// or decoded from the store.
func reasonVulns(r policy.Reason) []EventVuln {
	list, ok := r.Data["vulnerabilities"]
	if !ok {
		return nil
	}
	raw, err := json.Marshal(list)
	if err != nil {
		return nil
	}
	var vs []struct {
		ID               string   `json:"id"`
		Aliases          []string `json:"aliases"`
		Package          string   `json:"package"`
		InstalledVersion string   `json:"installed_version"`
		FixedVersions    []string `json:"fixed_versions"`
		Severity         string   `json:"severity"`
		Kind             string   `json:"kind"`
		Ecosystem        string   `json:"ecosystem"`
		Path             string   `json:"path"`
	}
	if json.Unmarshal(raw, &vs) != nil {
		return nil
	}
	out := make([]EventVuln, 0, len(vs))
	for _, v := range vs {
		out = append(out, EventVuln{ID: v.ID, Aliases: v.Aliases, Package: v.Package,
			InstalledVersion: v.InstalledVersion, FixedVersions: v.FixedVersions, Severity: v.Severity,
			Kind: v.Kind, Ecosystem: v.Ecosystem, Path: v.Path})
	}
	return out
}

// detailsPath is the API path of everything known about a digest.
func detailsPath(dgst string) string { return "/api/v1/scans/" + dgst }

// verdictEvent describes a stored decision's verdict change.
func verdictEvent(rec store.ScanRecord, dec store.DecisionRecord, d policy.Decision, change store.VerdictChange) Event {
	return Event{Type: "verdict", At: change.At, Image: dec.Upstream + "/" + dec.Repository + "@" + dec.Digest, Digest: dec.Digest,
		From: change.From, To: change.To, Reasons: change.Reasons,
		Upstream: dec.Upstream, Repository: dec.Repository, Tag: dec.Tag, Rule: dec.Rule, PolicyVersion: change.PolicyVersion,
		Causes: eventCauses(d, maxEventVulns), Details: detailsPath(dec.Digest), DBVersion: rec.DBVersion}
}

// storedVerdicts reads the effective verdicts stored on digest d, by
// upstream/repository.
func (p *Pipeline) storedVerdicts(ctx context.Context, d string) (map[string]store.DecisionRecord, error) {
	out := map[string]store.DecisionRecord{}
	err := p.o.Store.Decisions(ctx, d, func(r store.DecisionRecord) bool {
		out[r.Upstream+"/"+r.Repository] = r
		return true
	})
	return out, err
}

// newlyFailing lists the verdicts on one digest that a re-match turned to
// block: they had a verdict before (the image was cached and judged) and
// it was not block.
func newlyFailing(before, after map[string]store.DecisionRecord) []AffectedImage {
	var out []AffectedImage
	for where, now := range after {
		was, ok := before[where]
		if !ok || was.Verdict == "" || was.Verdict == string(policy.Block) || now.Verdict != string(policy.Block) {
			continue
		}
		im := AffectedImage{Digest: now.Digest, Upstream: now.Upstream, Repository: now.Repository, Tag: now.Tag, Rule: now.Rule}
		if now.Decision != nil {
			im.Causes = eventCauses(*now.Decision, maxAffectedVulns)
		}
		out = append(out, im)
	}
	return out
}

// announceNewlyVulnerable publishes one event for the images a database
// update made fail.
func (p *Pipeline) announceNewlyVulnerable(version string, images []AffectedImage) {
	if len(images) == 0 {
		return
	}
	e := Event{Type: EventNewlyVulnerable, At: p.now(), DBVersion: version, DBBuiltAt: builtAt(version)}
	if len(images) > maxAffectedImages {
		e.MoreImages = len(images) - maxAffectedImages
		images = images[:maxAffectedImages]
	}
	e.Images = images
	p.log.Warn("database update made cached images fail their policy", "db_version", version, "images", len(images)+e.MoreImages)
	p.publish(e)
}

// builtAt reads the build time from a database version
// ("sha256:…@2026-11-27T08:00:00Z"); zero when it has none.
func builtAt(version string) time.Time {
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

// strictestDBAge is the smallest max_db_age of the policy's rules (zero:
// none sets one).
func strictestDBAge(pol *policy.Policy) time.Duration {
	var min time.Duration
	if pol == nil {
		return 0
	}
	for _, r := range pol.Rules {
		if v := r.Vulnerabilities; v != nil && v.MaxDBAge > 0 && (min == 0 || v.MaxDBAge < min) {
			min = v.MaxDBAge
		}
	}
	return min
}

// dbWatch is what WatchDB remembers between checks to announce database
// changes once.
type dbWatch struct {
	seen         bool   // a version was read before (the first is no update)
	staleVersion string // the version db_stale was announced for
}

// announceDB publishes db_updated when version is new since the last
// check (the rematch it caused is done), and db_stale once per version
// when the database is older than the policy allows.
func (p *Pipeline) announceDB(w *dbWatch, version string, changed bool) {
	if changed && w.seen && version != "" {
		p.publish(Event{Type: EventDBUpdated, At: p.now(), DBVersion: version, DBBuiltAt: builtAt(version)})
	}
	w.seen = true
	maxAge := strictestDBAge(p.policy())
	built := builtAt(version)
	if maxAge <= 0 || built.IsZero() || p.now().Sub(built) <= maxAge || w.staleVersion == version {
		return
	}
	w.staleVersion = version
	p.log.Warn("vulnerability database is older than the policy allows", "db_version", version, "max_db_age", maxAge)
	p.publish(Event{Type: EventDBStale, At: p.now(), DBVersion: version, DBBuiltAt: built, MaxDBAge: maxAge.String()})
}
