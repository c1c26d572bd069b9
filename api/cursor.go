package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

const (
	defaultLimit = 100
	maxLimit     = 1000
	// maxCursorLen bounds the cursor a client sends back.
	maxCursorLen = 1024
	// maxFilterLen bounds each filter value.
	maxFilterLen = 256
)

// listCursor is the position after which the next page starts: the last
// (digest, upstream/repository) the previous page looked at. Clients see
// it only as an opaque string.
type listCursor struct {
	Digest string `json:"d"`
	Where  string `json:"w"`
}

func (c listCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// after reports whether (d, where) comes after the cursor in the list's
// order: by digest, then by upstream/repository.
func (c listCursor) after(d, where string) bool {
	if d != c.Digest {
		return d > c.Digest
	}
	return where > c.Where
}

var errBadCursor = errors.New("invalid cursor: pass back next_cursor of the previous page unchanged")

// decodeCursor reads a cursor from a client; anything but what encode
// wrote is refused.
func decodeCursor(s string) (listCursor, error) {
	if len(s) > maxCursorLen {
		return listCursor{}, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return listCursor{}, errBadCursor
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c listCursor
	if err := dec.Decode(&c); err != nil || dec.More() {
		return listCursor{}, errBadCursor
	}
	if _, err := digest.Parse(c.Digest); err != nil {
		return listCursor{}, errBadCursor
	}
	if up, repo, ok := strings.Cut(c.Where, "/"); !ok || up == "" || repo == "" || len(c.Where) > maxFilterLen*2 {
		return listCursor{}, errBadCursor
	}
	return c, nil
}

// listQuery is a ListQuery checked: what the list walk filters on.
type listQuery struct {
	verdict       string
	upstream      string
	repository    string // a path.Match pattern on the repository path
	vulnerability string
	minSeverity   string
	signed        string // signedYes, signedNo or ""
	limit         int
	cursor        *listCursor
}

// Values of ListQuery.Signed.
const (
	signedYes = "yes"
	signedNo  = "no"
)

// parseListQuery reads and checks the query of GET /api/v1/images.
func parseListQuery(q url.Values) (listQuery, error) {
	lq, err := listQueryFrom(q)
	if err != nil {
		return listQuery{limit: defaultLimit}, err
	}
	return lq.compile()
}

// listQueryFrom reads the list's parameters from a URL query, each at most
// once.
func listQueryFrom(q url.Values) (ListQuery, error) {
	for key, vals := range q {
		if len(vals) > 1 {
			return ListQuery{}, errors.New("?" + key + "= given more than once")
		}
		if len(vals[0]) > maxFilterLen && key != "cursor" {
			return ListQuery{}, errors.New("?" + key + "= is longer than " + strconv.Itoa(maxFilterLen) + " bytes")
		}
	}
	lq := ListQuery{Verdict: q.Get("verdict"), Upstream: q.Get("upstream"), Repository: q.Get("repository"),
		Vulnerability: q.Get("vulnerability"), MinSeverity: q.Get("min_severity"), Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return ListQuery{}, invalidLimit(s)
		}
		lq.Limit = n
	}
	return lq, nil
}

func invalidLimit(s string) error {
	return errors.New("invalid ?limit=" + quote(s) + ": want 1 to " + strconv.Itoa(maxLimit))
}

// compile checks every filter; an unknown value is an error, never a
// filter that silently matches nothing.
func (q ListQuery) compile() (listQuery, error) {
	lq := listQuery{limit: defaultLimit}
	for key, v := range map[string]string{"verdict": q.Verdict, "upstream": q.Upstream, "repository": q.Repository,
		"vulnerability": q.Vulnerability, "min_severity": q.MinSeverity, "signed": q.Signed} {
		if len(v) > maxFilterLen {
			return lq, errors.New("?" + key + "= is longer than " + strconv.Itoa(maxFilterLen) + " bytes")
		}
	}
	lq.verdict = q.Verdict
	switch lq.verdict {
	case "", string(policy.Allow), string(policy.Warn), string(policy.Block), verdictPending:
	default:
		return lq, errors.New("invalid ?verdict=" + quote(lq.verdict) + ": want allow, warn, block or pending")
	}
	lq.upstream = strings.ToLower(q.Upstream)
	lq.repository = q.Repository
	if lq.repository != "" {
		if _, err := path.Match(lq.repository, ""); err != nil {
			return lq, errors.New("invalid ?repository=" + quote(lq.repository) + ": want a glob like library/* (path.Match syntax)")
		}
	}
	lq.vulnerability = q.Vulnerability
	if lq.vulnerability != "" && !validVulnID(lq.vulnerability) {
		return lq, errors.New("invalid ?vulnerability=" + quote(lq.vulnerability) + ": want an id like CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx")
	}
	lq.minSeverity = strings.ToUpper(q.MinSeverity)
	switch lq.minSeverity {
	case "", vulndb.SeverityCritical, vulndb.SeverityHigh, vulndb.SeverityMedium, vulndb.SeverityLow, vulndb.SeverityUnknown:
	default:
		return lq, errors.New("invalid ?min_severity=" + quote(q.MinSeverity) + ": want CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN")
	}
	switch q.Signed {
	case "", signedYes, signedNo:
		lq.signed = q.Signed
	default:
		return lq, errors.New("invalid ?signed=" + quote(q.Signed) + ": want yes or no")
	}
	if q.Limit != 0 {
		if q.Limit < 1 || q.Limit > maxLimit {
			return lq, invalidLimit(strconv.Itoa(q.Limit))
		}
		lq.limit = q.Limit
	}
	if q.Cursor != "" { // empty: the first page
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return lq, err
		}
		lq.cursor = &c
	}
	return lq, nil
}

// validVulnID accepts the characters OSV ids use.
func validVulnID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	return strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == ""
}
