package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"regexp"
	"strings"
)

// detector finds one kind of secret in a window. Every match contains one
// of keywords: a window without any is not searched (most files hold none,
// and bytes.Contains is far cheaper than a regexp, which gets no literal
// prefix to skip ahead with once it starts with \b).
type detector struct {
	kind     string
	keywords []string
	find     func(sc *scan, win []byte, limit int, found []candidate) []candidate
}

// wanted reports whether win holds one of d's keywords.
func (d *detector) wanted(win []byte) bool {
	for _, k := range d.keywords {
		if bytes.Contains(win, []byte(k)) {
			return true
		}
	}
	return false
}

// Every pattern is bounded in length (at most maxMatchLen bytes) and
// anchored on a literal prefix. The random parts are the token formats the
// issuers document; the \b edges keep a token from matching inside a
// longer run of the same characters.
var (
	awsAccessKeyRE  = regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z2-7]{16}\b`)
	githubTokenRE   = regexp.MustCompile(`\bgh[pousr]_([A-Za-z0-9]{30})([A-Za-z0-9]{6})\b`)
	githubPATRE     = regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b`)
	gitlabTokenRE   = regexp.MustCompile(`\bglpat-[A-Za-z0-9_\-]{20,200}(?:\.[A-Za-z0-9_\-]{2,200})*`)
	slackTokenRE    = regexp.MustCompile(`\bxox[abprs]-[0-9]{6,20}(?:-[0-9A-Za-z]{6,64}){1,4}\b`)
	slackWebhookRE  = regexp.MustCompile(`https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32}\b`)
	googleAPIKeyRE  = regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}`)
	stripeKeyRE     = regexp.MustCompile(`\b[sr]k_live_[0-9A-Za-z]{24,99}\b`)
	npmTokenRE      = regexp.MustCompile(`\bnpm_[A-Za-z0-9]{36}\b`)
	pypiTokenRE     = regexp.MustCompile(`\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,1000}`)
	dockerAuthRE    = regexp.MustCompile(`"(?:auth|identitytoken|password)"\s*:\s*"([^"\\]{4,1000})"`)
	gcpTypeRE       = regexp.MustCompile(`"type"\s*:\s*"service_account"`)
	gcpPrivateKeyRE = regexp.MustCompile(`"private_key"\s*:\s*"(-----BEGIN[^"]{64,1000})`)
)

var detectors = []detector{
	{KindPrivateKey, []string{"PRIVATE KEY-----"}, findPrivateKeys},
	{KindAWSAccessKey, []string{"AKIA", "ASIA"}, findRE(awsAccessKeyRE, nil)},
	{KindGitHubToken, []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, findRE(githubTokenRE, githubChecksumOK)},
	{KindGitHubToken, []string{"github_pat_"}, findRE(githubPATRE, nil)},
	{KindGitLabToken, []string{"glpat-"}, findRE(gitlabTokenRE, nil)},
	{KindSlackToken, []string{"xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-"}, findRE(slackTokenRE, nil)},
	{KindSlackWebhook, []string{"hooks.slack.com"}, findRE(slackWebhookRE, nil)},
	{KindGoogleAPIKey, []string{"AIza"}, findRE(googleAPIKeyRE, nil)},
	{KindStripeKey, []string{"sk_live_", "rk_live_"}, findRE(stripeKeyRE, nil)},
	{KindNPMToken, []string{"npm_"}, findRE(npmTokenRE, nil)},
	{KindPyPIToken, []string{"pypi-AgEIcHlwaS5vcmc"}, findRE(pypiTokenRE, nil)},
	{KindDockerAuth, []string{`"auths"`}, findDockerAuth},
}

// findRE reports the matches of re that start before limit and pass ok
// (nil: all) and are not placeholders.
func findRE(re *regexp.Regexp, ok func(m [][]byte) bool) func(*scan, []byte, int, []candidate) []candidate {
	return func(_ *scan, win []byte, limit int, found []candidate) []candidate {
		for _, loc := range re.FindAllSubmatchIndex(win, -1) {
			if loc[0] >= limit {
				break
			}
			secret := bytes.TrimRight(win[loc[0]:loc[1]], "\"' \t\r\n,;)]}")
			if isPlaceholder(secret) {
				continue
			}
			if ok != nil {
				groups := make([][]byte, len(loc)/2)
				for i := range groups {
					if loc[2*i] >= 0 {
						groups[i] = win[loc[2*i]:loc[2*i+1]]
					}
				}
				if !ok(groups) {
					continue
				}
			}
			found = append(found, candidate{off: loc[0], secret: secret})
		}
		return found
	}
}

// placeholders are pieces of the text people put where a token goes in
// examples and templates; none is likely in a random token (a four-letter
// word from base62 at one place has odds of one in 14 million).
var placeholders = []string{"example", "your", "here", "placeholder", "redacted", "xxxxxx", "000000", "dummy", "sample", "changeme"}

