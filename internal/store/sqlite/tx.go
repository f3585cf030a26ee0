package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

const readSQL = "SELECT rid, type, id, version, last_updated, deleted, method, body FROM resources WHERE type = ?1 AND id = ?2"

// Prepared writer statements, by index into writeStmts.list.
const (
	stRead = iota
	stCur
	stInsRes
	stUpdRes
	stInsHist
	stKeepTok
	stKeepRef
	stMaxRid
	stDelIdx // + table bit
)

var writeSQL = func() []string {
	l := []string{
		readSQL,
		"SELECT rid, version, idx_mask FROM resources WHERE type = ?1 AND id = ?2",
		"INSERT INTO resources (type, id, version, last_updated, deleted, method, idx_mask, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		"UPDATE resources SET version = ?1, last_updated = ?2, deleted = ?3, method = ?4, idx_mask = ?5, body = ?6 WHERE rid = ?7",
		"INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		sqlgen.KeepSQL(sqlgen.SQLite, sqlgen.TableToken, "?1", "?2", "?3", "= ?4"),
		sqlgen.KeepSQL(sqlgen.SQLite, sqlgen.TableReference, "?1", "?2", "?3", "= ?4"),
		"SELECT coalesce(max(rid), 0) FROM resources",
	}
	for _, t := range sqlgen.IndexTables {
		l = append(l, "DELETE FROM "+t+" WHERE rid = ?1")
	}
	return l
}()

type writeStmts struct{ list []*sql.Stmt }

