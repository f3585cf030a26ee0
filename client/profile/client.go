package profile

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/client"
)

// DefaultMargin is how long before expiry tokens are renewed when the
// profile sets no margin.
const DefaultMargin = 60 * time.Second

// path resolves a path of the profile relative to the profiles file.
func (p *Profile) path(v string) string {
	v = expandHome(v)
	if !filepath.IsAbs(v) && p.dir != "" {
		return filepath.Join(p.dir, v)
	}
	return v
}

// secret resolves one of the profile's secrets.
func (p *Profile) secret(s Secret, field string) (string, error) {
	v, err := s.Resolve(p.dir)
	if err != nil {
		return "", fmt.Errorf("profile %s: auth.%s: %w", p.Name, field, err)
	}
	return v, nil
}

// fingerprint identifies the profile with its resolved secrets and CA
// bundle, so a Watcher rebuilds a client when any of them changes.
func (p *Profile) fingerprint() ([sha256.Size]byte, error) {
	h := sha256.New()
	b, err := json.Marshal(p)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	h.Write(b)
	fmt.Fprintf(h, "\x00%s\x00%s\x00", p.Name, p.dir)
	for _, s := range []struct {
		v     Secret
		field string
	}{{p.Auth.APIKey, "api_key"}, {p.Auth.Password, "password"}, {p.Auth.ClientSecret, "client_secret"}, {p.Auth.PrivateKey, "private_key"}} {
		if s.v.IsZero() {
			continue
		}
		v, err := p.secret(s.v, s.field)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fmt.Fprintf(h, "%s=%d:%s\x00", s.field, len(v), v)
	}
	if p.TLS.Mode == TLSCAFile {
		ca, err := os.ReadFile(p.path(p.TLS.CAFile))
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("profile %s: tls.ca_file: %w", p.Name, errors.Unwrap(err))
		}
		h.Write(ca)
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// tlsConfig is the SDK TLS configuration of the profile.
func (p *Profile) tlsConfig() client.TLSConfig {
	switch p.TLS.Mode {
	case TLSCAFile:
		return client.TLSConfig{CAFile: p.path(p.TLS.CAFile)}
	case TLSInsecureSkipVerify:
		return client.TLSConfig{InsecureSkipVerifyDangerous: true}
	}
	return client.TLSConfig{}
}

// margin is the token renewal margin.
func (p *Profile) margin() time.Duration {
	if p.Auth.Margin > 0 {
		return time.Duration(p.Auth.Margin)
	}
	return DefaultMargin
}

// Client returns an SDK client for the profile: its base URL, TLS choice
// and authentication, with secrets resolved now. opts are appended (e.g.
// client.WithLogger). Build it once and reuse it: it caches tokens.
func (p *Profile) Client(ctx context.Context, opts ...client.Option) (*client.Client, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	// A plain client first: its HTTP client (with the profile's TLS) also
	// serves discovery and the token endpoint.
	base := []client.Option{client.WithTLS(p.tlsConfig())}
	if p.Timeout > 0 {
		base = append(base, client.WithHTTPClient(&http.Client{Timeout: time.Duration(p.Timeout), Transport: http.DefaultTransport.(*http.Transport).Clone()}))
	}
	plain, err := client.New(p.BaseURL, append(base, opts...)...)
	if err != nil {
		return nil, err
	}
	auth, err := p.auth(ctx, plain.HTTPClient())
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return plain, nil
	}
	return client.New(p.BaseURL, append([]client.Option{client.WithHTTPClient(plain.HTTPClient()), client.WithAuth(auth)}, opts...)...)
}

// ClientSecret resolves the profile's OAuth client secret ("" when it has
// none).
func (p *Profile) ClientSecret() (string, error) {
	if p.Auth.ClientSecret.IsZero() {
		return "", nil
	}
	return p.secret(p.Auth.ClientSecret, "client_secret")
}

