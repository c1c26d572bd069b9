package storetest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// LayerStates is the scanner's layer cache as the stores implement it
// (scanner.LayerCache).
type LayerStates interface {
	LayerState(ctx context.Context, key string) ([]byte, bool, error)
	PutLayerState(ctx context.Context, key string, state []byte) error
}

// RunLayerStates checks a store's layer cache: what is put is read back
// whole, unknown keys are misses, and a state past the bound is refused.
func RunLayerStates(t *testing.T, newStates func(t *testing.T) LayerStates) {
	ctx := context.Background()
	t.Run("round trip", func(t *testing.T) {
		s := newStates(t)
		key := "sha256:" + strings.Repeat("a", 64)
		if _, ok, err := s.LayerState(ctx, key); err != nil || ok {
			t.Fatalf("unknown key: ok=%v err=%v", ok, err)
		}
		state := bytes.Repeat([]byte(`{"x":1}`), 1000)
		if err := s.PutLayerState(ctx, key, state); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.LayerState(ctx, key)
		if err != nil || !ok || !bytes.Equal(got, state) {
			t.Fatalf("read back: ok=%v err=%v, %d bytes, want %d", ok, err, len(got), len(state))
		}
		// Another key is still a miss.
		if _, ok, err := s.LayerState(ctx, "sha256:"+strings.Repeat("b", 64)); err != nil || ok {
			t.Fatalf("other key: ok=%v err=%v", ok, err)
		}
	})
	t.Run("bound", func(t *testing.T) {
		s := newStates(t)
		key := "sha256:" + strings.Repeat("c", 64)
		if err := s.PutLayerState(ctx, key, make([]byte, store.MaxLayerStateSize+1)); err == nil {
			t.Fatal("a state past the bound was stored")
		}
		if _, ok, err := s.LayerState(ctx, key); err != nil || ok {
			t.Fatalf("after the refused put: ok=%v err=%v", ok, err)
		}
		if err := s.PutLayerState(ctx, key, make([]byte, store.MaxLayerStateSize)); err != nil {
			t.Fatalf("a state at the bound: %v", err)
		}
	})
}
