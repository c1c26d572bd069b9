package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// manyTypes is an Accept value listing n distinct media types.
func manyTypes(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("application/x-%d", i)
	}
	return strings.Join(parts, ",")
}

func TestParseAccept(t *testing.T) {
	oci := "application/vnd.oci.image.manifest.v1+json"
	docker := "application/vnd.docker.distribution.manifest.v2+json"
	tests := []struct {
		name   string
		values []string
		want   []string
		status int // 0: no error
	}{
		{name: "none", values: nil, want: defaultAccept()},
		{name: "wildcard only", values: []string{"*/*"}, want: defaultAccept()},
		{name: "order kept, parameters dropped", values: []string{docker + ", " + oci + ";q=0.9"}, want: []string{docker, oci}},
		{name: "duplicates across values", values: []string{oci + "," + docker, docker, oci + ";q=0.5"}, want: []string{oci, docker}},
		{name: "junk skipped", values: []string{",,;;,bad type," + oci}, want: []string{oci}},
		{name: "at the type limit", values: []string{manyTypes(maxAcceptTypes)}, want: strings.Split(manyTypes(maxAcceptTypes), ",")},
		{name: "duplicates do not count", values: []string{strings.Repeat(oci+",", 1000)}, want: []string{oci}},
		{name: "past the type limit", values: []string{manyTypes(maxAcceptTypes + 1)}, status: http.StatusBadRequest},
		{name: "past the byte limit", values: []string{oci, strings.Repeat(" ", maxAcceptBytes)}, status: http.StatusBadRequest},
		{name: "thousands of types (was quadratic)", values: []string{manyTypes(40_000)}, status: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAccept(tc.values)
			if tc.status != 0 {
				if err == nil || err.Status != tc.status || err.Code != "UNSUPPORTED" {
					t.Fatalf("got %d types, error %v; want status %d", len(got), err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The memo holds a bounded number of short headers: long hostile headers
// used to be kept whole as map keys (400 of 1 MB each kept 750 MB).
func TestAcceptMemoBounded(t *testing.T) {
	var m acceptMemo
	oci := "application/vnd.oci.image.manifest.v1+json"
	for i := range 3 * memoAcceptEntries {
		// Each header distinct, ~60 KiB, few types: valid, and cheap to parse.
		long := fmt.Sprintf("%s;pad=%s%d", oci, strings.Repeat("x", 60<<10), i)
		if _, err := m.lookup([]string{long}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.lookup([]string{fmt.Sprintf("application/x-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.entries) > memoAcceptEntries {
		t.Fatalf("memo holds %d entries, bound %d", len(m.entries), memoAcceptEntries)
	}
	retained := 0
	for k, v := range m.entries {
		retained += len(k) + len(v.key)
		for _, s := range v.types {
			retained += len(s)
		}
	}
	if retained > memoAcceptEntries*(2*memoAcceptBytes+64) {
		t.Fatalf("memo retains %d bytes of headers", retained)
	}
}

// Equal sets of types share a tag cache key whatever their order; different
// sets do not.
func TestAcceptKey(t *testing.T) {
	a := acceptKey([]string{"a/b", "c/d"})
	if b := acceptKey([]string{"c/d", "a/b"}); a != b {
		t.Fatalf("order changes the key: %s %s", a, b)
	}
	for _, other := range [][]string{{"a/b"}, {"a/bc/d"}, {"a/b", "c/d", "e/f"}, {"a/b\x00c/d"}} {
		if acceptKey(other) == a {
			t.Fatalf("%q has the key of [a/b c/d]", other)
		}
	}
}

func FuzzParseAccept(f *testing.F) {
	f.Add("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9", "")
	f.Add("*/*", "text/plain;charset=\"utf-8\"")
	f.Add(manyTypes(200), "")
	f.Add(",,,;=,", "a/b,a/b,A/B")
	f.Fuzz(func(t *testing.T, a, b string) {
		got, err := parseAccept([]string{a, b})
		if err != nil {
			if err.Status != http.StatusBadRequest {
				t.Fatalf("error status %d", err.Status)
			}
			return
		}
		if len(got) == 0 || len(got) > maxAcceptTypes {
			t.Fatalf("%d types", len(got))
		}
		seen := map[string]bool{}
		for _, mt := range got {
			if seen[mt] || mt == "" || mt == "*/*" {
				t.Fatalf("type %q in %q", mt, got)
			}
			seen[mt] = true
		}
	})
}
