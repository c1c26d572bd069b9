// Package secrets finds credentials left in files and strings: private
// keys, cloud and SaaS tokens, service account and registry credential
// files. It only reads the io.Reader it is handed, in bounded windows, so
// any input (a 1 GiB file of one line included) costs bounded memory; and
// it never returns the secret itself, only where it is, a fingerprint and
// at most its first four characters.
package secrets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
)

// Kinds of secret; a finding's id is "secret/<kind>".
const (
	KindPrivateKey        = "private-key"
	KindAWSAccessKey      = "aws-access-key"
	KindGitHubToken       = "github-token"
	KindGitLabToken       = "gitlab-token"
	KindSlackToken        = "slack-token"
	KindSlackWebhook      = "slack-webhook"
	KindGoogleAPIKey      = "google-api-key"
	KindGCPServiceAccount = "gcp-service-account"
	KindStripeKey         = "stripe-key"
	KindNPMToken          = "npm-token"
	KindPyPIToken         = "pypi-token"
	KindDockerAuth        = "docker-auth"
)

// Kinds lists every kind the detector reports, for policies that name them.
func Kinds() []string {
	return []string{
		KindPrivateKey, KindAWSAccessKey, KindGitHubToken, KindGitLabToken, KindSlackToken, KindSlackWebhook,
		KindGoogleAPIKey, KindGCPServiceAccount, KindStripeKey, KindNPMToken, KindPyPIToken, KindDockerAuth,
	}
}

// Severity is what a finding of kind weighs: a private key (or a service
// account file, which holds one) lets whoever reads it impersonate its
// owner without limit in time, so CRITICAL; every token is HIGH (they are
// scoped and can be revoked, but they still grant access).
func Severity(kind string) string {
	switch kind {
	case KindPrivateKey, KindGCPServiceAccount:
		return "CRITICAL"
	}
	return "HIGH"
}

// Match is one secret found. It never holds the secret.
type Match struct {
	Kind string
	Line int // 1-based line of the secret's first byte
	// Fingerprint is "sha256:" and the hex SHA-256 of the kind and the
	// secret, so the same secret is recognised across files, layers and
	// images. That is safe to show because every kind but docker-auth
	// requires a random part of at least 80 bits (AKIA ids: 16 base32
	// characters; the tokens: 20 to 80 base62 characters; keys: far
	// more), which no one can recover from its hash by guessing.
	// docker-auth holds a password a person chose, which could be
	// guessed: its fingerprint is salted with Options.Salt (the layer, or
	// the image for its config).
	Fingerprint string
	// Prefix is a token's first four characters ("ghp_", "AKIA"), which
	// tell the kind apart and never the secret; empty for keys and
	// credential files.
	Prefix string
}

// Options tune one Scan.
type Options struct {
	// Name is the file's path (or "config:Env"); docker-auth is only looked
	// for in files named config.json.
	Name string
	// Binary marks a file with a NUL byte in its first 8 KiB: only private
	// keys are looked for in it (tokens in binaries are mostly test data
	// and random bytes that look like tokens).
	Binary bool
	// MaxMatches bounds the matches returned; Scan reports truncated when
	// there were more. Zero means DefaultMaxMatches.
	MaxMatches int
	// Salt salts the fingerprints of guessable secrets (docker-auth).
	Salt string
	// Size, when known and positive, is how many bytes r holds: a small
	// file then gets a buffer of its size rather than a whole window.
	Size int64
}

// DefaultMaxMatches is the default bound of matches of one Scan: 100 per
// file.
const DefaultMaxMatches = 100

// BinarySniff is how much of a file is looked at for a NUL byte to call it
// binary.
const BinarySniff = 8 << 10

// IsBinary reports whether head (a file's first bytes) marks it binary.
func IsBinary(head []byte) bool {
	return bytes.IndexByte(head[:min(len(head), BinarySniff)], 0) >= 0
}

// Window sizes. Every pattern matches at most maxMatchLen bytes (a PEM
// private key of a 16,384-bit RSA key is about 12.6 KiB), so a match that
// starts in a window's first part ends inside it; the overlap carries the
// last maxMatchLen bytes into the next window.
const (
	windowSize  = 64 << 10
	maxMatchLen = 16 << 10
)

// errStop ends a scan early once the bound of matches is passed.
var errStop = errors.New("stop")

