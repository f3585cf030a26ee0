package sqlite

import (
	"container/list"
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// stmtCache keeps prepared read statements by SQL text. Search SQL repeats
// its shape (every value is a bind parameter), so reusing the prepared
// statement saves SQLite from parsing and planning it on every request.
// database/sql prepares a cached statement once per pooled connection.
type stmtCache struct {
	db  *sql.DB
	max int

	mu        sync.Mutex
	m         map[string]*list.Element
	lru       *list.List      // of *cachedStmt, most recent first
	preparing map[string]bool // statements being prepared (prepare)
	closed    bool
}

type cachedStmt struct {
	query string
	stmt  *sql.Stmt
}

func newStmtCache(db *sql.DB, max int) *stmtCache {
	return &stmtCache{db: db, max: max, m: make(map[string]*list.Element), lru: list.New(), preparing: make(map[string]bool)}
}

// get returns the prepared statement for query, or nil when it is not
// prepared yet: the caller then runs query on its own connection, and the
// statement is prepared in the background for the next callers. Preparing
// here would take a second connection from the pool while the caller
// holds one in its read transaction: with every connection held by such
// callers, each would wait for another's until its deadline.
func (c *stmtCache) get(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[query]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*cachedStmt).stmt
	}
	if !c.preparing[query] && len(c.preparing) < maxPreparing {
		c.preparing[query] = true
		go c.prepare(query)
	}
	return nil
}

// maxPreparing bounds the statements being prepared in the background.
const maxPreparing = 8

// prepare prepares query on a pooled connection when one is free, and
// caches it.
func (c *stmtCache) prepare(query string) {
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	st, err := c.db.PrepareContext(ctx, query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.preparing, query)
	if err != nil {
		return
	}
	if c.closed {
		st.Close()
		return
	}
	if el, ok := c.m[query]; ok { // prepared concurrently
		st.Close()
		c.lru.MoveToFront(el)
		return
	}
	c.m[query] = c.lru.PushFront(&cachedStmt{query: query, stmt: st})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.query)
		// database/sql defers the real close until in-flight uses end.
		old.stmt.Close()
	}
}

// prepareTimeout bounds a background prepare's wait for a connection.
const prepareTimeout = 30 * time.Second

// close closes every cached statement.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.m {
		el.Value.(*cachedStmt).stmt.Close()
	}
	c.m = map[string]*list.Element{}
	c.lru.Init()
	c.closed = true
	return nil
}

// readQuerier runs queries of a read transaction through the cache.
type readQuerier struct {
	tx    *sql.Tx
	cache *stmtCache
}

// Query runs query computed in full before its first row (eager): the
// driver interrupts a statement whose context ends only while it computes
// that row (sqlite3_interrupt from a watcher that lives for the first
// step); the steps behind later rows run to their end whatever the
// context says. A search whose matches are sparse, which finds its first
// match at once and the others after long scans, would otherwise outlive
// its time budget and hold its connection.
func (q readQuerier) Query(ctx context.Context, query string, args ...any) (sqlgen.Rows, error) {
	return q.query(ctx, eager(query), args)
}

// query runs query through the statement cache.
func (q readQuerier) query(ctx context.Context, query string, args []any) (sqlgen.Rows, error) {
	query, args = anonymous(query, args)
	var r *sql.Rows
	var err error
	if st := q.cache.get(query); st != nil {
		r, err = q.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	} else {
		r, err = q.tx.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

// Keyed implements sqlgen.Keyer: statements that read rows by key run as
// written. The list of rids they read is computed in its first step,
// which the driver can interrupt; each later row is one lookup by key.
func (q readQuerier) Keyed() sqlgen.Querier { return keyedQuerier{q} }

// keyedQuerier is the Querier of a read transaction's statements that
// read rows by key (readQuerier.Keyed).
type keyedQuerier struct{ q readQuerier }

func (k keyedQuerier) Query(ctx context.Context, query string, args ...any) (sqlgen.Rows, error) {
	return k.q.query(ctx, query, args)
}

func (k keyedQuerier) Exec(ctx context.Context, query string, args ...any) error {
	return k.q.Exec(ctx, query, args...)
}

// Explain implements sqlgen.Explainer: the plan of query as written.
func (k keyedQuerier) Explain(ctx context.Context, query string, args ...any) ([]string, error) {
	return sqlgen.ExplainRows(ctx, querier{k.q.tx}, sqlgen.SQLite, query, args...)
}

func (q readQuerier) Exec(ctx context.Context, query string, args ...any) error {
	query, args = anonymous(query, args)
	_, err := q.tx.ExecContext(ctx, query, args...)
	return err
}

// eager rewrites a SELECT so that SQLite computes all of its rows before
// returning the first: a MATERIALIZED common table expression is filled in
// full when first read. Its rows are read back in the order they were
// stored, which is the order of the SELECT's ORDER BY (SQLite keeps the
// ORDER BY of a subquery that is the whole outer query).
func eager(query string) string {
	return "WITH lapis_eager AS MATERIALIZED (" + query + ") SELECT * FROM lapis_eager"
}

// Explain implements sqlgen.Explainer: the plan of query as Query runs it
// (eager), prepared afresh on the transaction's connection.
func (q readQuerier) Explain(ctx context.Context, query string, args ...any) ([]string, error) {
	return sqlgen.ExplainRows(ctx, querier{q.tx}, sqlgen.SQLite, eager(query), args...)
}
