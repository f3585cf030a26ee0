package sqlgen

import (
	"context"
	"strings"

	"github.com/lapis-health/lapis/internal/store"
)

// includes follows _include and _revinclude from the page's matches, then
// the :iterate ones from newly included resources, round by round.
func (e *Engine) includes(ctx context.Context, rq Querier, q *store.Query, matches []Loaded) ([]store.Resource, error) {
	seen := make(map[int64]bool, len(matches))
	cur := make([]int64, 0, len(matches))
	for _, m := range matches {
		seen[m.RID] = true
		cur = append(cur, m.RID)
	}
	var out []store.Resource
	added := 0
	for round := 0; round <= IterateRounds && len(cur) > 0; round++ {
		var found []Loaded
		step := func(inc store.Include, rev bool) error {
			if round > 0 && !inc.Iterate {
				return nil
			}
			res, err := e.follow(ctx, rq, q.Filter, cur, seen, inc, rev)
			if err != nil {
				return err
			}
			for _, l := range res {
				if !seen[l.RID] {
					seen[l.RID] = true
					found = append(found, l)
				}
			}
			return nil
		}
		for _, inc := range q.Include {
			if err := step(inc, false); err != nil {
				return nil, err
			}
		}
		for _, inc := range q.RevInclude {
			if err := step(inc, true); err != nil {
				return nil, err
			}
		}
		limit := IncludeMax
		if round > 0 {
			limit = IterateMax - added
		}
		if len(found) > limit {
			found = found[:max(limit, 0)]
		}
		if round > 0 {
			added += len(found)
		}
		cur = cur[:0]
		for _, l := range found {
			out = append(out, l.Resource)
			cur = append(cur, l.RID)
		}
		if round > 0 && added >= IterateMax {
			break
		}
	}
	return out, nil
}