// Scan reads r to its end (or until more than MaxMatches secrets were
// found) and returns the secrets in it, in order. Memory is bounded by the
// window (80 KiB) whatever r holds.
func Scan(r io.Reader, o Options) (matches []Match, truncated bool, err error) {
	if o.MaxMatches <= 0 {
		o.MaxMatches = DefaultMaxMatches
	}
	sc := &scan{o: o, line: 1, dockerConfig: path.Base(o.Name) == "config.json"}
	bufSize := windowSize + maxMatchLen
	if o.Size > 0 && o.Size < int64(bufSize) {
		bufSize = int(o.Size) + 1 // +1: the read that finds the end
	}
	buf := make([]byte, bufSize)
	keep := 0 // bytes carried over from the last window
	for {
		n, rerr := io.ReadFull(r, buf[keep:])
		end := keep + n
		eof := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !eof {
			return sc.out, false, fmt.Errorf("read: %w", rerr)
		}
		if !eof && len(buf) < windowSize+maxMatchLen {
			// More than Size said: go on with a whole window.
			buf = append(buf[:end], make([]byte, windowSize+maxMatchLen-end)...)
			keep = end
			continue
		}
		// Matches starting at or after limit wait for the next window,
		// where they are whole; at the end everything is whole.
		limit := end - maxMatchLen
		if eof {
			limit = end
		}
		if err := sc.window(buf[:end], limit); err != nil {
			if errors.Is(err, errStop) {
				return sc.out[:o.MaxMatches], true, nil
			}
			return sc.out, false, err
		}
		if eof {
			break
		}
		// Carry the tail: count its lines forward from what was consumed.
		consumed := max(limit, 0)
		sc.advance(buf[:consumed])
		keep = copy(buf, buf[consumed:end])
	}
	sc.finish()
	if len(sc.out) > o.MaxMatches {
		return sc.out[:o.MaxMatches], true, nil
	}
	return sc.out, false, nil
}

// scan is the state of one Scan across its windows.
type scan struct {
	o    Options
	out  []Match
	line int // line of the current window's first byte
	// lineNo is the line of window offset lineOff: lineOf counts on from
	// there rather than from the window's start each time.
	lineOff, lineNo int

	dockerConfig bool // the file is named config.json
	sawAuths     bool // its "auths" key was seen
	// A service account key file is a JSON object with "type":
	// "service_account" and a "private_key"; the line is the type's.
	gcpTypeLine int
	gcpKey      Match
}

// advance moves the line count past consumed, the part of the window that
// will not be seen again.
func (sc *scan) advance(consumed []byte) {
	sc.line += bytes.Count(consumed, []byte{'\n'})
}

// lineOf returns the line of window offset off; offsets come in ascending
// order within one window.
func (sc *scan) lineOf(win []byte, off int) int {
	if off < sc.lineOff {
		sc.lineOff, sc.lineNo = 0, sc.line
	}
	sc.lineNo += bytes.Count(win[sc.lineOff:off], []byte{'\n'})
	sc.lineOff = off
	return sc.lineNo
}

// window finds the matches of win that start before limit. The window
// starts where the previous one's limit was, so nothing is reported twice.
func (sc *scan) window(win []byte, limit int) error {
	sc.lineOff, sc.lineNo = 0, sc.line
	var found []candidate
	for i := range detectors {
		d := &detectors[i]
		if sc.o.Binary && d.kind != KindPrivateKey {
			continue
		}
		if d.kind == KindDockerAuth && !sc.dockerConfig {
			continue
		}
		if !d.wanted(win) {
			continue
		}
		n := len(found)
		found = d.find(sc, win, limit, found)
		for i := n; i < len(found); i++ {
			found[i].kind = d.kind
		}
	}
	slices.SortStableFunc(found, func(a, b candidate) int { return a.off - b.off })
	for _, c := range found {
		sc.out = append(sc.out, Match{
			Kind:        c.kind,
			Line:        sc.lineOf(win, c.off),
			Fingerprint: sc.fingerprint(c.kind, c.secret),
			Prefix:      prefix(c.kind, c.secret),
		})
		if len(sc.out) > sc.o.MaxMatches {
			return errStop
		}
	}
	if !sc.o.Binary {
		sc.gcpWindow(win, limit)
	}
	return nil
}

// candidate is a match inside one window before it gets its line.
type candidate struct {
	kind   string
	off    int    // offset in the window
	secret []byte // the secret's bytes (fingerprinted, never kept)
}

func (sc *scan) fingerprint(kind string, secret []byte) string {
	h := sha256.New()
	h.Write([]byte("secret/" + kind + "\x00"))
	if kind == KindDockerAuth {
		h.Write([]byte(sc.o.Salt + "\x00"))
	}
	h.Write(secret)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// prefix returns the first four characters of a token. Keys and
// credential files get none: their first characters are "----" or part
// of a user name, which say nothing useful.
func prefix(kind string, secret []byte) string {
	switch kind {
	case KindPrivateKey, KindGCPServiceAccount, KindDockerAuth:
		return ""
	}
	p := secret[:min(len(secret), 4)]
	// Only printable ASCII: a prefix is shown in tables and logs.
	for _, c := range p {
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return string(p)
}

// finish reports what needed the whole file.
func (sc *scan) finish() {
	if sc.gcpTypeLine > 0 && sc.gcpKey.Fingerprint != "" {
		m := sc.gcpKey
		m.Line = sc.gcpTypeLine
		sc.out = append(sc.out, m)
	}
}
