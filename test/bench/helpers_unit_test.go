package bench

import (
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseStatusField(t *testing.T) {
	status := "Name:\tportcullis\nVmPeak:\t 1300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	for field, want := range map[string]int64{"VmHWM": 51200 << 10, "VmRSS": 40960 << 10} {
		got, err := parseStatusField(status, field)
		if err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", field, got, err, want)
		}
	}
	if _, err := parseStatusField(status, "VmSwap"); err == nil {
		t.Error("missing field: no error")
	}
	if _, err := parseStatusField(status, "Threads"); err == nil {
		t.Error("field without kB: no error")
	}
}

func TestCachedBlobPath(t *testing.T) {
	d := v1.Hash{Algorithm: "sha256", Hex: "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"}
	want := "/data/cache/blobs/sha256/ab/" + d.Hex + "/data"
	if got := cachedBlobPath("/data", d); got != want {
		t.Errorf("cachedBlobPath = %s, want %s", got, want)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (port cullis) S 1 4242 4242 0 -1 4194560 1000 0 0 0 37 5 0 0 20 0 9 0 100 1300000000 12800 18446744073709551615\n"
	got, err := parseStatCPU(stat)
	if want := 42 * clockTick; err != nil || got != want {
		t.Errorf("parseStatCPU = %v, %v; want %v", got, err, want)
	}
	if _, err := parseStatCPU("4242 (x) S 1"); err == nil {
		t.Error("short stat: no error")
	}
	if selfCPU() <= 0 {
		t.Error("selfCPU: no CPU time used")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestPaceAhead(t *testing.T) {
	const rate = 100 << 20 // 100 MiB/s: 1 MiB is due after 10 ms
	for _, tc := range []struct {
		sent    int64
		elapsed time.Duration
		want    time.Duration
	}{
		{0, 0, 0},
		{1 << 20, 0, 10 * time.Millisecond},
		{1 << 20, 4 * time.Millisecond, 6 * time.Millisecond},
		{1 << 20, 10 * time.Millisecond, 0},
		{1 << 20, time.Second, 0}, // behind: never a negative pause
		{256 << 20, 2 * time.Second, 560 * time.Millisecond},
	} {
		if got := paceAhead(tc.sent, rate, tc.elapsed); got != tc.want {
			t.Errorf("paceAhead(%d, %d, %v) = %v, want %v", tc.sent, rate, tc.elapsed, got, tc.want)
		}
	}
}
