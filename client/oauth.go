package client

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultMargin is how long before its expiry a cached token is renewed
// when no Margin is configured.
const DefaultMargin = 60 * time.Second

// tokenFetchTimeout bounds one token request; it runs detached from the
// caller's context because other goroutines may wait for it.
const tokenFetchTimeout = 30 * time.Second

// AuthStyle is how a confidential client authenticates to the token
// endpoint with its secret.
type AuthStyle int

const (
	// AuthStyleBasic sends client_id and client_secret with HTTP Basic
	// authentication (client_secret_basic), the RFC 6749 default.
	AuthStyleBasic AuthStyle = iota
	// AuthStylePost sends them as form parameters (client_secret_post).
	AuthStylePost
)

// ClientCredentialsConfig configures the OAuth 2.0 client credentials
// grant with a client secret.
type ClientCredentialsConfig struct {
	// TokenURL is the token endpoint. When empty it is discovered from
	// FHIRBase's .well-known/smart-configuration.
	TokenURL string
	// FHIRBase is the FHIR base URL used for discovery when TokenURL is
	// empty.
	FHIRBase string
	// ClientID and ClientSecret are the confidential client's credentials;
	// read the secret from the environment or a secrets store.
	ClientID     string
	ClientSecret string
	// Scopes are requested, e.g. "system/Patient.rs".
	Scopes []string
	// AuthStyle is how the secret is sent; AuthStyleBasic by default.
	AuthStyle AuthStyle
	// Margin renews the token this long before it expires (default
	// DefaultMargin).
	Margin time.Duration
	// HTTPClient sends the token requests; by default the Client's own
	// (with its TLS settings) once passed to WithAuth.
	HTTPClient *http.Client
	// Logger receives token events (never the tokens); default none.
	Logger *slog.Logger
}

