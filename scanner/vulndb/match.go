package vulndb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/osv-scalibr/semantic"
	bolt "go.etcd.io/bbolt"
)

// Match returns the vulnerabilities affecting each query, sorted by query
// index, then id. It reads only the index entries of the queried packages,
// in one read transaction, so an import running meanwhile is either wholly
// seen or not at all.
//
// A query with SourceName (Debian and Alpine name source packages) is
// matched on the source package with SourceVersion (else Version), and on
// Name with Version, since some records name binaries; an id is reported
// once per query, the source match first.
func (db *DB) Match(ctx context.Context, qs []Query) ([]Finding, error) {
	out, _, err := db.MatchVersioned(ctx, qs)
	return out, err
}

// MatchVersioned is Match plus the version of the data it matched against,
// read in the same transaction: an import committing meanwhile cannot
// label old findings with its new version.
func (db *DB) MatchVersioned(ctx context.Context, qs []Query) ([]Finding, string, error) {
	var out []Finding
	var version string
	db.mu.RLock()
	defer db.mu.RUnlock()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		st, err := readStatus(tx)
		if err != nil {
			return err
		}
		version = versionString(st)
		m := matcher{cursor: tx.Bucket([]byte(bucketIndex)).Cursor(), seen: map[string]bool{}, screen: screen{bounds: db.versions}}
		for i, q := range qs {
			if i%64 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := m.match(i, q); err != nil {
				return err
			}
		}
		out = m.results()
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("match %d packages against the vulnerability database: %w", len(qs), err)
	}
	return out, version, nil
}

// matcher holds what one Match call reuses from query to query. It reads
// each package's index entries where they lie (bbolt keeps them valid
// until the transaction ends), without copying them into a list: a
// package read again (the source package of several binaries) costs one
// more seek, where keeping every list read cost more in allocations.
type matcher struct {
	cursor *bolt.Cursor
	// prefix is the key prefix of the package being read.
	prefix []byte
	// seen has the ids reported for the query being matched; one map,
	// cleared for each query.
	seen map[string]bool
	// query has the findings of the query being matched, sorted by id
	// before they join done.
	query []Finding
	// done holds the findings of the queries matched so far in chunks,
	// copied once into the result: a Finding is about 280 bytes, and
	// growing one slice of thousands of them (by a quarter each time,
	// past 256) allocated about five times the result.
	done   [][]Finding
	n      int
	screen screen
	// memo keeps the comparisons of the installed version being matched.
	memo compareMemo
}

// Chunks of findings start small (most images have few findings) and
// grow with the findings kept, up to maxFindingChunk.
const (
	minFindingChunk = 16
	maxFindingChunk = 512
)

// keep moves the findings of one query to the chunks.
func (m *matcher) keep(fs []Finding) {
	for len(fs) > 0 {
		if len(m.done) == 0 || len(m.done[len(m.done)-1]) == cap(m.done[len(m.done)-1]) {
			m.done = append(m.done, make([]Finding, 0, min(maxFindingChunk, max(minFindingChunk, m.n))))
		}
		last := &m.done[len(m.done)-1]
		k := min(len(fs), cap(*last)-len(*last))
		*last = append(*last, fs[:k]...)
		fs = fs[k:]
		m.n += k
	}
}

// results returns the findings kept, in the order kept; nil if none.
func (m *matcher) results() []Finding {
	if m.n == 0 {
		return nil
	}
	out := make([]Finding, 0, m.n)
	for _, c := range m.done {
		out = append(out, c...)
	}
	return out
}

// indexValue is one index entry as stored, with its key for errors.
type indexValue struct{ key, value []byte }

// candidate is one (package, version) to look up for a query.
type candidate struct{ name, version string }

// match keeps the findings of query qi, sorted by id.
func (m *matcher) match(qi int, q Query) error {
	q = fromPURL(q)
	eco := normalizeEcosystem(q.Ecosystem)
	if eco == "" || q.Name == "" || q.Version == "" {
		return nil
	}
	cands := make([]candidate, 0, 2) // on the stack: a query has at most two
	if q.SourceName != "" {
		v := q.SourceVersion
		if v == "" {
			v = q.Version
		}
		cands = append(cands, candidate{q.SourceName, v})
	}
	if c := (candidate{q.Name, q.Version}); !slices.Contains(cands, c) {
		cands = append(cands, c)
	}
	m.query = m.query[:0]
	seen := m.seen
	clear(seen)
	for _, c := range cands {
		m.prefix = append(append(append(append(m.prefix[:0], eco...), 0), normalizeName(eco, c.name)...), 0)
		k, v := m.cursor.Seek(m.prefix)
		if k == nil || !bytes.HasPrefix(k, m.prefix) {
			continue
		}
		m.memo.reset()
		iv := parsedVersions{eco: eco, v: queryVersion(eco, c.name, c.version), cache: m.screen.bounds, memo: &m.memo}
		for ; k != nil && bytes.HasPrefix(k, m.prefix); k, v = m.cursor.Next() {
			f, pkg, ok, err := m.matchValue(indexValue{key: k, value: v}, &iv, seen)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			seen[f.ID] = true
			Classify(&f)
			f.Ecosystem = q.Ecosystem
			if f.Ecosystem == "" {
				f.Ecosystem = eco
			}
			f.Package, f.InstalledVersion, f.Query = q.Name, q.Version, qi
			if pkg != q.Name {
				f.AffectedPackage = pkg
			}
			m.query = append(m.query, f)
		}
	}
	slices.SortStableFunc(m.query, func(a, b Finding) int { return strings.Compare(a.ID, b.ID) })
	m.keep(m.query)
	return nil
}

