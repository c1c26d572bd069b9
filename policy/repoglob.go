package policy

// RepositoryGlob reports whether name (upstream/repository) matches
// pattern with the glob of the rules' match patterns ('*' within one path
// segment, '**' across segments, '?' one byte), so an operator's
// exception scopes repositories exactly as a rule does.
func RepositoryGlob(pattern, name string) bool { return globMatch(pattern, name) }
