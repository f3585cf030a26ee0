package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Auth authenticates requests. Implementations must be safe for
// concurrent use. The Client calls Apply before every attempt and
// Invalidate after a 401 answer, then retries the request exactly once.
type Auth interface {
	// Apply adds credentials to req (usually its Authorization header).
	Apply(ctx context.Context, req *http.Request) error
	// Invalidate is called with the request that got a 401, so the next
	// Apply fetches fresh credentials (a new token). Static credentials
	// ignore it.
	Invalidate(req *http.Request)
}

// staticAuth sets one header to a fixed value. Its String and GoString
// methods hide the value, so printing an Auth never leaks a secret.
type staticAuth struct {
	kind   string
	header string
	value  string
	empty  bool // the secret was empty: a configuration error
}

// configErr makes New refuse an empty secret (say, an unset environment
// variable) instead of sending unauthenticated requests.
func (a *staticAuth) configErr() error {
	if a.empty {
		return fmt.Errorf("fhir client: %s: the credential is empty (is the environment variable set?)", a.kind)
	}
	return nil
}

func (a *staticAuth) Apply(_ context.Context, req *http.Request) error {
	req.Header.Set(a.header, a.value)
	return nil
}

func (a *staticAuth) Invalidate(*http.Request) {}

func (a *staticAuth) String() string   { return a.kind + "(REDACTED)" }
func (a *staticAuth) GoString() string { return a.String() }

// LogValue implements slog.LogValuer without the secret.
func (a *staticAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// APIKey authenticates with an API key sent as a bearer token
// (Authorization: Bearer <key>), as Lapis and most gateways expect. Read
// the key from the environment or a secrets store, never from source code.
func APIKey(key string) Auth {
	return &staticAuth{kind: "APIKey", header: "Authorization", value: "Bearer " + key, empty: key == ""}
}

// APIKeyHeader authenticates with an API key in a custom header, e.g.
// APIKeyHeader("X-API-Key", key), for servers that want it there.
func APIKeyHeader(header, key string) Auth {
	return &staticAuth{kind: "APIKeyHeader", header: http.CanonicalHeaderKey(header), value: key, empty: key == "" || header == ""}
}

// Basic authenticates with HTTP Basic authentication (RFC 7617). Use it
// only over https.
func Basic(user, password string) Auth {
	v := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	return &staticAuth{kind: "Basic", header: "Authorization", value: v, empty: user == "" || password == ""}
}

// BearerToken authenticates with a fixed access token that the client
// cannot renew; a 401 is retried once (in case of a transient failure)
// and then returned as ErrUnauthorized. For tokens that expire, use an
// *OAuth (ClientCredentials, BackendServices, RefreshToken).
func BearerToken(tok string) Auth {
	return &staticAuth{kind: "BearerToken", header: "Authorization", value: "Bearer " + tok, empty: tok == ""}
}

// TokenSource supplies access tokens. *OAuth implements it.
type TokenSource interface {
	// Token returns a valid token, fetching a new one when needed.
	Token(ctx context.Context) (*Token, error)
}

// Token is an OAuth 2.0 token response (RFC 6749 §5.1) with the SMART
// launch context. Its String, GoString and LogValue methods redact the
// secrets, so printing or logging a Token is safe; its JSON encoding
// (for storing a login) is not redacted.
type Token struct {
	// AccessToken is the bearer token sent with requests.
	AccessToken string `json:"access_token"`
	// TokenType is "Bearer".
	TokenType string `json:"token_type,omitempty"`
	// RefreshToken renews the access token (RefreshToken), if issued.
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is the granted scope, space-separated.
	Scope string `json:"scope,omitempty"`
	// Patient is the SMART patient context, if any.
	Patient string `json:"patient,omitempty"`
	// IDToken is the OpenID Connect ID token, if any.
	IDToken string `json:"id_token,omitempty"`
	// ExpiresAt is when the access token expires; zero if the server did
	// not say (the token is then used until a 401).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// String describes the token without its secrets.
func (t Token) String() string {
	exp := "unknown"
	if !t.ExpiresAt.IsZero() {
		exp = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("Token(type=%s scope=%q patient=%q expires=%s access_token=%s refresh_token=%s id_token=%s)",
		t.TokenType, t.Scope, t.Patient, exp, redacted(t.AccessToken), redacted(t.RefreshToken), redacted(t.IDToken))
}

// GoString is String, so %#v redacts too.
func (t Token) GoString() string { return t.String() }

// LogValue implements slog.LogValuer without the secrets.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_type", t.TokenType),
		slog.String("scope", t.Scope),
		slog.String("patient", t.Patient),
		slog.Time("expires_at", t.ExpiresAt),
		slog.String("access_token", redacted(t.AccessToken)),
		slog.String("refresh_token", redacted(t.RefreshToken)),
	)
}

// Valid reports whether the token has an access token that does not
// expire within margin of now.
func (t *Token) Valid(now time.Time, margin time.Duration) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	return t.ExpiresAt.IsZero() || now.Add(margin).Before(t.ExpiresAt)
}

func redacted(s string) string {
	if s == "" {
		return "none"
	}
	return "REDACTED"
}
