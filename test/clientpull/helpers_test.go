package clientpull

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
)

const (
	// testTimeout bounds one whole test; the images are a few KiB.
	testTimeout = 90 * time.Second
	// clientTimeout bounds one client command.
	clientTimeout = 60 * time.Second
)

// testContext is the test's context bounded by testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startPortcullis builds the real binary (once per test process) and runs it
// with args on a free loopback port and a fresh data directory.
func startPortcullis(t *testing.T, args ...string) *harness.Portcullis {
	t.Helper()
	return harness.StartPortcullis(t, harness.BuildPortcullis(t), args...)
}

// writeFile writes data to a new file in a temporary directory and returns
// its path.
func writeFile(t *testing.T, name, data string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// craneResult is what one crane command printed.
type craneResult struct {
	Stdout, Stderr string
	Elapsed        time.Duration
}

// crane runs the real crane (built from the version go.mod pins) with its
// own stdout, so byte-exact output such as `crane manifest` can be compared,
// and with DOCKER_CONFIG pointing at an empty directory: crane talks to
// Portcullis anonymously, whatever credentials the machine has.
func crane(ctx context.Context, t *testing.T, args ...string) (craneResult, error) {
	t.Helper()
	bin := clients.Crane(t)
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := craneResult{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		err = fmt.Errorf("crane timed out after %s: %w", res.Elapsed.Round(time.Millisecond), err)
	}
	t.Logf("$ crane %s\n(%s, err=%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "),
		res.Elapsed.Round(time.Millisecond), err, printable(res.Stdout), clip(res.Stderr, 16<<10))
	return res, err
}

// mustCrane runs crane and fails the test if it fails.
func mustCrane(ctx context.Context, t *testing.T, args ...string) craneResult {
	t.Helper()
	res, err := crane(ctx, t, args...)
	if err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, res.Stderr)
	}
	return res
}

// printable shortens text output for the test log and hides binary output
// (`crane blob`).
func printable(s string) string {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Sprintf("[%d bytes of binary output]", len(s))
	}
	return clip(s, 4<<10)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("\n[… %d more bytes]", len(s)-n)
}

// logLine is one request line of Portcullis' JSON log.
type logLine struct {
	Msg      string      `json:"msg"`
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	Query    string      `json:"query"`
	Status   int         `json:"status"`
	Upstream string      `json:"upstream"`
	Repo     string      `json:"repo"`
	Cache    string      `json:"cache"`
	Duration logDuration `json:"duration"`
}

// logDuration reads a logged duration: seconds with the unit, "1.234s".
type logDuration time.Duration

func (d *logDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string like \"1.234s\": %w", b, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || !strings.HasSuffix(s, "s") {
		return fmt.Errorf("duration %q: want seconds with the unit, like \"1.234s\"", s)
	}
	*d = logDuration(v)
	return nil
}

func (l logLine) String() string {
	q := ""
	if l.Query != "" {
		q = "?" + l.Query
	}
	return fmt.Sprintf("%s %s%s -> %d upstream=%q repo=%q cache=%q (%s)",
		l.Method, l.Path, q, l.Status, l.Upstream, l.Repo, l.Cache, time.Duration(l.Duration).Round(time.Millisecond))
}

// requestLog returns the request lines Portcullis has logged so far, in
// order. Lines that are not JSON (harness markers) are skipped.
func requestLog(t *testing.T, p *harness.Portcullis) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.Logs.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" {
			out = append(out, l)
		}
	}
	return out
}

// requestsFor returns the logged requests whose path contains substr, once
// there are at least atLeast of them or 2 s have passed. Portcullis logs a
// request after answering it, so a client may finish before its last line
// is written.
func requestsFor(t *testing.T, p *harness.Portcullis, substr string, atLeast int) []logLine {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var out []logLine
		for _, l := range requestLog(t, p) {
			if strings.Contains(l.Path, substr) {
				out = append(out, l)
			}
		}
		if len(out) >= atLeast || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpGet sends one GET with the given Accept header and returns the
// response with its body read.
func httpGet(ctx context.Context, t *testing.T, url, accept string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, b.Bytes()
}

// localStore is where a client put what it pulled: the bytes it stored for a
// digest.
type localStore func(d v1.Hash) ([]byte, error)

// ociLayoutStore reads blobs from an OCI image layout directory.
func ociLayoutStore(dir string) localStore {
	return func(d v1.Hash) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
	}
}

