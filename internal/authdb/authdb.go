// Package authdb stores the data of the authorization server — registered
// clients, signing keys, used client-assertion ids and revoked tokens — in
// the same database as the FHIR store: the SQLite file <data-dir>/lapis.db
// by default, or PostgreSQL for a postgres:// URL.
//
// The schema has its own embedded goose migrations per dialect, tracked in
// their own version table (lapis_auth_goose_version), so they never collide
// with the FHIR store's migrations. One SQL implementation serves both
// dialects; only the placeholders differ. Nothing is cached here: every call
// reads the database, so admin commands run by another process (lapis
// client delete, lapis keys rotate) take effect at once.
package authdb

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the authorization schema.
const VersionTable = "lapis_auth_goose_version"

// migrationLockID is the PostgreSQL advisory lock taken while migrating
// (distinct from the FHIR store's).
const migrationLockID = 0x6c617069735f6175 // "lapis_au"

// ErrNotFound is returned when a client does not exist.
var ErrNotFound = errors.New("authdb: not found")

// ErrExists is returned when creating a client whose id is taken.
var ErrExists = errors.New("authdb: already exists")

// Client types.
const (
	// Public clients cannot keep a secret (browser and native apps).
	Public = "public"
	// Confidential clients authenticate with a server-generated secret.
	Confidential = "confidential"
	// Backend clients authenticate with a JWT signed by a registered key
	// (SMART Backend Services, private_key_jwt).
	Backend = "backend"
)

// Client is a registered OAuth client.
type Client struct {
	// ID is the client_id.
	ID string `json:"client_id"`
	// Name is a human-readable label.
	Name string `json:"name"`
	// Type is Public, Confidential or Backend.
	Type string `json:"type"`
	// SecretHash is the SHA-256 of a confidential client's secret.
	SecretHash []byte `json:"-"`
	// RedirectURIs are compared exactly.
	RedirectURIs []string `json:"redirect_uris"`
	// LaunchURI is the app's EHR launch URL.
	LaunchURI string `json:"launch_uri,omitempty"`
	// Scopes are the scopes the client may be granted.
	Scopes []string `json:"scopes"`
	// JWKS is a registered JSON Web Key Set (backend clients).
	JWKS string `json:"jwks,omitempty"`
	// JWKSURI is a registered JWKS URL (backend clients).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// CreatedAt is the registration time.
	CreatedAt time.Time `json:"created_at"`
	// Owner is who manages the client ("admin", a developer account's
	// id); empty when it has none.
	Owner string `json:"owner,omitempty"`
	// RateLimit is the client's own limit on the FHIR API (see
	// RateLimit); the zero value is the server's default.
	RateLimit RateLimit `json:"rate_limit,omitzero"`
	// PrevSecretHash is the SHA-256 of a confidential client's previous
	// secret after a rotation; it authenticates until PrevSecretUntil.
	PrevSecretHash []byte `json:"-"`
	// PrevSecretUntil is the end of the rotation's overlap (zero: none).
	PrevSecretUntil time.Time `json:"prev_secret_until,omitzero"`
	// SuspendedAt is when an operator suspended the client (zero: not
	// suspended); a suspended client gets no tokens and its tokens are
	// refused.
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	// SuspendReason is the operator's reason for the suspension.
	SuspendReason string `json:"suspend_reason,omitempty"`
}

// Suspended reports whether the client is suspended.
func (c *Client) Suspended() bool { return !c.SuspendedAt.IsZero() }

// EHRLaunchable reports whether an EHR launch of the client can complete:
// it has a launch URI to send the launch to, a redirect URI for the
// authorization that follows, and is not suspended (whose /authorize
// would refuse it).
func (c *Client) EHRLaunchable() bool {
	return c.LaunchURI != "" && len(c.RedirectURIs) > 0 && !c.Suspended()
}