// follow returns the visible, non-deleted resources that the resources in
// from reference (rev=false) or that reference them (rev=true) through
// inc, in rid order: their rids found as the plan below says, and the rows
// read by rid in the same statement (one round trip), except those in
// skip (already in the result).
func (e *Engine) follow(ctx context.Context, rq Querier, filter *store.AccessFilter, from []int64, skip map[int64]bool, inc store.Include, rev bool) ([]Loaded, error) {
	b := &Builder{D: e.D}
	g := &gen{b: b, filter: filter}
	// The plan is fixed by the SQL, whatever the statistics say (stale,
	// missing or skewed statistics once made the planner scan every
	// reference of the source type): from the given rids, along the
	// reference index that starts with the joined column, to each target
	// or source by its key. SQLite keeps the order of a CROSS JOIN and is
	// told the index; PostgreSQL cannot flatten a LATERAL subquery with
	// OFFSET 0, so it runs it per outer row, through the index on the
	// outer row's values.
	var outer, inner []string // conditions on the given rows (and x when !rev); on the rows found
	var sql string
	if !rev {
		// from --(x)--> t
		outer = append(outer, b.RidIn("x.rid", from))
		if inc.SourceType != "" && inc.SourceType != "*" {
			outer = append(outer, "x.type = "+b.Arg(inc.SourceType))
		}
		if inc.Param != "" && inc.Param != "*" {
			outer = append(outer, "x.param = "+b.Arg(inc.Param))
		}
		if inc.TargetType != "" && inc.TargetType != "*" {
			outer = append(outer, "x.target_type = "+b.Arg(inc.TargetType))
		}
		if len(inc.NotTargetTypes) > 0 {
			outer = append(outer, "x.target_type NOT IN "+b.List(inc.NotTargetTypes))
		}
		inner = append(inner, "t.type = x.target_type", "t.id = x.target_id", "NOT t.deleted")
		if f := g.access("t", inc.TargetType); f != "" {
			inner = append(inner, f)
		}
		if e.D == SQLite {
			sql = "SELECT DISTINCT t.rid FROM " + TableReference + " x INDEXED BY idx_reference_rid CROSS JOIN resources t WHERE " +
				strings.Join(append(outer, inner...), " AND ") + " ORDER BY t.rid"
		} else {
			sql = "SELECT DISTINCT l.rid FROM " + TableReference + " x CROSS JOIN LATERAL (SELECT t.rid FROM resources t WHERE " +
				strings.Join(inner, " AND ") + " OFFSET 0) l WHERE " + strings.Join(outer, " AND ") + " ORDER BY l.rid"
		}
	} else {
		// t --(x)--> m, m in from
		outer = append(outer, b.RidIn("m.rid", from))
		if inc.TargetType != "" && inc.TargetType != "*" {
			typeCol := "m.type"
			if e.D == SQLite {
				typeCol = "+m.type" // m by rid, never by the type index
			}
			outer = append(outer, typeCol+" = "+b.Arg(inc.TargetType))
		}
		inner = append(inner, "x.target_id = m.id", "x.target_type = m.type")
		if inc.SourceType != "" && inc.SourceType != "*" {
			inner = append(inner, "x.type = "+b.Arg(inc.SourceType))
		}
		if inc.Param != "" && inc.Param != "*" {
			inner = append(inner, "x.param = "+b.Arg(inc.Param))
		}
		st := inc.SourceType
		if st == "*" {
			st = ""
		}
		// On SQLite the sources are the reference rows' rids: index rows
		// exist only for the current version of a resource that is not
		// deleted (see hasFromIndexRows), so their resources rows are
		// joined only for an access rule to test (rendered apart first,
		// so that a rule is tested without binding its values). On
		// PostgreSQL the join stays: without it, statistics taken on small
		// tables make the planner read the reference rows through the url
		// index (every reference of the source type and parameter).
		src, join := "x", ""
		scratch := &gen{b: &Builder{D: e.D}, filter: filter}
		if f := scratch.access("t", st); e.D == Postgres || (f != "" && f != "1=1") {
			f = g.access("t", st)
			src = "t"
			inner = append(inner, "t.rid = x.rid", "NOT t.deleted")
			if f != "" {
				inner = append(inner, f)
			}
			join = " CROSS JOIN resources t"
			if e.D == Postgres {
				join = " JOIN resources t ON t.rid = x.rid"
			}
		}
		if e.D == SQLite {
			sql = "SELECT DISTINCT " + src + ".rid FROM resources m CROSS JOIN " + TableReference + " x INDEXED BY idx_reference_target" + join + " WHERE " +
				strings.Join(append(outer, inner...), " AND ") + " ORDER BY 1"
		} else {
			sql = "SELECT DISTINCT l.rid FROM resources m CROSS JOIN LATERAL (SELECT " + src + ".rid FROM " + TableReference + " x" + join + " WHERE " +
				strings.Join(inner, " AND ") + " OFFSET 0) l WHERE " + strings.Join(outer, " AND ") + " ORDER BY l.rid"
		}
	}
	sql += " LIMIT " + b.Arg(int64(IncludeMax+1))
	if e.D == Postgres {
		sql = "SELECT " + ResourceColumns("r") + " FROM resources r WHERE r.rid = ANY(ARRAY(" + sql + "))"
	} else {
		sql = "SELECT " + ResourceColumns("r") + " FROM resources r WHERE r.rid IN (" + sql + ")"
	}
	if len(skip) > 0 {
		sk := make([]int64, 0, len(skip))
		for rid := range skip {
			sk = append(sk, rid)
		}
		sql += " AND NOT " + b.RidIn("r.rid", sk)
	}
	sql += " ORDER BY r.rid"
	rq = keyed(rq)
	if pinnable(filter) {
		rq = pinned(rq)
	}
	return queryLoaded(ctx, rq, sql, b.Args)
}

// queryLoaded runs sql, which selects the ResourceColumns of rows in the
// order to return them.
func queryLoaded(ctx context.Context, q Querier, sql string, args []any) ([]Loaded, error) {
	return collect(ctx, q, func(rows Rows) (Loaded, error) {
		rid, r, err := ScanResource(rows)
		return Loaded{RID: rid, Resource: r}, err
	}, sql, args...)
}
