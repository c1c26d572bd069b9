package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestBoltLayerStatesBounded: past the bound the oldest states go, the
// newest stay, and the count survives reopening.
func TestBoltLayerStatesBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) string { return fmt.Sprintf("sha256:%064d", i) }
	const maxStates = 3
	for i := range 5 {
		if err := b.putLayerState(key(i), []byte{byte(i)}, maxStates); err != nil {
			t.Fatal(err)
		}
		// The same key again neither counts twice nor moves.
		if err := b.putLayerState(key(i), []byte{byte(i)}, maxStates); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	if b, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.putLayerState(key(5), []byte{5}, maxStates); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		_, ok, err := b.LayerState(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := i >= 3; ok != want {
			t.Errorf("state %d kept = %v, want %v", i, ok, want)
		}
	}
}