// queryVersion puts an installed version in the form records use: Go
// toolchain releases as semver ("go1.21.3" → "1.21.3"), Go module
// versions without the "v" that build info has and records lack.
func queryVersion(eco, name, v string) string {
	v = strings.TrimSpace(v)
	switch {
	case isGoToolchain(eco, name):
		return goToolchainVersion(v)
	case baseEcosystem(eco) == "Go":
		return strings.TrimPrefix(v, "v")
	}
	return v
}

// parsedVersions parses the installed version at most once per kind of
// range (ecosystem order, semver order), through the cache of parsed
// versions when there is one.
type parsedVersions struct {
	eco   string
	v     string
	cache *versionCache
	// memo, when set, keeps this version's comparisons with bounds; the
	// matcher resets it for each installed version.
	memo             *compareMemo
	ecoDone, semDone bool
	ecoVer, semVer   semantic.Version
}

func (p *parsedVersions) get(semver bool) semantic.Version {
	if semver {
		if !p.semDone {
			p.semVer, p.semDone = p.cache.getString(p.eco, true, p.v).v, true
		}
		return p.semVer
	}
	if !p.ecoDone {
		p.ecoVer, p.ecoDone = p.cache.getString(p.eco, false, p.v).v, true
	}
	return p.ecoVer
}

// matchEntry decides whether an entry affects the version; the finding has
// the entry's fields, the fixed versions of the spans that contain the
// version, and the worst severity of the parts that matched.
func matchEntry(e *entry, iv *parsedVersions) (Finding, bool) {
	var (
		hit   bool
		fixed []string
		sev   severity
	)
	for _, p := range e.Parts {
		partHit := slices.ContainsFunc(p.Versions, func(l string) bool { return sameListedVersion(iv.eco, l, iv.v) })
		for _, r := range p.Ranges {
			ok, fix := r.contains(iv.get(r.Semver))
			if !ok {
				continue
			}
			partHit = true
			if fix != "" && !slices.Contains(fixed, fix) {
				fixed = append(fixed, fix)
			}
		}
		if !partHit {
			continue
		}
		if !hit || worse(p.Severity, sev) {
			sev = p.Severity
		}
		hit = true
	}
	if !hit {
		return Finding{}, false
	}
	slices.SortFunc(fixed, func(a, b string) int {
		if c, err := compareStrings(a, b, iv.eco, false); err == nil && c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if sev.Level == "" {
		sev.Level = SeverityUnknown
	}
	return Finding{
		ID:            e.ID,
		Aliases:       slices.Clone(e.Aliases),
		Upstream:      slices.Clone(e.Upstream),
		Summary:       e.Summary,
		Published:     e.Published,
		FixedVersions: fixed,
		Severity:      sev.Level,
		Score:         sev.Score,
		CVSSVector:    sev.Vector,
	}, true
}

func worse(a, b severity) bool {
	if ra, rb := SeverityRank(a.Level), SeverityRank(b.Level); ra != rb {
		return ra > rb
	}
	return a.Score > b.Score
}

// matchValue matches one index value: a binary one in place (see
// screen), a JSON one of an older file decoded whole. It returns the
// finding and the package the entry names, unless the entry does not
// affect the version or was reported for this query already (seen).
func (m *matcher) matchValue(raw indexValue, iv *parsedVersions, seen map[string]bool) (Finding, string, bool, error) {
	f, pkg, ok, err := m.screen.match(raw.value, iv, seen)
	if !errors.Is(err, errNotBinary) {
		if err != nil {
			return Finding{}, "", false, screenError(raw.key, err)
		}
		return f, pkg, ok, nil
	}
	e, err := decodeEntry(raw.value)
	if err != nil {
		return Finding{}, "", false, screenError(raw.key, err)
	}
	if seen[e.ID] {
		return Finding{}, "", false, nil
	}
	f, ok = matchEntry(&e, iv)
	return f, e.Package, ok, nil
}
