package audit

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the audit schema, distinct
// from the FHIR store's and the authorization server's.
const VersionTable = "lapis_audit_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating.
const migrationLockID = 0x6c617069735f6175 + 1 // distinct from authdb's

// Row is one link of a hash chain as stored in audit_record.
type Row struct {
	Chain      string
	Seq        int64
	PrevHash   string // hex SHA-256
	Hash       string // hex SHA-256
	ResourceID string // AuditEvent id
	Version    int64
	Recorded   time.Time
	Body       []byte // the AuditEvent JSON exactly as stored in the FHIR store
	// Format is the hash format: 2 (HashV2, with Watermark) for the records
	// the recorder writes; 1 (Hash, or 0 in a Row built by hand) for
	// records written before watermarks.
	Format int
	// Watermark (format 2) is how far this chain's copy into the FHIR store
	// had got when the record was written: every record seq <= Watermark
	// was then stored as an AuditEvent resource.
	Watermark    int64
	Materialized bool // copied into the FHIR store (seq <= the chain's copied_seq)
}

// DB is the chain table: the write-ahead copy of every audit record and
// its link in its instance's hash chain. It lives in the same database as
// the FHIR store (SQLite file or PostgreSQL), with its own migrations.
type DB struct {
	db             *sql.DB // writer (one connection on SQLite)
	r              *sql.DB // readers (the same pool on PostgreSQL)
	postgres       bool
	database.Owned // the handle OpenDB opened (none: NewDB's caller owns it)

	// afterAppend, set by tests only, replaces Append's result (to
	// answer an error for a batch that was committed: a lost reply).
	afterAppend func(error) error

	// appendStmts are the prepared multi-row INSERTs of Append on SQLite,
	// by row count (appendSizes), prepared by NewDB (inside Append's
	// transaction the one SQLite writer connection is taken). PostgreSQL
	// appends with COPY and has none: preparing them there cost every
	// process that opens the chain table (each admin command that records
	// an event) four round trips and the parse of statements never run.
	appendStmts map[int]*sql.Stmt
	closed      bool // Close was called
}

// OpenDB opens the database named by databaseURL (database.Open) and the
// chain table on it; Close closes that handle too. For tools and tests
// that use the chain table alone; a process that uses more of the
// database opens one handle and calls NewDB.
func OpenDB(ctx context.Context, databaseURL, dataDir string) (*DB, error) {
	return database.Build(ctx, database.Options{URL: databaseURL, DataDir: dataDir}, NewDB)
}

// NewDB opens the chain table on the process's database handle h and
// applies its migrations. Close leaves h open.
func NewDB(ctx context.Context, h *database.DB) (*DB, error) {
	if err := migrate.Up(ctx, h.Writer, migrations, h.Postgres(), VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("audit: migrate: %w", err)
	}
	d := &DB{db: h.Writer, r: h.Reader, postgres: h.Postgres(), appendStmts: map[int]*sql.Stmt{}}
	if d.postgres {
		return d, nil
	}
	for _, n := range appendSizes {
		st, err := d.db.PrepareContext(ctx, d.q(appendSQL(n)))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("audit: prepare: %w", err)
		}
		d.appendStmts[n] = st
	}
	return d, nil
}

// Close closes the prepared statements, and the database handle when
// OpenDB opened it.
func (d *DB) Close() error {
	d.closed = true
	var errs []error
	for n, st := range d.appendStmts {
		errs = append(errs, st.Close())
		delete(d.appendStmts, n)
	}
	return errors.Join(append(errs, d.CloseOwnedDB())...)
}

// SQL returns the underlying pool (tests use it to tamper with records).
func (d *DB) SQL() *sql.DB { return d.db }

// Postgres reports whether the chain table is on PostgreSQL.
func (d *DB) Postgres() bool { return d.postgres }

// q rewrites ? placeholders to $n on PostgreSQL.
func (d *DB) q(s string) string { return database.Rebind(d.postgres, s) }

// StartChain registers a new chain.
func (d *DB) StartChain(ctx context.Context, chain, host string, at time.Time) error {
	_, err := d.db.ExecContext(ctx, d.q("INSERT INTO audit_chain (chain_id, started_at, host) VALUES (?, ?, ?)"), chain, at.UnixMilli(), host)
	return err
}

