// Package activity shows a developer what their app does: per OAuth
// client and per API key, requests over time by status and interaction,
// the recent requests (time, interaction, route shape, status, latency),
// and the errors grouped by the reason they were refused — drawn from the
// audit trail's events, with no PHI (no ids, no query values, no patient).
//
// Recorder wraps the audit Sink: every event of a FHIR request (and every
// refusal by the stages in front of it: authentication, network rules,
// rate limits) is also queued, off the request path, and written in
// batches to the environment's database (own tables and goose version
// table, both dialects). Store answers the queries (Series, Recent,
// Errors, Totals); Chart and StatusChart draw them as accessible SVG.
package activity

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the activity schema.
const VersionTable = "lapis_activity_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating.
const migrationLockID = 0x6c617069735f6163 // "lapis_ac"

// MaxCredentials bounds the credentials one query may name.
const MaxCredentials = 1000

// ErrBadQuery is returned (wrapped) for a query outside the bounds: no
// or too many credentials, a time range or step out of range.
var ErrBadQuery = errors.New("activity: bad query")

// Store is the activity tables of one environment's database.
type Store struct {
	w, r *sql.DB
	pg   bool
	q    queries
}

type queries struct {
	bucketHead, bucketTail, recentHead, upsertError, trimRecent string
	pruneBuckets, pruneErrors, pruneRecent                      string
}

// Open applies the activity migrations to db and returns the Store on it;
// db stays the caller's.
func Open(ctx context.Context, db *database.DB) (*Store, error) {
	s := &Store{w: db.Writer, r: db.Reader, pg: db.Postgres()}
	if err := migrate.Up(ctx, s.w, migrations, s.pg, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("activity: migrate: %w", err)
	}
	greatest := "max"
	if s.pg {
		greatest = "GREATEST"
	}
	b := func(q string) string { return database.Rebind(s.pg, q) }
	s.q = queries{
		// Multi-row statements (insertRows), rebound once complete.
		bucketHead: `INSERT INTO activity_bucket (cred, minute, status, interaction, count, latency_sum_us, latency_max_us) VALUES `,
		bucketTail: ` ON CONFLICT (cred, minute, status, interaction) DO UPDATE SET count = activity_bucket.count + excluded.count,
latency_sum_us = activity_bucket.latency_sum_us + excluded.latency_sum_us, latency_max_us = ` + greatest + `(activity_bucket.latency_max_us, excluded.latency_max_us)`,
		recentHead: `INSERT INTO activity_recent (cred, at, interaction, route, status, latency_us, cause) VALUES `,
		upsertError: b(`INSERT INTO activity_error (cred, hour, cause, count, last_seen, route, status) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cred, hour, cause) DO UPDATE SET count = activity_error.count + excluded.count,
last_seen = ` + greatest + `(activity_error.last_seen, excluded.last_seen), route = excluded.route, status = excluded.status`),
		trimRecent:   b(`DELETE FROM activity_recent WHERE cred = ? AND id <= (SELECT id FROM activity_recent WHERE cred = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`),
		pruneBuckets: b(`DELETE FROM activity_bucket WHERE minute < ?`),
		pruneErrors:  b(`DELETE FROM activity_error WHERE hour < ?`),
		pruneRecent:  b(`DELETE FROM activity_recent WHERE at < ?`),
	}
	return s, nil
}

// bucketKey is one row of activity_bucket.
type bucketKey struct {
	cred        string
	minute      int64
	status      int
	interaction string
}

type bucketVal struct{ count, sumUS, maxUS int64 }

type errKey struct {
	cred  string
	hour  int64
	cause string
}

type errVal struct {
	count    int64
	lastSeen int64 // Unix ms
	route    string
	status   int
}

// batch is what one write applies: aggregated buckets and errors, and the
// recent requests (at most keep per credential).
type batch struct {
	n       int
	buckets map[bucketKey]*bucketVal
	errs    map[errKey]*errVal
	recent  map[string][]Request
}

func newBatch() *batch {
	return &batch{buckets: map[bucketKey]*bucketVal{}, errs: map[errKey]*errVal{}, recent: map[string][]Request{}}
}

