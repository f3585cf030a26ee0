package sqlite

import (
	"context"
	"database/sql"
	"errors"

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
	stInsString
	stInsToken
	stInsReference
	stInsDate
	stInsNumber
	stInsQuantity
	stInsURI
	stDelIdx // + table bit
)

var writeSQL = func() []string {
	l := []string{
		readSQL,
		"SELECT rid, version, idx_mask FROM resources WHERE type = ?1 AND id = ?2",
		"INSERT INTO resources (type, id, version, last_updated, deleted, method, idx_mask, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		"UPDATE resources SET version = ?1, last_updated = ?2, deleted = ?3, method = ?4, idx_mask = ?5, body = ?6 WHERE rid = ?7",
		"INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		"INSERT INTO idx_string (rid, type, param, grp, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		"INSERT INTO idx_token (rid, type, param, grp, system, code, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		"INSERT INTO idx_reference (rid, type, param, grp, target_type, target_id, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		"INSERT INTO idx_date (rid, type, param, grp, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		"INSERT INTO idx_number (rid, type, param, grp, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		"INSERT INTO idx_quantity (rid, type, param, grp, system, code, unit, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
		"INSERT INTO idx_uri (rid, type, param, grp, uri) VALUES (?1, ?2, ?3, ?4, ?5)",
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
	var err error
	if s.readStmt, err = s.r.PrepareContext(ctx, readSQL); err != nil {
		return err
	}
	s.ws = &writeStmts{}
	for _, q := range writeSQL {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		s.ws.list = append(s.ws.list, st)
	}
	return nil
}

// tx is a store.Tx on the writer connection.
type tx struct {
	s     *Store
	tx    *sql.Tx
	stmts []*sql.Stmt // tx-bound copies of s.ws.list, made lazily
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
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, store.ErrNotFound
	}
	_, r, err := sqlgen.ScanResource(rows)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Search runs a search inside the transaction.
func (t *tx) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	qr := querier{t.tx}
	return t.s.eng.Search(ctx, qr, qr, q)
}

// Put stores a new version and replaces the resource's index rows.
func (t *tx) Put(ctx context.Context, w *store.Write) error {
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
		for i := range sqlgen.IndexTables {
			if oldMask&(1<<i) != 0 {
				if _, err := t.stmt(ctx, stDelIdx+i).ExecContext(ctx, rid); err != nil {
					return err
				}
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

func (t *tx) insertIndex(ctx context.Context, rid int64, typ string, ix *store.Index) error {
	exec := func(i int, args ...any) error {
		_, err := t.stmt(ctx, i).ExecContext(ctx, args...)
		return err
	}
	for _, r := range ix.Strings {
		if err := exec(stInsString, rid, typ, r.Param, r.Group, r.Norm, r.Exact); err != nil {
			return err
		}
	}
	for _, r := range ix.Tokens {
		if err := exec(stInsToken, rid, typ, r.Param, r.Group, r.System, r.Code, r.Text); err != nil {
			return err
		}
	}
	for _, r := range ix.References {
		if err := exec(stInsReference, rid, typ, r.Param, r.Group, r.TargetType, r.TargetID, r.URL); err != nil {
			return err
		}
	}
	for _, r := range ix.Dates {
		if err := exec(stInsDate, rid, typ, r.Param, r.Group, r.Lo, r.Hi); err != nil {
			return err
		}
	}
	for _, r := range ix.Numbers {
		if err := exec(stInsNumber, rid, typ, r.Param, r.Group, r.Lo, r.Hi); err != nil {
			return err
		}
	}
	for _, r := range ix.Quantities {
		if err := exec(stInsQuantity, rid, typ, r.Param, r.Group, r.System, r.Code, r.Unit, r.Lo, r.Hi); err != nil {
			return err
		}
	}
	for _, r := range ix.URIs {
		if err := exec(stInsURI, rid, typ, r.Param, r.Group, r.URI); err != nil {
			return err
		}
	}
	return nil
}
