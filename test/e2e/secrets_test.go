package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"hash/crc32"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomBase62(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(62))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = base62[v.Int64()]
	}
	return string(b)
}

// leakyGitHubToken is a token in GitHub's real format (CRC-32 checksum).
func leakyGitHubToken(t *testing.T) string {
	random := randomBase62(t, 30)
	n := crc32.ChecksumIEEE([]byte(random))
	sum := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		sum[i] = base62[n%62]
		n /= 62
	}
	return "ghp_" + random + string(sum)
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	gz := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// leakyImage is Alpine 3.16.9 with secrets: a GitHub token in /app/.env
// (line 2), a private key in /app/key.pem that the top layer deletes
// (still in the image: its layer is pulled), an AWS key id in the config's
// Env and a Stripe key in a history entry. It returns the secrets.
type leaky struct {
	digest   v1.Hash
	history  int // index of the history entry with the Stripe key
	envLine  int // line of the AWS key in config:Env
	keyLayer string
	secrets  []string // pieces no output may hold (each past its first four characters)
}

func pushLeakyImage(t *testing.T, up *testregistry.Registry) leaky {
	t.Helper()
	archive, _ := fixtures.Alpine(t)
	base, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	token := leakyGitHubToken(t)
	aws := "AKIAZQ3EGRIA7MZK4WX2"
	stripe := "sk_live_" + randomBase62(t, 24)
	baseCfg, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	secretsLayer := tarLayer(t, map[string]string{
		"app/.env":    "APP=1\nGITHUB_TOKEN=" + token + "\n",
		"app/key.pem": keyPEM,
	})
	deleting := tarLayer(t, map[string]string{"app/.wh.key.pem": ""})
	img, err := mutate.Append(base,
		mutate.Addendum{Layer: secretsLayer, History: v1.History{CreatedBy: "RUN curl -H 'Authorization: Bearer " + stripe + "' https://api.example.com"}},
		mutate.Addendum{Layer: deleting, History: v1.History{CreatedBy: "RUN rm /app/key.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env = append(cfg.Config.Env, "AWS_ACCESS_KEY_ID="+aws)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	d := up.Push(t, "library/leaky", "1", img)
	kl, err := secretsLayer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	keyBody := strings.Split(keyPEM, "\n")[1]
	return leaky{digest: d, history: len(baseCfg.History), envLine: len(baseCfg.Config.Env) + 1, keyLayer: kl.String(), secrets: []string{token[4:], aws[4:], stripe[4:], keyBody}}
}

func (l leaky) assertRedacted(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range l.secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a secret (%q…)", where, s[:6])
		}
	}
}

// collectEvents reads the event stream into a buffer until ctx ends.
func collectSecretEvents(t *testing.T, ctx context.Context, url string) (*bytes.Buffer, *sync.Mutex) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var mu sync.Mutex
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			mu.Lock()
			buf.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	return &buf, &mu
}

