package sqlite

import (
	"github.com/lapis-health/lapis/internal/store/sqlgen"

	"container/list"
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps prepared read statements by SQL text. Search SQL repeats
// its shape (every value is a bind parameter), so reusing the prepared
// statement saves SQLite from parsing and planning it on every request.
// database/sql prepares a cached statement once per pooled connection.
type stmtCache struct {
	db  *sql.DB
	max int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru *list.List // of *cachedStmt, most recent first
}

type cachedStmt struct {
	query string
	stmt  *sql.Stmt
}

func newStmtCache(db *sql.DB, max int) *stmtCache {
	return &stmtCache{db: db, max: max, m: make(map[string]*list.Element), lru: list.New()}
}

// get returns the prepared statement for query, preparing it if needed.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	if el, ok := c.m[query]; ok {
		c.lru.MoveToFront(el)
		st := el.Value.(*cachedStmt).stmt
		c.mu.Unlock()
		return st, nil
	}
	c.mu.Unlock()
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[query]; ok { // prepared concurrently
		st.Close()
		c.lru.MoveToFront(el)
		return el.Value.(*cachedStmt).stmt, nil
	}
	c.m[query] = c.lru.PushFront(&cachedStmt{query: query, stmt: st})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.query)
		// database/sql defers the real close until in-flight uses end.
		old.stmt.Close()
	}
	return st, nil
}

// close closes every cached statement.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.m {
		el.Value.(*cachedStmt).stmt.Close()
	}
	c.m = map[string]*list.Element{}
	c.lru.Init()
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
	st, err := q.cache.get(ctx, eager(query))
	if err != nil {
		return nil, err
	}
	r, err := q.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (q readQuerier) Exec(ctx context.Context, query string, args ...any) error {
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
