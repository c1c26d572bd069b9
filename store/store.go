// Package store holds Portcullis' small shared state: today the tag → digest
// cache. One interface, an embedded implementation (bbolt) and, for
// scale-out, a shared one; storetest is the suite every implementation passes.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// ErrNotFound means the key is not in the store.
var ErrNotFound = errors.New("not found")

// ErrConflict means a record changed since it was read: read it again and
// redo the change, so no writer loses another's result.
var ErrConflict = errors.New("changed since it was read")

// TagEntry is what a tag resolved to upstream, and when that was checked.
type TagEntry struct {
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	Size      int64     `json:"size"`
	CheckedAt time.Time `json:"checkedAt"`
}

// Content is a manifest or blob Portcullis made itself (verdicts, SBOMs).
type Content struct {
	MediaType string `json:"mediaType"`
	Body      []byte `json:"body"`
}

// ArtifactStore keeps what Portcullis publishes about an image as OCI
// referrers. It lives with the state, not in the evictable cache: these
// bytes cannot be fetched again from any upstream.
type ArtifactStore interface {
	// PutReferrers replaces the referrers Portcullis publishes for subject:
	// descriptors (OCI descriptor JSON) and the contents they need, by digest.
	// Contents of the referrers it replaces are deleted unless still used.
	PutReferrers(ctx context.Context, subject string, descriptors []json.RawMessage, contents map[string]Content) error
	// AddContents keeps more contents with subject's published set (a
	// manifest composed while serving it) until the set is replaced; only
	// the most recent few additions are kept.
	AddContents(ctx context.Context, subject string, contents map[string]Content) error
	// Referrers lists the descriptors published for subject (none: empty).
	Referrers(ctx context.Context, subject string) ([]json.RawMessage, error)
	// Content returns published content by digest, or ErrNotFound.
	Content(ctx context.Context, digest string) (Content, error)
	// PutTag names published content, e.g. cosign's sha256-<hex>.sig tag
	// of a published artifact; LocalTag resolves it, or ErrNotFound.
	PutLocalTag(ctx context.Context, tag, digest string) error
	LocalTag(ctx context.Context, tag string) (string, error)
}

// SubjectKey names the set of referrers Portcullis publishes about digest
// in upstream/repo (verdicts differ per repository, so do their
// publications); it is the subject argument of ArtifactStore's methods.
func SubjectKey(upstream, repo, digest string) string { return upstream + "/" + repo + "@" + digest }

// LocalTagKey names a tag Portcullis serves itself in upstream/repo (e.g.
// cosign's sha256-<hex>.sig of a published artifact).
func LocalTagKey(upstream, repo, tag string) string { return upstream + "/" + repo + ":" + tag }

// Store is the state shared by the proxy's request handlers and the
// background pipeline.
type Store interface {
	ScanStore
	DecisionStore
	RelationStore
	ArtifactStore
	ControlStore
	AuditStore
	// Tag returns the cached resolution of key, or ErrNotFound.
	Tag(ctx context.Context, key string) (TagEntry, error)
	// PutTag records a resolution.
	PutTag(ctx context.Context, key string, e TagEntry) error
	Close() error
}

// Scan states.
const (
	ScanPending = "pending"
	ScanDone    = "done"
	ScanFailed  = "failed"
)

// ScanRecord is the scan result of one image manifest digest: facts about
// the content, shared by every repository it is pulled through. Verdicts
// are not here: they depend on the rule of the repository a pull names
// (DecisionRecord). The inventory and findings are the scanner's and the
// matcher's own types, stored as their JSON; a done record may still lack
// an inventory (written by hand, or by an older version), so readers check.
type ScanRecord struct {
	Digest string `json:"digest"`
	// Revision counts the writes of the record; PutScan takes a record only
	// at the revision it was read at (0: absent).
	Revision       uint64 `json:"revision"`
	State          string `json:"state"`
	Error          string `json:"error,omitempty"`
	Upstream       string `json:"upstream,omitempty"` // where its layers can be fetched
	Repository     string `json:"repository,omitempty"`
	ScannerVersion string `json:"scannerVersion,omitempty"`
	DBVersion      string `json:"dbVersion,omitempty"`
	// FindingsDBVersion is set by the store, not stored: when a re-match
	// against DBVersion found the same findings and left only a mark
	// (MatchMarker), the version the findings were written with. Verdicts
	// made on that version still stand.
	FindingsDBVersion string `json:"-"`
	// DBWarning says the result was matched without a usable database
	// ("vulnerability database missing", or stale): no findings then
	// means unknown, not clean.
	DBWarning string `json:"dbWarning,omitempty"`
	// Stale is set by readers (the scan API), not stored: the findings
	// come from another database version than the one in force.
	Stale     bool               `json:"stale,omitempty"`
	QueuedAt  time.Time          `json:"queuedAt"`
	UpdatedAt time.Time          `json:"updatedAt"`
	Inventory *scanner.Inventory `json:"inventory,omitempty"`
	// Findings is nil while there are none to tell (pending, failed) and
	// empty, written as [], when the match found nothing.
	Findings []vulndb.Finding `json:"findings,omitzero"`
	// Facts read from the image for the policy (age, size, layers), kept so
	// re-evaluation needs no download.
	Facts *ImageFacts `json:"facts,omitempty"`
}

