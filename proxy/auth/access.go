package auth

import (
	"fmt"
	"strings"
)

// Rule lets the users it names pull from the upstreams and repositories it
// names. Each list holds patterns (see matchPath); an empty list matches
// anything, anonymous requests included when users is empty.
type Rule struct {
	Users        []string
	Upstreams    []string
	Repositories []string
}

// maxPatternLength matches the longest repository name (distribution's
// limit), so matching work stays small.
const maxPatternLength = 255

// checkRules reports the first malformed pattern, naming its rule.
func checkRules(rules []Rule) error {
	for i, r := range rules {
		for _, list := range []struct {
			key  string
			pats []string
		}{{"users", r.Users}, {"upstreams", r.Upstreams}, {"repositories", r.Repositories}} {
			for _, p := range list.pats {
				if err := checkPattern(p); err != nil {
					return fmt.Errorf("auth.access[%d].%s: %w", i, list.key, err)
				}
			}
		}
	}
	return nil
}

func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty pattern (leave the list out to match everything)")
	case len(p) > maxPatternLength:
		return fmt.Errorf("pattern longer than %d bytes", maxPatternLength)
	case strings.TrimSpace(p) != p:
		return fmt.Errorf("pattern %q has leading or trailing spaces", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("pattern %q has an empty path segment", p)
		case seg != "**" && strings.Contains(seg, "**"):
			return fmt.Errorf("pattern %q: ** stands alone between slashes (any depth); use * within a segment", p)
		}
	}
	return nil
}

// firstMatch returns the index of the first rule that matches, or -1.
func firstMatch(rules []Rule, user, upstream, repo string) int {
	upstream = strings.ToLower(upstream)
	for i, r := range rules {
		if matchAny(r.Users, user, false) && matchAny(r.Upstreams, upstream, true) && matchAny(r.Repositories, repo, false) {
			return i
		}
	}
	return -1
}

func matchAny(pats []string, name string, fold bool) bool {
	if len(pats) == 0 {
		return true
	}
	for _, p := range pats {
		if fold {
			p = strings.ToLower(p)
		}
		if matchPath(p, name) {
			return true
		}
	}
	return false
}

// matchPath matches a '/'-separated name against a pattern segment by
// segment: a segment "**" matches any number of segments (none included, so
// "acme/**" matches "acme" itself and everything below it); in any other
// segment '*' matches any run of characters within the segment and every
// other character is literal. Dynamic programming over segments keeps the
// work at segments(pattern) × segments(name) segment matches.
func matchPath(pattern, name string) bool {
	ps := strings.Split(pattern, "/")
	ns := strings.Split(name, "/")
	// next[j]: ps[i+1:] matches ns[j:]; cur[j]: ps[i:] matches ns[j:].
	next := make([]bool, len(ns)+1)
	cur := make([]bool, len(ns)+1)
	next[len(ns)] = true
	for i := len(ps) - 1; i >= 0; i-- {
		for j := len(ns); j >= 0; j-- {
			more := j < len(ns)
			if ps[i] == "**" {
				cur[j] = next[j] || more && cur[j+1]
			} else {
				cur[j] = more && next[j+1] && matchSegment(ps[i], ns[j])
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// matchSegment matches s against p where '*' is any run of characters: the
// usual greedy scan that backtracks only to the last star, at most
// len(p)×len(s) steps.
func matchSegment(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
