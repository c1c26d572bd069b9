package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// countingState is the real store counting the writes of whole scan
// records and of verdicts.
type countingState struct {
	*store.Bolt
	putScans, putDecisions atomic.Int64
}

func (c *countingState) PutScan(ctx context.Context, r *store.ScanRecord) error {
	c.putScans.Add(1)
	return c.Bolt.PutScan(ctx, r)
}

func (c *countingState) PutDecision(ctx context.Context, r *store.DecisionRecord) error {
	c.putDecisions.Add(1)
	return c.Bolt.PutDecision(ctx, r)
}

// countingQueue is a real queue counting the jobs queued.
type countingQueue struct {
	store.Queue
	enqueued atomic.Int64
	claiming atomic.Int64 // consumers waiting in Claim now
}

// Claim counts the consumers waiting in it: a publication worker that
// waits there has finished its last job, its pause included.
func (q *countingQueue) Claim(ctx context.Context, consumer string, lease, wait time.Duration) (store.Job, error) {
	q.claiming.Add(1)
	defer q.claiming.Add(-1)
	return q.Queue.Claim(ctx, consumer, lease, wait)
}

// waitPublishersIdle waits until the pipeline's publication workers
// (pipeline.Options.Workers, 2 by default) all wait for a job and none is
// queued: none of them asks the pacer about pulls in flight until a job
// is queued again.
func waitPublishersIdle(t *testing.T, q *countingQueue) {
	t.Helper()
	const publishers = 2
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n, err := q.Len(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && q.claiming.Load() == publishers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publication workers still busy after 30s: %d queued, %d of %d waiting for a job", n, q.claiming.Load(), publishers)
		}
	}
}

func (q *countingQueue) Enqueue(ctx context.Context, key string, payload []byte) (bool, error) {
	q.enqueued.Add(1)
	return q.Queue.Enqueue(ctx, key, payload)
}

