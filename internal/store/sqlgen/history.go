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
	conds = append(conds, timeConds(b, hq)...)
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
					visible, err := e.visibleTypes(ctx, qr, hq)
					if err != nil {
						return nil, err
					}
					return e.historyByType(ctx, qr, hq, count, visible, nil)
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
			decides := g.driverDecides(hq.Type)
			if decides {
				// The driver is the whole rule: render it alone (the
				// rule's bound values dropped; PostgreSQL cannot type a
				// value the statement does not use). Testing the rule as
				// well made PostgreSQL's generic plan probe the
				// compartment's references once per candidate: quadratic
				// in its size. Without a driver (which driverDecides
				// rules out) nothing would be shown: fail closed.
				b.Args = b.Args[:nargs]
				f = "1=0"
			}
			if drv = g.compartmentDriver(hq.Type); drv != "" && decides {
				f = ""
			}
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
			// The candidates' rids once, then each row by rid: never a
			// scan of resources, whatever the statistics say of the
			// compartment's size.
			conds = append(conds, e.D.ridIn("r", drv))
		} else {
			from += " JOIN resources r ON r.rid = h.rid"
		}
		if f != "" {
			conds = append(conds, f)
		}
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
	var counted *int
	if !hq.Since.IsZero() && !joined && hq.ID == "" && !hq.Superseded && hq.Version == 0 {
		p, total, err := e.historySince(ctx, qr, hq, count, hiding)
		if err != nil || p != nil {
			return p, err
		}
		// Most of the history is since T and every type visible: the
		// scan from the newest version back finds the page at once.
		counted = &total
	}
	page := &store.HistoryPage{}
	switch {
	case counted != nil:
		page.Total = *counted
	case hq.Superseded:
		page.Total = -1
	case hq.Version == 0:
		// Total (without the cursor), at most TotalLimit + 1 counted.
		n, err := countVersions(ctx, qr, from+where, b.Args, hq.TotalLimit)
		if err != nil {
			return nil, err
		}
		page.Total = n
	}

	if hq.Before != "" {
		seq, err := parseCursor(hq.Before)
		if err != nil {
			return nil, err
		}
		c := "h.seq < " + b.Arg(seq)
		if where == "" {
			where = " WHERE " + c
		} else {
			where += " AND " + c
		}
	}
	sql := "SELECT h.seq, h.rid, h.type, h.id, h.version, h.last_updated, h.deleted, h.method, h.body" + from + where +
		" ORDER BY h.seq DESC LIMIT " + b.Arg(int64(count+1))
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
// visible are the types the filter may show (visibleTypes). With a _since
// the caller has counted (total), the versions since T being most of the
// history.
func (e *Engine) historyByType(ctx context.Context, qr Querier, hq store.HistoryQuery, count int, visible []string, total *int) (*store.HistoryPage, error) {
	cursor, err := parseCursor(hq.Before)
	if err != nil {
		return nil, err
	}
	page := &store.HistoryPage{}
	if len(visible) == 0 {
		return page, nil
	}
	if total != nil {
		page.Total = *total
	} else if page.Total, err = e.countByType(ctx, qr, hq, visible); err != nil {
		return nil, err
	}
	// The page: each type's newest count+1 versions (before the cursor),
	// the newest count+1 of them all.
	pb := &Builder{D: e.D}
	limit := pb.Arg(int64(count + 1))
	parts := make([]string, 0, len(visible))
	sortLimit := hq.TotalLimit
	if sortLimit <= 0 {
		sortLimit = sinceSortLimit
	}
	for i, t := range visible {
		from := " FROM history h"
		if !hq.Since.IsZero() && e.D == SQLite {
			// A type's versions since T: few, through the time index
			// (sorting those); many, from its newest back.
			n, err := e.countSince(ctx, qr, hq, t, sortLimit)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				continue
			}
			from = " FROM history h INDEXED BY history_type_seq"
			if n > 0 { // not -1: at most sortLimit
				from = " FROM history h INDEXED BY history_type_last_updated"
			}
		}
		c := "h.type = " + pb.Arg(t) + timeBounds(pb, hq)
		if hq.Before != "" {
			c += " AND h.seq < " + pb.Arg(cursor)
		}
		if e.D == SQLite {
			// A branch of the compound itself: SQLite merges the
			// branches in the compound's order, each read from its
			// index in that order, as far as the LIMIT takes it. A
			// subquery with its own LIMIT was sorted again, branch by
			// branch (count+1 rows of each type), before the merge.
			parts = append(parts, "SELECT h.seq"+from+" WHERE "+c)
			continue
		}
		parts = append(parts, "SELECT seq FROM (SELECT h.seq"+from+" WHERE "+c+" ORDER BY h.seq DESC LIMIT "+limit+") p"+strconv.Itoa(i))
	}
	if len(parts) == 0 {
		return page, nil
	}
	// Each branch's plan is fixed by its text (the type's index from its
	// newest back): PostgreSQL plans the statement once per connection.
	// The counts keep plans made for their values.
	seqs, err := queryRIDs(ctx, pinned(qr), strings.Join(parts, " UNION ALL ")+" ORDER BY seq DESC LIMIT "+limit, pb.Args)
	if err != nil {
		return nil, err
	}
	return page, e.fillPage(ctx, qr, page, seqs, count)
}