// FindingsVersion is the database version the record's findings were
// matched against: the version a verdict made on these findings carries.
func (r ScanRecord) FindingsVersion() string {
	if r.FindingsDBVersion != "" {
		return r.FindingsDBVersion
	}
	return r.DBVersion
}

// FindingsFrom reports whether the record's findings are those a match
// against version found: it is the record's version, or a re-match against
// the record's version found the same (a match mark).
func (r ScanRecord) FindingsFrom(version string) bool {
	return version == r.DBVersion || (r.FindingsDBVersion != "" && version == r.FindingsDBVersion)
}

// ImageFacts are what the policy and the gates need from an image itself,
// read once when it is scanned.
type ImageFacts struct {
	Created        time.Time `json:"created,omitzero"`
	CompressedSize int64     `json:"compressedSize"`
	LayerCount     int       `json:"layerCount"`
	// Platform is the image config's os/architecture[/variant].
	Platform string `json:"platform,omitempty"`
	// Blobs are the config and layer digests, so blob requests can follow
	// the verdict of the image they belong to.
	Blobs []string `json:"blobs,omitempty"`
	// The manifest itself, the subject of published verdicts and SBOMs.
	ManifestMediaType string `json:"manifestMediaType,omitempty"`
	ManifestSize      int64  `json:"manifestSize,omitempty"`
}

// MaxTagsSeen bounds DecisionRecord.Tags: a digest pulled by ever new
// tags (a CI tag per build) keeps the most recent ones.
const MaxTagsSeen = 10

// AddTagSeen puts tag first in tags (once), keeping MaxTagsSeen.
func AddTagSeen(tags []string, tag string) []string {
	out := make([]string, 0, min(len(tags)+1, MaxTagsSeen))
	out = append(out, tag)
	for _, t := range tags {
		if t != tag && len(out) < MaxTagsSeen {
			out = append(out, t)
		}
	}
	return out
}

// DecisionRecord is the gate's verdict on one manifest digest pulled
// through one upstream repository, under the rule that matches that
// repository. The same digest can be allowed in one repository and blocked
// in another; signatures and tags are looked up in the repository itself.
type DecisionRecord struct {
	Digest     string `json:"digest"`
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	// Revision counts the writes; PutDecision takes a record only at the
	// revision it was read at (0: absent).
	Revision uint64 `json:"revision"`
	Rule     string `json:"rule,omitempty"`
	Tag      string `json:"tag,omitempty"` // the tag it was last pulled by here, for freshness
	// Tags are the tags it was pulled by here, newest first by when each
	// was first seen (at most MaxTagsSeen): what people know the digest as.
	// A pull by a tag already listed writes nothing.
	Tags []string `json:"tags,omitempty"`
	// Decision is the policy's verdict and reasons (nil: none made yet);
	// Verdict is its effective verdict, for quick lookups.
	Decision *policy.Decision `json:"decision,omitempty"`
	Verdict  string           `json:"verdict"`
	// Signature is the signature check, state and signers (nil: the rule
	// asks for no signature).
	Signature     *policy.SignatureFacts `json:"signature,omitempty"`
	PolicyVersion string                 `json:"policyVersion,omitempty"`
	// DBVersion is the database version of the findings it was made on,
	// ScannedAt the time of the scan result (its UpdatedAt): a verdict on
	// an older result is decided again.
	DBVersion      string    `json:"dbVersion,omitempty"`
	ScannedAt      time.Time `json:"scannedAt,omitzero"`
	FirstAllowedAt time.Time `json:"firstAllowedAt,omitzero"`
	UpdatedAt      time.Time `json:"updatedAt"`
	// History lists verdict changes, oldest first (bounded).
	History []VerdictChange `json:"history,omitempty"`
}

// VerdictChange is one change of a digest's effective verdict.
type VerdictChange struct {
	At            time.Time `json:"at"`
	From          string    `json:"from,omitempty"` // "" for the first verdict
	To            string    `json:"to"`
	Reasons       []string  `json:"reasons,omitempty"` // reason codes
	PolicyVersion string    `json:"policyVersion,omitempty"`
	DBVersion     string    `json:"dbVersion,omitempty"`
}