// importRecord imports, as a database update, one Alpine v3.16 record
// about pkg affecting every version before 1.35.0-r18.
func (r *rig) importRecord(t *testing.T, id, pkg string) {
	t.Helper()
	dir := t.TempDir()
	rec := fmt.Sprintf(`{"schema_version":"1.6.0","id":%q,"modified":"2026-12-01T00:00:00Z","details":"test record",
"affected":[{"package":{"ecosystem":"Alpine:v3.16","name":%q},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.35.0-r18"}]}]}]}`, id, pkg)
	if err := os.WriteFile(filepath.Join(dir, id+".json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(r.dbDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Import(context.Background(), []string{dir}, nil); err != nil {
		t.Fatal(err)
	}
}

// markingRig is the rig's pipeline on a counting store and publication
// queue, publishing verdicts under pol.
func (r *rig) markingPipeline(t *testing.T, st *countingState, pubs *countingQueue, pol string, inFlight func() int64) *pipeline.Pipeline {
	t.Helper()
	return pipeline.New(pipeline.Options{Store: st, Queue: r.queue, Publications: pubs, Artifacts: r.state,
		Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version, Matcher: r.db,
		Policy: mustPolicy(t, pol), InFlight: inFlight, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func newCounting(t *testing.T, r *rig) (*countingState, *countingQueue) {
	t.Helper()
	pubs, err := r.state.Queue("publications")
	if err != nil {
		t.Fatal(err)
	}
	return &countingState{Bolt: r.state}, &countingQueue{Queue: pubs}
}

// A database update that leaves an image's findings as they were does not
// rewrite its record, decide its verdicts again or publish them: the
// record is only marked matched against the new version, so the next
// re-match of that version leaves it alone, and the verdict made on the
// same findings still stands for pulls.
func TestRematchWithSameFindingsOnlyMarks(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	st, pubs := newCounting(t, r)
	pl := r.markingPipeline(t, st, pubs, lenientPolicy, nil)
	run(t, pl)
	if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	waitPublishedVerdict(t, r.state, d, "warn")
	v1 := r.db.Version()
	rec1, _ := r.state.Scan(ctx, d.String())
	dec1, err := r.state.Decision(ctx, d.String(), "docker.io", "library/alpine")
	if err != nil {
		t.Fatal(err)
	}

	r.importRecord(t, "ALPINE-TEST-0001", "not-in-the-image")
	v2 := r.db.Version()
	if v2 == v1 {
		t.Fatal("the update did not change the database version")
	}
	scans, decisions, queued := st.putScans.Load(), st.putDecisions.Load(), pubs.enqueued.Load()
	if n, err := pl.Rematch(ctx); err != nil || n != 1 {
		t.Fatalf("Rematch: %d, %v", n, err)
	}
	if got := st.putScans.Load() - scans; got != 0 {
		t.Errorf("%d scan records rewritten, want none", got)
	}
	if got := st.putDecisions.Load() - decisions; got != 0 {
		t.Errorf("%d verdicts written, want none", got)
	}
	if got := pubs.enqueued.Load() - queued; got != 0 {
		t.Errorf("%d publications queued, want none", got)
	}
	rec2, _ := r.state.Scan(ctx, d.String())
	if rec2.DBVersion != v2 || rec2.FindingsDBVersion != v1 || rec2.Revision != rec1.Revision ||
		!slices.Equal(findingIDs(t, rec2), findingIDs(t, rec1)) || !rec2.UpdatedAt.Equal(rec1.UpdatedAt) {
		t.Fatalf("after the re-match: db %q (want %q), findings from %q (want %q), revision %d (want %d), findings %v",
			rec2.DBVersion, v2, rec2.FindingsDBVersion, v1, rec2.Revision, rec1.Revision, findingIDs(t, rec2))
	}
	if dec2, _ := r.state.Decision(ctx, d.String(), "docker.io", "library/alpine"); dec2.Revision != dec1.Revision || dec2.Verdict != "warn" {
		t.Fatalf("verdict after the re-match: %+v", dec2)
	}
	if n, err := pl.Rematch(ctx); err != nil || n != 0 {
		t.Fatalf("second re-match of the same version: %d, %v; want none", n, err)
	}
	// Another replica (nothing remembered) serves the stored verdict as it
	// is: nothing decided again.
	other := r.markingPipeline(t, st, pubs, lenientPolicy, nil)
	run(t, other)
	if dec, err := other.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("pull after the re-match: %+v %v", dec, err)
	}
	if got := st.putDecisions.Load() - decisions; got != 0 {
		t.Errorf("the pull decided again (%d verdicts written)", got)
	}
	// Unchanged again by a second update: still nothing rewritten.
	r.importRecord(t, "ALPINE-TEST-0002", "not-in-the-image-either")
	if n, err := pl.Rematch(ctx); err != nil || n != 1 || st.putScans.Load() != scans || st.putDecisions.Load() != decisions {
		t.Fatalf("second update: %d re-matched, %v; %d records and %d verdicts written", n, err, st.putScans.Load()-scans, st.putDecisions.Load()-decisions)
	}
	if rec3, _ := r.state.Scan(ctx, d.String()); rec3.DBVersion != r.db.Version() || rec3.FindingsDBVersion != v1 {
		t.Fatalf("after the second update: db %q, findings from %q", rec3.DBVersion, rec3.FindingsDBVersion)
	}
}

// A database update that changes an image's findings writes them (apart
// from the inventory: the record itself is not rewritten), decides every
// verdict on it again, publishes the new verdict and announces the image
// as newly vulnerable; the next re-match of that version leaves it alone.
// Pulls in flight all along (the pacer's longest pauses) do not stop it.
func TestRematchWithNewFindingsDecidesAndPublishes(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	st, pubs := newCounting(t, r)
	const allowKnown = `
rules:
  - name: strict
    match: {}
    vulnerabilities:
      block: UNKNOWN
      allow: [{id: ALPINE-CVE-2023-42366}]
    on_unscanned: {wait: 30s, then: block}
`
	pl := r.markingPipeline(t, st, pubs, allowKnown, func() int64 { return 1 })
	run(t, pl)
	if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Allow {
		t.Fatalf("known vulnerabilities allowed: %+v %v", dec, err)
	}
	waitPublishedVerdict(t, r.state, d, "allow")
	rec1, _ := r.state.Scan(ctx, d.String())
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()

	r.importRecord(t, "ALPINE-CVE-2099-0001", "busybox")
	scans, decisions := st.putScans.Load(), st.putDecisions.Load()
	if n, err := pl.Rematch(ctx); err != nil || n != 1 {
		t.Fatalf("Rematch: %d, %v", n, err)
	}
	if got := st.putScans.Load() - scans; got != 0 {
		t.Errorf("%d scan records rewritten (inventory included), want the findings alone", got)
	}
	if st.putDecisions.Load() == decisions {
		t.Error("no verdict decided again")
	}
	rec2, _ := r.state.Scan(ctx, d.String())
	if !slices.Contains(findingIDs(t, rec2), "busybox:ALPINE-CVE-2099-0001") || rec2.DBVersion != r.db.Version() ||
		rec2.FindingsDBVersion != "" || rec2.Revision != rec1.Revision || !rec2.UpdatedAt.After(rec1.UpdatedAt) {
		t.Fatalf("after the re-match: findings %v, db %q (want %q), findings from %q, revision %d (was %d)",
			findingIDs(t, rec2), rec2.DBVersion, r.db.Version(), rec2.FindingsDBVersion, rec2.Revision, rec1.Revision)
	}
	if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Block {
		t.Fatalf("pull after the re-match: %+v %v", dec, err)
	}
	waitPublishedVerdict(t, r.state, d, "block")
	nv := nextEvent(t, events, pipeline.EventNewlyVulnerable)
	if len(nv.Images) != 1 || nv.Images[0].Digest != d.String() {
		t.Fatalf("newly vulnerable: %+v", nv.Images)
	}
	if n, err := pl.Rematch(ctx); err != nil || n != 0 {
		t.Fatalf("second re-match of the same version: %d, %v; want none", n, err)
	}
}

// A re-match stopped early (ctx ends while it yields to pulls) keeps the
// same-findings marks it made, which spares the next re-match that work,
// and drops the new results it had not decided on yet: those records stay
// outdated, and the next re-match writes and decides them.
func TestRematchStoppedEarly(t *testing.T) {
	for _, tc := range []struct {
		name, pkg     string
		wantMarked    bool // matched against the update after the stopped re-match
		wantAfterNext string
	}{
		{name: "same findings", pkg: "not-in-the-image", wantMarked: true, wantAfterNext: "warn"},
		{name: "new findings", pkg: "busybox", wantMarked: false, wantAfterNext: "warn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t)
			r.importDB(t)
			d := r.pushAlpine(t)
			st, pubs := newCounting(t, r)
			stopCtx, stop := context.WithCancel(ctx)
			defer stop()
			// The pacer asks after the image: the re-match is told to stop
			// while pulls are in flight.
			var armed atomic.Bool
			pl := r.markingPipeline(t, st, pubs, lenientPolicy, func() int64 {
				if armed.Load() {
					stop()
				}
				return 1
			})
			run(t, pl)
			if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
				t.Fatalf("lenient policy: %+v %v", dec, err)
			}
			r.importRecord(t, "ALPINE-CVE-2099-0002", tc.pkg)
			decisions := st.putDecisions.Load()
			// The publication of the verdict Check made must be over: a
			// publisher asking the pacer after it would stop the re-match
			// before its first image.
			waitPublishersIdle(t, pubs)
			armed.Store(true)
			n, err := pl.Rematch(stopCtx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("stopped re-match: %d, %v", n, err)
			}
			rec, _ := r.state.Scan(ctx, d.String())
			if marked := rec.DBVersion == r.db.Version(); marked != tc.wantMarked || (n == 1) != tc.wantMarked {
				t.Fatalf("after the stop: %d re-matched, db %q (in force %q), want marked %v", n, rec.DBVersion, r.db.Version(), tc.wantMarked)
			}
			if st.putDecisions.Load() != decisions {
				t.Fatal("a stopped re-match decided verdicts")
			}
			want := 0
			if !tc.wantMarked {
				want = 1
			}
			if n, err := pl.Rematch(ctx); err != nil || n != want {
				t.Fatalf("next re-match: %d, %v; want %d", n, err, want)
			}
			if rec, _ := r.state.Scan(ctx, d.String()); rec.DBVersion != r.db.Version() {
				t.Fatalf("after the next re-match: db %q, want %q", rec.DBVersion, r.db.Version())
			}
			if dec, _ := r.state.Decision(ctx, d.String(), "docker.io", "library/alpine"); dec.Verdict != tc.wantAfterNext {
				t.Fatalf("verdict %q, want %q", dec.Verdict, tc.wantAfterNext)
			}
		})
	}
}

// interferingMarker writes the record once, as another writer would,
// right before the re-match's marks are written.
type interferingMarker struct {
	*countingState
	once func()
}

func (m *interferingMarker) MarkMatched(ctx context.Context, marks []store.MatchMark) ([]store.MatchMark, error) {
	if f := m.once; f != nil {
		m.once = nil
		f()
	}
	return m.countingState.MarkMatched(ctx, marks)
}

// A mark the store drops because the record was written meanwhile is not
// lost: the re-match matches that record again and writes it whole, with
// the other writer's change kept, and decides its verdicts again.
func TestRematchMarkDroppedByAnotherWriter(t *testing.T) {
	for _, pkg := range []string{"not-in-the-image", "busybox"} {
		t.Run(pkg, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t)
			r.importDB(t)
			d := r.pushAlpine(t)
			counting, pubs := newCounting(t, r)
			st := &interferingMarker{countingState: counting}
			pl := pipeline.New(pipeline.Options{Store: st, Queue: r.queue, Publications: pubs, Artifacts: r.state,
				Images: r.images, Registry: r.proxy, Scanner: r.scans, ScannerVersion: scanner.Version, Matcher: r.db,
				Policy: mustPolicy(t, lenientPolicy), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			run(t, pl)
			if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
				t.Fatalf("lenient policy: %+v %v", dec, err)
			}
			r.importRecord(t, "ALPINE-CVE-2099-0003", pkg)
			st.once = func() {
				if _, err := store.UpdateScan(ctx, r.state, d.String(), func(rec *store.ScanRecord, _ bool) (bool, error) {
					rec.Error = "written-meanwhile"
					return true, nil
				}); err != nil {
					t.Error(err)
				}
			}
			decisions := counting.putDecisions.Load()
			if n, err := pl.Rematch(ctx); err != nil || n != 1 {
				t.Fatalf("Rematch: %d, %v", n, err)
			}
			rec, _ := r.state.Scan(ctx, d.String())
			wantNew := pkg == "busybox"
			if rec.Error != "written-meanwhile" || rec.DBVersion != r.db.Version() ||
				slices.Contains(findingIDs(t, rec), "busybox:ALPINE-CVE-2099-0003") != wantNew {
				t.Fatalf("after the race: error %q, db %q (want %q), findings %v", rec.Error, rec.DBVersion, r.db.Version(), findingIDs(t, rec))
			}
			if counting.putDecisions.Load() == decisions {
				t.Fatal("the rewritten record's verdicts were not decided again")
			}
			if n, err := pl.Rematch(ctx); err != nil || n != 0 {
				t.Fatalf("second re-match: %d, %v", n, err)
			}
		})
	}
}

