package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/redistest"
	"github.com/lapis-health/lapis/internal/testutil/testclock"
)

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in    string
		burst int
		want  Limit
	}{
		{"100/s", 200, Limit{100, time.Second, 200}},
		{"6000/m", 0, Limit{6000, time.Minute, 6000}},
		{" 30 / min ", 10, Limit{30, time.Minute, 10}},
		{"5/h", 1, Limit{5, time.Hour, 1}},
		{"10/10s", 5, Limit{10, 10 * time.Second, 5}},
		{"0", 10, Limit{}},
		{"", 10, Limit{}},
		{"0/s", 10, Limit{}},
	} {
		got, err := ParseLimit(tc.in, tc.burst)
		if err != nil || got != tc.want {
			t.Errorf("ParseLimit(%q, %d) = %+v, %v; want %+v", tc.in, tc.burst, got, err, tc.want)
		}
	}
	for _, bad := range []string{"100", "x/s", "-1/s", "10/fortnight", "10/500ms", "10/1.5s", "10/48h", "2000000/s", "1/s/s"} {
		if l, err := ParseLimit(bad, 0); err == nil {
			t.Errorf("ParseLimit(%q) = %+v, want an error", bad, l)
		}
	}
	if _, err := ParseLimit("10/s", -1); err == nil {
		t.Error("negative burst accepted")
	}
	if s := (Limit{100, time.Second, 200}).String(); s != "100/s burst 200" {
		t.Errorf("String = %q", s)
	}
}

// TestMemoryGCRA checks the GCRA arithmetic: burst, steady rate, cost
// weighting, retry-after and reset.
func TestMemoryGCRA(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(MemoryOptions{Now: c.Now})
	l := Limit{Rate: 10, Period: time.Second, Burst: 5} // one unit per 100 ms

	// A fresh key may spend its whole burst at once.
	for i := range 5 {
		r, _ := m.AllowN(ctx, "k", l, 1)
		if !r.Allowed || r.Remaining != 4-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, r, 4-i)
		}
	}
	r, _ := m.AllowN(ctx, "k", l, 1)
	if r.Allowed || r.RetryAfter != 100*time.Millisecond || r.Remaining != 0 {
		t.Fatalf("over the burst: %+v, want refused, retry after 100ms", r)
	}
	if r.Reset != 500*time.Millisecond {
		t.Fatalf("reset = %v, want 500ms", r.Reset)
	}
	// A refused request spends nothing: after 100 ms exactly one unit.
	c.Add(100 * time.Millisecond)
	if r, _ := m.AllowN(ctx, "k", l, 1); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after 100ms: %+v", r)
	}
	if r, _ := m.AllowN(ctx, "k", l, 1); r.Allowed {
		t.Fatalf("second after 100ms admitted: %+v", r)
	}
	// Cost: 3 units need 300 ms of credit.
	c.Add(200 * time.Millisecond)
	r, _ = m.AllowN(ctx, "k", l, 3)
	if r.Allowed || r.RetryAfter != 100*time.Millisecond {
		t.Fatalf("cost 3 with 2 units: %+v, want retry after 100ms", r)
	}
	if r, _ := m.AllowN(ctx, "k", l, 2); !r.Allowed {
		t.Fatalf("cost 2 with 2 units refused: %+v", r)
	}
	// Keys are independent.
	if r, _ := m.AllowN(ctx, "other", l, 5); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("other key: %+v", r)
	}
	// A cost above the burst passes once the key is idle (instead of
	// never) and is charged in full: 50 units at 100 ms each leave a
	// debt of 45 units beyond the burst.
	if r, _ := m.AllowN(ctx, "k", l, 50); r.Allowed || r.RetryAfter != 500*time.Millisecond {
		t.Fatalf("cost above burst on a key not idle: %+v, want refused until the bucket is full (500ms)", r)
	}
	c.Add(time.Second)
	if r, _ := m.AllowN(ctx, "k", l, 50); !r.Allowed || r.Remaining != 0 || r.Reset != 5*time.Second {
		t.Fatalf("cost above burst on an idle key: %+v, want admitted, reset 5s", r)
	}
	if r, _ := m.AllowN(ctx, "k", l, 1); r.Allowed || r.RetryAfter != 4600*time.Millisecond {
		t.Fatalf("after a 50-unit request: %+v, want refused, retry after 4.6s (45 units of debt + 1)", r)
	}
	if r, _ := m.AllowN(ctx, "k", l, 50); r.Allowed || r.RetryAfter != 5*time.Second {
		t.Fatalf("second 50-unit request: %+v, want refused until the debt is paid (5s)", r)
	}
	c.Add(5 * time.Second)
	if r, _ := m.AllowN(ctx, "k", l, 50); !r.Allowed {
		t.Fatalf("50-unit request after the debt is paid: %+v", r)
	}
	// A disabled limit always admits.
	if r, _ := m.AllowN(ctx, "k", Limit{}, 1000); !r.Allowed {
		t.Fatal("disabled limit refused")
	}
}

