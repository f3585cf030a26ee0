// Package admin is a typed Go client for the Lapis admin API
// ([base]/auth/admin/): OAuth clients, logins, users' grants to apps and
// API keys. It also defines the API's JSON shapes, which the server
// answers with, so client and server cannot drift apart.
//
// The admin API takes a bearer access token carrying the scope
// system/lapis.admin, issued by the client_credentials grant (or SMART
// Backend Services) to a client registered with that scope:
//
//	base := "https://fhir.example.org/fhir"
//	c, err := client.New(base, client.WithAuth(client.ClientCredentials(client.ClientCredentialsConfig{
//		FHIRBase: base, ClientID: id, ClientSecret: secret, Scopes: []string{admin.Scope}})))
//	if err != nil { ... }
//	a := admin.New(c)
//	key, err := a.CreateAPIKey(ctx, admin.APIKeyRequest{Name: "etl", Scopes: []string{"system/*.rs"}})
//
// Every error answer is an *Error; test it with errors.Is(err,
// ErrNotFound) or errors.Is(err, ErrConflict). Like package client, this
// package does not depend on the rest of Lapis.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/lapis-health/lapis/client"
)

// Scope is the scope the admin API requires.
const Scope = "system/lapis.admin"

// Path is the admin API's path, relative to the FHIR base URL.
const Path = "auth/admin/"

// Error codes of the admin API: RFC 6749 §5.2's invalid_request and
// server_error, RFC 6750's invalid_token and insufficient_scope, and
// these.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
	CodeNotFound          = "not_found"
	CodeConflict          = "conflict"
	CodeUnavailable       = "temporarily_unavailable"
	CodeServerError       = "server_error"
)

// ErrNotFound matches (errors.Is) an answer saying the client, user or
// API key does not exist.
var ErrNotFound = errors.New("admin: not found")

// ErrConflict matches an answer refusing a change that conflicts with the
// current state (a taken username, an API key already rotated).
var ErrConflict = errors.New("admin: conflict")

// Error is an error answer of the admin API.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int `json:"-"`
	// Code is the "error" member, e.g. not_found.
	Code string `json:"error"`
	// Description is the "error_description" member.
	Description string `json:"error_description"`
}

// Error implements error.
func (e *Error) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("admin API: %d %s: %s", e.StatusCode, e.Code, e.Description)
	}
	return fmt.Sprintf("admin API: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Is matches ErrNotFound, ErrConflict and, for a 401, client.ErrUnauthorized.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case client.ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	}
	return false
}

// maxAnswer bounds an answer's size.
const maxAnswer = 16 << 20

// Client calls the admin API of one server.
type Client struct {
	c *client.Client
}

// New returns an admin API client that sends its requests through c
// (whose base URL is the FHIR base and whose authentication must yield a
// token with Scope).
func New(c *client.Client) *Client { return &Client{c: c} }

// call sends one request (body marshalled as JSON when not nil) and
// decodes a 2xx answer into out (when not nil).
func (a *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	hdr := http.Header{"Accept": {"application/json"}}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(ctx, method, Path+path, rd, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{}
		_ = json.Unmarshal(b, e)
		e.StatusCode = resp.StatusCode
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return errors.New("admin API: the answer is not the expected JSON")
	}
	return nil
}

