package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// validStateFile writes a state file through OpenBolt with some content
// and returns its path and bytes.
func validStateFile(t testing.TB, entries int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range entries {
		if err := b.PutTag(ctx, fmt.Sprintf("up.test/team/app:%d", i), TagEntry{Digest: fmt.Sprintf("sha256:%064d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, raw
}

func TestDamagedStateFileIsReportedNotOpened(t *testing.T) {
	_, valid := validStateFile(t, 500)
	pageSize := int(parseMetaForTest(t, valid).pageSize)
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0xff
		return b
	}
	random := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	meta := parseMetaForTest(t, valid)
	tests := []struct {
		name    string
		content []byte
		errHas  string // "" means it must open
	}{
		{"valid", valid, ""},
		{"zero length", []byte{}, "empty"},
		{"random bytes", random, "no valid meta page"},
		{"truncated to three pages", valid[:3*pageSize], "truncated"},
		{"truncated mid-page", valid[:len(valid)-100], "truncated"},
		{"byte flipped in both meta pages", flip(flip(valid, 20), pageSize+20), "no valid meta page"},
		// bbolt's crash recovery: a torn last commit leaves one meta page
		// invalid and bbolt uses the other; so does the check.
		{"byte flipped in one meta page", flip(valid, 40), ""},
		{"root page number flipped", flip(valid, int(meta.root)*pageSize), "page"},
		{"root page element count flipped", flip(valid, int(meta.root)*pageSize+11), "page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(path)
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				b.Close()
				return
			}
			if err == nil {
				b.Close()
				t.Fatal("damaged state file opened")
			}
			msg := err.Error()
			if !errors.Is(err, errCorruptState) || !strings.Contains(msg, tc.errHas) || !strings.Contains(msg, path) || !strings.Contains(msg, "move it aside") {
				t.Fatalf("error %q: want it to name %s as corrupt, say %q and how to recover", msg, path, tc.errHas)
			}
			if strings.Contains(msg, "another portcullis") {
				t.Fatalf("damaged file reported as locked: %q", msg)
			}
		})
	}
}

func TestLockedStateFileSaysSo(t *testing.T) {
	path, _ := validStateFile(t, 1)
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = OpenBolt(path)
	if !errors.Is(err, ErrStateLocked) || !strings.Contains(err.Error(), "another portcullis") {
		t.Fatalf("second open: %v, want ErrStateLocked", err)
	}
}

func TestValidStateFileKeepsItsContent(t *testing.T) {
	path, _ := validStateFile(t, 50)
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e, err := b.Tag(context.Background(), "up.test/team/app:49")
	if err != nil || e.Digest != fmt.Sprintf("sha256:%064d", 49) {
		t.Fatalf("tag after reopen: %+v %v", e, err)
	}
}

func parseMetaForTest(t testing.TB, raw []byte) boltMeta {
	t.Helper()
	m, err := checkBoltHeader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// BenchmarkCheckStateFile measures the open-time check on a state file of
// about entries*1 KiB.
func BenchmarkCheckStateFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("x", 1000)
	const entries = 300_000
	for start := 0; start < entries; start += 10_000 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < start+10_000; i++ {
				if err := tx.Bucket(scansBucket).Put([]byte(fmt.Sprintf("sha256:%064d", i)), []byte(value)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	fi, _ := os.Stat(path)
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	for b.Loop() {
		if err := checkStateFile(path); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzCheckBoltFile(f *testing.F) {
	_, valid := validStateFile(f, 20)
	f.Add(valid)
	f.Add(valid[:4096])
	f.Add([]byte{})
	mangled := bytes.Clone(valid)
	mangled[2*4096+9] ^= 0x40
	f.Add(mangled)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := bytes.NewReader(raw)
		meta, err := checkBoltHeader(r, int64(len(raw)))
		if err != nil {
			return
		}
		_ = walkBoltPages(r, meta) // must not panic, hang or allocate past the file
	})
}
