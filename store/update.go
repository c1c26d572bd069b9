package store

import (
	"context"
	"errors"
	"fmt"
)

// MaxUpdateAttempts bounds how often an update reads a record again after
// another writer changed it.
const MaxUpdateAttempts = 5

// UpdateScan reads the record of digest (exists false, and a new record
// with only Digest set, when there is none), lets change modify it and
// writes it back with compare-and-swap; when another writer got there
// first it reads again and redoes the change, at most MaxUpdateAttempts
// times, so no writer loses another's work. change returns false to leave
// the record alone. It returns the record as written, or nil when nothing
// was written.
func UpdateScan(ctx context.Context, s ScanStore, digest string, change func(r *ScanRecord, exists bool) (bool, error)) (*ScanRecord, error) {
	for range MaxUpdateAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := s.Scan(ctx, digest)
		exists := err == nil
		switch {
		case errors.Is(err, ErrNotFound):
			r = ScanRecord{Digest: digest}
		case err != nil:
			return nil, err
		}
		ok, err := change(&r, exists)
		if err != nil || !ok {
			return nil, err
		}
		switch err := s.PutScan(ctx, &r); {
		case err == nil:
			return &r, nil
		case !errors.Is(err, ErrConflict):
			return nil, err
		}
	}
	return nil, fmt.Errorf("scan record %s kept changing: %w", digest, ErrConflict)
}

// UpdateDecision is UpdateScan for the verdict on digest in upstream/repo
// (a new record with the key fields set when there is none).
func UpdateDecision(ctx context.Context, s DecisionStore, digest, upstream, repo string, change func(r *DecisionRecord) (bool, error)) (*DecisionRecord, error) {
	for range MaxUpdateAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := s.Decision(ctx, digest, upstream, repo)
		switch {
		case errors.Is(err, ErrNotFound):
			r = DecisionRecord{Digest: digest, Upstream: upstream, Repository: repo}
		case err != nil:
			return nil, err
		}
		ok, err := change(&r)
		if err != nil || !ok {
			return nil, err
		}
		switch err := s.PutDecision(ctx, &r); {
		case err == nil:
			return &r, nil
		case !errors.Is(err, ErrConflict):
			return nil, err
		}
	}
	return nil, fmt.Errorf("verdict on %s in %s/%s kept changing: %w", digest, upstream, repo, ErrConflict)
}