// historySince returns the history page of a _since on the history rows
// alone (no filter, or one by type): a poll for what changed since T.
// The visible types' versions since T are counted and paged through the
// (type, last_updated, seq) index: the cost follows the versions since T
// that the caller may see, not the history's size, nor the AuditEvents
// every request leaves. Past the count's limit (most of the history is
// since T) a filter hiding types pages type by type (historyByType), and
// with none a nil page and the total tell History to scan from the newest
// version back, which finds the page at once.
func (e *Engine) historySince(ctx context.Context, qr Querier, hq store.HistoryQuery, count int, hiding bool) (*store.HistoryPage, int, error) {
	cursor, err := parseCursor(hq.Before)
	if err != nil {
		return nil, 0, err
	}
	types, err := e.visibleTypes(ctx, qr, hq)
	if err != nil {
		return nil, 0, err
	}
	page := &store.HistoryPage{}
	if len(types) == 0 {
		return page, 0, nil
	}
	from := " FROM history h"
	if e.D == SQLite {
		from = " FROM history h INDEXED BY history_type_last_updated"
	}
	where := func(b *Builder, withCursor bool) string {
		w := " WHERE h.type IN " + b.List(types) + timeBounds(b, hq)
		if withCursor && hq.Before != "" {
			w += " AND h.seq < " + b.Arg(cursor)
		}
		return w
	}
	// The types' ranges of the time index, never the whole history: the
	// planner multiplies the share of the visible types by the share of
	// the versions since T, while those since T are nearly all the
	// AuditEvents of the requests since, and past a few 10,000 of them
	// PostgreSQL read the whole table instead (6,600 pages, 55-85 ms,
	// for none found).
	rq := ranges(qr)
	cb := &Builder{D: e.D}
	if page.Total, err = countVersions(ctx, rq, from+where(cb, false), cb.Args, hq.TotalLimit); err != nil {
		return nil, 0, err
	}
	if page.Total < 0 {
		if !hiding {
			return nil, -1, nil
		}
		total := -1
		p, err := e.historyByType(ctx, qr, hq, count, types, &total)
		return p, 0, err
	}
	// At most the count's limit: their sequences from the index, the
	// newest count+1 of them, then the page's rows.
	pb := &Builder{D: e.D}
	w := where(pb, true)
	limit := pb.Arg(int64(count + 1))
	q := "SELECT h.seq" + from + w + " ORDER BY h.seq DESC LIMIT " + limit
	if e.D == Postgres {
		// The versions since T from the time index, then sorted: left to
		// itself, PostgreSQL walked the history backwards by seq for the
		// LIMIT, through every newer AuditEvent, when few match.
		q = "SELECT seq FROM (SELECT h.seq" + from + w + " OFFSET 0) since ORDER BY seq DESC LIMIT " + limit
	}
	seqs, err := queryRIDs(ctx, rq, q, pb.Args)
	if err != nil {
		return nil, 0, err
	}
	return page, 0, e.fillPage(ctx, qr, page, seqs, count)
}

// sinceSortLimit is, without a TotalLimit, the most versions of one type
// since T that a page sorts from the time index; a type with more is read
// from its newest version back instead, which finds them at once.
const sinceSortLimit = 10000

// countSince returns the number of versions of typ within hq's _since
// (and _at), counted from the time index: -1 when more than limit.
func (e *Engine) countSince(ctx context.Context, qr Querier, hq store.HistoryQuery, typ string, limit int) (int, error) {
	b := &Builder{D: e.D}
	w := "h.type = " + b.Arg(typ) + timeBounds(b, hq)
	return countVersions(ctx, qr, " FROM history h INDEXED BY history_type_last_updated WHERE "+w, b.Args, limit)
}

