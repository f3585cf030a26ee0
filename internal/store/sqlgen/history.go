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
	nargs := len(b.Args)
	if typeOnly(hq.Filter) {
		// The type decides, and a version's type is its resource's: the
		// history rows alone answer, with no join to every version's
		// resource row (a system _history of a caller who may not see
		// AuditEvents read the resources row of every version).
		if f := g.access("h", hq.Type); f == "1=1" {
			b.Args = b.Args[:nargs]
		} else if f != "" {
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
	for _, seq := range seqs {
		if r, ok := bySeq[seq]; ok {
			page.Versions = append(page.Versions, r)
		}
	}
	return page, nil
}

// seqRows scans a leading sequence column before the resource columns.
type seqRows struct {
	Rows
	seq *int64
}

func (s seqRows) Scan(dest ...any) error {
	return s.Rows.Scan(append([]any{s.seq}, dest...)...)
}
