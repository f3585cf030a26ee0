package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/principal"
)

// blocker is a handler whose requests run until released, recording the
// order in which they started.
type blocker struct {
	mu      sync.Mutex
	started []string
	release chan struct{}
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.started = append(b.started, r.Header.Get("X-Name"))
	b.mu.Unlock()
	<-b.release
}

func (b *blocker) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.started...)
}

// call is one request in flight through h.
type call struct {
	rec  *httptest.ResponseRecorder
	done chan struct{}
}

func start(h http.Handler, client, method, path, name string) *call {
	r := httptest.NewRequest(method, path, nil)
	r.Header.Set("X-Name", name)
	if client != "" {
		r = r.WithContext(principal.NewContext(r.Context(), &principal.Principal{Method: "apikey", ClientID: client, TokenID: "k-" + client}))
	}
	c := &call{rec: httptest.NewRecorder(), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		h.ServeHTTP(c.rec, r)
	}()
	return c
}

func (c *call) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// TestConcurrencyPerClient: a client runs at most PerClient searches at
// once; its further searches wait in order, then are refused with 429;
// other clients, and the same client's reads, never wait behind them.
func TestConcurrencyPerClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		c := NewConcurrency(ConcurrencyOptions{PerClient: 2, MaxWait: 5 * time.Second, Metrics: rec, Audit: rec})
		b := &blocker{release: make(chan struct{})}
		h := routed(c.Stage(b))

		a1 := start(h, "a", "GET", "/fhir/Observation?code=x", "a1")
		a2 := start(h, "a", "POST", "/fhir/Observation/_search", "a2")
		synctest.Wait()
		a3 := start(h, "a", "GET", "/fhir/_history", "a3")
		synctest.Wait()
		a4 := start(h, "a", "POST", "/fhir", "a4")
		synctest.Wait()
		if run, wait := c.Running("a"); run != 2 || wait != 2 {
			t.Fatalf("client a: %d running, %d waiting; want 2 and 2", run, wait)
		}
		// Another client, and the same client's read, run at once.
		b1 := start(h, "b", "GET", "/fhir/Patient", "b1")
		aRead := start(h, "a", "GET", "/fhir/Patient/p1", "a-read")
		anon := start(h, "", "GET", "/fhir/Patient", "anonymous")
		synctest.Wait()
		if got := len(b.order()); got != 5 {
			t.Fatalf("%d requests started (%v), want a1, a2, b1, a-read and the anonymous one", got, b.order())
		}
		// One of a's searches ends: its first waiting request takes the
		// slot, the second still waits.
		b.release <- struct{}{}
		synctest.Wait()
		order := b.order()
		if order[len(order)-1] != "a3" {
			t.Fatalf("started %v: a3 (first in line) should have started last", order)
		}
		if run, wait := c.Running("a"); run != 2 || wait != 1 {
			t.Fatalf("client a: %d running, %d waiting; want 2 and 1", run, wait)
		}
		// a4 waits out MaxWait: 429 with Retry-After and an
		// OperationOutcome, counted and audited.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if !a4.finished() {
			t.Fatal("a4 still waiting after MaxWait")
		}
		if a4.rec.Code != http.StatusTooManyRequests || a4.rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("a4: %d Retry-After %q, want 429 and 1", a4.rec.Code, a4.rec.Header().Get("Retry-After"))
		}
		var oo struct {
			ResourceType string
			Issue        []struct{ Code, Diagnostics string }
		}
		if err := json.Unmarshal(a4.rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || oo.Issue[0].Code != "throttled" {
			t.Fatalf("a4 body %s", a4.rec.Body.String())
		}
		if rec.refused[ScopeConcurrency] != 1 || len(rec.events) != 1 || rec.events[0].Kind != audit.KindRateLimited || rec.events[0].ClientID != "a" {
			t.Fatalf("refusal not counted or audited: %v %+v", rec.refused, rec.events)
		}
		close(b.release)
		synctest.Wait()
		for i, cl := range []*call{a1, a2, a3, b1, aRead, anon} {
			if !cl.finished() || cl.rec.Code != http.StatusOK {
				t.Errorf("request %d: finished %v, status %d", i, cl.finished(), cl.rec.Code)
			}
		}
		if run, wait := c.Running("a"); run != 0 || wait != 0 {
			t.Errorf("client a after all: %d running, %d waiting", run, wait)
		}
		if len(c.clients) != 0 {
			t.Errorf("%d idle clients kept", len(c.clients))
		}
	})
}

