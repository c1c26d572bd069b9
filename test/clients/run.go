// Package clients drives real registry clients (skopeo, containerd's ctr,
// crane) against a registry or portcullis on loopback, the way users run
// them. Helpers that need a missing tool fail the test with the command that
// installs it; they never skip.
package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// clientTimeout bounds one client command; images used in tests are small.
const clientTimeout = 2 * time.Minute

// lookPath returns the path of tool or fails the test with how to install it.
func lookPath(t testing.TB, tool, install string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found in PATH (%v): install it with `%s`", tool, err, install)
	}
	return p
}

// run runs bin with args, bounded by clientTimeout and ctx, with env added
// to the current environment. It returns stdout and stderr combined, and
// logs the command line and its output to t.
func run(ctx context.Context, t testing.TB, bin string, args, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	b, err := cmd.CombinedOutput()
	out := string(b)
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s timed out after %s: %w", bin, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("$ %s %s\n(%s, err=%v)\n%s", bin, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, out)
	return out, err
}

// writeFile writes data to path or fails the test.
func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// mkdirAll creates dir or fails the test.
func mkdirAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
}

// execOutput runs a command without logging, for polling loops.
func execOutput(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = time.Second
	b, err := cmd.CombinedOutput()
	return string(b), err
}
