package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

func mustPolicy(t *testing.T, yaml string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// A new policy re-decides stored results at once, without reading any
// image and without a pull: the change is recorded, announced as an event
// and served on the next pull.
func TestPolicyChangeReevaluatesStoredResults(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	lenient := mustPolicy(t, `
rules:
  - name: lenient
    match: {}
    vulnerabilities: {warn: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`)
	strict := mustPolicy(t, `
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`)
	pl := r.gated(lenient)
	run(t, pl)
	subj := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	if dec, err := pl.Check(context.Background(), subj); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()
	reads := r.images.calls.Load()

	pl.SetPolicy(strict)
	n, err := pl.Reevaluate(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reevaluate: %d, %v", n, err)
	}
	rec, err := r.state.Decision(context.Background(), d.String(), "docker.io", "library/alpine")
	if err != nil || rec.Verdict != "block" || rec.PolicyVersion != strict.Version() || rec.Tag != "3.16.9" {
		t.Fatalf("stored after the change: verdict %q policy %q tag %q (%v)", rec.Verdict, rec.PolicyVersion, rec.Tag, err)
	}
	if last := rec.History[len(rec.History)-1]; last.From != "warn" || last.To != "block" || last.PolicyVersion != strict.Version() {
		t.Fatalf("history %+v", rec.History)
	}
	// Events are announced apart from the decision, so the first verdict's
	// (none → warn) may still reach a subscriber that came after it.
	for first := true; ; first = false {
		select {
		case ev := <-events:
			if first && ev.Type == "verdict" && ev.From == "" && ev.To == "warn" {
				continue
			}
			if ev.Type != "verdict" || ev.Digest != d.String() || ev.From != "warn" || ev.To != "block" {
				t.Fatalf("event %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event for the verdict change")
		}
		break
	}
	if got := r.images.calls.Load(); got != reads {
		t.Fatalf("re-evaluation read %d images", got-reads)
	}
	if dec, _ := pl.Check(context.Background(), subj); dec.Verdict != proxy.Block {
		t.Fatalf("next pull: %+v", dec)
	}
	// Nothing left to do under the same policy.
	if n, err := pl.Reevaluate(context.Background()); err != nil || n != 0 {
		t.Fatalf("second Reevaluate: %d, %v", n, err)
	}
}

// interferingStore lets another writer change a record right before the
// pipeline's next write of it, the race a pull or another replica makes.
type interferingStore struct {
	store.Store
	before func(r *store.ScanRecord)
}

func (s *interferingStore) PutScan(ctx context.Context, r *store.ScanRecord) error {
	if f := s.before; f != nil {
		s.before = nil
		f(r)
	}
	return s.Store.PutScan(ctx, r)
}

// A re-match racing another writer of the same record redoes its change
// on the newer record: neither the new findings nor the other write is
// lost.
func TestRematchRacingAnotherWriterLosesNothing(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	st := &interferingStore{Store: r.state}
	pl := pipeline.New(pipeline.Options{Store: st, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version,
		Matcher: r.db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	run(t, pl)
	if err := pl.Enqueue(context.Background(), "docker.io", "library/alpine", d, string(types.OCIManifestSchema1)); err != nil {
		t.Fatal(err)
	}
	if rec := waitDone(t, r.state, d); len(findingIDs(t, rec)) != 0 {
		t.Fatalf("findings without a database: %v", findingIDs(t, rec))
	}
	r.importDB(t)
	st.before = func(*store.ScanRecord) {
		other, err := r.state.Scan(context.Background(), d.String())
		if err != nil {
			t.Fatal(err)
		}
		other.Error = "written-meanwhile"
		if err := r.state.PutScan(context.Background(), &other); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := pl.Rematch(context.Background()); err != nil || n != 1 {
		t.Fatalf("Rematch: %d, %v", n, err)
	}
	rec, _ := r.state.Scan(context.Background(), d.String())
	if rec.Error != "written-meanwhile" || rec.DBVersion != r.db.Version() || rec.Stale || len(findingIDs(t, rec)) == 0 {
		t.Fatalf("after the race: other writer's field %q, db %q (want %q), stale %v, findings %v", rec.Error, rec.DBVersion, r.db.Version(), rec.Stale, findingIDs(t, rec))
	}
}

// An image that becomes blocked takes its layers with it: the blob gate
// follows each image's current verdict, not every verdict it ever had.
func TestBlobsFollowTheCurrentVerdict(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	lenient := mustPolicy(t, "rules:\n  - {name: lenient, match: {}, vulnerabilities: {warn: UNKNOWN}, on_unscanned: {wait: 30s, then: block}}\n")
	strict := mustPolicy(t, "rules:\n  - {name: strict, match: {}, vulnerabilities: {block: UNKNOWN}, on_unscanned: {wait: 30s, then: block}}\n")
	pl := r.gated(lenient)
	run(t, pl)
	subj := proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
	if dec, err := pl.Check(context.Background(), subj); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	img, err := r.images.Image(context.Background(), "docker.io", "library/alpine", d)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := pl.CheckBlob(context.Background(), "docker.io", "library/alpine", digest.Digest(layer.String())); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("layer of a warned image: %+v %v", dec, err)
	}
	for _, step := range []struct {
		pol  *policy.Policy
		want proxy.Verdict
	}{{strict, proxy.Block}, {lenient, proxy.Allow}, {strict, proxy.Block}} {
		pl.SetPolicy(step.pol)
		if _, err := pl.Reevaluate(context.Background()); err != nil {
			t.Fatal(err)
		}
		if dec, err := pl.CheckBlob(context.Background(), "docker.io", "library/alpine", digest.Digest(layer.String())); err != nil || dec.Verdict != step.want {
			t.Fatalf("under %s: layer %+v %v, want %v", step.pol.Rules[0].Name, dec, err, step.want)
		}
	}
}

// The blob gate and the verdicts hold however many images are stored: the
// in-memory caches are smaller than the store here, and a new process
// (a restart) on the same state knows everything too.
func TestBlobGateHoldsMoreThanItsCaches(t *testing.T) {
	r := newRig(t)
	strict := mustPolicy(t, "rules:\n  - {name: one-layer, match: {}, size: {max_layers: 1}, on_unscanned: {wait: 30s, then: block}}\n")
	newPipeline := func() *pipeline.Pipeline {
		pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version,
			Policy: strict, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		pl.SetMemoLimit(2)
		return pl
	}
	pl := newPipeline()
	run(t, pl)
	type image struct {
		subj   proxy.Subject
		layers []v1.Hash
	}
	var images []image
	for i := range 6 {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(fmt.Sprintf("%s/strict/app:%d", r.upstreamHost, i))
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		ls, _ := img.Layers()
		var hs []v1.Hash
		for _, l := range ls {
			h, _ := l.Digest()
			hs = append(hs, h)
		}
		images = append(images, image{proxy.Subject{Upstream: "docker.io", Repository: "strict/app", Reference: fmt.Sprint(i), Digest: digest.Digest(d.String()), MediaType: string(types.DockerManifestSchema2)}, hs})
	}
	for _, im := range images {
		if dec, err := pl.Check(context.Background(), im.subj); err != nil || dec.Verdict != proxy.Block {
			t.Fatalf("%s: %+v %v", im.subj.Digest, dec, err)
		}
	}
	check := func(pl *pipeline.Pipeline) {
		t.Helper()
		for _, im := range images {
			for _, l := range im.layers {
				if dec, err := pl.CheckBlob(context.Background(), "docker.io", "strict/app", digest.Digest(l.String())); err != nil || dec.Verdict != proxy.Block {
					t.Fatalf("layer %s of blocked %s: %+v %v", l, im.subj.Digest, dec, err)
				}
			}
			if dec, err := pl.Check(context.Background(), im.subj); err != nil || dec.Verdict != proxy.Block {
				t.Fatalf("%s again: %+v %v", im.subj.Digest, dec, err)
			}
		}
	}
	check(pl)
	check(newPipeline()) // as after a restart: nothing in memory
}