// waitScan polls the status API until the digest's record has a verdict.
func waitScan(t *testing.T, pc *harness.Portcullis, d v1.Hash) []byte {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := do(t, "GET", pc.URL+"/api/v1/scans/"+d.String())
		if r.status == http.StatusOK && strings.Contains(string(r.body), `"state": "done"`) && strings.Contains(string(r.body), `"verdict"`) {
			return r.body
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished scan after 90 s: %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Under the default policy a leaked secret is warned (the pull is served,
// tagged with the reason); nothing Portcullis shows, writes or logs holds
// the secret itself.
func TestSecretWarnedByDefaultAndNeverShown(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	l := pushLeakyImage(t, up)
	pc := harness.StartPortcullis(t, bin, "--data", data, "--upstream", "docker.io="+up.URL(), "--default-upstream", "docker.io")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	events, mu := collectSecretEvents(t, ctx, pc.URL)

	host := strings.TrimPrefix(pc.URL, "http://")
	if out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", host+"/leaky:1", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput(); err != nil {
		t.Fatalf("crane pull under the default policy: %v\n%s", err, out)
	}
	status := waitScan(t, pc, l.digest)
	var rec struct {
		Findings []struct {
			Kind, ID, Path, Layer, Fingerprint string
			Line                               int
		} `json:"findings"`
	}
	if err := json.Unmarshal(status, &rec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rec.Findings {
		if f.Kind != "secret" {
			continue
		}
		if !strings.HasPrefix(f.Fingerprint, "sha256:") {
			t.Errorf("finding %s without fingerprint", f.ID)
		}
		layer := "config"
		if f.Layer == l.keyLayer {
			layer = "secrets layer"
		}
		got = append(got, f.ID+" "+f.Path+":"+itoa(f.Line)+" "+layer)
	}
	want := []string{
		"secret/aws-access-key config:Env:" + itoa(l.envLine) + " config",
		"secret/github-token /app/.env:2 secrets layer",
		"secret/private-key /app/key.pem:1 secrets layer",
		"secret/stripe-key config:history[" + itoa(l.history) + "]:1 config",
	}
	slices.Sort(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("secret findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(string(status), `"verdict": "warn"`) || !strings.Contains(string(status), "secret/private-key in /app/key.pem") {
		t.Errorf("status API: no warn verdict naming the secret:\n%s", status)
	}
	r := do(t, "GET", pc.URL+"/v2/library/leaky/manifests/1")
	if r.status != 200 || r.header.Get("Portcullis-Verdict") != "warn" || !strings.Contains(r.header.Get("Portcullis-Reason"), "secret/") {
		t.Errorf("warned pull: %d %v", r.status, r.header)
	}
	l.assertRedacted(t, "status API", string(status))
	l.assertRedacted(t, "manifest answer", string(r.body)+strings.Join(r.header.Values("Portcullis-Reason"), " "))
	for _, doc := range []string{"/sbom?format=cyclonedx", "/sbom?format=spdx", "/report?format=sarif"} {
		r := do(t, "GET", pc.URL+"/api/v1/scans/"+l.digest.String()+doc)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", doc, r.status, r.body)
		}
		l.assertRedacted(t, doc, string(r.body))
		if doc == "/report?format=sarif" && !strings.Contains(string(r.body), `"ruleId": "secret/github-token"`) {
			t.Errorf("SARIF lacks ruleId secret/github-token:\n%s", r.body)
		}
	}
	// The command line scanner's outputs.
	for _, format := range []string{"json", "table", "sarif", "cyclonedx", "spdx"} {
		out, err := exec.Command(bin, "scan", "--data", data, "--format", format, up.Host()+"/library/leaky:1").CombinedOutput()
		if err != nil {
			t.Fatalf("scan --format %s: %v\n%s", format, err, out)
		}
		l.assertRedacted(t, "scan --format "+format, string(out))
		if format == "json" && !strings.Contains(string(out), `"id": "secret/private-key"`) {
			t.Errorf("scan --format json lacks the private key finding:\n%s", out)
		}
	}
	cancel()
	mu.Lock()
	ev := events.String()
	mu.Unlock()
	if !strings.Contains(ev, l.digest.String()) {
		t.Errorf("no event for the image:\n%s", ev)
	}
	l.assertRedacted(t, "events", ev)
	l.assertRedacted(t, "log", pc.Logs.String())
}

// A rule with secrets: {block: any} refuses the image, naming the secret.
func TestSecretBlockedByRule(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	l := pushLeakyImage(t, up)
	policyFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policyFile, []byte(`
rules:
  - name: no-secrets
    mode: enforce
    secrets: {block: any}
    on_unscanned: {wait: 60s, then: block}
    on_error: block
`), 0o600)
	if out, err := runBinary(t, bin, "policy", "check", "--config", policyFile); err != nil {
		t.Fatalf("policy check: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte("default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+"\n"), 0o600)
	pc := harness.StartPortcullis(t, bin, "--config", cfg, "--data", data)
	out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", strings.TrimPrefix(pc.URL, "http://")+"/leaky:1").CombinedOutput()
	if err == nil {
		t.Fatalf("crane got the manifest of an image with secrets:\n%s", out)
	}
	for _, want := range []string{"DENIED", "secret/private-key in /app/key.pem", "secret/aws-access-key in config:Env"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("crane output lacks %q:\n%s", want, out)
		}
	}
	l.assertRedacted(t, "block message", string(out))
	l.assertRedacted(t, "log", pc.Logs.String())
}
