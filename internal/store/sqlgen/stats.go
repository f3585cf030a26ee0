package sqlgen

import (
	"sync"
	"time"
)

// Planner statistics schedule. A database filled while it serves (a server
// started empty and fed transactions) must not keep the statistics it had
// when it was empty: they make the planner pick plans that are right for
// ten rows and take seconds on a million. The stores count the resource
// versions and index writes they commit and refresh the statistics when
// the data has grown by StatsGrowth since the last refresh, and (SQLite)
// at the latest StatsEvery after a write.
const (
	// StatsGrowth is the growth, as a fraction of the rows present at the
	// last refresh, that makes statistics stale: refreshes happen at
	// geometrically spaced sizes, so their total cost stays proportional
	// to the data.
	StatsGrowth = 0.5
	// StatsMinWrites is the fewest writes that trigger a refresh.
	StatsMinWrites = 256
	// StatsEvery is the longest a store that is written to keeps its
	// statistics.
	StatsEvery = 10 * time.Minute
)

// StatsSchedule decides when planner statistics are due. It is safe for
// concurrent use.
type StatsSchedule struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Every overrides StatsEvery when positive; negative disables the
	// time-based refresh.
	Every time.Duration

	mu      sync.Mutex
	base    int64 // rows at the last refresh
	written int64 // writes since the last refresh
	last    time.Time
	running bool
	bg      sync.WaitGroup // the background refresh (Background)
}

func (s *StatsSchedule) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Reset records a refresh of statistics over rows rows.
func (s *StatsSchedule) Reset(rows int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base, s.written, s.last = rows, 0, s.now()
}

// Wrote records n committed writes and reports whether the caller should
// refresh the statistics now; if so it must call Done afterwards. Only one
// caller at a time is told to refresh.
func (s *StatsSchedule) Wrote(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written += n
	if s.running || s.written == 0 {
		return false
	}
	every := s.Every
	if every == 0 {
		every = StatsEvery
	}
	grown := s.written >= StatsMinWrites && float64(s.written) >= StatsGrowth*float64(s.base)
	old := every > 0 && s.now().Sub(s.last) >= every
	if !grown && !old {
		return false
	}
	s.running = true
	return true
}

// Done ends a refresh that Wrote asked for; ok reports whether it
// succeeded (a failed refresh is retried after the next write).
func (s *StatsSchedule) Done(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
	if ok {
		s.base += s.written
		s.written, s.last = 0, s.now()
	}
}

// Background runs refresh in its own goroutine when Wrote(n) says a
// refresh is due, and returns at once: the commit that made the
// statistics stale is answered without waiting for them. Only one
// refresh runs at a time (Wrote sees to it); Wait waits for it.
func (s *StatsSchedule) Background(n int64, refresh func() error) {
	if !s.Wrote(n) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.Done(refresh() == nil)
	}()
}

// Wait returns when no background refresh is running (stores call it on
// Close, tests before they compare plans).
func (s *StatsSchedule) Wait() { s.bg.Wait() }
