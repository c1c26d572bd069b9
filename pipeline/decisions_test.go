package pipeline_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
)

// countingRegistry counts the signature lookups the pipeline makes.
type countingRegistry struct {
	pipeline.Registry
	calls atomic.Int64
}

func (c *countingRegistry) Manifest(ctx context.Context, up, repo, ref string) ([]byte, string, digest.Digest, error) {
	c.calls.Add(1)
	return c.Registry.Manifest(ctx, up, repo, ref)
}

func (c *countingRegistry) Referrers(ctx context.Context, up, repo string, d digest.Digest, at string) ([]byte, error) {
	c.calls.Add(1)
	return c.Registry.Referrers(ctx, up, repo, d, at)
}

func publicKeyFile(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The pull path only reads verdicts: a pull in a repository with no
// verdict on an already scanned image gets its rule's unscanned verdict at
// once and asks for a decision, which background workers make (verifying
// signatures there, not on the pull).
func TestPullPathNeverDecides(t *testing.T) {
	r := newRig(t)
	img, err := tarball.ImageFromPath(alpineTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"library/alpine", "copy/alpine"} {
		ref, _ := name.ParseReference(r.upstreamHost + "/" + repo + ":3.16.9")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	pol := mustPolicy(t, "rules:\n  - {name: signed, match: {}, signature: {required: true, keys: ["+publicKeyFile(t)+"], tlog: false}, on_unscanned: {wait: 0s, then: block}}\n")
	reg := &countingRegistry{Registry: r.proxy}
	newPipeline := func() *pipeline.Pipeline {
		return pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: reg, Scanner: r.scans, ScannerVersion: scanner.Version,
			Policy: pol, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	// Scanned and decided in library/alpine by a running pipeline.
	first := newPipeline()
	if err := first.Request(context.Background(), "docker.io", "library/alpine", d, string(types.DockerManifestSchema2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { first.Run(ctx); close(done) }()
	waitDone(t, r.state, d)
	waitDecision(t, r, d, "library/alpine")
	cancel()
	<-done

	// A process with no workers running: the pull cannot wait for anyone.
	idle := newPipeline()
	before := reg.calls.Load()
	subj := proxy.Subject{Upstream: "docker.io", Repository: "copy/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.DockerManifestSchema2)}
	dec, err := idle.Check(context.Background(), subj)
	if err != nil || dec.Verdict != proxy.Block {
		t.Fatalf("pull with no verdict in its repository: %+v %v", dec, err)
	}
	if n := reg.calls.Load() - before; n != 0 {
		t.Fatalf("the pull path looked up signatures %d times", n)
	}
	// The workers decide what the pull asked for.
	run(t, idle)
	waitDecision(t, r, d, "copy/alpine")
	if reg.calls.Load() == before {
		t.Fatal("the background decision verified no signature")
	}
}

func waitDecision(t *testing.T, r *rig, d digest.Digest, repo string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := r.state.Decision(context.Background(), d.String(), "docker.io", repo); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verdict on %s in %s", d, repo)
		}
	}
}