// skopeoDirStore reads blobs from skopeo's dir: transport, which names each
// blob by the hex of its digest.
func skopeoDirStore(dir string) localStore {
	return func(d v1.Hash) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, d.Hex))
	}
}

// containerdStore reads blobs from a containerd content store with
// `ctr content get`.
func containerdStore(ctx context.Context, c *clients.Containerd) localStore {
	return func(d v1.Hash) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ctr", "--address", c.Address, "content", "get", d.String())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("ctr content get %s: %v: %s", d, err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
}

// layoutManifest opens an OCI layout's blobs and reads root's manifest.
func layoutManifest(t *testing.T, dir string, root v1.Descriptor) (localStore, []byte) {
	t.Helper()
	store := ociLayoutStore(dir)
	b, err := store(root.Digest)
	if err != nil {
		t.Fatalf("read %s from OCI layout %s: %v", root.Digest, dir, err)
	}
	return store, b
}

// rawManifester is a pushed image or index.
type rawManifester interface {
	RawManifest() ([]byte, error)
	Digest() (v1.Hash, error)
}

func raw(t *testing.T, m rawManifester) []byte {
	t.Helper()
	b, err := m.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(t *testing.T, m rawManifester) v1.Hash {
	t.Helper()
	d, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// assertStoredBlob checks that the client stored exactly the bytes desc
// names: its digest and its size.
func assertStoredBlob(t *testing.T, what string, store localStore, desc v1.Descriptor) {
	t.Helper()
	b, err := store(desc.Digest)
	if err != nil {
		t.Errorf("%s: the client stored no blob %s (%s): %v", what, desc.Digest, desc.MediaType, err)
		return
	}
	if got := sha256Of(b); got != desc.Digest || int64(len(b)) != desc.Size {
		t.Errorf("%s: stored blob %s (%s) has digest %s and %d bytes; want %s and %d bytes",
			what, desc.Digest, desc.MediaType, got, len(b), desc.Digest, desc.Size)
	}
}

// assertStoredImage checks that the manifest the client stored is byte for
// byte the one pushed upstream (so its digest is the same), and that the
// config and every layer it names were stored with their digests.
func assertStoredImage(t *testing.T, what string, store localStore, gotManifest []byte, img v1.Image) {
	t.Helper()
	want := raw(t, img)
	if !bytes.Equal(gotManifest, want) {
		t.Errorf("%s: the client stored manifest %s (%d bytes); upstream has %s (%d bytes)\ngot:  %s\nwant: %s",
			what, sha256Of(gotManifest), len(gotManifest), sha256Of(want), len(want), clip(string(gotManifest), 2048), clip(string(want), 2048))
		return
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	assertStoredBlob(t, what+" config", store, m.Config)
	for i, l := range m.Layers {
		assertStoredBlob(t, fmt.Sprintf("%s layer %d", what, i), store, l)
	}
}

// assertStoredIndex checks the stored index is the pushed one byte for byte,
// and that each child in children (all of them when nil) was stored in full.
func assertStoredIndex(t *testing.T, what string, store localStore, gotIndex []byte, idx v1.ImageIndex, children []v1.Hash) {
	t.Helper()
	if want := raw(t, idx); !bytes.Equal(gotIndex, want) {
		t.Errorf("%s: the client stored index %s (%d bytes); upstream has %s (%d bytes)",
			what, sha256Of(gotIndex), len(gotIndex), sha256Of(want), len(want))
		return
	}
	if children == nil {
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			children = append(children, d.Digest)
		}
	}
	for _, d := range children {
		img, err := idx.Image(d)
		if err != nil {
			t.Fatalf("%s: pushed index has no image %s: %v", what, d, err)
		}
		b, err := store(d)
		if err != nil {
			t.Errorf("%s: the client stored no manifest %s: %v", what, d, err)
			continue
		}
		assertStoredImage(t, what+" "+d.String()[:19], store, b, img)
	}
}

// childFor returns the digest of the index entry for platform "os/arch".
func childFor(t *testing.T, idx v1.ImageIndex, platform string) v1.Hash {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS+"/"+d.Platform.Architecture == platform {
			return d.Digest
		}
	}
	t.Fatalf("index has no %s entry", platform)
	return v1.Hash{}
}

// readFile reads a file the client wrote.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the client did not write %s: %v", path, err)
	}
	return b
}
