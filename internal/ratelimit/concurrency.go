package ratelimit

import (
	"container/list"
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
)

// ScopeConcurrency names the per-client concurrency limit in metrics and
// audit events.
const ScopeConcurrency = "concurrency"

// DefaultMaxQueue is ConcurrencyOptions.MaxQueue when it is 0.
const DefaultMaxQueue = 128

// ConcurrencyOptions configures a Concurrency limit.
type ConcurrencyOptions struct {
	// PerClient is the most searches, history requests and batch or
	// transaction Bundles of one client (OAuth client or API key) that
	// run at once; 0 or less disables the limit. Set it below the number
	// of database connections that serve searches, so that no client
	// can hold all of them.
	PerClient int
	// MaxWait is how long a request over the limit waits, in the order
	// the client sent them, for one of the client's requests to finish
	// before it is refused with 429 and Retry-After; 0 refuses at once.
	MaxWait time.Duration
	// MaxQueue is the most requests of one client waiting at once (0 =
	// DefaultMaxQueue); more are refused at once.
	MaxQueue int
	// Metrics and Audit are optional observers.
	Metrics Observer
	Audit   audit.Sink
}

// Concurrency limits how many database-heavy FHIR requests (searches,
// history, batch and transaction Bundles: those that hold a read
// connection for as long as their query runs) one client runs at once.
// Requests over the limit queue per client, first come first served, and
// are refused with 429 after ConcurrencyOptions.MaxWait; other clients'
// requests never wait behind them. Reads, vreads and writes pass at the
// cost of a look at the path. A request without a principal
// (--dev-no-auth) is not limited.
//
// A slot is held for the whole request, response included: a client that
// reads its answers slowly slows only itself.
type Concurrency struct {
	o        ConcurrencyOptions
	maxQueue int
	obs      Observer
	sink     audit.Sink

	mu      sync.Mutex
	clients map[string]*slots // only clients with requests running
}

// slots is one client's running and waiting requests.
type slots struct {
	active  int
	waiters list.List // of chan struct{}, closed when handed a slot
}

// NewConcurrency returns the limit for o.
func NewConcurrency(o ConcurrencyOptions) *Concurrency {
	c := &Concurrency{o: o, maxQueue: o.MaxQueue,
		obs: o.Metrics, sink: o.Audit, clients: map[string]*slots{}}
	if c.maxQueue <= 0 {
		c.maxQueue = DefaultMaxQueue
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	if c.sink == nil {
		c.sink = audit.Discard{}
	}
	return c
}

// Stage is the pipeline stage, after authentication (it keys on the
// principal); it returns next unchanged when the limit is disabled.
func (c *Concurrency) Stage(next http.Handler) http.Handler {
	if c.o.PerClient <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !heavy(interaction.FromContext(r.Context())) {
			next.ServeHTTP(w, r)
			return
		}
		p := principal.FromContext(r.Context())
		if p == nil || p.ClientID == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !c.acquire(r.Context(), p.ClientID) {
			c.refuse(w, r, p)
			return
		}
		defer c.release(p.ClientID)
		next.ServeHTTP(w, r)
	})
}

// Running returns how many requests of client run and wait now (tests,
// diagnostics).
func (c *Concurrency) Running(client string) (running, waiting int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.clients[client]; s != nil {
		return s.active, s.waiters.Len()
	}
	return 0, 0
}

// acquire takes one of client's slots, waiting in line up to MaxWait
// (and while ctx lasts); false when refused.
func (c *Concurrency) acquire(ctx context.Context, client string) bool {
	c.mu.Lock()
	s := c.clients[client]
	if s == nil {
		s = &slots{}
		c.clients[client] = s
	}
	if s.active < c.o.PerClient && s.waiters.Len() == 0 {
		s.active++
		c.mu.Unlock()
		return true
	}
	if c.o.MaxWait <= 0 || s.waiters.Len() >= c.maxQueue {
		c.mu.Unlock()
		return false
	}
	ready := make(chan struct{})
	e := s.waiters.PushBack(ready)
	c.mu.Unlock()
	t := time.NewTimer(c.o.MaxWait)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-ready:
		// Handed a slot as the wait ended: give it back.
		c.releaseLocked(client, s)
	default:
		s.waiters.Remove(e)
	}
	return false
}

// release returns a slot: to the client's first waiting request, if any.
func (c *Concurrency) release(client string) {
	c.mu.Lock()
	c.releaseLocked(client, c.clients[client])
	c.mu.Unlock()
}

func (c *Concurrency) releaseLocked(client string, s *slots) {
	if e := s.waiters.Front(); e != nil {
		close(s.waiters.Remove(e).(chan struct{}))
		return
	}
	s.active--
	if s.active == 0 {
		delete(c.clients, client)
	}
}

// heavy reports whether ix is a search (not $everything), a history
// request or a batch or transaction Bundle: the requests that hold a read
// connection for as long as their query runs.
func heavy(ix *interaction.Interaction) bool {
	if ix == nil {
		return false
	}
	return ix.Search() && !ix.Everything() || ix.History() || ix.Kind == interaction.Batch
}

// refuse answers 429 for a request over its client's limit, counts and
// audits it.
func (c *Concurrency) refuse(w http.ResponseWriter, r *http.Request, p *principal.Principal) {
	c.obs.Refused(ScopeConcurrency)
	ev := audit.Event{
		Time: time.Now(), Kind: audit.KindRateLimited, Action: "E", Outcome: audit.OutcomeMinor,
		Description: "concurrency limit exceeded (client)", Status: http.StatusTooManyRequests,
		UserAgent: truncate(r.UserAgent(), 256),
		ClientID:  p.ClientID, Subject: p.Subject, FHIRUser: p.FHIRUser, Method: p.Method, CredentialID: p.TokenID, Patient: p.Patient,
		Route: audit.RouteShape(r), Cause: string(httpx.CauseConcurrency),
	}
	if a := httpx.ClientIP(r); a.IsValid() {
		ev.Address = a.String()
	}
	c.sink.Record(r.Context(), ev)
	h := w.Header()
	h.Set("Retry-After", "1")
	h.Set("Cache-Control", "no-store")
	msg := "too many concurrent searches, history requests and batches for this client (at most " + strconv.Itoa(c.o.PerClient) +
		" at once); wait for the running ones to finish, then retry after 1 s"
	writeRefusal(w, http.StatusTooManyRequests, "throttled", msg, "", false, true)
}
