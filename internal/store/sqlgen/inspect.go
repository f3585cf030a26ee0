package sqlgen

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// TextIn returns a condition that col is one of vals, binding the list as a
// single argument (a PostgreSQL text[]; a JSON array read with json_each on
// SQLite), so the SQL text does not depend on the list's length.
func (b *Builder) TextIn(col string, vals []string) string {
	if b.D == Postgres {
		return col + " = ANY(" + b.Arg(vals) + ")"
	}
	js, _ := json.Marshal(vals)
	return col + " IN (SELECT value FROM json_each(" + b.Arg(string(js)) + "))"
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
	rows, err := qr.Query(ctx, "SELECT rid, type, id, version, last_updated, deleted, method, body, idx_mask FROM resources WHERE type = "+b.Arg(typ)+" AND "+b.TextIn("id", ids), b.Args...)
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
	rows, err = qr.Query(ctx, "SELECT rid, type, id, version, last_updated, deleted, method, body FROM history WHERE type = "+b.Arg(typ)+" AND "+b.TextIn("id", ids), b.Args...)
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
		b = &Builder{D: e.D}
		cols := "rid, param, grp, " + indexColumns[table]
		rows, err := qr.Query(ctx, "SELECT "+cols+" FROM "+table+" WHERE "+b.RidIn("rid", rids)+" AND type = "+b.Arg(typ), b.Args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			if err := scanIndexRow(rows, table, byRid); err != nil {
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

func scanIndexRow(rows Rows, table string, byRid map[int64]*store.Stored) error {
	var rid int64
	var param string
	var grp int32
	var err error
	var add func(ix *store.Index)
	switch table {
	case TableString:
		var r store.StringRow
		err = rows.Scan(&rid, &param, &grp, &r.Norm, &r.Exact)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Strings = append(ix.Strings, r) }
	case TableToken:
		var r store.TokenRow
		err = rows.Scan(&rid, &param, &grp, &r.System, &r.Code, &r.Text)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Tokens = append(ix.Tokens, r) }
	case TableReference:
		var r store.ReferenceRow
		err = rows.Scan(&rid, &param, &grp, &r.TargetType, &r.TargetID, &r.URL)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.References = append(ix.References, r) }
	case TableDate:
		var r store.DateRow
		err = rows.Scan(&rid, &param, &grp, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Dates = append(ix.Dates, r) }
	case TableNumber:
		var r store.NumberRow
		err = rows.Scan(&rid, &param, &grp, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Numbers = append(ix.Numbers, r) }
	case TableQuantity:
		var r store.QuantityRow
		err = rows.Scan(&rid, &param, &grp, &r.System, &r.Code, &r.Unit, &r.Lo, &r.Hi)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.Quantities = append(ix.Quantities, r) }
	case TableURI:
		var r store.URIRow
		err = rows.Scan(&rid, &param, &grp, &r.URI)
		add = func(ix *store.Index) { r.Param, r.Group = param, grp; ix.URIs = append(ix.URIs, r) }
	}
	if err != nil {
		return err
	}
	if s := byRid[rid]; s != nil {
		add(&s.Index)
	}
	return nil
}

// IDs lists the ids of typ after after that have a current or a history
// row, ascending, at most limit (store.Inspector).
func (e *Engine) IDs(ctx context.Context, qr Querier, typ, after string, limit int) ([]string, error) {
	list := func(sql string) ([]string, error) {
		b := &Builder{D: e.D}
		rows, err := qr.Query(ctx, sql+" WHERE type = "+b.Arg(typ)+" AND id > "+b.Arg(after)+" ORDER BY id LIMIT "+b.Arg(limit), b.Args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return nil, err
			}
			out = append(out, id)
		}
		return out, rows.Err()
	}
	cur, err := list("SELECT id FROM resources")
	if err != nil {
		return nil, err
	}
	hist, err := list("SELECT DISTINCT id FROM history")
	if err != nil {
		return nil, err
	}
	// Merge the two sorted lists; the first limit ids of the union are in
	// their first limit ids.
	out := make([]string, 0, min(limit, len(cur)+len(hist)))
	for (len(cur) > 0 || len(hist) > 0) && len(out) < limit {
		switch {
		case len(hist) == 0 || len(cur) > 0 && cur[0] < hist[0]:
			out, cur = append(out, cur[0]), cur[1:]
		case len(cur) == 0 || hist[0] < cur[0]:
			out, hist = append(out, hist[0]), hist[1:]
		default:
			out, cur, hist = append(out, cur[0]), cur[1:], hist[1:]
		}
	}
	return out, nil
}
