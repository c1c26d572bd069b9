package pipeline_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// controlled is a pipeline judging pulls under pol with the operators'
// controls of the rig's store laid over.
func (r *rig) controlled(t *testing.T, pol *policy.Policy) (*pipeline.Pipeline, *controls.View) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	view := controls.New(r.state, controls.Options{Logger: quiet})
	refreshView(t, view)
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Policy: pol, Controls: view, Logger: quiet})
	run(t, pl)
	return pl, view
}

// pushRandom writes an image of n random layers to repo:tag upstream.
func (r *rig) pushRandom(t *testing.T, repo, tag string, img v1.Image) (digest.Digest, []byte) {
	t.Helper()
	ref, _ := name.ParseReference(r.upstreamHost + "/" + repo + ":" + tag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	return digest.Digest(d.String()), raw
}

func check(t *testing.T, pl *pipeline.Pipeline, repo string, d digest.Digest, mediaType string, manifest []byte) proxy.Decision {
	t.Helper()
	dec, err := pl.Check(context.Background(), proxy.Subject{Upstream: "docker.io", Repository: repo, Reference: d.String(), Digest: d, MediaType: mediaType, Manifest: manifest})
	if err != nil {
		t.Fatal(err)
	}
	return dec
}

// pushImage pushes a random one-layer image as team/app:1.0 and returns
// it, its digest and its manifest.
func (r *rig) pushImage(t *testing.T) (v1.Image, digest.Digest, []byte) {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, raw := r.pushRandom(t, "team/app", "1.0", img)
	return img, d, raw
}

// quarantine puts q in the rig's store and in force in view.
func (r *rig) quarantine(t *testing.T, view *controls.View, q store.Quarantine) {
	t.Helper()
	if err := r.state.PutQuarantine(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	refreshView(t, view)
}

// except puts e in the rig's store and in force in view.
func (r *rig) except(t *testing.T, view *controls.View, e store.Exception) {
	t.Helper()
	if err := r.state.PutException(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	refreshView(t, view)
}

// lift removes the quarantine of digest from the rig's store and view.
func (r *rig) lift(t *testing.T, view *controls.View, digest string) {
	t.Helper()
	if _, err := r.state.DeleteQuarantine(context.Background(), digest); err != nil {
		t.Fatal(err)
	}
	refreshView(t, view)
}

func refreshView(t *testing.T, view *controls.View) {
	t.Helper()
	if err := view.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A quarantine blocks a digest in every mode, at once over a remembered
// allow; lifting it restores the policy's verdict with no new scan, and
// the stored verdict is never rewritten.
func TestQuarantineBlocksInEveryModeAndLiftsWithoutRescan(t *testing.T) {
	for _, mode := range []string{"enforce", "warn", "audit"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t)
			_, d, raw := r.pushImage(t)
			pl, view := r.controlled(t, mustPolicy(t, "rules:\n  - {name: r, match: {}, mode: "+mode+", on_unscanned: {wait: 30s, then: block}}\n"))
			manifest := string(types.DockerManifestSchema2)
			for i := range 2 { // the second answer is the remembered one
				if dec := check(t, pl, "team/app", d, manifest, raw); dec.Verdict != proxy.Allow {
					t.Fatalf("pull %d before the quarantine: %+v", i, dec)
				}
			}
			scans := r.scans.calls.Load()
			r.quarantine(t, view, store.Quarantine{Digest: d.String(), Reason: "CVE-2026-1234 under investigation", CreatedBy: "ci", CreatedAt: time.Now()})
			dec := check(t, pl, "team/app", d, manifest, raw)
			if dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "quarantined") || !strings.Contains(dec.Message, "CVE-2026-1234 under investigation") || dec.Reason != policy.CodeQuarantined {
				t.Fatalf("pull of the quarantined digest: %+v", dec)
			}
			stored, err := r.state.Decision(ctx, d.String(), "docker.io", "team/app")
			if err != nil || stored.Verdict != string(policy.Allow) || stored.Decision.Has(policy.CodeQuarantined) {
				t.Fatalf("stored verdict rewritten by the quarantine: %+v %v", stored, err)
			}
			r.lift(t, view, d.String())
			if dec := check(t, pl, "team/app", d, manifest, raw); dec.Verdict != proxy.Allow {
				t.Fatalf("pull after the quarantine was lifted: %+v", dec)
			}
			if n := r.scans.calls.Load(); n != scans {
				t.Fatalf("%d scans after the quarantine, %d before: lifting it must not re-scan", n, scans)
			}
		})
	}
}

// indexSetup serves team/app with an index listing one image (child,
// whose manifest is raw), judged by a pipeline under a rule that waits for
// scans, with the rig's controls laid over.
func indexSetup(t *testing.T) (r *rig, pl *pipeline.Pipeline, view *controls.View, index, child digest.Digest, raw []byte) {
	t.Helper()
	r = newRig(t)
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	child, raw = r.pushRandom(t, "team/app", "child", img)
	index = r.putIndex(t, "team/app", []string{child.String()}, []string{string(types.DockerManifestSchema2)})
	pl, view = r.controlled(t, mustPolicy(t, "rules:\n  - {name: r, match: {}, on_unscanned: {wait: 30s, then: block}}\n"))
	return r, pl, view, index, child, raw
}