func (w *writeStmts) close() error {
	var errs []error
	for _, s := range w.list {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func (s *Store) prepare(ctx context.Context) error {
	s.ws = &writeStmts{}
	for _, q := range writeSQL {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		s.ws.list = append(s.ws.list, st)
	}
	return s.prepareInserts(ctx)
}

// tx is a store.Tx on the writer connection.
type tx struct {
	s     *Store
	tx    *sql.Tx
	stmts []*sql.Stmt // tx-bound copies of s.ws.list, made lazily
	ins   map[insKey]*sql.Stmt
	puts  int64 // resource versions and index sets written (statistics schedule)
}

// insKey names a prepared multi-row index INSERT.
type insKey struct {
	table string
	rows  int
}

func (t *tx) stmt(ctx context.Context, i int) *sql.Stmt {
	if t.stmts == nil {
		t.stmts = make([]*sql.Stmt, len(t.s.ws.list))
	}
	if t.stmts[i] == nil {
		t.stmts[i] = t.tx.StmtContext(ctx, t.s.ws.list[i])
	}
	return t.stmts[i]
}

// Read returns the current version inside the transaction.
func (t *tx) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	rows, err := t.stmt(ctx, stRead).QueryContext(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlgen.ScanOne(rows)
}

// Search runs a search inside the transaction. A paging snapshot it
// saves goes to the scratch file through the snapshot connection: the
// writer has the scratch file attached read-only.
func (t *tx) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	return t.s.eng.Search(ctx, querier{t.tx}, querier{t.s.sw}, q)
}

// Put stores a new version and replaces the resource's index rows.
func (t *tx) Put(ctx context.Context, w *store.Write) error {
	t.puts++
	var rid, cur, oldMask int64
	err := t.stmt(ctx, stCur).QueryRowContext(ctx, w.Type, w.ID).Scan(&rid, &cur, &oldMask)
	exists := true
	if errors.Is(err, sql.ErrNoRows) {
		exists = false
	} else if err != nil {
		return err
	}
	if w.Version != cur+1 {
		return store.ErrConflict
	}
	var ix *store.Index
	if !w.Deleted {
		ix = &w.Index
	} else {
		ix = &store.Index{}
	}
	mask := sqlgen.Mask(ix)
	body := w.Body
	if w.Deleted || body == nil {
		body = []byte{}
	}
	ms := w.LastUpdated.UnixMilli()
	if exists {
		if _, err := t.stmt(ctx, stUpdRes).ExecContext(ctx, w.Version, ms, w.Deleted, w.Method, mask, body, rid); err != nil {
			return err
		}
		for i, table := range sqlgen.IndexTables {
			if oldMask&(1<<i) == 0 {
				continue
			}
			// The superseded version keeps the rows access filters test.
			keep := -1
			switch table {
			case sqlgen.TableToken:
				keep = stKeepTok
			case sqlgen.TableReference:
				keep = stKeepRef
			}
			if keep >= 0 {
				if _, err := t.stmt(ctx, keep).ExecContext(ctx, w.Type, w.ID, cur, rid); err != nil {
					return err
				}
			}
			if _, err := t.stmt(ctx, stDelIdx+i).ExecContext(ctx, rid); err != nil {
				return err
			}
		}
	} else {
		res, err := t.stmt(ctx, stInsRes).ExecContext(ctx, w.Type, w.ID, w.Version, ms, w.Deleted, w.Method, mask, body)
		if err != nil {
			return err
		}
		if rid, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	if _, err := t.stmt(ctx, stInsHist).ExecContext(ctx, rid, w.Type, w.ID, w.Version, ms, w.Deleted, w.Method, body); err != nil {
		return err
	}
	return t.insertIndex(ctx, rid, w.Type, ix)
}

// maxRowsPerInsert bounds the rows of one multi-row INSERT.
const maxRowsPerInsert = 32

// Tables PutNew fills with multi-row INSERTs besides the index tables.
const (
	tableResources = "resources"
	tableHistory   = "history"
)

// insertCols are the columns of the multi-row INSERTs, by table.
var insertCols = map[string][]string{
	tableResources:        {"rid", "type", "id", "version", "last_updated", "deleted", "method", "idx_mask", "body"},
	tableHistory:          {"rid", "type", "id", "version", "last_updated", "deleted", "method", "body"},
	sqlgen.TableString:    {"rid", "type", "param", "grp", "norm", "exact"},
	sqlgen.TableToken:     {"rid", "type", "param", "grp", "system", "code", "text"},
	sqlgen.TableReference: {"rid", "type", "param", "grp", "target_type", "target_id", "url"},
	sqlgen.TableDate:      {"rid", "type", "param", "grp", "lo", "hi"},
	sqlgen.TableNumber:    {"rid", "type", "param", "grp", "lo", "hi"},
	sqlgen.TableQuantity:  {"rid", "type", "param", "grp", "system", "code", "unit", "lo", "hi"},
	sqlgen.TableURI:       {"rid", "type", "param", "grp", "uri"},
}

// insertSizes are the row counts of the prepared multi-row INSERTs
// (powers of two up to maxRowsPerInsert); a batch is split into them.
var insertSizes = []int{32, 16, 8, 4, 2, 1}

// insertSQL is the INSERT of n rows into table. It is INSERT OR FAIL: a
// multi-row statement that may abort half-way makes SQLite keep a
// statement journal (a copy of every page the statement touches) to undo
// its own rows, while FAIL keeps them; a failed write rolls back the whole
// transaction anyway (index tables have no constraint a correct row
// breaks, and a resource that exists already fails PutNew, whose
// transaction must then be rolled back).
func insertSQL(table string, n int) string {
	cols := insertCols[table]
	var sb strings.Builder
	sb.WriteString("INSERT OR FAIL INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j := range cols {
			if j > 0 {
				sb.WriteString(", ")
			}
			sb.WriteByte('?')
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

// prepareInserts prepares every multi-row INSERT on the writer (at Open:
// inside a transaction the single writer connection is busy).
func (s *Store) prepareInserts(ctx context.Context) error {
	for table := range insertCols {
		for _, n := range insertSizes {
			st, err := s.w.PrepareContext(ctx, insertSQL(table, n))
			if err != nil {
				return err
			}
			s.ins[insKey{table, n}] = st
		}
	}
	return nil
}

// insertStmt returns the transaction's statement inserting n rows into table.
func (t *tx) insertStmt(ctx context.Context, table string, n int) *sql.Stmt {
	key := insKey{table, n}
	if ts, ok := t.ins[key]; ok {
		return ts
	}
	if t.ins == nil {
		t.ins = make(map[insKey]*sql.Stmt)
	}
	ts := t.tx.StmtContext(ctx, t.s.ins[key])
	t.ins[key] = ts
	return ts
}

// insertRows inserts rows into table with multi-row INSERTs: args holds
// the rows' values one row after the other, in the columns of insertCols.
func (t *tx) insertRows(ctx context.Context, table string, args []any) error {
	width := len(insertCols[table])
	for len(args) > 0 {
		rows := len(args) / width
		n := 1
		for _, size := range insertSizes {
			if size <= rows {
				n = size
				break
			}
		}
		if _, err := t.insertStmt(ctx, table, n).ExecContext(ctx, args[:n*width]...); err != nil {
			return err
		}
		args = args[n*width:]
	}
	return nil
}

func (t *tx) insertIndex(ctx context.Context, rid int64, typ string, ix *store.Index) error {
	return t.insertIndexes(ctx, []ridIndex{{rid, typ, ix}})
}

// ridIndex is the index of one stored resource.
type ridIndex struct {
	rid int64
	typ string
	ix  *store.Index
}

// insertIndexes inserts the index rows of several resources, each table's
// rows of all of them together in multi-row INSERTs.
func (t *tx) insertIndexes(ctx context.Context, items []ridIndex) error {
	args := make([]any, 0, 64) // a few rows of any table without growing
	for _, tb := range indexTables {
		for _, it := range items {
			args = tb.rows(args, it)
		}
		err := t.insertRows(ctx, tb.name, args)
		clear(args)
		args = args[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// indexTables are the index tables in the order insertIndexes fills them,
// each with the function that appends one resource's rows of the table to
// args: the bind arguments of the rows, in the columns of insertCols.
var indexTables = [...]struct {
	name string
	rows func(args []any, it ridIndex) []any
}{
	{sqlgen.TableString, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.Strings, func(args []any, r store.StringRow) []any {
			return append(args, r.Param, r.Group, r.Norm, r.Exact)
		})
	}},
	{sqlgen.TableToken, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.Tokens, func(args []any, r store.TokenRow) []any {
			return append(args, r.Param, r.Group, r.System, r.Code, r.Text)
		})
	}},
	{sqlgen.TableReference, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.References, func(args []any, r store.ReferenceRow) []any {
			return append(args, r.Param, r.Group, r.TargetType, r.TargetID, r.URL)
		})
	}},
	{sqlgen.TableDate, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.Dates, func(args []any, r store.DateRow) []any {
			return append(args, r.Param, r.Group, r.Lo, r.Hi)
		})
	}},
	{sqlgen.TableNumber, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.Numbers, func(args []any, r store.NumberRow) []any {
			return append(args, r.Param, r.Group, r.Lo, r.Hi)
		})
	}},
	{sqlgen.TableQuantity, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.Quantities, func(args []any, r store.QuantityRow) []any {
			return append(args, r.Param, r.Group, r.System, r.Code, r.Unit, r.Lo, r.Hi)
		})
	}},
	{sqlgen.TableURI, func(args []any, it ridIndex) []any {
		return appendRows(args, it, it.ix.URIs, func(args []any, r store.URIRow) []any {
			return append(args, r.Param, r.Group, r.URI)
		})
	}},
}

