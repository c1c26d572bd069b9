package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LogBuffer collects a child process's output; it is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether the output so far contains s.
func (b *LogBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

// tail returns at most the last n bytes, marking a cut.
func (b *LogBuffer) tail(n int) string {
	s := b.String()
	if len(s) <= n {
		return s
	}
	return "[… earlier output cut …]\n" + s[len(s)-n:]
}

// Process is a child process started in its own process group, with stdout
// and stderr going to one LogBuffer. Signals go to the whole group, so helper
// processes it spawns die with it.
type Process struct {
	Name string
	Logs *LogBuffer

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status; read only after done is closed
}

// StartProcess starts path with args in a new process group; env entries are
// added to the current environment. Output goes to logs (a new LogBuffer when
// nil). The caller owns the process: stop it with Stop or Kill.
func StartProcess(path string, args, env []string, logs *LogBuffer) (*Process, error) {
	if logs == nil {
		logs = &LogBuffer{}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Bound Wait when a grandchild keeps the output pipe open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &Process{Name: path, Logs: logs, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id (also the process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitErr returns the exit status (nil for exit code 0) once the process has
// exited, and an error saying it still runs before that.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.err
	default:
		return fmt.Errorf("%s (pid %d) is still running", p.Name, p.Pid())
	}
}

// Signal sends sig to the process group while the process runs; it does
// nothing once the process has exited (its id may be reused by then).
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	err := syscall.Kill(-p.Pid(), sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil // already gone
	}
	return err
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then sends
// SIGKILL. It returns the exit status of a process that exited within grace
// (nil for a clean exit), or an error saying it had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return p.err
	}
	_ = p.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.Name, p.Pid(), grace)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
