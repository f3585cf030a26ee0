// Package poll waits in tests for a condition that another process or
// goroutine brings about and that offers no event to wait on (a row a
// background worker writes, a status a server returns once its poller ran).
// The condition is checked at once and then at growing intervals (1 ms
// doubling up to 100 ms) until it holds; the bound only limits how long a
// broken system is waited for, so it is generous and never a timing
// target. Code that waits on time itself (expiry, windows, tickers) uses
// testing/synctest instead.
package poll

import (
	"testing"
	"time"
)

// maxInterval caps the pause between two checks.
const maxInterval = 100 * time.Millisecond

// Until checks cond until it returns true; when it still does not after
// within, t fails with "what: not within ...".
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Try(within, cond) {
		t.Fatalf("%s: not within %v", what, within)
	}
}

// Try checks cond until it returns true (reporting true) or within has
// passed (reporting false).
func Try(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	timer := time.NewTimer(pause)
	defer timer.Stop()
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		timer.Reset(min(pause, left))
		<-timer.C
		pause = min(2*pause, maxInterval)
	}
}
