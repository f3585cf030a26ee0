package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgresURL reports whether databaseURL names a PostgreSQL database
// (a postgres:// or postgresql:// URL).
func IsPostgresURL(databaseURL string) bool {
	return strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://")
}

// openPostgres opens the pools of the database at databaseURL: the
// requests' (Pool) and background work's (BackgroundPool, see
// Background), together pool_max_conns connections (splitConns). Without
// pool_max_conns, the requests have max(8, 2×GOMAXPROCS) and background
// work 2 more.
//
// Statements are prepared and cached by pgx per connection, under
// PostgreSQL's default plan cache mode (plan_cache_mode auto, unless the
// URL sets it): after five executions a statement keeps its generic plan
// when that plan is no worse, which is right for lookups by key (read by
// id, the authorization server's, the audit chain's), whose planning
// costs several times their execution. Searches, for which the generic
// plan (blind to the values: which patient, which code) is often orders
// of magnitude slower, are not cached as prepared statements: the FHIR
// store runs them as unnamed statements (pgx.QueryExecModeCacheDescribe),
// which PostgreSQL plans with their values at every execution.
//
// JIT compilation is off (jit=off, unless the URL sets jit): PostgreSQL
// compiles a statement whose estimated cost passes jit_above_cost, and
// an estimate past it says little about how long a lookup by key or a
// search through its indexes runs, which is milliseconds; the compiling
// took 0.7 to 1.3 s of CPU for one such statement of the audit trail.
func openPostgres(ctx context.Context, databaseURL, schema string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if schema != "" {
		if !validSchema(schema) {
			return nil, fmt.Errorf("database: invalid schema name %q", schema)
		}
		if err := createSchema(ctx, cfg, schema); err != nil {
			return nil, err
		}
		if cfg.ConnConfig.RuntimeParams == nil {
			cfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	total := cfg.MaxConns
	if !strings.Contains(databaseURL, "pool_max_conns") {
		total = defaultPostgresConns() + maxBackgroundConns
	}
	if total < 2 {
		// Migrating holds an advisory-lock session while it writes.
		return nil, errors.New("database: pool_max_conns must be at least 2")
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "auto"
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	requests, background := splitConns(total)
	cfg.MaxConns = requests
	cfg.MinConns = min(cfg.MinConns, requests)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	d := &DB{Dialect: Postgres, Pool: pool, BackgroundPool: pool}
	if background > 0 {
		bcfg := cfg.Copy()
		bcfg.MaxConns = background
		bcfg.MinConns = min(bcfg.MinConns, background)
		if d.BackgroundPool, err = pgxpool.NewWithConfig(ctx, bcfg); err != nil {
			pool.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
	}
	// The database/sql view keeps no connection between calls (a
	// connection it held idle would be lost to the pool's other users);
	// pgx caches prepared statements per pool connection. Each call takes
	// its connection from the pool of its context (PoolFor).
	db := sql.OpenDB(routedConnector{requests: stdlib.GetPoolConnector(d.Pool), background: stdlib.GetPoolConnector(d.BackgroundPool)})
	db.SetMaxIdleConns(0)
	d.Writer, d.Reader = db, db
	return d, nil
}

// maxBackgroundConns is the most connections background work has.
const maxBackgroundConns = 2

// splitConns divides the total connections of a process (pool_max_conns)
// between requests and background work: 2 to background work from 8
// connections on, 1 from 4, none below 4 (then background work shares the
// requests' pool, as migrating needs 2 connections there).
func splitConns(total int32) (requests, background int32) {
	background = min(maxBackgroundConns, total/4)
	return total - background, background
}

// routedConnector gives a database/sql call a connection of the pool of
// its context: background's for a context of Background, else requests'.
// database/sql passes the call's context to Connect when it has no idle
// connection, which with no idle connections kept is every time.
type routedConnector struct{ requests, background driver.Connector }

// Connect implements driver.Connector.
func (c routedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if isBackground(ctx) {
		return c.background.Connect(ctx)
	}
	return c.requests.Connect(ctx)
}

// Driver implements driver.Connector.
func (c routedConnector) Driver() driver.Driver { return c.requests.Driver() }

// validSchema accepts a plain lower-case identifier (it is spliced into
// CREATE SCHEMA, which takes no placeholder).
func validSchema(s string) bool {
	if s == "" || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// createSchema creates schema in the database of cfg when it is missing.
func createSchema(ctx context.Context, cfg *pgxpool.Config, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+schema+`"`); err != nil {
		return fmt.Errorf("database: create schema %s: %w", schema, err)
	}
	return nil
}
