package upstream

import (
	"fmt"
	"strings"
)

// Bounds on what a 401 may make us parse. Registries send one or two
// challenges of a few hundred bytes; anything far past that is an attack on
// our memory (each challenge costs a map).
const (
	maxChallengeBytes  = 8 << 10 // all WWW-Authenticate values together
	maxChallenges      = 16
	maxChallengeParams = 16 // per challenge
)

// challenge is one WWW-Authenticate challenge (RFC 7235 §4.1), e.g.
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
type challenge struct {
	scheme string // lower case
	params map[string]string
}

// parseChallenges reads WWW-Authenticate header values. It is lenient the way
// registries need (unquoted values, stray spaces) and never panics on junk:
// unparsable parts are skipped. Past the bounds above it fails, having
// looked at no more than maxChallengeBytes.
func parseChallenges(values []string) ([]challenge, error) {
	total := 0
	for _, v := range values {
		total += len(v)
		if total > maxChallengeBytes {
			return nil, fmt.Errorf("WWW-Authenticate: %w: more than %d bytes", ErrTooLarge, maxChallengeBytes)
		}
	}
	var out []challenge
	for _, v := range values {
		var err error
		if out, err = parseChallengeValue(v, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseChallengeValue appends the challenges of one header value to out.
func parseChallengeValue(s string, out []challenge) ([]challenge, error) {
	cur := -1 // index in out of the challenge being read; params before the first are dropped
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		tok, rest := readToken(s)
		if tok == "" {
			// Not a token character: skip it so we always make progress.
			s = s[1:]
			continue
		}
		after := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(after, "=") && cur >= 0 {
			val, rest2 := readValue(strings.TrimLeft(after[1:], " \t"))
			if len(out[cur].params) >= maxChallengeParams {
				return nil, fmt.Errorf("WWW-Authenticate: %w: more than %d parameters in a challenge", ErrTooLarge, maxChallengeParams)
			}
			out[cur].params[strings.ToLower(tok)] = val
			s = rest2
			continue
		}
		// A token not followed by '=' starts a new challenge.
		if len(out) >= maxChallenges {
			return nil, fmt.Errorf("WWW-Authenticate: %w: more than %d challenges", ErrTooLarge, maxChallenges)
		}
		out = append(out, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
		cur = len(out) - 1
		s = rest
	}
	return out, nil
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/:", c) >= 0
}

func readToken(s string) (string, string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// readValue reads a token or a quoted-string with backslash escapes.
func readValue(s string) (string, string) {
	if !strings.HasPrefix(s, `"`) {
		i := 0
		for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		return s[:i], s[i:]
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), "" // unterminated quote: take what there is
}
