package sqlgen

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// History lists versions newest first (by the history sequence), paged by
// an opaque cursor that is the sequence of the last version returned.
//
// With an access filter, a version is listed when the resource's current
// version passes the filter (tested on the index tables) and, where the
// filter limits the type by content (a compartment, criteria), when the
// version is the current one or passed the filter itself (tested on the
// history access tables). Totals and pages are computed by the same
// query, so they agree. When every visible resource must be in the
// filter's compartment the query is driven by the compartment's
// references (an index range), not by a scan of the history.
func (e *Engine) History(ctx context.Context, qr Querier, hq store.HistoryQuery) (*store.HistoryPage, error) {
	qr = e.explaining(ctx, qr)
	count := hq.Count
	if count <= 0 {
		count = store.DefaultHistoryCount
	}
	b := &Builder{D: e.D}
	g := &gen{b: b, filter: hq.Filter}
	from := " FROM history h"
	var conds []string
	if hq.Type != "" {
		conds = append(conds, "h.type = "+b.Arg(hq.Type))
		if hq.ID != "" {
			conds = append(conds, "h.id = "+b.Arg(hq.ID))
			if hq.Version > 0 {
				conds = append(conds, "h.version = "+b.Arg(hq.Version))
			}
		}
	}
	if !hq.Since.IsZero() {
		conds = append(conds, "h.last_updated >= "+b.Arg(hq.Since.UnixMilli()))
	}
	if !hq.At.IsZero() {
		conds = append(conds, "h.last_updated < "+b.Arg(hq.At.UnixMilli()))
	}
	joined, driven := false, false
	hiding := false // a system history whose type-only filter hides types
	nargs := len(b.Args)
	if typeOnly(hq.Filter) {
		// The type decides, and a version's type is its resource's: the
		// history rows alone answer, with no join to every version's
		// resource row (a system _history of a caller who may not see
		// AuditEvents read the resources row of every version).
		if f := g.access("h", hq.Type); f == "1=1" {
			b.Args = b.Args[:nargs]
		} else if f != "" {
			if hq.Type == "" && hq.ID == "" && !hq.Superseded && hq.Version == 0 {
				hiding = true
				if hq.Since.IsZero() {
					return e.historyByType(ctx, qr, hq, count, nil)
				}
			}
			conds = append(conds, f)
		}
	} else if f := g.access("r", hq.Type); f == "1=1" {
		b.Args = b.Args[:nargs] // unrestricted: drop what the rules bound
	} else if f != "" {
		joined = true
		drv := ""
		if hq.ID == "" {
			drv = g.compartmentDriver(hq.Type)
		}
		if drv != "" {
			driven = true
			// Candidates from the compartment's references, then their
			// versions by (type, id); SQLite keeps that join order.
			join := " JOIN "
			if e.D == SQLite {
				join = " CROSS JOIN "
			}
			from = " FROM resources r" + join + "history h ON h.type = r.type AND h.id = r.id"
			if e.D == Postgres {
				// The candidates' rids once (an init plan), then each
				// row by rid: never a scan of resources, whatever the
				// statistics say of the compartment's size.
				conds = append(conds, "r.rid = ANY(ARRAY("+drv+"))")
			} else {
				conds = append(conds, "r.rid IN ("+drv+")")
			}
		} else {
			from += " JOIN resources r ON r.rid = h.rid"
		}
		conds = append(conds, f)
		if rowLevel(hq.Filter, hq.Type) {
			conds = append(conds, "(h.version = r.version OR "+g.versions("h", hq.Type)+")")
		}
	}
	if hq.Superseded {
		if !joined {
			from += " JOIN resources r ON r.rid = h.rid"
		}
		conds = append(conds, "h.version < r.version")
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	if driven && !hq.Superseded && hq.Version == 0 {
		return e.historyOfCandidates(ctx, qr, b, from+where, hq.Before, count)
	}
	// A _since on the history rows alone (no join) reads the versions'
	// (last_updated, type, seq) index: a poll for what changed since T
	// counts and pages the few versions written since then instead of
	// scanning the history from the newest version back to T.
	since := !hq.Since.IsZero() && !joined && hq.ID == "" && !hq.Superseded && hq.Version == 0
	byTime := from
	if since && e.D == SQLite {
		byTime = " FROM history h INDEXED BY history_last_updated"
	}
	page := &store.HistoryPage{}
	switch {
	case hq.Superseded:
		page.Total = -1
	case hq.Version == 0:
		// Total (without the cursor), at most TotalLimit + 1 counted.
		count := "SELECT COUNT(*)" + byTime + where
		if hq.TotalLimit > 0 {
			// A literal (an int of the configuration): the page query
			// below binds b's arguments, and a bound one it does not use
			// has no type on PostgreSQL.
			count = "SELECT COUNT(*) FROM (SELECT 1" + byTime + where + " LIMIT " + strconv.Itoa(hq.TotalLimit+1) + ") capped"
		}
		rows, err := qr.Query(ctx, count, b.Args...)
		if err != nil {
			return nil, err
		}
		var total int64
		if rows.Next() {
			err = rows.Scan(&total)
		}
		rows.Close()
		if err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		page.Total = int(total)
		if hq.TotalLimit > 0 && page.Total > hq.TotalLimit {
			page.Total = -1
		}
	}

	if hq.Before != "" {
		seq, err := strconv.ParseInt(hq.Before, 36, 64)
		if err != nil {
			return nil, store.ErrNotFound
		}
		c := "h.seq < " + b.Arg(seq)
		if where == "" {
			where = " WHERE " + c
		} else {
			where += " AND " + c
		}
	}
	if since && hiding && page.Total < 0 {
		// Most of the history is since T: each visible type's newest
		// versions since T, merged (as without a _since).
		total := page.Total
		return e.historyByType(ctx, qr, hq, count, &total)
	}
	limit := b.Arg(int64(count + 1))
	sql := "SELECT h.seq, h.rid, h.type, h.id, h.version, h.last_updated, h.deleted, h.method, h.body" + from + where +
		" ORDER BY h.seq DESC LIMIT " + limit
	if since && page.Total >= 0 {
		// At most the count's limit of versions since T: the page's
		// sequences from the index (sorting those few), then their rows.
		// Past the limit the versions since T are most of the history,
		// and the scan from the newest back finds a page at once.
		sql = "SELECT h.seq, h.rid, h.type, h.id, h.version, h.last_updated, h.deleted, h.method, h.body FROM history h WHERE h.seq IN (SELECT h.seq" +
			byTime + where + " ORDER BY h.seq DESC LIMIT " + limit + ") ORDER BY h.seq DESC"
	}
	rows, err := qr.Query(ctx, sql, b.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lastSeq int64
	for rows.Next() {
		if len(page.Versions) == count {
			page.Next = strconv.FormatInt(lastSeq, 36)
			break
		}
		var seq int64
		_, r, err := ScanResource(seqRows{rows, &seq})
		if err != nil {
			return nil, err
		}
		lastSeq = seq
		page.Versions = append(page.Versions, r)
	}
	if hq.Version > 0 {
		page.Total = len(page.Versions)
	}
	return page, rows.Err()
}

// historyByType returns a system history page under a filter that
// decides by type alone and hides some types (a caller who may not see
// AuditEvents): each visible type's newest versions by its (type, seq)
// index, merged. Scanning the history from the newest version back
// skipped every hidden version newer than the page's, and every request
// to the server leaves an AuditEvent: the longer a server ran, the
// slower this page became.
//
// With a _since the caller has counted (total), the versions since T being
// most of the history.
func (e *Engine) historyByType(ctx context.Context, qr Querier, hq store.HistoryQuery, count int, total *int) (*store.HistoryPage, error) {
	var cursor int64
	if hq.Before != "" {
		var err error
		if cursor, err = strconv.ParseInt(hq.Before, 36, 64); err != nil {
			return nil, store.ErrNotFound
		}
	}
	// The types the history holds: a skip scan of its (type, seq) index,
	// one probe per type.
	rows, err := qr.Query(ctx, "WITH RECURSIVE t(type) AS (SELECT min(type) FROM history UNION ALL "+
		"SELECT (SELECT min(h.type) FROM history h WHERE h.type > t.type) FROM t WHERE t.type IS NOT NULL) SELECT type FROM t WHERE type IS NOT NULL")
	if err != nil {
		return nil, err
	}
	var visible []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return nil, err
		}
		rs, ok := hq.Filter.Types[t]
		if !ok {
			rs = hq.Filter.Types["*"]
		}
		if len(rs) > 0 {
			visible = append(visible, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	page := &store.HistoryPage{}
	if len(visible) == 0 {
		return page, nil
	}
	if total != nil {
		page.Total = *total
	} else if err := e.countByType(ctx, qr, hq, visible, page); err != nil {
		return nil, err
	}
	// The page: each type's newest count+1 versions (before the cursor),
	// the newest count+1 of them all.
	pb := &Builder{D: e.D}
	limit := pb.Arg(int64(count + 1))
	parts := make([]string, len(visible))
	for i, t := range visible {
		c := "h.type = " + pb.Arg(t)
		if !hq.Since.IsZero() {
			c += " AND h.last_updated >= " + pb.Arg(hq.Since.UnixMilli())
		}
		if !hq.At.IsZero() {
			c += " AND h.last_updated < " + pb.Arg(hq.At.UnixMilli())
		}
		if hq.Before != "" {
			c += " AND h.seq < " + pb.Arg(cursor)
		}
		parts[i] = "SELECT seq FROM (SELECT h.seq FROM history h WHERE " + c + " ORDER BY h.seq DESC LIMIT " + limit + ") p" + strconv.Itoa(i)
	}
	seqs, err := queryRIDs(ctx, qr, strings.Join(parts, " UNION ALL ")+" ORDER BY seq DESC LIMIT "+limit, pb.Args)
	if err != nil {
		return nil, err
	}
	if len(seqs) > count {
		seqs = seqs[:count]
		page.Next = strconv.FormatInt(seqs[count-1], 36)
	}
	if len(seqs) == 0 {
		return page, nil
	}
	page.Versions, err = e.versionsBySeq(ctx, qr, seqs)
	return page, err
}

// countByType sets page.Total to the number of versions of the visible
// types (without a _since; the cursor aside), at most hq.TotalLimit + 1
// counted from their index ranges.
func (e *Engine) countByType(ctx context.Context, qr Querier, hq store.HistoryQuery, visible []string, page *store.HistoryPage) error {
	cb := &Builder{D: e.D}
	where := " WHERE h.type IN " + cb.List(visible)
	if !hq.At.IsZero() {
		where += " AND h.last_updated < " + cb.Arg(hq.At.UnixMilli())
	}
	countSQL := "SELECT COUNT(*) FROM history h" + where
	if hq.TotalLimit > 0 {
		countSQL = "SELECT COUNT(*) FROM (SELECT 1 FROM history h" + where + " LIMIT " + strconv.Itoa(hq.TotalLimit+1) + ") capped"
	}
	n, err := queryRIDs(ctx, qr, countSQL, cb.Args)
	if err != nil {
		return err
	}
	if len(n) == 1 {
		page.Total = int(n[0])
	}
	if hq.TotalLimit > 0 && page.Total > hq.TotalLimit {
		page.Total = -1
	}
	return nil
}

// typeOnly reports whether f decides visibility by the resource type
// alone: per-type rules, each unconditional (no compartment, no
// criteria) or none (a hidden type).
func typeOnly(f *store.AccessFilter) bool {
	if f == nil || f.Types == nil {
		return false
	}
	for _, rs := range f.Types {
		for _, r := range rs {
			if r.Compartment || len(r.Where) > 0 {
				return false
			}
		}
	}
	return true
}

// historyOfCandidates returns the history page of a query driven by a
// compartment's candidates (fromWhere: its FROM and WHERE over history h,
// with b's arguments). The candidates' versions are bounded by the
// compartment, and both the total and the newest-first page read every
// one of them, so one statement lists their sequences, newest first, from
// the history index alone (no body is read or sorted), for the total and
// the page's sequences at once; a second reads the page's rows by
// sequence.
func (e *Engine) historyOfCandidates(ctx context.Context, qr Querier, b *Builder, fromWhere, before string, count int) (*store.HistoryPage, error) {
	var cursor int64
	if before != "" {
		var err error
		if cursor, err = strconv.ParseInt(before, 36, 64); err != nil {
			return nil, store.ErrNotFound
		}
	}
	// Its SQL fixes its plan (the compartment's candidates, then their
	// versions by key): PostgreSQL plans it once per connection, not at
	// every request (planning the compartment's clauses cost four times
	// running them).
	seqs, err := queryRIDs(ctx, pinned(qr), "SELECT h.seq"+fromWhere+" ORDER BY h.seq DESC", b.Args)
	if err != nil {
		return nil, err
	}
	page := &store.HistoryPage{Total: len(seqs)}
	if before != "" {
		i, _ := slices.BinarySearchFunc(seqs, cursor, func(s, c int64) int { return cmp.Compare(c, s) })
		for i < len(seqs) && seqs[i] >= cursor {
			i++
		}
		seqs = seqs[i:]
	}
	if len(seqs) > count {
		seqs = seqs[:count]
		page.Next = strconv.FormatInt(seqs[count-1], 36)
	}
	if len(seqs) == 0 {
		return page, nil
	}
	vs, err := e.versionsBySeq(ctx, qr, seqs)
	page.Versions = vs
	return page, err
}

// versionsBySeq reads the history rows of seqs, in that order.
func (e *Engine) versionsBySeq(ctx context.Context, qr Querier, seqs []int64) ([]store.Resource, error) {
	lb := &Builder{D: e.D}
	rows, err := keyed(qr).Query(ctx, "SELECT h.seq, "+ResourceColumns("h")[len("h.rid, "):]+" FROM history h WHERE "+lb.RidIn("h.seq", seqs), lb.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	bySeq := make(map[int64]store.Resource, len(seqs))
	for rows.Next() {
		var seq int64
		var r store.Resource
		var ms int64
		if err := rows.Scan(&seq, &r.Type, &r.ID, &r.VersionID, &ms, &r.Deleted, &r.Method, &r.Body); err != nil {
			return nil, err
		}
		r.LastUpdated = time.UnixMilli(ms).UTC()
		if r.Deleted {
			r.Body = nil
		}
		bySeq[seq] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]store.Resource, 0, len(seqs))
	for _, seq := range seqs {
		if r, ok := bySeq[seq]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// seqRows scans a leading sequence column before the resource columns.
type seqRows struct {
	Rows
	seq *int64
}

func (s seqRows) Scan(dest ...any) error {
	return s.Rows.Scan(append([]any{s.seq}, dest...)...)
}
