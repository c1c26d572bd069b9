package clientpull

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// TestNodeAgentContainerdTLS: with an HTTPS mirror whose certificate the
// node does not trust, the agent's --ca-file (copied next to each
// hosts.toml) is what lets containerd pull through it: without it the same
// pull fails on the certificate, and still never reaches the origin.
func TestNodeAgentContainerdTLS(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := clients.StartContainerd(t)
	origin := testregistry.Start(t)
	origin.Push(t, "team/app", "v1", testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	registry := origin.Host()

	dir := t.TempDir()
	certFile, keyFile, pool := harness.WriteLoopbackCert(t, dir)
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeTestFile(t, cfg, fmt.Sprintf("upstreams:\n  - name: %q\n    url: %q\ntls: {cert_file: %q, key_file: %q}\n", registry, origin.URL(), certFile, keyFile))
	bin := harness.BuildPortcullis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	logs := &harness.LogBuffer{}
	// The harness probes readiness over plain http; start it by hand.
	proc, err := harness.StartProcess(bin, []string{"serve", "--config", cfg, "--listen", addr, "--data", t.TempDir()}, nil, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(5 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("portcullis log:\n%s", logs)
		}
	})
	mirror := "https://" + addr
	waitTLSReady(t, mirror+"/readyz", pool)

	certs := t.TempDir()
	agent := func(extra ...string) {
		t.Helper()
		args := append([]string{"node", "containerd", "--mirror", mirror, "--certs-dir", certs, "--config", cfg}, extra...)
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("portcullis %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ref := registry + "/team/app:v1"

	agent() // the node's system roots do not know the mirror's CA
	origin.ResetCounts()
	out, err := c.Pull(ctx, t, certs, ref)
	if err == nil {
		t.Fatalf("ctr pull without the CA succeeded:\n%s", out)
	}
	if !strings.Contains(out, "certificate") {
		t.Errorf("ctr pull without the CA failed for another reason than the certificate:\n%s", out)
	}
	if n := origin.Connections(); n != 0 {
		t.Errorf("the origin got %d connections while the mirror's certificate was refused; want none", n)
	}

	agent("--ca-file", certFile)
	if _, err := os.Stat(filepath.Join(certs, strings.ReplaceAll(registry, ":", "_")+"_", "portcullis-ca.pem")); err != nil {
		t.Fatalf("CA not copied: %v", err)
	}
	if out, err := c.Pull(ctx, t, certs, ref); err != nil {
		t.Fatalf("ctr pull with the CA: %v\n%s", err, out)
	}
	if want := `"query":"ns=` + url.QueryEscape(registry) + `"`; !logs.Contains(want) {
		t.Errorf("portcullis logged no request with %s", want)
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitTLSReady polls url (at most 20 s) until it answers 200.
func waitTLSReady(t *testing.T, url string, pool *x509.CertPool) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 20 s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
