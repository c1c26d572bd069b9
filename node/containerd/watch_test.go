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

// TestWatchKeepsRepairingWhenANameCannotBeWritten: a reloaded configuration
// with an upstream name containerd's directories cannot hold (the server
// accepts "[::1]:5000", the agent does not) is refused like an unreadable
// one, so the agent keeps repairing with the last good configuration. It
// used to make every later pass fail: a deleted _default/hosts.toml was
// never restored, and pulls of every registry without a directory went to
// the origin.
func TestWatchKeepsRepairingWhenANameCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defaultHosts := filepath.Join(dir, DefaultRegistry, HostsFile)
	bad := desired("ghcr.io", "[::1]:5000")
	calls := 0
	load := func() (Desired, error) {
		calls++
		switch calls {
		case 1:
			return desired("ghcr.io"), nil
		case 2:
			if err := os.Remove(defaultHosts); err != nil {
				t.Errorf("first pass did not write %s: %v", defaultHosts, err)
			}
		default:
			cancel() // the pass after this load is the last
		}
		return bad, nil
	}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if err := Watch(ctx, logger, dir, MinInterval, load); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if got, err := os.ReadFile(defaultHosts); err != nil || !strings.HasPrefix(string(got), Marker) {
		t.Errorf("deleted _default/hosts.toml not restored: %v %q", err, got)
	}
	if !strings.Contains(logs.String(), "[::1]:5000") || !strings.Contains(logs.String(), "keeping the last good one") {
		t.Errorf("the refused configuration is not reported with its name:\n%s", logs.String())
	}
	// A first configuration that cannot be written is an error, as in the
	// one-shot mode (an ended context: a Watch that accepts it returns at
	// once instead of running on).
	ended, stop := context.WithCancel(context.Background())
	stop()
	if err := Watch(ended, logger, t.TempDir(), MinInterval, func() (Desired, error) { return bad, nil }); err == nil {
		t.Error("a first configuration with an unwritable name was accepted")
	}
}
