package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/lapis-health/lapis/internal/store"
)

var _ store.Inspector = (*Store)(nil)

// Inspect returns every copy of the resources typ/ids, read in one
// REPEATABLE READ transaction (store.Inspector).
func (s *Store) Inspect(ctx context.Context, typ string, ids []string) (map[string]*store.Stored, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return s.eng.Inspect(ctx, querier{tx}, typ, ids)
}

// IDs lists the ids of typ with a current or history row (store.Inspector).
func (s *Store) IDs(ctx context.Context, typ, after string, limit int) ([]string, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return s.eng.IDs(ctx, querier{tx}, typ, after, limit)
}
