package badfiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/test/clamdserver"
)

// signatureMatcher imports EICAR's .hsb and .hdb lines into a fresh
// database.
func signatureMatcher(t *testing.T) *vulndb.SignatureMatcher {
	t.Helper()
	db, err := vulndb.Open(filepath.Join(t.TempDir(), "vulndb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dir := t.TempDir()
	hsb, hdb := clamdserver.EICARHashLines()
	for name, content := range map[string]string{"t.hsb": hsb, "t.hdb": hdb} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Import(context.Background(), []string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// unreadable fails the test if the checker reads a file it did not want.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("a file that is no candidate was read")
	return 0, io.EOF
}

func ids(fs []vulndb.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	slices.Sort(out)
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestHashSignaturesOnly(t *testing.T) {
	c := &Checker{Signatures: signatureMatcher(t)}
	eicar := clamdserver.EICAR()
	fs, err := c.Check(context.Background(), "/usr/bin/x", "sha256:aa", int64(len(eicar)), bytes.NewReader(eicar))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(fs); !slices.Equal(got, []string{clamdserver.MD5SignatureName, clamdserver.HashSignatureName}) {
		t.Fatalf("findings %q", got)
	}
	for _, f := range fs {
		if f.Kind != vulndb.KindMalware || f.Path != "/usr/bin/x" || f.Layer != "sha256:aa" || f.SHA256 != sha(eicar) || f.Severity != "CRITICAL" {
			t.Fatalf("finding %+v", f)
		}
	}
	// Another size: not wanted, not read.
	if want, err := c.Wants(5); want || err != nil {
		t.Fatalf("Wants(5) = %v, %v", want, err)
	}
	if fs, err := c.Check(context.Background(), "/etc/x", "sha256:aa", 5, unreadable{t}); fs != nil || err != nil {
		t.Fatalf("clean: %v, %v", fs, err)
	}
	// The header lies about the size.
	if _, err := c.Check(context.Background(), "/etc/x", "sha256:aa", int64(len(eicar)), bytes.NewReader(eicar[:10])); err == nil {
		t.Fatal("short file accepted")
	}
}

func TestNothingConfigured(t *testing.T) {
	c := &Checker{}
	if want, err := c.Wants(68); want || err != nil {
		t.Fatalf("Wants = %v, %v", want, err)
	}
	if fs, err := c.Check(context.Background(), "/x", "sha256:aa", 68, unreadable{t}); fs != nil || err != nil {
		t.Fatalf("%v, %v", fs, err)
	}
}

func TestClamdAndSignatures(t *testing.T) {
	srv := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	client, err := clamd.New(srv.UnixURL(), clamd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eicar := clamdserver.EICAR()
	padded := append([]byte("prefix "), eicar...)
	body := clamdserver.BodySignatureName + ".UNOFFICIAL"
	tests := []struct {
		name    string
		sigs    bool
		maxFile int64
		data    []byte
		ids     []string
		skipped int
	}{
		{"clamd finds eicar in a file", false, 1 << 20, padded, []string{body}, 0},
		{"clamd and both hash signatures, one read", true, 1 << 20, eicar, []string{body, clamdserver.MD5SignatureName, clamdserver.HashSignatureName}, 0},
		{"clean file", true, 1 << 20, []byte("hello"), nil, 0},
		{"over clamd_max_file: skipped, hashes still checked", true, 10, eicar, []string{clamdserver.MD5SignatureName, clamdserver.HashSignatureName}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Checker{Clamd: client, ClamdMaxFile: tc.maxFile}
			if tc.sigs {
				c.Signatures = signatureMatcher(t)
			}
			fs, err := c.Check(context.Background(), "/app/f", "sha256:bb", int64(len(tc.data)), bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(fs); !slices.Equal(got, tc.ids) {
				t.Fatalf("findings %q, want %q", got, tc.ids)
			}
			for _, f := range fs {
				if f.SHA256 != sha(tc.data) || f.Path != "/app/f" || f.Layer != "sha256:bb" {
					t.Fatalf("finding %+v", f)
				}
			}
			if got := c.Stats().Skipped; got != tc.skipped {
				t.Fatalf("skipped %d, want %d", got, tc.skipped)
			}
		})
	}
	srv.Stop()
	for _, sigs := range []bool{false, true} {
		c := &Checker{Clamd: client, ClamdMaxFile: 1 << 20}
		if sigs {
			c.Signatures = signatureMatcher(t)
		}
		if fs, err := c.Check(context.Background(), "/app/f", "sha256:bb", int64(len(eicar)), bytes.NewReader(eicar)); err == nil {
			t.Fatalf("clamd down (signatures %v): findings %v and no error", sigs, fs)
		}
	}
}

func TestFindingsAreBounded(t *testing.T) {
	c := &Checker{Signatures: signatureMatcher(t)}
	eicar := clamdserver.EICAR()
	total := 0
	for range MaxFindings/2 + 1 { // two findings each
		fs, err := c.Check(context.Background(), "/x", "sha256:aa", int64(len(eicar)), bytes.NewReader(eicar))
		if err != nil {
			t.Fatal(err)
		}
		total += len(fs)
	}
	if total != MaxFindings || c.Stats().Truncated != 2 {
		t.Fatalf("%d findings, %d truncated; want %d and 2", total, c.Stats().Truncated, MaxFindings)
	}
}

func TestDatabaseErrorIsAnError(t *testing.T) {
	db, err := vulndb.Open(filepath.Join(t.TempDir(), "vulndb"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hsb, _ := clamdserver.EICARHashLines()
	os.WriteFile(filepath.Join(dir, "t.hsb"), []byte(hsb), 0o644)
	if _, err := db.Import(context.Background(), []string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	c := &Checker{Signatures: m}
	if _, err := c.Wants(12345); err == nil {
		t.Fatalf("closed database: %v", err)
	}
}
