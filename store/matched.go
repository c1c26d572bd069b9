package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// MatchMark says that the scan record of Digest, at Revision, was matched
// again against database DBVersion and found exactly the findings (and
// database warning) it holds: a re-match that changes nothing records this
// instead of rewriting the whole record, inventory included.
type MatchMark struct {
	Digest    string `json:"-"`
	Revision  uint64 `json:"revision"`
	DBVersion string `json:"dbVersion"`
}

// MaxMatchMarks bounds the marks one MarkMatched call writes (one bbolt
// commit, one Redis pipeline).
const MaxMatchMarks = 512

// MatchMarker is the capability of a ScanStore to keep match marks. Reads
// (Scan, Scans) apply a record's mark while the record is still at the
// marked revision: DBVersion then reads as the marked version and
// FindingsDBVersion as the version stored with the findings. Any write of
// the record (PutScan) advances its revision and so ends the mark.
type MatchMarker interface {
	// MarkMatched writes marks (at most MaxMatchMarks); a mark of a record
	// that is gone or at another revision is dropped (another writer came
	// first; it is matched again on the next re-match).
	MarkMatched(ctx context.Context, marks []MatchMark) error
}

// checkMarks refuses a batch the stores would not write whole.
func checkMarks(marks []MatchMark) error {
	if len(marks) > MaxMatchMarks {
		return fmt.Errorf("mark %d matched records: more than %d at once", len(marks), MaxMatchMarks)
	}
	for _, m := range marks {
		if m.Digest == "" || m.Revision == 0 || m.DBVersion == "" {
			return fmt.Errorf("mark matched record %q: digest, revision and database version are required", m.Digest)
		}
	}
	return nil
}

// applyMark puts mark on r when it still stands for r: same revision, a
// finished result, another database version.
func applyMark(r *ScanRecord, mark MatchMark) {
	if mark.Revision != r.Revision || r.State != ScanDone || mark.DBVersion == "" || mark.DBVersion == r.DBVersion {
		return
	}
	r.FindingsDBVersion = r.DBVersion
	r.DBVersion = mark.DBVersion
}

// decodeMark reads a stored mark (bbolt: JSON). A mark that does not
// decode is ignored, never an error: it only spares a re-match work, and
// without it the record reads as it was written.
func decodeMark(raw []byte) MatchMark {
	var m MatchMark
	if json.Unmarshal(raw, &m) != nil {
		return MatchMark{}
	}
	return m
}

// Redis keeps a mark as one field of the record's hash:
// "<revision> <db version>".
func encodeRedisMark(m MatchMark) string {
	return strconv.FormatUint(m.Revision, 10) + " " + m.DBVersion
}

func decodeRedisMark(s string) MatchMark {
	rev, version, ok := strings.Cut(s, " ")
	n, err := strconv.ParseUint(rev, 10, 64)
	if !ok || err != nil {
		return MatchMark{}
	}
	return MatchMark{Revision: n, DBVersion: version}
}
