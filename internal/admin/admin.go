// Package admin is the one implementation of Lapis's admin actions:
// registering and deleting OAuth clients, their network rules and HTTP
// Basic setting, logins, users' grants to apps and API keys. The local
// admin commands (lapis client|user|grants|apikey) and the HTTP admin API
// (package adminapi, which the same commands use in remote mode through
// package client/admin) are front ends of one Service.
//
// Each action validates its input once, here, writes through the
// authorization database (package authdb), logs one line and records
// exactly one audit event, of the same shape whichever front end called
// it; only the Actor (who acted, from where) differs. An action is
// reported successful only once its event is durable. Clients and API keys
// may carry an owner ("admin", or a developer account's id), and listings
// filter on it.
//
// The request and answer types are those of package client/admin (the
// admin API's JSON shapes), so the service, the HTTP API and the remote
// client share one representation.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"regexp"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// Store is the authorization database as the admin actions use it
// (*authdb.DB).
type Store interface {
	CreateClient(ctx context.Context, c *authdb.Client) error
	Client(ctx context.Context, id string) (*authdb.Client, error)
	ClientsBy(ctx context.Context, f authdb.ClientFilter) ([]authdb.Client, error)
	DeleteClient(ctx context.Context, id string) error
	ClientNetRulesFor(ctx context.Context, clientID string) (authdb.ClientNetRules, error)
	SetClientNetRules(ctx context.Context, r authdb.ClientNetRules) error
	SetClientRateLimit(ctx context.Context, id string, r authdb.RateLimit) error
	EnableBasic(ctx context.Context, clientID string, now time.Time) error
	DisableBasic(ctx context.Context, clientID string) error

	CreateAccount(ctx context.Context, a *authdb.Account) error
	Accounts(ctx context.Context) ([]authdb.Account, error)
	AccountByUsername(ctx context.Context, username string) (*authdb.Account, error)
	DeleteAccount(ctx context.Context, username string) error
	Grants(ctx context.Context, f authdb.GrantFilter, now time.Time) ([]authdb.GrantSummary, error)
	RevokeGrants(ctx context.Context, f authdb.GrantFilter, now time.Time) (int, error)

	CreateAPIKey(ctx context.Context, k *authdb.APIKey) error
	APIKey(ctx context.Context, id string) (*authdb.APIKey, error)
	APIKeysBy(ctx context.Context, f authdb.APIKeyFilter) ([]authdb.APIKey, error)
	RevokeAPIKey(ctx context.Context, id string, now time.Time) error
	RotateAPIKey(ctx context.Context, oldID string, next *authdb.APIKey, oldUntil, now time.Time) error
	SetAPIKeyRateLimit(ctx context.Context, id string, r authdb.RateLimit) error

	RotateClientSecret(ctx context.Context, id string, newHash []byte, prevUntil, now time.Time) error
	SuspendClient(ctx context.Context, id, reason string, now time.Time) (bool, error)
	ResumeClient(ctx context.Context, id string, now time.Time) (bool, error)
	SuspendAPIKey(ctx context.Context, id, reason string, now time.Time) (bool, error)
	ResumeAPIKey(ctx context.Context, id string, now time.Time) (bool, error)
}

var _ Store = (*authdb.DB)(nil)

// Auditor durably records the event of each action: the server's
// *audit.Recorder, or the *audit.Direct sink of an admin command.
type Auditor interface {
	Commit(ctx context.Context, e audit.Event) error
}

// Config configures a Service.
type Config struct {
	// Store is the authorization database (required).
	Store Store
	// Audit records one event per action; nil records none (a server
	// running with --no-audit, tests).
	Audit Auditor
	// Logger receives one line per action (identifiers only, never
	// secrets); default slog.Default().
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// Records checks that the FHIR resource a login or a patient-bound
	// API key points at exists (unless the request forces it); nil skips
	// the check.
	Records oauth.RecordChecker
	// OnStatus, when set, is told of each suspension and resumption of a
	// client or API key after its audit event is durable (the portal
	// sends webhooks from it). Its error is logged, never returned.
	OnStatus func(ctx context.Context, c StatusChange) error
}

// StatusChange is a client or API key suspended or resumed.
type StatusChange struct {
	// Kind is "client" or "apikey"; ID its id; Owner its owner.
	Kind, ID, Owner string
	// Status is "suspended" or "resumed".
	Status string
	// Reason is the operator's reason (suspensions).
	Reason string
}

