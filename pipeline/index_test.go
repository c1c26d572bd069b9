package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

const ociIndex = "application/vnd.oci.image.index.v1+json"

// putIndex uploads an index listing children (digest → media type, in
// order, repeats allowed) to the rig's upstream and returns its digest.
func (r *rig) putIndex(t *testing.T, repo string, children []string, types []string) digest.Digest {
	t.Helper()
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	idx := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Manifests     []desc `json:"manifests"`
	}{SchemaVersion: 2, MediaType: ociIndex}
	for i, c := range children {
		idx.Manifests = append(idx.Manifests, desc{MediaType: types[i], Digest: c, Size: 100})
	}
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(body)
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.upstreamHost+"/v2/"+repo+"/manifests/"+d.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", ociIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put index: %d", resp.StatusCode)
	}
	return d
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// indexTable serves index contents from memory: index digest → children.
type indexTable struct {
	pipeline.Images
	children map[digest.Digest][]v1.Descriptor
}

func (x indexTable) IndexChildren(_ context.Context, _, _ string, d digest.Digest) ([]v1.Descriptor, error) {
	return x.children[d], nil
}

// Walking an index (anyone can push one) visits each digest once, within a
// depth and a number of manifests: a request for an index that lists the
// same nested index thousands of times, levels deep, ends at once instead
// of walking 1000^3 entries, and indexes past the bounds are refused.
func TestIndexWalkIsBounded(t *testing.T) {
	r := newRig(t)
	img, err := tarball.ImageFromPath(alpineTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.upstreamHost + "/team/bomb:alpine")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	pl := r.pipeline(t)
	run(t, pl)
	const image = "application/vnd.oci.image.manifest.v1+json"
	leaf := r.putIndex(t, "team/bomb", repeat(d.String(), 1000), repeat(image, 1000))
	mid := r.putIndex(t, "team/bomb", repeat(leaf.String(), 1000), repeat(ociIndex, 1000))
	top := r.putIndex(t, "team/bomb", repeat(mid.String(), 1000), repeat(ociIndex, 1000))
	if err := pl.Request(context.Background(), "docker.io", "team/bomb", top, ociIndex); err != nil {
		t.Fatalf("nested repeats: %v", err)
	}
	if waitDone(t, r.state, d).Digest != d.String() {
		t.Fatal("the one platform image was not queued")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pl.Request(ctx, "docker.io", "team/other", top, ociIndex); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}

	// Past the bounds (indexes made up in memory: a registry would want
	// every child to exist).
	table := indexTable{Images: r.images, children: map[digest.Digest][]v1.Descriptor{}}
	index := func(name string, children ...v1.Descriptor) v1.Descriptor {
		d := v1.Descriptor{MediaType: ociIndex, Digest: v1.Hash{Algorithm: "sha256", Hex: digest.FromString(name).Encoded()}}
		table.children[digest.Digest(d.Digest.String())] = children
		return d
	}
	manifest := func(name string) v1.Descriptor {
		return v1.Descriptor{MediaType: image, Digest: v1.Hash{Algorithm: "sha256", Hex: digest.FromString(name).Encoded()}}
	}
	deep := index("deep-5", manifest("m"))
	for i := 4; i >= 1; i-- {
		deep = index(fmt.Sprint("deep-", i), deep)
	}
	var many []v1.Descriptor
	for i := range 1100 {
		many = append(many, manifest(fmt.Sprint(i)))
	}
	wide := index("wide", many...)
	bounded := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: table, Scanner: r.scans, ScannerVersion: "test"})
	for name, idx := range map[string]v1.Descriptor{"nested 5 deep": deep, "1100 distinct children": wide} {
		err := bounded.Request(context.Background(), "docker.io", "team/made-up", digest.Digest(idx.Digest.String()), ociIndex)
		if !errors.Is(err, pipeline.ErrIndexTooLarge) {
			t.Errorf("%s: %v, want ErrIndexTooLarge", name, err)
		}
	}
	four := index("four-1", index("four-2", index("four-3", index("four-4", manifest("x")))))
	if err := bounded.Request(context.Background(), "docker.io", "team/made-up", digest.Digest(four.Digest.String()), ociIndex); err != nil {
		t.Errorf("4 deep: %v", err)
	}
}

// The scan queue is bounded: past it a pull gets its rule's on_unscanned
// verdict at once (nothing queued, nothing written), and an explicit
// request is told the queue is full.
func TestScanQueueIsBounded(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	bounded, err := r.state.Queue("bounded", store.WithMaxJobs(3))
	if err != nil {
		t.Fatal(err)
	}
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: bounded, Images: r.images, Scanner: r.scans, ScannerVersion: scanner.Version, Matcher: r.db,
		Policy: mustPolicy(t, "rules:\n  - {name: r, match: {}, vulnerabilities: {block: CRITICAL}, on_unscanned: {wait: 10s, then: block}}\n"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	// No workers run: nothing leaves the queue.
	const image = "application/vnd.oci.image.manifest.v1+json"
	for i := range 3 {
		if err := pl.Request(context.Background(), "docker.io", "team/app", digest.FromString(fmt.Sprint(i)), image); err != nil {
			t.Fatal(err)
		}
	}
	over := digest.FromString("one too many")
	if err := pl.Request(context.Background(), "docker.io", "team/app", over, image); !errors.Is(err, pipeline.ErrQueueFull) {
		t.Fatalf("request past the bound: %v", err)
	}
	dec, err := pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: "team/app", Digest: over, MediaType: image, Manifest: []byte(`{"layers":[]}`)})
	if err != nil || dec.Verdict != proxy.Block || !strings.Contains(strings.ToLower(dec.Message), "scan") {
		t.Fatalf("pull past the bound: %+v %v", dec, err)
	}
	if _, err := r.state.Scan(context.Background(), over.String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a scan record was written past the bound: %v", err)
	}
}
