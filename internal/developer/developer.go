// Package developer is the domain and storage of the developer portal's
// accounts: developers who sign up with an email address and a password,
// verify the address, may add a TOTP second factor, belong to
// organisations (owner or developer) and accept the current terms of use
// before any credential is issued to them. Developer accounts are not FHIR
// users: they have no relation to the authorization server's accounts and
// no access to FHIR data.
//
// Everything lives in the production environment's database, in dev_*
// tables with their own goose migrations and version table
// (lapis_developer_goose_version). One-time tokens (verification, reset,
// invitation, the second-factor step) and developer API tokens are stored
// only as their SHA-256; passwords as argon2id (oauth.HashPassword);
// recovery codes as SHA-256 of 80 random bits.
package developer

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"runtime"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
	"github.com/lapis-health/lapis/internal/oauth"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the developer schema.
const VersionTable = "lapis_developer_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating.
const migrationLockID = 0x6c617069735f6476 // "lapis_dv"

// Roles of an organisation's members.
const (
	// RoleOwner manages the organisation's members and everything else.
	RoleOwner = "owner"
	// RoleDeveloper manages the organisation's apps and keys.
	RoleDeveloper = "developer"
)

// Domain errors. Validation failures are *InvalidError.
var (
	// ErrNotFound: no such developer, organisation, member or token.
	ErrNotFound = errors.New("not found")
	// ErrExists: the email address is taken, or the person is a member.
	ErrExists = errors.New("already exists")
	// ErrBadLogin: wrong email, password or code, or locked out (one
	// message for all, so a caller learns nothing about which).
	ErrBadLogin = errors.New("invalid email, password or code")
	// ErrNotVerified: the password is right but the address is unverified.
	ErrNotVerified = errors.New("the email address is not verified yet")
	// ErrInvalidToken: a one-time token is unknown, expired or used.
	ErrInvalidToken = errors.New("the link or token is invalid, expired or already used")
	// ErrForbidden: the developer may not do this (not a member, not an
	// owner, not an operator).
	ErrForbidden = errors.New("not allowed")
	// ErrLastOwner: the organisation would be left without an owner.
	ErrLastOwner = errors.New("an organisation needs at least one owner")
	// ErrTermsOutdated: the accepted version is not the current one.
	ErrTermsOutdated = errors.New("these are not the current terms of use")
	// ErrBusy: too many password hashes are being computed at once.
	ErrBusy = errors.New("too many sign-ins in progress")
)

// InvalidError is input that breaks a rule; its text says which.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, a ...any) error { return &InvalidError{Msg: fmt.Sprintf(format, a...)} }

// Developer is a developer account.
type Developer struct {
	// ID is the stable, opaque account id.
	ID string `json:"id"`
	// Email is the login address (lower case).
	Email string `json:"email"`
	// Name is the display name.
	Name string `json:"name"`
	// Verified is set once the address is verified.
	Verified bool `json:"verified"`
	// Operator marks a portal administrator.
	Operator bool `json:"operator"`
	// TOTP is set when a second factor is enrolled.
	TOTP bool `json:"totp"`
	// CreatedAt is the sign-up time.
	CreatedAt time.Time `json:"created_at"`

	passwordHash string
	totpSecret   string // sealed
	totpPending  string // sealed
	totpStep     int64
}

// Org is an organisation of developers; it owns apps and keys (owner
// string "org:<ID>" on authdb clients and API keys).
type Org struct {
	// ID is the organisation id.
	ID string `json:"id"`
	// Name is its display name.
	Name string `json:"name"`
	// CreatedAt is its creation time.
	CreatedAt time.Time `json:"created_at"`
}

// Owner is the owner string of the organisation's apps and keys.
func (o *Org) Owner() string { return "org:" + o.ID }

