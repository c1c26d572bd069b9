package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// readyTimeout bounds the wait for GET /readyz to answer 200.
	readyTimeout = 20 * time.Second
	// stopGrace is how long a SIGTERM'd portcullis may take to exit.
	stopGrace = 5 * time.Second
	// logTail is how much output a failing test shows.
	logTail = 256 << 10
)

// Portcullis is a running portcullis server.
type Portcullis struct {
	Addr    string     // 127.0.0.1:PORT it listens on
	URL     string     // http://127.0.0.1:PORT
	DataDir string     // its --data directory
	Logs    *LogBuffer // stdout and stderr of every run, restarts included

	bin  string
	args []string // full argument list, --listen and --data included

	mu   sync.Mutex
	proc *Process
}

// StartPortcullis runs bin with args and waits (at most 20 s) until GET
// /readyz answers 200. args are the command line after the binary name; when
// they start with a flag, "serve" is put in front. Unless args give them,
// "--listen 127.0.0.1:<free port>" and "--data <t.TempDir()>" are added.
//
// The process runs in its own process group. When the test ends it gets
// SIGTERM, then SIGKILL after 5 s; a failed test shows its output.
func StartPortcullis(t testing.TB, bin string, args ...string) *Portcullis {
	t.Helper()
	args = append([]string(nil), args...)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		args = append([]string{"serve"}, args...)
	}
	p := &Portcullis{bin: bin, Logs: &LogBuffer{}}
	if v, ok := flagValue(args, "listen"); ok {
		p.Addr = v
	} else {
		p.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		args = append(args, "--listen", p.Addr)
	}
	if v, ok := flagValue(args, "data"); ok {
		p.DataDir = v
	} else {
		p.DataDir = t.TempDir()
		args = append(args, "--data", p.DataDir)
	}
	p.URL = "http://" + hostPortForURL(p.Addr)
	p.args = args

	// Cleanups run last-registered first: stop the process, then show logs.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("portcullis %s output:\n%s", strings.Join(p.args, " "), p.Logs.tail(logTail))
		}
	})
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop portcullis: %v", err)
		}
	})
	p.start(t)
	return p
}

// start launches the process and waits until it is ready.
func (p *Portcullis) start(t testing.TB) {
	t.Helper()
	proc, err := StartProcess(p.bin, p.args, offlineVulnDB(), p.Logs)
	if err != nil {
		t.Fatalf("start portcullis: %v", err)
	}
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()
	t.Logf("started portcullis (pid %d): %s %s", proc.Pid(), p.bin, strings.Join(p.args, " "))
	if err := WaitReady(proc, p.URL+"/readyz", readyTimeout); err != nil {
		t.Fatalf("portcullis not ready: %v\noutput:\n%s", err, p.Logs.tail(logTail))
	}
}

// Kill sends SIGKILL (to the whole process group) and waits for the exit:
// a crash, with no graceful shutdown.
func (p *Portcullis) Kill() {
	if proc := p.process(); proc != nil {
		proc.Kill()
	}
}

// Stop sends SIGTERM, waits up to 5 s, then SIGKILL. It returns nil when the
// process exited with status 0 on its own, which is what a graceful shutdown
// must do, and nil when it had already exited before.
func (p *Portcullis) Stop() error {
	proc := p.process()
	if proc == nil || !proc.Running() {
		return nil
	}
	return proc.Stop(stopGrace)
}

// Restart starts portcullis again with the same arguments, port and data
// directory, and waits until it is ready. A process still running is first
// stopped gracefully.
func (p *Portcullis) Restart(t testing.TB) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Logf("restart: stop: %v", err)
	}
	fmt.Fprintf(p.Logs, "=== harness: restart ===\n")
	p.start(t)
}

// Running reports whether the process is alive.
func (p *Portcullis) Running() bool {
	proc := p.process()
	return proc != nil && proc.Running()
}

// Pid returns the process id of the current run.
func (p *Portcullis) Pid() int {
	if proc := p.process(); proc != nil {
		return proc.Pid()
	}
	return 0
}

func (p *Portcullis) process() *Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// WaitReady polls url until it answers 200, the process exits, or timeout
// passes.
func WaitReady(proc *Process, url string, timeout time.Duration) error {
	return WaitReadyWith(&http.Client{Timeout: time.Second}, proc, url, timeout)
}

// WaitReadyWith is WaitReady with the caller's client (its TLS roots, say).
func WaitReadyWith(client *http.Client, proc *Process, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("process exited before %s answered 200: %v", url, proc.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("GET %s did not answer 200 within %s (last: %s)", url, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// flagValue finds --name VALUE, --name=VALUE, -name VALUE or -name=VALUE.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, prefix := range []string{"--" + name, "-" + name} {
			if a == prefix && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, prefix+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// hostPortForURL turns a listen address into the host:port of a URL that
// reaches it: an empty or unspecified host becomes 127.0.0.1.
func hostPortForURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// offlineVulnDB keeps a server from downloading the OSV database from the
// internet (serve does at start when it has none): its downloads go to a
// closed loopback port unless the environment or a --vulndb-source-url
// flag names a source.
func offlineVulnDB() []string {
	if os.Getenv("PORTCULLIS_VULNDB_SOURCE_URL") != "" {
		return nil
	}
	return []string{"PORTCULLIS_VULNDB_SOURCE_URL=" + offlineVulnDBSource}
}

// offlineVulnDBSource is an OSV source nothing answers (the discard port
// on loopback): a download fails at once, without leaving the machine.
const offlineVulnDBSource = "http://127.0.0.1:9/test-harness-no-osv-download/"