// SecretMatches reports, in constant time with respect to the secrets,
// whether secret is the confidential client's current secret, or its
// previous one while the rotation's overlap lasts at now. It always
// compares against two hashes, so the work does not tell which matched.
func (c *Client) SecretMatches(secret string, now time.Time) bool {
	got := HashSecret(secret)
	cur, prev := dummySecret, dummySecret
	if len(c.SecretHash) == sha256.Size {
		cur = c.SecretHash
	}
	prevOK := len(c.PrevSecretHash) == sha256.Size && now.Before(c.PrevSecretUntil)
	if prevOK {
		prev = c.PrevSecretHash
	}
	a := subtle.ConstantTimeCompare(got, cur) & boolInt(len(c.SecretHash) == sha256.Size)
	b := subtle.ConstantTimeCompare(got, prev) & boolInt(prevOK)
	return c.Type == Confidential && a|b == 1
}

// dummySecret keeps the work of a comparison with no stored hash equal.
var dummySecret = HashSecret("lapis-no-secret")

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// HashSecret returns the stored form of a client secret (SecretHash):
// its SHA-256. A server-generated 256-bit secret needs no slow hash.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ClientFilter selects clients; an empty field matches every value.
type ClientFilter struct {
	// Owner is the clients' owner.
	Owner string
}

// SigningKey is one of the server's signing keys; the private half is
// stored encrypted by the caller.
type SigningKey struct {
	// KID is the key id (the RFC 7638 thumbprint).
	KID string
	// Alg is the JWS algorithm, e.g. ES256 or RS256.
	Alg string
	// PublicJWK is the public key as a JWK.
	PublicJWK string
	// PrivateEnc is the encrypted private key.
	PrivateEnc []byte
	// CreatedAt is when the key was generated.
	CreatedAt time.Time
	// RetiredAt is when the key stopped signing (zero while active).
	RetiredAt time.Time
	// PublishUntil is when a retired key leaves the JWKS.
	PublishUntil time.Time
}

// DB is the authorization data store.
type DB struct {
	w, r     *sql.DB // writer and readers (the same pool on PostgreSQL)
	postgres bool
	q        queries
	// Hot-path statements (stmt.go).
	getClient, getRevoked, activeKID, insertJTI, tokenRevoked *stmt
	// lastPrune is the UnixNano of the last purge of expired rows.
	lastPrune atomic.Int64
	// rev is the revocation-log watcher (revlog.go), made on first use.
	rev revHolder
	// Owned is the handle Open opened (none: New's caller owns it).
	database.Owned
}

// Open opens the database named by databaseURL (database.Open:
// postgres://, sqlite:PATH, or "" for <dataDir>/lapis.db) and the
// authorization store on it; Close closes that handle too. For tools and
// tests that use the authorization store alone; a process that uses more
// of the database opens one handle and calls New.
func Open(ctx context.Context, databaseURL, dataDir string) (*DB, error) {
	return database.Build(ctx, database.Options{URL: databaseURL, DataDir: dataDir}, New)
}

// New builds the authorization store on the process's database handle h
// and applies its migrations. Close leaves h open.
func New(ctx context.Context, h *database.DB) (*DB, error) {
	d := &DB{w: h.Writer, r: h.Reader, postgres: h.Postgres()}
	if err := d.migrate(ctx); err != nil {
		return nil, fmt.Errorf("authdb: migrate: %w", err)
	}
	d.q = newQueries(d.postgres)
	for _, p := range []struct {
		db   *sql.DB
		sql  string
		stmt **stmt
	}{{d.r, d.q.getClient, &d.getClient}, {d.r, d.q.getRevoked, &d.getRevoked}, {d.r, d.q.activeKID, &d.activeKID}, {d.w, d.q.insertJTI, &d.insertJTI}, {d.r, d.q.tokenRevoked, &d.tokenRevoked}} {
		st, err := prepareStmt(ctx, p.db, p.sql, !d.postgres)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("authdb: prepare: %w", err)
		}
		*p.stmt = st
	}
	return d, nil
}

func (d *DB) migrate(ctx context.Context) error {
	return migrate.Up(ctx, d.w, migrations, d.postgres, VersionTable, migrationLockID)
}

// Close stops the revocation watcher and closes the prepared statements
// (and the database handle when Open opened it).
func (d *DB) Close() error {
	d.rev.close()
	var errs []error
	for _, st := range []*stmt{d.getClient, d.getRevoked, d.activeKID, d.insertJTI, d.tokenRevoked} {
		errs = append(errs, st.Close())
	}
	errs = append(errs, d.CloseOwnedDB())
	return errors.Join(errs...)
}

