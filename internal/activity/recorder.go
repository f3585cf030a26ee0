package activity

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/httpx"
)

// Causes of errors beside the refusal causes of httpx (scope,
// compartment, rate-limit, concurrency, network, credential): what an
// error's status says when no stage named a cause.
const (
	CauseForbidden      = "forbidden"       // 403 for another reason
	CauseNotFound       = "not-found"       // 404, 410
	CauseInvalidRequest = "invalid-request" // 400, 422 and other 4xx
	CauseNotSupported   = "not-supported"   // 405, 406, 415
	CauseConflict       = "conflict"        // 409, 412
	CauseTooLarge       = "too-large"       // 413
	CauseServerError    = "server-error"    // 5xx
)

// Options configures a Recorder; zero values take the defaults.
type Options struct {
	// QueueSize bounds the events waiting to be written (default 8192);
	// beyond it events are dropped and counted (Dropped), never waited
	// for.
	QueueSize int
	// MaxBatch is the events that make a write at once (default 16384).
	// A write's cost grows with the credentials it touches (their buckets
	// and up to RecentPerCredential recent requests each), not with its
	// events, so under load a batch should gather about FlushEvery's worth:
	// at 1000, 8,000 reads/s made 8 writes a second, each inserting and
	// trimming the 100 recent requests of every credential again.
	MaxBatch int
	// FlushEvery is how long an event waits at most for its batch
	// (default 1 s).
	FlushEvery time.Duration
	// RecentPerCredential is how many recent requests each credential
	// keeps (default 100).
	RecentPerCredential int
	// Retention is how long buckets, errors and recent requests are kept
	// (default 30 days).
	Retention time.Duration
	// PruneEvery is how often retention is enforced (default 1 hour).
	PruneEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives write failures (default slog.Default()).
	Logger *slog.Logger

	// flushed, when set (tests), receives the size of every batch
	// written.
	flushed chan<- int
}

// Recorder is an audit.Sink (and audit.Committer, admin.Auditor) in front
// of another: it passes every event on unchanged and also queues the
// events of FHIR requests and of refusals that name a client, written in
// batches to the activity tables by one goroutine.
type Recorder struct {
	*Store
	next audit.Sink
	o    Options
	q    chan audit.Event
	kick chan chan struct{}

	gate    audit.Gate
	done    chan struct{}
	dropped atomic.Int64
	written atomic.Int64
}