// HTTPClient returns an HTTP client with the profile's TLS choice (for
// discovery, login and token requests outside a Client).
func (p *Profile) HTTPClient() (*http.Client, error) {
	c, err := client.New(p.BaseURL, client.WithTLS(p.tlsConfig()))
	if err != nil {
		return nil, err
	}
	return c.HTTPClient(), nil
}

// Authenticator returns the profile's authentication (nil for method
// none), with secrets resolved now. For the OAuth methods and login it
// also implements client.TokenSource (see "lapis token").
func (p *Profile) Authenticator(ctx context.Context) (client.Auth, error) {
	hc, err := p.HTTPClient()
	if err != nil {
		return nil, err
	}
	return p.auth(ctx, hc)
}

func (p *Profile) auth(ctx context.Context, hc *http.Client) (client.Auth, error) {
	a := &p.Auth
	switch a.Method {
	case "", MethodNone:
		return nil, nil
	case MethodAPIKey:
		k, err := p.secret(a.APIKey, "api_key")
		if err != nil {
			return nil, err
		}
		return client.APIKey(k), nil
	case MethodBasic:
		pw, err := p.secret(a.Password, "password")
		if err != nil {
			return nil, err
		}
		return client.Basic(a.Username, pw), nil
	case MethodClientCredentials:
		sec, err := p.secret(a.ClientSecret, "client_secret")
		if err != nil {
			return nil, err
		}
		return p.cached(client.ClientCredentials(client.ClientCredentialsConfig{TokenURL: a.TokenURL, FHIRBase: p.BaseURL, ClientID: a.ClientID,
			ClientSecret: sec, Scopes: a.ScopeList(), HTTPClient: hc, Margin: p.margin()}), sec), nil
	case MethodBackendServices:
		key, err := p.secret(a.PrivateKey, "private_key")
		if err != nil {
			return nil, err
		}
		cfg := client.BackendServicesConfig{TokenURL: a.TokenURL, FHIRBase: p.BaseURL, ClientID: a.ClientID, KeyID: a.KeyID,
			Alg: a.Alg, Scopes: a.ScopeList(), HTTPClient: hc, Margin: p.margin()}
		if strings.HasPrefix(strings.TrimSpace(key), "{") {
			cfg.KeyJWK = []byte(key)
		} else {
			cfg.KeyPEM = []byte(key)
		}
		return p.cached(client.BackendServices(cfg), key), nil
	case MethodLogin:
		cache, err := DefaultTokenCache()
		if err != nil {
			return nil, err
		}
		var secret string
		if !a.ClientSecret.IsZero() {
			if secret, err = p.secret(a.ClientSecret, "client_secret"); err != nil {
				return nil, err
			}
		}
		return LoginAuth(cache, p.Name, secret, p.margin(), hc)
	}
	return nil, fmt.Errorf("profile %s: unknown auth method %q", p.Name, a.Method)
}

// LoginAuth returns the authentication of a token set "lapis login" stored
// in cache under key: the stored access token until margin before its
// expiry, then the refresh token grant, saving every rotated token set
// back to the cache (the old refresh token stops working). secret is a
// confidential client's secret ("" for a public client); hc serves the
// token endpoint.
func LoginAuth(cache *TokenCache, key, secret string, margin time.Duration, hc *http.Client) (*client.OAuth, error) {
	st, err := cache.Load(key)
	if err != nil {
		return nil, err
	}
	if st.RefreshToken == "" && !st.Valid(time.Now(), 0) {
		return nil, errors.New("the stored access token expired and there is no refresh token: run \"lapis login\" again")
	}
	initial := &client.Token{AccessToken: st.AccessToken, TokenType: st.TokenType, RefreshToken: st.RefreshToken, Scope: st.Scope,
		Patient: st.Patient, IDToken: st.IDToken, ExpiresAt: st.ExpiresAt}
	if st.RefreshToken == "" {
		// Without a refresh token the stored token is used as long as it
		// lasts; RefreshToken needs one, so give a placeholder that is
		// never sent before expiry.
		initial.RefreshToken = "-"
	}
	var mu sync.Mutex
	base := *st
	o := client.RefreshToken(client.RefreshConfig{TokenURL: st.TokenURL, FHIRBase: st.FHIRBase, ClientID: st.ClientID, ClientSecret: secret,
		Initial: initial, Margin: margin, HTTPClient: hc,
		OnRotate: func(nt client.Token) {
			mu.Lock()
			defer mu.Unlock()
			base = merge(base, nt)
			_ = cache.Save(key, &base) // a failed save only costs a new login later
		}})
	return o, nil
}