// appendSizes are the row counts of Append's prepared INSERTs: a batch
// is split into them (largest first), so the statements are parsed once
// per process rather than once per batch.
var appendSizes = []int{64, 16, 4, 1}

// appendSQL is the INSERT of n chain rows.
func appendSQL(n int) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO audit_record (chain_id, seq, prev_hash, hash, resource_id, version, recorded_at, body, watermark) VALUES ")
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return sb.String()
}

// Append stores rows atomically (a batch of the group commit): on
// PostgreSQL with one COPY, on SQLite in one transaction of prepared
// multi-row INSERTs.
func (d *DB) Append(ctx context.Context, rows []Row) error {
	err := d.appendRows(ctx, rows)
	if d.afterAppend != nil {
		err = d.afterAppend(err)
	}
	return err
}

// appendRows is Append without its test hook.
func (d *DB) appendRows(ctx context.Context, rows []Row) error {
	if d.closed {
		return errors.New("audit: chain table closed")
	}
	if d.postgres {
		return d.appendCopy(ctx, rows)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(rows) > 0 {
		n := 1
		for _, size := range appendSizes {
			if size <= len(rows) {
				n = size
				break
			}
		}
		st := d.appendStmts[n]
		if st == nil {
			return errors.New("audit: chain table closed")
		}
		args := make([]any, 0, n*9)
		for _, r := range rows[:n] {
			var wm any // NULL: format 1
			if r.Format >= 2 {
				wm = r.Watermark
			}
			args = append(args, r.Chain, r.Seq, r.PrevHash, r.Hash, r.ResourceID, r.Version, r.Recorded.UnixMilli(), r.Body, wm)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return tx.Commit()
}

// copyColumns are the columns of audit_record Append fills.
var copyColumns = []string{"chain_id", "seq", "prev_hash", "hash", "resource_id", "version", "recorded_at", "body", "watermark"}

// appendCopy stores rows with one COPY: a single statement, so all or
// none, and for PostgreSQL much less work per row than INSERTs of nine
// parameters each (no parameter list to parse and plan; pgx also
// rebuilds a multi-row INSERT's message in a fresh buffer every time,
// twice the batch's bytes of garbage).
func (d *DB) appendCopy(ctx context.Context, rows []Row) error {
	c, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("audit: COPY needs a pgx connection, not %T", dc)
		}
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := &rows[i]
			var wm any // NULL: format 1
			if r.Format >= 2 {
				wm = r.Watermark
			}
			return []any{r.Chain, r.Seq, r.PrevHash, r.Hash, r.ResourceID, r.Version, r.Recorded.UnixMilli(), r.Body, wm}, nil
		})
		n, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{"audit_record"}, copyColumns, src)
		if err == nil && n != int64(len(rows)) {
			err = fmt.Errorf("audit: COPY stored %d of %d records", n, len(rows))
		}
		return err
	})
}

// SetCopied records that the records of chain up to seq are in the FHIR
// store (it never moves backwards).
func (d *DB) SetCopied(ctx context.Context, chain string, seq int64) error {
	_, err := d.db.ExecContext(ctx, d.q("UPDATE audit_chain SET copied_seq = ? WHERE chain_id = ? AND copied_seq < ?"), seq, chain, seq)
	return err
}

// staleSQL lists the chains with records past their copied_seq whose
// last record (the highest seq: one probe of the primary key from its
// end) was recorded before $1. The recovery asks it every minute beside
// the live copy, whose own chain always has records past copied_seq: the
// newest recorded_at of a chain by MAX over its records read the whole
// chain (every heap page of audit_record, seconds at a few 10,000
// records, and JIT-compiled on PostgreSQL for its cost) beside the
// searches.
const staleSQL = `SELECT c.chain_id, c.copied_seq FROM audit_chain c
		WHERE EXISTS (SELECT 1 FROM audit_record r WHERE r.chain_id = c.chain_id AND r.seq > c.copied_seq)
		AND (SELECT r.recorded_at FROM audit_record r WHERE r.chain_id = c.chain_id ORDER BY r.seq DESC LIMIT 1) < ?`

