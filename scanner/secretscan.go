package scanner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/scanner/secrets"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// DefaultSecretsMaxFile is the largest file searched for secrets by
// default (config scan.secrets_max_file): credentials live in small
// configuration files, and searching every large file would cost more
// than the rest of the scan.
const DefaultSecretsMaxFile = 1 << 20

// WithSecretsMaxFile sets the largest file searched for secrets. Default
// 1 MiB.
func WithSecretsMaxFile(n int64) Option {
	return func(s *Scanner) { positive(&s.secretsMaxFile, n) }
}

// WithSecretDetection switches the search for secrets off (false) or on
// (true, the default); benchmarks compare the two.
func WithSecretDetection(on bool) Option {
	return func(s *Scanner) { s.secretsOff = !on }
}

// secretInspector searches every regular file up to maxFile for secrets.
type secretInspector struct{ maxFile int64 }

func (si *secretInspector) CacheKey() string {
	return "secrets max_file=" + strconv.FormatInt(si.maxFile, 10)
}

func (si *secretInspector) MaxSize() int64             { return si.maxFile }
func (si *secretInspector) Wants(f InspectedFile) bool { return f.Size > 0 }

func (si *secretInspector) Inspect(_ context.Context, f InspectedFile, r io.Reader) ([]vulndb.Finding, bool, error) {
	// Sized to the file: most are small, and this runs for every one.
	sniff := int(min(f.Size, secrets.BinarySniff))
	br := bufio.NewReaderSize(r, max(sniff, 16))
	head, err := br.Peek(sniff)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, false, fmt.Errorf("secrets in %s: %w", f.Path, err)
	}
	// The salt of guessable secrets' fingerprints is the layer: the same
	// layer in two images gives the same fingerprint.
	matches, truncated, err := secrets.Scan(br, secrets.Options{Name: f.Path, Binary: secrets.IsBinary(head), Salt: f.Layer, Size: f.Size})
	if err != nil {
		return nil, false, fmt.Errorf("secrets in %s: %w", f.Path, err)
	}
	return secretFindings(f.Path, matches), truncated, nil
}

// secretFindings turns matches into findings; the secret is not in them.
func secretFindings(where string, matches []secrets.Match) []vulndb.Finding {
	out := make([]vulndb.Finding, 0, len(matches))
	for _, m := range matches {
		out = append(out, vulndb.Finding{
			Kind:        vulndb.KindSecret,
			ID:          "secret/" + m.Kind,
			Summary:     strings.ReplaceAll(m.Kind, "-", " "),
			Severity:    secrets.Severity(m.Kind),
			Path:        where,
			Line:        m.Line,
			Fingerprint: m.Fingerprint,
			Prefix:      m.Prefix,
			Query:       -1, // in no package
		})
	}
	return out
}

// configSecrets searches the image config's Env (one variable a line, so
// a finding's line is the variable's place) and each history entry's
// created_by, whose build arguments often hold tokens.
func (s *Scanner) configSecrets(cfg *v1.ConfigFile, imageDigest string, st *fsState) {
	if cfg == nil || st.fileFindingsFull || s.secretsOff {
		return
	}
	scanText := func(where, text string) {
		if int64(len(text)) > s.secretsMaxFile || st.fileFindingsFull {
			return
		}
		matches, truncated, err := secrets.Scan(strings.NewReader(text), secrets.Options{Name: where, Salt: imageDigest, Size: int64(len(text))})
		if err != nil {
			return // a strings.Reader does not fail
		}
		if truncated {
			st.addNote(fmt.Sprintf("secrets: more findings in %s than reported; only the first %d", where, len(matches)))
		}
		st.addFileFindings(-1, secretFindings(where, matches))
	}
	scanText("config:Env", strings.Join(cfg.Config.Env, "\n"))
	for i, h := range cfg.History {
		scanText("config:history["+strconv.Itoa(i)+"]", h.CreatedBy)
	}
}
