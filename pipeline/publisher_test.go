package pipeline_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// heldArtifacts is the real artifact store whose first publication waits
// until the test lets it go (or its context ends): a publisher caught in
// the middle of its job.
type heldArtifacts struct {
	store.ArtifactStore
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func holdArtifacts(s store.ArtifactStore) *heldArtifacts {
	return &heldArtifacts{ArtifactStore: s, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldArtifacts) PutReferrers(ctx context.Context, subject string, descs []json.RawMessage, contents map[string]store.Content) error {
	first := false
	h.once.Do(func() { first = true; close(h.entered) })
	if first {
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.ArtifactStore.PutReferrers(ctx, subject, descs, contents)
}

func (h *heldArtifacts) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing was published")
	}
}

// publishedVerdict reads the verdict document published for d in
// docker.io/library/alpine ("" when there is none).
func publishedVerdict(t *testing.T, s store.ArtifactStore, d digest.Digest) string {
	t.Helper()
	ctx := context.Background()
	descs, err := s.Referrers(ctx, store.SubjectKey("docker.io", "library/alpine", d.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range descs {
		var desc struct{ Digest, ArtifactType string }
		if json.Unmarshal(raw, &desc) != nil || desc.ArtifactType != pipeline.VerdictArtifactType {
			continue
		}
		m, err := s.Content(ctx, desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		var man struct{ Layers []struct{ Digest string } }
		if err := json.Unmarshal(m.Body, &man); err != nil || len(man.Layers) != 1 {
			t.Fatalf("verdict manifest %s: %v", m.Body, err)
		}
		layer, err := s.Content(ctx, man.Layers[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Decision struct{ Effective string } `json:"decision"`
		}
		if err := json.Unmarshal(layer.Body, &doc); err != nil {
			t.Fatalf("verdict document %s: %v", layer.Body, err)
		}
		return doc.Decision.Effective
	}
	return ""
}

func waitPublishedVerdict(t *testing.T, s store.ArtifactStore, d digest.Digest, want string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = publishedVerdict(t, s, d); got == want {
			return
		}
	}
	t.Fatalf("published verdict %q, want %q", got, want)
}

const lenientPolicy = `
rules:
  - name: lenient
    match: {}
    vulnerabilities: {warn: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`

const strictPolicy = `
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`

func (r *rig) publishingPipeline(t *testing.T, consumer, pol string, artifacts store.ArtifactStore) *pipeline.Pipeline {
	t.Helper()
	pubs, err := r.state.Queue("publications")
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Publications: pubs, Artifacts: artifacts, Consumer: consumer,
		Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version, Matcher: r.db,
		Policy: mustPolicy(t, pol), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func alpineSubject(d digest.Digest) proxy.Subject {
	return proxy.Subject{Upstream: "docker.io", Repository: "library/alpine", Reference: "3.16.9", Digest: d, MediaType: string(types.OCIManifestSchema1)}
}

// A verdict written while a publisher holds the subject's job (so it
// cannot be queued again) is still published: the publisher looks again
// once its job is done.
func TestVerdictWrittenWhilePublishingIsPublished(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	held := holdArtifacts(r.state)
	pl := r.publishingPipeline(t, "a", lenientPolicy, held)
	run(t, pl)
	if dec, err := pl.Check(context.Background(), alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	held.waitEntered(t) // publishing "warn"

	pl.SetPolicy(mustPolicy(t, strictPolicy))
	if n, err := pl.Reevaluate(context.Background()); err != nil || n != 1 {
		t.Fatalf("Reevaluate: %d, %v", n, err)
	}
	close(held.release)
	waitPublishedVerdict(t, r.state, d, "block")
}

// A publisher that dies holding a job leaves it to another replica once
// its lease runs out; the verdict is published all the same.
func TestDeadPublishersJobIsFinishedByAnother(t *testing.T) {
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	hung := holdArtifacts(r.state) // never released
	a := r.publishingPipeline(t, "a", lenientPolicy, hung)
	a.SetPublishLease(time.Second)
	ctx, kill := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { a.Run(ctx); close(stopped) }()
	t.Cleanup(func() { kill(); <-stopped })
	if dec, err := a.Check(context.Background(), alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	hung.waitEntered(t)
	kill() // dies mid-publication: the job is neither done nor renewed
	<-stopped
	if got := publishedVerdict(t, r.state, d); got != "" {
		t.Fatalf("published %q by a publisher that never finished", got)
	}

	b := r.publishingPipeline(t, "b", lenientPolicy, r.state)
	b.SetPublishLease(time.Second)
	run(t, b)
	waitPublishedVerdict(t, r.state, d, "warn")
}
