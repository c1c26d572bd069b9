package bench

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// nginxServer is a real nginx serving one directory on loopback, the
// baseline the issue measured the warm blob path against.
type nginxServer struct {
	URL  string // http://127.0.0.1:<port>
	proc *harness.Process
}

// startNginx serves dir with the nginx on PATH (Debian: apt-get install -y
// nginx-light), from a private configuration in a temporary directory:
// sendfile on, keep-alive, one worker per CPU, access log on (to a file, as
// portcullis logs every request). tcp_nopush (Debian's default file has it)
// stays off: with it, sixteen 1 MiB GETs at once ran at a quarter of the
// speed here (420 MB/s against 1,738 without), which measures corking, not
// serving. It returns nil, with the reason, when
// there is no nginx on PATH; the caller then skips only this baseline.
func startNginx(b *testing.B, dir string) (*nginxServer, string) {
	b.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		// Debian puts it in /usr/sbin, which is not on every PATH.
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, "no nginx on PATH (apt-get install -y nginx-light): nginx baseline skipped"
		}
		bin = "/usr/sbin/nginx"
	}
	prefix := b.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(prefix, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(b))
	conf := nginxConfig(prefix, addr, dir, os.Geteuid() == 0)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	errLog := filepath.Join(prefix, "logs", "error.log")
	proc, err := harness.StartProcess(bin, []string{"-p", prefix, "-c", confPath, "-e", errLog}, nil, nil)
	if err != nil {
		b.Fatalf("start nginx: %v", err)
	}
	b.Cleanup(func() {
		if err := proc.Stop(5 * time.Second); err != nil {
			b.Logf("stop nginx: %v", err)
		}
	})
	n := &nginxServer{URL: "http://" + addr, proc: proc}
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := c.Get(n.URL + "/")
		if err == nil {
			resp.Body.Close()
			return n, ""
		}
		if !proc.Running() || time.Now().After(deadline) {
			log, _ := os.ReadFile(errLog)
			b.Fatalf("nginx not answering on %s: %v\n%s\n%s", addr, err, proc.Logs.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxConfig serves root on addr. As root, the workers stay root so they
// can read a data directory only its owner may enter (t.TempDir is 0700).
func nginxConfig(prefix, addr, root string, asRoot bool) string {
	user := ""
	if asRoot {
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sdaemon off;
worker_processes auto;
pid %[2]s/nginx.pid;
events { worker_connections 1024; }
http {
	access_log %[2]s/logs/access.log;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	default_type application/octet-stream;
	sendfile on;
	keepalive_timeout 65;
	keepalive_requests 1000000;
	server {
		listen %[3]s;
		root %[4]s;
		location / { }
	}
}
`, user, prefix, addr, root)
}

// cpu is the CPU time nginx used so far: the master and its workers
// (children listed by the kernel), from /proc/<pid>/stat.
func (n *nginxServer) cpu(b *testing.B) time.Duration {
	b.Helper()
	pid := n.proc.Pid()
	total := mustProcCPU(b, pid)
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		b.Fatalf("nginx workers: %v", err)
	}
	for _, f := range strings.Fields(string(raw)) {
		child, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("nginx workers: %q: %v", f, err)
		}
		total += mustProcCPU(b, child)
	}
	return total
}

// fileServerProcess is http.FileServer in a process of its own
// (test/bench/fileserver).
type fileServerProcess struct {
	url  string
	proc *harness.Process
}

func startFileServerProcess(b *testing.B, dir string) *fileServerProcess {
	b.Helper()
	bin := harness.BuildGoBinary(quietTB{b}, "benchfileserver", "./test/bench/fileserver")
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(b))
	proc, err := harness.StartProcess(bin, []string{"-listen", addr, "-dir", dir}, nil, nil)
	if err != nil {
		b.Fatalf("start file server: %v", err)
	}
	b.Cleanup(func() {
		if err := proc.Stop(5 * time.Second); err != nil {
			b.Logf("stop file server: %v", err)
		}
	})
	if err := harness.WaitReady(proc, "http://"+addr+"/", 10*time.Second); err != nil {
		b.Fatalf("file server not ready: %v\n%s", err, proc.Logs.String())
	}
	return &fileServerProcess{url: "http://" + addr, proc: proc}
}
