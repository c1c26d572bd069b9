package controls_test

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// With any control in force, which indexes list a pulled digest is read
// from the store once per second at most, not on every pull; a failed
// read is not reused; an index this replica links covers its children
// from the next pull, however recently they were looked up.
func TestIndexLookupsAreReusedBriefly(t *testing.T) {
	ctx := context.Background()
	st, v, clk := setup(t, controls.Options{})
	index, child := digestN(1), digestN(2)
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: index, Reason: "bad release", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	allowed := policy.Decision{Verdict: policy.Allow, Effective: policy.Allow}
	verdict := func() policy.Verdict {
		t.Helper()
		return v.Apply(ctx, "docker.io", "team/app", child, allowed).Effective
	}
	for range 5 {
		if verdict() != policy.Allow {
			t.Fatal("a digest no quarantined index lists is refused")
		}
	}
	if n := st.parentReads.Load(); n != 1 {
		t.Fatalf("%d reads of the indexes listing the digest in five pulls within a second, want 1", n)
	}

	// Another replica links the index: seen here within a second.
	if err := st.LinkIndex(ctx, "docker.io", "team/app", index, []string{child}); err != nil {
		t.Fatal(err)
	}
	clk.set(t0.Add(time.Second))
	if verdict() != policy.Block {
		t.Fatal("the quarantine of an index linked elsewhere does not cover its child a second later")
	}
	if n := st.parentReads.Load(); n != 2 {
		t.Fatalf("%d reads after the lookup aged, want 2", n)
	}

	// This replica links an index: its quarantine covers the child at once.
	other, child2 := digestN(3), digestN(4)
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: other, Reason: "bad too", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	apply := func(d string) policy.Verdict { return v.Apply(ctx, "docker.io", "team/app", d, allowed).Effective }
	if apply(child2) != policy.Allow {
		t.Fatal("child2 refused before its index is linked")
	}
	if err := st.LinkIndex(ctx, "docker.io", "team/app", other, []string{child2}); err != nil {
		t.Fatal(err)
	}
	v.IndexLinked("docker.io", "team/app", []string{child2})
	if apply(child2) != policy.Block {
		t.Fatal("the quarantine of an index linked here does not cover its child at once")
	}

	// A failed read gives no indexes and is not reused.
	clk.set(t0.Add(3 * time.Second))
	st.fail.Store(true)
	if apply(child2) != policy.Allow {
		t.Fatal("with the store away the child's index is not known: only its own controls apply")
	}
	st.fail.Store(false)
	if apply(child2) != policy.Block {
		t.Fatal("a failed lookup was reused")
	}
}
