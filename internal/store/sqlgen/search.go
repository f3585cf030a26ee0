package sqlgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// Paging and include bounds.
const (
	// SnapshotCap is the most matches a search orders up front and stores
	// in a paging snapshot; pages past it use LIMIT/OFFSET on the live query.
	SnapshotCap = 10000
	// SnapshotTTL is how long a paging snapshot lives.
	SnapshotTTL = time.Hour
	// IterateRounds bounds the rounds of _include/_revinclude :iterate.
	IterateRounds = 5
	// IterateMax bounds the resources added by :iterate rounds.
	IterateMax = 1000
	// IncludeMax bounds the resources added by the first include round.
	IncludeMax = 10000
)

// Engine runs searches, reads and history for one database. It is safe for
// concurrent use.
type Engine struct {
	D Dialect
	// Cap overrides SnapshotCap when positive (tests).
	Cap int
	// Now returns the current time (tests may replace it); nil = time.Now.
	Now func() time.Time
	// SnapshotDelay is how long the background snapshot writer gathers
	// snapshots before storing them together (StartSnapshotWriter); 0:
	// it stores at once those already queued.
	SnapshotDelay time.Duration
	// SnapshotTable is the table of paging snapshots ("" =
	// search_snapshot): SQLite keeps them in a file of their own.
	SnapshotTable string

	lastCleanup atomic.Int64
	cache       snapCache
	writer      atomic.Pointer[snapWriter]
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) snapshotTable() string {
	if e.SnapshotTable != "" {
		return e.SnapshotTable
	}
	return "search_snapshot"
}

func (e *Engine) cap() int {
	if e.Cap > 0 {
		return e.Cap
	}
	return SnapshotCap
}

// ResourceColumns are the columns scanned by ScanResource, prefixed by alias.
func ResourceColumns(alias string) string {
	a := alias + "."
	return a + "rid, " + a + "type, " + a + "id, " + a + "version, " + a + "last_updated, " + a + "deleted, " + a + "method, " + a + "body"
}

// Scanner is a row source (database/sql and pgx rows).
type Scanner interface {
	Scan(dest ...any) error
}

// ScanResource scans the ResourceColumns of one row.
func ScanResource(rows Scanner) (int64, store.Resource, error) {
	var rid, ms int64
	var r store.Resource
	err := rows.Scan(&rid, &r.Type, &r.ID, &r.VersionID, &ms, &r.Deleted, &r.Method, &r.Body)
	r.LastUpdated = time.UnixMilli(ms).UTC()
	if r.Deleted {
		r.Body = nil
	}
	return rid, r, err
}

// Read returns the current version of one resource (locked FOR UPDATE on
// PostgreSQL when forUpdate).
func (e *Engine) Read(ctx context.Context, q Querier, typ, id string, forUpdate bool) (*store.Resource, error) {
	b := &Builder{D: e.D}
	sql := "SELECT " + ResourceColumns("r") + " FROM resources r WHERE r.type = " + b.Arg(typ) + " AND r.id = " + b.Arg(id)
	if forUpdate && e.D == Postgres {
		sql += " FOR UPDATE"
	}
	return queryOne(ctx, q, sql, b.Args)
}

// VRead returns one version from the history table.
func (e *Engine) VRead(ctx context.Context, q Querier, typ, id string, version int64) (*store.Resource, error) {
	b := &Builder{D: e.D}
	sql := "SELECT " + ResourceColumns("h") + " FROM history h WHERE h.type = " + b.Arg(typ) + " AND h.id = " + b.Arg(id) +
		" AND h.version = " + b.Arg(version)
	return queryOne(ctx, q, sql, b.Args)
}

func queryOne(ctx context.Context, q Querier, sql string, args []any) (*store.Resource, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanOne(rows)
}

// Cursor is the part of a query's rows that moves through them.
type Cursor interface {
	Next() bool
	Err() error
}