// Member is a developer's membership of an organisation.
type Member struct {
	// DeveloperID is the member.
	DeveloperID string `json:"developer_id"`
	// OrgID is the organisation.
	OrgID string `json:"org_id"`
	// Role is RoleOwner or RoleDeveloper.
	Role string `json:"role"`
	// Email and Name describe the member (in listings).
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

// Membership is an organisation with the developer's role in it.
type Membership struct {
	Org
	// Role is the developer's role.
	Role string `json:"role"`
}

// Invitation is a pending invitation to an organisation.
type Invitation struct {
	// Email is the invited address.
	Email string `json:"email"`
	// Role is the role the invitee gets.
	Role string `json:"role"`
	// Expires is the end of the invitation.
	Expires time.Time `json:"expires_at"`
}

// Terms is one version of the terms of use.
type Terms struct {
	// Version counts from 1.
	Version int `json:"version"`
	// Text is the terms' text.
	Text string `json:"text"`
	// CreatedAt is when an operator set it.
	CreatedAt time.Time `json:"created_at"`
}

// APIToken is a developer API token (its value is shown once).
type APIToken struct {
	// ID identifies the token (for revocation).
	ID string `json:"id"`
	// Name is the developer's label.
	Name string `json:"name"`
	// CreatedAt and LastUsedAt are its creation and last use.
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// Token lifetimes.
const (
	VerifyTTL = 48 * time.Hour
	ResetTTL  = time.Hour
	InviteTTL = 7 * 24 * time.Hour
	MFATTL    = 5 * time.Minute
)

// Options configure a Service.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Login is the lockout policy (zero fields: oauth.DefaultLoginPolicy).
	Login oauth.LoginPolicy
	// KEK, when set, seals TOTP secrets at rest (the server's
	// key-encryption key, keys.LoadKEK; the sealed data is bound to its
	// purpose, so it is never confused with a sealed signing key).
	KEK cipher.AEAD
	// Issuer is the TOTP issuer shown in authenticator apps ("Lapis").
	Issuer string
}

// Service is the developer-account domain on one database.
type Service struct {
	w, r     *sql.DB
	postgres bool
	now      func() time.Time
	login    oauth.LoginPolicy
	kek      cipher.AEAD
	issuer   string
	hashing  chan struct{} // bounds concurrent password hashes
	dummy    string        // a hash verified when the account is unknown
}

// New builds the service on the process's database handle h and applies
// its migrations.
func New(ctx context.Context, h *database.DB, o Options) (*Service, error) {
	s := &Service{w: h.Writer, r: h.Reader, postgres: h.Postgres(), now: o.Now, login: o.Login, issuer: o.Issuer}
	if s.now == nil {
		s.now = time.Now
	}
	if s.login.MaxFailures <= 0 {
		s.login.MaxFailures = oauth.DefaultLoginPolicy.MaxFailures
	}
	if s.login.MaxFailuresPerIP <= 0 {
		s.login.MaxFailuresPerIP = oauth.DefaultLoginPolicy.MaxFailuresPerIP
	}
	if s.login.Window <= 0 {
		s.login.Window = oauth.DefaultLoginPolicy.Window
	}
	if s.issuer == "" {
		s.issuer = "Lapis"
	}
	s.kek = o.KEK
	s.hashing = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	if err := migrate.Up(ctx, s.w, migrations, s.postgres, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("developer: migrate: %w", err)
	}
	s.dummy = oauth.DummyHash()
	return s, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

func (s *Service) rebind(q string) string { return database.Rebind(s.postgres, q) }

// changed is the outcome of a statement that must change a row: its
// error, else none when it changed no row.
func changed(res sql.Result, err, none error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return none
	}
	return nil
}

// hashToken is the stored form of a token (hex SHA-256).
func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// NormalizeEmail trims and lower-cases an address.
func NormalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// ValidateEmail checks that e is one plain address (no display name) of
// at most 254 characters.
func ValidateEmail(e string) error {
	e = NormalizeEmail(e)
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || len(e) > 254 || !strings.Contains(e[strings.LastIndexByte(e, '@'):], ".") {
		return invalid("%q is not a valid email address", e)
	}
	return nil
}

func validatePassword(p string) error {
	if n := len([]rune(p)); n < oauth.MinPasswordLen || n > oauth.MaxPasswordLen {
		return invalid("the password must be %d to %d characters", oauth.MinPasswordLen, oauth.MaxPasswordLen)
	}
	return nil
}

func validateName(n, what string) (string, error) {
	n = strings.TrimSpace(n)
	if len([]rune(n)) > 100 {
		return "", invalid("the %s must be at most 100 characters", what)
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f {
			return "", invalid("the %s must not contain control characters", what)
		}
	}
	return n, nil
}

// hash computes an argon2id hash under the concurrency bound.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashing }()
	return oauth.HashPassword(password)
}

// verify checks a password under the concurrency bound.
func (s *Service) verify(ctx context.Context, hash, password string) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashing }()
	return oauth.VerifyPassword(hash, password), nil
}

func (s *Service) acquire(ctx context.Context) error {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case s.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrBusy
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