// RefreshConfig configures the refresh token grant, e.g. to keep using a
// login made with PKCELogin.
type RefreshConfig struct {
	// TokenURL is the token endpoint; discovered from FHIRBase when empty.
	TokenURL string
	// FHIRBase is the FHIR base URL used for discovery.
	FHIRBase string
	// ClientID is the app's client id; ClientSecret is only for
	// confidential clients.
	ClientID     string
	ClientSecret string
	// RefreshToken is the refresh token to start from.
	RefreshToken string
	// Scopes, when set, narrow the refreshed token's scope.
	Scopes []string
	// AuthStyle is how ClientSecret is sent (when set).
	AuthStyle AuthStyle
	// Initial is a token already held (e.g. from PKCELogin.Run); it is
	// used until it nears expiry, and its refresh token is used when
	// RefreshToken is empty.
	Initial *Token
	// OnRotate is called (synchronously, after each successful refresh)
	// with the new token, so a rotated refresh token can be persisted.
	OnRotate func(Token)
	// Margin renews the token this long before it expires (default
	// DefaultMargin).
	Margin time.Duration
	// HTTPClient and Logger: as in ClientCredentialsConfig.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// OAuth obtains, caches and renews OAuth 2.0 access tokens; it implements
// Auth and TokenSource and is safe for concurrent use. A token is reused
// until Margin before it expires (or half its lifetime, for tokens that
// live less than twice the margin); however many goroutines need a new one
// at the same moment, exactly one token request is sent and all wait for
// it. After a 401, Invalidate drops the token that was refused (only that
// one), so the retry fetches a new one. Create it with ClientCredentials,
// BackendServices or RefreshToken.
type OAuth struct {
	kind     string
	tokenURL string
	fhirBase string
	margin   time.Duration
	logger   *slog.Logger
	// grant returns the form of a token request; it is called once per
	// request, so assertions are fresh.
	grant    func(tokenURL string, refresh string) (url.Values, error)
	clientID string
	secret   string
	style    AuthStyle
	onRotate func(Token)
	cfgErr   error
	now      func() time.Time
	// sleep waits for d or until ctx ends; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	hc    *http.Client
	retry RetryPolicy
	tok   *Token
	// tokMargin is the renewal margin of tok: Margin, but at most half the
	// token's lifetime, so short-lived tokens are still reused.
	tokMargin time.Duration
	refresh   string // current refresh token (RefreshToken grant)
	flight    *tokenCall
	fetches   int
}

// tokenCall is one in-flight token request that several callers share.
type tokenCall struct {
	done chan struct{}
	tok  *Token
	err  error
}

func newOAuth(kind, tokenURL, fhirBase string, margin time.Duration, hc *http.Client, logger *slog.Logger) *OAuth {
	if margin <= 0 {
		margin = DefaultMargin
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &OAuth{kind: kind, tokenURL: tokenURL, fhirBase: fhirBase, margin: margin, tokMargin: margin, hc: hc, logger: logger, now: time.Now,
		sleep: sleepCtx, retry: RetryPolicy{MaxRetries: DefaultMaxRetries, MaxWait: DefaultMaxWait}}
	if tokenURL == "" && fhirBase == "" {
		o.cfgErr = fmt.Errorf("oauth %s: TokenURL or FHIRBase is required", kind)
	}
	return o
}

// ClientCredentials returns an *OAuth for the client credentials grant
// with a client secret (client_secret_basic or client_secret_post).
func ClientCredentials(cfg ClientCredentialsConfig) *OAuth {
	o := newOAuth("client_credentials", cfg.TokenURL, cfg.FHIRBase, cfg.Margin, cfg.HTTPClient, cfg.Logger)
	o.clientID, o.secret, o.style = cfg.ClientID, cfg.ClientSecret, cfg.AuthStyle
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		o.cfgErr = errors.Join(o.cfgErr, errors.New("oauth client_credentials: ClientID and ClientSecret are required"))
	}
	scope := strings.Join(cfg.Scopes, " ")
	o.grant = func(string, string) (url.Values, error) {
		f := url.Values{"grant_type": {"client_credentials"}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return f, nil
	}
	return o
}

// RefreshToken returns an *OAuth for the refresh token grant. When the
// server rotates the refresh token, the new one is used from then on and
// OnRotate is called so it can be stored.
func RefreshToken(cfg RefreshConfig) *OAuth {
	o := newOAuth("refresh_token", cfg.TokenURL, cfg.FHIRBase, cfg.Margin, cfg.HTTPClient, cfg.Logger)
	o.clientID, o.secret, o.style, o.onRotate = cfg.ClientID, cfg.ClientSecret, cfg.AuthStyle, cfg.OnRotate
	o.refresh = cfg.RefreshToken
	if cfg.Initial != nil {
		t := *cfg.Initial
		o.tok = &t
		if o.refresh == "" {
			o.refresh = t.RefreshToken
		}
	}
	if o.refresh == "" || cfg.ClientID == "" {
		o.cfgErr = errors.Join(o.cfgErr, errors.New("oauth refresh_token: ClientID and a refresh token are required"))
	}
	scope := strings.Join(cfg.Scopes, " ")
	o.grant = func(_ string, refresh string) (url.Values, error) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return f, nil
	}
	return o
}

// String describes the OAuth source without secrets.
func (o *OAuth) String() string { return "OAuth(" + o.kind + ", client_id=" + o.clientID + ")" }

// GoString is String.
func (o *OAuth) GoString() string { return o.String() }

// configErr reports a configuration mistake; New checks it.
func (o *OAuth) configErr() error { return o.cfgErr }

// adoptHTTPClient gives the OAuth the Client's HTTP client when it has
// none of its own.
func (o *OAuth) adoptHTTPClient(hc *http.Client) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hc == nil {
		o.hc = hc
	}
}

// adoptRetry gives the OAuth the Client's retry policy for 429 and 503
// answers of the token endpoint.
func (o *OAuth) adoptRetry(p RetryPolicy) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retry = p
}

// TokenRequests returns how many token requests have been sent.
func (o *OAuth) TokenRequests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fetches
}

// Apply implements Auth: it sets "Authorization: Bearer <token>".
func (o *OAuth) Apply(ctx context.Context, req *http.Request) error {
	t, err := o.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	return nil
}

// Invalidate implements Auth: it drops the cached token if it is the one
// req carried, so the next Apply fetches a new one. Concurrent requests
// refused with the same token cause a single renewal.
func (o *OAuth) Invalidate(req *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tok == nil || req == nil {
		return
	}
	sent := req.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(sent), []byte("Bearer "+o.tok.AccessToken)) == 1 {
		o.tok = nil
	}
}

