package pipeline_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
)

// Secrets the scan found in files and the config are findings of the
// record, and a re-match against a new database keeps them beside the
// vulnerabilities it adds.
func TestSecretFindingsSurviveRematch(t *testing.T) {
	r := newRig(t)
	img, err := tarball.ImageFromPath(alpineTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env = append(cfg.Config.Env, "AWS_ACCESS_KEY_ID=AKIAZQ3EGRIA7MZK4WX2")
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.upstreamHost + "/library/leaky:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	pl := r.pipeline(t)
	run(t, pl)
	if err := pl.Enqueue(context.Background(), "docker.io", "library/leaky", d, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	rec := waitDone(t, r.state, d)
	if got := findingIDs(t, rec); !slices.Equal(got, []string{":secret/aws-access-key"}) {
		t.Fatalf("findings before any database: %v", got)
	}
	r.importDB(t)
	if _, err := pl.Rematch(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err = r.state.Scan(context.Background(), d.String())
	if err != nil {
		t.Fatal(err)
	}
	got := findingIDs(t, rec)
	if !slices.Contains(got, ":secret/aws-access-key") || !slices.Contains(got, "busybox:ALPINE-CVE-2023-42366") {
		t.Fatalf("findings after the re-match: %v", got)
	}
}
