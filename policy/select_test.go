package policy

import "testing"

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"acme/api", "acme/api", true},
		{"acme/api", "acme/api2", false},
		{"acme/*", "acme/api", true},
		{"acme/*", "acme/team/api", false}, // * stays in its segment
		{"acme/**", "acme/team/api", true},
		{"acme/**", "acme", false},
		{"acme/*-api", "acme/billing-api", true},
		{"acme/*-api", "acme/billing-web", false},
		{"**/api", "acme/team/api", true},
		{"*/api", "acme/team/api", false},
		{"acme/ap?", "acme/api", true},
		{"acme/ap?", "acme/ap/", false}, // ? is not '/'
		{"*", "", true},
		{"*.gcr.io", "eu.gcr.io", true},
		{"*.gcr.io", "gcr.io", false},
		{"a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // no exponential backtracking
	} {
		if got := globMatch(c.pattern, c.name); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestSelectSpecificity(t *testing.T) {
	rule := func(name string, ups, repos []string) Rule {
		return Rule{Name: name, Match: Match{Upstreams: ups, Repositories: repos}}
	}
	p := &Policy{Rules: []Rule{
		rule("catch-all", nil, nil),
		rule("any-registry-acme", nil, []string{"acme/**"}),
		rule("ghcr", []string{"ghcr.io"}, nil),
		rule("ghcr-acme-deep", []string{"ghcr.io"}, []string{"acme/**"}),
		rule("ghcr-acme-flat", []string{"ghcr.io"}, []string{"acme/*"}),
		rule("ghcr-acme-api", []string{"ghcr.io"}, []string{"acme/api"}),
		rule("ghcr-acme-legacy", []string{"ghcr.io"}, []string{"acme/legacy-*"}),
		rule("ghcr-acme-x-api", []string{"ghcr.io"}, []string{"acme/*-api"}),
		rule("gcr-wild", []string{"*.gcr.io"}, nil),
		rule("first-of-tie", []string{"quay.io"}, []string{"x/*"}),
		rule("second-of-tie", []string{"quay.io"}, []string{"x/?"}),
		rule("star", []string{"*"}, nil),
	}}
	for _, c := range []struct{ upstream, repo, want, why string }{
		{"ghcr.io", "acme/api", "ghcr-acme-api", "exact repository beats every glob"},
		{"ghcr.io", "acme/legacy-app", "ghcr-acme-legacy", "longer literal prefix wins"},
		{"ghcr.io", "acme/web", "ghcr-acme-flat", "same prefix: * beats **"},
		{"ghcr.io", "acme/billing-api", "ghcr-acme-x-api", "same prefix: more literal characters win"},
		{"ghcr.io", "acme/team/web", "ghcr-acme-deep", "only ** crosses '/'"},
		{"ghcr.io", "other/web", "ghcr", "a registry rule beats the catch-all"},
		{"GHCR.IO", "other/web", "ghcr", "upstreams compare case-insensitively"},
		{"docker.io", "acme/api", "any-registry-acme", "'*' ranks like no pattern, so the repository decides"},
		{"docker.io", "library/alpine", "catch-all", "'*' and no pattern tie; the earlier rule wins"},
		{"eu.gcr.io", "acme/api", "gcr-wild", "upstream glob with a longer prefix beats '*'"},
		{"quay.io", "x/y", "first-of-tie", "a full tie goes to the earlier rule"},
	} {
		if got := p.Select(c.upstream, c.repo); got.Name != c.want {
			t.Errorf("Select(%q, %q) = %s, want %s (%s)", c.upstream, c.repo, got.Name, c.want, c.why)
		}
	}

	// Upstream specificity is decided before repository specificity.
	q := &Policy{Rules: []Rule{
		rule("repo-exact-any-registry", nil, []string{"acme/api"}),
		rule("registry-exact-any-repo", []string{"docker.io"}, nil),
	}}
	if got := q.Select("docker.io", "acme/api"); got.Name != "registry-exact-any-repo" {
		t.Errorf("upstream before repository: got %s", got.Name)
	}
	if got := q.Select("ghcr.io", "acme/api"); got.Name != "repo-exact-any-registry" {
		t.Errorf("repository rule elsewhere: got %s", got.Name)
	}
}

func TestSelectUnmatched(t *testing.T) {
	p := &Policy{Rules: []Rule{{Name: "only-ghcr", Match: Match{Upstreams: []string{"ghcr.io"}}}}}
	r := p.Select("docker.io", "library/alpine")
	if r.Name != "unmatched" || r.Mode != ModeWarn || r.Vulnerabilities != nil || r.Signature != nil {
		t.Fatalf("unmatched rule = %+v", r)
	}
	if r.PolicyVersion == "" || r.PolicyVersion != p.Version() {
		t.Errorf("PolicyVersion = %q, want %q", r.PolicyVersion, p.Version())
	}
	// Nothing configured at all: still an answer, never a block.
	var nilPolicy *Policy
	d := nilPolicy.Evaluate(Facts{Upstream: "x", Repository: "y", Now: t0, Signature: SignatureFacts{State: SignatureUnsigned}})
	if d.Effective != Allow || d.Rule != "unmatched" {
		t.Errorf("nil policy: %+v", d)
	}
}

func TestSelectStampsVersion(t *testing.T) {
	p := mustParse(t, "rules:\n  - match: {upstreams: [ghcr.io]}\n    size: {max_layers: 3}\n")
	r := p.Select("ghcr.io", "a/b")
	if r.Name != "rules[0]" || r.PolicyVersion != p.Version() {
		t.Fatalf("got %q %q", r.Name, r.PolicyVersion)
	}
	d := Evaluate(r, Facts{Now: t0, LayerCount: 4})
	if d.PolicyVersion != p.Version() || d.Rule != "rules[0]" || d.Verdict != Block {
		t.Errorf("decision = %+v", d)
	}
}