// visibleTypes returns the types of hq's history the filter may show:
// hq.Type, or the types the history holds (a skip scan of its (type, seq)
// index, one probe per type), with no rule-less (hidden) type.
func (e *Engine) visibleTypes(ctx context.Context, qr Querier, hq store.HistoryQuery) ([]string, error) {
	qr = pinned(qr) // its plan is fixed by its text: PostgreSQL plans it once per connection
	var held []string
	if hq.Type != "" {
		held = []string{hq.Type}
	} else {
		var err error
		held, err = collect(ctx, qr, scanColumn[string], "WITH RECURSIVE t(type) AS (SELECT min(type) FROM history UNION ALL "+
			"SELECT (SELECT min(h.type) FROM history h WHERE h.type > t.type) FROM t WHERE t.type IS NOT NULL) SELECT type FROM t WHERE type IS NOT NULL")
		if err != nil {
			return nil, err
		}
	}
	var out []string
	for _, t := range held {
		if hq.Filter.MayShow(t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// countByType returns the number of versions of the visible types (the
// cursor aside) from their index ranges: -1 when more than hq.TotalLimit.
// The visible types are most of the history but for the AuditEvents, and
// PostgreSQL read the whole table for them (bodies and all, 1,300 pages
// for 10,001 versions of 23,000, 15-30 ms) where their ranges of the
// (type, seq) index are a hundred pages (2 ms): the ranges, whatever the
// estimate.
func (e *Engine) countByType(ctx context.Context, qr Querier, hq store.HistoryQuery, visible []string) (int, error) {
	cb := &Builder{D: e.D}
	return countVersions(ctx, ranges(qr), " FROM history h WHERE h.type IN "+cb.List(visible)+timeBounds(cb, hq), cb.Args, hq.TotalLimit)
}

// timeBounds renders hq's _since and _at on history h, each as " AND …".
func timeBounds(b *Builder, hq store.HistoryQuery) string {
	var w string
	for _, c := range timeConds(b, hq) {
		w += " AND " + c
	}
	return w
}

// timeConds are the conditions of hq's _since and _at on history h.
func timeConds(b *Builder, hq store.HistoryQuery) []string {
	var conds []string
	if !hq.Since.IsZero() {
		conds = append(conds, "h.last_updated >= "+b.Arg(hq.Since.UnixMilli()))
	}
	if !hq.At.IsZero() {
		conds = append(conds, "h.last_updated < "+b.Arg(hq.At.UnixMilli()))
	}
	if !hq.AtFrom.IsZero() {
		conds = append(conds, currentAt(b, hq.AtFrom))
	}
	return conds
}

// currentAt renders that version h was still current at from: no later
// version of its resource was written at or before it (versions are
// written in time order, so the next one decides). The later versions are
// one range of the (type, id, version) index.
func currentAt(b *Builder, from time.Time) string {
	return "NOT EXISTS (SELECT 1 FROM history n WHERE n.type = h.type AND n.id = h.id AND n.version > h.version AND n.last_updated <= " +
		b.Arg(from.UnixMilli()) + ")"
}

// countVersions counts the rows of fromWhere (bound to args): all of
// them when limit is not positive, else at most limit + 1, and -1 when
// there are more than limit. The limit is a literal (an int of the
// configuration): a caller binds its arguments again for the page, and a
// bound one a statement does not use has no type on PostgreSQL.
func countVersions(ctx context.Context, qr Querier, fromWhere string, args []any, limit int) (int, error) {
	sql := "SELECT COUNT(*)" + fromWhere
	if limit > 0 {
		sql = "SELECT COUNT(*) FROM (SELECT 1" + fromWhere + " LIMIT " + strconv.Itoa(limit+1) + ") capped"
	}
	n, err := queryRIDs(ctx, qr, sql, args)
	if err != nil || len(n) == 0 {
		return 0, err
	}
	if limit > 0 && int(n[0]) > limit {
		return -1, nil
	}
	return int(n[0]), nil
}

// parseCursor reads a history page's cursor (the base-36 sequence of the
// previous page's last version; 0 when empty): ErrNotFound when it is not
// one.
func parseCursor(before string) (int64, error) {
	if before == "" {
		return 0, nil
	}
	seq, err := strconv.ParseInt(before, 36, 64)
	if err != nil {
		return 0, store.ErrNotFound
	}
	return seq, nil
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
	cursor, err := parseCursor(before)
	if err != nil {
		return nil, err
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
	return page, e.fillPage(ctx, qr, page, seqs, count)
}

// fillPage sets page's versions to the first count of seqs (newest
// first), and its next cursor when more follow.
func (e *Engine) fillPage(ctx context.Context, qr Querier, page *store.HistoryPage, seqs []int64, count int) error {
	if len(seqs) > count {
		seqs = seqs[:count]
		page.Next = strconv.FormatInt(seqs[count-1], 36)
	}
	if len(seqs) == 0 {
		return nil
	}
	vs, err := e.versionsBySeq(ctx, qr, seqs)
	page.Versions = vs
	return err
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
