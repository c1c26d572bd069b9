package kubernetes

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// probeTimeout bounds the wait for each probe of the pod to answer 200.
const probeTimeout = 30 * time.Second

// TestSingleOverlayServesItsProbes runs the real binary the way the
// single overlay's pod does: its container args, the rendered ConfigMap's
// configuration and policy at the mounted paths (moved under a temporary
// root), a TLS Secret and an API token Secret, and asks each of the pod's
// probes (scheme, port, path) as the kubelet would.
func TestSingleOverlayServesItsProbes(t *testing.T) {
	var (
		cm  *corev1.ConfigMap
		sts *appsv1.StatefulSet
	)
	for _, o := range render(t, "overlays/single") {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			cm = v
		case *appsv1.StatefulSet:
			sts = v
		}
	}
	if cm == nil || sts == nil {
		t.Fatal("overlays/single: no ConfigMap or StatefulSet")
	}
	c := sts.Spec.Template.Spec.Containers[0]

	root := t.TempDir()
	// The pod's absolute paths, moved under root.
	move := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	ports := map[string]int32{} // container port name -> number
	local := map[int32]string{} // container port -> 127.0.0.1:free port
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		local[p.ContainerPort] = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	}

	cfg := cm.Data["portcullis.yaml"]
	for _, r := range []struct{ old, new string }{
		{"/etc/portcullis/", move("/etc/portcullis") + "/"},
		{"/var/lib/portcullis", move("/var/lib/portcullis")},
		{`listen: ":5000"`, fmt.Sprintf("listen: %q", local[ports["registry"]])},
		{`listen: ":5001"`, fmt.Sprintf("listen: %q", local[ports["api"]])},
		// The test runs offline: no download from osv.dev.
		{"update_interval: 24h", "update_interval: 0"},
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("ConfigMap portcullis.yaml: no %q to move for the test", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	certPEM, keyPEM, _ := harness.LoopbackCert(t)
	token := "deploy-test-token"
	sum := sha256.Sum256([]byte(token))
	files := map[string]string{
		"/etc/portcullis/portcullis.yaml":        cfg,
		"/etc/portcullis/policy.yaml":            cm.Data["policy.yaml"],
		"/etc/portcullis/tls/tls.crt":            string(certPEM),
		"/etc/portcullis/tls/tls.key":            string(keyPEM),
		"/etc/portcullis/api-tokens/tokens.yaml": hex.EncodeToString(sum[:]) + ": {name: probe-test, scopes: [read]}\n",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(move(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(move(p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(move("/var/lib/portcullis"), 0o700); err != nil {
		t.Fatal(err)
	}
	args := append([]string(nil), c.Args...)
	for i, a := range args {
		if strings.HasPrefix(a, "/etc/portcullis/") {
			args[i] = move(a)
		}
	}

	bin := harness.BuildPortcullis(t)
	logs := &harness.LogBuffer{}
	proc, err := harness.StartProcess(bin, args, nil, logs)
	if err != nil {
		t.Fatalf("start %s %q: %v", bin, args, err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(10 * time.Second); err != nil {
			t.Logf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("portcullis output:\n%s", logs.String())
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		g := p.HTTPGet
		port := g.Port.IntVal
		if g.Port.StrVal != "" {
			port = ports[g.Port.StrVal]
		}
		addr, ok := local[port]
		if !ok {
			t.Fatalf("%s probe: port %s is not a container port", name, g.Port.String())
		}
		url := strings.ToLower(string(g.Scheme)) + "://" + addr + g.Path
		if err := harness.WaitReadyWith(client, proc, url, probeTimeout); err != nil {
			t.Errorf("%s probe: %v", name, err)
		}
	}

	// The API port answers only with a token.
	apiURL := "https://" + local[ports["api"]] + "/api/v1/images"
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer " + token, http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, apiURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", apiURL, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with %q: %s, want %d", apiURL, tc.auth, resp.Status, tc.want)
		}
	}
}
