// Package clamdserver runs a real clamd (Debian's clamav-daemon, which the
// test command installs) for one test: in the foreground, with a private
// configuration and a signature database the test writes, a unix socket
// and a TCP port on 127.0.0.1, no freshclam and no network. Everything it
// made is removed when the test ends.
package clamdserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// startTimeout bounds the wait for clamd to load its database and answer
// PING (a few signatures load in about a second).
const startTimeout = 30 * time.Second

// Config is what a test chooses about its clamd.
type Config struct {
	// Signatures are database files by name ("test.hsb", "test.ndb"),
	// written into the database directory.
	Signatures map[string]string
	// StreamMaxLength is clamd's INSTREAM limit ("1M"); "" keeps
	// clamd's default (25M).
	StreamMaxLength string
}

// Server is one running clamd.
type Server struct {
	Socket string // unix socket path
	TCP    string // 127.0.0.1:PORT
	dir    string
	proc   *harness.Process
	t      testing.TB
}

// UnixURL is the scan.clamd address of the unix socket.
func (s *Server) UnixURL() string { return "unix://" + s.Socket }

// TCPURL is the scan.clamd address of the TCP socket.
func (s *Server) TCPURL() string { return "tcp://" + s.TCP }

// clamdPath finds clamd: Debian puts it in /usr/sbin, which is not always
// in PATH.
func clamdPath() (string, error) {
	if p, err := exec.LookPath("clamd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/clamd"); err == nil {
		return "/usr/sbin/clamd", nil
	}
	return "", fmt.Errorf("clamd not found in PATH or /usr/sbin (the test command installs Debian's clamav-daemon)")
}

// Start runs clamd with cfg until the test ends. A missing clamd fails the
// test.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin, err := clamdPath()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Signatures) == 0 {
		t.Fatal("clamdserver: clamd refuses to start without signatures; give at least one")
	}
	// Not t.TempDir(): a unix socket path has at most 107 bytes, and
	// t.TempDir() holds the test's name.
	dir, err := os.MkdirTemp("", "clamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dbDir := filepath.Join(dir, "db")
	if err := os.Mkdir(dbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range cfg.Signatures {
		if filepath.Base(name) != name {
			t.Fatalf("clamdserver: signature file name %q is not a plain name", name)
		}
		if err := os.WriteFile(filepath.Join(dbDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Socket: filepath.Join(dir, "clamd.ctl"), TCP: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), dir: dir, t: t}
	_, port, _ := net.SplitHostPort(s.TCP)
	conf := []string{
		"Foreground yes",
		"LocalSocket " + s.Socket,
		"TCPSocket " + port,
		"TCPAddr 127.0.0.1",
		"DatabaseDirectory " + dbDir,
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		// A test's database does not change: no self check thread work.
		"SelfCheck 0",
	}
	// No User option: clamd then keeps the user that started it (root
	// included, as in CI's container), which owns the files above.
	if cfg.StreamMaxLength != "" {
		conf = append(conf, "StreamMaxLength "+cfg.StreamMaxLength)
	}
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, err := harness.StartProcess(bin, []string{"-c", confPath}, nil, nil)
	if err != nil {
		t.Fatalf("start clamd: %v", err)
	}
	s.proc = proc
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.Ping()
		if err == nil {
			return s
		}
		select {
		case <-proc.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
			t.Fatalf("clamd exited before answering PING: %s\n%s", tail([]byte(proc.Logs.String())), tail(log))
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("clamd did not answer PING within %v: %v", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// Ping asks clamd for PONG on the TCP socket, with a raw exchange (this
// package does not depend on the client it helps to test).
func (s *Server) Ping() error {
	c, err := net.DialTimeout("tcp", s.TCP, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	var buf [16]byte
	n, _ := c.Read(buf[:])
	if string(buf[:n]) != "PONG\x00" {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

// Stop ends clamd (SIGTERM, then SIGKILL after 10 s); it is called when
// the test ends, and a test may call it earlier to see clamd go away.
func (s *Server) Stop() {
	if s.proc != nil {
		_ = s.proc.Stop(10 * time.Second)
	}
}
