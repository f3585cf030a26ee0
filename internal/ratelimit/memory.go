package ratelimit

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Memory limiter tracks when
// MemoryOptions.MaxKeys is 0.
const DefaultMaxKeys = 100_000

// sweepEvery is how often (in limiter time) a Memory limiter drops the
// keys that have gone idle.
const sweepEvery = 30 * time.Second

// MemoryOptions configures a Memory limiter.
type MemoryOptions struct {
	// MaxKeys bounds the number of tracked keys (0 = DefaultMaxKeys).
	MaxKeys int
	// Now is the clock (nil = time.Now); tests pass a fake one.
	Now func() time.Time
}

// Memory is an exact in-process GCRA limiter. A key whose theoretical
// arrival time has passed is idle (indistinguishable from a new key) and
// is dropped by a periodic sweep, so memory follows the keys active
// within the last burst window. If more than MaxKeys keys are active at
// once, a random tenth of them is forgotten (each gets a fresh burst):
// memory stays bounded even under a flood of distinct keys.
type Memory struct {
	mu        sync.Mutex
	tat       map[string]time.Duration // theoretical arrival time, offset from origin
	origin    time.Time
	now       func() time.Time
	maxKeys   int
	lastSweep time.Duration
}

// NewMemory returns an empty in-process limiter.
func NewMemory(o MemoryOptions) *Memory {
	m := &Memory{tat: make(map[string]time.Duration), now: o.Now, maxKeys: o.MaxKeys}
	if m.now == nil {
		m.now = time.Now
	}
	if m.maxKeys <= 0 {
		m.maxKeys = DefaultMaxKeys
	}
	m.origin = m.now()
	return m
}

// AllowN spends n cost units of key under limit when they are available.
// It never fails; a disabled limit always admits.
func (m *Memory) AllowN(_ context.Context, key string, limit Limit, n int) (Result, error) {
	if !limit.Enabled() {
		return Result{Allowed: true}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The clock is read under the lock: a time taken before waiting for
	// it would be older than the TAT another request just advanced, and
	// at high rates (small tolerance) that stale time refuses requests
	// the limit allows.
	now := m.now().Sub(m.origin)
	if now-m.lastSweep >= sweepEvery {
		m.sweep(now)
	}
	old, known := m.tat[key]
	res, tat := gcra(old, now, limit, n)
	if !known && len(m.tat) >= m.maxKeys {
		m.sweep(now)
		if len(m.tat) >= m.maxKeys {
			m.shed()
		}
	}
	m.tat[key] = tat // always after now: a refusal keeps a future tat, an admission adds n intervals
	return res, nil
}

// Len reports how many keys are tracked.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// sweep drops idle keys. Called with mu held.
func (m *Memory) sweep(now time.Duration) {
	m.lastSweep = now
	for k, tat := range m.tat {
		if tat <= now {
			delete(m.tat, k)
		}
	}
}

// shed forgets a tenth of the keys (map iteration order is random).
// Called with mu held.
func (m *Memory) shed() {
	n := max(len(m.tat)/10, 1)
	for k := range m.tat {
		delete(m.tat, k)
		n--
		if n == 0 {
			return
		}
	}
}
