package audit

import "sync"

// Gate guards the queue channel of a Sink that a writer goroutine drains:
// callers send between Enter and Leave while it is open, and Shut closes
// it after the sends under way, so that the channel can then be closed
// without racing a send. The zero Gate is open.
type Gate struct {
	mu     sync.RWMutex
	closed bool
}

// Enter reports whether the gate is open; when it is, the gate stays open
// until the caller's Leave.
func (g *Gate) Enter() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

// Leave ends a successful Enter.
func (g *Gate) Leave() { g.mu.RUnlock() }

// Shut closes the gate once the callers inside have left, and reports
// whether this call closed it (false when it already was).
func (g *Gate) Shut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	return true
}
