package audit

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type sinkRec struct {
	mu sync.Mutex
	ev []Event
}

func (s *sinkRec) Record(_ context.Context, e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev = append(s.ev, e)
}

func (s *sinkRec) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.ev...)
}

// TestCoalescer runs on a fake clock (testing/synctest): the merged
// record comes when the interval ends, not before.
func TestCoalescer(t *testing.T) {
	synctest.Test(t, testCoalescer)
}

func testCoalescer(t *testing.T) {
	const interval = 50 * time.Millisecond
	next := &sinkRec{}
	c := NewCoalescer(next, interval)
	defer c.Close()
	ctx := context.Background()
	for range 100 {
		c.Record(ctx, Event{Kind: KindRateLimited, ClientID: "c1", Address: "10.0.0.1", Status: 429})
	}
	c.Record(ctx, Event{Kind: KindRateLimited, ClientID: "c2", Address: "10.0.0.1", Status: 429})
	c.Record(ctx, Event{Kind: KindREST, ClientID: "c1"})
	c.Record(ctx, Event{Kind: KindREST, ClientID: "c1"})
	if got := len(next.events()); got != 4 {
		t.Fatalf("before the interval ends: %d events, want 4 (first c1, first c2, two REST)", got)
	}
	time.Sleep(interval - time.Millisecond)
	synctest.Wait()
	if got := len(next.events()); got != 4 {
		t.Fatalf("just before the interval ends: %d events, want 4", got)
	}
	time.Sleep(interval / 4) // the next check after the interval ended
	synctest.Wait()
	ev := next.events()
	if len(ev) != 5 || ev[4].ClientID != "c1" || ev[4].Occurrences != 99 {
		t.Fatalf("after the interval: %+v", ev)
	}
	// A new interval starts with an immediate record again.
	c.Record(ctx, Event{Kind: KindNetworkRefused, ClientID: "c1", Status: 403})
	c.Record(ctx, Event{Kind: KindNetworkRefused, ClientID: "c1", Status: 403})
	c.Record(ctx, Event{Kind: KindNetworkRefused, ClientID: "c1", Status: 403})
	if got := len(next.events()); got != 6 {
		t.Fatalf("first of a new key: %d events, want 6", got)
	}
	c.Close() // flushes the two merged ones
	ev = next.events()
	if len(ev) != 7 || ev[6].Occurrences != 2 || ev[6].Kind != KindNetworkRefused {
		t.Fatalf("after Close: %+v", ev[len(ev)-1])
	}
	// After Close everything passes through.
	c.Record(ctx, Event{Kind: KindRateLimited, ClientID: "c1"})
	if len(next.events()) != 8 {
		t.Fatal("event lost after Close")
	}
	// The alert rules count merged occurrences.
	if (&Event{}).occurrences() != 1 || (&Event{Occurrences: 7}).occurrences() != 7 {
		t.Fatal("occurrences")
	}
}
