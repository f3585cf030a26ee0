package poll

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestTry runs on synctest's fake clock: the condition is checked at
// once, then after pauses of 1, 2, 4 … ms capped at 100 ms, until it holds
// or the bound has passed.
func TestTry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		ok := Try(time.Second, func() bool {
			at = append(at, time.Since(start))
			return false
		})
		if ok || time.Since(start) != time.Second {
			t.Fatalf("Try = %v after %v, want false after the bound", ok, time.Since(start))
		}
		want := []time.Duration{0, 1, 3, 7, 15, 31, 63, 127, 227, 327, 427, 527, 627, 727, 827, 927, 1000}
		if len(at) != len(want) {
			t.Fatalf("checked at %v", at)
		}
		for i := range want {
			if at[i] != want[i]*time.Millisecond {
				t.Fatalf("checked at %v, want %v ms", at, want)
			}
		}

		start = time.Now()
		n := 0
		if !Try(time.Minute, func() bool { n++; return n == 3 }) || time.Since(start) != 3*time.Millisecond {
			t.Fatalf("Try of a condition true at the third check: after %v", time.Since(start))
		}
	})
}
