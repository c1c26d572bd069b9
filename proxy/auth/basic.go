package auth

import (
	"encoding/base64"
	"errors"
	"strings"
)

// maxAuthorizationLength bounds the Authorization header we decode; a user
// name and a bcrypt password (which only uses 72 bytes) fit many times.
const maxAuthorizationLength = 4096

var (
	errNotBasic             = errors.New("authorization is not Basic: this mirror takes Basic credentials")
	errMalformedBasic       = errors.New("malformed Basic credentials")
	errAuthorizationTooLong = errors.New("authorization header too long")
	// errEmptyBasic is an empty user name and password ("Basic Og=="),
	// which some clients send when they hold no credentials.
	errEmptyBasic = errors.New("empty Basic credentials")
)

// parseBasic reads `Basic base64(user:password)` (RFC 7617). The scheme is
// case-insensitive; the user name may not contain ':' (the first one
// separates it) and neither part may hold control characters.
func parseBasic(header string) (user, password string, err error) {
	if len(header) > maxAuthorizationLength {
		return "", "", errAuthorizationTooLong
	}
	scheme, encoded, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", errNotBasic
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return "", "", errMalformedBasic
	}
	user, password, ok = strings.Cut(string(raw), ":")
	if ok && user == "" && password == "" {
		return "", "", errEmptyBasic
	}
	if !ok || user == "" {
		return "", "", errMalformedBasic
	}
	for _, s := range []string{user, password} {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return "", "", errMalformedBasic
			}
		}
	}
	return user, password, nil
}
