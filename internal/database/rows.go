package database

import (
	"context"
	"database/sql"
)

// Querier runs a query: *sql.DB, *sql.Tx and *sql.Conn are one.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// AppendRows runs query on q and appends to dst what scan makes of each
// row (scan calls Scan on the row it is given), in order. The rows are
// closed when it returns; on an error it returns nil and the first error
// (of the query, a scan, or the iteration).
func AppendRows[T any](ctx context.Context, dst []T, q Querier, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		dst = append(dst, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return dst, nil
}

// ScanOne reads the one column of a row (a scan for AppendRows).
func ScanOne[T any](rows *sql.Rows) (T, error) {
	var v T
	err := rows.Scan(&v)
	return v, err
}
