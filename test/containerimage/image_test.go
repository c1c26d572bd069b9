package containerimage

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

const (
	// stampedVersion and stampedCommit are the build arguments the test
	// passes where `docker build --build-arg` would.
	stampedVersion = "v9.8.7-imagetest"
	stampedCommit  = "0123456789abcdef0123456789abcdef01234567"
	// buildTimeout bounds the build: -trimpath compiles every package
	// afresh the first time (measured 9.5 min on a busy 2-core machine).
	buildTimeout = 20 * time.Minute
	// readyTimeout bounds the wait for the started server's /readyz.
	readyTimeout = 30 * time.Second
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// dockerfile reads and parses the repository's Dockerfile and returns its
// build stage (the one the final stage copies the binary from) and its final
// stage.
func dockerfile(t *testing.T) (root string, build, final stage) {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatal(err)
	}
	final = stages[len(stages)-1]
	for _, st := range stages[:len(stages)-1] {
		if st.Name == "build" {
			build = st
		}
	}
	if build.Name == "" {
		t.Fatal("Dockerfile: no stage named build")
	}
	return root, build, final
}

// goBuildCommand returns the environment assignments and the go build
// arguments of the build stage's `go build` RUN, with build arguments
// expanded from args (over the Dockerfile's ARG defaults).
func goBuildCommand(t *testing.T, build stage, args map[string]string) (env, goArgs []string) {
	t.Helper()
	var runs []instruction
	for _, in := range build.find("RUN") {
		if strings.Contains(in.Args, "go build") {
			runs = append(runs, in)
		}
	}
	if len(runs) != 1 {
		t.Fatalf("Dockerfile build stage: %d RUN instructions with `go build`, want exactly 1", len(runs))
	}
	vars := map[string]string{}
	for k, v := range build.Args {
		vars[k] = v
	}
	for k, v := range args {
		vars[k] = v
	}
	words, err := shellWords(expandArgs(runs[0].Args, vars))
	if err != nil {
		t.Fatalf("Dockerfile line %d: %v", runs[0].Line, err)
	}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile line %d: want [NAME=VALUE...] go build ..., got %q", runs[0].Line, words)
	}
	return env, words[1:]
}

// flagArg returns the value of -name / --name / -name=value in args.
func flagArg(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// staticExecutable says why the ELF file at path would not run on a base
// image without a C library (distroless/static, scratch), or nil.
func staticExecutable(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open ELF %s: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s: ELF type %s is not an executable", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamic executable: has a PT_INTERP program header (a dynamic loader)", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: read DT_NEEDED: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s: dynamic executable: needs shared libraries %v", path, libs)
	}
	return nil
}

// TestStaticExecutableRefusesDynamicBinaries shows the static check can
// fail: the system shell is a dynamic executable on Debian.
func TestStaticExecutableRefusesDynamicBinaries(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if sh, err = filepath.EvalSymlinks(sh); err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"dynamic shell", sh, "dynamic executable"},
		{"not ELF", notELF, "open ELF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := staticExecutable(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("staticExecutable(%s) = %v, want an error containing %q", tc.path, err, tc.wantErr)
			}
		})
	}
}

