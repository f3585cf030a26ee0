package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/httpx"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// Client authentication methods (token_endpoint_auth_methods_supported).
const (
	AuthNone              = tokenreq.AuthNone
	AuthClientSecretBasic = tokenreq.AuthClientSecretBasic
	AuthClientSecretPost  = tokenreq.AuthClientSecretPost
	AuthPrivateKeyJWT     = tokenreq.AuthPrivateKeyJWT
)

// AssertionType is the only accepted client_assertion_type (RFC 7523).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionAlgorithms are the accepted client-assertion algorithms.
var AssertionAlgorithms = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

// Assertion limits.
const (
	maxAssertionBytes = 16 << 10
	maxAssertionAhead = 5 * time.Minute
	clockSkew         = 30 * time.Second
	maxJTILen         = 255
)

// AuthenticatedClient is the client a request authenticated as
// (tokenreq.AuthenticatedClient).
type AuthenticatedClient = tokenreq.AuthenticatedClient

// HashSecret returns the stored form of a client secret
// (authdb.HashSecret, which authentication uses too).
func HashSecret(secret string) []byte { return authdb.HashSecret(secret) }

// authenticateClient authenticates the client of a token, introspection
// or revocation request by exactly one method. Every failure is
// invalid_client (401 with a challenge when Basic was used or no
// credentials were given).
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*AuthenticatedClient, error) {
	c, err := s.clientCredentials(ctx, r, form)
	if err != nil {
		return nil, err
	}
	return s.allowedFrom(ctx, r, c)
}

// hasClientCredentials reports whether a request names or authenticates
// its client in any way: HTTP Basic, a client assertion, a client secret or
// a client_id.
func hasClientCredentials(r *http.Request, form url.Values) bool {
	if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Basic") {
		return true
	}
	for _, k := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if form.Get(k) != "" {
			return true
		}
	}
	return false
}

// allowedFrom refuses a suspended client and an identified client
// outside its network allow-list.
func (s *Server) allowedFrom(ctx context.Context, r *http.Request, c *AuthenticatedClient) (*AuthenticatedClient, error) {
	if c.Client.Suspended() {
		// An operator suspended the client: no tokens, no introspection,
		// whatever credential it presents.
		s.record(r, audit.Event{Kind: audit.KindTokenFailure, Outcome: audit.OutcomeMinor,
			Description: "client is suspended", ClientID: c.Client.ID})
		e := errInvalidClient(c.Method == AuthClientSecretBasic)
		e.Description, e.Status = "the client is suspended", http.StatusUnauthorized
		return nil, e
	}
	if s.network == nil {
		return c, nil
	}
	// A client with an allow-list may use the token, introspection and
	// revocation endpoints only from its networks, as it may the FHIR API.
	ok, err := s.network.AllowsAddress(ctx, c.Client.ID, httpx.ClientIP(r))
	if err != nil {
		return nil, fmt.Errorf("oauth: reading the client's network rules: %w", err)
	}
	if !ok {
		s.record(r, audit.Event{Kind: audit.KindNetworkRefused, Outcome: audit.OutcomeMinor,
			Description: "address not on the client's allow-list", ClientID: c.Client.ID})
		return nil, errInvalidClient(c.Method == AuthClientSecretBasic)
	}
	return c, nil
}

// ClientNetwork decides whether a client may authenticate from an address
// (its allow-list; *netpolicy.ClientRules).
type ClientNetwork interface {
	AllowsAddress(ctx context.Context, clientID string, addr netip.Addr) (bool, error)
}

// SetClientNetwork makes client authentication at the token, introspection
// and revocation endpoints honour the clients' network allow-lists. Call
// it before serving.
func (s *Server) SetClientNetwork(n ClientNetwork) { s.network = n }

