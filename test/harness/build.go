// Package harness starts and stops the portcullis binary for end-to-end and
// conformance tests: build it once per test process, run it on a free
// loopback port with a temporary data directory, wait until /readyz answers,
// and shut it down (SIGTERM, then SIGKILL) when the test ends.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildTimeout bounds one `go build`; a cold build of the proxy with its
// dependencies on a 2-core machine takes a minute or two.
const buildTimeout = 8 * time.Minute

// binDirPrefix names the per-process directory that holds built binaries.
const binDirPrefix = "portcullis-test-bin-"

// BuildPortcullis builds ./cmd/portcullis (CGO_ENABLED=0) and returns the
// path of the binary. It builds at most once per test process: the binary
// lives in os.TempDir()/portcullis-test-bin-<pid>/ and later calls, from any
// test or goroutine, reuse it.
func BuildPortcullis(t testing.TB) string {
	t.Helper()
	return BuildGoBinary(t, "portcullis", "./cmd/portcullis")
}

// BuildGoBinary builds the Go package pkg (a path relative to the module root
// such as "./cmd/portcullis", or an import path the module requires, such as
// a tool dependency) into os.TempDir()/portcullis-test-bin-<pid>/<name> unless
// that file already exists, and returns its path. A file lock (flock) keeps
// parallel tests, and other processes, from building the same file at once.
func BuildGoBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), binDirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	out := filepath.Join(dir, name)

	unlock, err := lockFile(out + ".lock")
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	defer unlock()

	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		return out
	}
	removeStaleBinDirs(dir)

	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("go build -o %s %s (in %s): %v\n%s", tmp, pkg, root, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	t.Logf("built %s from %s in %s", out, pkg, time.Since(start).Round(time.Millisecond))
	return out
}

// ModuleRoot returns the directory that holds the main module's go.mod, as
// reported by `go env GOMOD` run from the current directory.
func ModuleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// lockFile takes an exclusive flock on path, creating it if needed, and
// returns the function that releases it. flock locks belong to the open file,
// so two goroutines of one process exclude each other too.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// removeStaleBinDirs deletes, best effort, the binary directories of earlier
// test processes that no longer run, so built binaries do not pile up in the
// temporary directory.
func removeStaleBinDirs(own string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(own), binDirPrefix+"*"))
	for _, m := range matches {
		if m == own {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m), binDirPrefix))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		fi, err := os.Stat(m)
		if err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		_ = os.RemoveAll(m)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Main runs a test binary's tests, then removes the binaries it built:
// tests leave the temporary directory as they found it. Use it from
// TestMain: os.Exit(harness.Main(m)). Every process the tests start
// inherits an OSV source on a closed loopback port (unless one is set), so
// no server a test starts downloads the vulnerability database from the
// internet: tests bring their own data.
func Main(m *testing.M) int {
	if os.Getenv("PORTCULLIS_VULNDB_SOURCE_URL") == "" {
		_ = os.Setenv("PORTCULLIS_VULNDB_SOURCE_URL", offlineVulnDBSource)
	}
	code := m.Run()
	_ = os.RemoveAll(filepath.Join(os.TempDir(), binDirPrefix+strconv.Itoa(os.Getpid())))
	return code
}
