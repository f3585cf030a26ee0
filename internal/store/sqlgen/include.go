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
		var found []int64
		step := func(inc store.Include, rev bool) error {
			if round > 0 && !inc.Iterate {
				return nil
			}
			rids, err := e.follow(ctx, rq, q.Filter, cur, inc, rev)
			if err != nil {
				return err
			}
			for _, rid := range rids {
				if !seen[rid] {
					seen[rid] = true
					found = append(found, rid)
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
		loaded, err := e.Load(ctx, rq, found, nil)
		if err != nil {
			return nil, err
		}
		cur = cur[:0]
		for _, l := range loaded {
			out = append(out, l.Resource)
			cur = append(cur, l.RID)
		}
		if round > 0 && added >= IterateMax {
			break
		}
	}
	return out, nil
}

// follow returns the rids of visible, non-deleted resources that the
// resources in from reference (rev=false) or that reference them (rev=true)
// through inc.
func (e *Engine) follow(ctx context.Context, rq Querier, filter *store.AccessFilter, from []int64, inc store.Include, rev bool) ([]int64, error) {
	b := &Builder{D: e.D}
	g := &gen{b: b, filter: filter}
	var conds []string
	var sql string
	if !rev {
		// from --(x)--> t
		sql = "SELECT DISTINCT t.rid FROM " + TableReference + " x JOIN resources t ON t.type = x.target_type AND t.id = x.target_id WHERE " +
			b.RidIn("x.rid", from)
		if f := g.access("t", inc.TargetType); f != "" {
			conds = append(conds, f)
		}
	} else {
		// t --(x)--> m, m in from
		sql = "SELECT DISTINCT t.rid FROM resources m JOIN " + TableReference + " x ON x.target_type = m.type AND x.target_id = m.id" +
			" JOIN resources t ON t.rid = x.rid WHERE " + b.RidIn("m.rid", from)
		if inc.TargetType != "" && inc.TargetType != "*" {
			conds = append(conds, "m.type = "+b.Arg(inc.TargetType))
		}
		st := inc.SourceType
		if st == "*" {
			st = ""
		}
		if f := g.access("t", st); f != "" {
			conds = append(conds, f)
		}
	}
	conds = append(conds, "NOT t.deleted")
	if inc.SourceType != "" && inc.SourceType != "*" {
		conds = append(conds, "x.type = "+b.Arg(inc.SourceType))
	}
	if inc.Param != "" && inc.Param != "*" {
		conds = append(conds, "x.param = "+b.Arg(inc.Param))
	}
	if !rev && inc.TargetType != "" && inc.TargetType != "*" {
		conds = append(conds, "x.target_type = "+b.Arg(inc.TargetType))
	}
	sql += " AND " + strings.Join(conds, " AND ") + " ORDER BY t.rid LIMIT " + b.Arg(int64(IncludeMax+1))
	rows, err := rq.Query(ctx, sql, b.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var rid int64
		if err := rows.Scan(&rid); err != nil {
			return nil, err
		}
		out = append(out, rid)
	}
	return out, rows.Err()
}
