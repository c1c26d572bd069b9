package policy

import (
	"fmt"
	"strings"
)

// Select returns the rule for a digest from upstream (a registry host such
// as "ghcr.io") and repo (its repository path, "library/alpine" for Docker
// Hub's official images), stamped with the policy version.
//
// The most specific match wins:
//
//  1. Upstream first, then repository: a rule that names the registry
//     beats one that does not, whatever their repository patterns — the
//     reference reads registry first, and the same repository name on two
//     registries is two different images.
//  2. For each of the two, a rule's best matching pattern counts, ranked:
//     exact name > glob > no pattern (an empty list, which matches
//     anything; a pattern of wildcards only, "*" or "**", ranks the same).
//     Between globs: longer literal prefix (the text before the first
//     wildcard), then more literal characters, then fewer '**'.
//  3. Still tied: the rule earlier in the file.
//
// When nothing matches, Select returns the "unmatched" rule: no checks, mode
// warn, so a policy never blocks images it does not mention.
func (p *Policy) Select(upstream, repo string) Rule {
	best := -1
	var bestU, bestR specificity
	if p != nil {
		for i, r := range p.Rules {
			u, ok := bestMatch(r.Match.Upstreams, strings.ToLower(upstream), true)
			if !ok {
				continue
			}
			rp, ok := bestMatch(r.Match.Repositories, repo, false)
			if !ok {
				continue
			}
			c := u.compare(bestU)
			if best < 0 || c > 0 || c == 0 && rp.compare(bestR) > 0 {
				best, bestU, bestR = i, u, rp
			}
		}
	}
	r := unmatchedRule()
	if best >= 0 {
		r = p.Rules[best]
	}
	r.PolicyVersion = p.Version()
	return r
}

// specificity ranks a pattern, independent of the name it matched, so the
// same two rules always compare the same way.
type specificity struct {
	kind     int // 0 no pattern, 1 glob, 2 exact
	prefix   int // literal bytes before the first wildcard
	literals int // literal bytes in total
	deep     int // number of '**'
}

func (a specificity) compare(b specificity) int {
	switch {
	case a.kind != b.kind:
		return a.kind - b.kind
	case a.prefix != b.prefix:
		return a.prefix - b.prefix
	case a.literals != b.literals:
		return a.literals - b.literals
	}
	return b.deep - a.deep
}

func patternSpecificity(p string) specificity {
	s := specificity{kind: 2, prefix: -1}
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '*' && i+1 < len(p) && p[i+1] == '*':
			s.deep++
			i++
		case p[i] == '*' || p[i] == '?':
		default:
			s.literals++
			continue
		}
		s.kind = 1
		if s.prefix < 0 {
			s.prefix = s.literals
		}
	}
	if s.prefix < 0 {
		s.prefix = len(p)
	}
	if s.literals == 0 {
		// "*" constrains nothing, so it is no more specific than no
		// pattern; otherwise `upstreams: ["*"]` would quietly outrank
		// every rule that leaves upstreams out.
		return specificity{}
	}
	return s
}

// bestMatch returns the specificity of the most specific pattern in pats
// that matches name; an empty list matches with the lowest specificity.
func bestMatch(pats []string, name string, fold bool) (specificity, bool) {
	if len(pats) == 0 {
		return specificity{}, true
	}
	var best specificity
	found := false
	for _, p := range pats {
		if fold {
			p = strings.ToLower(p)
		}
		if !globMatch(p, name) {
			continue
		}
		if s := patternSpecificity(p); !found || s.compare(best) > 0 {
			best, found = s, true
		}
	}
	return best, found
}

// globMatch matches name against a pattern where '*' is any run of bytes
// without '/', '**' any run of bytes, '?' one byte other than '/', and all
// else is literal. Dynamic programming keeps it linear in
// len(pattern)×len(name) however many stars a pattern has.
func globMatch(pattern, name string) bool {
	// next[j]: the pattern after the current token matches name[j:].
	next := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	next[len(name)] = true
	// Walk the pattern backwards, one token at a time.
	for i := len(pattern) - 1; i >= 0; i-- {
		tok := pattern[i]
		deep := false
		if tok == '*' && i > 0 && pattern[i-1] == '*' {
			deep = true
			i--
		}
		for j := len(name); j >= 0; j-- {
			more := j < len(name)
			switch tok {
			case '*':
				cur[j] = next[j] || more && (deep || name[j] != '/') && cur[j+1]
			case '?':
				cur[j] = more && name[j] != '/' && next[j+1]
			default:
				cur[j] = more && name[j] == tok && next[j+1]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// checkPattern reports what is wrong with a match pattern, if anything.
func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty pattern (leave the list out to match everything)")
	case strings.Contains(p, "***"):
		return fmt.Errorf("pattern %q: use * within a path segment or ** across segments", p)
	case strings.TrimSpace(p) != p:
		return fmt.Errorf("pattern %q has leading or trailing spaces", p)
	}
	return nil
}
