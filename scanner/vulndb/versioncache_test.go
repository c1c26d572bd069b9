package vulndb

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// realRecordQueries imports the shared real records into a new database
// and returns it with queries for every sampled entry's package at the
// versions its ranges and lists name, just above and below them, and a
// few that no range names.
func realRecordQueries(t *testing.T) (*DB, []Query) {
	t.Helper()
	db := openTestDB(t)
	if _, err := db.Import(context.Background(), []string{osvTestdata(t)}, nil); err != nil {
		t.Fatal(err)
	}
	var qs []Query
	seen := map[Query]bool{}
	add := func(q Query) {
		if !seen[q] {
			seen[q] = true
			qs = append(qs, q)
		}
	}
	eachSampledRecord(t, func(_ string, rec *record) {
		for _, pe := range rec.Entries {
			versions := versionsAround(&pe.Entry, "0.0.1", "99999.0.0", "not a version")
			for _, v := range versions {
				add(Query{Ecosystem: pe.Ecosystem, Name: pe.Name, Version: v})
			}
		}
	})
	return db, qs
}

// matchWith matches qs in one call with the given cache of parsed bounds
// (nil: every bound parsed where it is used, as before the cache).
func matchWith(t *testing.T, db *DB, c *versionCache, qs []Query) []Finding {
	t.Helper()
	db.versions = c
	fs, err := db.Match(context.Background(), qs)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// sameFindings fails the test at the first finding that differs.
func sameFindings(t *testing.T, what string, got, want []Finding) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: finding %d is\n%+v\nwithout the cache\n%+v", what, i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d findings, without the cache %d", what, len(got), len(want))
	}
}

// The parsed bounds kept across matches change no finding: the same
// queries over the real records give the same findings without the
// cache, with a cold one, with the same one warm, with one so small that
// it empties its shards all the time, and from concurrent matches
// sharing one cache (which -race checks for data races on the shared
// parsed versions).
func TestVersionCacheKeepsFindings(t *testing.T) {
	db, qs := realRecordQueries(t)
	if len(qs) < 5000 {
		t.Fatalf("only %d queries", len(qs))
	}
	want := matchWith(t, db, nil, qs)
	if len(want) < 5000 {
		t.Fatalf("only %d findings without the cache: the comparison would say little", len(want))
	}

	shared := newVersionCache()
	sameFindings(t, "cold cache", matchWith(t, db, shared, qs), want)
	entries, _ := shared.size()
	if entries < 1000 {
		t.Fatalf("the cache holds %d bounds after matching %d queries", entries, len(qs))
	}
	sameFindings(t, "warm cache", matchWith(t, db, shared, qs), want)

	tiny := newVersionCache()
	tiny.maxEntries, tiny.maxBytes = 2, 4*versionCacheEntryCost("1.2.3")
	sameFindings(t, "tiny cache", matchWith(t, db, tiny, qs), want)
	if n, b := tiny.size(); n > 2*versionCacheShards || b > 4*versionCacheEntryCost("1.2.3")*versionCacheShards {
		t.Errorf("tiny cache holds %d entries, %d bytes: over its bounds", n, b)
	}

	concurrent := newVersionCache()
	db.versions = concurrent
	const workers = 4
	results := make([][]Finding, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker starts at another place, so that they parse
			// and add the same bounds at the same time in different
			// orders.
			rot := append(append([]Query{}, qs[w*len(qs)/workers:]...), qs[:w*len(qs)/workers]...)
			fs, err := db.Match(context.Background(), rot)
			if err != nil {
				errs[w] = err
				return
			}
			// Back in the order of qs, as a single call returns them.
			shift := w * len(qs) / workers
			for i := range fs {
				fs[i].Query = (fs[i].Query + shift) % len(qs)
			}
			results[w] = sortedByQuery(fs)
		})
	}
	wg.Wait()
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		sameFindings(t, fmt.Sprintf("concurrent match %d", w), results[w], want)
	}
}

// sortedByQuery orders findings by query index, keeping each query's
// findings in the order the match gave them.
func sortedByQuery(fs []Finding) []Finding {
	byQuery := map[int][]Finding{}
	maxQ := -1
	for _, f := range fs {
		byQuery[f.Query] = append(byQuery[f.Query], f)
		maxQ = max(maxQ, f.Query)
	}
	out := make([]Finding, 0, len(fs))
	for q := 0; q <= maxQ; q++ {
		out = append(out, byQuery[q]...)
	}
	return out
}

