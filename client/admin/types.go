package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"time"
)

// OAuthClient is a registered OAuth client (never its secret).
type OAuthClient struct {
	// ID is the client_id.
	ID string `json:"client_id"`
	// Name is the display name.
	Name string `json:"name"`
	// Type is "public", "confidential" or "backend".
	Type string `json:"type"`
	// RedirectURIs are the exact redirect URIs.
	RedirectURIs []string `json:"redirect_uris"`
	// LaunchURI is the app's EHR launch URL.
	LaunchURI string `json:"launch_uri,omitempty"`
	// Scopes are the scopes the client may be granted.
	Scopes []string `json:"scopes"`
	// JWKS is a backend client's registered JSON Web Key Set (a JSON
	// document in a string).
	JWKS string `json:"jwks,omitempty"`
	// JWKSURI is a backend client's registered JWKS URL.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// CreatedAt is the registration time.
	CreatedAt time.Time `json:"created_at"`
	// Owner is who manages the client ("admin", a developer account's
	// id); empty when it has none.
	Owner string `json:"owner,omitempty"`
	// RateLimit is the client's own limit on the FHIR API.
	RateLimit
	// PrevSecretUntil is the end of a secret rotation's overlap, while
	// the previous secret still authenticates (zero: none).
	PrevSecretUntil time.Time `json:"prev_secret_until,omitzero"`
	// SuspendedAt is when an operator suspended the client (zero: not
	// suspended); SuspendReason is why.
	SuspendedAt   time.Time `json:"suspended_at,omitzero"`
	SuspendReason string    `json:"suspend_reason,omitempty"`
}

// RotateSecretRequest rotates a confidential client's secret.
type RotateSecretRequest struct {
	// Overlap is how long the previous secret keeps authenticating (0
	// ends it at once; nil: DefaultOverlap).
	Overlap *Duration `json:"overlap,omitempty"`
}

// DefaultOverlap is how long a rotated client secret stays valid when the
// request names no overlap.
const DefaultOverlap = 24 * time.Hour

// NewSecret is the answer of a secret rotation. ClientSecret is shown
// only here.
type NewSecret struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// OldValidUntil is the end of the previous secret's overlap.
	OldValidUntil time.Time `json:"old_valid_until"`
}

// SuspendRequest suspends a client or an API key.
type SuspendRequest struct {
	// Reason says why (required, at most 500 characters).
	Reason string `json:"reason"`
}

// ClientRequest registers a client: the fields of "lapis client create".
type ClientRequest struct {
	// Name is the display name (required).
	Name string `json:"name"`
	// Type is "public", "confidential" or "backend".
	Type string `json:"type"`
	// RedirectURIs are exact redirect URIs.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// LaunchURI is the app's EHR launch URL.
	LaunchURI string `json:"launch_uri,omitempty"`
	// Scopes are the allowed scopes (each entry may hold several,
	// space-separated).
	Scopes []string `json:"scopes"`
	// JWKS is a backend client's JSON Web Key Set, as a JSON object.
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// JWKSURI is a backend client's JWKS URL.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// AllowIPs restricts where the client's tokens may be used from
	// (CIDRs or addresses; empty: anywhere).
	AllowIPs []string `json:"allow_ips,omitempty"`
	// CORSOrigins are the browser origins allowed to call the FHIR API
	// with the client's tokens.
	CORSOrigins []string `json:"cors_origins,omitempty"`
	// RateLimit is the client's own limit on the FHIR API (empty: the
	// server's default).
	RateLimit
	// Owner is who manages the client (optional).
	Owner string `json:"owner,omitempty"`
}

// Registered is the answer of a client registration. ClientSecret is
// shown only here, once, and only for confidential clients.
type Registered struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// ClientFilter selects clients; an empty field matches every value.
type ClientFilter struct {
	// Owner is the clients' owner.
	Owner string
}

// Network is a client's network rules.
type Network struct {
	// AllowIPs are the CIDRs its tokens may be used from (empty: any).
	AllowIPs []string `json:"allow_ips"`
	// ClientID is the client.
	ClientID string `json:"client_id"`
	// CORSOrigins are the browser origins allowed to call the FHIR API
	// with its tokens.
	CORSOrigins []string `json:"cors_origins"`
}

