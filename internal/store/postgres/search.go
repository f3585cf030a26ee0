package postgres

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// Searches run as unnamed statements, planned with their values at every
// execution (querier): right where the values choose the plan, but most
// search statements fix their plan in their text (the driving clause's
// rids first, then the rows by key: sqlgen.Pinner), and parsing and
// planning them costs more than running them (0.3 to 1.4 ms for a
// search's rid query against a fraction of that to run it). Those run as
// named prepared statements with PostgreSQL's generic plan, made once per
// connection and statement: each is sent in a pipeline after
// set_config('plan_cache_mode', 'force_generic_plan', true), in the same
// implicit transaction (one Sync ends both), so the setting holds for that
// statement only and costs no round trip.

// searchQuerier is the Querier of searches outside a transaction (inside
// one, the setting would outlive the statement).
type searchQuerier struct {
	querier
	p *pgxpool.Pool
}

func newSearchQuerier(p *pgxpool.Pool) searchQuerier { return searchQuerier{querier{p}, p} }

// Pinned implements sqlgen.Pinner.
func (q searchQuerier) Pinned() sqlgen.Querier {
	return genericQuerier{settingQuerier{q.p, genericMode}}
}

// Ranges implements sqlgen.RangeReader: statements with sequential scans
// disabled, planned with their values.
func (q searchQuerier) Ranges() sqlgen.Querier { return settingQuerier{q.p, noSeqScan} }

// genericMode runs a statement with a generic plan (see above).
const genericMode = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"

// noSeqScan runs a statement with sequential scans disabled.
const noSeqScan = "SELECT set_config('enable_seqscan', 'off', true)"

// settingQuerier runs each statement with a planner setting (a
// set_config(…, true) statement: genericMode or noSeqScan) for that
// statement only: sent in a pipeline after the setting, in the same
// implicit transaction (one Sync ends both), at no extra round trip.
type settingQuerier struct {
	p       *pgxpool.Pool
	setting string
}

func (q settingQuerier) Query(ctx context.Context, sql string, args ...any) (sqlgen.Rows, error) {
	b := &pgx.Batch{}
	b.Queue(q.setting)
	b.Queue(sql, args...)
	br := q.p.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, mapErr(err)
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, mapErr(err)
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (q settingQuerier) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := q.p.Exec(ctx, sql, args...)
	return mapErr(err)
}

// genericQuerier runs statements with generic plans, and explains them
// with the plan they run with.
type genericQuerier struct{ settingQuerier }

// explainSeq numbers the statements Explain prepares.
var explainSeq atomic.Int64

// Explain implements sqlgen.Explainer: the generic plan of sql, the one
// Query runs it with (EXPLAIN of a statement with bound values would show
// a plan made for those values). The statement is prepared under a name
// of its own and explained with null arguments: a generic plan does not
// look at them, and EXPLAIN without ANALYZE runs nothing.
func (q genericQuerier) Explain(ctx context.Context, sql string, args ...any) ([]string, error) {
	tx, err := q.p.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	name := "lapis_explain_" + strconv.FormatInt(explainSeq.Add(1), 10)
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan", pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "PREPARE "+name+" AS "+sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, err
	}
	call := "EXECUTE " + name
	if len(args) > 0 {
		call += "(" + strings.TrimSuffix(strings.Repeat("NULL, ", len(args)), ", ") + ")"
	}
	lines, err := sqlgen.ExplainRows(ctx, querier{tx}, sqlgen.Postgres, call)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "DEALLOCATE "+name, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, err
	}
	return lines, tx.Commit(ctx)
}

// batchRows are the rows of a pipelined statement; closing them ends the
// pipeline and returns its connection to the pool.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *batchRows) Close() {
	if r.br == nil {
		return
	}
	r.Rows.Close()
	r.err = r.br.Close()
	r.br = nil
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return mapErr(err)
	}
	return mapErr(r.err)
}
