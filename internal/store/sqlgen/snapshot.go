package sqlgen

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// Paging snapshots are written off the request path: a search that needs one
// keeps it in an in-process cache (so this instance serves the next page
// without touching the database) and hands it to a background writer that
// stores it in search_snapshot in batches (so other instances can serve the
// next page too). A snapshot is a cache, not data: if one is lost, the
// following page re-runs the search at its offset.

const (
	snapCacheEntries = 1024    // snapshots kept in memory
	snapCacheRids    = 2000000 // total rids kept in memory
	snapQueueLen     = 1024    // snapshots waiting for the writer
)

// snapCache is a bounded FIFO cache of recent snapshots.
type snapCache struct {
	mu    sync.Mutex
	byID  map[string]*snapshot
	order []string
	rids  int
}

func (c *snapCache) get(id string) *snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *snapCache) put(id string, s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = make(map[string]*snapshot)
	}
	c.byID[id] = s
	c.order = append(c.order, id)
	c.rids += len(s.rids)
	for len(c.order) > snapCacheEntries || (c.rids > snapCacheRids && len(c.order) > 1) {
		old := c.order[0]
		c.order = c.order[1:]
		if o, ok := c.byID[old]; ok {
			c.rids -= len(o.rids)
			delete(c.byID, old)
		}
	}
}

// pendingSnap is a snapshot waiting to be written.
type pendingSnap struct {
	id string
	s  *snapshot
}

// snapWriter stores snapshots in the background.
type snapWriter struct {
	// mu orders offers and the stop: a search that loaded the writer just
	// before the store closed must not send on the closed queue.
	mu     sync.RWMutex
	closed bool
	q      chan pendingSnap
	done   chan struct{}
}

// offer queues p for storing; false when the writer is saturated or
// stopped (this instance still serves the snapshot from memory).
func (sw *snapWriter) offer(p pendingSnap) bool {
	sw.mu.RLock()
	defer sw.mu.RUnlock()
	if sw.closed {
		return false
	}
	select {
	case sw.q <- p:
		return true
	default:
		return false
	}
}

// snapBatch is the most snapshots the writer stores in one statement.
const snapBatch = 64

// StartSnapshotWriter starts the background writer that stores paging
// snapshots through w (a connection or pool of its own), up to snapBatch
// of them in one INSERT, so one commit: on SQLite every commit costs each
// reader connection its page cache at its next read, and a search whose
// result takes more than one page saves a snapshot. A batch gathers the
// snapshots that arrive within SnapshotDelay of its first (none when 0:
// those already queued). Call the returned function to store what is
// queued and stop it (before closing w).
func (e *Engine) StartSnapshotWriter(w Querier) (stop func()) {
	sw := &snapWriter{q: make(chan pendingSnap, snapQueueLen), done: make(chan struct{})}
	e.writer.Store(sw)
	delay := e.SnapshotDelay
	go func() {
		defer close(sw.done)
		for p := range sw.q {
			batch := gather(sw.q, []pendingSnap{p}, delay)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			// Best effort: a snapshot that cannot be stored is served
			// from memory here, and re-run elsewhere.
			_ = e.storeSnapshots(ctx, w, batch)
			cancel()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.writer.Store(nil)
			sw.mu.Lock()
			sw.closed = true
			close(sw.q)
			sw.mu.Unlock()
			<-sw.done
		})
	}
}

// gather adds to batch the snapshots that q holds now and, when delay is
// positive, those that arrive within delay, up to snapBatch in all; it
// returns early when q is closed.
func gather(q <-chan pendingSnap, batch []pendingSnap, delay time.Duration) []pendingSnap {
	var timeout <-chan time.Time
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < snapBatch {
		if timeout == nil {
			select {
			case n, ok := <-q:
				if !ok {
					return batch
				}
				batch = append(batch, n)
			default:
				return batch
			}
			continue
		}
		select {
		case n, ok := <-q:
			if !ok {
				return batch
			}
			batch = append(batch, n)
		case <-timeout:
			return batch
		}
	}
	return batch
}

// queryKey identifies what a snapshot was computed for: the type, the
// criteria, the compartment, the order and the access filters. A page request whose query
// differs (a tampered link, or another caller's filter) does not use it.
func queryKey(q *store.Query) []byte {
	j, _ := json.Marshal(struct {
		Type        string
		Types       []string
		Where       []store.Clause
		Sort        []store.SortKey
		Filter      *store.AccessFilter
		MatchFilter *store.AccessFilter `json:",omitempty"`
		Compartment *store.Compartment  `json:",omitempty"`
	}{q.Type, q.Types, q.Where, q.Sort, q.Filter, q.MatchFilter, q.Compartment})
	sum := sha256.Sum256(j)
	return sum[:]
}