// TestMemorySteadyRate drives a key far above its rate on the fake clock
// and counts admissions: exactly burst + rate × time.
func TestMemorySteadyRate(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(MemoryOptions{Now: c.Now})
	l := Limit{Rate: 100, Period: time.Second, Burst: 20}
	admitted := 0
	for range 10_000 { // 10 s at one request per ms
		if r, _ := m.AllowN(ctx, "k", l, 1); r.Allowed {
			admitted++
		}
		c.Add(time.Millisecond)
	}
	if want := 20 + 100*10; admitted < want-1 || admitted > want {
		t.Fatalf("admitted %d in 10 s, want %d", admitted, want)
	}
}

func TestMemoryEviction(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(MemoryOptions{Now: c.Now, MaxKeys: 100})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	for i := range 50 {
		m.AllowN(ctx, fmt.Sprint("a", i), l, 1)
	}
	if n := m.Len(); n != 50 {
		t.Fatalf("tracking %d keys, want 50", n)
	}
	// Idle keys are swept once sweepEvery has passed.
	c.Add(sweepEvery)
	m.AllowN(ctx, "fresh", l, 1)
	if n := m.Len(); n != 1 {
		t.Fatalf("after the sweep %d keys, want 1", n)
	}
	// A flood of distinct active keys never grows past MaxKeys.
	for i := range 1000 {
		m.AllowN(ctx, fmt.Sprint("b", i), l, 1)
		if n := m.Len(); n > 100 {
			t.Fatalf("tracking %d keys, bound is 100", n)
		}
	}
	// A key still inside its window survives a sweep.
	m2 := NewMemory(MemoryOptions{Now: c.Now})
	m2.AllowN(ctx, "slow", Limit{Rate: 1, Period: time.Hour, Burst: 1}, 1)
	m2.AllowN(ctx, "fast", Limit{Rate: 1000, Period: time.Second, Burst: 1}, 1)
	c.Add(sweepEvery)
	m2.AllowN(ctx, "other", l, 1)
	if r, _ := m2.AllowN(ctx, "slow", Limit{Rate: 1, Period: time.Hour, Burst: 1}, 1); r.Allowed || m2.Len() != 2 {
		t.Fatalf("after the sweep: slow %+v, %d keys; want slow still limited and 2 keys", r, m2.Len())
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 100}
	if admitted := allowedConcurrently(m, l, 100); admitted != 100 {
		t.Fatalf("admitted %d of 800 concurrent requests, want exactly the burst 100", admitted)
	}
}

