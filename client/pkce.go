package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PKCELogin signs a user in with the OAuth 2.0 authorization code grant
// and PKCE (RFC 7636, S256) for native and command-line apps, receiving
// the code on a loopback redirect (RFC 8252 §7.3):
// http://127.0.0.1:PORT/callback. Register that redirect URI (with the
// port, or any port if the server allows it for loopback) for ClientID.
type PKCELogin struct {
	// FHIRBase is the FHIR server; its SMART configuration supplies the
	// authorization and token endpoints unless both are set below.
	FHIRBase string
	// ClientID is the app's client id; ClientSecret is only for
	// confidential clients (a native app normally has none).
	ClientID     string
	ClientSecret string
	// Scopes, e.g. "openid", "fhirUser", "offline_access",
	// "patient/*.rs", "launch/patient".
	Scopes []string
	// RedirectPort is the loopback port to listen on; 0 picks a free one.
	RedirectPort int
	// OpenBrowser shows the authorization URL to the user, typically by
	// starting a browser and printing the URL. Required.
	OpenBrowser func(url string) error
	// Launch is the EHR launch parameter, if any.
	Launch string
	// Aud is the aud parameter; FHIRBase by default.
	Aud string
	// AuthorizationURL and TokenURL override discovery when both are set.
	AuthorizationURL string
	TokenURL         string
	// HTTPClient sends the discovery and token requests; default: system
	// roots, TLS 1.2 minimum.
	HTTPClient *http.Client
	// Logger receives progress messages (never codes or tokens).
	Logger *slog.Logger
}

// Run performs the login: it listens on the loopback redirect, calls
// OpenBrowser with the authorization URL, waits for the redirect (until
// ctx ends), checks state, and exchanges the code with the PKCE verifier.
// The returned Token holds the access token, the refresh token (ask for
// offline_access) and the SMART patient context. A redirect with a wrong
// state, or an authorization error, ends the login with an error.
func (p *PKCELogin) Run(ctx context.Context) (*Token, error) {
	if p.ClientID == "" || p.OpenBrowser == nil {
		return nil, errors.New("pkce login: ClientID and OpenBrowser are required")
	}
	if p.RedirectPort < 0 || p.RedirectPort > 65535 {
		return nil, errors.New("pkce login: RedirectPort out of range")
	}
	hc := p.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	authURL, tokenURL := p.AuthorizationURL, p.TokenURL
	if authURL == "" || tokenURL == "" {
		if p.FHIRBase == "" {
			return nil, errors.New("pkce login: FHIRBase is required for discovery")
		}
		cfg, err := Discover(ctx, p.FHIRBase, hc)
		if err != nil {
			return nil, err
		}
		if cfg.AuthorizationEndpoint == "" || cfg.TokenEndpoint == "" {
			return nil, errors.New("pkce login: the server's SMART configuration lacks authorization or token endpoint")
		}
		if len(cfg.CodeChallengeMethodsSupported) > 0 && !contains(cfg.CodeChallengeMethodsSupported, "S256") {
			return nil, errors.New("pkce login: the server does not support S256 PKCE")
		}
		authURL, tokenURL = cfg.AuthorizationEndpoint, cfg.TokenEndpoint
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.RedirectPort)))
	if err != nil {
		return nil, fmt.Errorf("pkce login: listening on the loopback redirect port: %w", err)
	}
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)

	state, verifier := randomToken(32), randomToken(32)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	au, err := url.Parse(authURL)
	if err != nil {
		ln.Close()
		return nil, errors.New("pkce login: invalid authorization URL")
	}
	q := au.Query()
	q.Set("response_type", "code")
	q.Set("client_id", p.ClientID)
	q.Set("redirect_uri", redirect)
	if len(p.Scopes) > 0 {
		q.Set("scope", strings.Join(p.Scopes, " "))
	}
	q.Set("state", state)
	q.Set("code_challenge", challenge)
	q.Set("code_challenge_method", "S256")
	aud := p.Aud
	if aud == "" {
		aud = strings.TrimRight(p.FHIRBase, "/")
	}
	if aud != "" {
		q.Set("aud", aud)
	}
	if p.Launch != "" {
		q.Set("launch", p.Launch)
	}
	au.RawQuery = q.Encode()

	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		qs := r.URL.Query()
		var res result
		switch {
		case subtle.ConstantTimeCompare([]byte(qs.Get("state")), []byte(state)) != 1:
			res.err = errors.New("pkce login: the redirect's state does not match (possible CSRF); login aborted")
		case qs.Get("error") != "":
			res.err = &OAuthError{StatusCode: http.StatusBadRequest, Code: truncate(qs.Get("error"), 64), Description: truncate(qs.Get("error_description"), 300)}
		case qs.Get("code") == "":
			res.err = errors.New("pkce login: the redirect carries no code")
		default:
			res.code = qs.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		msg := "Login complete. You can close this window and return to the terminal."
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			msg = "Login failed. Return to the terminal for details."
		}
		fmt.Fprintf(w, "<!doctype html><title>Lapis login</title><p>%s</p>", html.EscapeString(msg))
		select {
		case results <- res:
		default: // a result is already pending
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	logger.Info("pkce login: waiting for the authorization redirect", slog.String("redirect_uri", redirect))
	if err := p.OpenBrowser(au.String()); err != nil {
		return nil, fmt.Errorf("pkce login: opening the browser: %w", err)
	}
	var res result
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, fmt.Errorf("pkce login: waiting for the redirect: %w", ctx.Err())
	}
	if res.err != nil {
		return nil, res.err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {res.code},
		"redirect_uri":  {redirect},
		"code_verifier": {verifier},
	}
	secret := p.ClientSecret
	if secret == "" {
		form.Set("client_id", p.ClientID)
	}
	return postToken(ctx, hc, tokenURL, form, p.ClientID, secret, AuthStyleBasic, time.Now())
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