// The cache's byte bound is an estimate per entry; it must not be below
// what the real bounds take on the heap once cached, or the bound would
// let the cache grow past it. Every distinct bound of the sampled real
// records goes into one cache, and the live heap it adds is compared
// with its estimate.
func TestVersionCacheEntryCostCoversRealBounds(t *testing.T) {
	type bound struct {
		eco    string
		semver bool
		s      string
	}
	var bounds []bound
	seen := map[bound]bool{}
	eachSampledRecord(t, func(_ string, rec *record) {
		for _, pe := range rec.Entries {
			for _, p := range pe.Entry.Parts {
				for _, r := range p.Ranges {
					for _, ev := range r.Events {
						if b := (bound{pe.Ecosystem, r.Semver, ev.Version}); !seen[b] {
							seen[b] = true
							bounds = append(bounds, b)
						}
					}
				}
			}
		}
	})
	if len(bounds) < 1000 {
		t.Fatalf("only %d distinct bounds", len(bounds))
	}
	// The bounds as []byte, as the index hands them over, copied first so
	// that the copies are not counted.
	raw := make([][]byte, len(bounds))
	for i, b := range bounds {
		raw[i] = []byte(b.s)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newVersionCache()
	for i, b := range bounds {
		c.get(b.eco, b.semver, raw[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	entries, estimate := c.size()
	runtime.KeepAlive(c)
	runtime.KeepAlive(raw)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d bounds cached: %d bytes on the heap (%d a bound), estimated %d (%d a bound)",
		entries, held, held/int64(entries), estimate, estimate/entries)
	if entries != len(bounds) {
		t.Fatalf("cache holds %d of %d bounds", entries, len(bounds))
	}
	if held > int64(estimate) {
		t.Errorf("the cached bounds take %d bytes, more than the %d estimated", held, estimate)
	}
}

// referenceMatch matches qs the plain way, as Match did before it read
// entries in place and kept parsed bounds: every index entry of the
// database is decoded whole, and each one under a candidate's package is
// matched with matchEntry, parsing every version where it is compared.
func referenceMatch(t *testing.T, db *DB, qs []Query) []Finding {
	t.Helper()
	byPrefix := map[string][]entry{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketIndex)).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("decode %q: %w", k, err)
			}
			// The key is ecosystem NUL name NUL id.
			parts := bytes.SplitN(k, []byte{0}, 3)
			if len(parts) != 3 {
				return fmt.Errorf("index key %q", k)
			}
			prefix := string(parts[0]) + "\x00" + string(parts[1]) + "\x00"
			byPrefix[prefix] = append(byPrefix[prefix], e)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []Finding
	for qi, q := range qs {
		q = fromPURL(q)
		eco := normalizeEcosystem(q.Ecosystem)
		if eco == "" || q.Name == "" || q.Version == "" {
			continue
		}
		cands := []candidate{}
		if q.SourceName != "" {
			v := q.SourceVersion
			if v == "" {
				v = q.Version
			}
			cands = append(cands, candidate{q.SourceName, v})
		}
		if c := (candidate{q.Name, q.Version}); len(cands) == 0 || cands[0] != c {
			cands = append(cands, c)
		}
		var fs []Finding
		seen := map[string]bool{}
		for _, c := range cands {
			iv := parsedVersions{eco: eco, v: queryVersion(eco, c.name, c.version)}
			for _, e := range byPrefix[eco+"\x00"+normalizeName(eco, c.name)+"\x00"] {
				if seen[e.ID] {
					continue
				}
				f, ok := matchEntry(&e, &iv)
				if !ok {
					continue
				}
				seen[e.ID] = true
				Classify(&f) // what a record's id says (malware) is the matcher's rule too
				f.Ecosystem = q.Ecosystem
				if f.Ecosystem == "" {
					f.Ecosystem = eco
				}
				f.Package, f.InstalledVersion, f.Query = q.Name, q.Version, qi
				if e.Package != q.Name {
					f.AffectedPackage = e.Package
				}
				fs = append(fs, f)
			}
		}
		slices.SortStableFunc(fs, func(a, b Finding) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, fs...)
	}
	return out
}

// Match, reading entries in place with the parsed bounds cached and the
// findings gathered in chunks, finds exactly what the plain way finds
// (referenceMatch) for the queries over the real records, thousands of
// findings across many chunks, and for queries naming a source package
// that other queries name as a binary (a package read twice in a call).
func TestMatchEqualsReference(t *testing.T) {
	db, qs := realRecordQueries(t)
	// Alpine packages with another's as their source package: two
	// packages read for one query, their findings merged in id order,
	// and each package read again by another query.
	var alpine []Query
	for _, q := range qs {
		if strings.HasPrefix(q.Ecosystem, "Alpine") && (len(alpine) == 0 || alpine[len(alpine)-1].Name != q.Name) {
			alpine = append(alpine, q)
		}
	}
	var extra []Query
	for i := 1; i < len(alpine) && len(extra) < 300; i++ {
		bin, src := alpine[i], alpine[i-1]
		extra = append(extra, Query{Ecosystem: bin.Ecosystem, Name: bin.Name, Version: bin.Version, SourceName: src.Name, SourceVersion: src.Version})
	}
	if len(extra) < 100 {
		t.Fatalf("only %d queries with a source package", len(extra))
	}
	// First, so that the one-query-at-a-time check below covers them.
	qs = append(extra, qs...)
	want := referenceMatch(t, db, qs)
	if len(want) < 5000 {
		t.Fatalf("only %d findings: the comparison would say little", len(want))
	}
	for _, what := range []string{"cold cache", "warm cache"} {
		got, err := db.Match(context.Background(), qs)
		if err != nil {
			t.Fatal(err)
		}
		sameFindings(t, what, got, want)
	}
	// One query at a time: each result fits one chunk.
	for i, q := range qs[:500] {
		got, err := db.Match(context.Background(), []Query{q})
		if err != nil {
			t.Fatal(err)
		}
		var wantOne []Finding
		for _, f := range want {
			if f.Query == i {
				f.Query = 0
				wantOne = append(wantOne, f)
			}
		}
		sameFindings(t, fmt.Sprintf("query %d alone", i), got, wantOne)
	}
}

// The cache stays within its bounds whatever it is fed: many distinct
// versions (an image full of them), versions too long to parse, bounds
// of many ecosystems; and what it answers is what parsing answers.
func TestVersionCacheBounds(t *testing.T) {
	cases := []struct {
		name     string
		eco      string
		semver   bool
		versions func(i int) string
		n        int
		cached   bool // whether one such version stays in the cache
	}{
		{"many Debian versions", "Debian:12", false, func(i int) string { return fmt.Sprintf("1.%d-%d", i, i%7) }, 20000, true},
		{"many semver versions", "npm", true, func(i int) string { return fmt.Sprintf("%d.%d.%d", i%10, i/10, i%3) }, 20000, true},
		{"too long to parse", "PyPI", false, func(i int) string { return strings.Repeat("1.", maxVersionLen) + fmt.Sprint(i) }, 100, false},
		{"not a version", "Alpine:v3.16", false, func(i int) string { return fmt.Sprintf("x-%d", i) }, 1000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newVersionCache()
			c.maxEntries, c.maxBytes = 64, 64*versionCacheEntryCost("1.22.333-4")
			for i := range tc.n {
				s := tc.versions(i)
				got := c.get(tc.eco, tc.semver, []byte(s))
				want, err := parseVersion(s, tc.eco, tc.semver)
				if got.s != s || (err == nil) != (got.v != nil) || (err == nil && !reflect.DeepEqual(got.v, want)) {
					t.Fatalf("get(%q) = %+v, parsing gives %v, %v", s, got, want, err)
				}
				if n, b := c.size(); n > 64*versionCacheShards || b > 64*versionCacheEntryCost("1.22.333-4")*versionCacheShards {
					t.Fatalf("after %d versions the cache holds %d entries, %d bytes: over its bounds", i+1, n, b)
				}
			}
			one := tc.versions(tc.n)
			c.get(tc.eco, tc.semver, []byte(one))
			sh := &c.shards[maphash.String(c.seed, one)%versionCacheShards]
			_, kept := sh.byKind[boundCacheKey{tc.eco, tc.semver}][one]
			if kept != tc.cached {
				t.Errorf("version %.20q… cached %v, want %v", one, kept, tc.cached)
			}
		})
	}
	// One string in many ecosystems and both orders: each kind gets its
	// own parse, asked first or again.
	c := newVersionCache()
	for round := range 2 {
		for _, eco := range []string{"npm", "PyPI", "Maven", "Go", "Debian:12", "Alpine:v3.16", "RubyGems", "NuGet", "Packagist", "crates.io"} {
			for _, semver := range []bool{false, true} {
				got := c.get(eco, semver, []byte("1.0.0"))
				want, err := parseVersion("1.0.0", eco, semver)
				if err != nil || !reflect.DeepEqual(got.v, want) {
					t.Fatalf("round %d: get(%s, semver %v) = %#v, parsing gives %#v, %v", round, eco, semver, got.v, want, err)
				}
			}
		}
	}
	if n, _ := c.size(); n != 20 {
		t.Errorf("cache holds %d parses of one string in 20 kinds", n)
	}
	// The cached Packagist parse is Composer's (1.2 = 1.2.0.0), not
	// version_compare's.
	if got, err := c.get("Packagist", false, []byte("1.2")).v.CompareStr("1.2.0.0"); err != nil || got != 0 {
		t.Errorf("Packagist 1.2 vs 1.2.0.0 = %d, %v; want 0", got, err)
	}
}

// Shared opens the file only while it is used; the parsed versions are
// its own, so they are still there for the next match after the file
// was closed.
func TestSharedKeepsParsedVersions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vulndb")
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	importValues(t, db, rec("GHSA-1", "npm", "lodash", "SEMVER", ev("introduced", "0"), ev("fixed", "4.17.21")))
	db.Close()
	s := NewShared(dir)
	for round := range 2 {
		fs, _, err := s.MatchVersioned(context.Background(), []Query{{Ecosystem: "npm", Name: "lodash", Version: "4.17.20"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].ID != "GHSA-1" || !slices.Equal(fs[0].FixedVersions, []string{"4.17.21"}) {
			t.Fatalf("round %d: findings %+v", round, fs)
		}
		s.mu.Lock()
		open := s.db != nil
		s.mu.Unlock()
		if open {
			t.Fatalf("round %d: the file is still open after the match", round)
		}
		// The bounds "0" and "4.17.21" and the installed "4.17.20", in
		// semver order.
		if n, _ := s.versions.size(); n != 3 {
			t.Fatalf("round %d: the shared cache holds %d versions, want 3", round, n)
		}
	}
}
