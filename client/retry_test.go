package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// throttler answers the first n requests with status and Retry-After ra,
// then 200 with the request body echoed.
func throttler(t *testing.T, n int32, status int, ra func() string) (*httptest.Server, *atomic.Int32, *[]string) {
	var hits atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if hits.Add(1) <= n {
			if v := ra(); v != "" {
				w.Header().Set("Retry-After", v)
			}
			writeOutcome(w, status, "throttled", "slow down")
			return
		}
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"Patient","id":"p1"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits, &bodies
}

func TestRetryAfterSeconds(t *testing.T) {
	srv, hits, _ := throttler(t, 2, 429, func() string { return "2" })
	c := newTestClient(t, srv.URL)
	waits := recordSleeps(c)
	r, err := c.Read(context.Background(), "Patient", "p1")
	if err != nil || r.ID != "p1" {
		t.Fatalf("%v %+v", err, r)
	}
	if hits.Load() != 3 || len(*waits) != 2 || (*waits)[0] != 2*time.Second || (*waits)[1] != 2*time.Second {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	srv, hits, _ := throttler(t, 1, 503, func() string { return now.Add(5 * time.Second).Format(http.TimeFormat) })
	c := newTestClient(t, srv.URL)
	c.now = func() time.Time { return now }
	waits := recordSleeps(c)
	if _, err := c.Read(context.Background(), "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 || len(*waits) != 1 || (*waits)[0] != 5*time.Second {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}
}

func TestRetryBackoffWithoutRetryAfterIsBounded(t *testing.T) {
	srv, hits, _ := throttler(t, 3, 503, func() string { return "" })
	c := newTestClient(t, srv.URL, WithRetry(RetryPolicy{MaxRetries: 3, MaxWait: 800 * time.Millisecond}))
	waits := recordSleeps(c)
	if _, err := c.Read(context.Background(), "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 4 || len(*waits) != 3 {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}
	for i, w := range *waits {
		if w <= 0 || w > 800*time.Millisecond {
			t.Errorf("wait %d = %v, outside (0, MaxWait]", i, w)
		}
	}
}

func TestRetryGivesUpAfterMaxRetries(t *testing.T) {
	srv, hits, _ := throttler(t, 100, 429, func() string { return "1" })
	c := newTestClient(t, srv.URL, WithRetry(RetryPolicy{MaxRetries: 2}))
	recordSleeps(c)
	_, err := c.Read(context.Background(), "Patient", "p1")
	var fe *Error
	if !errors.As(err, &fe) || fe.StatusCode != 429 || fe.Outcome == nil || hits.Load() != 3 {
		t.Fatalf("err %v hits %d", err, hits.Load())
	}
	// Retries disabled: one attempt.
	hits.Store(0)
	c2 := newTestClient(t, srv.URL, WithRetry(RetryPolicy{}))
	if _, err := c2.Read(context.Background(), "Patient", "p1"); err == nil || hits.Load() != 1 {
		t.Fatalf("no-retry: err %v hits %d", err, hits.Load())
	}
}

func TestRetryAfterBeyondMaxWaitIsNotWaitedFor(t *testing.T) {
	srv, hits, _ := throttler(t, 1, 429, func() string { return "3600" })
	c := newTestClient(t, srv.URL, WithRetry(RetryPolicy{MaxRetries: 3, MaxWait: 10 * time.Second}))
	waits := recordSleeps(c)
	_, err := c.Read(context.Background(), "Patient", "p1")
	if statusOf(err) != 429 || hits.Load() != 1 || len(*waits) != 0 {
		t.Fatalf("err %v hits %d waits %v", err, hits.Load(), *waits)
	}
}

func TestRetryWaitStopsOnContextCancel(t *testing.T) {
	srv, _, _ := throttler(t, 1, 503, func() string { return "20" })
	c := newTestClient(t, srv.URL)
	// The real wait, observed: the caller cancels once it has begun.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waited error
	c.sleep = func(ctx context.Context, d time.Duration) error {
		if d != 20*time.Second {
			t.Errorf("wait %v, want the Retry-After of 20 s", d)
		}
		cancel()
		waited = sleepCtx(ctx, d)
		return waited
	}
	_, err := c.Read(ctx, "Patient", "p1")
	if !errors.Is(err, context.Canceled) || !errors.Is(waited, context.Canceled) {
		t.Fatalf("err = %v, wait ended with %v", err, waited)
	}
}

func TestRetryRealWaitHonoursRetryAfter(t *testing.T) {
	srv, hits, _ := throttler(t, 1, 429, func() string { return "1" })
	c := newTestClient(t, srv.URL)
	waits := recordSleeps(c)
	if _, err := c.Read(context.Background(), "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 || len(*waits) != 1 || (*waits)[0] != time.Second {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}
}

// TestSleepCtx checks the real wait (on a fake clock): it lasts the
// duration asked for, and ends early, with the context's error, when the
// context ends.
func TestSleepCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := sleepCtx(context.Background(), 1500*time.Millisecond); err != nil || time.Since(start) != 1500*time.Millisecond {
			t.Fatalf("sleepCtx: %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := sleepCtx(ctx, 20*time.Second); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 150*time.Millisecond {
			t.Fatalf("cancelled sleepCtx: %v after %v", err, time.Since(start))
		}
		if err := sleepCtx(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("sleepCtx(0) after the deadline: %v", err)
		}
	})
}

// onceReader is a body that can be read only once (like a pipe or a
// network stream).
type onceReader struct {
	r    io.Reader
	used bool
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.used && o.r == nil {
		return 0, errors.New("read after close")
	}
	o.used = true
	return o.r.Read(p)
}

func TestNonReplayableBodyIsBufferedForRetry(t *testing.T) {
	srv, hits, bodies := throttler(t, 1, 503, func() string { return "0" })
	c := newTestClient(t, srv.URL)
	recordSleeps(c)
	payload := `{"resourceType":"Patient","name":[{"family":"Once"}]}`
	resp, err := c.Do(context.Background(), "POST", "Patient", &onceReader{r: strings.NewReader(payload)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || hits.Load() != 2 || len(*bodies) != 2 || (*bodies)[0] != payload || (*bodies)[1] != payload {
		t.Fatalf("status %d hits %d bodies %q", resp.StatusCode, hits.Load(), *bodies)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true}, {"7", 7 * time.Second, true}, {" 3 ", 3 * time.Second, true},
		{"-1", 0, false}, {"", 0, false}, {"soon", 0, false},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v %v", tc.in, got, ok)
		}
	}
}
