package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
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
	return wireCursor{Digest: c.Digest, Where: c.Where}.encode()
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

// errCursorOtherSort is a cursor of one sort order given to the other.
var errCursorOtherSort = fmt.Errorf("cursor of another sort order (keep ?sort= as it was): %w", errBadCursor)

// Sort orders of the list (ListQuery.Sort).
const (
	sortDigest = "digest" // the default: by digest, then upstream/repository
	sortRecent = "recent" // newest verdict first (store.DecisionsByTime)
)

// wireCursor is every cursor as a client holds it (base64url of its
// JSON): a digest-order cursor has no sort and no time, so the cursors
// of earlier versions still work.
type wireCursor struct {
	Sort   string `json:"s,omitempty"`
	At     string `json:"t,omitempty"`
	Digest string `json:"d"`
	Where  string `json:"w"`
}

func (c wireCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeWire reads a cursor from a client and checks the parts every
// cursor has; anything but what encode wrote is refused.
func decodeWire(s string) (wireCursor, error) {
	if len(s) > maxCursorLen {
		return wireCursor{}, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return wireCursor{}, errBadCursor
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c wireCursor
	if err := dec.Decode(&c); err != nil || dec.More() {
		return wireCursor{}, errBadCursor
	}
	if _, err := digest.Parse(c.Digest); err != nil {
		return wireCursor{}, errBadCursor
	}
	if up, repo, ok := strings.Cut(c.Where, "/"); !ok || up == "" || repo == "" || len(c.Where) > maxFilterLen*2 {
		return wireCursor{}, errBadCursor
	}
	return c, nil
}

// decodeCursor reads a cursor of the digest order.
func decodeCursor(s string) (listCursor, error) {
	c, err := decodeWire(s)
	switch {
	case err != nil:
		return listCursor{}, err
	case c.Sort != "":
		return listCursor{}, errCursorOtherSort
	case c.At != "":
		return listCursor{}, errBadCursor
	}
	return listCursor{Digest: c.Digest, Where: c.Where}, nil
}

// recentCursor is the position after which the next page of the
// newest-first list starts: the last verdict the previous page looked at,
// its time as RFC 3339 in UTC with nanoseconds, exactly as encode wrote
// it.
type recentCursor struct {
	At     string
	Digest string
	Where  string
}

func recentCursorOf(d store.DecisionRecord) recentCursor {
	return recentCursor{At: d.UpdatedAt.UTC().Format(time.RFC3339Nano), Digest: d.Digest, Where: d.Upstream + "/" + d.Repository}
}

func (c recentCursor) encode() string {
	return wireCursor{Sort: sortRecent, At: c.At, Digest: c.Digest, Where: c.Where}.encode()
}

// position is the cursor as the store's walk takes it (At was checked
// when decoded).
func (c recentCursor) position() store.TimeCursor {
	at, _ := time.Parse(time.RFC3339Nano, c.At)
	return store.TimeCursor{At: at, Digest: c.Digest, Where: c.Where}
}

// decodeRecentCursor reads a cursor of the newest-first order.
func decodeRecentCursor(s string) (recentCursor, error) {
	c, err := decodeWire(s)
	switch {
	case err != nil:
		return recentCursor{}, err
	case c.Sort == "":
		return recentCursor{}, errCursorOtherSort
	case c.Sort != sortRecent:
		return recentCursor{}, errBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, c.At)
	if err != nil || at.UTC().Format(time.RFC3339Nano) != c.At {
		return recentCursor{}, errBadCursor
	}
	return recentCursor{At: c.At, Digest: c.Digest, Where: c.Where}, nil
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
	sort          string        // sortDigest or sortRecent
	cursor        *listCursor   // digest order
	recent        *recentCursor // newest first
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
		Vulnerability: q.Get("vulnerability"), MinSeverity: q.Get("min_severity"), Sort: q.Get("sort"), Cursor: q.Get("cursor")}
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
		"vulnerability": q.Vulnerability, "min_severity": q.MinSeverity, "signed": q.Signed, "sort": q.Sort} {
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
	switch q.Sort {
	case "", sortDigest:
		lq.sort = sortDigest
	case sortRecent:
		lq.sort = sortRecent
	default:
		return lq, errors.New("invalid ?sort=" + quote(q.Sort) + ": want digest (the default) or recent (newest verdict first)")
	}
	switch {
	case q.Cursor == "": // the first page
	case lq.sort == sortRecent:
		c, err := decodeRecentCursor(q.Cursor)
		if err != nil {
			return lq, err
		}
		lq.recent = &c
	default:
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