// merge returns st updated with a refreshed token.
func merge(st StoredToken, nt client.Token) StoredToken {
	st.AccessToken, st.ExpiresAt = nt.AccessToken, nt.ExpiresAt
	if nt.RefreshToken != "" {
		st.RefreshToken = nt.RefreshToken
	}
	if nt.TokenType != "" {
		st.TokenType = nt.TokenType
	}
	if nt.Scope != "" {
		st.Scope = nt.Scope
	}
	if nt.IDToken != "" {
		st.IDToken = nt.IDToken
	}
	if nt.Patient != "" {
		st.Patient = nt.Patient
	}
	return st
}

// FromToken converts a token of the SDK (e.g. from client.PKCELogin) into
// a StoredToken for fhirBase, tokenURL and clientID.
func FromToken(t *client.Token, fhirBase, tokenURL, clientID string) *StoredToken {
	st := merge(StoredToken{FHIRBase: fhirBase, TokenURL: tokenURL, ClientID: clientID}, *t)
	return &st
}

// cached wraps an OAuth source with the profile's TokenCache, if any. The
// cache key covers the credential (hashed), so a changed secret or key
// never reuses a token obtained with the old one.
func (p *Profile) cached(o *client.OAuth, credential string) client.Auth {
	if p.TokenCache == nil {
		return o
	}
	key := hashKey("oauth-", p.BaseURL, p.Auth.Method, p.Auth.ClientID, p.Auth.TokenURL, strings.Join(p.Auth.ScopeList(), " "), credential)
	return &diskCached{src: o, cache: p.TokenCache, key: key, margin: p.margin(), fhirBase: p.BaseURL, clientID: p.Auth.ClientID}
}

// diskCached reuses a token stored on disk until margin before its
// expiry, then asks its source for a new one and stores that. It
// implements client.Auth and client.TokenSource.
type diskCached struct {
	src      *client.OAuth
	cache    *TokenCache
	key      string
	margin   time.Duration
	fhirBase string
	clientID string

	mu      sync.Mutex
	tok     *client.Token
	refused string // an access token the server refused (401)
}

// Token returns the stored token while it is valid, else a new one.
func (d *diskCached) Token(ctx context.Context) (*client.Token, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tok != nil && d.tok.Valid(time.Now(), d.margin) {
		return d.tok, nil
	}
	if st, err := d.cache.Load(d.key); err == nil && st.Valid(time.Now(), d.margin) && st.AccessToken != d.refused &&
		st.FHIRBase == d.fhirBase && st.ClientID == d.clientID {
		d.tok = &client.Token{AccessToken: st.AccessToken, TokenType: st.TokenType, Scope: st.Scope, ExpiresAt: st.ExpiresAt}
		return d.tok, nil
	}
	t, err := d.src.Token(ctx)
	if err != nil {
		return nil, err
	}
	d.tok = t
	st := FromToken(t, d.fhirBase, "", d.clientID)
	st.RefreshToken, st.IDToken = "", ""
	_ = d.cache.Save(d.key, st) // a failed save only costs a token request next time
	return t, nil
}

// Apply sets the bearer token.
func (d *diskCached) Apply(ctx context.Context, req *http.Request) error {
	t, err := d.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	return nil
}

// Invalidate forgets the refused token (in memory and on disk).
func (d *diskCached) Invalidate(req *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tok != nil {
		d.refused = d.tok.AccessToken
	}
	d.tok = nil
	_ = d.cache.Delete(d.key)
	d.src.Invalidate(req)
}