// ScanStore keeps scan results by manifest digest.
type ScanStore interface {
	// Scan returns the record for digest, or ErrNotFound.
	Scan(ctx context.Context, digest string) (ScanRecord, error)
	// PutScan writes r if the stored record is still at r.Revision (none
	// stored: 0), and advances r.Revision; else it returns ErrConflict.
	PutScan(ctx context.Context, r *ScanRecord) error
	// Scans calls fn for every record, in digest order, until fn returns false.
	Scans(ctx context.Context, fn func(ScanRecord) bool) error
	// ScanFindings is Scans reading only each record's digest, state and
	// findings: what aggregates over every image need, at a fraction of
	// the cost of decoding inventories.
	ScanFindings(ctx context.Context, fn func(ScanFindings) bool) error
}

// ScanFindings is the part of a ScanRecord that ScanStore.ScanFindings
// reads.
type ScanFindings struct {
	Digest   string           `json:"digest"`
	State    string           `json:"state"`
	Findings []vulndb.Finding `json:"findings"`
}

// BlobRef is a blob as a manifest or the upstream declares it; Size -1
// means not known.
type BlobRef struct {
	Digest string
	Size   int64
}

// DecisionStore keeps verdicts by (digest, upstream, repository).
type DecisionStore interface {
	// Decision returns the verdict on digest in upstream/repo, or ErrNotFound.
	Decision(ctx context.Context, digest, upstream, repo string) (DecisionRecord, error)
	// PutDecision writes r if the stored record is still at r.Revision
	// (none stored: 0), and advances r.Revision; else it returns ErrConflict.
	PutDecision(ctx context.Context, r *DecisionRecord) error
	// Decisions calls fn for every verdict on digest ("" : on every digest),
	// until fn returns false.
	Decisions(ctx context.Context, digest string, fn func(DecisionRecord) bool) error
	// DecisionsFrom calls fn for every verdict on the digests from
	// fromDigest on ("": all), in digest order (the repositories of one
	// digest in no set order), until fn returns false; the store starts
	// there without reading the digests before it.
	DecisionsFrom(ctx context.Context, fromDigest string, fn func(DecisionRecord) bool) error
	// DecisionsByTime calls fn for every verdict newest first (by
	// UpdatedAt; verdicts of the same instant by digest, then
	// upstream/repository), from just after the position after on (the
	// zero TimeCursor: from the newest), until fn returns false. The store
	// keeps an index by time, so it starts there without reading the
	// verdicts before it, and lists each verdict once, at its latest time.
	DecisionsByTime(ctx context.Context, after TimeCursor, fn func(DecisionRecord) bool) error
}

// TimeCursor is a position in the newest-first walk of verdicts: the
// UpdatedAt, digest and upstream/repository of the last verdict seen. The
// zero value is the start of the walk.
type TimeCursor struct {
	At     time.Time
	Digest string
	Where  string // upstream/repository
}

// IsZero reports whether c is the start of the walk.
func (c TimeCursor) IsZero() bool { return c.At.IsZero() && c.Digest == "" && c.Where == "" }

// CursorOf is the position of verdict d in the newest-first walk.
func CursorOf(d DecisionRecord) TimeCursor {
	return TimeCursor{At: d.UpdatedAt, Digest: d.Digest, Where: d.Upstream + "/" + d.Repository}
}

// RelationStore keeps which images of a repository reference which blobs,
// and which indexes list which manifests. These relations decide what may
// be served, so they are exact and never forgotten: a lookup that finds
// nothing means there is nothing.
type RelationStore interface {
	// LinkImage records that image (a manifest digest) was served from
	// upstream/repo and references blobs (its config and layers).
	LinkImage(ctx context.Context, upstream, repo, image string, blobs []BlobRef) error
	// BlobImages calls fn for each image of upstream/repo that references
	// blob, with the verdict on it there ("" when none is stored), until fn
	// returns false.
	BlobImages(ctx context.Context, upstream, repo, blob string, fn func(image, verdict string) bool) error
	// LinkBlob records that upstream/repo holds blob without naming an
	// image (the upstream confirmed it); BlobLink reports whether blob was
	// linked to upstream/repo either way, and its size as declared there
	// (-1: not known).
	LinkBlob(ctx context.Context, upstream, repo string, blob BlobRef) error
	BlobLink(ctx context.Context, upstream, repo, blob string) (size int64, linked bool, err error)
	// LinkIndex records that index, served from upstream/repo, lists children.
	LinkIndex(ctx context.Context, upstream, repo, index string, children []string) error
	// Parents calls fn for each index of upstream/repo that lists child,
	// until fn returns false.
	Parents(ctx context.Context, upstream, repo, child string, fn func(index string) bool) error
}