// NetworkRequest replaces a client's network rules; empty lists remove
// them.
type NetworkRequest struct {
	// AllowIPs are CIDRs or addresses (empty: anywhere).
	AllowIPs []string `json:"allow_ips"`
	// CORSOrigins are browser origins, https://host[:port].
	CORSOrigins []string `json:"cors_origins"`
}

// User is a login (never its password).
type User struct {
	// Username is the login name (lower case).
	Username string `json:"username"`
	// Subject is the user's stable id (the tokens' sub).
	Subject string `json:"subject"`
	// FHIRUser is "Patient/ID" or "Practitioner/ID".
	FHIRUser string `json:"fhir_user"`
	// CreatedAt is the creation time.
	CreatedAt time.Time `json:"created_at"`
}

// UserRequest creates a login.
type UserRequest struct {
	// Username is the login name (case-insensitive).
	Username string `json:"username"`
	// Password is the initial password (8-256 characters; stored as an
	// argon2id hash, never logged).
	Password string `json:"password"`
	// FHIRUser is "Patient/ID" or "Practitioner/ID"; it must exist in the
	// FHIR store unless Force is set.
	FHIRUser string `json:"fhir_user"`
	// Force creates the login even if FHIRUser does not exist (yet).
	Force bool `json:"force,omitempty"`
}

