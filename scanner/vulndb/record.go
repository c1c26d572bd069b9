package vulndb

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// osvRecord is the part of an OSV record (https://ossf.github.io/osv-schema/)
// that matching and reporting use; everything else is dropped at import.
type osvRecord struct {
	ID               string          `json:"id"`
	Withdrawn        string          `json:"withdrawn"`
	Aliases          []string        `json:"aliases"`
	Upstream         []string        `json:"upstream"`
	Summary          string          `json:"summary"`
	Details          string          `json:"details"`
	Published        string          `json:"published"` // RFC 3339; kept as text so a bad date does not lose the record
	Severity         []osvSeverity   `json:"severity"`
	Affected         []osvAffected   `json:"affected"`
	DatabaseSpecific json.RawMessage `json:"database_specific"`
}

type osvSeverity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

type osvAffected struct {
	Package struct {
		Ecosystem string `json:"ecosystem"`
		Name      string `json:"name"`
	} `json:"package"`
	Severity          []osvSeverity   `json:"severity"`
	Ranges            []osvRange      `json:"ranges"`
	Versions          []string        `json:"versions"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific"`
	DatabaseSpecific  json.RawMessage `json:"database_specific"`
}

type osvRange struct {
	Type   string     `json:"type"`
	Events []osvEvent `json:"events"`
}

type osvEvent struct {
	Introduced   string `json:"introduced"`
	Fixed        string `json:"fixed"`
	LastAffected string `json:"last_affected"`
	Limit        string `json:"limit"`
}

// entry is what the index keeps of one record for one package: enough to
// match and to report, nothing more.
type entry struct {
	ID       string   `json:"id"`
	Package  string   `json:"pk"` // as the record spells it (a source package for Debian/Alpine)
	Aliases  []string `json:"al,omitempty"`
	Upstream []string `json:"up,omitempty"`
	Summary  string   `json:"su,omitempty"`
	// Published lets a policy give images time after a disclosure (grace).
	Published time.Time `json:"pu,omitzero"`
	// Parts are the record's affected entries for this package; GHSA
	// records list one package twice for two version lines.
	Parts []part `json:"p"`
}

type part struct {
	Ranges []vrange `json:"r,omitempty"`
	// Versions are the explicitly listed versions not already inside
	// Ranges (osv.dev enumerates every version of a range; keeping those
	// would multiply the index for nothing).
	Versions []string `json:"v,omitempty"`
	Severity severity `json:"s"`
}

// pkgEntry is an entry with the index key it is stored under.
type pkgEntry struct {
	Ecosystem string // normalized
	Name      string // normalized
	Entry     entry
	// Encoded is Entry as JSON, hashed for the DB version (the index
	// stores the binary form, encodeEntry).
	Encoded []byte
}

// record is one parsed, checked record ready for the index.
type record struct {
	ID       string
	Entries  []pkgEntry // sorted by ecosystem, then name
	Hash     [32]byte   // of what matching uses, for the DB version
	Withdraw bool       // withdrawn upstream: remove, do not match
}

// maxIDLen bounds ids, which become bbolt keys (and so must stay well under
// its key limit).
const maxIDLen = 512

// maxSummary bounds the summary kept for reports when a record has only
// details (Debian and Alpine records are pages of prose).
const maxSummary = 200

// parseRecord decodes and checks one OSV record. An error says what is wrong
// with it; the caller names the file.
func parseRecord(data []byte) (*record, error) {
	var raw osvRecord
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("invalid OSV JSON: %w", err)
	}
	return convertRecord(&raw)
}