// add folds one request (n occurrences) into b, keeping at most keep
// recent requests per credential.
func (b *batch) add(cred string, req Request, n int64, keep int) {
	b.n++
	at := req.Time
	us := req.Latency.Microseconds()
	k := bucketKey{cred: cred, minute: floorDiv(at.Unix(), 60), status: req.Status, interaction: req.Interaction}
	v := b.buckets[k]
	if v == nil {
		v = &bucketVal{}
		b.buckets[k] = v
	}
	v.count += n
	v.sumUS += us * n
	v.maxUS = max(v.maxUS, us)
	if req.Status >= 400 {
		ek := errKey{cred: cred, hour: floorDiv(at.Unix(), 3600), cause: req.Cause}
		ev := b.errs[ek]
		if ev == nil {
			ev = &errVal{}
			b.errs[ek] = ev
		}
		ev.count += n
		if ms := at.UnixMilli(); ms >= ev.lastSeen {
			ev.lastSeen, ev.route, ev.status = ms, req.Route, req.Status
		}
	}
	rs := append(b.recent[cred], req)
	if len(rs) > keep {
		rs = rs[len(rs)-keep:]
	}
	b.recent[cred] = rs
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// rowsPerStatement bounds the rows of one multi-row INSERT (7 values
// each: within every driver's placeholder limit).
const rowsPerStatement = 100

// insertRows runs head followed by one "(?, …)" group of width values
// per row, in statements of at most rowsPerStatement rows, then tail.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head, tail string, width int, rows [][]any) error {
	group := "(?" + strings.Repeat(", ?", width-1) + ")"
	for len(rows) > 0 {
		n := min(len(rows), rowsPerStatement)
		q := head + group + strings.Repeat(", "+group, n-1) + tail
		args := make([]any, 0, n*width)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		if _, err := tx.ExecContext(ctx, database.Rebind(s.pg, q), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// write applies b in one transaction and trims the recent requests of
// the credentials it touched to keep each.
func (s *Store) write(ctx context.Context, b *batch, keep int) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows := make([][]any, 0, len(b.buckets))
	for k, v := range b.buckets {
		rows = append(rows, []any{k.cred, k.minute, k.status, k.interaction, v.count, v.sumUS, v.maxUS})
	}
	if err := s.insertRows(ctx, tx, s.q.bucketHead, s.q.bucketTail, 7, rows); err != nil {
		return err
	}
	for k, v := range b.errs {
		if _, err := tx.ExecContext(ctx, s.q.upsertError, k.cred, k.hour, k.cause, v.count, v.lastSeen, v.route, v.status); err != nil {
			return err
		}
	}
	rows = rows[:0]
	for cred, rs := range b.recent {
		for _, r := range rs {
			rows = append(rows, []any{cred, r.Time.UnixMilli(), r.Interaction, r.Route, r.Status, r.Latency.Microseconds(), r.Cause})
		}
	}
	if err := s.insertRows(ctx, tx, s.q.recentHead, "", 7, rows); err != nil {
		return err
	}
	for cred := range b.recent {
		if _, err := tx.ExecContext(ctx, s.q.trimRecent, cred, cred, keep); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// prune deletes what is older than cutoff.
func (s *Store) prune(ctx context.Context, cutoff time.Time) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, p := range []struct {
		q string
		v int64
	}{{s.q.pruneBuckets, floorDiv(cutoff.Unix(), 60)}, {s.q.pruneErrors, floorDiv(cutoff.Unix(), 3600)}, {s.q.pruneRecent, cutoff.UnixMilli()}} {
		if _, err := tx.ExecContext(ctx, p.q, p.v); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// credIn returns "cred IN (?, …)" for creds and its arguments; the SQL
// has one placeholder per credential, never a credential's text.
func credIn(creds []string) (string, []any, error) {
	if len(creds) == 0 || len(creds) > MaxCredentials {
		return "", nil, fmt.Errorf("%w: between 1 and %d credentials", ErrBadQuery, MaxCredentials)
	}
	args := make([]any, len(creds))
	for i, c := range creds {
		args[i] = c
	}
	return "cred IN (?" + strings.Repeat(", ?", len(creds)-1) + ")", args, nil
}
