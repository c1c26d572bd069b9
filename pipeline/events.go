package pipeline

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/portcullis/portcullis/store"
)

// Event is something worth announcing: a verdict change, a finished scan.
type Event struct {
	Type   string    `json:"type"` // "verdict", "scan", or one of the Event* types
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

	// ID names the event (set when published), so receivers can tell a
	// repeat from a new event.
	ID string `json:"id,omitempty"`
	// Verdict events: where and under what the verdict was decided, and
	// its reasons in full (Reasons has their codes).
	Upstream      string        `json:"upstream,omitempty"`
	Repository    string        `json:"repository,omitempty"`
	Tag           string        `json:"tag,omitempty"` // the tag it was last pulled by there
	Rule          string        `json:"rule,omitempty"`
	PolicyVersion string        `json:"policyVersion,omitempty"`
	Causes        []EventReason `json:"causes,omitempty"`
	// Details is the API path of the digest's scan and verdicts.
	Details   string `json:"details,omitempty"`
	DBVersion string `json:"dbVersion,omitempty"`
	// newly_vulnerable: the images a database update made fail their
	// policy (at most maxAffectedImages; MoreImages counts the rest).
	Images     []AffectedImage `json:"images,omitempty"`
	MoreImages int             `json:"moreImages,omitempty"`
	// db_stale and db_updated: the database in force.
	DBBuiltAt time.Time `json:"dbBuiltAt,omitzero"`
	MaxDBAge  string    `json:"maxDBAge,omitempty"` // db_stale: the policy's bound
	// audit: the record (EventAudit).
	Audit *store.AuditRecord `json:"audit,omitempty"`
}

// eventsTopic is where the pipeline publishes its events in the store:
// with Redis, every replica's subscribers see every replica's events, each
// once.
const eventsTopic = "pipeline"

// subscriberBuffer is how many events a slow subscriber may lag behind
// before it misses some; publishing never waits for a subscriber.
const subscriberBuffer = 256

// broker fans the store's events out to this process's subscribers: one
// store subscription per process, however many clients listen.
type broker struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	started bool
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
	if !p.events.started {
		p.events.started = true
		ready := make(chan struct{})
		go p.relayEvents(ready)
		p.events.mu.Unlock()
		<-ready // events published from now on reach ch
	} else {
		p.events.mu.Unlock()
	}
	return ch, func() {
		p.events.mu.Lock()
		defer p.events.mu.Unlock()
		if _, ok := p.events.subs[ch]; ok {
			delete(p.events.subs, ch)
			close(ch)
		}
	}
}

// relayEvents subscribes to the store's events and hands each to this
// process's subscribers, subscribing again (with a pause) whenever the
// subscription ends, e.g. while Redis restarts. ready is closed once the
// first subscription is up, or failed.
func (p *Pipeline) relayEvents(ready chan struct{}) {
	once := sync.OnceFunc(func() { close(ready) })
	for {
		ch, stop, err := p.o.Events.Subscribe(context.Background(), eventsTopic)
		once()
		if err != nil {
			p.log.Warn("subscribe to events", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for raw := range ch {
			var e Event
			if json.Unmarshal(raw, &e) != nil {
				continue
			}
			p.fanOut(e)
		}
		stop()
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *Pipeline) fanOut(e Event) {
	p.events.mu.Lock()
	defer p.events.mu.Unlock()
	for ch := range p.events.subs {
		select {
		case ch <- e:
		default: // a stalled subscriber misses events rather than stalling others
		}
	}
}

// publish announces e through the store, to every replica's subscribers.
func (p *Pipeline) publish(e Event) {
	if e.ID == "" {
		e.ID = newEventID()
	}
	raw, err := encodeEvent(&e)
	if err != nil {
		p.log.Warn("encode event", "type", e.Type, "image", e.Image, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.o.Events.Publish(ctx, eventsTopic, raw); err != nil {
		p.log.Warn("publish event", "type", e.Type, "image", e.Image, "err", err)
	}
}
