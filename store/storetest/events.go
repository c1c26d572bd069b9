package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// EventsOpener makes a fresh event bus for one subtest, with opts, and
// returns a func that opens one more Events on it: a replica. Events
// published through any of them reach subscribers on all of them.
type EventsOpener func(t *testing.T, opts ...store.EventsOption) (replica func() store.Events)

// eventBound bounds every wait for an event: far above any delivery time,
// so only a lost event (or a hang) fails.
const eventBound = 20 * time.Second

func nextEvent(t *testing.T, ch <-chan []byte) ([]byte, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(eventBound):
		t.Fatal("no event and the channel stayed open")
		return nil, false
	}
}

func subscribe(t *testing.T, ctx context.Context, e store.Events, topic string) (<-chan []byte, func()) {
	t.Helper()
	ch, cancel, err := e.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	t.Cleanup(cancel)
	return ch, cancel
}

// RunEvents is the conformance suite of store.Events.
func RunEvents(t *testing.T, open EventsOpener) {
	ctx := context.Background()
	t.Run("every subscriber gets every event once in order", func(t *testing.T) {
		replica := open(t)
		pub := replica()
		a, _ := subscribe(t, ctx, replica(), "scanned")
		b, _ := subscribe(t, ctx, replica(), "scanned")
		other, _ := subscribe(t, ctx, replica(), "blocked")
		const n = 100 // below the default buffer: nobody may miss one
		for i := range n {
			if err := pub.Publish(ctx, "scanned", fmt.Appendf(nil, "event %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Publish(ctx, "scanned", []byte("end")); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, "blocked", []byte("only here")); err != nil {
			t.Fatal(err)
		}
		for name, ch := range map[string]<-chan []byte{"a": a, "b": b} {
			for i := range n {
				ev, ok := nextEvent(t, ch)
				if want := fmt.Sprintf("event %d", i); !ok || string(ev) != want {
					t.Fatalf("subscriber %s: got %q (open %v), want %q", name, ev, ok, want)
				}
			}
			if ev, _ := nextEvent(t, ch); string(ev) != "end" {
				t.Fatalf("subscriber %s: after the last event got %q, want end (no duplicates)", name, ev)
			}
		}
		if ev, _ := nextEvent(t, other); string(ev) != "only here" {
			t.Fatalf("subscriber of another topic got %q", ev)
		}
	})
	t.Run("unsubscribe closes the channel", func(t *testing.T) {
		replica := open(t)
		e := replica()
		ch, cancel := subscribe(t, ctx, e, "t")
		cancel()
		cancel() // twice is harmless
		if ev, ok := nextEvent(t, ch); ok {
			t.Fatalf("event %q after unsubscribe, want a closed channel", ev)
		}
		if err := e.Publish(ctx, "t", []byte("x")); err != nil {
			t.Fatalf("publish with no subscriber: %v", err)
		}
		cctx, stop := context.WithCancel(ctx)
		ch, _ = subscribe(t, cctx, e, "t")
		stop()
		if _, ok := nextEvent(t, ch); ok {
			t.Fatal("event after the subscription's context ended, want a closed channel")
		}
	})
	t.Run("a stalled subscriber does not block publish", func(t *testing.T) {
		const buffer = 4
		replica := open(t, store.WithEventBuffer(buffer))
		pub := replica()
		stalled, _ := subscribe(t, ctx, replica(), "t")
		done := make(chan error, 1)
		go func() {
			for i := range 1000 {
				if err := pub.Publish(ctx, "t", fmt.Appendf(nil, "%d", i)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(eventBound):
			t.Fatal("publish blocked behind a subscriber that does not read")
		}
		// The stalled subscriber kept the first events and is still
		// subscribed; it missed the rest.
		if ev, ok := nextEvent(t, stalled); !ok || string(ev) != "0" {
			t.Fatalf("stalled subscriber's first event: %q (open %v), want 0", ev, ok)
		}
		fresh, _ := subscribe(t, ctx, replica(), "t")
		if err := pub.Publish(ctx, "t", []byte("after")); err != nil {
			t.Fatal(err)
		}
		if ev, _ := nextEvent(t, fresh); string(ev) != "after" {
			t.Fatalf("new subscriber got %q, want after", ev)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		replica := open(t, store.WithMaxSubscribers(2))
		e := replica()
		_, cancel := subscribe(t, ctx, e, "t")
		subscribe(t, ctx, e, "u")
		if _, _, err := e.Subscribe(ctx, "t"); !errors.Is(err, store.ErrTooManySubscribers) {
			t.Fatalf("third subscription: %v, want ErrTooManySubscribers", err)
		}
		cancel()
		subscribe(t, ctx, e, "t")
		for _, tc := range []struct {
			name, topic string
			payload     []byte
		}{
			{"empty topic", "", nil},
			{"long topic", strings.Repeat("t", store.MaxTopicLen+1), nil},
			{"large payload", "t", make([]byte, store.MaxEventPayload+1)},
		} {
			if err := e.Publish(ctx, tc.topic, tc.payload); err == nil {
				t.Errorf("publish with %s: want an error", tc.name)
			}
		}
		if _, _, err := e.Subscribe(ctx, ""); err == nil {
			t.Error("subscribe to an empty topic: want an error")
		}
	})
}
