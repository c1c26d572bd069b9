package controls

import (
	"context"
	"time"
)

// A quarantine or exception of an index covers the manifests it lists,
// so every pull with any control in force asks which indexes list the
// digest pulled: a store read per pull, which with Redis cost a third of
// a warm manifest GET's throughput (BenchmarkManifestWarmControls). The
// answer is reused for at most parentsTTL, the time every replica takes
// to apply a change of the controls anyway, and forgotten at once when
// this replica links an index (IndexLinked).
const (
	parentsTTL     = time.Second
	maxParentsMemo = 1 << 16 // entries; a full memo is emptied and refilled
)

type parentsKey struct{ upstream, repo, digest string }

type parentsEntry struct {
	at      time.Time
	indexes []string
}

// parents returns the indexes of upstream/repo that list digest (at most
// maxParents). A read error is logged and gives none: the digest's own
// controls still apply, its indexes' once the store answers.
func (v *View) parents(ctx context.Context, upstream, repo, digest string) []string {
	key := parentsKey{upstream, repo, digest}
	now := v.o.Now()
	v.parentsMu.Lock()
	e, ok := v.parentsMemo[key]
	v.parentsMu.Unlock()
	if ok && now.Sub(e.at) < parentsTTL && !now.Before(e.at) {
		return e.indexes
	}
	var indexes []string
	err := v.st.Parents(ctx, upstream, repo, digest, func(index string) bool {
		indexes = append(indexes, index)
		return len(indexes) < maxParents
	})
	if err != nil {
		v.log.Warn("read the indexes listing an image for their controls", "image", upstream+"/"+repo+"@"+digest, "err", err)
		return indexes
	}
	v.parentsMu.Lock()
	if v.parentsMemo == nil || len(v.parentsMemo) >= maxParentsMemo {
		v.parentsMemo = map[parentsKey]parentsEntry{}
	}
	v.parentsMemo[key] = parentsEntry{at: now, indexes: indexes}
	v.parentsMu.Unlock()
	return indexes
}

// IndexLinked forgets what was read about the indexes listing children
// in upstream/repo: an index this replica just linked there covers them
// from the next pull on.
func (v *View) IndexLinked(upstream, repo string, children []string) {
	v.parentsMu.Lock()
	defer v.parentsMu.Unlock()
	for _, c := range children {
		delete(v.parentsMemo, parentsKey{upstream, repo, c})
	}
}
