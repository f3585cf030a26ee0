// Package auditrec is an in-memory audit sink for tests: it keeps the
// events a service commits, or fails as a test tells it to.
package auditrec

import (
	"context"
	"sync"

	"github.com/lapis-health/lapis/internal/audit"
)

// Recorder keeps the audit events committed to it; safe for concurrent
// use. Its zero value is ready.
type Recorder struct {
	mu   sync.Mutex
	list []audit.Event
	fail error
}

// Failing returns a Recorder whose Commit fails with err.
func Failing(err error) *Recorder { return &Recorder{fail: err} }

// Commit keeps e, or returns the error set with FailWith (keeping nothing).
func (r *Recorder) Commit(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.list = append(r.list, e)
	return nil
}

// FailWith makes the next commits fail with err (nil: succeed again).
func (r *Recorder) FailWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

// Take returns the events kept since the last Take.
func (r *Recorder) Take() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.list
	r.list = nil
	return out
}

// Descriptions returns the descriptions of the events kept since the
// last Take, in order.
func (r *Recorder) Descriptions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.list {
		out = append(out, e.Description)
	}
	return out
}