// TestConcurrencyCancelAndQueue: a waiting request whose client goes away
// leaves the line; a full line refuses at once; without MaxWait a request
// over the limit is refused at once.
func TestConcurrencyCancelAndQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewConcurrency(ConcurrencyOptions{PerClient: 1, MaxWait: time.Minute, MaxQueue: 1})
		b := &blocker{release: make(chan struct{})}
		h := routed(c.Stage(b))
		first := start(h, "a", "GET", "/fhir/Patient", "first")
		synctest.Wait()
		ctx, cancel := context.WithCancel(principal.NewContext(context.Background(), &principal.Principal{ClientID: "a"}))
		waiting := &call{rec: httptest.NewRecorder(), done: make(chan struct{})}
		go func() {
			defer close(waiting.done)
			h.ServeHTTP(waiting.rec, httptest.NewRequestWithContext(ctx, "GET", "/fhir/Patient", nil))
		}()
		synctest.Wait()
		full := start(h, "a", "GET", "/fhir/Patient", "full")
		synctest.Wait()
		if !full.finished() || full.rec.Code != http.StatusTooManyRequests {
			t.Fatalf("request beyond a full line: finished %v, status %d", full.finished(), full.rec.Code)
		}
		cancel()
		synctest.Wait()
		if !waiting.finished() {
			t.Fatal("cancelled request still waiting")
		}
		if run, wait := c.Running("a"); run != 1 || wait != 0 {
			t.Fatalf("%d running, %d waiting after the cancel; want 1 and 0", run, wait)
		}
		close(b.release)
		synctest.Wait()
		if !first.finished() {
			t.Fatal("first request did not finish")
		}

		noWait := NewConcurrency(ConcurrencyOptions{PerClient: 1})
		b2 := &blocker{release: make(chan struct{})}
		h2 := routed(noWait.Stage(b2))
		one := start(h2, "a", "GET", "/fhir/Patient", "one")
		synctest.Wait()
		two := start(h2, "a", "GET", "/fhir/Patient", "two")
		synctest.Wait()
		if !two.finished() || two.rec.Code != http.StatusTooManyRequests {
			t.Fatalf("without MaxWait: finished %v, status %d", two.finished(), two.rec.Code)
		}
		close(b2.release)
		synctest.Wait()
		_ = one
	})
}

// TestConcurrencyDisabled: PerClient 0 adds no stage.
func TestConcurrencyDisabled(t *testing.T) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	h := NewConcurrency(ConcurrencyOptions{}).Stage(next)
	if _, ok := h.(http.HandlerFunc); !ok {
		t.Fatalf("stage %T, want next itself", h)
	}
}

func TestHeavy(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/fhir", true},
		{"GET", "/fhir/", true},
		{"POST", "/fhir", true},
		{"POST", "/fhir/_search", true},
		{"GET", "/fhir/_history", true},
		{"GET", "/fhir/Patient", true},
		{"HEAD", "/fhir/Patient", true},
		{"POST", "/fhir/Patient/_search", true},
		{"GET", "/fhir/Patient/_history", true},
		{"GET", "/fhir/Patient/p1/_history", true},
		{"GET", "/fhir/Patient/p1", false},
		{"GET", "/fhir/Patient/p1/_history/2", false},
		{"POST", "/fhir/Patient", false},
		{"PUT", "/fhir/Patient", false},
		{"DELETE", "/fhir/Patient", false},
		{"PUT", "/fhir/Patient/p1", false},
		{"GET", "/fhir/Patient/$everything", false},
		{"GET", "/fhirx/Patient", false},
		{"GET", "/other", false},
		{"GET", "/fhir/a/b/c/d/e", false},
	} {
		if got := heavy(interaction.Parse("/fhir", httptest.NewRequest(c.method, c.path, nil))); got != c.want {
			t.Errorf("heavy(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

// BenchmarkConcurrency measures the stage: a read passes with a look at
// the path; a search takes and returns a slot of its client (parallel
// callers, eight clients).
func BenchmarkConcurrency(b *testing.B) {
	c := NewConcurrency(ConcurrencyOptions{PerClient: 1 << 20, MaxWait: time.Second})
	h := c.Stage(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	bench := func(b *testing.B, path string) {
		var reqs []*http.Request
		for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			r := httptest.NewRequest("GET", path, nil)
			ctx := interaction.NewContext(r.Context(), interaction.Parse("/fhir", r))
			reqs = append(reqs, r.WithContext(principal.NewContext(ctx, &principal.Principal{ClientID: id})))
		}
		var next sync.Mutex
		i := 0
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			next.Lock()
			r := reqs[i%len(reqs)]
			i++
			next.Unlock()
			w := httptest.NewRecorder()
			for pb.Next() {
				h.ServeHTTP(w, r)
			}
		})
	}
	b.Run("read", func(b *testing.B) { bench(b, "/fhir/Patient/p1") })
	b.Run("search", func(b *testing.B) { bench(b, "/fhir/Observation?code=x") })
}
