package auth

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func basicHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestParseBasic(t *testing.T) {
	for _, tc := range []struct {
		name, header   string
		user, password string
		err            error
	}{
		{"plain", basicHeader("ci-bot", "s3cret"), "ci-bot", "s3cret", nil},
		{"scheme in any case", "bAsIc " + base64.StdEncoding.EncodeToString([]byte("u:p")), "u", "p", nil},
		{"colon in the password", basicHeader("u", "a:b:c"), "u", "a:b:c", nil},
		{"empty password", basicHeader("u", ""), "u", "", nil},
		{"no credentials at all", basicHeader("", ""), "", "", errEmptyBasic},
		{"empty user", basicHeader("", "p"), "", "", errMalformedBasic},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("user")), "", "", errMalformedBasic},
		{"not base64", "Basic !!!", "", "", errMalformedBasic},
		{"control character", basicHeader("u\n", "p"), "", "", errMalformedBasic},
		{"bearer", "Bearer abc.def", "", "", errNotBasic},
		{"scheme only", "Basic", "", "", errNotBasic},
		{"too long", "Basic " + strings.Repeat("A", maxAuthorizationLength), "", "", errAuthorizationTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, password, err := parseBasic(tc.header)
			if !errors.Is(err, tc.err) || user != tc.user || password != tc.password {
				t.Fatalf("parseBasic(%q) = %q, %q, %v; want %q, %q, %v", tc.header, user, password, err, tc.user, tc.password, tc.err)
			}
		})
	}
}

// FuzzParseBasic: never panics, stays within its bound, and whatever it
// accepts net/http's own parser reads the same way.
func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{basicHeader("ci-bot", "s3cret"), basicHeader("", ""), "Basic !!", "Bearer x", "basic Og==", "Basic  dTpw "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		user, password, err := parseBasic(header)
		if err != nil {
			return
		}
		if len(header) > maxAuthorizationLength || user == "" || strings.Contains(user, ":") {
			t.Fatalf("accepted %q as %q:%q", header, user, password)
		}
		r := &http.Request{Header: http.Header{"Authorization": {header}}}
		if u, p, ok := r.BasicAuth(); ok && (u != user || p != password) {
			t.Fatalf("%q: we read %q:%q, net/http %q:%q", header, user, password, u, p)
		}
	})
}
