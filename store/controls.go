package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Quarantine blocks one manifest digest for every upstream, repository
// and rule, in every mode, until it is lifted or expires.
type Quarantine struct {
	Digest string `json:"digest"`
	Reason string `json:"reason"`
	// Expires is when it lifts itself (zero: never).
	Expires   time.Time `json:"expires,omitzero"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"` // the API token's name, or "loopback"
	RequestID string    `json:"requestId,omitempty"`
}

// Exception lets a digest the policy blocks through as warn, in the
// repositories Repository matches (a glob over upstream/repository; ""
// matches all), until Expires.
type Exception struct {
	ID         string    `json:"id"`
	Digest     string    `json:"digest"`
	Repository string    `json:"repository,omitempty"`
	Reason     string    `json:"reason"`
	Expires    time.Time `json:"expires"`
	CreatedAt  time.Time `json:"createdAt"`
	CreatedBy  string    `json:"createdBy"`
	RequestID  string    `json:"requestId,omitempty"`
}

// Bounds of the controls in force: each listing the replicas load is at
// most this long.
const (
	MaxQuarantines = 100_000
	MaxExceptions  = 100_000
)

// errChanged: a conditional delete found the entry changed.
var errChanged = errors.New("changed meanwhile")

// deletedIf turns a conditional delete's error into its answer: gone or
// changed meanwhile is not an error, only not done.
func deletedIf(err error, op string) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound), errors.Is(err, errChanged):
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", op, err)
}

// ErrLimit means a bound would be exceeded (too many quarantines).
var ErrLimit = errors.New("limit reached")

// ControlStore keeps the operators' quarantines and exceptions. Every
// change advances ControlsVersion, which replicas poll to reload.
type ControlStore interface {
	// PutQuarantine adds q, or replaces the quarantine of the same
	// digest. ErrLimit when MaxQuarantines are in force and q is new.
	PutQuarantine(ctx context.Context, q Quarantine) error
	// DeleteQuarantine lifts the quarantine of digest and returns it, or
	// ErrNotFound.
	DeleteQuarantine(ctx context.Context, digest string) (Quarantine, error)
	// Quarantines calls fn for each quarantine whose digest sorts after
	// after ("": from the first), in digest order, until fn returns false.
	Quarantines(ctx context.Context, after string, fn func(Quarantine) bool) error
	// PutException adds e, or replaces the exception of the same ID.
	// ErrLimit when MaxExceptions are in force and e is new.
	PutException(ctx context.Context, e Exception) error
	// DeleteException removes the exception id and returns it, or
	// ErrNotFound.
	DeleteException(ctx context.Context, id string) (Exception, error)
	// Exceptions calls fn for each exception whose ID sorts after after,
	// in ID order, until fn returns false.
	Exceptions(ctx context.Context, after string, fn func(Exception) bool) error
	// DeleteQuarantineIf lifts the quarantine of q.Digest only while it
	// is still q (the same CreatedAt and Expires), and reports whether it
	// did: the expiry sweeper must not lift one re-added or given a new
	// expiry meanwhile, and of several replicas sweeping only one wins.
	DeleteQuarantineIf(ctx context.Context, q Quarantine) (bool, error)
	// DeleteExceptionIf removes the exception e.ID only while it is still
	// e (the same CreatedAt and Expires), and reports whether it did.
	DeleteExceptionIf(ctx context.Context, e Exception) (bool, error)
	// ControlsVersion changes with every put and delete of either kind.
	ControlsVersion(ctx context.Context) (uint64, error)
}

// Audit record kinds.
const (
	AuditQuarantine        = "quarantine"         // a digest was quarantined
	AuditRelease           = "release"            // a quarantine was lifted by hand
	AuditQuarantineExpired = "quarantine_expired" // a quarantine lifted itself
	AuditException         = "exception"          // an exception was granted
	AuditExceptionRemoved  = "exception_removed"  // an exception was withdrawn by hand
	AuditExceptionExpired  = "exception_expired"  // an exception ran out
	AuditPolicyReload      = "policy_reload"      // a replica put a new policy in force
	AuditCurationRefusals  = "curation_refusals"  // a summary of pulls refused by curation rules
)

// AuditKinds lists every kind above.
func AuditKinds() []string {
	return []string{AuditQuarantine, AuditRelease, AuditQuarantineExpired, AuditException,
		AuditExceptionRemoved, AuditExceptionExpired, AuditPolicyReload, AuditCurationRefusals}
}

// AuditRecord is one entry of the audit log: who did what, when, why.
type AuditRecord struct {
	// ID is set by AppendAudit: unique, and records are read back in the
	// order of their IDs (oldest first). Opaque to callers.
	ID   string    `json:"id"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	Who  string    `json:"who"`  // the API token's name, "loopback", or "portcullis" for the server itself
	What string    `json:"what"` // the digest, exception id or policy version acted on
	Why  string    `json:"why,omitempty"`
	// RequestID is the API request that made the change, if one did.
	RequestID string `json:"requestId,omitempty"`
	Replica   string `json:"replica,omitempty"`
	// Details says more, per kind (an exception's repository and expiry,
	// counts of refusals by rule and repository); bounded by its writer.
	Details map[string]string `json:"details,omitempty"`
}

// MaxAuditRecords bounds the audit log: past it, the oldest records go.
const MaxAuditRecords = 1_000_000

// AuditQuery selects audit records, oldest first.
type AuditQuery struct {
	After string    // an ID read before: only records after it
	Since time.Time // only records at or after this time
	Kind  string    // only this kind ("": all)
}

// AuditStore keeps the append-only audit log.
type AuditStore interface {
	// AppendAudit stores r and sets r.ID (and r.At when zero).
	AppendAudit(ctx context.Context, r *AuditRecord) error
	// Audit calls fn for each record q selects, oldest first, until fn
	// returns false.
	Audit(ctx context.Context, q AuditQuery, fn func(AuditRecord) bool) error
}

// SameQuarantine reports whether a and b are the same grant of a
// quarantine (not one re-added or extended since).
func SameQuarantine(a, b Quarantine) bool {
	return a.Digest == b.Digest && a.CreatedAt.Equal(b.CreatedAt) && a.Expires.Equal(b.Expires)
}

// SameException reports whether a and b are the same grant of an
// exception.
func SameException(a, b Exception) bool {
	return a.ID == b.ID && a.CreatedAt.Equal(b.CreatedAt) && a.Expires.Equal(b.Expires)
}
