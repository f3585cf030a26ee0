package bulk

import (
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the export schema.
const VersionTable = "lapis_export_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating
// (distinct from authdb's and audit's).
const migrationLockID = 0x6c617069735f6175 + 2

// Job states. A cancelled job has no row.
const (
	stateQueued  = "queued"
	stateRunning = "running"
	stateDone    = "done"
	stateFailed  = "failed"
)

// errLost is returned by the lease-holder's updates when the job is no
// longer theirs: cancelled, or taken over after their lease expired.
var errLost = errors.New("bulk: job lease lost")

// job is one row of export_job.
type job struct {
	ID              string
	Owner           string
	Principal       []byte // JSON of the principal.Principal that started it
	Request         []byte // JSON of the plan
	RequestURL      string
	State           string
	Attempt         int64
	LeaseUntil      time.Time
	Progress        string
	TransactionTime time.Time
	Expires         time.Time
	Manifest        []byte // JSON of the outcome (files, errors) when done or failed
}

// jobs is the durable job table: in the FHIR store's database (SQLite
// file or PostgreSQL), with its own migrations. Workers claim a job with
// a lease they renew while they run it; an expired lease lets any worker
// of any instance take the job over (its attempt number grows, so the
// previous holder's late updates miss).
type jobs struct {
	w, r     *sql.DB
	postgres bool
}

// openJobs migrates the job table on the process's database handle (which
// its owner closes).
func openJobs(ctx context.Context, h *database.DB) (*jobs, error) {
	j := &jobs{w: h.Writer, r: h.Reader, postgres: h.Postgres()}
	if err := migrate.Up(ctx, j.w, migrations, j.postgres, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("export: migrate: %w", err)
	}
	return j, nil
}

func (j *jobs) q(s string) string { return database.Rebind(j.postgres, s) }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// insert queues a new job, unless its owner already has max unfinished
// jobs (max > 0), in which case it returns false.
func (j *jobs) insert(ctx context.Context, jb *job, now time.Time, max int) (bool, error) {
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if max > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, j.q("SELECT count(*) FROM export_job WHERE owner = ? AND status IN ('queued', 'running')"), jb.Owner).Scan(&n); err != nil {
			return false, err
		}
		if n >= max {
			return false, nil
		}
	}
	_, err = tx.ExecContext(ctx, j.q(`INSERT INTO export_job (id, owner, principal, request, request_url, status, transaction_time, created_at)
		VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)`), jb.ID, jb.Owner, string(jb.Principal), string(jb.Request), jb.RequestURL, ms(jb.TransactionTime), ms(now))
	if err != nil {
		return false, err
	}
	return true, tx.Commit()
}

const jobColumns = "id, owner, principal, request, request_url, status, attempt, lease_until, progress, transaction_time, expires_at, manifest"

func scanJob(row interface{ Scan(...any) error }) (*job, error) {
	var jb job
	var principal, request, manifest string
	var lease, tt, exp int64
	if err := row.Scan(&jb.ID, &jb.Owner, &principal, &request, &jb.RequestURL, &jb.State, &jb.Attempt, &lease, &jb.Progress, &tt, &exp, &manifest); err != nil {
		return nil, err
	}
	jb.Principal, jb.Request, jb.Manifest = []byte(principal), []byte(request), []byte(manifest)
	jb.LeaseUntil, jb.TransactionTime, jb.Expires = fromMS(lease), fromMS(tt), fromMS(exp)
	return &jb, nil
}

// get returns the job id, or nil when there is none.
func (j *jobs) get(ctx context.Context, id string) (*job, error) {
	if _, err := hex.DecodeString(id); err != nil {
		// Not an id of ours (newID is hex), and text PostgreSQL may
		// refuse in a statement (NUL, invalid UTF-8): no job.
		return nil, nil
	}
	jb, err := scanJob(j.r.QueryRowContext(ctx, j.q("SELECT "+jobColumns+" FROM export_job WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return jb, err
}

// claim takes the oldest queued job, or a running one whose lease expired,
// for worker until now+lease; nil when there is none.
func (j *jobs) claim(ctx context.Context, worker string, now time.Time, lease time.Duration) (*job, error) {
	lock := ""
	if j.postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	jb, err := scanJob(j.w.QueryRowContext(ctx, j.q(`UPDATE export_job SET status = 'running', attempt = attempt + 1, lease_owner = ?, lease_until = ?
		WHERE id = (SELECT id FROM export_job WHERE status = 'queued' OR (status = 'running' AND lease_until < ?) ORDER BY created_at, id LIMIT 1`+lock+`)
		RETURNING `+jobColumns), worker, ms(now.Add(lease)), ms(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return jb, err
}

// exec runs an update of the lease holder's job and returns errLost when
// it matched no row.
func (j *jobs) exec(ctx context.Context, query string, args ...any) error {
	res, err := j.w.ExecContext(ctx, j.q(query), args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return errLost
	}
	return nil
}

// heartbeat renews the lease of attempt and records progress.
func (j *jobs) heartbeat(ctx context.Context, id string, attempt int64, until time.Time, progress string) error {
	return j.exec(ctx, "UPDATE export_job SET lease_until = ?, progress = ? WHERE id = ? AND attempt = ? AND status = 'running'", ms(until), progress, id, attempt)
}

// finish records the end of attempt: state done or failed, its manifest,
// and when its files expire.
func (j *jobs) finish(ctx context.Context, id string, attempt int64, state string, manifest []byte, expires time.Time) error {
	return j.exec(ctx, "UPDATE export_job SET status = ?, manifest = ?, expires_at = ?, lease_until = 0, progress = '' WHERE id = ? AND attempt = ? AND status = 'running'",
		state, string(manifest), ms(expires), id, attempt)
}

// remove deletes the job (cancellation, expiry); false when it was gone.
func (j *jobs) remove(ctx context.Context, id string) (bool, error) {
	err := j.exec(ctx, "DELETE FROM export_job WHERE id = ?", id)
	if errors.Is(err, errLost) {
		return false, nil
	}
	if err == nil {
		// A running attempt drops its own rows as it stops; these are
		// those of an attempt that crashed.
		_, err = j.w.ExecContext(ctx, j.q("DELETE FROM export_seen WHERE job = ?"), id)
	}
	return err == nil, err
}

// expired lists finished jobs whose files expired by now.
func (j *jobs) expired(ctx context.Context, now time.Time) ([]string, error) {
	return database.AppendRows(ctx, nil, j.r, func(rows *sql.Rows) (id string, err error) {
		err = rows.Scan(&id)
		return id, err
	}, j.q("SELECT id FROM export_job WHERE status IN ('done', 'failed') AND expires_at < ?"), ms(now))
}