func convertRecord(raw *osvRecord) (*record, error) {
	if err := checkKeyPart("id", raw.ID); err != nil {
		return nil, err
	}
	if len(raw.ID) > maxIDLen {
		return nil, fmt.Errorf("id is %d bytes long, more than %d", len(raw.ID), maxIDLen)
	}
	rec := &record{ID: raw.ID}
	if raw.Withdrawn != "" {
		rec.Withdraw = true
		return rec, nil
	}
	if len(raw.Affected) == 0 {
		return nil, fmt.Errorf("record %s has no affected packages", raw.ID)
	}
	// Record-wide fields, the same in every entry: worked out once.
	summary, published := summaryOf(raw), publishedOf(raw)
	byKey := map[string]int{}
	for i := range raw.Affected {
		aff := &raw.Affected[i]
		eco, name := aff.Package.Ecosystem, aff.Package.Name
		if err := checkKeyPart("affected package ecosystem", eco); err != nil {
			return nil, fmt.Errorf("record %s, affected[%d]: %w", raw.ID, i, err)
		}
		if err := checkKeyPart("affected package name", name); err != nil {
			return nil, fmt.Errorf("record %s, affected[%d]: %w", raw.ID, i, err)
		}
		neco := normalizeEcosystem(eco)
		p, err := convertAffected(raw, aff, neco)
		if err != nil {
			return nil, fmt.Errorf("record %s, affected[%d] (%s %s): %w", raw.ID, i, eco, name, err)
		}
		if len(p.Ranges) == 0 && len(p.Versions) == 0 {
			continue // only GIT ranges: nothing we can match on
		}
		nname := normalizeName(neco, name)
		key := neco + "\x00" + nname
		if j, ok := byKey[key]; ok {
			rec.Entries[j].Entry.Parts = append(rec.Entries[j].Entry.Parts, p)
			continue
		}
		byKey[key] = len(rec.Entries)
		rec.Entries = append(rec.Entries, pkgEntry{
			Ecosystem: neco,
			Name:      nname,
			Entry: entry{
				ID:        raw.ID,
				Package:   name,
				Aliases:   raw.Aliases,
				Upstream:  raw.Upstream,
				Summary:   summary,
				Parts:     []part{p},
				Published: published,
			},
		})
	}
	slices.SortFunc(rec.Entries, func(a, b pkgEntry) int {
		if c := strings.Compare(a.Ecosystem, b.Ecosystem); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	h := sha256.New()
	for i := range rec.Entries {
		e := &rec.Entries[i]
		b, err := json.Marshal(e.Entry)
		if err != nil {
			return nil, fmt.Errorf("record %s: encode: %w", raw.ID, err)
		}
		e.Encoded = b
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", e.Ecosystem, e.Name, len(b))
		h.Write(b)
	}
	copy(rec.Hash[:], h.Sum(nil))
	return rec, nil
}

// convertAffected turns one affected entry into a part: ranges checked and
// sorted, versions already inside a range dropped, severity derived. eco is
// the entry's normalized ecosystem, which the caller needs too.
func convertAffected(rec *osvRecord, aff *osvAffected, eco string) (part, error) {
	p := part{Severity: deriveSeverity(rec, aff)}
	for i, r := range aff.Ranges {
		switch r.Type {
		case "ECOSYSTEM", "SEMVER":
		case "GIT":
			continue // commit ranges need the source tree; osv.dev lists their versions
		default:
			continue // unknown range types are ignored, as the schema asks
		}
		vr, err := newRange(r.Type, r.Events, eco)
		if err != nil {
			return part{}, fmt.Errorf("ranges[%d] (%s): %w", i, r.Type, err)
		}
		p.Ranges = append(p.Ranges, vr)
	}
	for _, v := range aff.Versions {
		if v == "" || slices.Contains(p.Versions, v) || inRanges(p.Ranges, v, eco) {
			continue
		}
		p.Versions = append(p.Versions, v)
	}
	return p, nil
}

// inRanges tells whether version v is inside one of the ranges. v is
// parsed at most once per kind of range, as matching does.
func inRanges(ranges []vrange, v, eco string) bool {
	iv := parsedVersions{eco: eco, v: v}
	for _, r := range ranges {
		if ok, _ := r.contains(iv.get(r.Semver)); ok {
			return true
		}
	}
	return false
}

// summaryOf gives a one-line summary: the record's, else the first line of
// its details, cut at maxSummary runes.
func summaryOf(rec *osvRecord) string {
	s := strings.TrimSpace(rec.Summary)
	if s == "" {
		s, _, _ = strings.Cut(strings.TrimSpace(rec.Details), "\n")
	}
	if utf8.RuneCountInString(s) <= maxSummary {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:maxSummary-1])) + "…"
}

// checkKeyPart rejects strings that cannot be part of an index key: empty,
// or holding the NUL byte that separates key parts.
func checkKeyPart(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is missing", what)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%s %q contains a NUL byte", what, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	return nil
}

// publishedOf reads the record's publication time; zero when absent or
// malformed (a policy then gives no grace).
func publishedOf(rec *osvRecord) time.Time {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(rec.Published))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
