package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A state file written before reference counts existed gets them counted
// on open, so replacing sets afterwards frees exactly what nothing keeps.
func TestContentRefsCountedForOldState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	shared := Content{MediaType: "e", Body: []byte("{}")}
	for subject, own := range map[string]string{"sha256:a": "sha256:a1", "sha256:b": "sha256:b1"} {
		err := s.PutReferrers(ctx, subject, []json.RawMessage{[]byte(`{}`)},
			map[string]Content{own: {MediaType: "m", Body: []byte(own)}, "sha256:shared": shared})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Make it look like an older state file.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(contentRefsBucket) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(when string, want map[string]bool) {
		t.Helper()
		for d, kept := range want {
			_, err := s.Content(ctx, d)
			if kept != (err == nil) || (!kept && !errors.Is(err, ErrNotFound)) {
				t.Errorf("%s: content %s: %v, want kept=%v", when, d, err, kept)
			}
		}
	}
	if err := s.PutReferrers(ctx, "sha256:a", nil, nil); err != nil {
		t.Fatal(err)
	}
	check("a replaced", map[string]bool{"sha256:a1": false, "sha256:shared": true, "sha256:b1": true})
	if err := s.PutReferrers(ctx, "sha256:b", nil, nil); err != nil {
		t.Fatal(err)
	}
	check("both replaced", map[string]bool{"sha256:b1": false, "sha256:shared": false})
}
