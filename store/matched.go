package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// MatchMark is the outcome of matching the stored inventory of Digest, at
// Revision, again against database DBVersion, written apart from the
// record so the record (inventory included, tens of kilobytes) is not
// rewritten: with Result nil the match found exactly the findings and
// database warning the record holds; otherwise Result is what it found.
type MatchMark struct {
	Digest    string
	Revision  uint64
	DBVersion string
	Result    *MatchResult
}

// MatchResult is a new match result of a stored inventory.
type MatchResult struct {
	Findings  []vulndb.Finding `json:"findings"`
	DBWarning string           `json:"dbWarning,omitempty"`
	UpdatedAt time.Time        `json:"updatedAt"`
}

// MaxMatchMarks bounds the marks one MarkMatched call writes (one bbolt
// commit, one Redis pipeline).
const MaxMatchMarks = 512

// MatchMarker is the capability of a ScanStore to keep match marks. Reads
// (Scan, Scans, ScanFindings) apply a record's marks while the record is
// still at the marked revision: the last result written (findings,
// warning, UpdatedAt, DBVersion), then the last same-findings mark
// (DBVersion, with FindingsDBVersion the version the findings came from).
// Writing a result ends the same-findings mark before it. Any write of the
// record (PutScan) advances its revision and so ends both; the writer read
// them applied, so it writes them into the record.
type MatchMarker interface {
	// MarkMatched writes marks (at most MaxMatchMarks) and returns those it
	// dropped because their record is gone or at another revision (another
	// writer came first): the caller matches those again.
	MarkMatched(ctx context.Context, marks []MatchMark) (dropped []MatchMark, err error)
}

// checkMarks refuses a batch the stores would not write whole.
func checkMarks(marks []MatchMark) error {
	if len(marks) > MaxMatchMarks {
		return fmt.Errorf("mark %d matched records: more than %d at once", len(marks), MaxMatchMarks)
	}
	for _, m := range marks {
		if m.Digest == "" || m.Revision == 0 || m.DBVersion == "" || (m.Result != nil && m.Result.Findings == nil) {
			return fmt.Errorf("mark matched record %q: digest, revision, database version (and a result's findings) are required", m.Digest)
		}
	}
	return nil
}

// storedMark is a mark as the stores keep it (JSON).
type storedMark struct {
	Revision  uint64 `json:"revision"`
	DBVersion string `json:"dbVersion"`
	*MatchResult
}

func encodeMark(m MatchMark) ([]byte, error) {
	return json.Marshal(storedMark{Revision: m.Revision, DBVersion: m.DBVersion, MatchResult: m.Result})
}

// decodeMark reads a stored mark. One that does not decode is ignored,
// never an error: the record then reads as it was written, and the next
// re-match matches it again.
func decodeMark(raw []byte) (storedMark, bool) {
	var m storedMark
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m.Revision == 0 || m.DBVersion == "" {
		return storedMark{}, false
	}
	return m, true
}

// applyMarks puts the stored result and same-findings mark (raw JSON, nil:
// none) on a record at revision, read into findings and the other fields.
func applyMarks(revision uint64, state string, dbVersion, findingsDBVersion, dbWarning *string, updatedAt *time.Time, findings *[]vulndb.Finding, result, same []byte) {
	if state != ScanDone {
		return
	}
	if m, ok := decodeMark(result); ok && m.Revision == revision && m.MatchResult != nil && m.Findings != nil {
		*findings, *dbWarning, *updatedAt, *dbVersion = m.Findings, m.DBWarning, m.UpdatedAt, m.DBVersion
	}
	if m, ok := decodeMark(same); ok && m.Revision == revision && m.DBVersion != *dbVersion {
		*findingsDBVersion, *dbVersion = *dbVersion, m.DBVersion
	}
}

// applyRecordMarks is applyMarks on a whole record.
func applyRecordMarks(r *ScanRecord, result, same []byte) {
	applyMarks(r.Revision, r.State, &r.DBVersion, &r.FindingsDBVersion, &r.DBWarning, &r.UpdatedAt, &r.Findings, result, same)
}

// applyFindingsMarks is applyMarks on the part ScanFindings reads.
func applyFindingsMarks(f *ScanFindings, revision uint64, result []byte) {
	var version, from, warning string
	var at time.Time
	applyMarks(revision, f.State, &version, &from, &warning, &at, &f.Findings, result, nil)
}

// Redis keeps a mark in a field of the record's hash as
// "<revision> <JSON>", so a script checks the revision without JSON.
func encodeRedisMark(m MatchMark) (string, error) {
	raw, err := encodeMark(m)
	return strconv.FormatUint(m.Revision, 10) + " " + string(raw), err
}

func redisMarkJSON(field any) []byte {
	s, ok := field.(string)
	if !ok {
		return nil
	}
	_, raw, _ := strings.Cut(s, " ")
	return []byte(raw)
}
