// Package redisserver runs a real redis-server (Debian's package, which the
// test command installs) on a free loopback port for one test: no
// persistence, its files in the test's temporary directory, stopped when
// the test ends.
package redisserver

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// startTimeout bounds the wait for the server to answer PING.
const startTimeout = 10 * time.Second

// Server is one running redis-server.
type Server struct {
	Addr string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	t    testing.TB
	// extra are more redis-server arguments (StartWith).
	extra []string
}

// Start runs redis-server on a free loopback port until the test ends.
// A missing redis-server fails the test: the test command installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with more redis-server arguments, e.g.
// "--cluster-enabled", "yes".
func StartWith(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (the test command installs Debian's redis-server): %v", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), dir: t.TempDir(), t: t, extra: extra}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	// `--port 0` would disable TCP: a free port is picked instead.
	s.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
	s.cmd.Args = append(s.cmd.Args, s.extra...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.Ping(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.t.Fatalf("redis-server on %s did not answer PING within %v", s.Addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ping asks the server for PONG with a raw RESP exchange.
func (s *Server) Ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Stop ends the server; it is called when the test ends.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.Kill()
	}
}

// Restart stops the server and starts it again on the same address, empty
// (no persistence): what clients see when Redis restarts.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
