package vulndb

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/osv-scalibr/semantic"
)

// Matching reads every index entry of each queried package, and most of
// them do not affect the installed version. Decoding each entry whole
// (strings for its id, aliases, prose, every range bound) and parsing every
// bound again for each comparison was most of a match's time. So an entry
// in the binary form is first screened where it lies in the bbolt page:
// the header is skipped, the ranges are read into buffers the matcher
// reuses, and each bound is parsed once and kept across Match calls (see
// versionCache). Only for an entry
// that affects the version are its id, aliases and prose copied out into
// a finding. screen.match applies matchEntry's rules (vrange.contains,
// the worst severity of the parts that matched, fixed versions in the
// ecosystem's order); TestScreenMatchesDecodedEntry and FuzzScreenMatch
// hold the two to the same answers. JSON entries of older files still go
// through matchEntry.

// screen holds the buffers one matcher reuses for every entry it screens.
type screen struct {
	// bounds parses range bounds through the cache the DB keeps across
	// matches (nil: each bound parsed where it is used).
	bounds *versionCache
	events []event
	parsed []semantic.Version
	fixed  []string
}

// errNotBinary: the value is not in the binary form (a JSON entry of an
// older file); the caller decodes it whole and uses matchEntry.
var errNotBinary = errors.New("not a binary entry")

// match is matchEntry for the binary index value v, read in place: it
// returns the finding and the package the entry names if the entry
// affects the installed version and its id is not in seen. Only then are
// the id, aliases and prose copied out of v. It returns errNotBinary for
// a JSON value.
func (s *screen) match(v []byte, iv *parsedVersions, seen map[string]bool) (f Finding, pkg string, hit bool, err error) {
	if len(v) == 0 || v[0] != binaryEntryTag {
		return Finding{}, "", false, errNotBinary
	}
	all := v[1:]
	d := entryDecoder{b: all}
	id := d.bytes()
	if d.err == nil && seen[string(id)] {
		return Finding{}, "", false, nil
	}
	d.bytes() // package
	d.skipStrings()
	d.skipStrings()
	d.bytes() // summary
	d.bytes() // published
	header := all[:len(all)-len(d.b)]
	var sev severity
	s.fixed = s.fixed[:0]
	nparts := d.count()
	for range nparts {
		partHit := false
		nranges := d.count()
		for range nranges {
			r := s.readRange(&d, iv.eco)
			if d.err != nil {
				break
			}
			ok, fix := r.containsWith(iv.get(r.Semver), iv.memo)
			if !ok {
				continue
			}
			partHit = true
			if fix != "" && !slices.Contains(s.fixed, fix) {
				s.fixed = append(s.fixed, fix)
			}
		}
		nversions := d.count()
		for range nversions {
			// Compared in place first: no copy for the common case.
			if l := d.bytes(); string(l) == iv.v || (foldsListedVersions(iv.eco) && sameListedVersion(iv.eco, string(l), iv.v)) {
				partHit = true
			}
		}
		level := d.bytes()
		score := d.float()
		vector := d.bytes()
		if !partHit || d.err != nil {
			continue
		}
		if p := (severity{Level: string(level), Score: score, Vector: string(vector)}); !hit || worse(p, sev) {
			sev = p
		}
		hit = true
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return Finding{}, "", false, d.err
	}
	if !hit {
		return Finding{}, "", false, nil
	}
	h := entryDecoder{b: header, src: string(header)}
	f.ID = h.string()
	pkg = h.string()
	f.Aliases, f.Upstream, f.Summary = h.strings(), h.strings(), h.string()
	f.Published, h.err = h.published()
	if h.err != nil {
		return Finding{}, "", false, h.err
	}
	if len(s.fixed) > 0 {
		f.FixedVersions = slices.Clone(s.fixed)
		slices.SortFunc(f.FixedVersions, func(a, b string) int { return s.compareFixed(iv.eco, a, b) })
	}
	if sev.Level == "" {
		sev.Level = SeverityUnknown
	}
	f.Severity, f.Score, f.CVSSVector = sev.Level, sev.Score, sev.Vector
	return f, pkg, true, nil
}

// compareFixed orders fixed versions as matchEntry does (in the
// ecosystem's order, by text where that fails or ties), with the
// versions parsed through the cache.
func (s *screen) compareFixed(eco, a, b string) int {
	pa := s.bounds.getString(eco, false, a)
	if pa.v != nil {
		var c int
		var err error
		if pb := s.bounds.getString(eco, false, b); pb.v != nil {
			c, err = compareParsed(pa.v, pb.v)
		} else {
			c, err = compareVersion(pa.v, b)
		}
		if err == nil && c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

// readRange reads one range into the reused buffers, with its bounds
// parsed through the cache. A range with a bound that did not parse gets
// no parsed bounds, so contains compares it as text as it always did.
func (s *screen) readRange(d *entryDecoder, eco string) vrange {
	r := vrange{Semver: d.byte() == 1}
	n := d.count()
	s.events, s.parsed = s.events[:0], s.parsed[:0]
	allParsed := true
	for range n {
		kind := internKind(d.bytes())
		raw := d.bytes()
		if d.err != nil {
			return vrange{}
		}
		pb := s.bounds.get(eco, r.Semver, raw)
		ev := event{Kind: kind, Version: pb.s}
		if !isUnbounded(ev) && pb.v == nil {
			allParsed = false
		}
		s.events = append(s.events, ev)
		s.parsed = append(s.parsed, pb.v)
	}
	r.Events = s.events
	if allParsed {
		r.bounds = s.parsed
	}
	return r
}

// internKind returns the event kinds the index uses without allocating.
func internKind(b []byte) string {
	switch string(b) {
	case evIntroduced:
		return evIntroduced
	case evFixed:
		return evFixed
	case evLastAffected:
		return evLastAffected
	case evLimit:
		return evLimit
	}
	return string(b)
}

// bytes reads a string without copying it.
func (d *entryDecoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *entryDecoder) skipStrings() {
	n := d.count()
	for range n {
		d.bytes()
	}
}

// screenError names the entry a damaged value belongs to.
func screenError(k []byte, err error) error {
	return fmt.Errorf("read index entry %q: %w", k, err)
}
