package cache

import (
	"os"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A spool's disk blocks are allocated ahead of its writes, at most
// reserveStep past them and never past the announced size; the file's
// size stays what was written, so readers and the commit see only that.
// An upstream that announces a large blob and sends little holds little
// disk.
func TestSpoolReservesAheadBounded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, fsConfig(dir), 0)
	// Reserving is best effort: where the filesystem cannot, only the
	// upper bounds hold.
	probe, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		t.Fatal(err)
	}
	canReserve := unix.Fallocate(int(probe.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20) == nil
	probe.Close()
	os.Remove(probe.Name())
	allocated := func(in *ingest) (size, blocks int64) {
		t.Helper()
		fi, err := os.Stat(in.path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	for _, tc := range []struct {
		name          string
		announced     int64
		write         int
		wantAtLeast   int64 // allocated
		wantAtMost    int64
		wantSizeAfter int64
	}{
		{"large announced, little sent", 4 << 30, 1 << 20, 1<<20 + reserveStep, 1<<20 + reserveStep + 1<<20, 1 << 20},
		{"small blob", 100 << 10, 100 << 10, 100 << 10, 100<<10 + 64<<10, 100 << 10},
		{"size unknown", 0, 1 << 20, 1 << 20, 1<<20 + 1<<20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := s.newIngest(digest.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			defer in.cancel()
			in.size = tc.announced
			if _, err := in.Write(make([]byte, tc.write)); err != nil {
				t.Fatal(err)
			}
			size, blocks := allocated(in)
			if size != tc.wantSizeAfter {
				t.Errorf("spool size %d after writing %d, want %d", size, tc.write, tc.wantSizeAfter)
			}
			if tc.name == "size unknown" {
				// Nothing reserved: delayed allocation may not have
				// allocated the written bytes yet either.
				if blocks > tc.wantAtMost {
					t.Errorf("%d bytes allocated for %d written with no size announced", blocks, tc.write)
				}
				return
			}
			if !canReserve {
				tc.wantAtLeast = 0
			}
			if blocks < tc.wantAtLeast || blocks > tc.wantAtMost {
				t.Errorf("%d bytes allocated, want %d to %d", blocks, tc.wantAtLeast, tc.wantAtMost)
			}
		})
	}
}