// Grant is the live access one user gave one app: every unrevoked,
// unexpired token family of the pair, merged.
type Grant struct {
	// ClientID and ClientName identify the app (ClientName is empty when
	// the client has since been deleted).
	ClientID   string `json:"client_id"`
	ClientName string `json:"client_name"`
	// Subject and Username identify the user (Username is empty when the
	// account has since been deleted).
	Subject  string `json:"subject"`
	Username string `json:"username"`
	// Scopes are the scopes the current refresh tokens may grant.
	Scopes []string `json:"scopes"`
	// Families is the number of token families (authorizations) merged.
	Families int `json:"families"`
	// CreatedAt is the first authorization, LastUsedAt the latest token
	// issue, ExpiresAt the end of the longest lived family.
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// GrantFilter selects grants; an empty field matches every value.
type GrantFilter struct {
	// ClientID is the app.
	ClientID string
	// Username is the user.
	Username string
}

// RevokeRequest revokes an app's grants.
type RevokeRequest struct {
	// ClientID is the app whose grants are revoked (required).
	ClientID string `json:"client_id"`
	// Username limits the revocation to one user; empty revokes the
	// app's grants of every user.
	Username string `json:"username,omitempty"`
}

// Revoked is the answer of a grant revocation.
type Revoked struct {
	// Revoked is the number of token families revoked.
	Revoked int `json:"revoked"`
}

// APIKey is a stored API key (never the key or its hash).
type APIKey struct {
	// ID is the key's public id (ak_…).
	ID string `json:"id"`
	// Name labels the key.
	Name string `json:"name"`
	// Prefix is the key's first, non-secret characters.
	Prefix string `json:"prefix"`
	// Scopes are the granted SMART scopes (system/… or patient/…).
	Scopes []string `json:"scopes"`
	// Patient is the patient id patient/ scopes are bound to.
	Patient string `json:"patient,omitempty"`
	// AllowIPs are the CIDRs the caller's address must be in (empty: any).
	AllowIPs []string `json:"allow_ips,omitempty"`
	// CreatedAt is the creation time.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the end of validity (zero: never).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt is when the key was revoked (zero: not revoked).
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// LastUsedAt is the last use, recorded at most about once a minute.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// ReplacedBy is the id of the key this one was rotated to.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// Owner is who manages the key; empty when it has none.
	Owner string `json:"owner,omitempty"`
	// RateLimit is the key's own limit on the FHIR API.
	RateLimit
	// Status is active, rotated (replaced, within its grace period),
	// suspended, expired or revoked, when the answer was made.
	Status string `json:"status,omitempty"`
	// LastUsedAddr is the caller's address at the last recorded use.
	LastUsedAddr string `json:"last_used_addr,omitempty"`
	// SuspendedAt is when an operator suspended the key (zero: not
	// suspended); SuspendReason is why.
	SuspendedAt   time.Time `json:"suspended_at,omitzero"`
	SuspendReason string    `json:"suspend_reason,omitempty"`
}

// API key statuses.
const (
	StatusActive  = "active"
	StatusRotated = "rotated"
	StatusExpired = "expired"
	StatusRevoked = "revoked"
)

// APIKeyRequest creates an API key: the flags of "lapis apikey create".
type APIKeyRequest struct {
	// Name labels the key (required).
	Name string `json:"name"`
	// Scopes are SMART scopes, system/… or patient/… (each entry may hold
	// several, space-separated).
	Scopes []string `json:"scopes"`
	// Patient is the patient id patient/ scopes are bound to.
	Patient string `json:"patient,omitempty"`
	// ExpiresIn is the key's lifetime; ExpiresAt an end of validity. At
	// most one; neither: no expiry.
	ExpiresIn *Duration  `json:"expires_in,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// AllowIPs are CIDR prefixes or addresses (IPv4 or IPv6; entries may
	// hold several, comma- or space-separated).
	AllowIPs []string `json:"allow_ips,omitempty"`
	// Owner is who manages the key (optional).
	Owner string `json:"owner,omitempty"`
	// Force creates the key even if Patient does not exist (yet) in the
	// FHIR store.
	Force bool `json:"force,omitempty"`
	// RateLimit is the key's own limit on the FHIR API (empty: the
	// server's default).
	RateLimit
}

// APIKeyFilter selects API keys; an empty field matches every value.
type APIKeyFilter struct {
	// Owner is the keys' owner.
	Owner string
}

// RotateRequest rotates an API key.
type RotateRequest struct {
	// Grace is how long the old key stays valid (0 ends it at once; nil:
	// DefaultGrace).
	Grace *Duration `json:"grace,omitempty"`
}

// DefaultGrace is how long a rotated key stays valid when the request
// names no grace.
const DefaultGrace = 24 * time.Hour

// NewAPIKey is the answer of create and rotate. Key is shown only here.
type NewAPIKey struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Patient   string    `json:"patient,omitempty"`
	AllowIPs  []string  `json:"allow_ips,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Rotate only: the replaced key and the end of its grace period.
	Replaces      string    `json:"replaces,omitempty"`
	OldValidUntil time.Time `json:"old_valid_until,omitzero"`
	// Owner is who manages the key; empty when it has none.
	Owner string `json:"owner,omitempty"`
	// RateLimit is the key's own limit on the FHIR API.
	RateLimit
}

// RateLimit is a client's or API key's own limit on the FHIR API,
// replacing the server's default for its class (--rate-limit-client, or
// --rate-limit-system for a credential with only system/ scopes). The
// per-patient limit still applies. In a client or an API key, Limit is
// empty (absent) when it has none; the answer of a change says "default".
type RateLimit struct {
	// Limit is N/PERIOD in cost units (PERIOD s, m, h or whole seconds
	// such as 10s: "500/s", "6000/m"), "none" (or "0": no per-client
	// limit) or "default" (or empty: the server's default).
	Limit string `json:"rate_limit,omitempty"`
	// Burst is the burst in cost units (0: N); only with N/PERIOD.
	Burst int `json:"rate_limit_burst,omitempty"`
}

// Rate-limit spellings.
const (
	// RateLimitDefault: no limit of its own, the server's default applies.
	RateLimitDefault = "default"
	// RateLimitNone: no per-client limit.
	RateLimitNone = "none"
)

// Duration is a duration in a request body: a JSON integer of seconds
// (3600) or a Go duration string ("720h", "90m"); it is sent as a string.
type Duration time.Duration

// MaxDuration keeps now+d representable (about 100 years).
const MaxDuration = 100 * 365 * 24 * time.Hour

// ErrDuration is the error of a Duration that is neither whole seconds
// nor a duration string, or longer than MaxDuration.
var ErrDuration = errors.New(`a duration is whole seconds (3600) or a duration such as "720h", at most 100 years`)

// MarshalJSON sends d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts whole seconds or a duration string, at most
// MaxDuration.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v time.Duration
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p, err := time.ParseDuration(s)
		if err != nil {
			return ErrDuration
		}
		v = p
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return err
		}
		i, err := n.Int64()
		if err != nil {
			return ErrDuration
		}
		if i > math.MaxInt64/int64(time.Second) || i < math.MinInt64/int64(time.Second) {
			return ErrDuration
		}
		v = time.Duration(i) * time.Second
	}
	if v > MaxDuration {
		return ErrDuration
	}
	*d = Duration(v)
	return nil
}