// clientCredentials authenticates the client of a token, introspection or
// revocation request by the method it used.
func (s *Server) clientCredentials(ctx context.Context, r *http.Request, form url.Values) (*AuthenticatedClient, error) {
	id, secret, basic, err := basicCredentials(r)
	if err != nil {
		return nil, errInvalidClient(true)
	}
	assertion, assertionType := form.Get("client_assertion"), form.Get("client_assertion_type")
	hasAssertion := assertion != "" || assertionType != ""
	postSecret := form.Get("client_secret")
	formID := form.Get("client_id")
	n := 0
	for _, b := range []bool{basic, hasAssertion, postSecret != ""} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, errInvalidRequest("more than one client authentication method used")
	}
	switch {
	case basic:
		if formID != "" && formID != id {
			return nil, errInvalidRequest("client_id does not match the authenticated client")
		}
		return s.checkSecret(ctx, id, secret, AuthClientSecretBasic, true)
	case postSecret != "":
		if formID == "" {
			return nil, errInvalidClient(false)
		}
		return s.checkSecret(ctx, formID, postSecret, AuthClientSecretPost, false)
	case hasAssertion:
		c, err := s.checkAssertion(ctx, assertionType, assertion, formID)
		if err != nil {
			return nil, err
		}
		return &AuthenticatedClient{Client: c, Method: AuthPrivateKeyJWT}, nil
	case formID != "":
		c, err := s.cfg.Clients.Client(ctx, formID)
		if errors.Is(err, authdb.ErrNotFound) {
			return nil, errInvalidClient(false)
		}
		if err != nil {
			return nil, err
		}
		if c.Type != authdb.Public {
			return nil, errInvalidClient(false)
		}
		return &AuthenticatedClient{Client: c, Method: AuthNone}, nil
	}
	return nil, errInvalidClient(true)
}

// basicCredentials decodes an HTTP Basic Authorization header. By RFC 6749
// §2.3.1 the id and secret are application/x-www-form-urlencoded before
// Basic encoding, so they are form-decoded here (openid-client sends "-"
// as "%2D").
func basicCredentials(r *http.Request) (id, secret string, ok bool, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", false, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", true, err
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", true, errors.New("no colon")
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", true, err
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", true, err
	}
	if id == "" {
		return "", "", true, errors.New("empty id")
	}
	return id, secret, true, nil
}

// dummyHash keeps the work of a failed lookup equal to a real comparison.
var dummyHash = HashSecret("lapis-no-such-client")

func (s *Server) checkSecret(ctx context.Context, id, secret, method string, basic bool) (*AuthenticatedClient, error) {
	got := HashSecret(secret)
	c, err := s.cfg.Clients.Client(ctx, id)
	if errors.Is(err, authdb.ErrNotFound) {
		subtle.ConstantTimeCompare(got, dummyHash)
		return nil, errInvalidClient(basic)
	}
	if err != nil {
		return nil, err
	}
	// The current secret, or the previous one during a rotation's
	// overlap (both compared in constant time).
	if c.Type != authdb.Confidential || len(c.SecretHash) != sha256.Size || !c.SecretMatches(secret, s.now()) {
		return nil, errInvalidClient(basic)
	}
	return &AuthenticatedClient{Client: c, Method: method}, nil
}

// checkAssertion authenticates a SMART Backend Services client by its
// signed JWT (conformance.md §3): RS384/ES384, key by kid (and jku only if
// it equals the registered JWKS URL), iss = sub = client id, aud = the
// token URL (SMART) or the issuer identifier (RFC 7523bis, openid-client's
// default), as a string or in an array; exp at most five minutes ahead,
// jti never reused. Every failure is invalid_client whose description
// names what failed (never a key).
func (s *Server) checkAssertion(ctx context.Context, typ, assertion, formID string) (*authdb.Client, error) {
	fail := func(desc string) error {
		e := errInvalidClient(false)
		e.Description = "client assertion: " + desc
		return e
	}
	switch {
	case typ != AssertionType:
		return nil, fail("client_assertion_type must be " + AssertionType)
	case assertion == "":
		return nil, fail("client_assertion is missing")
	case len(assertion) > maxAssertionBytes:
		return nil, fail("client_assertion is too large")
	}
	tok, err := jwt.ParseSigned(assertion, AssertionAlgorithms)
	if err != nil || len(tok.Headers) != 1 {
		return nil, fail("not a JWS compact serialization signed with RS384 or ES384")
	}
	hdr := tok.Headers[0]
	if hdr.KeyID == "" {
		return nil, fail("the header has no kid")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, fail("the claims are not a JSON object")
	}
	switch {
	case unverified.Issuer == "":
		return nil, fail("iss is missing")
	case unverified.Issuer != unverified.Subject:
		return nil, fail("iss and sub must both be the client id")
	case formID != "" && formID != unverified.Issuer:
		return nil, fail("iss does not match client_id")
	}
	c, err := s.cfg.Clients.Client(ctx, unverified.Issuer)
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, fail("iss is not a client registered for private_key_jwt")
	}
	if err != nil {
		return nil, err
	}
	if c.Type != authdb.Backend {
		return nil, fail("iss is not a client registered for private_key_jwt")
	}
	if jku, ok := hdr.ExtraHeaders["jku"]; ok {
		if s, _ := jku.(string); s == "" || c.JWKSURI == "" || s != c.JWKSURI {
			return nil, fail("jku is not the client's registered JWKS URL")
		}
	}
	key, err := s.assertionKey(ctx, c, hdr)
	if err != nil {
		return nil, fail(err.Error())
	}
	var claims jwt.Claims
	if err := tok.Claims(key.Key, &claims); err != nil {
		return nil, fail("the signature does not verify with the registered key of that kid")
	}
	now := s.now()
	switch {
	case claims.Issuer != c.ID || claims.Subject != c.ID:
		return nil, fail("iss and sub must both be the client id")
	case !s.assertionAudience(claims.Audience):
		return nil, fail("aud must be the token endpoint URL (" + s.ep.token + ") or the issuer (" + s.cfg.Issuer + ")")
	case claims.Expiry == nil:
		return nil, fail("exp is missing")
	case !now.Before(claims.Expiry.Time()):
		return nil, fail("exp has passed")
	case claims.Expiry.Time().After(now.Add(maxAssertionAhead + clockSkew)):
		return nil, fail("exp is more than 5 minutes ahead")
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(clockSkew)):
		return nil, fail("nbf is in the future")
	case claims.IssuedAt != nil && claims.IssuedAt.Time().After(now.Add(clockSkew)):
		return nil, fail("iat is in the future")
	case claims.ID == "":
		return nil, fail("jti is missing")
	case len(claims.ID) > maxJTILen:
		return nil, fail("jti is longer than 255 characters")
	}
	fresh, err := s.cfg.Assertions.UseAssertionID(ctx, c.ID, claims.ID, claims.Expiry.Time())
	if err != nil {
		return nil, err
	}
	if !fresh {
		return nil, fail("jti was already used")
	}
	return c, nil
}

