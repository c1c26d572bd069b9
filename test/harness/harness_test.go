package harness

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// fakeBin builds the stand-in for portcullis that honours the CLI contract.
func fakeBin(t *testing.T) string {
	t.Helper()
	return BuildGoBinary(t, "fakeportcullis", "./test/harness/internal/fakeportcullis")
}

func get(t *testing.T, url string) (int, string, error) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestStartKillRestartKeepsPortAndData(t *testing.T) {
	bin := fakeBin(t)
	p := StartPortcullis(t, bin, "--upstream", "up=http://127.0.0.1:1", "--default-upstream", "up")

	if !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.URL != "http://"+p.Addr {
		t.Fatalf("Addr %q, URL %q: want a loopback address and its http URL", p.Addr, p.URL)
	}
	if code, _, err := get(t, p.URL+"/readyz"); err != nil || code != 200 {
		t.Fatalf("GET /readyz = %d, %v; want 200", code, err)
	}
	if _, body, _ := get(t, p.URL+"/upstreams"); strings.TrimSpace(body) != "up=http://127.0.0.1:1" {
		t.Fatalf("the server saw upstreams %q; want the ones passed in args", body)
	}
	firstPid := p.Pid()

	p.Kill()
	if p.Running() {
		t.Fatal("still running after Kill")
	}
	if _, _, err := get(t, p.URL+"/readyz"); err == nil {
		t.Fatal("GET /readyz answered after Kill")
	}

	p.Restart(t)
	if p.Pid() == firstPid {
		t.Fatalf("Restart kept pid %d; want a new process", firstPid)
	}
	if code, _, err := get(t, p.URL+"/readyz"); err != nil || code != 200 {
		t.Fatalf("after Restart GET /readyz = %d, %v; want 200", code, err)
	}
	starts, err := os.ReadFile(filepath.Join(p.DataDir, "starts"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(starts), "pid "); n != 2 {
		t.Fatalf("data dir %s saw %d starts; want 2 (same data dir across Restart)", p.DataDir, n)
	}
	if !p.Logs.Contains("=== harness: restart ===") || strings.Count(p.Logs.String(), "listening on "+p.Addr) != 2 {
		t.Fatalf("logs do not show both runs on %s:\n%s", p.Addr, p.Logs)
	}

	if err := p.Stop(); err != nil {
		t.Fatalf("graceful Stop: %v", err)
	}
	if !p.Logs.Contains("fakeportcullis: shutting down") {
		t.Fatalf("SIGTERM did not reach the server:\n%s", p.Logs)
	}
	// Restart after a graceful stop works too.
	p.Restart(t)
	if !p.Running() {
		t.Fatal("not running after second Restart")
	}
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	bin := fakeBin(t)
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	proc, err := StartProcess(bin, []string{"serve", "--listen", addr, "--data", t.TempDir()}, []string{"FAKEPORTCULLIS_IGNORE_TERM=1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	if err := WaitReady(proc, "http://"+addr+"/readyz", readyTimeout); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = proc.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v; want an error saying it had to kill", err)
	}
	if proc.Running() || time.Since(start) > 5*time.Second {
		t.Fatalf("process still running %s after Stop", time.Since(start))
	}
}

func TestStartHonoursExplicitListenAndData(t *testing.T) {
	bin := fakeBin(t)
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	data := filepath.Join(t.TempDir(), "mydata")
	p := StartPortcullis(t, bin, "serve", "--listen="+addr, "--data", data)
	if p.Addr != addr || p.DataDir != data {
		t.Fatalf("Addr %q DataDir %q; want %q %q", p.Addr, p.DataDir, addr, data)
	}
	if strings.Count(strings.Join(p.args, " "), "--listen") != 1 || strings.Count(strings.Join(p.args, " "), "--data") != 1 {
		t.Fatalf("args %q: --listen/--data added although given", p.args)
	}
	if _, err := os.Stat(filepath.Join(data, "starts")); err != nil {
		t.Fatalf("server did not use the given data dir: %v", err)
	}
}

func TestBuildGoBinaryIsCachedPerProcess(t *testing.T) {
	a := fakeBin(t)
	fi, err := os.Stat(a)
	if err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("built binary %s: %v, mode %v", a, err, fi.Mode())
	}
	b := fakeBin(t)
	fi2, _ := os.Stat(b)
	if a != b || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("second build was not served from the cache: %s vs %s", a, b)
	}
	if want := filepath.Join(os.TempDir(), "portcullis-test-bin-"+strconv.Itoa(os.Getpid())); filepath.Dir(a) != want {
		t.Fatalf("binary in %s; want %s", filepath.Dir(a), want)
	}
}

// TestRealPortcullisLifecycle holds the harness to the real binary's CLI
// contract: serve with --listen/--data/--upstream, /readyz, a restart on the
// same port and data directory after a crash, and a clean exit on SIGTERM.
func TestRealPortcullisLifecycle(t *testing.T) {
	upstream := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer upstream.Close()
	bin := BuildPortcullis(t)
	p := StartPortcullis(t, bin, "--upstream", "test.invalid="+upstream.URL, "--default-upstream", "test.invalid")
	p.Kill()
	p.Restart(t)
	if code, _, err := get(t, p.URL+"/readyz"); err != nil || code != 200 {
		t.Fatalf("after Restart GET /readyz = %d, %v; want 200", code, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("SIGTERM did not make portcullis exit cleanly: %v", err)
	}
}

func TestFreePortIsLoopbackAndBindable(t *testing.T) {
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort = %d", port)
	}
}

func TestFlagValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{[]string{"serve", "--listen", "a:1"}, "a:1", true},
		{[]string{"serve", "--listen=a:2"}, "a:2", true},
		{[]string{"serve", "-listen", "a:3"}, "a:3", true},
		{[]string{"serve", "-listen=a:4"}, "a:4", true},
		{[]string{"serve", "--listener", "x"}, "", false},
		{[]string{"serve", "--listen"}, "", false},
		{[]string{"serve", "--", "--listen", "x"}, "", false},
	} {
		got, ok := flagValue(tc.args, "listen")
		if got != tc.want || ok != tc.ok {
			t.Errorf("flagValue(%q) = %q, %v; want %q, %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}