// NewRecorder migrates the activity tables on db and starts a Recorder
// that passes events on to next. Close it before next.
func NewRecorder(ctx context.Context, db *database.DB, next audit.Sink, o Options) (*Recorder, error) {
	if next == nil {
		return nil, errors.New("activity: next sink is required")
	}
	st, err := Open(ctx, db)
	if err != nil {
		return nil, err
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 16384
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if o.RecentPerCredential <= 0 {
		o.RecentPerCredential = 100
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Recorder{Store: st, next: next, o: o, q: make(chan audit.Event, o.QueueSize), kick: make(chan chan struct{}), done: make(chan struct{})}
	go r.run()
	return r, nil
}

// Stage is the audit stage of the FHIR API feeding r (audit.Stage with r
// as its recorder).
func (r *Recorder) Stage() func(http.Handler) http.Handler {
	return audit.Stage(audit.StageConfig{Recorder: r})
}

// Record implements audit.Sink: e goes on to the next sink, and into the
// activity when it is a client's request.
func (r *Recorder) Record(ctx context.Context, e audit.Event) {
	r.next.Record(ctx, e)
	r.observe(e)
}

// Commit implements audit.Committer: e is committed by the next sink (or
// recorded, when it cannot commit), and goes into the activity.
func (r *Recorder) Commit(ctx context.Context, e audit.Event) error {
	var err error
	if c, ok := r.next.(interface {
		Commit(context.Context, audit.Event) error
	}); ok {
		err = c.Commit(ctx, e)
	} else {
		r.next.Record(ctx, e)
	}
	r.observe(e)
	return err
}

// Dropped is the events the activity lost to a full queue or a failed
// write.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Written is the events written to the activity tables.
func (r *Recorder) Written() int64 { return r.written.Load() }

// observe queues e when it is activity, never blocking.
func (r *Recorder) observe(e audit.Event) {
	if e.ClientID == "" || e.Status == 0 {
		return
	}
	switch e.Kind {
	case audit.KindREST, audit.KindRateLimited, audit.KindNetworkRefused, audit.KindAuthnFailure:
	default:
		return
	}
	if !r.gate.Enter() {
		r.dropped.Add(1)
		return
	}
	defer r.gate.Leave()
	select {
	case r.q <- e:
	default:
		r.dropped.Add(1)
	}
}

// Flush writes what is queued and waits until it is written (tests,
// shutdown).
func (r *Recorder) Flush() {
	ch := make(chan struct{})
	select {
	case r.kick <- ch:
		<-ch
	case <-r.done:
	}
}

// Close writes what is queued and stops the writer.
func (r *Recorder) Close() error {
	if !r.gate.Shut() {
		return nil
	}
	close(r.q)
	<-r.done
	return nil
}

func (r *Recorder) run() {
	defer close(r.done)
	b := newBatch()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	lastPrune := time.Time{}
	flush := func() {
		if armed {
			timer.Stop()
			armed = false
		}
		if b.n > 0 {
			ctx, cancel := context.WithTimeout(database.Background(context.Background()), 30*time.Second)
			if err := r.Store.write(ctx, b, r.o.RecentPerCredential); err != nil {
				r.dropped.Add(int64(b.n))
				r.o.Logger.Error("activity: write failed; batch lost", "events", b.n, "err", err.Error())
			} else {
				r.written.Add(int64(b.n))
			}
			cancel()
			if r.o.flushed != nil {
				r.o.flushed <- b.n
			}
			b = newBatch()
		}
		if now := r.o.Now(); lastPrune.IsZero() || now.Sub(lastPrune) >= r.o.PruneEvery || now.Before(lastPrune) {
			lastPrune = now
			ctx, cancel := context.WithTimeout(database.Background(context.Background()), time.Minute)
			if err := r.Store.prune(ctx, now.Add(-r.o.Retention)); err != nil {
				r.o.Logger.Error("activity: retention prune failed", "err", err.Error())
			}
			cancel()
		}
	}
	for {
		select {
		case e, ok := <-r.q:
			if !ok {
				flush()
				return
			}
			r.add(b, e)
			if b.n >= r.o.MaxBatch {
				flush()
			} else if !armed {
				timer.Reset(r.o.FlushEvery)
				armed = true
			}
		case <-timer.C:
			armed = false
			flush()
		case ch := <-r.kick:
		drain:
			for {
				select {
				case e, ok := <-r.q:
					if !ok {
						break drain
					}
					r.add(b, e)
				default:
					break drain
				}
			}
			flush()
			close(ch)
		}
	}
}

// add folds e into b.
func (r *Recorder) add(b *batch, e audit.Event) {
	t := e.Time
	if t.IsZero() {
		t = r.o.Now()
	}
	ix := e.Interaction
	if ix == "" {
		ix = "other"
	}
	route := e.Route
	if route == "" {
		route = "-"
	}
	req := Request{Time: t, Interaction: truncate(ix, 64), Route: truncate(route, 200), Status: e.Status, Latency: max(e.Latency, 0)}
	if e.Status >= 400 {
		req.Cause = Cause(e)
	}
	b.add(e.ClientID, req, int64(max(e.Occurrences, 1)), r.o.RecentPerCredential)
}

// Cause is the error cause of e: the one its stage named, else what its
// status says ("" for a success).
func Cause(e audit.Event) string {
	if e.Cause != "" {
		return truncate(e.Cause, 32)
	}
	switch e.Kind {
	case audit.KindRateLimited:
		return string(httpx.CauseRateLimit)
	case audit.KindNetworkRefused:
		return string(httpx.CauseNetwork)
	case audit.KindAuthnFailure:
		return string(httpx.CauseCredential)
	}
	switch s := e.Status; {
	case s < 400:
		return ""
	case s == http.StatusUnauthorized:
		return string(httpx.CauseCredential)
	case s == http.StatusForbidden:
		return CauseForbidden
	case s == http.StatusNotFound || s == http.StatusGone:
		return CauseNotFound
	case s == http.StatusMethodNotAllowed || s == http.StatusNotAcceptable || s == http.StatusUnsupportedMediaType:
		return CauseNotSupported
	case s == http.StatusConflict || s == http.StatusPreconditionFailed:
		return CauseConflict
	case s == http.StatusRequestEntityTooLarge:
		return CauseTooLarge
	case s == http.StatusTooManyRequests:
		return string(httpx.CauseRateLimit)
	case s >= 500:
		return CauseServerError
	}
	return CauseInvalidRequest
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
