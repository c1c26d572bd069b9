package vulndb

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// ClamAV hash signature files (clamav's docs, "File hash signatures"):
//
//	.hdb  MD5:FileSize:MalwareName
//	.hsb  SHA1-or-SHA256:FileSize:MalwareName   (the hash's length says which)
//
// FileSize may be "*" (any size; ClamAV then wants a functionality level
// field, which this reader accepts and ignores, as it does for every
// line: ":MinFL[:MaxFL]"). Empty lines and lines starting with '#' are
// skipped. Files come from threat feeds and are outside input: every
// field is checked, and a line is bounded.

// HashAlg is the hash a signature is of.
type HashAlg uint8

// Hash algorithms of signatures, by the byte stored in their keys.
const (
	AlgMD5    HashAlg = 1
	AlgSHA1   HashAlg = 2
	AlgSHA256 HashAlg = 3
)

func (a HashAlg) String() string {
	switch a {
	case AlgMD5:
		return "md5"
	case AlgSHA1:
		return "sha1"
	case AlgSHA256:
		return "sha256"
	}
	return fmt.Sprintf("alg(%d)", uint8(a))
}

// AnySize is Signature.Size for a "*" signature.
const AnySize = -1

// Bounds on signature files.
const (
	// maxSignatureLine bounds one line: a sha256, a size, a name and
	// two functionality levels fit in well under it.
	maxSignatureLine = 1024
	// maxSignatureName bounds a name (ClamAV's own are under 100).
	maxSignatureName = 256
)

// Signature is one hash signature.
type Signature struct {
	Alg    HashAlg
	Digest []byte // 16, 20 or 32 bytes
	Size   int64  // AnySize for "*"
	Name   string
}

// SignatureKind is the format of a signature file, by its extension.
type SignatureKind int

// Signature file formats.
const (
	SignatureHDB SignatureKind = iota + 1 // MD5
	SignatureHSB                          // SHA1 or SHA256
)

// signatureReader streams the signatures of one file, a line at a time:
// a file of ten million lines needs no more memory than one line.
type signatureReader struct {
	br   *bufio.Reader
	kind SignatureKind
	line int // of the signature last returned
}

func newSignatureReader(r io.Reader, kind SignatureKind) *signatureReader {
	return &signatureReader{br: bufio.NewReaderSize(r, 64<<10), kind: kind}
}

// errNoMoreSignatures ends a signatureReader.
var errNoMoreSignatures = errors.New("no more signatures")

// next returns the next signature, errNoMoreSignatures at the end, or an
// error naming the line.
func (sr *signatureReader) next() (Signature, error) {
	for {
		line, err := sr.readLine()
		if err != nil {
			return Signature{}, err
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		sig, err := parseSignatureLine(line, sr.kind)
		if err != nil {
			return Signature{}, fmt.Errorf("line %d: %w", sr.line, err)
		}
		return sig, nil
	}
}

// readLine reads one line without its end ("\n" or "\r\n"), refusing one
// longer than maxSignatureLine without reading the rest of it.
func (sr *signatureReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := sr.br.ReadSlice('\n')
		if len(line)+len(chunk) > maxSignatureLine+2 {
			return nil, fmt.Errorf("line %d: longer than %d bytes", sr.line+1, maxSignatureLine)
		}
		line = append(line, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, errNoMoreSignatures
			}
		case err != nil:
			return nil, fmt.Errorf("line %d: read: %w", sr.line+1, err)
		}
		sr.line++
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > maxSignatureLine {
			return nil, fmt.Errorf("line %d: longer than %d bytes", sr.line, maxSignatureLine)
		}
		return line, nil
	}
}

// parseSignatureLine reads "hash:size:name[:minfl[:maxfl]]".
func parseSignatureLine(line []byte, kind SignatureKind) (Signature, error) {
	fields := bytes.Split(line, []byte(":"))
	if len(fields) < 3 || len(fields) > 5 {
		return Signature{}, fmt.Errorf("want hash:size:name, got %d fields", len(fields))
	}
	var sig Signature
	h := fields[0]
	switch {
	case kind == SignatureHDB && len(h) == 32:
		sig.Alg = AlgMD5
	case kind == SignatureHSB && len(h) == 40:
		sig.Alg = AlgSHA1
	case kind == SignatureHSB && len(h) == 64:
		sig.Alg = AlgSHA256
	case kind == SignatureHDB:
		return Signature{}, fmt.Errorf("hash is %d characters, an MD5 (.hdb) has 32", len(h))
	default:
		return Signature{}, fmt.Errorf("hash is %d characters, a SHA1 has 40 and a SHA256 64 (.hsb)", len(h))
	}
	digest := make([]byte, len(h)/2)
	if _, err := hex.Decode(digest, h); err != nil {
		return Signature{}, fmt.Errorf("hash is not hexadecimal: %w", err)
	}
	sig.Digest = digest
	switch size := string(fields[1]); size {
	case "*":
		sig.Size = AnySize
	default:
		if !allDigits(fields[1]) {
			return Signature{}, fmt.Errorf("size %q is not a byte count or *", clip(fields[1]))
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n == math.MaxInt64 {
			return Signature{}, fmt.Errorf("size %q is out of range", clip(fields[1]))
		}
		sig.Size = n
	}
	name := fields[2]
	if len(name) == 0 || len(name) > maxSignatureName {
		return Signature{}, fmt.Errorf("name must have 1 to %d characters, has %d", maxSignatureName, len(name))
	}
	for _, c := range name {
		// Printable ASCII without spaces: names end up in logs,
		// findings and block messages.
		if c <= ' ' || c > '~' {
			return Signature{}, fmt.Errorf("name %q has a character that is not printable ASCII or is a space", clip(name))
		}
	}
	sig.Name = string(name)
	for _, fl := range fields[3:] {
		if len(fl) > 0 && (!allDigits(fl) || len(fl) > 6) {
			return Signature{}, fmt.Errorf("functionality level %q is not a number", clip(fl))
		}
	}
	return sig, nil
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// clip shortens a field quoted in an error.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
