package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// peekSpendPeek checks that Peek tells the budget and spends none of it.
func peekSpendPeek(t *testing.T, lim interface {
	Limiter
	Peeker
}) {
	t.Helper()
	ctx := context.Background()
	l := Limit{Rate: 1, Period: time.Minute, Burst: 5} // slow: the test does not race the clock
	for range 3 {
		res, err := lim.Peek(ctx, "client:p", l)
		if err != nil || res.Remaining != 5 {
			t.Fatalf("fresh key: %+v, %v; want the whole burst 5", res, err)
		}
	}
	if res, err := lim.AllowN(ctx, "client:p", l, 2); err != nil || !res.Allowed {
		t.Fatalf("spend 2: %+v, %v", res, err)
	}
	for range 3 {
		res, err := lim.Peek(ctx, "client:p", l)
		if err != nil || res.Remaining != 3 || res.Reset < time.Minute || res.Reset > 2*time.Minute {
			t.Fatalf("after spending 2: %+v, %v; want 3 left, full in ~2m", res, err)
		}
	}
	if res, err := lim.AllowN(ctx, "client:p", l, 3); err != nil || !res.Allowed {
		t.Fatalf("the peeks spent budget: %+v, %v", res, err)
	}
	if res, err := lim.Peek(ctx, "client:p", l); err != nil || res.Remaining != 0 {
		t.Fatalf("exhausted: %+v, %v", res, err)
	}
	if res, err := lim.Peek(ctx, "client:p", Limit{}); err != nil || !res.Allowed {
		t.Fatalf("disabled limit: %+v, %v", res, err)
	}
}

func TestMemoryPeek(t *testing.T) {
	c := newClock()
	peekSpendPeek(t, NewMemory(MemoryOptions{Now: c.Now}))
}

func TestRedisPeek(t *testing.T) {
	srv := redistest.Start(t)
	r, err := OpenRedis(srv.URL, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	peekSpendPeek(t, r)
}

func TestMiddlewareBudget(t *testing.T) {
	c := newClock()
	mem := NewMemory(MemoryOptions{Now: c.Now})
	m := New(Options{Limiter: mem, Client: Limit{Rate: 10, Period: time.Minute, Burst: 10}, System: Limit{Rate: 100, Period: time.Minute, Burst: 100}})
	ctx := context.Background()
	app := &principal.Principal{ClientID: "app", Scopes: []string{"patient/*.rs"}, Patient: "p1"}
	b, err := m.Budget(ctx, app)
	if err != nil || b.Limit.Rate != 10 || b.Remaining != 10 {
		t.Fatalf("fresh app: %+v, %v", b, err)
	}
	// Spend what a request would, under the middleware's key.
	if _, err := m.check(ctx, ScopeClient, "app", b.Limit, 4); err != nil {
		t.Fatal(err)
	}
	if b, err = m.Budget(ctx, app); err != nil || b.Remaining != 6 {
		t.Fatalf("after 4: %+v, %v", b, err)
	}
	sys := &principal.Principal{ClientID: "svc", Scopes: []string{"system/*.rs"}}
	if b, err = m.Budget(ctx, sys); err != nil || b.Limit.Rate != 100 || b.Remaining != 100 {
		t.Fatalf("system client: %+v, %v", b, err)
	}
	off := New(Options{Limiter: mem})
	if b, err = off.Budget(ctx, app); err != nil || b.Limit.Enabled() {
		t.Fatalf("no limit: %+v, %v", b, err)
	}
}
