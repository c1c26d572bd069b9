package store

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The index of verdicts by time (both stores): one entry per verdict,
// NEWEST \0 digest \0 upstream/repository, where NEWEST is 16 hex digits
// of the bitwise complement of the verdict's UpdatedAt in Unix
// nanoseconds, so that ascending byte order is newest first and entries
// of the same instant follow digest order. Fixed-width text keeps byte
// order and time order the same in bbolt and in a Redis lexical range
// alike; a Redis score (a float64) could not hold nanoseconds exactly.

// recentNanos is t in Unix nanoseconds, clamped to what the index can
// order: a zero or pre-1970 time sorts as the oldest, one past 2262 as
// the newest.
func recentNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// recentKey is the index entry of the verdict on digest in where updated
// at t.
func recentKey(t time.Time, digest, where string) []byte {
	b := make([]byte, 0, 16+2+len(digest)+len(where))
	b = fmt.Appendf(b, "%016x", ^recentNanos(t))
	b = append(b, 0)
	b = append(b, digest...)
	b = append(b, 0)
	return append(b, where...)
}

// recentKeyOf is d's index entry.
func recentKeyOf(d DecisionRecord) []byte {
	return recentKey(d.UpdatedAt, d.Digest, d.Upstream+"/"+d.Repository)
}

// key of the cursor's position; nil for the start.
func (c TimeCursor) key() []byte {
	if c.IsZero() {
		return nil
	}
	return recentKey(c.At, c.Digest, c.Where)
}

// parseRecentKey splits an index entry into the key of its record in the
// decisions (digest \0 upstream/repository).
func parseRecentKey(k []byte) (digest, where string, err error) {
	if len(k) < 18 || k[16] != 0 {
		return "", "", fmt.Errorf("index entry %q is not valid", k)
	}
	if _, err := strconv.ParseUint(string(k[:16]), 16, 64); err != nil {
		return "", "", fmt.Errorf("index entry %q is not valid", k)
	}
	d, w, ok := bytes.Cut(k[17:], []byte{0})
	if !ok || len(d) == 0 || len(w) == 0 {
		return "", "", fmt.Errorf("index entry %q is not valid", k)
	}
	return string(d), string(w), nil
}
