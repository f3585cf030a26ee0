package audit

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// coalesced are the kinds a caller can make happen at request rate by
// misbehaving (hammering past a rate limit, from a refused network, with a
// bad credential). One record per second and per (kind, client, address,
// status) stands for all of them, so a flood cannot crowd out the trail.
var coalesced = map[Kind]bool{KindRateLimited: true, KindNetworkRefused: true, KindAuthnFailure: true}

// maxCoalesceKeys bounds the Coalescer's table; beyond it events pass
// through unmerged (never dropped).
const maxCoalesceKeys = 10000

// Coalescer is a Sink that merges repeated refusals: within each interval
// the first refusal of a (kind, client, address, status) is recorded at
// once, the following ones are counted and recorded as one event with
// Occurrences set when the interval ends. Every other event passes
// through unchanged. Nothing is lost: counts pending at Close are flushed.
type Coalescer struct {
	next     Sink
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]*pendingRefusal

	stop chan struct{}
	done chan struct{}
}

type pendingRefusal struct {
	first time.Time // when the interval began (the first event was recorded)
	last  Event     // the latest merged event
	count int       // events merged since first (not yet recorded)
}

// NewCoalescer returns a Coalescer in front of next that merges refusals
// per interval (default one second) and flushes in the background until
// Close.
func NewCoalescer(next Sink, interval time.Duration) *Coalescer {
	if interval <= 0 {
		interval = time.Second
	}
	c := &Coalescer{next: next, interval: interval, now: time.Now, pending: map[string]*pendingRefusal{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// Record implements Sink.
func (c *Coalescer) Record(ctx context.Context, e Event) {
	if !coalesced[e.Kind] || c.stopped() {
		c.next.Record(ctx, e)
		return
	}
	key := string(e.Kind) + "\x00" + e.ClientID + "\x00" + e.Address + "\x00" + strconv.Itoa(e.Status)
	now := c.now()
	c.mu.Lock()
	p := c.pending[key]
	switch {
	case p != nil:
		p.last = e
		p.count += max(e.Occurrences, 1)
		c.mu.Unlock()
		return
	case len(c.pending) >= maxCoalesceKeys:
		c.mu.Unlock()
		c.next.Record(ctx, e)
		return
	}
	c.pending[key] = &pendingRefusal{first: now}
	c.mu.Unlock()
	c.next.Record(ctx, e)
}

func (c *Coalescer) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// Close flushes the pending counts and stops the background flush.
func (c *Coalescer) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *Coalescer) run() {
	defer close(c.done)
	t := time.NewTicker(c.interval / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.flush(true)
			return
		case <-t.C:
			c.flush(false)
		}
	}
}

// flush records the merged events of the intervals that have ended (all
// of them when final) and forgets their keys.
func (c *Coalescer) flush(final bool) {
	now := c.now()
	var out []Event
	c.mu.Lock()
	for k, p := range c.pending {
		if !final && now.Sub(p.first) < c.interval {
			continue
		}
		delete(c.pending, k)
		if p.count > 0 {
			e := p.last
			e.Occurrences = p.count
			out = append(out, e)
		}
	}
	c.mu.Unlock()
	for _, e := range out {
		c.next.Record(context.Background(), e)
	}
}

// occurrences is how many events e stands for.
func (e *Event) occurrences() int { return max(e.Occurrences, 1) }
