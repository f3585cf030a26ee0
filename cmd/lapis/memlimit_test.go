package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestMemoryLimit: the floor while the live heap is small, twice the
// live heap above half the floor.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, memoryLimitFloor},
		{60 << 20, memoryLimitFloor},
		{memoryLimitFloor / 2, memoryLimitFloor},
		{200 << 20, 400 << 20},
		{4 << 30, 8 << 30},
	} {
		if got := memoryLimit(c.live); got != c.want {
			t.Errorf("memoryLimit(%d MB) = %d MB, want %d MB", c.live>>20, got>>20, c.want>>20)
		}
	}
}

// TestStartMemoryLimit: set by default, left alone when GOMEMLIMIT or
// GOGC is set.
func TestStartMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, env := range []string{"GOMEMLIMIT", "GOGC"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "off")
			debug.SetMemoryLimit(math.MaxInt64)
			if startMemoryLimit() || debug.SetMemoryLimit(-1) != math.MaxInt64 {
				t.Fatalf("the limit was set although %s is", env)
			}
		})
	}
	if !startMemoryLimit() {
		t.Skip("GOGC or GOMEMLIMIT is set in the test's environment")
	}
	if got := debug.SetMemoryLimit(-1); got < memoryLimitFloor {
		t.Fatalf("limit %d MB, want at least %d MB", got>>20, memoryLimitFloor>>20)
	}
}
