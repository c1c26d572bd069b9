package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// A result matched against a newer database than this replica's (another
// replica updated first) is not matched back to the older one.
func TestRematchNeverGoesBackToAnOlderDatabase(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	pl := r.pipeline(t)
	run(t, pl)
	if err := pl.Enqueue(context.Background(), "docker.io", "library/alpine", d, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r.state, d)
	r.importDB(t) // this replica's database: built now
	newer := "sha256:0000000000000000000000000000000000000000000000000000000000000000@2999-01-01T00:00:00Z"
	if _, err := store.UpdateScan(context.Background(), r.state, d.String(), func(rec *store.ScanRecord, _ bool) (bool, error) {
		rec.DBVersion = newer
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := pl.Rematch(context.Background()); err != nil || n != 0 {
		t.Fatalf("Rematch: %d, %v; want the newer result left alone", n, err)
	}
	if rec, _ := r.state.Scan(context.Background(), d.String()); rec.DBVersion != newer {
		t.Fatalf("db version %q, want %q kept", rec.DBVersion, newer)
	}
}

// Re-matches run one at a time across replicas: while another replica
// holds the re-match lease, a database change waits; once it is released,
// the re-match runs.
func TestRematchWaitsForTheReplicaRematching(t *testing.T) {
	r := newRig(t)
	d := r.pushAlpine(t)
	leases := store.NewLocalLeases(0)
	pl := pipeline.New(pipeline.Options{Store: r.state, Queue: r.queue, Leases: leases, Consumer: "a", Images: r.images, Scanner: r.scans,
		ScannerVersion: scanner.Version, Matcher: r.db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	run(t, pl)
	if err := pl.Enqueue(context.Background(), "docker.io", "library/alpine", d, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r.state, d)
	ctx := context.Background()
	if ok, err := leases.Acquire(ctx, "rematch", "b", time.Minute); err != nil || !ok {
		t.Fatalf("replica b takes the lease: %v %v", ok, err)
	}
	r.importDB(t)
	watchCtx, stop := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { pl.WatchDB(watchCtx, 20*time.Millisecond); close(watching) }()
	t.Cleanup(func() { stop(); <-watching })

	// Many ticks while b holds the lease: nothing re-matched here.
	time.Sleep(300 * time.Millisecond)
	if rec, _ := r.state.Scan(ctx, d.String()); rec.DBVersion != "" {
		t.Fatalf("re-matched (db %q) while another replica held the lease", rec.DBVersion)
	}
	if err := leases.Release(ctx, "rematch", "b"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rec, _ := r.state.Scan(ctx, d.String()); rec.DBVersion == r.db.Version() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not re-matched after the lease was released")
		}
	}
	// Released again once done: the next replica may take it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, err := leases.Acquire(ctx, "rematch", "c", time.Minute); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the re-match lease was kept after the re-match")
		}
	}
}
