package upstream

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		in   []string
		want []challenge
	}{
		{[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`},
			[]challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}}}},
		{[]string{`Basic realm="Registry Realm"`}, []challenge{{"basic", map[string]string{"realm": "Registry Realm"}}}},
		{[]string{`bearer realm=https://x/token, service=x`}, []challenge{{"bearer", map[string]string{"realm": "https://x/token", "service": "x"}}}},
		{[]string{`Bearer realm="a\"b"`}, []challenge{{"bearer", map[string]string{"realm": `a"b`}}}},
		{[]string{`Basic realm="r", Bearer realm="t"`}, []challenge{{"basic", map[string]string{"realm": "r"}}, {"bearer", map[string]string{"realm": "t"}}}},
		{[]string{`Bearer realm="unterminated`}, []challenge{{"bearer", map[string]string{"realm": "unterminated"}}}},
		{[]string{``, `,,,`, `=,`}, nil},
	}
	for _, tc := range tests {
		got, err := parseChallenges(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChallenges(%q) = %+v, %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	f.Add(`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`)
	f.Add(`Basic realm="x", Bearer realm=y`)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseChallenges([]string{s})
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("parseChallenges(%q): %v", s, err)
			}
			return
		}
		if len(got) > maxChallenges {
			t.Fatalf("%d challenges from %q", len(got), s)
		}
		for _, c := range got {
			if len(c.params) > maxChallengeParams {
				t.Fatalf("%d params from %q", len(c.params), s)
			}
			if c.scheme == "" || c.params == nil {
				t.Fatalf("malformed challenge %+v from %q", c, s)
			}
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"junk":                          0,
		"999999999":                     24 * time.Hour,
		"Fri, 27 Nov 2026 08:00:10 GMT": 10 * time.Second,
		"Fri, 27 Nov 2026 07:00:00 GMT": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNextLink(t *testing.T) {
	tests := map[string]string{
		`</v2/r/tags/list?n=2&last=b>; rel="next"`:             "/v2/r/tags/list?n=2&last=b",
		`<https://x/a>; rel="prev", <https://x/b>; rel="next"`: "https://x/b",
		``:                "",
		`<x>; rel="prev"`: "",
	}
	for in, want := range tests {
		if got := nextLink(in); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}
