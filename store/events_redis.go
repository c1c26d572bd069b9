package store

// Redis channels of RedisEvents (P: the store's key prefix):
//
//	P events:<topic>   Pub/Sub channel (PUBLISH / SUBSCRIBE); nothing is stored
//
// Pub/Sub keeps nothing: a subscriber sees the events published while its
// connection is up. go-redis reconnects and subscribes again after a lost
// connection (a Redis restart); events published in between are missed.
// In Redis Cluster a PUBLISH reaches the subscribers on every node.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RedisEvents is publish/subscribe through Redis, so every replica's
// subscribers see every event. Each subscription holds one Redis
// connection, so subscriptions are bounded (WithMaxSubscribers); a replica
// should subscribe once per topic and fan out to its own clients. A
// subscriber that falls behind by its buffer misses events: nothing waits
// for it, neither publishers nor the Redis connection.
type RedisEvents struct {
	c      redis.UniversalClient
	prefix string
	cfg    eventsConfig
	live   atomic.Int64
}

// NewRedisEvents returns events on channels under prefix.
func NewRedisEvents(c redis.UniversalClient, prefix string, opts ...EventsOption) *RedisEvents {
	return &RedisEvents{c: c, prefix: prefix + "events:", cfg: newEventsConfig(opts)}
}

// Publish implements Events.
func (e *RedisEvents) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := checkTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > MaxEventPayload {
		return fmt.Errorf("publish on %s: payload of %d bytes, at most %d", topic, len(payload), MaxEventPayload)
	}
	if err := e.c.Publish(ctx, e.prefix+topic, payload).Err(); err != nil {
		return fmt.Errorf("publish on %s: %w", topic, err)
	}
	return nil
}

// Subscribe implements Events. It returns once Redis confirmed the
// subscription: every event published after that reaches it.
func (e *RedisEvents) Subscribe(ctx context.Context, topic string) (<-chan []byte, func(), error) {
	if err := checkTopic(topic); err != nil {
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	if n := e.live.Add(1); n > int64(e.cfg.maxSubscribers) {
		e.live.Add(-1)
		return nil, nil, fmt.Errorf("subscribe to %s: %d subscriptions: %w", topic, n-1, ErrTooManySubscribers)
	}
	ps := e.c.Subscribe(ctx, e.prefix+topic)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		ps.Close()
		e.live.Add(-1)
		return nil, nil, fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	in := ps.Channel(redis.WithChannelSize(e.cfg.buffer))
	out := make(chan []byte, e.cfg.buffer)
	stop, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// cancel returns once the channel is closed and the connection given
	// back, like LocalEvents' does.
	cancel := func() {
		once.Do(func() { close(stop) })
		<-done
	}
	go func() {
		defer func() {
			ps.Close()
			e.live.Add(-1)
			close(out)
			close(done)
		}()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- []byte(m.Payload):
				default: // full: this subscriber misses the event
				}
			}
		}
	}()
	return out, cancel, nil
}
