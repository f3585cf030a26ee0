// Package sqlgen holds the SQL shared by the SQLite and PostgreSQL stores:
// it turns a store.Query into parameterised SQL (values are always bound,
// never spliced into the text) and runs searches, reads and history through
// a small Querier interface that each dialect adapts its driver to. The few
// dialect differences (placeholders, substring search, rid lists) are
// methods of Dialect.
package sqlgen

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
)

// Dialect is the SQL flavour of a database.
type Dialect int

// Supported dialects.
const (
	SQLite Dialect = iota
	Postgres
)

// Placeholder returns the bind parameter marker for the n-th (1-based)
// argument: "?n" on SQLite, "$n" on PostgreSQL. Numbered markers let
// fragments be built in any order.
func (d Dialect) Placeholder(n int) string {
	if d == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?" + strconv.Itoa(n)
}

// Contains returns a condition that is true when the text expression hay
// contains the text expression needle.
func (d Dialect) Contains(hay, needle string) string {
	if d == Postgres {
		return "strpos(" + hay + ", " + needle + ") > 0"
	}
	return "instr(" + hay + ", " + needle + ") > 0"
}

// ridIn renders "the row of alias is one of the rids sub selects" for a
// clause that drives: on PostgreSQL rid = ANY(ARRAY(sub)), which takes the
// rids once (an init plan) and fetches each row by rid, never a scan
// whatever the statistics say; on SQLite rid IN (sub), which it drives
// from in the order given.
func (d Dialect) ridIn(alias, sub string) string {
	if d == Postgres {
		return alias + ".rid = ANY(ARRAY(" + sub + "))"
	}
	return alias + ".rid IN (" + sub + ")"
}

// unindexed returns the text column col as an expression no index holds,
// for an equality test that must not choose the plan: a unary plus on
// SQLite, a concatenation with the empty string on PostgreSQL (the same
// value, so the same test).
func (d Dialect) unindexed(col string) string {
	if d == Postgres {
		return col + " || ''"
	}
	return "+" + col
}

// Rows is the result of a query, as both database/sql and pgx provide it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs SQL. Dialect packages adapt *sql.DB, *sql.Tx, pgxpool.Pool
// and pgx.Tx to it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	Exec(ctx context.Context, sql string, args ...any) error
}

// collect runs sql on q and returns what scan makes of each row, in
// order; on an error, nil and the first error (of the query, a scan or
// the iteration).
func collect[T any](ctx context.Context, q Querier, scan func(Rows) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scanColumn reads the one column of a row (a scan for collect).
func scanColumn[T any](rows Rows) (T, error) {
	var v T
	err := rows.Scan(&v)
	return v, err
}

// Pinner is implemented by a Querier that can run statements whose SQL
// text fixes their plan (the shapes base, Load and follow write: the
// driving clause's rids first, then the rows by key, whatever the values)
// with one plan made once per connection and reused, instead of planning
// every execution with its values: PostgreSQL's generic plans, where
// planning a search's statement costs more than running it.
type Pinner interface {
	// Pinned returns the Querier that runs such statements.
	Pinned() Querier
}

// RangeReader is implemented by a Querier that can run a statement with
// whole-table scans ruled out, so that it reads the index ranges its
// conditions bound: for statements whose row estimate the planner cannot
// get right (conditions on two correlated columns, as a history's types
// and times are) and whose table scan would read everything.
type RangeReader interface {
	// Ranges returns the Querier that runs such statements.
	Ranges() Querier
}

// Keyer is implemented by a Querier that runs statements otherwise than
// as written (SQLite's eager reads: each computed in full before its first
// row, so that a deadline can interrupt it): Keyed returns the Querier for
// statements whose rows after the first are each found by key (Load and
// follow: a list of rids computed before the first row, then one row per
// rid), which gain nothing from that and would copy every row, bodies
// included, once more.
type Keyer interface {
	// Keyed returns the Querier that runs such statements as written.
	Keyed() Querier
}

// pinned returns q's Querier for plan-fixed statements, ranges its
// Querier for statements that read index ranges only, and keyed its
// Querier for statements that read rows by key: q itself when it has
// none.
func pinned(q Querier) Querier { return querierFor(q, Pinner.Pinned) }
func ranges(q Querier) Querier { return querierFor(q, RangeReader.Ranges) }
func keyed(q Querier) Querier  { return querierFor(q, Keyer.Keyed) }

// querierFor returns the Querier that get gives q when q implements I (a
// Pinner, RangeReader or Keyer), and q itself when it does not.
func querierFor[I any](q Querier, get func(I) Querier) Querier {
	if x, ok := q.(I); ok {
		return get(x)
	}
	return q
}

// Builder accumulates bind arguments for SQL built from fragments.
type Builder struct {
	D    Dialect
	Args []any
}

// Arg binds v and returns its placeholder.
func (b *Builder) Arg(v any) string {
	b.Args = append(b.Args, v)
	return b.D.Placeholder(len(b.Args))
}

// Text binds a string used where PostgreSQL cannot infer the parameter type
// (inside functions) and returns CAST(placeholder AS TEXT).
func (b *Builder) Text(v string) string {
	return "CAST(" + b.Arg(v) + " AS TEXT)"
}

// List binds each value and returns "(p1, p2, ...)" for an IN list.
func (b *Builder) List(vals []string) string {
	var sb strings.Builder
	sb.WriteByte('(')
	for i, v := range vals {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(b.Arg(v))
	}
	sb.WriteByte(')')
	return sb.String()
}

// RidIn returns a condition that col is one of rids, binding the list as a
// single argument (a PostgreSQL bigint[]; a JSON array read with json_each
// on SQLite), so the SQL text does not depend on the list's length.
func (b *Builder) RidIn(col string, rids []int64) string {
	if b.D == Postgres {
		return col + " = ANY(" + b.Arg(rids) + ")"
	}
	js, _ := json.Marshal(rids)
	return col + " IN (SELECT value FROM json_each(" + b.Arg(string(js)) + "))"
}

// prefixUpper is appended to a prefix to form the exclusive upper bound of
// the range of strings starting with it (byte order: COLLATE "C" on
// PostgreSQL, BINARY on SQLite).
const prefixUpper = "\U0010FFFF"
