package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/lapis-health/lapis/internal/store"
)

var _ store.Inspector = (*Store)(nil)

// Inspect returns every copy of the resources typ/ids, read in one
// REPEATABLE READ transaction (store.Inspector). JIT compilation is off
// in it: without statistics (a freshly loaded table) the per-id lookups
// look costly enough to be compiled, which takes far longer than running
// them.
func (s *Store) Inspect(ctx context.Context, typ string, ids []string) (map[string]*store.Stored, error) {
	tx, err := s.pool(ctx).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
		return nil, mapErr(err)
	}
	return s.eng.Inspect(ctx, querier{tx}, typ, ids)
}

// EachID streams the ids of typ with a current or history row
// (store.Inspector).
func (s *Store) EachID(ctx context.Context, typ string, fn func(id string) error) error {
	tx, err := s.pool(ctx).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return s.eng.EachID(ctx, querier{tx}, typ, fn)
}