// withQuery appends the non-empty parameters to path.
func withQuery(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// CreateClient registers a client (POST clients).
func (a *Client) CreateClient(ctx context.Context, req ClientRequest) (*Registered, error) {
	return one[Registered](ctx, a, http.MethodPost, "clients", req)
}

// Clients lists the clients matching f, oldest first (GET clients).
func (a *Client) Clients(ctx context.Context, f ClientFilter) ([]OAuthClient, error) {
	return list[OAuthClient](ctx, a, withQuery("clients", "owner", f.Owner), "clients")
}

// OAuthClient returns one client (GET clients/{id}).
func (a *Client) OAuthClient(ctx context.Context, id string) (*OAuthClient, error) {
	return one[OAuthClient](ctx, a, http.MethodGet, "clients/"+url.PathEscape(id), nil)
}

// DeleteClient deletes a client and revokes its users' grants (DELETE
// clients/{id}).
func (a *Client) DeleteClient(ctx context.Context, id string) error {
	return a.call(ctx, http.MethodDelete, "clients/"+url.PathEscape(id), nil, nil)
}

// RotateClientSecret gives a confidential client a new secret, returned
// only here; the previous one keeps authenticating for the overlap (POST
// clients/{id}/rotate-secret).
func (a *Client) RotateClientSecret(ctx context.Context, id string, overlap time.Duration) (*NewSecret, error) {
	d := Duration(overlap)
	return one[NewSecret](ctx, a, http.MethodPost, "clients/"+url.PathEscape(id)+"/rotate-secret", RotateSecretRequest{Overlap: &d})
}

// SuspendClient suspends a client: it gets no tokens and its tokens stop
// working on every instance at once (POST clients/{id}/suspend).
func (a *Client) SuspendClient(ctx context.Context, id, reason string) (*OAuthClient, error) {
	return one[OAuthClient](ctx, a, http.MethodPost, "clients/"+url.PathEscape(id)+"/suspend", SuspendRequest{Reason: reason})
}

// ResumeClient lifts a client's suspension (POST clients/{id}/resume).
func (a *Client) ResumeClient(ctx context.Context, id string) (*OAuthClient, error) {
	return one[OAuthClient](ctx, a, http.MethodPost, "clients/"+url.PathEscape(id)+"/resume", struct{}{})
}

// SuspendAPIKey suspends an API key at once (POST apikeys/{id}/suspend).
func (a *Client) SuspendAPIKey(ctx context.Context, id, reason string) (*APIKey, error) {
	return one[APIKey](ctx, a, http.MethodPost, "apikeys/"+url.PathEscape(id)+"/suspend", SuspendRequest{Reason: reason})
}

// ResumeAPIKey lifts an API key's suspension (POST apikeys/{id}/resume).
func (a *Client) ResumeAPIKey(ctx context.Context, id string) (*APIKey, error) {
	return one[APIKey](ctx, a, http.MethodPost, "apikeys/"+url.PathEscape(id)+"/resume", struct{}{})
}

// ClientNetwork returns a client's network rules (GET
// clients/{id}/network).
func (a *Client) ClientNetwork(ctx context.Context, id string) (*Network, error) {
	return one[Network](ctx, a, http.MethodGet, "clients/"+url.PathEscape(id)+"/network", nil)
}

// SetClientNetwork replaces a client's network rules (PUT
// clients/{id}/network).
func (a *Client) SetClientNetwork(ctx context.Context, id string, req NetworkRequest) (*Network, error) {
	return one[Network](ctx, a, http.MethodPut, "clients/"+url.PathEscape(id)+"/network", req)
}

// SetClientRateLimit replaces the client id's own rate limit (Limit
// "default" restores the server's default); running servers apply it
// within a second. It returns the limit as stored (PUT
// clients/{id}/ratelimit).
func (a *Client) SetClientRateLimit(ctx context.Context, id string, req RateLimit) (*RateLimit, error) {
	return one[RateLimit](ctx, a, http.MethodPut, "clients/"+url.PathEscape(id)+"/ratelimit", req)
}

// CreateUser creates a login (POST users).
func (a *Client) CreateUser(ctx context.Context, req UserRequest) (*User, error) {
	return one[User](ctx, a, http.MethodPost, "users", req)
}

// Users lists the logins by username (GET users).
func (a *Client) Users(ctx context.Context) ([]User, error) {
	return list[User](ctx, a, "users", "users")
}

// User returns one login (GET users/{username}).
func (a *Client) User(ctx context.Context, username string) (*User, error) {
	return one[User](ctx, a, http.MethodGet, "users/"+url.PathEscape(username), nil)
}

// DeleteUser deletes a login, ends its sessions and revokes its grants
// (DELETE users/{username}).
func (a *Client) DeleteUser(ctx context.Context, username string) error {
	return a.call(ctx, http.MethodDelete, "users/"+url.PathEscape(username), nil, nil)
}

// Grants lists the live grants matching f (GET grants).
func (a *Client) Grants(ctx context.Context, f GrantFilter) ([]Grant, error) {
	return list[Grant](ctx, a, withQuery("grants", "client_id", f.ClientID, "username", f.Username), "grants")
}

// RevokeGrants revokes an app's grants of one user or of every user (POST
// grants/revoke).
func (a *Client) RevokeGrants(ctx context.Context, req RevokeRequest) (*Revoked, error) {
	return one[Revoked](ctx, a, http.MethodPost, "grants/revoke", req)
}

// CreateAPIKey creates an API key; the answer holds the key, shown only
// once (POST apikeys).
func (a *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (*NewAPIKey, error) {
	return one[NewAPIKey](ctx, a, http.MethodPost, "apikeys", req)
}

// APIKeys lists the API keys matching f, oldest first (GET apikeys).
func (a *Client) APIKeys(ctx context.Context, f APIKeyFilter) ([]APIKey, error) {
	return list[APIKey](ctx, a, withQuery("apikeys", "owner", f.Owner), "apikeys")
}

// APIKey returns one API key (GET apikeys/{id}).
func (a *Client) APIKey(ctx context.Context, id string) (*APIKey, error) {
	return one[APIKey](ctx, a, http.MethodGet, "apikeys/"+url.PathEscape(id), nil)
}

// RevokeAPIKey revokes an API key at once (DELETE apikeys/{id}).
func (a *Client) RevokeAPIKey(ctx context.Context, id string) error {
	return a.call(ctx, http.MethodDelete, "apikeys/"+url.PathEscape(id), nil, nil)
}

// RotateAPIKey replaces an API key by a new one; the old key stays valid
// for the grace period (POST apikeys/{id}/rotate).
func (a *Client) RotateAPIKey(ctx context.Context, id string, req RotateRequest) (*NewAPIKey, error) {
	return one[NewAPIKey](ctx, a, http.MethodPost, "apikeys/"+url.PathEscape(id)+"/rotate", req)
}

// SetAPIKeyRateLimit replaces the API key id's own rate limit (Limit
// "default" restores the server's default); running servers apply it
// within a second. It returns the limit as stored (PUT
// apikeys/{id}/ratelimit).
func (a *Client) SetAPIKeyRateLimit(ctx context.Context, id string, req RateLimit) (*RateLimit, error) {
	return one[RateLimit](ctx, a, http.MethodPut, "apikeys/"+url.PathEscape(id)+"/ratelimit", req)
}

// one sends a request whose answer is one T.
func one[T any](ctx context.Context, a *Client, method, path string, body any) (*T, error) {
	var out T
	if err := a.call(ctx, method, path, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// list sends a GET whose answer is an object with the array member.
func list[T any](ctx context.Context, a *Client, path, member string) ([]T, error) {
	var out map[string][]T
	if err := a.call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	if out[member] == nil {
		return []T{}, nil
	}
	return out[member], nil
}
