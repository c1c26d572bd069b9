package vulndb

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSignatureLine(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	tests := []struct {
		name, line string
		kind       SignatureKind
		want       Signature
		errHas     string
	}{
		{name: "hdb md5", line: strings.Repeat("0f", 16) + ":68:Eicar-Test-Signature", kind: SignatureHDB,
			want: Signature{Alg: AlgMD5, Digest: bytes.Repeat([]byte{0x0f}, 16), Size: 68, Name: "Eicar-Test-Signature"}},
		{name: "hsb sha256", line: sha + ":1024:Unix.Trojan.X-1", kind: SignatureHSB,
			want: Signature{Alg: AlgSHA256, Digest: bytes.Repeat([]byte{0xab}, 32), Size: 1024, Name: "Unix.Trojan.X-1"}},
		{name: "hsb sha1", line: strings.Repeat("CD", 20) + ":0:Empty.Sig", kind: SignatureHSB,
			want: Signature{Alg: AlgSHA1, Digest: bytes.Repeat([]byte{0xcd}, 20), Size: 0, Name: "Empty.Sig"}},
		{name: "any size with level", line: sha + ":*:Any.Sig:73", kind: SignatureHSB,
			want: Signature{Alg: AlgSHA256, Digest: bytes.Repeat([]byte{0xab}, 32), Size: AnySize, Name: "Any.Sig"}},
		{name: "min and max level", line: sha + ":5:Lv.Sig:73:255", kind: SignatureHSB,
			want: Signature{Alg: AlgSHA256, Digest: bytes.Repeat([]byte{0xab}, 32), Size: 5, Name: "Lv.Sig"}},
		{name: "md5 in hsb", line: strings.Repeat("0f", 16) + ":68:X", kind: SignatureHSB, errHas: "SHA1 has 40"},
		{name: "sha256 in hdb", line: sha + ":68:X", kind: SignatureHDB, errHas: "MD5 (.hdb) has 32"},
		{name: "not hex", line: strings.Repeat("zz", 32) + ":68:X", kind: SignatureHSB, errHas: "hexadecimal"},
		{name: "two fields", line: sha + ":68", kind: SignatureHSB, errHas: "fields"},
		{name: "six fields", line: sha + ":68:X:1:2:3", kind: SignatureHSB, errHas: "fields"},
		{name: "negative size", line: sha + ":-1:X", kind: SignatureHSB, errHas: "size"},
		{name: "size with sign", line: sha + ":+1:X", kind: SignatureHSB, errHas: "size"},
		{name: "huge size", line: sha + ":99999999999999999999:X", kind: SignatureHSB, errHas: "out of range"},
		{name: "max int size", line: sha + ":9223372036854775807:X", kind: SignatureHSB, errHas: "out of range"},
		{name: "empty size", line: sha + "::X", kind: SignatureHSB, errHas: "size"},
		{name: "empty name", line: sha + ":1:", kind: SignatureHSB, errHas: "name"},
		{name: "name with space", line: sha + ":1:a b", kind: SignatureHSB, errHas: "name"},
		{name: "name with control", line: sha + ":1:a\x1bb", kind: SignatureHSB, errHas: "name"},
		{name: "name with utf-8", line: sha + ":1:naïve", kind: SignatureHSB, errHas: "name"},
		{name: "long name", line: sha + ":1:" + strings.Repeat("n", maxSignatureName+1), kind: SignatureHSB, errHas: "name"},
		{name: "bad level", line: sha + ":1:X:abc", kind: SignatureHSB, errHas: "functionality level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSignatureLine([]byte(tc.line), tc.kind)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %+v, %v; want an error with %q", got, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Alg != tc.want.Alg || !bytes.Equal(got.Digest, tc.want.Digest) || got.Size != tc.want.Size || got.Name != tc.want.Name {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSignatureReader(t *testing.T) {
	md := strings.Repeat("0f", 16)
	tests := []struct {
		name, in string
		names    []string
		errHas   string
	}{
		{name: "comments, blank lines, CRLF, no final newline", in: "# feed\n\n" + md + ":1:A\r\n" + md + ":2:B", names: []string{"A", "B"}},
		{name: "empty file", in: "", names: nil},
		{name: "bad third line", in: md + ":1:A\n" + md + ":2:B\nnot a signature\n", errHas: "line 3"},
		{name: "long line", in: md + ":1:A\n" + md + ":1:" + strings.Repeat("x", 200<<10) + "\n", errHas: "line 2: longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr := newSignatureReader(strings.NewReader(tc.in), SignatureHDB)
			var names []string
			var err error
			for range 100 {
				var sig Signature
				sig, err = sr.next()
				if err != nil {
					break
				}
				names = append(names, sig.Name)
			}
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want one with %q", err, tc.errHas)
				}
				return
			}
			if err != errNoMoreSignatures || !slices.Equal(names, tc.names) {
				t.Fatalf("names %q, end %v; want %q", names, err, tc.names)
			}
		})
	}
}

// testFile is a file content with the signature lines that match it.
type testFile struct {
	data               []byte
	hsb256, hsb1, hdb5 string
}

func newTestFile(data string, name string) testFile {
	b := []byte(data)
	return testFile{
		data:   b,
		hsb256: fmt.Sprintf("%x:%d:%s-SHA256\n", sha256.Sum256(b), len(b), name),
		hsb1:   fmt.Sprintf("%x:%d:%s-SHA1\n", sha1.Sum(b), len(b), name),
		hdb5:   fmt.Sprintf("%x:%d:%s-MD5\n", md5.Sum(b), len(b), name),
	}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func matchFile(t testing.TB, m *SignatureMatcher, data []byte) (Need, []string) {
	t.Helper()
	need, err := m.Candidate(int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if need == 0 {
		return 0, nil
	}
	h, n, err := HashFile(bytes.NewReader(data), need)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("hash: %d bytes, %v", n, err)
	}
	names, err := m.Match(int64(len(data)), h)
	if err != nil {
		t.Fatal(err)
	}
	return need, names
}

func TestImportSignaturesAndMatch(t *testing.T) {
	db := openTestDB(t)
	bad := newTestFile("this is a known-bad file\n", "Bad")
	worse := newTestFile("and another one, a little longer\n", "Worse")
	dir := t.TempDir()
	writeFile(t, dir, "feed.hsb", "# a feed\n"+bad.hsb256+worse.hsb1)
	writeFile(t, dir, "feed.hdb", bad.hdb5)
	writeFile(t, dir, "ignored.txt", "not read\n")
	st, err := db.Import(context.Background(), []string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Signatures != 3 {
		t.Fatalf("imported %d signatures, want 3", st.Signatures)
	}
	status, err := db.Status()
	if err != nil || status.Signatures != 3 || status.Version == "" {
		t.Fatalf("status %+v, %v: want 3 signatures and a version", status, err)
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		data  []byte
		need  Need
		names []string
	}{
		{"md5 and sha256 of one file", bad.data, NeedMD5 | NeedSHA256, []string{"Bad-MD5", "Bad-SHA256"}},
		{"sha1 signature, sha256 for the finding", worse.data, NeedSHA1 | NeedSHA256, []string{"Worse-SHA1"}},
		{"same size as a signature, other content", bytes.Repeat([]byte("x"), len(bad.data)), NeedMD5 | NeedSHA256, nil},
		{"no signature of this size", []byte("clean"), 0, nil},
		{"empty file", nil, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			need, names := matchFile(t, m, tc.data)
			if need != tc.need || !slices.Equal(names, tc.names) {
				t.Fatalf("need %b, names %q; want %b, %q", need, names, tc.need, tc.names)
			}
		})
	}
}

func TestHashFileComputesOnlyWhatIsNeeded(t *testing.T) {
	data := []byte("some file")
	for _, need := range []Need{NeedMD5, NeedSHA1, NeedSHA256, NeedMD5 | NeedSHA256, 0} {
		h, _, err := HashFile(bytes.NewReader(data), need)
		if err != nil {
			t.Fatal(err)
		}
		check := func(n Need, got []byte, want []byte) {
			zero := make([]byte, len(got))
			switch {
			case need&n != 0 && !bytes.Equal(got, want):
				t.Errorf("need %b: hash %b is %x, want %x", need, n, got, want)
			case need&n == 0 && !bytes.Equal(got, zero):
				t.Errorf("need %b: hash %b computed (%x) though not needed", need, n, got)
			}
		}
		m5, s1, s256 := md5.Sum(data), sha1.Sum(data), sha256.Sum256(data)
		check(NeedMD5, h.MD5[:], m5[:])
		check(NeedSHA1, h.SHA1[:], s1[:])
		check(NeedSHA256, h.SHA256[:], s256[:])
		if h.Have != need {
			t.Errorf("Have %b, want %b", h.Have, need)
		}
	}
}

func TestAnySizeSignatures(t *testing.T) {
	db := openTestDB(t)
	f := newTestFile("matched at any size\n", "Any")
	line := strings.Replace(f.hsb256, fmt.Sprintf(":%d:", len(f.data)), ":*:", 1)
	importPaths(t, db, writeFile(t, t.TempDir(), "any.hsb", line))
	tests := []struct {
		name    string
		hashMax int64
		data    []byte
		need    Need
		names   []string
	}{
		{"within hash_max_file", 64 << 20, f.data, NeedSHA256, []string{"Any-SHA256"}},
		{"other file within: hashed, no match", 64 << 20, []byte("other"), NeedSHA256, nil},
		{"larger than hash_max_file", int64(len(f.data)) - 1, f.data, 0, nil},
		{"exactly hash_max_file", int64(len(f.data)), f.data, NeedSHA256, []string{"Any-SHA256"}},
		{"hash_max_file 0", 0, f.data, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := db.SignatureMatcher(tc.hashMax)
			if err != nil {
				t.Fatal(err)
			}
			need, names := matchFile(t, m, tc.data)
			if need != tc.need || !slices.Equal(names, tc.names) {
				t.Fatalf("need %b, names %q; want %b, %q", need, names, tc.need, tc.names)
			}
		})
	}
}

func importPaths(t testing.TB, db *DB, paths ...string) ImportStats {
	t.Helper()
	st, err := db.Import(context.Background(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNoSignaturesNoCandidates(t *testing.T) {
	db := openTestDB(t)
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Empty() {
		t.Fatal("empty database has signatures")
	}
	if need, err := m.Candidate(68); need != 0 || err != nil {
		t.Fatalf("Candidate: %b, %v", need, err)
	}
}

func TestImportSignaturesAllOrNothing(t *testing.T) {
	for _, budget := range []int{defaultStageBudget, 1} { // in place, and built beside
		t.Run(fmt.Sprint("budget ", budget), func(t *testing.T) {
			db := openTestDB(t)
			db.stageBudget = budget
			old := newTestFile("imported first\n", "Old")
			importPaths(t, db, writeFile(t, t.TempDir(), "feed.hsb", old.hsb256))
			before := db.Version()
			fresh := newTestFile("imported second\n", "New")
			dir := t.TempDir()
			writeFile(t, dir, "a.hsb", fresh.hsb256)
			writeFile(t, dir, "feed.hsb", fresh.hsb1) // would replace the old feed
			bad := writeFile(t, dir, "z.hdb", fresh.hdb5+fresh.hdb5+"0123:12:Short\n")
			_, err := db.Import(context.Background(), []string{dir}, nil)
			if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 3") {
				t.Fatalf("error %v, want one naming %s and line 3", err, bad)
			}
			if v := db.Version(); v != before {
				t.Fatalf("version %s after a refused import, was %s", v, before)
			}
			m, err := db.SignatureMatcher(64 << 20)
			if err != nil {
				t.Fatal(err)
			}
			if _, names := matchFile(t, m, old.data); !slices.Equal(names, []string{"Old-SHA256"}) {
				t.Fatalf("old signature after a refused import: %q", names)
			}
			if _, names := matchFile(t, m, fresh.data); names != nil {
				t.Fatalf("refused import left %q", names)
			}
			if files, _ := filepath.Glob(filepath.Join(db.dir, buildPattern)); len(files) > 0 {
				t.Fatalf("left %q", files)
			}
		})
	}
}

func TestReimportReplacesAFeed(t *testing.T) {
	db := openTestDB(t)
	a, b := newTestFile("first version\n", "A"), newTestFile("second version\n", "B")
	dir := t.TempDir()
	feed := writeFile(t, dir, "feed.hsb", a.hsb256)
	other := writeFile(t, t.TempDir(), "other.hdb", b.hdb5)
	importPaths(t, db, feed, other)
	v1 := db.Version()
	if st := importPaths(t, db, feed); st.Signatures != 1 || db.Version() != v1 {
		t.Fatalf("same feed again: %d signatures, version %s (was %s)", st.Signatures, db.Version(), v1)
	}
	writeFile(t, dir, "feed.hsb", b.hsb256)
	importPaths(t, db, feed)
	if db.Version() == v1 {
		t.Fatal("version unchanged by a changed feed")
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, names := matchFile(t, m, a.data); names != nil {
		t.Fatalf("withdrawn signature still matches: %q", names)
	}
	// The other file's signature stays: only feed.hsb was replaced.
	if _, names := matchFile(t, m, b.data); !slices.Equal(names, []string{"B-MD5", "B-SHA256"}) {
		t.Fatalf("names %q", names)
	}
	if st, _ := db.Status(); st.Signatures != 2 {
		t.Fatalf("status: %d signatures, want 2", st.Signatures)
	}
}

func TestDuplicateSignatureFileNames(t *testing.T) {
	db := openTestDB(t)
	f := newTestFile("x\n", "X")
	p1 := writeFile(t, t.TempDir(), "feed.hsb", f.hsb256)
	p2 := writeFile(t, t.TempDir(), "feed.hsb", f.hsb1)
	if _, err := db.Import(context.Background(), []string{p1, p2}, nil); err == nil || !strings.Contains(err.Error(), "two files named feed.hsb") {
		t.Fatalf("error %v", err)
	}
}

// A feed larger than the stage budget is written in batches into a copy
// (memory holds one batch, not the file), and every signature arrives.
func TestLargeSignatureFileInBatches(t *testing.T) {
	db := openTestDB(t)
	db.stageBudget = 16 << 10
	var sb strings.Builder
	const n = 20000
	for i := range n {
		fmt.Fprintf(&sb, "%x:%d:Sig-%d\n", sha256.Sum256([]byte(fmt.Sprint(i))), 1000+i%50, i)
	}
	st := importPaths(t, db, writeFile(t, t.TempDir(), "big.hsb", sb.String()))
	if st.Signatures != n {
		t.Fatalf("%d signatures, want %d", st.Signatures, n)
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		var h FileHashes
		h.Have, h.SHA256 = NeedSHA256, sha256.Sum256([]byte(fmt.Sprint(i)))
		names, err := m.Match(int64(1000+i%50), h)
		if err != nil || !slices.Equal(names, []string{fmt.Sprint("Sig-", i)}) {
			t.Fatalf("signature %d: %q, %v", i, names, err)
		}
	}
}

func TestMalwareFileFinding(t *testing.T) {
	f := MalwareFileFinding("Eicar-Test-Signature", "/usr/bin/x", "sha256:aa", "bb")
	if f.Kind != KindMalware || f.ID != "Eicar-Test-Signature" || f.Path != "/usr/bin/x" || f.Layer != "sha256:aa" || f.SHA256 != "bb" || f.Severity != "CRITICAL" {
		t.Fatalf("%+v", f)
	}
}

func FuzzSignatureFile(f *testing.F) {
	md, sha := strings.Repeat("0f", 16), strings.Repeat("ab", 32)
	f.Add([]byte(md+":68:Eicar-Test-Signature\n"), true)
	f.Add([]byte("# c\n"+sha+":*:Any:73\r\n"+strings.Repeat("cd", 20)+":1:S1"), false)
	f.Add([]byte(sha+":1:a b\n"), false)
	f.Add([]byte(md+"::\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, hdb bool) {
		kind := SignatureHSB
		if hdb {
			kind = SignatureHDB
		}
		sr := newSignatureReader(bytes.NewReader(data), kind)
		// Every line read consumes at least one byte: the loop ends.
		for range len(data) + 1 {
			sig, err := sr.next()
			if err != nil {
				return
			}
			want := map[HashAlg]int{AlgMD5: 16, AlgSHA1: 20, AlgSHA256: 32}[sig.Alg]
			if want == 0 || len(sig.Digest) != want || (hdb != (sig.Alg == AlgMD5)) {
				t.Fatalf("signature %+v from a %v file", sig, kind)
			}
			if sig.Size < AnySize || sig.Name == "" || len(sig.Name) > maxSignatureName || strings.ContainsAny(sig.Name, ": \n") {
				t.Fatalf("signature %+v", sig)
			}
		}
		t.Fatal("reader did not end")
	})
}

func TestSharedSignatureMatcher(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vulndb")
	s := NewShared(dir)
	m, release, err := s.SignatureMatcher(context.Background(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Empty() || m.Version() != "" || s.db != nil {
		t.Fatalf("no signatures: empty %v, version %q, file held %v", m.Empty(), m.Version(), s.db != nil)
	}
	release()
	f := newTestFile("bad\n", "Bad")
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	importPaths(t, db, writeFile(t, t.TempDir(), "feed.hsb", f.hsb256))
	db.Close()
	m, release, err = s.SignatureMatcher(context.Background(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if s.db == nil {
		t.Fatal("signatures: the file is not held for the scan")
	}
	if _, names := matchFile(t, m, f.data); !slices.Equal(names, []string{"Bad-SHA256"}) {
		t.Fatalf("names %q", names)
	}
	v1 := m.Version()
	release()
	release() // twice is once
	if s.db != nil || s.users != 0 {
		t.Fatalf("after release: held %v, users %d", s.db != nil, s.users)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	importPaths(t, db, writeFile(t, t.TempDir(), "feed2.hdb", f.hdb5))
	m2, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if v1 == "" || m2.Version() == v1 {
		t.Fatalf("signature set version %q, then %q", v1, m2.Version())
	}
}

// BenchmarkCandidateNoMatch is the cost the walk adds to a file whose size
// no signature has (go test -bench Candidate ./scanner/vulndb).
func BenchmarkCandidateNoMatch(b *testing.B) {
	db := openTestDB(b)
	var sb strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sb, "%x:%d:Sig-%d\n", sha256.Sum256([]byte(fmt.Sprint(i))), 100000+i, i)
	}
	importPaths(b, db, writeFile(b, b.TempDir(), "big.hsb", sb.String()))
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if need, err := m.Candidate(int64(i % 50000)); need != 0 || err != nil {
			b.Fatal(need, err)
		}
	}
}

func TestSizeIndexAgreesWithTheDatabase(t *testing.T) {
	db := openTestDB(t)
	var hsb, hdb strings.Builder
	sizes := map[int]bool{}
	for i := range 300 {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		var size int
		switch i % 3 {
		case 0:
			size = 100 + i%120
			fmt.Fprintf(&hsb, "%x:%d:S256-%d\n", sum, size, i)
		case 1:
			size = 100 + i%70
			fmt.Fprintf(&hsb, "%x:%d:S1-%d\n", sum[:20], size, i)
		case 2:
			size = 100 + i%90
			fmt.Fprintf(&hdb, "%x:%d:M-%d\n", sum[:16], size, i)
		}
		sizes[size] = true
	}
	anySum := sha256.Sum256([]byte("any"))
	fmt.Fprintf(&hdb, "%x:*:AnyMD5\n", anySum[:16])
	dir := t.TempDir()
	writeFile(t, dir, "a.hsb", hsb.String())
	writeFile(t, dir, "b.hdb", hdb.String())
	importPaths(t, db, dir)
	idx, err := db.SignatureSizes()
	if err != nil {
		t.Fatal(err)
	}
	if idx.Len() != len(sizes) {
		t.Fatalf("%d sizes indexed, want %d", idx.Len(), len(sizes))
	}
	for _, hashMax := range []int64{0, 150, 64 << 20} {
		m, err := db.SignatureMatcher(hashMax)
		if err != nil {
			t.Fatal(err)
		}
		if idx.Version() != m.Version() || idx.Version() == "" {
			t.Fatalf("index version %q, matcher %q", idx.Version(), m.Version())
		}
		for size := int64(0); size < 300; size++ {
			want, err := m.Candidate(size)
			if err != nil {
				t.Fatal(err)
			}
			if got := idx.Candidate(size, hashMax); got != want {
				t.Fatalf("hash max %d, size %d: index says %b, database %b", hashMax, size, got, want)
			}
		}
	}
	db.maxIndexedSizes = len(sizes) - 1
	if _, err := db.SignatureSizes(); err == nil || !strings.Contains(err.Error(), "distinct signature sizes") {
		t.Fatalf("bound: %v", err)
	}
	empty, err := openTestDB(t).SignatureSizes()
	if err != nil || empty.Len() != 0 || empty.Version() != "" || empty.Candidate(68, 64<<20) != 0 {
		t.Fatalf("empty database: %+v, %v", empty, err)
	}
}

// BenchmarkSizeIndexCandidate is what the server's walk adds to a file:
// a binary search among the signatures' sizes.
func BenchmarkSizeIndexCandidate(b *testing.B) {
	db := openTestDB(b)
	var sb strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&sb, "%x:%d:Sig-%d\n", sha256.Sum256([]byte(fmt.Sprint(i))), 100000+2*i, i)
	}
	importPaths(b, db, writeFile(b, b.TempDir(), "big.hsb", sb.String()))
	idx, err := db.SignatureSizes()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if idx.Candidate(int64(100001+2*(i%100000)), 64<<20) != 0 {
			b.Fatal("odd sizes have no signature")
		}
	}
}

// OSV records and signatures live side by side: importing one kind leaves
// the other as it was, and both count in the version.
func TestSignaturesBesideRecords(t *testing.T) {
	db := openTestDB(t)
	f := newTestFile("bad\n", "Bad")
	importPaths(t, db, writeFile(t, t.TempDir(), "feed.hsb", f.hsb256))
	v1 := db.Version()
	st := importValues(t, db, goRecords()...)
	if st.Records == 0 || st.Signatures != 0 {
		t.Fatalf("records import: %+v", st)
	}
	status, err := db.Status()
	if err != nil || status.Signatures != 1 || status.Records != st.Records || db.Version() == v1 {
		t.Fatalf("status %+v (version was %s), %v", status, v1, err)
	}
	m, err := db.SignatureMatcher(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, names := matchFile(t, m, f.data); !slices.Equal(names, []string{"Bad-SHA256"}) {
		t.Fatalf("signature after a records import: %q", names)
	}
	fs, err := db.Match(context.Background(), []Query{{Ecosystem: "Go", Name: "stdlib", Version: "1.26.0"}})
	if err != nil || len(fs) == 0 {
		t.Fatalf("records beside signatures: %v, %v", fs, err)
	}
}
