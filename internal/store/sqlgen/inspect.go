package sqlgen

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// lookupEach returns a SELECT of cols (qualified by t) from table t for
// each of vals (a []string or []int64, bound as one argument; pgType is
// its PostgreSQL array type), where cond, with {v} standing for the value,
// holds. It is one index lookup per value whatever the planner's
// statistics say (freshly loaded tables have none, and PostgreSQL would
// then hash-join whole index tables): on PostgreSQL a LATERAL subquery
// per element of unnest (OFFSET 0 keeps it from being flattened into a
// join), on SQLite a CROSS JOIN from json_each. The SQL text does not depend on
// the list's length.
func (b *Builder) lookupEach(vals any, pgType, cols, table, cond string) string {
	if b.D == Postgres {
		return "SELECT x.* FROM unnest(" + b.Arg(vals) + "::" + pgType + ") AS q(v) CROSS JOIN LATERAL (SELECT " + cols + " FROM " + table + " t WHERE " +
			strings.ReplaceAll(cond, "{v}", "q.v") + " OFFSET 0) x"
	}
	js, _ := json.Marshal(vals)
	// CROSS JOIN: SQLite keeps the left table outermost.
	return "SELECT " + cols + " FROM json_each(" + b.Arg(string(js)) + ") AS q CROSS JOIN " + table + " t ON " + strings.ReplaceAll(cond, "{v}", "q.value")
}

// Inspect reads every copy of the resources typ/ids: current rows, history
// rows and the index rows of the current rows (store.Inspector). qr should
// be one read transaction, so that the copies are of one moment.
func (e *Engine) Inspect(ctx context.Context, qr Querier, typ string, ids []string) (map[string]*store.Stored, error) {
	out := map[string]*store.Stored{}
	if len(ids) == 0 {
		return out, nil
	}
	get := func(id string) *store.Stored {
		s := out[id]
		if s == nil {
			s = &store.Stored{}
			out[id] = s
		}
		return s
	}
	b := &Builder{D: e.D}
	tp := b.Arg(typ)
	rows, err := qr.Query(ctx, b.lookupEach(ids, "text[]", "t.rid, t.type, t.id, t.version, t.last_updated, t.deleted, t.method, t.body, t.idx_mask",
		"resources", "t.type = "+tp+" AND t.id = {v}"), b.Args...)
	if err != nil {
		return nil, err
	}
	byRid := map[int64]*store.Stored{}
	var rids []int64
	for rows.Next() {
		var rid, ms, mask int64
		var r store.Resource
		if err := rows.Scan(&rid, &r.Type, &r.ID, &r.VersionID, &ms, &r.Deleted, &r.Method, &r.Body, &mask); err != nil {
			rows.Close()
			return nil, err
		}
		r.LastUpdated = time.UnixMilli(ms).UTC()
		s := get(r.ID)
		s.Current, s.Mask = &r, mask
		byRid[rid] = s
		rids = append(rids, rid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	b = &Builder{D: e.D}
	tp = b.Arg(typ)
	rows, err = qr.Query(ctx, b.lookupEach(ids, "text[]", "t.rid, t.type, t.id, t.version, t.last_updated, t.deleted, t.method, t.body",
		"history", "t.type = "+tp+" AND t.id = {v}"), b.Args...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		_, r, err := ScanResource(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		s := get(r.ID)
		s.History = append(s.History, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, s := range out {
		slices.SortFunc(s.History, func(a, b store.Resource) int { return cmp.Compare(a.VersionID, b.VersionID) })
	}
	if len(rids) == 0 {
		return out, nil
	}
	for _, table := range IndexTables {
		// By rid only (the (rid, ...) index; a condition on type would
		// make SQLite walk the type's search index): rows of another type
		// are skipped below (no search of typ can match them).
		b = &Builder{D: e.D}
		cols := "t.rid, t.type, t.param, t.grp, t." + strings.ReplaceAll(indexColumns[table], ", ", ", t.")
		rows, err := qr.Query(ctx, b.lookupEach(rids, "bigint[]", cols, table, "t.rid = {v}"), b.Args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			if err := scanIndexRow(rows, table, typ, byRid); err != nil {
				rows.Close()
				return nil, err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// indexColumns are the columns of each index table after rid, type,
// param and grp.
var indexColumns = map[string]string{
	TableString:    "norm, exact",
	TableToken:     "system, code, text",
	TableReference: "target_type, target_id, url",
	TableDate:      "lo, hi",
	TableNumber:    "lo, hi",
	TableQuantity:  "system, code, unit, lo, hi",
	TableURI:       "uri",
}

func scanIndexRow(rows Rows, table, typ string, byRid map[int64]*store.Stored) error {
	var rid int64
	var rtyp, param string
	var grp int32
	var err error
	var add func(ix *store.Index)
	switch table {
	case TableString:
		var r store.StringRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.Norm, &r.Exact)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Strings = append(ix.Strings, r) }
	case TableToken:
		var r store.TokenRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.System, &r.Code, &r.Text)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Tokens = append(ix.Tokens, r) }
	case TableReference:
		var r store.ReferenceRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.TargetType, &r.TargetID, &r.URL)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.References = append(ix.References, r) }
	case TableDate:
		var r store.DateRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Dates = append(ix.Dates, r) }
	case TableNumber:
		var r store.NumberRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Numbers = append(ix.Numbers, r) }
	case TableQuantity:
		var r store.QuantityRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.System, &r.Code, &r.Unit, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Quantities = append(ix.Quantities, r) }
	case TableURI:
		var r store.URIRow
		err = rows.Scan(&rid, &rtyp, &param, &grp, &r.URI)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.URIs = append(ix.URIs, r) }
	}
	if err != nil {
		return err
	}
	if s := byRid[rid]; s != nil && rtyp == typ {
		add(&s.Index)
	}
	return nil
}

// EachID calls fn with the id of every resource of type typ that has a
// current row, then with the id of every one that has history rows (an id
// can come twice), in one pass over each (store.Inspector).
func (e *Engine) EachID(ctx context.Context, qr Querier, typ string, fn func(id string) error) error {
	for _, sql := range []string{"SELECT id FROM resources WHERE type = ", "SELECT DISTINCT id FROM history WHERE type = "} {
		b := &Builder{D: e.D}
		rows, err := qr.Query(ctx, sql+b.Arg(typ), b.Args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err = rows.Scan(&id); err == nil {
				err = fn(id)
			}
			if err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}
