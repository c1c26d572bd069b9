package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/test/harness"
)

// rssRun is a program run under test/bench/peakrss, which reports the
// program's own peak RSS: the ru_maxrss a benchmark reads of its own
// child is at least the benchmark's (see peakrss).
type rssRun struct {
	*exec.Cmd
	report  string
	started int // the program's pid, once read from the report
}

func peakRSSCommand(ctx context.Context, tb testing.TB, bin string, args ...string) *rssRun {
	tb.Helper()
	wrapper := harness.BuildGoBinary(quietTB{tb}, "benchpeakrss", "./test/bench/peakrss")
	report := filepath.Join(tb.TempDir(), "peakrss")
	argv := append([]string{"-report", report, "--", bin}, args...)
	return &rssRun{Cmd: exec.CommandContext(ctx, wrapper, argv...), report: report}
}

// pid is the program's pid, once peakrss has started it; the report is
// read until it names one.
func (r *rssRun) pid() (int, bool) {
	if r.started == 0 {
		v, err := r.field("pid")
		if err != nil {
			return 0, false
		}
		r.started = int(v)
	}
	return r.started, true
}

// maxRSS is the program's peak RSS in bytes, once it has exited.
func (r *rssRun) maxRSS() (int64, error) { return r.field("maxrss") }

func (r *rssRun) field(name string) (int64, error) {
	raw, err := os.ReadFile(r.report)
	if err != nil {
		return 0, err
	}
	return parseReportField(string(raw), name)
}

// parseReportField reads "name value" from peakrss's report; only whole
// lines count, as the report may be read while it is written.
func parseReportField(report, name string) (int64, error) {
	for line := range strings.Lines(report) {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok || !strings.HasSuffix(v, "\n") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(v, "\n"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("peakrss report %s: %w", name, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("peakrss report: no %s yet", name)
}

// TestPeakRSSIsTheProgramsOwn runs programs of known size under peakrss
// while this process holds far more than they do: the figure must be
// theirs, not this process's (which a direct child's ru_maxrss reports).
func TestPeakRSSIsTheProgramsOwn(t *testing.T) {
	const ballastMiB, ddMiB = 256, 64
	ballast := make([]byte, ballastMiB<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	for _, tc := range []struct {
		name     string
		argv     []string
		min, max int64
	}{
		// dd reads one 64 MiB block of zeros into a buffer of that size.
		{"dd", []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=" + strconv.Itoa(ddMiB) + "M", "count=1", "status=none"}, ddMiB << 20, (ddMiB + 32) << 20},
		{"true", []string{"true"}, 1, 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, err := exec.LookPath(tc.argv[0])
			if err != nil {
				t.Fatal(err)
			}
			run := peakRSSCommand(t.Context(), t, bin, tc.argv[1:]...)
			if out, err := run.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", tc.argv, err, out)
			}
			if _, ok := run.pid(); !ok {
				t.Error("the report has no pid")
			}
			got, err := run.maxRSS()
			if err != nil {
				t.Fatal(err)
			}
			if got < tc.min || got > tc.max {
				t.Errorf("peak RSS of %v: %d MiB, want %d to %d MiB (this process holds %d MiB)", tc.argv, got>>20, tc.min>>20, tc.max>>20, ballastMiB)
			}
		})
	}
	runtime.KeepAlive(ballast)
}

func TestParseReportField(t *testing.T) {
	for _, tc := range []struct {
		report, name string
		want         int64
		ok           bool
	}{
		{"pid 12\nmaxrss 4096\n", "maxrss", 4096, true},
		{"pid 12\n", "pid", 12, true},
		{"pid 12\n", "maxrss", 0, false},
		{"pid 12\nmaxrss 40", "maxrss", 0, false}, // a line still being written
		{"pid x\n", "pid", 0, false},
		{"", "pid", 0, false},
	} {
		got, err := parseReportField(tc.report, tc.name)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseReportField(%q, %q) = %d, %v; want %d, ok %v", tc.report, tc.name, got, err, tc.want, tc.ok)
		}
	}
}