// An index's quarantine refuses the index and covers a child pulled by
// digest in that repository.
func TestIndexQuarantineCoversChildren(t *testing.T) {
	r, pl, view, index, child, raw := indexSetup(t)
	if dec := check(t, pl, "team/app", index, ociIndex, nil); dec.Verdict != proxy.Allow {
		t.Fatalf("index before the quarantine: %+v", dec)
	}
	manifest := string(types.DockerManifestSchema2)
	if dec := check(t, pl, "team/app", child, manifest, raw); dec.Verdict != proxy.Allow {
		t.Fatalf("child before the quarantine: %+v", dec)
	}
	r.quarantine(t, view, store.Quarantine{Digest: index.String(), Reason: "bad release", CreatedBy: "ci", CreatedAt: time.Now()})
	if dec := check(t, pl, "team/app", index, ociIndex, nil); dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "quarantined") {
		t.Fatalf("quarantined index: %+v", dec)
	}
	if dec := check(t, pl, "team/app", child, manifest, raw); dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "bad release") {
		t.Fatalf("child of the quarantined index, by digest: %+v", dec)
	}
}

// A quarantine of an index not yet pulled here covers its child as soon
// as the index is linked, even when the child was just looked up (and the
// view reuses such lookups for a second).
func TestIndexLinkedAfterItsChildWasPulled(t *testing.T) {
	r, pl, view, index, child, raw := indexSetup(t)
	r.quarantine(t, view, store.Quarantine{Digest: index.String(), Reason: "bad release", CreatedBy: "ci", CreatedAt: time.Now()})
	manifest := string(types.DockerManifestSchema2)
	if dec := check(t, pl, "team/app", child, manifest, raw); dec.Verdict != proxy.Allow {
		t.Fatalf("child before its index is known here: %+v", dec)
	}
	if dec := check(t, pl, "team/app", index, ociIndex, nil); dec.Verdict != proxy.Block {
		t.Fatalf("quarantined index: %+v", dec)
	}
	if dec := check(t, pl, "team/app", child, manifest, raw); dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "bad release") {
		t.Fatalf("child right after its quarantined index was linked: %+v", dec)
	}
}

// The blob gate follows the controls: a quarantined image's own layers
// are refused, a layer another allowed image of the repository references
// is served, and an exception opens a blocked image's layers.
func TestBlobGateFollowsControls(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	baseDigest, baseRaw := r.pushRandom(t, "team/app", "base", base)
	derivedDigest, derivedRaw := r.pushRandom(t, "team/app", "derived", derived)
	// One layer allowed, two blocked (a waivable reason).
	pl, view := r.controlled(t, mustPolicy(t, "rules:\n  - {name: r, match: {}, size: {max_layers: 1}, on_unscanned: {wait: 30s, then: block}}\n"))
	manifest := string(types.DockerManifestSchema2)
	if dec := check(t, pl, "team/app", baseDigest, manifest, baseRaw); dec.Verdict != proxy.Allow {
		t.Fatalf("base: %+v", dec)
	}
	if dec := check(t, pl, "team/app", derivedDigest, manifest, derivedRaw); dec.Verdict != proxy.Block {
		t.Fatalf("derived (two layers): %+v", dec)
	}
	layers, _ := base.Layers()
	shared, _ := layers[0].Digest()
	own, _ := extra.Digest()
	blob := func(h v1.Hash) proxy.Verdict {
		t.Helper()
		dec, err := pl.CheckBlob(ctx, "docker.io", "team/app", digest.Digest(h.String()))
		if err != nil {
			t.Fatal(err)
		}
		return dec.Verdict
	}
	if blob(own) != proxy.Block || blob(shared) != proxy.Allow {
		t.Fatalf("before any control: own layer %v, shared %v", blob(own), blob(shared))
	}
	expires := time.Now().Add(time.Hour)
	r.except(t, view, store.Exception{ID: "x1", Digest: derivedDigest.String(), Reason: "accepted", CreatedAt: time.Now(), Expires: expires})
	if dec := check(t, pl, "team/app", derivedDigest, manifest, derivedRaw); dec.Verdict != proxy.Warn || !strings.Contains(dec.Message, "exception x1") {
		t.Fatalf("derived with an exception: %+v", dec)
	}
	if blob(own) != proxy.Allow {
		t.Fatal("the excepted image's own layer is refused")
	}
	if _, err := r.state.DeleteException(ctx, "x1"); err != nil {
		t.Fatal(err)
	}
	r.quarantine(t, view, store.Quarantine{Digest: baseDigest.String(), Reason: "bad", CreatedAt: time.Now()})
	if blob(shared) != proxy.Block {
		t.Fatal("a layer only a quarantined and a blocked image reference is served")
	}
	r.except(t, view, store.Exception{ID: "x2", Digest: derivedDigest.String(), Reason: "accepted", CreatedAt: time.Now(), Expires: expires})
	if blob(shared) != proxy.Allow {
		t.Fatal("a layer the excepted image references is refused though its other image is quarantined")
	}
}

