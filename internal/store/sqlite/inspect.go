package sqlite

import (
	"context"
	"database/sql"

	"github.com/lapis-health/lapis/internal/store"
)

var _ store.Inspector = (*Store)(nil)

// Inspect returns every copy of the resources typ/ids, read in one read
// transaction (store.Inspector).
func (s *Store) Inspect(ctx context.Context, typ string, ids []string) (map[string]*store.Stored, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return s.eng.Inspect(ctx, readQuerier{tx, s.stmts}, typ, ids)
}

// EachID streams the ids of typ with a current or history row
// (store.Inspector).
func (s *Store) EachID(ctx context.Context, typ string, fn func(id string) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return s.eng.EachID(ctx, readQuerier{tx, s.stmts}, typ, fn)
}