// Token implements TokenSource: the cached token while it is valid for
// more than the margin, else a new one from the token endpoint.
func (o *OAuth) Token(ctx context.Context) (*Token, error) {
	if o.cfgErr != nil {
		return nil, o.cfgErr
	}
	o.mu.Lock()
	if o.tok.Valid(o.now(), o.tokMargin) {
		t := *o.tok
		o.mu.Unlock()
		return &t, nil
	}
	call := o.flight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		o.flight = call
		o.fetches++
		go o.fetch(context.WithoutCancel(ctx), call)
	}
	o.mu.Unlock()
	select {
	case <-call.done:
		if call.err != nil {
			return nil, call.err
		}
		t := *call.tok
		return &t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch runs one token request and publishes its result to all waiters.
func (o *OAuth) fetch(ctx context.Context, call *tokenCall) {
	start := o.now()
	tok, err := o.request(ctx)
	o.mu.Lock()
	if err == nil {
		o.tok = tok
		o.tokMargin = o.margin
		if !tok.ExpiresAt.IsZero() {
			o.tokMargin = min(o.margin, tok.ExpiresAt.Sub(start)/2)
		}
		if tok.RefreshToken != "" {
			o.refresh = tok.RefreshToken
		}
	}
	o.flight = nil
	onRotate := o.onRotate
	o.mu.Unlock()
	call.tok, call.err = tok, err
	if err == nil && onRotate != nil {
		onRotate(*tok)
	}
	close(call.done)
}

// httpClient returns the client for token requests.
func (o *OAuth) httpClient() *http.Client {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hc == nil {
		o.hc = defaultHTTPClient()
	}
	return o.hc
}

// defaultHTTPClient is an HTTP client with TLS 1.2 minimum and the system
// roots.
func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// endpoint returns the token URL, discovering it once when needed.
func (o *OAuth) endpoint(ctx context.Context) (string, error) {
	o.mu.Lock()
	u := o.tokenURL
	o.mu.Unlock()
	if u != "" {
		return u, nil
	}
	cfg, err := Discover(ctx, o.fhirBase, o.httpClient())
	if err != nil {
		return "", err
	}
	if cfg.TokenEndpoint == "" {
		return "", errors.New("oauth: the server's SMART configuration has no token_endpoint")
	}
	o.mu.Lock()
	o.tokenURL = cfg.TokenEndpoint
	o.mu.Unlock()
	return cfg.TokenEndpoint, nil
}

// request obtains a token: one token request, repeated after a 429 or
// 503 answer as the retry policy allows (waiting as long as Retry-After
// asks, or backing off), each attempt bounded by tokenFetchTimeout.
func (o *OAuth) request(ctx context.Context) (*Token, error) {
	o.mu.Lock()
	policy := o.retry
	o.mu.Unlock()
	for retries := 0; ; retries++ {
		tok, err := o.attempt(ctx)
		var oe *OAuthError
		if err == nil || !errors.As(err, &oe) || (oe.StatusCode != http.StatusTooManyRequests && oe.StatusCode != http.StatusServiceUnavailable) ||
			retries >= policy.MaxRetries {
			if err != nil {
				o.logger.LogAttrs(ctx, slog.LevelWarn, "oauth token request failed", slog.String("grant", o.kind), slog.String("error", err.Error()))
			}
			return tok, err
		}
		wait := oe.RetryAfter
		if wait > policy.MaxWait {
			o.logger.LogAttrs(ctx, slog.LevelWarn, "oauth token endpoint asked to wait longer than the retry policy allows",
				slog.String("grant", o.kind), slog.Int("status", oe.StatusCode), slog.Duration("retry_after", wait))
			return nil, err
		}
		if wait <= 0 {
			wait = 500 * time.Millisecond << min(retries, 10)
			wait = min(wait+rand.N(wait/2+1), policy.MaxWait)
		}
		o.logger.LogAttrs(ctx, slog.LevelInfo, "oauth token request throttled; retrying", slog.String("grant", o.kind),
			slog.Int("status", oe.StatusCode), slog.Duration("wait", wait), slog.Int("retry", retries+1))
		if err := o.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// attempt sends one token request (a fresh grant: assertions are not
// reused).
func (o *OAuth) attempt(ctx context.Context) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenFetchTimeout)
	defer cancel()
	tokenURL, err := o.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	refresh := o.refresh
	o.mu.Unlock()
	form, err := o.grant(tokenURL, refresh)
	if err != nil {
		return nil, err
	}
	start := o.now()
	tok, err := postToken(ctx, o.httpClient(), tokenURL, form, o.clientID, o.secret, o.style, start)
	if err != nil {
		return nil, err
	}
	o.logger.LogAttrs(ctx, slog.LevelDebug, "oauth token obtained", slog.String("grant", o.kind), slog.Any("token", *tok))
	return tok, nil
}

// postToken sends a token request (RFC 6749 §4) and decodes the answer.
// The client authenticates with Basic (secret, AuthStyleBasic), form
// parameters (secret, AuthStylePost), or only client_id when secret is
// empty (public clients and private_key_jwt, whose assertion is in form).
func postToken(ctx context.Context, hc *http.Client, tokenURL string, form url.Values, clientID, secret string, style AuthStyle, now time.Time) (*Token, error) {
	form = cloneValues(form)
	var basic bool
	switch {
	case secret != "" && style == AuthStyleBasic:
		basic = true
	case secret != "":
		form.Set("client_id", clientID)
		form.Set("client_secret", secret)
	case form.Get("client_assertion") == "" && clientID != "":
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, errors.New("oauth: invalid token URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: form-urlencode both parts before Basic.
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := send(hc, req, "oauth: token request")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readLimited(resp, 1<<20)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		oe := &OAuthError{StatusCode: resp.StatusCode}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			oe.RetryAfter, _ = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
		var v struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &v) == nil {
			oe.Code, oe.Description = v.Error, v.Description
		}
		return nil, oe
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && mt != "application/json" {
		return nil, fmt.Errorf("oauth: token endpoint answered with %s, not JSON", mt)
	}
	var v struct {
		AccessToken  string      `json:"access_token"`
		TokenType    string      `json:"token_type"`
		ExpiresIn    json.Number `json:"expires_in"`
		RefreshToken string      `json:"refresh_token"`
		Scope        string      `json:"scope"`
		Patient      string      `json:"patient"`
		IDToken      string      `json:"id_token"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, errors.New("oauth: token endpoint answered with invalid JSON")
	}
	if v.AccessToken == "" {
		return nil, errors.New("oauth: token response has no access_token")
	}
	if v.TokenType != "" && !strings.EqualFold(v.TokenType, "bearer") {
		return nil, fmt.Errorf("oauth: unsupported token_type %q", truncate(v.TokenType, 32))
	}
	t := &Token{AccessToken: v.AccessToken, TokenType: "Bearer", RefreshToken: v.RefreshToken, Scope: v.Scope, Patient: v.Patient, IDToken: v.IDToken}
	if v.ExpiresIn != "" {
		secs, err := v.ExpiresIn.Float64()
		if err != nil || secs < 0 {
			return nil, errors.New("oauth: token response has an invalid expires_in")
		}
		// A lifetime beyond a Duration (about 292 years) overflowed into
		// an expiry in the past: a new token for every request.
		const maxLifetime = 100 * 365 * 24 * time.Hour
		t.ExpiresAt = now.Add(time.Duration(min(secs, maxLifetime.Seconds()) * float64(time.Second)))
	}
	return t, nil
}

// readLimited reads at most n bytes of a response body.
func readLimited(resp *http.Response, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, n+1))
	if err != nil {
		return nil, fmt.Errorf("oauth: reading response: %w", err)
	}
	if int64(len(b)) > n {
		return nil, errors.New("oauth: response too large")
	}
	return b, nil
}

// send does req with hc; a transport error is the context's error when
// the request's context ended, else what failed (the URL's credentials
// scrubbed).
func send(hc *http.Client, req *http.Request, what string) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", what, scrubURLError(err))
	}
	return resp, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// SMARTConfiguration is a server's SMART App Launch discovery document
// ([base]/.well-known/smart-configuration). Field names follow the
// SMART App Launch 2.x specification's JSON members.
type SMARTConfiguration struct {
	Issuer                            string   `json:"issuer,omitempty"`
	JWKSURI                           string   `json:"jwks_uri,omitempty"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported,omitempty"`
	ManagementEndpoint                string   `json:"management_endpoint,omitempty"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	Capabilities                      []string `json:"capabilities,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported,omitempty"`
}

// Discover fetches the SMART configuration of the FHIR server at fhirBase
// (GET [base]/.well-known/smart-configuration). hc may be nil for a
// default client (system roots, TLS 1.2 minimum); pass Client.HTTPClient()
// to reuse a Client's TLS settings.
func Discover(ctx context.Context, fhirBase string, hc *http.Client) (*SMARTConfiguration, error) {
	if hc == nil {
		hc = defaultHTTPClient()
	}
	u, err := url.Parse(strings.TrimRight(fhirBase, "/") + "/.well-known/smart-configuration")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("smart discovery: FHIR base must be an absolute http(s) URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, errors.New("smart discovery: invalid URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := send(hc, req, "smart discovery")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("smart discovery: %s answered %d", u.Path, resp.StatusCode)
	}
	body, err := readLimited(resp, 1<<20)
	if err != nil {
		return nil, err
	}
	var cfg SMARTConfiguration
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, errors.New("smart discovery: invalid JSON")
	}
	for _, e := range []string{cfg.TokenEndpoint, cfg.AuthorizationEndpoint} {
		if e == "" {
			continue
		}
		if eu, err := url.Parse(e); err != nil || (eu.Scheme != "https" && eu.Scheme != "http") || eu.Host == "" {
			return nil, errors.New("smart discovery: endpoint is not an absolute http(s) URL")
		}
	}
	return &cfg, nil
}
