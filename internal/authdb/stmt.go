package authdb

import (
	"context"
	"database/sql"
)

// stmt is a hot-path statement. On SQLite it is prepared once (SQLite
// would otherwise re-parse the SQL on every call); on PostgreSQL it is
// not: pgx prepares and caches it per connection, while a database/sql
// Stmt on the view of the shared pool (which keeps no connection between
// calls) would prepare it again on every call.
type stmt struct {
	db *sql.DB
	q  string
	st *sql.Stmt // nil on PostgreSQL
}

// prepareStmt returns q as a stmt on db.
func prepareStmt(ctx context.Context, db *sql.DB, q string, prepare bool) (*stmt, error) {
	s := &stmt{db: db, q: q}
	if prepare {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		s.st = st
	}
	return s, nil
}

// QueryRowContext runs the statement, which returns at most one row.
func (s *stmt) QueryRowContext(ctx context.Context, args ...any) *sql.Row {
	if s.st != nil {
		return s.st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, s.q, args...)
}

// ExecContext runs the statement.
func (s *stmt) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	if s.st != nil {
		return s.st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, s.q, args...)
}

// Close releases the prepared statement.
func (s *stmt) Close() error {
	if s == nil || s.st == nil {
		return nil
	}
	return s.st.Close()
}