// appendRows appends the bind arguments of rows, index rows of the
// resource it: for each, the resource's rid and type, then what cols
// appends (the row's own columns).
func appendRows[R any](args []any, it ridIndex, rows []R, cols func(args []any, r R) []any) []any {
	for _, r := range rows {
		args = cols(append(args, it.rid, it.typ), r)
	}
	return args
}

// PutNew stores new resources (store.Creator) like Put, in multi-row
// INSERTs for the whole batch: a few per table instead of a few per
// resource. The resources get the rids an INSERT of one at a time would
// give them (one past the largest, in order), so that their history and
// index rows go in the same statements. A resource that exists already
// fails the INSERT on the (type, id) key: ErrConflict.
func (t *tx) PutNew(ctx context.Context, ws []*store.Write) error {
	if len(ws) == 0 {
		return nil
	}
	for _, w := range ws {
		if w.Version != 1 || w.Deleted {
			return fmt.Errorf("sqlite: PutNew of %s/%s: not a new resource (version %d)", w.Type, w.ID, w.Version)
		}
	}
	var last int64
	if err := t.stmt(ctx, stMaxRid).QueryRowContext(ctx).Scan(&last); err != nil {
		return err
	}
	items := make([]ridIndex, len(ws))
	res := make([]any, 0, len(ws)*len(insertCols[tableResources]))
	hist := make([]any, 0, len(ws)*len(insertCols[tableHistory]))
	for i, w := range ws {
		t.puts++
		body := w.Body
		if body == nil {
			body = []byte{}
		}
		rid := last + 1 + int64(i)
		ms := w.LastUpdated.UnixMilli()
		res = append(res, rid, w.Type, w.ID, w.Version, ms, false, w.Method, sqlgen.Mask(&w.Index), body)
		hist = append(hist, rid, w.Type, w.ID, w.Version, ms, false, w.Method, body)
		items[i] = ridIndex{rid, w.Type, &w.Index}
	}
	if err := t.insertRows(ctx, tableResources, res); err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return store.ErrConflict
		}
		return err
	}
	if err := t.insertRows(ctx, tableHistory, hist); err != nil {
		return err
	}
	return t.insertIndexes(ctx, items)
}

