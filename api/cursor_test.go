package api

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"
)

const digestA = "sha256:aa00000000000000000000000000000000000000000000000000000000000000"

func TestDecodeCursor(t *testing.T) {
	valid := listCursor{Digest: digestA, Where: "docker.io/library/alpine"}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, cursor string
		ok           bool
	}{
		{"what encode wrote", valid.encode(), true},
		{"empty", "", false},
		{"not base64", "!!!", false},
		{"padded base64", base64.URLEncoding.EncodeToString([]byte(`{"d":"` + digestA + `","w":"a/b"}`)), false},
		{"not JSON", b64("hello"), false},
		{"bad digest", b64(`{"d":"sha256:xyz","w":"a/b"}`), false},
		{"no repository", b64(`{"d":"` + digestA + `","w":"docker.io"}`), false},
		{"empty upstream", b64(`{"d":"` + digestA + `","w":"/x"}`), false},
		{"unknown field", b64(`{"d":"` + digestA + `","w":"a/b","x":1}`), false},
		{"two values", b64(`{"d":"` + digestA + `","w":"a/b"}{}`), false},
		{"too long", strings.Repeat("A", maxCursorLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeCursor(tc.cursor)
			if (err == nil) != tc.ok {
				t.Fatalf("decode %q: %+v, %v", tc.cursor, c, err)
			}
			if tc.ok && c != valid {
				t.Fatalf("decoded %+v, want %+v", c, valid)
			}
		})
	}
}

func TestParseListQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		ok    bool
		says  string
	}{
		{"", true, ""},
		{"verdict=block&upstream=Docker.io&repository=library/*&vulnerability=CVE-2023-42366&min_severity=high&limit=1000", true, ""},
		{"verdict=maybe", false, "verdict"},
		{"repository=[", false, "glob"},
		{"vulnerability=CVE%20x", false, "vulnerability"},
		{"min_severity=severe", false, "min_severity"},
		{"limit=0", false, "limit"},
		{"limit=1001", false, "limit"},
		{"limit=99999999999999999999", false, "limit"},
		{"limit=ten", false, "limit"},
		{"limit=1&limit=2", false, "more than once"},
		{"cursor=abc", false, "cursor"},
		{"upstream=" + strings.Repeat("x", maxFilterLen+1), false, "longer"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			lq, err := parseListQuery(q)
			if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("%+v, %v", lq, err)
			}
		})
	}
	q, _ := url.ParseQuery("upstream=Docker.io&min_severity=high")
	if lq, _ := parseListQuery(q); lq.upstream != "docker.io" || lq.minSeverity != "HIGH" || lq.limit != defaultLimit {
		t.Fatalf("%+v", lq)
	}
}

func TestParseImageQuery(t *testing.T) {
	for _, tc := range []struct {
		query, platform string
		wait            time.Duration
		ok              bool
	}{
		{"ref=alpine:3", "linux/amd64", defaultWait, true},
		{"ref=alpine:3&platform=linux/arm/v7&evaluate=true&wait=2m", "linux/arm/v7", 2 * time.Minute, true},
		{"ref=alpine:3&wait=0s", "linux/amd64", 0, true},
		{"ref=", "", 0, false},
		{"ref=" + strings.Repeat("a", 1025), "", 0, false},
		{"ref=a&platform=linux", "", 0, false},
		{"ref=a&platform=linux/amd64/v1/x", "", 0, false},
		{"ref=a&platform=Linux/AMD64", "", 0, false},
		{"ref=a&platform=linux//", "", 0, false},
		{"ref=a&platform=linux/amd64%0a", "", 0, false},
		{"ref=a&evaluate=yes", "", 0, false},
		{"ref=a&wait=6m", "", 0, false},
		{"ref=a&wait=-1s", "", 0, false},
		{"ref=a&wait=soon", "", 0, false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			iq, err := parseImageQuery(q)
			if (err == nil) != tc.ok {
				t.Fatalf("%+v, %v", iq, err)
			}
			if tc.ok && (platformString(&iq.platform) != tc.platform || iq.wait != tc.wait) {
				t.Fatalf("%+v", iq)
			}
		})
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(listCursor{Digest: digestA, Where: "docker.io/library/alpine"}.encode())
	f.Add("")
	f.Add("eyJkIjoxfQ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		// What decodes is a cursor encode could have written.
		again, err := decodeCursor(c.encode())
		if err != nil || again != c {
			t.Fatalf("%q decodes to %+v, which does not survive encoding: %+v, %v", s, c, again, err)
		}
	})
}

func FuzzParseQueries(f *testing.F) {
	f.Add("verdict=block&repository=library/*&limit=5&cursor=" + listCursor{Digest: digestA, Where: "a/b"}.encode())
	f.Add("ref=alpine&platform=linux/arm64/v8&evaluate=1&wait=10s")
	f.Add("min_severity=LOW&vulnerability=GHSA-1234-abcd-efgh")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if lq, err := parseListQuery(q); err == nil {
			if lq.limit < 1 || lq.limit > maxLimit {
				t.Fatalf("limit %d accepted", lq.limit)
			}
		}
		if iq, err := parseImageQuery(q); err == nil {
			if iq.wait < 0 || iq.wait > maxWait || iq.ref == "" {
				t.Fatalf("accepted %+v", iq)
			}
		}
	})
}
