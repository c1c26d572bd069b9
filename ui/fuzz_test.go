package ui

import (
	"net/url"
	"testing"
	"time"
)

// A session cookie comes from the browser: parsing never panics, and only
// a value this key signed (as encodeSession writes it) is taken.
func FuzzParseSession(f *testing.F) {
	keys, err := newSessionKeys([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	good := keys.encodeSession(session{Name: "ci", Scopes: []string{"read", "admin"}, Expires: now.Add(time.Hour).Unix(), Token: "0123456789abcdef"})
	for _, seed := range []string{good, "", ".", "a.b", good + "x", good[:len(good)/2], "eyJuIjoiYSJ9.", "%%%.%%%"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := keys.parseSession(v, now)
		if err != nil {
			return
		}
		if keys.encodeSession(s) != v {
			t.Fatalf("accepted %q, which the server did not write", v)
		}
		if s.Name == "" || len(s.Scopes) == 0 || !now.Before(time.Unix(s.Expires, 0)) {
			t.Fatalf("accepted a session that should not be: %+v", s)
		}
	})
}

// The images list's query comes from the browser: parsing never panics and
// keeps the page size within bounds.
func FuzzImageFilters(f *testing.F) {
	for _, seed := range []string{"", "verdict=block&limit=10", "limit=0", "limit=201", "limit=-1", "sort=size", "sort=digest&signed=yes", "sort=recent&limit=3",
		"repository=library%2F*&cursor=abc", "a=1&a=2", "limit=99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		filters, lq, err := parseImageFilters(q)
		if err != nil {
			return
		}
		if filters.Limit < 1 || filters.Limit > maxPageSize || lq.Limit != filters.Limit {
			t.Fatalf("limit %d / %d from %q", filters.Limit, lq.Limit, raw)
		}
		if filters.Sort != "" && filters.Sort != "digest" && filters.Sort != "recent" {
			t.Fatalf("sort %q accepted", filters.Sort)
		}
		if _, _, err := parseImageFilters(filters.query()); err != nil {
			t.Fatalf("the next page's query %q does not parse: %v", filters.query().Encode(), err)
		}
	})
}