// isPlaceholder reports whether secret is a documentation example or a
// template placeholder rather than a credential: AWS's documented
// AKIAIOSFODNN7EXAMPLE, xoxb-your-token-here.
func isPlaceholder(secret []byte) bool {
	s := strings.ToLower(string(secret))
	for _, p := range placeholders {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// githubChecksumOK checks the checksum of a ghp_/gho_/ghu_/ghs_/ghr_
// token: its last six characters are the CRC-32 (IEEE) of the 30 random
// characters before them, in base62 padded with zeros. A token that fails
// it was never issued (a made-up or mistyped one).
func githubChecksumOK(groups [][]byte) bool {
	return string(githubChecksum(groups[1])) == string(groups[2])
}

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// githubChecksum returns the six base62 digits of crc32(random).
func githubChecksum(random []byte) []byte {
	n := crc32.ChecksumIEEE(random)
	out := make([]byte, 6)
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62Digits[n%62]
		n /= 62
	}
	return out
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
)

// privateKeyTypes are the PEM types of unencrypted private keys: PKCS#1
// RSA, SEC 1 EC, DSA, OpenSSH's own format and PKCS#8. "ENCRYPTED PRIVATE
// KEY" (encrypted PKCS#8) is not among them.
var privateKeyTypes = []string{"RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"}

// findPrivateKeys reports the unencrypted PEM private keys that start
// before limit. A block counts only when it is whole in the window (keys
// are at most maxMatchLen long) and its body decodes to what its type
// holds, so a template with "..." in place of the key is not one.
func findPrivateKeys(_ *scan, win []byte, limit int, found []candidate) []candidate {
	for off := 0; off < limit; {
		i := bytes.Index(win[off:], pemBegin)
		if i < 0 || off+i >= limit {
			break
		}
		start := off + i
		off = start + len(pemBegin)
		rest := win[off:]
		typ := ""
		for _, t := range privateKeyTypes {
			if bytes.HasPrefix(rest, []byte(t+"-----")) {
				typ = t
				break
			}
		}
		if typ == "" {
			continue
		}
		bodyStart := off + len(typ) + len("-----")
		j := bytes.Index(win[bodyStart:min(len(win), bodyStart+maxMatchLen)], pemEnd)
		if j < 0 {
			continue
		}
		body := win[bodyStart : bodyStart+j]
		der, ok := pemBody(body)
		if !ok || !unencryptedKey(typ, der) {
			continue
		}
		found = append(found, candidate{off: start, secret: der})
		off = bodyStart + j
	}
	return found
}

// pemBody decodes a PEM body; ok is false when it has encryption headers
// (Proc-Type: 4,ENCRYPTED) or is not base64.
func pemBody(body []byte) ([]byte, bool) {
	if bytes.Contains(body, []byte("ENCRYPTED")) {
		return nil, false
	}
	var clean []byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if bytes.IndexByte(line, ':') >= 0 {
			continue // other headers (DEK-Info without Proc-Type is not valid PEM, but harmless)
		}
		clean = append(clean, line...)
	}
	der := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(der, clean)
	if err != nil || n < 32 {
		return nil, false
	}
	return der[:n], true
}

// unencryptedKey checks that der is what a key of type typ holds: an
// ASN.1 SEQUENCE for the DER formats, and for OpenSSH keys the
// "openssh-key-v1" magic with the cipher "none" (any other cipher means
// the key is encrypted with a passphrase).
func unencryptedKey(typ string, der []byte) bool {
	if typ != "OPENSSH PRIVATE KEY" {
		return der[0] == 0x30
	}
	magic := []byte("openssh-key-v1\x00")
	if !bytes.HasPrefix(der, magic) {
		return false
	}
	rest := der[len(magic):]
	if len(rest) < 4 {
		return false
	}
	n := binary.BigEndian.Uint32(rest)
	if uint64(n) > uint64(len(rest)-4) {
		return false
	}
	return string(rest[4:4+n]) == "none"
}

// findDockerAuth reports the credentials in the "auths" of a Docker
// config.json: "auth" (base64 of user:password), "identitytoken" or
// "password". Only values after the "auths" key count.
func findDockerAuth(sc *scan, win []byte, limit int, found []candidate) []candidate {
	from := 0
	if !sc.sawAuths {
		i := bytes.Index(win, []byte(`"auths"`))
		if i < 0 || i >= limit {
			return found
		}
		sc.sawAuths, from = true, i
	}
	for _, loc := range dockerAuthRE.FindAllSubmatchIndex(win[from:], -1) {
		off := from + loc[0]
		if off >= limit {
			break
		}
		secret := win[from+loc[2] : from+loc[3]]
		if isPlaceholder(secret) {
			continue
		}
		found = append(found, candidate{off: from + loc[2], secret: secret})
	}
	return found
}

// gcpWindow looks for the two halves of a service account key file.
func (sc *scan) gcpWindow(win []byte, limit int) {
	if sc.gcpTypeLine == 0 && bytes.Contains(win, []byte("service_account")) {
		if loc := gcpTypeRE.FindIndex(win); loc != nil && loc[0] < limit {
			sc.gcpTypeLine = sc.lineOf(win, loc[0])
		}
	}
	if sc.gcpKey.Fingerprint == "" && bytes.Contains(win, []byte(`"private_key"`)) {
		if loc := gcpPrivateKeyRE.FindSubmatchIndex(win); loc != nil && loc[0] < limit {
			key := win[loc[2]:loc[3]]
			if !bytes.Contains(key, []byte("ENCRYPTED")) {
				sc.gcpKey = Match{Kind: KindGCPServiceAccount, Fingerprint: sc.fingerprint(KindGCPServiceAccount, key)}
			}
		}
	}
}
