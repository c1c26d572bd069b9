package containerd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchRepairsDriftAndKeepsLastGoodConfig: between passes a file is
// deleted and the configuration fails to load; the next pass restores the
// file from the last good configuration instead of removing anything.
func TestWatchRepairsDriftAndKeepsLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hosts := filepath.Join(dir, "ghcr.io", HostsFile)
	calls := 0
	load := func() (Desired, error) {
		calls++
		switch calls {
		case 1:
			return desired("ghcr.io"), nil
		case 2:
			if err := os.Remove(hosts); err != nil {
				t.Errorf("first pass did not write %s: %v", hosts, err)
			}
			return Desired{}, errors.New("config unreadable")
		default:
			cancel() // the pass after this load is the last
			return desired("ghcr.io", "quay.io"), nil
		}
	}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if err := Watch(ctx, logger, dir, MinInterval, load); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if calls != 3 {
		t.Fatalf("load called %d times, want 3", calls)
	}
	if got, err := os.ReadFile(hosts); err != nil || !strings.HasPrefix(string(got), Marker) {
		t.Errorf("drift not repaired: %v %q", err, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "quay.io", HostsFile)); err != nil {
		t.Errorf("reloaded configuration not applied: %v", err)
	}
	// Stopping leaves the files (checked above) and says so.
	if !strings.Contains(logs.String(), "stopped; the host configuration stays in place") {
		t.Errorf("no stop line in the log:\n%s", logs.String())
	}
}

func TestWatchRefusesBadIntervalAndFirstLoadError(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ok := func() (Desired, error) { return desired(), nil }
	for _, iv := range []time.Duration{0, time.Millisecond, 2 * time.Hour} {
		if err := Watch(context.Background(), logger, t.TempDir(), iv, ok); err == nil {
			t.Errorf("interval %s accepted", iv)
		}
	}
	bad := func() (Desired, error) { return Desired{}, errors.New("no config") }
	if err := Watch(context.Background(), logger, t.TempDir(), time.Second, bad); err == nil {
		t.Error("a first load error was not returned")
	}
}
