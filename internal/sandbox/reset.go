package sandbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// ResetOptions are what Reset needs besides the database.
type ResetOptions struct {
	// KEKFile and KEK are the key-encryption key of the environment's
	// signing keys (as oauth.Options has them): the new signing keys are
	// sealed with it, so running servers must share it.
	KEKFile, KEK string
}

// Reset wipes the environment's database h: every row of every table
// but the migrations' version tables, the audit trail (audit_*) and the
// revocation log, whose sequence the running instances follow. Then it
// creates new signing keys (the old ones are gone: their tokens stop
// verifying on every instance within seconds) and appends a reset entry
// to the revocation log, on which every running instance drops its
// cached tokens, API keys and limits. Nothing of a table's name comes
// from input: they are read from the database's catalog.
func Reset(ctx context.Context, h *database.DB, o ResetOptions) error {
	// The authorization tables exist (migrated) before they are wiped,
	// and the revocation log is there to write to.
	adb, err := authdb.New(ctx, h)
	if err != nil {
		return err
	}
	defer adb.Close()
	tables, err := wipeable(ctx, h)
	if err != nil {
		return err
	}
	if err := wipe(ctx, h, tables); err != nil {
		return err
	}
	if !h.Postgres() {
		if err := wipeScratch(ctx, h); err != nil {
			return err
		}
	}
	km, err := keys.Open(ctx, adb, keys.Options{KEKFile: o.KEKFile, KEK: o.KEK})
	if err != nil {
		return fmt.Errorf("sandbox: new signing keys: %w", err)
	}
	if err := km.Ready(ctx); err != nil {
		return fmt.Errorf("sandbox: new signing keys: %w", err)
	}
	return adb.LogReset(ctx)
}

// kept reports whether Reset keeps the rows of table.
func kept(table string) bool {
	return strings.Contains(table, "goose") || strings.HasPrefix(table, "audit_") ||
		strings.HasPrefix(table, "sqlite_") || table == "oauth_revocation_log"
}

// wipeable lists the tables Reset empties.
func wipeable(ctx context.Context, h *database.DB) ([]string, error) {
	q := "SELECT name FROM sqlite_master WHERE type = 'table'"
	if h.Postgres() {
		q = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
	}
	return tableNames(ctx, h.Reader, q)
}

// queryer is what tableNames reads the catalog through: a pool or a
// transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// tableNames lists the tables catalog query q names that Reset does not
// keep.
func tableNames(ctx context.Context, qr queryer, q string) ([]string, error) {
	rows, err := qr.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sandbox: list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("sandbox: list tables: %w", err)
		}
		if !kept(name) {
			out = append(out, name)
		}
	}
	return out, rows.Err()
}

// quoteIdent quotes a table name read from the catalog.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// wipe empties tables in one transaction.
func wipe(ctx context.Context, h *database.DB, tables []string) error {
	if len(tables) == 0 {
		return nil
	}
	tx, err := h.Writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sandbox: reset: %w", err)
	}
	defer tx.Rollback()
	if h.Postgres() {
		q := make([]string, len(tables))
		for i, t := range tables {
			q[i] = quoteIdent(t)
		}
		if _, err := tx.ExecContext(ctx, "TRUNCATE "+strings.Join(q, ", ")); err != nil {
			return fmt.Errorf("sandbox: reset: %w", err)
		}
	} else {
		if _, err := tx.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON"); err != nil {
			return fmt.Errorf("sandbox: reset: %w", err)
		}
		if err := deleteAll(ctx, tx, "", tables); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sandbox: reset: %w", err)
	}
	return nil
}

// wipeScratch empties the tables of the SQLite file's scratch database
// (database.SQLiteScratch): the FHIR store's paging snapshots, whose rids
// the emptied resources table gives out again, so that a page link from
// before the reset would show the new data. The pools have the scratch
// file attached read-only: this goes through a side connection.
func wipeScratch(ctx context.Context, h *database.DB) error {
	db := h.OpenSQLiteConn()
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sandbox: reset: %w", err)
	}
	defer tx.Rollback()
	tables, err := tableNames(ctx, tx, "SELECT name FROM "+database.SQLiteScratch+".sqlite_master WHERE type = 'table'")
	if err != nil {
		return err
	}
	if err := deleteAll(ctx, tx, database.SQLiteScratch+".", tables); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sandbox: reset: %w", err)
	}
	return nil
}

// deleteAll deletes every row of tables (of the SQLite schema named by
// prefix, "" or "name.") in tx.
func deleteAll(ctx context.Context, tx *sql.Tx, prefix string, tables []string) error {
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+prefix+quoteIdent(t)); err != nil {
			return fmt.Errorf("sandbox: reset %s%s: %w", prefix, t, err)
		}
	}
	return nil
}