// Postgres reports whether the store is on PostgreSQL.
func (d *DB) Postgres() bool { return d.postgres }

// rebind turns ? placeholders into $n for PostgreSQL.
func (d *DB) rebind(s string) string { return database.Rebind(d.postgres, s) }

// exists reports whether row, of a "SELECT 1 …" query, found a row.
func exists(row *sql.Row) (bool, error) {
	var one int
	err := row.Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// queries holds every statement, with placeholders for the dialect.
type queries struct {
	insertClient, getClient, listClients, deleteClient    string
	listKeys, insertKey, retireKeys, pruneKeys, activeKID string
	insertJTI, pruneJTI                                   string
	insertRevoked, getRevoked, pruneRevoked               string
	tokenRevoked                                          string
}

// clientCols are the columns of oauth_client, in scanClient's order.
const clientCols = clientInsertCols + ", prev_secret_hash, prev_secret_until, suspended_at, suspend_reason"

// clientInsertCols are the columns CreateClient writes.
const clientInsertCols = "client_id, name, type, secret_hash, redirect_uris, launch_uri, scopes, jwks, jwks_uri, created_at, owner, rate_limit, rate_limit_burst"

func newQueries(pg bool) queries {
	b := func(s string) string { return database.Rebind(pg, s) }
	return queries{
		insertClient:  b("INSERT INTO oauth_client (" + clientInsertCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
		getClient:     b("SELECT " + clientCols + " FROM oauth_client WHERE client_id = ?"),
		listClients:   "SELECT " + clientCols + " FROM oauth_client ORDER BY created_at, client_id",
		deleteClient:  b("DELETE FROM oauth_client WHERE client_id = ?"),
		listKeys:      b("SELECT kid, alg, public_jwk, private_enc, created_at, retired_at, publish_until FROM oauth_signing_key WHERE publish_until IS NULL OR publish_until > ? ORDER BY created_at DESC, kid DESC"),
		insertKey:     b("INSERT INTO oauth_signing_key (kid, alg, public_jwk, private_enc, created_at) VALUES (?, ?, ?, ?, ?)"),
		retireKeys:    b("UPDATE oauth_signing_key SET retired_at = ?, publish_until = ? WHERE retired_at IS NULL"),
		pruneKeys:     b("DELETE FROM oauth_signing_key WHERE publish_until IS NOT NULL AND publish_until <= ?"),
		activeKID:     b("SELECT kid FROM oauth_signing_key WHERE alg = ? AND retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1"),
		insertJTI:     b("INSERT INTO oauth_assertion_jti (client_id, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
		pruneJTI:      b("DELETE FROM oauth_assertion_jti WHERE expires_at < ?"),
		insertRevoked: b("INSERT INTO oauth_revoked_token (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING"),
		getRevoked:    b("SELECT 1 FROM oauth_revoked_token WHERE jti = ?"),
		pruneRevoked:  b("DELETE FROM oauth_revoked_token WHERE expires_at < ?"),
		tokenRevoked: b("SELECT 1 FROM oauth_revoked_token WHERE jti = ? UNION ALL " +
			"SELECT 1 FROM oauth_client WHERE client_id = ? AND suspended_at IS NOT NULL"),
	}
}

// CreateClient registers c. It returns ErrExists if c.ID is taken.
func (d *DB) CreateClient(ctx context.Context, c *Client) error {
	redirects, err := json.Marshal(nonNil(c.RedirectURIs))
	if err != nil {
		return err
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	res, err := d.w.ExecContext(ctx, d.q.insertClient, c.ID, c.Name, c.Type, hexOrEmpty(c.SecretHash), string(redirects),
		c.LaunchURI, strings.Join(c.Scopes, " "), c.JWKS, c.JWKSURI, c.CreatedAt.Unix(), c.Owner, c.RateLimit.Limit, c.RateLimit.Burst)
	if err != nil {
		return fmt.Errorf("authdb: create client: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrExists
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

// rowsOf adapts scan, which reads one row (of a query or of QueryRow),
// to database.AppendRows.
func rowsOf[T any](scan func(scanner) (*T, error)) func(*sql.Rows) (T, error) {
	return func(rows *sql.Rows) (T, error) {
		v, err := scan(rows)
		if err != nil {
			var zero T
			return zero, err
		}
		return *v, nil
	}
}

func scanClient(s scanner) (*Client, error) {
	var c Client
	var secret, prevSecret, redirects, scopes string
	var created int64
	var prevUntil, suspended sql.NullInt64
	if err := s.Scan(&c.ID, &c.Name, &c.Type, &secret, &redirects, &c.LaunchURI, &scopes, &c.JWKS, &c.JWKSURI, &created, &c.Owner, &c.RateLimit.Limit, &c.RateLimit.Burst,
		&prevSecret, &prevUntil, &suspended, &c.SuspendReason); err != nil {
		return nil, err
	}
	for _, h := range []struct {
		hex string
		dst *[]byte
	}{{secret, &c.SecretHash}, {prevSecret, &c.PrevSecretHash}} {
		if h.hex == "" {
			continue
		}
		b, err := hex.DecodeString(h.hex)
		if err != nil {
			return nil, fmt.Errorf("authdb: corrupt secret hash for client %q", c.ID)
		}
		*h.dst = b
	}
	c.PrevSecretUntil, c.SuspendedAt = fromNull(prevUntil), fromNull(suspended)
	if err := json.Unmarshal([]byte(redirects), &c.RedirectURIs); err != nil {
		return nil, fmt.Errorf("authdb: corrupt redirect URIs for client %q", c.ID)
	}
	c.Scopes = strings.Fields(scopes)
	c.CreatedAt = time.Unix(created, 0).UTC()
	return &c, nil
}

// found is the answer of a read of one row: sql.ErrNoRows is ErrNotFound,
// another error says what was read.
func found[T any](v *T, err error, what string) (*T, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authdb: read %s: %w", what, err)
	}
	return v, nil
}

// Storable reports whether s can be stored as text in both dialects:
// valid UTF-8 without NUL (PostgreSQL refuses anything else in a
// statement). A key from a request that is not storable names nothing, so
// its lookup finds nothing instead of failing.
func Storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Client returns the client with id, or ErrNotFound.
func (d *DB) Client(ctx context.Context, id string) (*Client, error) {
	if !Storable(id) {
		return nil, ErrNotFound
	}
	c, err := scanClient(d.getClient.QueryRowContext(ctx, id))
	return found(c, err, "client")
}

// Clients lists every client, oldest first.
func (d *DB) Clients(ctx context.Context) ([]Client, error) {
	return d.ClientsBy(ctx, ClientFilter{})
}

// ClientsBy lists the clients matching f, oldest first.
func (d *DB) ClientsBy(ctx context.Context, f ClientFilter) ([]Client, error) {
	q, args := d.q.listClients, []any(nil)
	if f.Owner != "" {
		q, args = d.rebind("SELECT "+clientCols+" FROM oauth_client WHERE owner = ? ORDER BY created_at, client_id"), []any{f.Owner}
	}
	out, err := database.AppendRows(ctx, nil, d.r, rowsOf(scanClient), q, args...)
	if err != nil {
		return nil, fmt.Errorf("authdb: list clients: %w", err)
	}
	return out, nil
}

// DeleteClient removes a client, or returns ErrNotFound. The deletion is
// appended to the revocation log in the same transaction.
func (d *DB) DeleteClient(ctx context.Context, id string) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: delete client: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.q.deleteClient, id)
	if err != nil {
		return fmt.Errorf("authdb: delete client: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return d.commitRevocation(ctx, tx, RevClient, id, time.Now(), "delete client")
}

// SigningKeys returns the keys that are active or still published, newest
// first.
func (d *DB) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	out, err := database.AppendRows(ctx, nil, d.r, func(rows *sql.Rows) (k SigningKey, err error) {
		var priv string
		var created int64
		var retired, until sql.NullInt64
		if err := rows.Scan(&k.KID, &k.Alg, &k.PublicJWK, &priv, &created, &retired, &until); err != nil {
			return k, err
		}
		k.PrivateEnc = []byte(priv)
		k.CreatedAt = time.Unix(created, 0)
		if retired.Valid {
			k.RetiredAt = time.Unix(retired.Int64, 0)
		}
		if until.Valid {
			k.PublishUntil = time.Unix(until.Int64, 0)
		}
		return k, nil
	}, d.q.listKeys, time.Now().Unix())
	if err != nil {
		return nil, fmt.Errorf("authdb: list keys: %w", err)
	}
	return out, nil
}

// ActiveKID returns the id of the newest active key for alg, or
// ErrNotFound.
func (d *DB) ActiveKID(ctx context.Context, alg string) (string, error) {
	var kid string
	err := d.activeKID.QueryRowContext(ctx, alg).Scan(&kid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("authdb: active key: %w", err)
	}
	return kid, nil
}

// AddSigningKeys stores new active keys. If retire is true, the keys that
// were active are first retired and stay published until publishUntil, and
// keys whose publication ended are deleted; all in one transaction.
func (d *DB) AddSigningKeys(ctx context.Context, keys []SigningKey, retire bool, publishUntil time.Time) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: add keys: %w", err)
	}
	defer tx.Rollback()
	now := time.Now()
	if retire {
		if _, err := tx.ExecContext(ctx, d.q.retireKeys, now.Unix(), publishUntil.Unix()); err != nil {
			return fmt.Errorf("authdb: retire keys: %w", err)
		}
		if _, err := tx.ExecContext(ctx, d.q.pruneKeys, now.Unix()); err != nil {
			return fmt.Errorf("authdb: prune keys: %w", err)
		}
	}
	for _, k := range keys {
		created := k.CreatedAt
		if created.IsZero() {
			created = now
		}
		if _, err := tx.ExecContext(ctx, d.q.insertKey, k.KID, k.Alg, k.PublicJWK, string(k.PrivateEnc), created.Unix()); err != nil {
			return fmt.Errorf("authdb: insert key: %w", err)
		}
	}
	return tx.Commit()
}

// UseAssertionID records a client assertion's jti until expires. It
// reports false if the same client already used that jti (a replay).
func (d *DB) UseAssertionID(ctx context.Context, clientID, jti string, expires time.Time) (bool, error) {
	d.prune(ctx)
	res, err := d.insertJTI.ExecContext(ctx, clientID, jti, expires.Unix())
	if err != nil {
		return false, fmt.Errorf("authdb: record jti: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("authdb: record jti: %w", err)
	}
	return n == 1, nil
}

// RevokeToken marks the token with id jti revoked; the mark is kept until
// the token expires. The revocation is appended to the revocation log in
// the same transaction.
func (d *DB) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	d.prune(ctx)
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("authdb: revoke: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, d.q.insertRevoked, jti, expires.Unix()); err != nil {
		return fmt.Errorf("authdb: revoke: %w", err)
	}
	return d.commitRevocation(ctx, tx, RevToken, jti, time.Now(), "revoke")
}

// Revoked reports whether the token with id jti was revoked.
func (d *DB) Revoked(ctx context.Context, jti string) (bool, error) {
	if !Storable(jti) {
		return true, nil // no token of this server has it: refused
	}
	revoked, err := exists(d.getRevoked.QueryRowContext(ctx, jti))
	if err != nil {
		return false, fmt.Errorf("authdb: revoked: %w", err)
	}
	return revoked, nil
}

// pruneEvery is how often expired jti and revocation rows are deleted.
const pruneEvery = time.Minute

// prune deletes expired rows at most once per pruneEvery (best effort).
func (d *DB) prune(ctx context.Context) {
	now := time.Now()
	last := d.lastPrune.Load()
	if now.UnixNano()-last < int64(pruneEvery) || !d.lastPrune.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	// A minute of slack past expiry covers clock skew between instances.
	cut := now.Add(-time.Minute).Unix()
	_, _ = d.w.ExecContext(ctx, d.q.pruneJTI, cut)
	_, _ = d.w.ExecContext(ctx, d.q.pruneRevoked, cut)
	d.pruneRevLog(ctx, now)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return hex.EncodeToString(b)
}

// Ping checks that the database answers (a readiness check).
func (d *DB) Ping(ctx context.Context) error { return database.Ping(ctx, d.w, d.r) }

// Migrated returns nil when every migration of the authorization schema
// is applied (a readiness check).
func (d *DB) Migrated(ctx context.Context) error {
	return migrate.Applied(ctx, d.r, migrations, d.postgres, VersionTable)
}
