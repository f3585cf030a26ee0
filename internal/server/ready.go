package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Check is one dependency /readyz checks. Name is all a not-ready answer
// shows of it (a word an operator recognises, never an error text: the
// errors may name hosts or paths).
type Check struct {
	// Name identifies the dependency, e.g. "fhir-database".
	Name string
	// Check returns nil when the dependency answers; it must honour ctx.
	Check func(ctx context.Context) error
}

// ReadyTimeout bounds one /readyz answer: the checks run at once and a
// check still running after it counts as not ready.
const ReadyTimeout = 2 * time.Second

// readiness answers /readyz from the checks and the draining flag.
type readiness struct {
	checks   []Check
	draining atomic.Bool
}

// failing runs every check concurrently within ReadyTimeout and returns
// the names of those that failed, in the order of the checks.
func (rd *readiness) failing(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	failed := make([]bool, len(rd.checks))
	var wg sync.WaitGroup
	for i, c := range rd.checks {
		wg.Go(func() { failed[i] = c.Check(ctx) != nil })
	}
	wg.Wait()
	var names []string
	for i, c := range rd.checks {
		if failed[i] {
			names = append(names, c.Name)
		}
	}
	return names
}

// ServeHTTP answers 200 "ok" when every check passes, otherwise 503 with
// "not ready: NAME, NAME"; while the server shuts down it answers 503
// "shutting down" (so a load balancer stops sending new requests).
func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if rd.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	if names := rd.failing(r.Context()); len(names) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + strings.Join(names, ", ") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
