package sqlgen

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Plans records the query plans of the statements a search or history
// request runs (a debug hook for tests and diagnostics): with a context
// from WithExplain, the Engine asks the database to EXPLAIN each statement
// (EXPLAIN QUERY PLAN on SQLite, EXPLAIN (COSTS OFF) on PostgreSQL) on the
// same connection, with the same arguments, before running it.
type Plans struct {
	mu    sync.Mutex
	steps []string
}

// Steps returns the recorded plans, one per statement, in the order they
// ran.
func (p *Plans) Steps() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.steps...)
}

type explainKey struct{}

// WithExplain returns ctx under which the Engine records into p the plan of
// every statement of a search or history request.
func WithExplain(ctx context.Context, p *Plans) context.Context {
	return context.WithValue(ctx, explainKey{}, p)
}

// Explainer is implemented by a Querier that rewrites statements before
// running them (SQLite's eager reads): it explains a statement as it would
// really run it, on the connection that has just run it. Other queriers
// are explained with the dialect's EXPLAIN prefix before the statement
// runs.
type Explainer interface {
	Explain(ctx context.Context, sql string, args ...any) ([]string, error)
}

// explaining wraps qr so that it records plans when ctx asks for them.
func (e *Engine) explaining(ctx context.Context, qr Querier) Querier {
	p, _ := ctx.Value(explainKey{}).(*Plans)
	if p == nil {
		return qr
	}
	return explainQuerier{Querier: qr, d: e.D, p: p}
}

type explainQuerier struct {
	Querier
	d Dialect
	p *Plans
}

// Pinned records the plans of the plan-fixed statements as they run
// (Pinner).
func (q explainQuerier) Pinned() Querier {
	if p, ok := q.Querier.(Pinner); ok {
		return explainQuerier{Querier: p.Pinned(), d: q.d, p: q.p}
	}
	return q
}

// Ranges records the plans of the statements that read index ranges
// only as they run (RangeReader).
func (q explainQuerier) Ranges() Querier {
	if r, ok := q.Querier.(RangeReader); ok {
		return explainQuerier{Querier: r.Ranges(), d: q.d, p: q.p}
	}
	return q
}

// Keyed records the plans of the statements that read rows by key as
// they run (Keyer).
func (q explainQuerier) Keyed() Querier {
	if k, ok := q.Querier.(Keyer); ok {
		return explainQuerier{Querier: k.Keyed(), d: q.d, p: q.p}
	}
	return q
}

func (q explainQuerier) Query(ctx context.Context, sql string, args ...any) (Rows, error) {
	var lines []string
	var err error
	var rows Rows
	if ex, ok := q.Querier.(Explainer); ok {
		// Run the statement first: SQLite notices a changed schema (and
		// reloads its statistics) when a statement starts its read, which
		// preparing an EXPLAIN does not do.
		if rows, err = q.Querier.Query(ctx, sql, args...); err != nil {
			return nil, err
		}
		lines, err = ex.Explain(ctx, sql, args...)
	} else {
		lines, err = ExplainRows(ctx, q.Querier, q.d, sql, args...)
	}
	if err != nil {
		if rows != nil {
			rows.Close()
		}
		return nil, fmt.Errorf("explain: %w", err)
	}
	q.p.mu.Lock()
	q.p.steps = append(q.p.steps, strings.Join(lines, "\n"))
	q.p.mu.Unlock()
	if rows != nil {
		return rows, nil
	}
	return q.Querier.Query(ctx, sql, args...)
}

// ExplainRows runs the dialect's EXPLAIN of sql through qr and returns the
// plan, one line per node (SQLite lines are indented by depth).
func ExplainRows(ctx context.Context, qr Querier, d Dialect, sql string, args ...any) ([]string, error) {
	if d == Postgres {
		return collect(ctx, qr, scanColumn[string], "EXPLAIN (COSTS OFF) "+sql, args...)
	}
	rows, err := qr.Query(ctx, "EXPLAIN QUERY PLAN "+sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	depth := map[int64]int{}
	var out []string
	for rows.Next() {
		var id, parent, unused int64
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, err
		}
		depth[id] = depth[parent] + 1
		out = append(out, strings.Repeat("  ", depth[id]-1)+detail)
	}
	return out, rows.Err()
}
