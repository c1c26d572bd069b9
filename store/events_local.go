package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrTooManySubscribers means an Events holds its maximum of subscriptions.
var ErrTooManySubscribers = errors.New("too many subscribers")

// Event bounds: a subscriber's buffer, and the subscriptions one Events
// holds.
const (
	DefaultEventBuffer    = 256
	DefaultMaxSubscribers = 1024
)

// EventsOption tunes an Events.
type EventsOption func(*eventsConfig)

type eventsConfig struct {
	buffer, maxSubscribers int
}

// WithEventBuffer sets how many events a subscriber may fall behind before
// it misses events.
func WithEventBuffer(n int) EventsOption {
	return func(c *eventsConfig) {
		if n > 0 {
			c.buffer = n
		}
	}
}

// WithMaxSubscribers bounds the live subscriptions.
func WithMaxSubscribers(n int) EventsOption {
	return func(c *eventsConfig) {
		if n > 0 {
			c.maxSubscribers = n
		}
	}
}

func newEventsConfig(opts []EventsOption) eventsConfig {
	c := eventsConfig{buffer: DefaultEventBuffer, maxSubscribers: DefaultMaxSubscribers}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// LocalEvents is publish/subscribe in this process's memory. Publish never
// waits for a subscriber: one whose buffer is full misses the event (it
// reads slower than events come), so a stalled reader cannot stall the
// proxy.
type LocalEvents struct {
	cfg    eventsConfig
	mu     sync.Mutex
	topics map[string]map[*localSubscriber]struct{}
	count  int
}

type localSubscriber struct {
	ch chan []byte
}

// NewLocalEvents returns in-memory events.
func NewLocalEvents(opts ...EventsOption) *LocalEvents {
	return &LocalEvents{cfg: newEventsConfig(opts), topics: make(map[string]map[*localSubscriber]struct{})}
}

// Publish implements Events.
func (e *LocalEvents) Publish(_ context.Context, topic string, payload []byte) error {
	if err := checkTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > MaxEventPayload {
		return fmt.Errorf("publish on %s: payload of %d bytes, at most %d", topic, len(payload), MaxEventPayload)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.topics[topic] {
		// Each subscriber gets its own copy: a reader may keep or change it.
		select {
		case s.ch <- append([]byte(nil), payload...):
		default: // full: this subscriber misses the event
		}
	}
	return nil
}

// Subscribe implements Events.
func (e *LocalEvents) Subscribe(ctx context.Context, topic string) (<-chan []byte, func(), error) {
	if err := checkTopic(topic); err != nil {
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	e.mu.Lock()
	if e.count >= e.cfg.maxSubscribers {
		e.mu.Unlock()
		return nil, nil, fmt.Errorf("subscribe to %s: %d subscriptions: %w", topic, e.count, ErrTooManySubscribers)
	}
	s := &localSubscriber{ch: make(chan []byte, e.cfg.buffer)}
	if e.topics[topic] == nil {
		e.topics[topic] = make(map[*localSubscriber]struct{})
	}
	e.topics[topic][s] = struct{}{}
	e.count++
	e.mu.Unlock()

	stop := make(chan struct{})
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			close(stop)
			e.mu.Lock()
			defer e.mu.Unlock()
			// Closed under the lock Publish sends under: never a send on a
			// closed channel.
			delete(e.topics[topic], s)
			if len(e.topics[topic]) == 0 {
				delete(e.topics, topic)
			}
			e.count--
			close(s.ch)
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-stop:
		}
	}()
	return s.ch, cancel, nil
}
