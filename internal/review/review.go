// Package review keeps the production access requests of the developer
// portal: an organisation asks for one of its apps (an admin
// ClientRequest, usually proven in the sandbox) to be registered in
// production; an operator approves it — which, and only which, creates
// the production client — or declines it with a reason. Each request has a
// due date (the review SLA). Every submission and decision is recorded as
// one audit event.
//
// The requests live in the production environment's database, in their
// own table with their own goose migrations per dialect and their own
// version table (lapis_review_goose_version).
//
// Approval is safe against concurrent approvers: a conditional UPDATE
// claims the pending request (status approving) before the client is
// created, so two operators clicking at once create one client; the loser
// gets ErrDecided. A claim left behind by a crash is taken over after
// claimTimeout.
package review

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the review schema.
const VersionTable = "lapis_review_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating.
const migrationLockID = 0x6c617069735f7276 // "lapis_rv"

// Statuses of a request.
const (
	Pending  = "pending"
	Approved = "approved"
	Declined = "declined"
	// approving is an approval in progress (the claim); shown as pending.
	approving = "approving"
)

// DefaultSLA is how long after submission a request is due when Config
// names no SLA: five days (calendar days; business days are not
// counted).
const DefaultSLA = 5 * 24 * time.Hour

// claimTimeout is how long an approval claim holds before another
// approver may take it over (the first one crashed mid-way).
const claimTimeout = 10 * time.Minute

// maxReason bounds a decline reason (characters).
const maxReason = 2000

var (
	// ErrNotFound: no request has that id.
	ErrNotFound = errors.New("review: request not found")
	// ErrDecided: the request was already approved or declined (or is
	// being approved by someone else).
	ErrDecided = errors.New("review: request already decided")
)

// InvalidError is input the store refuses; Field names the field at
// fault.
type InvalidError struct{ Field, Reason string }

// Error implements error.
func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + " " + e.Reason
}

// Request is one production access request.
type Request struct {
	ID string `json:"id"`
	// OrgID is the developer organisation asking.
	OrgID string `json:"org_id"`
	// RequestedBy is the developer who submitted it.
	RequestedBy string `json:"requested_by"`
	// App is the client to create in production on approval.
	App api.ClientRequest `json:"app"`
	// SandboxClientID is the sandbox app this one was proven as, if any.
	SandboxClientID string `json:"sandbox_client_id,omitempty"`
	// Status is pending, approved or declined.
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	// DueAt is when a decision is due (CreatedAt + the SLA).
	DueAt time.Time `json:"due_at"`
	// DecidedBy and DecidedAt: the operator who decided, and when.
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// Reason is the decline reason.
	Reason string `json:"reason,omitempty"`
	// ProductionClientID is the client approval created.
	ProductionClientID string `json:"production_client_id,omitempty"`
}

// Overdue reports whether a pending request is past its due date at now.
func (r *Request) Overdue(now time.Time) bool { return r.Status == Pending && now.After(r.DueAt) }

// Auditor durably records an event (*audit.Recorder, admin.Auditor).
type Auditor interface {
	Commit(ctx context.Context, e audit.Event) error
}

// Config configures a Store.
type Config struct {
	// Audit records one event per submission and decision; nil records
	// none (tests).
	Audit Auditor
	// SLA is how long after submission a request is due (default
	// DefaultSLA).
	SLA time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// OnDecision, when set, is told of each decision after it is stored
	// and audited (the portal sends app.approved/app.declined webhooks
	// from it). Its error is logged, never returned.
	OnDecision func(ctx context.Context, r *Request) error
}

// Store keeps the requests.
type Store struct {
	w, r     *sql.DB
	postgres bool
	cfg      Config
}

// New builds the store on the process's database handle h and applies
// its migrations.
func New(ctx context.Context, h *database.DB, cfg Config) (*Store, error) {
	s := &Store{w: h.Writer, r: h.Reader, postgres: h.Postgres(), cfg: cfg}
	if s.cfg.SLA <= 0 {
		s.cfg.SLA = DefaultSLA
	}
	if s.cfg.Now == nil {
		s.cfg.Now = time.Now
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.Default()
	}
	if err := migrate.Up(ctx, s.w, migrations, s.postgres, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("review: migrate: %w", err)
	}
	return s, nil
}

// Migrated returns nil when every migration is applied (readiness).
func (s *Store) Migrated(ctx context.Context) error {
	return migrate.Applied(ctx, s.r, migrations, s.postgres, VersionTable)
}

func (s *Store) rebind(q string) string { return database.Rebind(s.postgres, q) }

