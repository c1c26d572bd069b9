package policy

import "fmt"

// maxRepositoryGlob bounds an operator's repository glob (an exception's
// "repository"): matching costs len(pattern)×len(name).
const maxRepositoryGlob = 512

// CheckRepositoryGlob reports what is wrong with a glob over
// upstream/repository ("docker.io/library/*", "ghcr.io/org/**"), with the
// same rules as a policy rule's match patterns.
func CheckRepositoryGlob(p string) error {
	if len(p) > maxRepositoryGlob {
		return fmt.Errorf("pattern of %d bytes: at most %d", len(p), maxRepositoryGlob)
	}
	return checkPattern(p)
}

// MatchRepositoryGlob reports whether upstream/repository name matches p
// ('*' within a segment, '**' across segments, '?' one byte), as a rule's
// match patterns do.
func MatchRepositoryGlob(p, name string) bool { return globMatch(p, name) }
