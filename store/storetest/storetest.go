// Package storetest is the conformance suite every store.Store passes: one
// named suite per capability, so an implementation (or a test of one
// capability) runs exactly what it needs.
package storetest

import (
	"fmt"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// Run exercises every capability of a Store made fresh by newStore for
// each subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	RunTags(t, newStore)
	RunScans(t, newStore)
	RunMatchMarks(t, newStore)
	RunDecisions(t, newStore)
	RunRelations(t, newStore)
	RunArtifacts(t, newStore)
	RunControls(t, newStore)
	RunConditionalDeletes(t, newStore)
	RunAudit(t, newStore)
	RunCounters(t, func(t *testing.T) store.Counters {
		s := newStore(t)
		c, ok := s.(store.Counters)
		if !ok {
			t.Fatalf("%T does not keep counters", s)
		}
		return c
	})
}

func digestN(n int) string { return fmt.Sprintf("sha256:%064x", n) }