// Stale lists the chains with records not yet copied into the FHIR store
// whose last record is older than olderThan (their process stopped or
// crashed before its copy caught up), with how far they were copied.
func (d *DB) Stale(ctx context.Context, olderThan time.Time) (map[string]int64, error) {
	rs, err := d.r.QueryContext(ctx, d.q(staleSQL), olderThan.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]int64{}
	for rs.Next() {
		var c string
		var n int64
		if err := rs.Scan(&c, &n); err != nil {
			return nil, err
		}
		out[c] = n
	}
	return out, rs.Err()
}

// Chains lists the chain ids, oldest first.
func (d *DB) Chains(ctx context.Context) ([]string, error) {
	return database.AppendRows(ctx, nil, d.r, database.ScanOne[string], "SELECT chain_id FROM audit_chain UNION SELECT DISTINCT chain_id FROM audit_record ORDER BY 1")
}

// Head is the last record of a chain.
type Head struct {
	Chain string
	Seq   int64
	Hash  string
	// Copied is how far the chain's copy into the FHIR store has got
	// (copied_seq, at most Seq).
	Copied int64
}

// Heads returns the last record (seq and hash) of every chain, with its
// copy watermark.
func (d *DB) Heads(ctx context.Context) ([]Head, error) {
	return database.AppendRows(ctx, nil, d.r, func(rs *sql.Rows) (h Head, err error) {
		err = rs.Scan(&h.Chain, &h.Seq, &h.Hash, &h.Copied)
		h.Copied = min(h.Copied, h.Seq)
		return h, err
	}, `SELECT r.chain_id, r.seq, r.hash, COALESCE(c.copied_seq, 0) FROM audit_record r
		JOIN (SELECT chain_id, MAX(seq) AS seq FROM audit_record GROUP BY chain_id) m ON m.chain_id = r.chain_id AND m.seq = r.seq
		LEFT JOIN audit_chain c ON c.chain_id = r.chain_id ORDER BY r.chain_id`)
}

// Head returns the last record (seq and hash) of one chain; 0 and "" for
// a chain with no record.
func (d *DB) Head(ctx context.Context, chain string) (int64, string, error) {
	var seq int64
	var hash string
	err := d.db.QueryRowContext(ctx, d.q("SELECT seq, hash FROM audit_record WHERE chain_id = ? ORDER BY seq DESC LIMIT 1"), chain).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	return seq, hash, err
}

// CopiedSeq returns the chain's copy bookkeeping (audit_chain.copied_seq;
// 0 for a chain not registered).
func (d *DB) CopiedSeq(ctx context.Context, chain string) (int64, error) {
	var n int64
	err := d.r.QueryRowContext(ctx, d.q("SELECT copied_seq FROM audit_chain WHERE chain_id = ?"), chain).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// Page returns up to limit rows of chain with seq > after, by seq.
func (d *DB) Page(ctx context.Context, chain string, after int64, limit int) ([]Row, error) {
	return d.query(ctx, d.q(`SELECT r.chain_id, r.seq, r.prev_hash, r.hash, r.resource_id, r.version, r.recorded_at, r.body, r.watermark,
		CASE WHEN r.seq <= COALESCE(c.copied_seq, 0) THEN 1 ELSE 0 END
		FROM audit_record r LEFT JOIN audit_chain c ON c.chain_id = r.chain_id
		WHERE r.chain_id = ? AND r.seq > ? ORDER BY r.seq LIMIT ?`), chain, after, limit)
}

func (d *DB) query(ctx context.Context, q string, args ...any) ([]Row, error) {
	return database.AppendRows(ctx, nil, d.r, func(rs *sql.Rows) (r Row, err error) {
		var ms, copied int64
		var wm sql.NullInt64
		if err := rs.Scan(&r.Chain, &r.Seq, &r.PrevHash, &r.Hash, &r.ResourceID, &r.Version, &ms, &r.Body, &wm, &copied); err != nil {
			return r, err
		}
		r.Format = 1
		if wm.Valid {
			r.Format, r.Watermark = 2, wm.Int64
		}
		r.Recorded = time.UnixMilli(ms).UTC()
		r.Materialized = copied == 1
		return r, nil
	}, q, args...)
}

// Ping checks that the database answers (a readiness check).
func (d *DB) Ping(ctx context.Context) error { return database.Ping(ctx, d.db, d.r) }

// Migrated returns nil when every migration of the chain table is
// applied (a readiness check).
func (d *DB) Migrated(ctx context.Context) error {
	return migrate.Applied(ctx, d.r, migrations, d.postgres, VersionTable)
}