// PutIndex replaces the index rows of the current version (store.IndexWriter).
func (t *tx) PutIndex(ctx context.Context, typ, id string, ix *store.Index) error {
	t.puts++
	var rid int64
	var deleted bool
	err := t.tx.QueryRowContext(ctx, "SELECT rid, deleted FROM resources WHERE type = ?1 AND id = ?2", typ, id).Scan(&rid, &deleted)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && deleted) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	// Every table, not only those idx_mask names: re-indexing also repairs
	// index rows and masks that do not match (audit verify --repair-index),
	// as on PostgreSQL.
	for i := range sqlgen.IndexTables {
		if _, err := t.stmt(ctx, stDelIdx+i).ExecContext(ctx, rid); err != nil {
			return err
		}
	}
	if _, err := t.tx.ExecContext(ctx, "UPDATE resources SET idx_mask = ?1 WHERE rid = ?2", sqlgen.Mask(ix), rid); err != nil {
		return err
	}
	return t.insertIndex(ctx, rid, typ, ix)
}

// PutVersionIndex replaces the access rows kept for a superseded version
// (store.VersionIndexWriter).
func (t *tx) PutVersionIndex(ctx context.Context, typ, id string, version int64, ix *store.Index) error {
	var seq, cur int64
	var deleted bool
	err := t.tx.QueryRowContext(ctx, sqlgen.VersionSQL(sqlgen.SQLite), typ, id, version).Scan(&seq, &deleted, &cur)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if deleted || version == cur {
		return nil
	}
	for _, table := range []string{sqlgen.TableHistoryToken, sqlgen.TableHistoryReference} {
		if _, err := t.tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE seq = ?1", seq); err != nil {
			return err
		}
	}
	tokens, refs := sqlgen.KeptRows(ix)
	for _, r := range tokens {
		if _, err := t.tx.ExecContext(ctx, "INSERT OR IGNORE INTO "+sqlgen.TableHistoryToken+" (seq, param, code, system) VALUES (?1, ?2, ?3, ?4)",
			seq, r.Param, r.Code, r.System); err != nil {
			return err
		}
	}
	for _, r := range refs {
		if _, err := t.tx.ExecContext(ctx, "INSERT OR IGNORE INTO "+sqlgen.TableHistoryReference+" (seq, param, target_id, target_type) VALUES (?1, ?2, ?3, ?4)",
			seq, r.Param, r.TargetID, r.TargetType); err != nil {
			return err
		}
	}
	return nil
}