// First moves rows to their first row, and returns the error that ended
// them, or missing when they had none.
func First(rows Cursor, missing error) error {
	if rows.Next() {
		return nil
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return missing
}

// ScanOne scans the resource of the first of rows (ScanResource's
// columns), or returns store.ErrNotFound when there is none.
func ScanOne(rows interface {
	Cursor
	Scanner
}) (*store.Resource, error) {
	if err := First(rows, store.ErrNotFound); err != nil {
		return nil, err
	}
	_, r, err := ScanResource(rows)
	if err != nil {
		return nil, err
	}
	return &r, rows.Err()
}

// base renders the FROM/WHERE of a search (no ORDER BY), and whether its
// text fixes its plan (a driving clause on PostgreSQL, no compartment:
// see Pinner).
func (e *Engine) base(b *Builder, q *store.Query) (string, bool, error) {
	g := &gen{b: b, filter: q.Filter, sqlite: e.D == SQLite}
	sc := scope{alias: "r", typ: q.Type}
	if sc.typ == "" && len(q.Types) == 1 {
		sc.typ = q.Types[0]
	}
	// The plan must not depend on statistics (stale, missing or skewed
	// ones once turned 1 ms searches into 30 s ones): drive the search
	// from the most selective clause, probe the others per candidate with
	// correlated EXISTS, and keep the type index out of the way when a
	// clause can drive. SQLite keeps the order it is given; on PostgreSQL
	// the driving clause takes its rids once (rid = ANY(ARRAY(...)), an
	// init plan) and the candidates are fetched by rid. A compartment
	// (one patient's resources, found through the reference index by
	// target) drives on SQLite whatever the clauses; on PostgreSQL, and
	// for a search of several types, the planner joins as it sees fit.
	driver, typeCol := -1, "r.type"
	switch {
	case e.D == SQLite && q.Compartment != nil:
		driver, typeCol = len(q.Where), "+r.type"
	case e.D == SQLite || (sc.typ != "" && q.Compartment == nil):
		driver = Driver(q.Where)
		if q.Keyset != nil && driver >= 0 && lastUpdatedOnly(q.Where[driver]) {
			// Keyset pages walk the (type, last_updated) index, which
			// bounds _lastUpdated itself.
			driver = -1
		}
		if driver >= 0 && sc.typ != "" && !hasID(q.Where[driver]) {
			typeCol = e.D.unindexed("r.type")
		}
	}
	// A search of several types by a caller who sees a compartment and,
	// beside it, some types whole (the shared types of patient/ scopes):
	// the access filter is an OR over the types, which no index drives,
	// so the candidates come from the compartment's references and those
	// types' resources by index, the filter still deciding.
	var whole string
	if sc.typ == "" && q.Compartment == nil && showsWholeTypes(q.Filter) {
		whole = g.compartmentDriver("")
		if whole != "" && typeCol == "r.type" {
			typeCol = e.D.unindexed("r.type")
		}
	}
	conds := []string{"NOT r.deleted"}
	if whole != "" {
		conds = append(conds, e.D.ridIn("r", whole))
	}
	switch {
	case sc.typ != "":
		conds = append(conds, typeCol+" = "+b.Arg(sc.typ))
	case len(q.Types) > 1:
		conds = append(conds, typeCol+" IN "+b.List(q.Types))
	}
	w, err := g.where(sc, q.Where, driver)
	if err != nil {
		return "", false, err
	}
	if w != "" {
		conds = append(conds, w)
	}
	if f := g.access("r", sc.typ); f != "" {
		conds = append(conds, f)
	}
	if q.MatchFilter != nil {
		// Matches must also pass the match filter; includes, chains and
		// _has see only Filter.
		g.filter = q.MatchFilter
		f := g.access("r", sc.typ)
		g.filter = q.Filter
		if f != "" {
			conds = append(conds, f)
		}
	}
	if q.Compartment != nil {
		// Compartment search: membership as the access filter renders it,
		// of the member types the caller may see.
		c := visibleCompartment(q)
		g.filter = &store.AccessFilter{Compartment: &c}
		conds = append(conds, g.compartment("r", sc.typ))
		g.filter = q.Filter
	}
	pin := driver >= 0 && e.D == Postgres && q.Compartment == nil && pinnable(q.Filter) && pinnable(q.MatchFilter)
	return " FROM resources r WHERE " + strings.Join(conds, " AND "), pin, nil
}

// visibleCompartment returns q's compartment (not exclusive) without the
// member types its filters hide: their rows are never matches, so the
// membership test need not read their references. AuditEvent is hidden
// from all but admins, and every request about a patient leaves one
// naming it: the compartment search of a patient's record ($everything,
// Patient/ID/*) read them all, slower with every access to the record.
func visibleCompartment(q *store.Query) store.Compartment {
	c := *q.Compartment
	c.Exclusive = false
	c.Params = make(map[string][]string, len(q.Compartment.Params))
	for t, ps := range q.Compartment.Params {
		if q.Filter.MayShow(t) && q.MatchFilter.MayShow(t) {
			c.Params[t] = ps
		}
	}
	return c
}

// showsWholeTypes reports whether f has a compartment and, beside it,
// types some rule shows outside it.
func showsWholeTypes(f *store.AccessFilter) bool {
	if f == nil || f.Compartment == nil {
		return false
	}
	for t, rs := range f.Types {
		if t == "*" {
			continue
		}
		for _, r := range rs {
			if !r.Compartment {
				return true
			}
		}
	}
	return false
}

// pinnable reports whether the access filter f leaves a statement's plan
// to its text: it has no compartment, whose membership test the planner
// would otherwise weigh by the patient's number of references.
func pinnable(f *store.AccessFilter) bool {
	return f == nil || f.Compartment == nil
}

// lastUpdatedOnly reports whether c tests _lastUpdated only.
func lastUpdatedOnly(c store.Clause) bool {
	for _, p := range c.Any {
		if p.LastUpdated == nil {
			return false
		}
	}
	return len(c.Any) > 0
}

func hasID(c store.Clause) bool {
	for _, p := range c.Any {
		if p.ID != nil {
			return true
		}
	}
	return false
}

// orderBy renders the ORDER BY of a search: the sort keys, by default
// insertion order (rid) for a type-level search and last_updated for a
// system-level one; ties are always broken by rid, so the order is total.
func (e *Engine) orderBy(b *Builder, q *store.Query) (string, error) {
	g := &gen{b: b, n: 1000}
	var terms []string
	for _, k := range q.Sort {
		s, err := g.sortExpr("r", k)
		if err != nil {
			return "", err
		}
		terms = append(terms, s)
	}
	if len(q.Sort) == 0 && q.Type == "" {
		terms = append(terms, "r.last_updated ASC")
	}
	terms = append(terms, "r.rid ASC")
	return " ORDER BY " + strings.Join(terms, ", "), nil
}

// ridQuery renders SELECT r.rid ... ORDER BY ... LIMIT limit OFFSET offset,
// and whether its text fixes its plan (see base).
func (e *Engine) ridQuery(q *store.Query, limit, offset int) (string, []any, bool, error) {
	b := &Builder{D: e.D}
	sql, pin, err := e.matches(b, q)
	if err != nil {
		return "", nil, false, err
	}
	sql += " LIMIT " + b.Arg(int64(limit))
	if offset > 0 {
		sql += " OFFSET " + b.Arg(int64(offset))
	}
	return sql, b.Args, pin, nil
}

// matches renders SELECT r.rid ... ORDER BY ... (no LIMIT), and whether
// its text fixes its plan (see base): from the driving clause's index
// rows where they are the matches (fromIndexRows), else from base.
func (e *Engine) matches(b *Builder, q *store.Query) (string, bool, error) {
	sql, ok, err := e.fromIndexRows(b, q)
	if err != nil {
		return "", false, err
	}
	if ok {
		return sql + " ORDER BY 1", true, nil
	}
	from, pin, err := e.base(b, q)
	if err != nil {
		return "", false, err
	}
	ob, err := e.orderBy(b, q)
	if err != nil {
		return "", false, err
	}
	return "SELECT r.rid" + from + ob, pin, nil
}

func (e *Engine) rids(ctx context.Context, qr Querier, q *store.Query, limit, offset int) ([]int64, error) {
	sql, args, pin, err := e.ridQuery(q, limit, offset)
	if err != nil {
		return nil, err
	}
	if pin {
		qr = pinned(qr)
	}
	return queryRIDs(ctx, qr, sql, args)
}

// queryRIDs runs sql, which selects one column of resource rids.
func queryRIDs(ctx context.Context, q Querier, sql string, args []any) ([]int64, error) {
	return collect(ctx, q, scanColumn[int64], sql, args...)
}

// Count returns the number of matches of q.
func (e *Engine) Count(ctx context.Context, qr Querier, q *store.Query) (int, error) {
	b := &Builder{D: e.D}
	var sql string
	idx, pin, err := e.fromIndexRows(b, q)
	if err != nil {
		return 0, err
	}
	if pin {
		sql = "SELECT COUNT(*) FROM (" + idx + ") n"
	} else {
		from, p, err := e.base(b, q)
		if err != nil {
			return 0, err
		}
		sql, pin = "SELECT COUNT(*)"+from, p
	}
	if pin {
		qr = pinned(qr)
	}
	rows, err := qr.Query(ctx, sql, b.Args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return int(n), rows.Err()
}

// SQL returns the rid query of q's first page, for EXPLAIN in tests and tools.
func (e *Engine) SQL(q *store.Query) (string, []any, error) {
	sql, args, _, err := e.ridQuery(q, e.cap()+1, 0)
	return sql, args, err
}

// Search runs q. rq serves reads; wq stores paging snapshots (on SQLite the
// writer connection, inside a Tx the transaction itself).
func (e *Engine) Search(ctx context.Context, rq, wq Querier, q *store.Query) (*store.SearchResult, error) {
	rq = e.explaining(ctx, rq)
	if q.Snapshot != "" {
		return e.searchSnapshot(ctx, rq, q)
	}
	if q.Keyset != nil {
		return e.searchKeyset(ctx, rq, q)
	}
	count, offset := max(q.Count, 0), max(q.Offset, 0)
	res := &store.SearchResult{Total: -1}
	if count == 0 {
		if q.Total != store.TotalNone {
			n, err := e.Count(ctx, rq, q)
			if err != nil {
				return nil, err
			}
			res.Total = n
		}
		return res, nil
	}
	limit := e.cap()
	var page []int64
	var loaded []Loaded // the page's rows, when read with the matches
	preloaded := false
	if offset >= limit {
		// Deep page without a snapshot: live LIMIT/OFFSET.
		rids, err := e.rids(ctx, rq, q, count+1, offset)
		if err != nil {
			return nil, err
		}
		res.HasMore = len(rids) > count
		page = rids[:min(len(rids), count)]
		if q.Total != store.TotalNone {
			if res.Total, err = e.Count(ctx, rq, q); err != nil {
				return nil, err
			}
		}
	} else {
		var rids []int64
		var err error
		if e.D == Postgres {
			// The matches and the page's rows in one round trip.
			if rids, loaded, err = e.ridsWithPage(ctx, rq, q, limit+1, offset, count); err != nil {
				return nil, err
			}
			preloaded = true
		} else if rids, err = e.rids(ctx, rq, q, limit+1, 0); err != nil {
			return nil, err
		}
		truncated := len(rids) > limit
		if truncated {
			rids = rids[:limit]
			if q.Total != store.TotalNone {
				if res.Total, err = e.Count(ctx, rq, q); err != nil {
					return nil, err
				}
			}
		} else if q.Total != store.TotalNone {
			res.Total = len(rids)
		}
		end := min(offset+count, len(rids))
		page = rids[min(offset, len(rids)):end]
		res.HasMore = truncated || end < len(rids)
		if res.HasMore {
			id, err := e.saveSnapshot(ctx, wq, q, rids, res.Total, truncated)
			if err != nil {
				return nil, err
			}
			res.Snapshot = id
		}
	}
	if preloaded {
		return e.finishLoaded(ctx, rq, q, loaded, res)
	}
	return e.finish(ctx, rq, q, page, res)
}

// ridsWithPage returns what rids(q, limit, 0) does and, in the same
// statement (PostgreSQL), the visible current rows of the page of count
// matches after offset, in order: a first row (numbered 0) holding the
// ordered rids as one array (a CTE, computed once), then each rid of the
// page's slice of that array, numbered, joined to its row (a fenced
// LATERAL subquery, probed by rid). The matches outside the page cost no
// row of their own: a result of hundreds of matches is one array, not
// hundreds of rows to send, receive and scan.
func (e *Engine) ridsWithPage(ctx context.Context, qr Querier, q *store.Query, limit, offset, count int) ([]int64, []Loaded, error) {
	b := &Builder{D: e.D}
	matches, pin, err := e.matches(b, q)
	if err != nil {
		return nil, nil, err
	}
	matches += " LIMIT " + b.Arg(int64(limit))
	g := &gen{b: b, filter: q.Filter, n: 2000}
	// The page ends before the extra match that tells a truncated result.
	end := min(offset+count, limit-1)
	cond := "p.rid = u.rid AND NOT p.deleted"
	if f := g.access("p", ""); f != "" {
		cond += " AND " + f
	}
	cols := "p.type, p.id, p.version, p.last_updated, p.deleted, p.method, p.body"
	sql := "WITH m AS (SELECT ARRAY(" + matches + ") a) SELECT CAST(0 AS bigint) n, m.a, CAST(NULL AS bigint) rid, CAST(NULL AS text) type, " +
		"CAST(NULL AS text) id, CAST(NULL AS bigint) version, CAST(NULL AS bigint) last_updated, CAST(NULL AS boolean) deleted, " +
		"CAST(NULL AS text) method, CAST(NULL AS bytea) body FROM m UNION ALL SELECT u.n, NULL, u.rid, " + cols +
		" FROM m CROSS JOIN unnest(m.a[" + b.Arg(int64(offset+1)) + ":" + b.Arg(int64(end)) + "]) WITH ORDINALITY u(rid, n) CROSS JOIN LATERAL (SELECT " +
		cols + " FROM resources p WHERE " + cond + " OFFSET 0) p ORDER BY 1"
	if pin {
		qr = pinned(qr)
	}
	rows, err := qr.Query(ctx, sql, b.Args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var rids []int64
	var page []Loaded
	var n int64
	var all []int64
	var rid, version, ms *int64
	var typ, id, method *string
	var deleted *bool
	var body []byte
	dest := []any{&n, &all, &rid, &typ, &id, &version, &ms, &deleted, &method, &body}
	for rows.Next() {
		all, rid, typ, id, method, version, ms, deleted, body = nil, nil, nil, nil, nil, nil, nil, nil, nil
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, err
		}
		if n == 0 {
			rids = all
			continue
		}
		if rid == nil || typ == nil || id == nil || version == nil || ms == nil || deleted == nil || method == nil {
			return nil, nil, errors.New("sqlgen: page row without its columns")
		}
		page = append(page, Loaded{RID: *rid, Resource: store.Resource{Type: *typ, ID: *id, VersionID: *version,
			LastUpdated: time.UnixMilli(*ms).UTC(), Deleted: *deleted, Method: *method, Body: body}})
	}
	return rids, page, rows.Err()
}

// searchKeyset runs a keyset-paged search (store.Query.Keyset): the next
// Count matches in (last_updated, rid) order after the position, through
// the (type, last_updated) index, with no snapshot or OFFSET.
func (e *Engine) searchKeyset(ctx context.Context, rq Querier, q *store.Query) (*store.SearchResult, error) {
	if len(q.Sort) > 0 {
		return nil, errors.New("sqlgen: keyset paging takes no sort")
	}
	count := max(q.Count, 0)
	res := &store.SearchResult{Total: -1}
	if count == 0 {
		return res, nil
	}
	b := &Builder{D: e.D}
	from, pin, err := e.base(b, q)
	if err != nil {
		return nil, err
	}
	kq := rq
	if pin {
		kq = pinned(rq)
	}
	// When the page is read in index order (the type's last_updated
	// index, no other clause driving, no compartment), one query reads
	// its rows whole: no second lookup of each row by rid (Load), the
	// costliest part of such a page. Otherwise the rows are found by
	// another index and sorted, and only their keys are worth sorting.
	inOrder := keysetInOrder(q)
	cols := "r.rid, r.last_updated"
	if inOrder {
		cols = ResourceColumns("r")
	}
	sql := "SELECT " + cols + from
	if k := q.Keyset; k.RID != 0 || k.LastUpdated != 0 {
		sql += " AND (r.last_updated, r.rid) > (" + b.Arg(k.LastUpdated) + ", " + b.Arg(k.RID) + ")"
	}
	sql += " ORDER BY r.last_updated, r.rid LIMIT " + b.Arg(int64(count+1))
	rows, err := kq.Query(ctx, sql, b.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page []Loaded
	for rows.Next() {
		if len(page) == count {
			res.HasMore = true
			break
		}
		var l Loaded
		if inOrder {
			l.RID, l.Resource, err = ScanResource(rows)
		} else {
			var ms int64
			err = rows.Scan(&l.RID, &ms)
			l.LastUpdated = time.UnixMilli(ms).UTC()
		}
		if err != nil {
			return nil, err
		}
		page = append(page, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if res.HasMore {
		last := page[len(page)-1]
		res.Next = &store.Keyset{RID: last.RID, LastUpdated: last.LastUpdated.UnixMilli()}
	}
	if !inOrder {
		rids := make([]int64, len(page))
		for i, l := range page {
			rids[i] = l.RID
		}
		return e.finish(ctx, rq, q, rids, res)
	}
	return e.finishLoaded(ctx, rq, q, page, res)
}

// keysetInOrder reports whether the keyset pages of q walk the (type,
// last_updated) index in order (base lets no clause drive).
func keysetInOrder(q *store.Query) bool {
	if q.Compartment != nil {
		return false
	}
	d := Driver(q.Where)
	return d < 0 || lastUpdatedOnly(q.Where[d])
}

// finish loads the page's bodies and its included resources.
func (e *Engine) finish(ctx context.Context, rq Querier, q *store.Query, page []int64, res *store.SearchResult) (*store.SearchResult, error) {
	matches, err := e.Load(ctx, rq, page, q.Filter)
	if err != nil {
		return nil, err
	}
	return e.finishLoaded(ctx, rq, q, matches, res)
}

// finishLoaded adds the page's rows and its included resources to res.
func (e *Engine) finishLoaded(ctx context.Context, rq Querier, q *store.Query, matches []Loaded, res *store.SearchResult) (*store.SearchResult, error) {
	res.Matches = make([]store.Resource, 0, len(matches))
	for _, m := range matches {
		res.Matches = append(res.Matches, m.Resource)
	}
	if len(q.Include) > 0 || len(q.RevInclude) > 0 {
		inc, err := e.includes(ctx, rq, q, matches)
		if err != nil {
			return nil, err
		}
		res.Included = inc
	}
	return res, nil
}

// Loaded is a resource with its surrogate key.
type Loaded struct {
	RID int64
	store.Resource
}

// Load returns the current, non-deleted, visible resources with the given
// rids, in the order of rids (missing ones skipped).
func (e *Engine) Load(ctx context.Context, qr Querier, rids []int64, filter *store.AccessFilter) ([]Loaded, error) {
	if len(rids) == 0 {
		return nil, nil
	}
	b := &Builder{D: e.D}
	g := &gen{b: b, filter: filter}
	sql := "SELECT " + ResourceColumns("r") + " FROM resources r WHERE " + b.RidIn("r.rid", rids) + " AND NOT r.deleted"
	if f := g.access("r", ""); f != "" {
		sql += " AND " + f
	}
	qr = keyed(qr)
	if pinnable(filter) {
		qr = pinned(qr)
	}
	rows, err := qr.Query(ctx, sql, b.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byRID := make(map[int64]store.Resource, len(rids))
	for rows.Next() {
		rid, r, err := ScanResource(rows)
		if err != nil {
			return nil, err
		}
		byRID[rid] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Loaded, 0, len(byRID))
	for _, rid := range rids {
		if r, ok := byRID[rid]; ok {
			out = append(out, Loaded{RID: rid, Resource: r})
			delete(byRID, rid)
		}
	}
	return out, nil
}

// snapshot is the decoded search_snapshot row.
type snapshot struct {
	created   int64
	total     int
	truncated bool
	query     []byte // queryKey of the search
	rids      []int64
}

func encodeRids(rids []int64) []byte {
	buf := make([]byte, 0, len(rids)*3)
	var prev int64
	for _, r := range rids {
		buf = binary.AppendVarint(buf, r-prev)
		prev = r
	}
	return buf
}

func decodeRids(buf []byte) ([]int64, error) {
	var out []int64
	var prev int64
	for len(buf) > 0 {
		d, n := binary.Varint(buf)
		if n <= 0 {
			return nil, errors.New("sqlgen: corrupt snapshot")
		}
		prev += d
		out = append(out, prev)
		buf = buf[n:]
	}
	return out, nil
}

func (e *Engine) saveSnapshot(ctx context.Context, wq Querier, q *store.Query, rids []int64, total int, truncated bool) (string, error) {
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(idb[:])
	s := &snapshot{created: e.now().UnixMilli(), total: total, truncated: truncated, query: queryKey(q), rids: rids}
	e.cache.put(id, s)
	if w := e.writer.Load(); w != nil {
		// Saturated or stopped: this instance still serves it from memory.
		w.offer(pendingSnap{id, s})
		return id, nil
	}
	return id, e.storeSnapshot(ctx, wq, id, s)
}

// storeSnapshot writes a snapshot row.
func (e *Engine) storeSnapshot(ctx context.Context, wq Querier, id string, s *snapshot) error {
	return e.storeSnapshots(ctx, wq, []pendingSnap{{id, s}})
}

// storeSnapshots writes snapshot rows in one statement (and now and then
// removes expired ones first).
func (e *Engine) storeSnapshots(ctx context.Context, wq Querier, snaps []pendingSnap) error {
	if len(snaps) == 0 {
		return nil
	}
	now := e.now().UnixMilli()
	if last := e.lastCleanup.Load(); now-last > int64(time.Minute/time.Millisecond) && e.lastCleanup.CompareAndSwap(last, now) {
		b := &Builder{D: e.D}
		if err := wq.Exec(ctx, "DELETE FROM "+e.snapshotTable()+" WHERE created < "+b.Arg(now-SnapshotTTL.Milliseconds()), b.Args...); err != nil {
			return err
		}
	}
	b := &Builder{D: e.D}
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + e.snapshotTable() + " (id, created, total, truncated, query, rids) VALUES ")
	for i, p := range snaps {
		if i > 0 {
			sb.WriteString(", ")
		}
		s := p.s
		sb.WriteString("(" + b.Arg(p.id) + ", " + b.Arg(s.created) + ", " + b.Arg(int64(s.total)) + ", " + b.Arg(s.truncated) + ", " + b.Arg(s.query) + ", " + b.Arg(encodeRids(s.rids)) + ")")
	}
	return wq.Exec(ctx, sb.String(), b.Args...)
}

// loadSnapshot reads the snapshot id; one that is not of the shape the
// engine makes (hex: a client's token, or text PostgreSQL would refuse in
// a statement) is expired.
func (e *Engine) loadSnapshot(ctx context.Context, rq Querier, id string) (*snapshot, error) {
	if _, err := hex.DecodeString(id); err != nil || id == "" {
		return nil, store.ErrSnapshotExpired
	}
	if s := e.cache.get(id); s != nil {
		if e.now().UnixMilli()-s.created > SnapshotTTL.Milliseconds() {
			return nil, store.ErrSnapshotExpired
		}
		return s, nil
	}
	b := &Builder{D: e.D}
	rows, err := rq.Query(ctx, "SELECT created, total, truncated, query, rids FROM "+e.snapshotTable()+" WHERE id = "+b.Arg(id), b.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if err := First(rows, store.ErrSnapshotExpired); err != nil {
		return nil, err
	}
	var s snapshot
	var total int64
	var enc []byte
	if err := rows.Scan(&s.created, &total, &s.truncated, &s.query, &enc); err != nil {
		return nil, err
	}
	if e.now().UnixMilli()-s.created > SnapshotTTL.Milliseconds() {
		return nil, store.ErrSnapshotExpired
	}
	s.total = int(total)
	if s.rids, err = decodeRids(enc); err != nil {
		return nil, err
	}
	return &s, rows.Err()
}

func (e *Engine) searchSnapshot(ctx context.Context, rq Querier, q *store.Query) (*store.SearchResult, error) {
	s, err := e.loadSnapshot(ctx, rq, q.Snapshot)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(s.query, queryKey(q)) {
		// Computed for another query or another caller's access filter.
		return nil, store.ErrSnapshotExpired
	}
	count, offset := max(q.Count, 0), max(q.Offset, 0)
	res := &store.SearchResult{Total: s.total, Snapshot: q.Snapshot}
	if q.Total == store.TotalNone {
		res.Total = -1
	}
	if count == 0 {
		return res, nil
	}
	var page []int64
	if offset+count <= len(s.rids) || !s.truncated {
		end := min(offset+count, len(s.rids))
		page = s.rids[min(offset, len(s.rids)):end]
		res.HasMore = s.truncated || end < len(s.rids)
	} else {
		live := &store.Query{Type: q.Type, Types: q.Types, Where: q.Where, Sort: q.Sort, Filter: q.Filter, MatchFilter: q.MatchFilter, Compartment: q.Compartment}
		rids, err := e.rids(ctx, rq, live, count+1, offset)
		if err != nil {
			return nil, err
		}
		res.HasMore = len(rids) > count
		page = rids[:min(len(rids), count)]
	}
	return e.finish(ctx, rq, q, page, res)
}

// fromIndexRows renders the matches of q as the rids of its driving
// clause's index rows, without the resources rows, where those add
// nothing: a search of one type with no sort (rid order), no compartment
// and no access rule on the type, whose driving clause tests the rows of
// one parameter in one index table and whose other clauses test index
// rows by rid only. Index rows exist only for the current version of a
// resource that is not deleted and carry its type (see hasFromIndexRows),
// so the driving rows' rids are the visible resources of the type; the
// other clauses are probed per candidate as in base. Each match is then
// one index entry instead of a probe of the resources row besides. A
// driving _has of the kind hasFromIndexRows renders reads its matches as
// hasRows says, from the referenced rows' (type, id) lookups. It returns
// "SELECT DISTINCT x.rid FROM ... WHERE ..." (no ORDER BY), or ok false
// when q is not of that kind.
func (e *Engine) fromIndexRows(b *Builder, q *store.Query) (string, bool, error) {
	if q.Type == "" || q.Compartment != nil || q.MatchFilter != nil || len(q.Sort) > 0 || q.Keyset != nil {
		return "", false, nil
	}
	driver := Driver(q.Where)
	if driver < 0 {
		return "", false, nil
	}
	c := q.Where[driver]
	if c.Negate || len(c.Any) == 0 {
		return "", false, nil
	}
	has := len(c.Any) == 1 && c.Any[0].Has != nil
	table, param := simpleTable(&c.Any[0]), rowParam(&c.Any[0])
	for i := range c.Any {
		p := &c.Any[i]
		if !has && (len(p.Composite) > 0 || table == "" || simpleTable(p) != table || rowParam(p) != param) {
			return "", false, nil
		}
	}
	// The other clauses may only test index rows of the candidate by rid
	// (the resources row's id, type and last_updated are not at hand).
	for i, o := range q.Where {
		if i == driver {
			continue
		}
		for j := range o.Any {
			p := &o.Any[j]
			if simpleTable(p) == "" && len(p.Composite) == 0 && p.Missing == nil {
				return "", false, nil
			}
		}
	}
	// Rendered apart, so that a rule is tested without binding its values.
	scratch := &gen{b: &Builder{D: e.D}, filter: q.Filter, sqlite: e.D == SQLite}
	if f := scratch.access("r", q.Type); f != "" && f != "1=1" {
		return "", false, nil
	}
	g := &gen{b: b, filter: q.Filter, sqlite: e.D == SQLite}
	var from, alias string
	var where []string
	if has {
		f, w, a, ok, err := g.hasRows(q.Type, c.Any[0].Has)
		if !ok || err != nil {
			return "", ok, err
		}
		from, alias = f, a
		if w != "" {
			where = append(where, w)
		}
	} else {
		alias = g.alias("k")
		conds := make([]string, len(c.Any))
		for i := range c.Any {
			var err error
			if conds[i], err = g.simple(alias, &c.Any[i]); err != nil {
				return "", true, err
			}
		}
		// SQLite reads references by target id through the target index,
		// whatever the statistics: the url index, which starts with (type,
		// param), holds every reference of the type and parameter.
		from = table + " " + alias
		if e.D == SQLite && slices.IndexFunc(c.Any, func(p store.Predicate) bool { return p.Reference == nil || p.Reference.TargetID == "" }) < 0 {
			from += " INDEXED BY idx_reference_target"
		}
		where = append(where, alias+".type = "+b.Arg(q.Type)+" AND "+alias+".param = "+b.Arg(param)+" AND "+orTree(conds))
	}
	others := make([]store.Clause, 0, len(q.Where)-1)
	others = append(others, q.Where[:driver]...)
	others = append(others, q.Where[driver+1:]...)
	w, err := g.where(scope{alias: alias, typ: q.Type, corr: true}, others, -1)
	if err != nil {
		return "", true, err
	}
	if w != "" {
		where = append(where, w)
	}
	sql := "SELECT DISTINCT " + alias + ".rid FROM " + from
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	return sql, true, nil
}
