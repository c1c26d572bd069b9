package scanner

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/osv-scalibr/extractor/filesystem"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"
)

func rpmList(t *testing.T, db []byte) []string {
	t.Helper()
	pkgs, err := extractRPMDB(context.Background(), &filesystem.ScanInput{Path: "var/lib/rpm/Packages", Reader: bytes.NewReader(db)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pkgs {
		m := p.Metadata.(*rpmmeta.Metadata)
		out = append(out, strings.Join([]string{p.Name, p.Version, m.Architecture, m.SourceRPM, p.Licenses[0], m.Vendor}, " "))
	}
	return out
}

func TestRPMDatabases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture string
		want    []string
	}{
		{"rpm/rpmdb.sqlite.gz", []string{
			"tiny-lib 0.9-1.el9 noarch tiny-lib-0.9-1.el9.src.rpm Apache-2.0 ",
			"hello-portcullis 1.2.3-4.fc40 noarch hello-portcullis-1.2.3-4.fc40.src.rpm MIT Portcullis",
		}},
		{"rpm/Packages-libuuid.gz", []string{
			"libuuid 2.32.1-42.el8_8 x86_64 util-linux-2.32.1-42.el8_8.src.rpm BSD Red Hat, Inc.",
		}},
	}
	for _, tc := range tests {
		got := rpmList(t, readFixture(t, tc.fixture))
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.fixture, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// go-rpmdb's test databases (real images: CentOS 5 to 8, UBI 8 on s390x,
// Fedora 35, CBL-Mariner) are in the module cache when the module is; the
// counts are what rpm -qa lists for them (gpg-pubkey entries excluded).
func TestRPMDatabasesFromRealImages(t *testing.T) {
	t.Parallel()
	dir := moduleDir(t, "github.com/erikvarga/go-rpmdb")
	for db, want := range map[string]int{
		"centos5-plain/Packages":           110,
		"centos6-many/Packages":            325,
		"centos7-many/Packages":            395,
		"centos8-modularitylabel/Packages": 517,
		"ubi8-s390x/Packages":              181,
		"fedora35/rpmdb.sqlite":            137,
		"cbl-mariner-2.0/rpmdb.sqlite":     129,
	} {
		data, err := os.ReadFile(filepath.Join(dir, "pkg/testdata", db))
		if err != nil {
			t.Fatalf("go-rpmdb test data: %v", err)
		}
		if got := len(rpmList(t, data)); got != want {
			t.Errorf("%s: %d packages, want %d", db, got, want)
		}
	}
}

func TestRPMMalformed(t *testing.T) {
	t.Parallel()
	sqlite := readFixture(t, "rpm/rpmdb.sqlite.gz")
	bdb := readFixture(t, "rpm/Packages-libuuid.gz")
	corrupt := func(b []byte, off int, v ...byte) []byte {
		c := bytes.Clone(b)
		copy(c[off:], v)
		return c
	}
	loopPage := bytes.Clone(bdb)
	// Point every overflow page at itself: the chain must not loop for ever.
	for pg := 1; pg*4096 < len(loopPage); pg++ {
		if loopPage[pg*4096+25] == bdbPageOverflow {
			binary.LittleEndian.PutUint32(loopPage[pg*4096+16:], uint32(pg))
		}
	}
	for name, data := range map[string][]byte{
		"empty":                  nil,
		"sqlite header only":     sqlite[:100],
		"sqlite bad page size":   corrupt(sqlite, 16, 0x00, 0x03),
		"sqlite truncated":       sqlite[:8192],
		"sqlite bad page type":   corrupt(sqlite, 4096, 0x42),
		"bdb truncated metadata": bdb[:100],
		"bdb bad page size":      corrupt(bdb, 20, 0x11, 0x11, 0, 0),
		"bdb overflow loop":      loopPage,
		"bdb encrypted":          corrupt(bdb, 24, 1),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := extractRPMDB(context.Background(), &filesystem.ScanInput{Reader: bytes.NewReader(data)})
			if err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestRPMHeaderMalformed(t *testing.T) {
	t.Parallel()
	header := func(il, dl uint32, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, il)
		return append(binary.BigEndian.AppendUint32(b, dl), rest...)
	}
	for name, b := range map[string][]byte{
		"short":            {0, 0, 0},
		"no entries":       header(0, 0),
		"too many entries": header(0x10000, 0),
		"data past end":    header(1, 100, make([]byte, 16)...),
	} {
		if _, err := parseRPMHeader(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// An entry pointing past the data store is ignored, not read.
	entry := binary.BigEndian.AppendUint32(nil, rpmTagName)
	entry = binary.BigEndian.AppendUint32(entry, rpmTypeString)
	entry = binary.BigEndian.AppendUint32(entry, 1000)
	entry = binary.BigEndian.AppendUint32(entry, 1)
	h, err := parseRPMHeader(header(1, 4, append(entry, 'a', 'b', 'c', 0)...))
	if err != nil || h.name != "" {
		t.Errorf("header = %+v, %v", h, err)
	}
}
