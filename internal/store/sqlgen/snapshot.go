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
	q    chan pendingSnap
	done chan struct{}
}

// StartSnapshotWriter starts the background writer that stores paging
// snapshots through w (a connection or pool of its own). Call the returned
// function to flush and stop it (before closing w).
func (e *Engine) StartSnapshotWriter(w Querier) (stop func()) {
	sw := &snapWriter{q: make(chan pendingSnap, snapQueueLen), done: make(chan struct{})}
	e.writer.Store(sw)
	go func() {
		defer close(sw.done)
		for p := range sw.q {
			batch := []pendingSnap{p}
		more:
			for len(batch) < 64 {
				select {
				case n, ok := <-sw.q:
					if !ok {
						break more
					}
					batch = append(batch, n)
				default:
					break more
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			for _, b := range batch {
				// Best effort: a snapshot that cannot be stored is served
				// from memory here, and re-run elsewhere.
				_ = e.storeSnapshot(ctx, w, b.id, b.s)
			}
			cancel()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.writer.Store(nil)
			close(sw.q)
			<-sw.done
		})
	}
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