// Re-deciding every stored verdict under a new policy is bulk work beside
// the pull path, like a re-match: it asks whether pulls are in flight after
// each verdict and yields to them (pace.go), and still finishes.
func TestReevaluateYieldsToPulls(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.importDB(t)
	d := r.pushAlpine(t)
	st, pubs := newCounting(t, r)
	var asked atomic.Int64
	pulling := func() int64 { asked.Add(1); return 1 } // pulls all along
	pl := r.markingPipeline(t, st, pubs, lenientPolicy, pulling)
	run(t, pl)
	if dec, err := pl.Check(ctx, alpineSubject(d)); err != nil || dec.Verdict != proxy.Warn {
		t.Fatalf("lenient policy: %+v %v", dec, err)
	}
	asked.Store(0)
	pl.SetPolicy(mustPolicy(t, `
rules:
  - name: strict
    match: {}
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
`))
	n, err := pl.Reevaluate(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reevaluate under pulls in flight: %d, %v", n, err)
	}
	if asked.Load() == 0 {
		t.Fatal("Reevaluate never asked whether pulls were in flight")
	}
	if rec, err := r.state.Decision(ctx, d.String(), "docker.io", "library/alpine"); err != nil || rec.Verdict != "block" {
		t.Fatalf("verdict after Reevaluate: %q (%v), want block", rec.Verdict, err)
	}
}