const cols = "id, org_id, requested_by, app, sandbox_client_id, status, created_at, due_at, decided_by, decided_at, reason, production_client_id"

type scanner interface{ Scan(...any) error }

func scan(sc scanner) (*Request, error) {
	var r Request
	var app string
	var created, due int64
	var decided sql.NullInt64
	if err := sc.Scan(&r.ID, &r.OrgID, &r.RequestedBy, &app, &r.SandboxClientID, &r.Status, &created, &due, &r.DecidedBy, &decided, &r.Reason, &r.ProductionClientID); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(app), &r.App); err != nil {
		return nil, fmt.Errorf("review: corrupt app of request %q", r.ID)
	}
	r.CreatedAt, r.DueAt = time.Unix(created, 0).UTC(), time.Unix(due, 0).UTC()
	if decided.Valid {
		r.DecidedAt = time.Unix(decided.Int64, 0).UTC()
	}
	if r.Status == approving {
		r.Status, r.DecidedBy, r.DecidedAt = Pending, "", time.Time{}
	}
	return &r, nil
}

func newID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "par_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// Submit stores a new pending request (ID, Status, CreatedAt and DueAt
// are set here) and returns it.
func (s *Store) Submit(ctx context.Context, r Request) (*Request, error) {
	switch {
	case strings.TrimSpace(r.OrgID) == "":
		return nil, &InvalidError{"org_id", "is required"}
	case strings.TrimSpace(r.RequestedBy) == "":
		return nil, &InvalidError{"requested_by", "is required"}
	case strings.TrimSpace(r.App.Name) == "":
		return nil, &InvalidError{"app.name", "is required"}
	case r.App.Type == "":
		return nil, &InvalidError{"app.type", "is required"}
	}
	app, err := json.Marshal(r.App)
	if err != nil {
		return nil, &InvalidError{"app", "is not valid: " + err.Error()}
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	r.ID, r.Status, r.CreatedAt, r.DueAt = id, Pending, now, now.Add(s.cfg.SLA)
	r.DecidedBy, r.DecidedAt, r.Reason, r.ProductionClientID = "", time.Time{}, "", ""
	if _, err := s.w.ExecContext(ctx, s.rebind("INSERT INTO review_request ("+cols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', NULL, '', '')"),
		r.ID, r.OrgID, r.RequestedBy, string(app), r.SandboxClientID, Pending, r.CreatedAt.Unix(), r.DueAt.Unix()); err != nil {
		return nil, fmt.Errorf("review: submit: %w", err)
	}
	if err := s.audit(ctx, "submit", &r, r.RequestedBy); err != nil {
		return nil, err
	}
	return &r, nil
}

// Get returns the request id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Request, error) {
	r, err := scan(s.r.QueryRowContext(ctx, s.rebind("SELECT "+cols+" FROM review_request WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("review: get: %w", err)
	}
	return r, nil
}

// Filter selects requests; empty fields match every value.
type Filter struct {
	OrgID  string
	Status string // pending, approved or declined
}

// List returns the requests matching f: pending ones by due date
// (oldest due first), the others newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Request, error) {
	q, args := "SELECT "+cols+" FROM review_request WHERE 1 = 1", []any{}
	if f.OrgID != "" {
		q, args = q+" AND org_id = ?", append(args, f.OrgID)
	}
	switch f.Status {
	case "":
	case Pending:
		q, args = q+" AND status IN (?, ?)", append(args, Pending, approving)
	case Approved, Declined:
		q, args = q+" AND status = ?", append(args, f.Status)
	default:
		return nil, &InvalidError{"status", "must be pending, approved or declined"}
	}
	if f.Status == Pending {
		q += " ORDER BY due_at, id"
	} else {
		q += " ORDER BY created_at DESC, id"
	}
	out, err := database.AppendRows(ctx, []Request{}, s.r, func(rows *sql.Rows) (Request, error) {
		r, err := scan(rows)
		if err != nil {
			return Request{}, err
		}
		return *r, nil
	}, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("review: list: %w", err)
	}
	return out, nil
}

// Pending returns the review queue: every pending request, oldest due
// first.
func (s *Store) Pending(ctx context.Context) ([]Request, error) {
	return s.List(ctx, Filter{Status: Pending})
}

// CreateFunc creates the production client of an approved request and
// returns its id and secret (empty for clients without one):
// (*admin.Service).CreateClient on the production environment.
type CreateFunc func(ctx context.Context, app api.ClientRequest) (clientID, secret string, err error)

// Approve approves the pending request id as operator by: it claims the
// request, calls create once, and records the production client. It
// returns the approved request and the client's secret (if any; it is
// not stored here, so the caller hands it on once). A request already
// decided, or being approved by another call, is ErrDecided; if create
// fails the request stays pending and the error is returned.
func (s *Store) Approve(ctx context.Context, id, by string, create CreateFunc) (*Request, string, error) {
	if strings.TrimSpace(by) == "" {
		return nil, "", &InvalidError{"decided_by", "is required"}
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE review_request SET status = ?, decided_by = ?, decided_at = ? "+
		"WHERE id = ? AND (status = ? OR (status = ? AND decided_at < ?))"),
		approving, by, now.Unix(), id, Pending, approving, now.Add(-claimTimeout).Unix())
	if err != nil {
		return nil, "", fmt.Errorf("review: approve: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, "", fmt.Errorf("review: approve: %w", err)
	} else if n == 0 {
		if _, err := s.Get(ctx, id); err != nil {
			return nil, "", err
		}
		return nil, "", ErrDecided
	}
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, "", err
	}
	clientID, secret, err := create(ctx, r.App)
	if err != nil {
		// Release the claim: the request is pending again.
		_, _ = s.w.ExecContext(context.WithoutCancel(ctx), s.rebind("UPDATE review_request SET status = ?, decided_by = '', decided_at = NULL WHERE id = ? AND status = ?"),
			Pending, id, approving)
		return nil, "", err
	}
	if _, err := s.w.ExecContext(ctx, s.rebind("UPDATE review_request SET status = ?, production_client_id = ?, decided_at = ? WHERE id = ? AND status = ?"),
		Approved, clientID, now.Unix(), id, approving); err != nil {
		return nil, "", fmt.Errorf("review: approve: the production client %s was created but the request could not be marked approved: %w", clientID, err)
	}
	r.Status, r.DecidedBy, r.DecidedAt, r.ProductionClientID = Approved, by, now, clientID
	if err := s.audit(ctx, "approve", r, by); err != nil {
		return nil, "", err
	}
	s.decided(ctx, r)
	return r, secret, nil
}

// Decline declines the pending request id as operator by, with reason
// (required: the developer is told it). A request already decided (or
// being approved) is ErrDecided.
func (s *Store) Decline(ctx context.Context, id, by, reason string) (*Request, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case strings.TrimSpace(by) == "":
		return nil, &InvalidError{"decided_by", "is required"}
	case reason == "":
		return nil, &InvalidError{"reason", "is required: tell the developer why the request is declined"}
	case !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > maxReason:
		return nil, &InvalidError{"reason", "must be valid text of at most 2000 characters"}
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE review_request SET status = ?, decided_by = ?, decided_at = ?, reason = ? WHERE id = ? AND status = ?"),
		Declined, by, now.Unix(), reason, id, Pending)
	if err != nil {
		return nil, fmt.Errorf("review: decline: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("review: decline: %w", err)
	} else if n == 0 {
		if _, err := s.Get(ctx, id); err != nil {
			return nil, err
		}
		return nil, ErrDecided
	}
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.audit(ctx, "decline", r, by); err != nil {
		return nil, err
	}
	s.decided(ctx, r)
	return r, nil
}

// audit records one event: who (by) did action to request r. The
// description holds identifiers only, never the reason or app text.
func (s *Store) audit(ctx context.Context, action string, r *Request, by string) error {
	attrs := []any{"action", action, "request_id", r.ID, "org_id", r.OrgID}
	if r.ProductionClientID != "" {
		attrs = append(attrs, "client_id", r.ProductionClientID)
	}
	s.cfg.Logger.Info("review", attrs...)
	if s.cfg.Audit == nil {
		return nil
	}
	desc := "review " + action + " " + r.ID + " org:" + r.OrgID
	if r.ProductionClientID != "" {
		desc += " " + r.ProductionClientID
	}
	e := audit.Event{Time: s.cfg.Now(), Kind: audit.KindAdmin, Action: "E", Outcome: audit.OutcomeSuccess, Description: desc,
		ClientID: "lapis-portal", Subject: by, Method: "portal"}
	if err := s.cfg.Audit.Commit(ctx, e); err != nil {
		return fmt.Errorf("review: %s %s was done, but its audit record failed: %w", action, r.ID, err)
	}
	return nil
}

func (s *Store) decided(ctx context.Context, r *Request) {
	if s.cfg.OnDecision == nil {
		return
	}
	if err := s.cfg.OnDecision(ctx, r); err != nil {
		s.cfg.Logger.Warn("review: decision hook failed", "request_id", r.ID, "error", err.Error())
	}
}
