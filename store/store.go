// Package store holds Portcullis' small shared state: today the tag → digest
// cache. One interface, an embedded implementation (bbolt) and, for
// scale-out, a shared one; storetest is the suite every implementation passes.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound means the key is not in the store.
var ErrNotFound = errors.New("not found")

// TagEntry is what a tag resolved to upstream, and when that was checked.
type TagEntry struct {
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	Size      int64     `json:"size"`
	CheckedAt time.Time `json:"checkedAt"`
}

// Store is the state shared by the proxy's request handlers.
type Store interface {
	// Tag returns the cached resolution of key, or ErrNotFound.
	Tag(ctx context.Context, key string) (TagEntry, error)
	// PutTag records a resolution.
	PutTag(ctx context.Context, key string, e TagEntry) error
	Close() error
}