// assertionAudience reports whether a client assertion's aud (a string or
// an array) holds the token endpoint URL or the issuer identifier.
func (s *Server) assertionAudience(aud jwt.Audience) bool {
	return aud.Contains(s.ep.token) || aud.Contains(s.cfg.Issuer)
}

// assertionKey finds the one registered key with the header's kid and a
// key type matching its alg. A jwks_uri is fetched again (rate-limited)
// when the kid is not found, to follow the client's key rotation. Its
// errors are safe to show the client (they name no key).
func (s *Server) assertionKey(ctx context.Context, c *authdb.Client, hdr jose.Header) (*jose.JSONWebKey, error) {
	find := func(set *jose.JSONWebKeySet) (*jose.JSONWebKey, int) {
		var found *jose.JSONWebKey
		n := 0
		for i := range set.Keys {
			k := &set.Keys[i]
			if k.KeyID == hdr.KeyID && keyFits(k, hdr.Algorithm) {
				found = k
				n++
			}
		}
		return found, n
	}
	n := 0
	switch {
	case c.JWKS != "":
		set, err := jwksfetch.Parse([]byte(c.JWKS))
		if err != nil {
			s.log.Warn("oauth: client's registered JWKS is invalid", "client_id", c.ID, "error", err.Error())
			return nil, errors.New("the client's registered JWKS is not usable")
		}
		var k *jose.JSONWebKey
		if k, n = find(set); n == 1 {
			return k, nil
		}
	case c.JWKSURI != "":
		set, err := s.cfg.JWKS.Get(ctx, c.JWKSURI, false)
		if err != nil {
			s.log.Warn("oauth: fetching client JWKS failed", "client_id", c.ID, "error", err.Error())
			return nil, errors.New("the client's jwks_uri could not be fetched")
		}
		var k *jose.JSONWebKey
		if k, n = find(set); n == 1 {
			return k, nil
		}
		if n == 0 {
			if set, err = s.cfg.JWKS.Get(ctx, c.JWKSURI, true); err == nil {
				if k, n = find(set); n == 1 {
					return k, nil
				}
			}
		}
	}
	if n > 1 {
		return nil, errors.New("several registered keys have that kid and fit alg")
	}
	return nil, errors.New("no registered key has that kid and fits alg")
}

// keyFits reports whether k is a public verification key usable with alg.
func keyFits(k *jose.JSONWebKey, alg string) bool {
	if (k.Algorithm != "" && k.Algorithm != alg) || (k.Use != "" && k.Use != "sig") {
		return false
	}
	switch alg {
	case string(jose.RS384):
		_, ok := k.Key.(*rsa.PublicKey)
		return ok
	case string(jose.ES384):
		pk, ok := k.Key.(*ecdsa.PublicKey)
		return ok && pk.Curve == elliptic.P384()
	}
	return false
}