// allowedConcurrently sends n requests of key "k" under l from each of 8
// goroutines at once and returns how many m allowed.
func allowedConcurrently(m *Memory, l Limit, n int) int64 {
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n {
				if r, _ := m.AllowN(context.Background(), "k", l, 1); r.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return admitted.Load()
}

func TestRedisLimiter(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r, err := OpenRedis(srv.URL, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	l := Limit{Rate: 1, Period: time.Minute, Burst: 5} // slow: the test does not race the clock
	for i := range 5 {
		res, err := r.AllowN(ctx, "client:a", l, 1)
		if err != nil || !res.Allowed || res.Remaining != 4-i {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
	}
	res, err := r.AllowN(ctx, "client:a", l, 1)
	if err != nil || res.Allowed {
		t.Fatalf("over the burst: %+v, %v", res, err)
	}
	if res.RetryAfter < 59*time.Second || res.RetryAfter > 60*time.Second {
		t.Fatalf("retry after %v, want ~60s", res.RetryAfter)
	}
	if res.Reset < 4*time.Minute || res.Reset > 5*time.Minute {
		t.Fatalf("reset %v, want ~5m", res.Reset)
	}
	// Cost: 3 of a fresh burst of 5.
	res, _ = r.AllowN(ctx, "client:b", l, 3)
	if !res.Allowed || res.Remaining != 2 {
		t.Fatalf("cost 3: %+v", res)
	}
	if res, _ := r.AllowN(ctx, "client:b", l, 3); res.Allowed {
		t.Fatalf("cost 3 with 2 left admitted: %+v", res)
	}
	// A cost above the burst passes on a full bucket and is charged in
	// full: the next unit waits for the 495 units of debt and itself.
	if res, _ := r.AllowN(ctx, "client:c", l, 500); !res.Allowed {
		t.Fatalf("cost above burst on a fresh key refused: %+v", res)
	}
	if res, _ := r.AllowN(ctx, "client:c", l, 1); res.Allowed || res.RetryAfter < 495*time.Minute || res.RetryAfter > 497*time.Minute {
		t.Fatalf("after a 500-unit request at 1/min burst 5: %+v, want refused for ~496 min", res)
	}
	if res, _ := r.AllowN(ctx, "client:d", l, 1); !res.Allowed {
		t.Fatalf("another key: %+v", res)
	}
	if res, _ := r.AllowN(ctx, "client:d", l, 6); res.Allowed {
		t.Fatalf("cost above burst on a key not idle admitted: %+v", res)
	}
	// The keys carry the Lapis prefix.
	if reply, err := srv.Command("EXISTS rate:lapis:rl:client:a"); err != nil || reply != ":1" {
		t.Fatalf("key rate:lapis:rl:client:a: %q %v", reply, err)
	}
	// Two limiters on one Redis share the limit.
	r2, _ := OpenRedis(srv.URL, RedisOptions{})
	defer r2.Close()
	if res, _ := r2.AllowN(ctx, "client:a", l, 1); res.Allowed {
		t.Fatal("a second limiter on the same Redis did not see the first's spending")
	}
}

func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	c := newClock()
	r, err := OpenRedis(srv.URL, RedisOptions{Timeout: 100 * time.Millisecond, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	l := Limit{Rate: 10, Period: time.Second, Burst: 10}
	if _, err := r.AllowN(ctx, "k", l, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	if _, err := r.AllowN(ctx, "k", l, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stopped Redis: err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a failing call took %v", d)
	}
	// During the backoff the limiter fails at once without a round trip.
	if _, err := r.AllowN(ctx, "k", l, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("backoff: err = %v", err)
	}
	if _, err := OpenRedis("http://nope", RedisOptions{}); err == nil {
		t.Fatal("non-redis URL accepted")
	}
	if _, err := OpenRedis("redis://user:s3cret@[bad", RedisOptions{}); err == nil || containsSecret(err.Error()) {
		t.Fatalf("bad URL: %v (must not repeat the password)", err)
	}
}

func containsSecret(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i:i+6] == "s3cret" {
			return true
		}
	}
	return false
}

// TestMemoryNoStaleClock: a limit far above the offered rate never refuses,
// however the requests interleave (the clock is read under the lock; a time
// read before waiting for it is older than the TAT others advanced).
func TestMemoryNoStaleClock(t *testing.T) {
	var clock atomic.Int64
	start := time.Now()
	// Every reading of the clock moves it 10 µs on: the offered rate is
	// 100,000/s against a limit of 1,000,000/s with a 2 µs tolerance.
	m := NewMemory(MemoryOptions{Now: func() time.Time { return start.Add(time.Duration(clock.Add(10_000))) }})
	l := Limit{Rate: 1_000_000, Period: time.Second, Burst: 2}
	if refused := 16000 - allowedConcurrently(m, l, 2000); refused != 0 {
		t.Fatalf("%d of 16000 requests refused below the limit", refused)
	}
}
