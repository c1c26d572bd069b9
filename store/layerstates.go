package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Layer states are the scanner's cache of what it found after a stack of
// layers (scanner.LayerCache): derived data, rebuilt by scanning again, so
// both stores bound them and drop the oldest rather than grow.
const (
	// MaxLayerStateSize bounds one stored state; the scanner stores none
	// larger (scanner.MaxLayerStateSize).
	MaxLayerStateSize = 8 << 20
	// maxBoltLayerStates bounds the states in the embedded store: with the
	// usual state of 20–500 kB, a few GB at most.
	maxBoltLayerStates = 10_000
	// layerStateTTL is how long Redis keeps a state nobody reads: one image
	// scanned a month ago is unlikely to have a new tag built on it that
	// is pulled before the scan could simply run again.
	layerStateTTL = 30 * 24 * time.Hour
)

var (
	// layerStatesBucket holds key → state; layerStateOrderBucket holds
	// sequence number → key, oldest first, to drop the oldest past the bound.
	layerStatesBucket     = []byte("layerstates")
	layerStateOrderBucket = []byte("layerstateorder")
	layerStateCountKey    = []byte("count")
)

// errLayerStateTooLarge refuses a state past MaxLayerStateSize.
var errLayerStateTooLarge = errors.New("layer state larger than the bound")

// LayerState implements scanner.LayerCache.
func (b *Bolt) LayerState(_ context.Context, key string) ([]byte, bool, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(layerStatesBucket)
		if bk == nil {
			return nil
		}
		if v := bk.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...) // bbolt's bytes live only as long as the transaction
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read layer state %s: %w", key, err)
	}
	return out, out != nil, nil
}

// PutLayerState implements scanner.LayerCache. Past maxBoltLayerStates the
// oldest states are dropped.
func (b *Bolt) PutLayerState(_ context.Context, key string, state []byte) error {
	return b.putLayerState(key, state, maxBoltLayerStates)
}

// putLayerState is PutLayerState keeping at most maxStates states.
func (b *Bolt) putLayerState(key string, state []byte, maxStates uint64) error {
	if len(state) > MaxLayerStateSize {
		return fmt.Errorf("write layer state %s: %w (%d bytes)", key, errLayerStateTooLarge, len(state))
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		states, err := tx.CreateBucketIfNotExists(layerStatesBucket)
		if err != nil {
			return err
		}
		order, err := tx.CreateBucketIfNotExists(layerStateOrderBucket)
		if err != nil {
			return err
		}
		if states.Get([]byte(key)) != nil {
			return nil // the same stack always gives the same state
		}
		seq, err := order.NextSequence()
		if err != nil {
			return err
		}
		if err := states.Put([]byte(key), state); err != nil {
			return err
		}
		if err := order.Put(binary.BigEndian.AppendUint64(nil, seq), []byte(key)); err != nil {
			return err
		}
		// The count lives in the states bucket under a key no state has
		// (states are keyed "sha256:…").
		var count uint64
		if v := states.Get(layerStateCountKey); len(v) == 8 {
			count = binary.BigEndian.Uint64(v)
		}
		count++
		c := order.Cursor()
		for k, v := c.First(); k != nil && count > maxStates; k, v = c.First() {
			if err := states.Delete(v); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			count--
		}
		return states.Put(layerStateCountKey, binary.BigEndian.AppendUint64(nil, count))
	})
	if err != nil {
		return fmt.Errorf("write layer state %s: %w", key, err)
	}
	return nil
}

func (k redisKeys) layerState(key string) string { return k.prefix + ":layerstate:" + key }

// LayerState implements scanner.LayerCache.
func (r *Redis) LayerState(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.c.Get(ctx, r.keys.layerState(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read layer state %s: %w", key, err)
	}
	return v, true, nil
}

// PutLayerState implements scanner.LayerCache. States expire after
// layerStateTTL; Redis' own maxmemory policy may drop them earlier.
func (r *Redis) PutLayerState(ctx context.Context, key string, state []byte) error {
	if len(state) > MaxLayerStateSize {
		return fmt.Errorf("write layer state %s: %w (%d bytes)", key, errLayerStateTooLarge, len(state))
	}
	if err := r.c.Set(ctx, r.keys.layerState(key), state, layerStateTTL).Err(); err != nil {
		return fmt.Errorf("write layer state %s: %w", key, err)
	}
	return nil
}