// awayStore is the rig's store whose reads the gates make fail on demand:
// the state store (Redis) out of reach.
type awayStore struct {
	*store.Bolt
	away atomic.Bool
}

var errAway = errors.New("state store away")

func (a *awayStore) ScanWithoutInventory(ctx context.Context, d string) (store.ScanRecord, error) {
	if a.away.Load() {
		return store.ScanRecord{}, errAway
	}
	return a.Bolt.ScanWithoutInventory(ctx, d)
}

func (a *awayStore) BlobImages(ctx context.Context, upstream, repo, blob string, fn func(image, verdict string) bool) error {
	if a.away.Load() {
		return errAway
	}
	return a.Bolt.BlobImages(ctx, upstream, repo, blob, fn)
}

// While the state store is away, the gates answer from what they served
// last, and a quarantine added since still applies: the last manifest
// verdict gets the controls laid over it, and no blob answer given before
// the controls changed is reused.
func TestControlsApplyWhileTheStoreIsAway(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	img, d, raw := r.pushImage(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	view := controls.New(r.state, controls.Options{Logger: quiet})
	refreshView(t, view)
	st := &awayStore{Bolt: r.state}
	pl := pipeline.New(pipeline.Options{Store: st, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Controls: view, Logger: quiet,
		Policy: mustPolicy(t, "rules:\n  - {name: r, match: {}, on_unscanned: {wait: 30s, then: block}, on_error: block}\n")})
	run(t, pl)
	manifest := string(types.DockerManifestSchema2)
	if dec := check(t, pl, "team/app", d, manifest, raw); dec.Verdict != proxy.Allow {
		t.Fatalf("before: %+v", dec)
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	if dec, err := pl.CheckBlob(ctx, "docker.io", "team/app", digest.Digest(layer.String())); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("layer before: %+v %v", dec, err)
	}
	r.quarantine(t, view, store.Quarantine{Digest: d.String(), Reason: "pulled from the shelves", CreatedAt: time.Now()})
	st.away.Store(true)
	// A tag the remembered verdict has not seen goes to the store, which
	// fails: the last verdict served, under the controls.
	dec, err := pl.Check(ctx, proxy.Subject{Upstream: "docker.io", Repository: "team/app", Reference: "other-tag", Digest: d, MediaType: manifest, Manifest: raw})
	if err != nil || dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "pulled from the shelves") {
		t.Fatalf("manifest with the store away: %+v %v", dec, err)
	}
	if dec, err := pl.CheckBlob(ctx, "docker.io", "team/app", digest.Digest(layer.String())); err != nil || dec.Verdict != proxy.Block {
		t.Fatalf("layer with the store away, after a quarantine: %+v %v (the allow given before the quarantine was reused)", dec, err)
	}
}

// A quarantined digest never seen before is refused at once: nothing is
// queued, scanned or waited for (its rule would wait 30 s).
func TestQuarantinedUnseenDigestIsRefusedWithoutScan(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	_, d, raw := r.pushImage(t)
	if err := r.state.PutQuarantine(ctx, store.Quarantine{Digest: d.String(), Reason: "known bad", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	pl, _ := r.controlled(t, mustPolicy(t, "rules:\n  - {name: r, match: {}, on_unscanned: {wait: 30s, then: allow}}\n"))
	if dec := check(t, pl, "team/app", d, string(types.DockerManifestSchema2), raw); dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "known bad") {
		t.Fatalf("quarantined, never pulled: %+v", dec)
	}
	if _, err := r.state.Scan(ctx, d.String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a quarantined digest was queued for a scan: %v", err)
	}
	if n := r.scans.calls.Load(); n != 0 {
		t.Fatalf("%d scans of a quarantined digest", n)
	}
}

// A mirror that does not scan has no policy gate, yet an operator's
// quarantine refuses the quarantined manifest there too; other digests
// pass, and lifting it opens it again.
func TestQuarantineGateWithoutScanning(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	view := controls.New(r.state, controls.Options{})
	gate := pipeline.QuarantineGate(view)
	quarantined, other := digest.FromString("quarantined"), digest.FromString("other")
	r.quarantine(t, view, store.Quarantine{Digest: quarantined.String(), Reason: "incident 9", CreatedBy: "ci", CreatedAt: time.Now()})
	subject := func(d digest.Digest) proxy.Subject {
		return proxy.Subject{Upstream: "docker.io", Repository: "team/app", Reference: "1", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	}
	dec, err := gate.Check(ctx, subject(quarantined))
	if err != nil || dec.Verdict != proxy.Block || !strings.Contains(dec.Message, "quarantined: incident 9") || dec.Reason != policy.CodeQuarantined || dec.Details != "" {
		t.Fatalf("quarantined manifest: %+v %v", dec, err)
	}
	if dec, err := gate.Check(ctx, subject(other)); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("another manifest: %+v %v", dec, err)
	}
	r.lift(t, view, quarantined.String())
	if dec, err := gate.Check(ctx, subject(quarantined)); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("after the quarantine was lifted: %+v %v", dec, err)
	}
}