// TestImageBinaryAndFinalStage builds ./cmd/portcullis with the Dockerfile's
// own go build line and build arguments, and checks what the final stage
// relies on: the binary is static, `portcullis version` prints the stamped
// tag and commit, the final stage runs as a numeric non-root user that owns
// the data directory, and `serve` with the image's CMD starts as that user
// when only the data directory is writable to it.
func TestImageBinaryAndFinalStage(t *testing.T) {
	root, build, final := dockerfile(t)

	// The final stage: base image, user, entrypoint, CMD, volume, labels.
	if !strings.HasPrefix(final.From, "gcr.io/distroless/static") && final.From != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static or scratch (no shell, no libc)", final.From)
	}
	users := final.find("USER")
	if len(users) != 1 {
		t.Fatalf("final stage: %d USER instructions, want 1", len(users))
	}
	uidText, gidText, _ := strings.Cut(users[0].Args, ":")
	uid, err := strconv.Atoi(uidText)
	if err != nil || uid <= 0 {
		// Kubernetes' runAsNonRoot can only verify a numeric user.
		t.Fatalf("final stage USER %q: want a numeric non-root uid[:gid]", users[0].Args)
	}
	gid := uid
	if gidText != "" {
		if gid, err = strconv.Atoi(gidText); err != nil || gid <= 0 {
			t.Fatalf("final stage USER %q: want a numeric non-root gid", users[0].Args)
		}
	}
	entry := final.find("ENTRYPOINT")
	cmds := final.find("CMD")
	vols := final.find("VOLUME")
	if len(entry) != 1 || len(cmds) != 1 || len(vols) != 1 {
		t.Fatalf("final stage: %d ENTRYPOINT, %d CMD, %d VOLUME; want one each", len(entry), len(cmds), len(vols))
	}
	entrypoint, err := execForm(entry[0])
	if err != nil {
		t.Fatal(err)
	}
	cmdArgs, err := execForm(cmds[0])
	if err != nil {
		t.Fatal(err)
	}
	volumes, err := execForm(vols[0])
	if err != nil {
		t.Fatal(err)
	}
	dataDir, ok := flagArg(cmdArgs, "data")
	if !ok || len(cmdArgs) == 0 || cmdArgs[0] != "serve" {
		t.Fatalf("final stage CMD %q: want serve ... --data DIR", cmdArgs)
	}
	if !slices.Contains(volumes, dataDir) {
		t.Errorf("final stage VOLUME %q does not hold the data directory %s", volumes, dataDir)
	}
	owned := false
	binaryCopied := false
	for _, in := range final.find("COPY") {
		words := strings.Fields(in.Args)
		if len(words) >= 2 && words[len(words)-1] == dataDir && slices.Contains(words, fmt.Sprintf("--chown=%d:%d", uid, gid)) {
			owned = true
		}
		if len(words) >= 2 && len(entrypoint) == 1 && words[len(words)-1] == entrypoint[0] {
			binaryCopied = true
		}
	}
	if !owned {
		t.Errorf("final stage: no COPY --chown=%d:%d ... %s: the data directory must exist and belong to the runtime user", uid, gid, dataDir)
	}
	if !binaryCopied {
		t.Errorf("final stage: no COPY to the ENTRYPOINT %q", entrypoint)
	}
	labels, err := final.labels()
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"org.opencontainers.image.title":    "portcullis",
		"org.opencontainers.image.version":  "${VERSION}",
		"org.opencontainers.image.revision": "${COMMIT}",
		"org.opencontainers.image.created":  "${CREATED}",
		"org.opencontainers.image.source":   "",
	} {
		got, ok := labels[key]
		if !ok || (want != "" && got != want) {
			t.Errorf("final stage LABEL %s = %q (present %v), want %q", key, got, ok, want)
		}
	}

	// Build the binary exactly as the build stage does.
	env, goArgs := goBuildCommand(t, build, map[string]string{
		"VERSION": stampedVersion, "COMMIT": stampedCommit,
		"TARGETOS": "linux", "TARGETARCH": runtime.GOARCH,
	})
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("go build environment %q: want CGO_ENABLED=0 (a static binary)", env)
	}
	if !slices.Contains(goArgs, "-trimpath") {
		t.Errorf("go build %q: want -trimpath (no build machine paths in the image)", goArgs)
	}
	out, ok := flagArg(goArgs, "o")
	if !ok {
		t.Fatalf("go build %q: no -o", goArgs)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "portcullis")
	for i, a := range goArgs {
		if a == out {
			goArgs[i] = bin
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", goArgs...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(goArgs, " "), err, b)
	}
	t.Logf("built the image's binary in %s: env %q go %q", time.Since(start).Round(time.Second), env, goArgs)

	if err := staticExecutable(bin); err != nil {
		t.Errorf("the image's binary: %v", err)
	}

	vout, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("portcullis version: %v\n%s", err, vout)
	}
	if want := fmt.Sprintf("portcullis %s (%s)\n", stampedVersion, stampedCommit); string(vout) != want {
		t.Errorf("portcullis version printed %q, want %q", vout, want)
	}

	runServeAsImage(t, bin, cmdArgs, dataDir, uid, gid)
}

// runServeAsImage starts bin with the image's CMD, its listen address moved
// to loopback and its data directory to a temporary one, as the image's user
// (when the test runs as root) with nothing else writable to it: its binary,
// $HOME and $TMPDIR are read-only to it, as in a pod with a read-only root
// filesystem.
func runServeAsImage(t *testing.T, bin string, cmdArgs []string, imageDataDir string, uid, gid int) {
	t.Helper()
	base := t.TempDir()
	runUID, runGID := os.Getuid(), os.Getgid()
	asRoot := runUID == 0
	if asRoot {
		runUID, runGID = uid, gid
	}
	ro := filepath.Join(base, "ro")
	data := filepath.Join(base, "var", "lib", "portcullis")
	for _, d := range []string{filepath.Join(ro, "tmp"), filepath.Join(ro, "home"), data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	roBin := filepath.Join(ro, "portcullis")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(roBin, b, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, runUID, runGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's own directories are 0700; the image's user must reach the
	// binary and the data directory through them.
	for _, d := range []string{filepath.Dir(base), base, filepath.Join(base, "var"), filepath.Join(base, "var", "lib")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(ro, "tmp"), filepath.Join(ro, "home"), ro} {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = os.Chmod(ro, 0o755) }) // so t.TempDir can remove it

	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	args := slices.Clone(cmdArgs)
	for i := range args {
		switch {
		case i > 0 && args[i-1] == "--listen":
			args[i] = addr // the image listens on every interface; tests stay on loopback
		case i > 0 && args[i-1] == "--data" && args[i] == imageDataDir:
			args[i] = data
		}
	}
	logs := &harness.LogBuffer{}
	cmd := exec.Command(roBin, args...)
	cmd.Env = []string{"HOME=" + filepath.Join(ro, "home"), "TMPDIR=" + filepath.Join(ro, "tmp"), "PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %q: %v", roBin, args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("portcullis output:\n%s", logs.String())
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for attempt := 0; ; attempt++ {
		select {
		case err := <-done:
			t.Fatalf("serve %q as uid %d exited before it was ready: %v\n%s", args, runUID, err, logs.String())
		default:
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("ready after %d attempts: %s", attempt+1, strings.TrimSpace(string(body)))
				break
			}
		}
		if time.Now().After(deadline) || attempt > 600 {
			t.Fatalf("serve %q: /readyz not 200 within %s: %v\n%s", args, readyTimeout, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) == 0 || f[0] == "0" || f[0] != strconv.Itoa(runUID) {
				t.Errorf("serve runs with uids %q, want %d (non-root)", rest, runUID)
			}
		}
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Errorf("serve wrote nothing to its data directory %s", data)
	}
}