// Service performs the admin actions. Reads need no Actor; every change
// needs one in its context (WithActor) and fails without.
type Service struct {
	st       Store
	audit    Auditor
	log      *slog.Logger
	now      func() time.Time
	recs     oauth.RecordChecker
	onStatus func(ctx context.Context, c StatusChange) error
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{st: cfg.Store, audit: cfg.Audit, log: cfg.Logger, now: cfg.Now, recs: cfg.Records, onStatus: cfg.OnStatus}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Actor is who performs an action and from where, as its audit event
// shows it: the admin API's authenticated client, or the local user of an
// admin command.
type Actor struct {
	// ClientID is the acting OAuth client ("lapis-cli" for commands).
	ClientID string
	// Subject is the acting user, when there is one ("os:NAME" for
	// commands).
	Subject string
	// Method is how the actor authenticated: "access_token", "cli".
	Method string
	// CredentialID identifies the credential (an access token's jti).
	CredentialID string
	// Address is the caller's network address ("local" for commands).
	Address string
	// UserAgent is the caller's User-Agent, when there is one.
	UserAgent string
}

type actorKey struct{}

// WithActor returns ctx carrying the actor of the actions run with it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor put in ctx.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// CommandActor is the actor of the local admin commands: the operating
// system user running them on the server's machine.
func CommandActor() Actor {
	a := Actor{ClientID: "lapis-cli", Method: "cli", Address: "local"}
	if u, err := user.Current(); err == nil {
		a.Subject = "os:" + u.Username
	}
	return a
}

// errNoActor is a programming error: a change without WithActor.
var errNoActor = errors.New("admin: no actor in the context")

// InvalidError is input the service refuses. Field is the request field
// at fault (its JSON name), when one is.
type InvalidError struct {
	Field  string
	Reason string
}

// Error implements error: "FIELD REASON", or REASON.
func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + " " + e.Reason
}

func invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }

// missingRecord turns an oauth.MissingRecordError into a refusal that says
// how to override it (what: "login", "key").
func missingRecord(err error, what string) error {
	var me *oauth.MissingRecordError
	if errors.As(err, &me) {
		return invalid("", me.Reference+" does not exist in the FHIR store (--force, or \"force\": true in the admin API, creates the "+what+" anyway)")
	}
	return err
}

// NotFoundError says that a client, user or API key does not exist; it
// matches api.ErrNotFound.
type NotFoundError struct {
	// What is "client", "user" or "api key".
	What string
}

// Error implements error.
func (e *NotFoundError) Error() string { return e.What + " not found" }

// notFound is err, or a NotFoundError for what when err is
// authdb.ErrNotFound.
func notFound(err error, what string) error {
	if errors.Is(err, authdb.ErrNotFound) {
		return &NotFoundError{What: what}
	}
	return err
}

// Is matches api.ErrNotFound.
func (e *NotFoundError) Is(target error) bool { return target == api.ErrNotFound }

// ConflictError refuses a change that conflicts with the current state;
// it matches api.ErrConflict.
type ConflictError struct {
	Reason string
}

// Error implements error.
func (e *ConflictError) Error() string { return e.Reason }

// Is matches api.ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == api.ErrConflict }

// AuditError reports a change that was made but whose audit event could
// not be recorded: the caller must not report success (undo the change
// and retry).
type AuditError struct {
	// Action is the action ("create_apikey"); Target the ids it changed.
	Action, Target string
	// Err is the recorder's error.
	Err error
}

// Error implements error.
func (e *AuditError) Error() string {
	return fmt.Sprintf("%s %s was done, but its audit record failed (undo it and retry): %v", e.Action, e.Target, e.Err)
}

// Unwrap returns the recorder's error.
func (e *AuditError) Unwrap() error { return e.Err }

// ownerRE is what an owner may be: an account name or id.
var ownerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$`)

// checkOwner accepts an empty owner (none) or a well-formed one.
func checkOwner(owner string) error {
	if owner != "" && !ownerRE.MatchString(owner) {
		return invalid("owner", "must be 1-128 characters: letters, digits, '.', '_', ':', '@', '+' or '-'")
	}
	return nil
}
