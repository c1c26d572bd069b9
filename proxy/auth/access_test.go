package auth

import (
	"strings"
	"testing"
)

func TestMatchPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"acme/app", "acme/app", true},
		{"acme/app", "acme/app2", false},
		{"acme/*", "acme/app", true},
		{"acme/*", "acme/team/app", false}, // * is one segment
		{"acme/*", "acme", false},
		{"acme/**", "acme/app", true},
		{"acme/**", "acme/team/app", true},
		{"acme/**", "acme", true}, // ** may be no segment at all
		{"acme/**", "acmeco/app", false},
		{"acme/**", "other/acme/app", false},
		{"**/app", "acme/team/app", true},
		{"**/app", "app", true},
		{"**", "anything/at/all", true},
		{"acme/**/app", "acme/app", true},
		{"acme/**/app", "acme/a/b/app", true},
		{"acme/**/app", "acme/a/b/apps", false},
		{"ci-*", "ci-bot", true},
		{"ci-*", "ci-", true},
		{"ci-*", "cd-bot", false},
		{"*-bot", "ci-bot", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*", "", true},
		{"library/*", "library/alpine", true},
	} {
		if got := matchPath(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchPath(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestMatchPathIsBounded: many stars and a long name finish (the
// dynamic programme does not backtrack exponentially).
func TestMatchPathIsBounded(t *testing.T) {
	pattern := strings.Repeat("**/a*a*a*a/", 20) + "b"
	name := strings.Repeat("aaaaaaaaaa/", 23) + "c"
	if matchPath(pattern, name) {
		t.Fatal("matched a name that does not end in b")
	}
}

func TestCheckRules(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		err  string // substring; empty: valid
	}{
		{Rule{Users: []string{"ci-*"}, Upstreams: []string{"ghcr.io"}, Repositories: []string{"acme/**"}}, ""},
		{Rule{}, ""},
		{Rule{Repositories: []string{""}}, "auth.access[0].repositories: empty pattern"},
		{Rule{Repositories: []string{"acme/**x"}}, "stands alone"},
		{Rule{Repositories: []string{"acme//x"}}, "empty path segment"},
		{Rule{Users: []string{" ci"}}, "auth.access[0].users: pattern \" ci\" has leading"},
		{Rule{Upstreams: []string{strings.Repeat("a", 256)}}, "longer than 255"},
	} {
		err := checkRules([]Rule{tc.rule})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.rule, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want one containing %q", tc.rule, err, tc.err)
		}
	}
}

func TestFirstMatch(t *testing.T) {
	rules := []Rule{
		{Users: []string{"ci-*"}, Upstreams: []string{"ghcr.io"}, Repositories: []string{"acme/**"}},
		{Users: []string{"admin"}},
		{Users: []string{Anonymous}, Upstreams: []string{"docker.io"}, Repositories: []string{"library/*"}},
		{Upstreams: []string{"quay.io"}, Repositories: []string{"public/*"}}, // anyone, anonymous included
	}
	for _, tc := range []struct {
		user, upstream, repo string
		want                 int
	}{
		{"ci-bot", "ghcr.io", "acme/app", 0},
		{"ci-bot", "GHCR.io", "acme/team/app", 0}, // registry names are case-insensitive
		{"ci-bot", "ghcr.io", "other/x", -1},
		{"ci-bot", "docker.io", "acme/app", -1},
		{"admin", "docker.io", "anything/x", 1},
		{Anonymous, "docker.io", "library/alpine", 2},
		{Anonymous, "docker.io", "acme/app", -1},
		{"ci-bot", "docker.io", "library/alpine", -1},
		{"someone", "quay.io", "public/x", 3},
		{Anonymous, "quay.io", "public/x", 3},
		{"someone", "quay.io", "private/x", -1},
	} {
		if got := firstMatch(rules, tc.user, tc.upstream, tc.repo); got != tc.want {
			t.Errorf("firstMatch(%s, %s, %s) = %d, want %d", tc.user, tc.upstream, tc.repo, got, tc.want)
		}
	}
}
