package pipeline

import (
	"sync"
	"time"
)

// Event is something worth announcing: a verdict change, a finished scan.
type Event struct {
	Type   string    `json:"type"` // "verdict" or "scan"
	At     time.Time `json:"at"`
	Image  string    `json:"image"` // upstream/repository@digest
	Digest string    `json:"digest"`
	// verdict events
	From    string   `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	// scan events
	State    string `json:"state,omitempty"`
	Findings int    `json:"findings,omitempty"`
}

// subscriberBuffer is how many events a slow subscriber may lag behind
// before it misses some; publishing never waits for a subscriber.
const subscriberBuffer = 256

// broker fans events out to subscribers.
type broker struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// Subscribe returns a channel of events from now on, and a function that
// ends the subscription.
func (p *Pipeline) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, subscriberBuffer)
	p.events.mu.Lock()
	if p.events.subs == nil {
		p.events.subs = map[chan Event]struct{}{}
	}
	p.events.subs[ch] = struct{}{}
	p.events.mu.Unlock()
	return ch, func() {
		p.events.mu.Lock()
		defer p.events.mu.Unlock()
		if _, ok := p.events.subs[ch]; ok {
			delete(p.events.subs, ch)
			close(ch)
		}
	}
}

func (p *Pipeline) publish(e Event) {
	p.events.mu.Lock()
	defer p.events.mu.Unlock()
	for ch := range p.events.subs {
		select {
		case ch <- e:
		default: // a stalled subscriber misses events rather than stalling scans
		}
	}
}
