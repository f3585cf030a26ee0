package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionLifetime is the lifetime of a client assertion; SMART Backend
// Services allows at most five minutes.
const assertionLifetime = 4 * time.Minute

// BackendServicesConfig configures SMART Backend Services authorization:
// the client credentials grant with a private_key_jwt client assertion
// (RFC 7523) signed with the client's private key, whose public key the
// server knows (registered JWKS or jwks_uri).
type BackendServicesConfig struct {
	// TokenURL is the token endpoint (also the assertion's audience);
	// discovered from FHIRBase when empty.
	TokenURL string
	// FHIRBase is the FHIR base URL used for discovery.
	FHIRBase string
	// ClientID is the registered backend client's id (iss and sub of the
	// assertion).
	ClientID string
	// Key is the private key: an *rsa.PrivateKey, *ecdsa.PrivateKey (P-384)
	// or any crypto.Signer (HSM, KMS) of those kinds. Alternatively give
	// KeyPEM (PKCS#8, PKCS#1 or SEC 1) or KeyJWK (a private JWK).
	Key    crypto.Signer
	KeyPEM []byte
	KeyJWK []byte
	// KeyID is the JWS "kid" header; taken from KeyJWK when empty there.
	KeyID string
	// Alg is "RS384" or "ES384"; by default RS384 for RSA keys and ES384
	// for EC keys.
	Alg string
	// Scopes are requested, e.g. "system/*.rs".
	Scopes []string
	// Margin, HTTPClient, Logger: as in ClientCredentialsConfig.
	Margin     time.Duration
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// BackendServices returns an *OAuth for SMART Backend Services. Every
// token request carries a freshly signed assertion with iss = sub =
// ClientID, aud = the token URL, a new random jti and an expiry under five
// minutes. Configuration errors (no key, wrong algorithm for the key) are
// reported by New and by every Token call.
func BackendServices(cfg BackendServicesConfig) *OAuth {
	o := newOAuth("backend_services", cfg.TokenURL, cfg.FHIRBase, cfg.Margin, cfg.HTTPClient, cfg.Logger)
	o.clientID = cfg.ClientID
	signer, err := backendSigner(cfg)
	if err != nil {
		o.cfgErr = errors.Join(o.cfgErr, err)
	}
	if cfg.ClientID == "" {
		o.cfgErr = errors.Join(o.cfgErr, errors.New("oauth backend_services: ClientID is required"))
	}
	scope := strings.Join(cfg.Scopes, " ")
	clientID := cfg.ClientID
	o.grant = func(tokenURL, _ string) (url.Values, error) {
		assertion, err := signAssertion(signer, clientID, tokenURL, o.now())
		if err != nil {
			return nil, err
		}
		f := url.Values{
			"grant_type":            {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		}
		if scope != "" {
			f.Set("scope", scope)
		}
		return f, nil
	}
	return o
}

// signAssertion builds and signs one client assertion.
func signAssertion(signer jose.Signer, clientID, aud string, now time.Time) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{aud},
		ID:       hex.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", errors.New("oauth backend_services: signing the client assertion failed")
	}
	return s, nil
}

// backendSigner turns the configured key into a go-jose signer.
func backendSigner(cfg BackendServicesConfig) (jose.Signer, error) {
	var key any
	kid := cfg.KeyID
	n := 0
	if cfg.Key != nil {
		key, n = cfg.Key, n+1
	}
	if len(cfg.KeyPEM) > 0 {
		k, err := parsePrivateKeyPEM(cfg.KeyPEM)
		if err != nil {
			return nil, err
		}
		key, n = k, n+1
	}
	if len(cfg.KeyJWK) > 0 {
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(cfg.KeyJWK, &jwk); err != nil || jwk.IsPublic() {
			return nil, errors.New("oauth backend_services: KeyJWK is not a private JWK")
		}
		s, ok := jwk.Key.(crypto.Signer)
		if !ok {
			return nil, errors.New("oauth backend_services: KeyJWK is not a signing key")
		}
		key, n = s, n+1
		if kid == "" {
			kid = jwk.KeyID
		}
	}
	if n != 1 {
		return nil, errors.New("oauth backend_services: exactly one of Key, KeyPEM and KeyJWK is required")
	}
	signer := key.(crypto.Signer)
	alg := jose.SignatureAlgorithm(cfg.Alg)
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		if alg == "" {
			alg = jose.RS384
		}
		if alg != jose.RS384 {
			return nil, fmt.Errorf("oauth backend_services: algorithm %q does not fit an RSA key (use RS384)", cfg.Alg)
		}
		if pub.N.BitLen() < 2048 {
			return nil, errors.New("oauth backend_services: RSA keys must have at least 2048 bits")
		}
	case *ecdsa.PublicKey:
		if alg == "" {
			alg = jose.ES384
		}
		if alg != jose.ES384 || pub.Curve != elliptic.P384() {
			return nil, fmt.Errorf("oauth backend_services: algorithm %q does not fit this EC key (use ES384 with P-384)", cfg.Alg)
		}
	default:
		return nil, errors.New("oauth backend_services: the key must be RSA or ECDSA P-384")
	}
	var sk any = signer
	switch signer.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
	default:
		sk = cryptosigner.Opaque(signer)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: sk}, opts)
	if err != nil {
		return nil, errors.New("oauth backend_services: cannot sign with this key")
	}
	return s, nil
}

// parsePrivateKeyPEM reads a PKCS#8, PKCS#1 or SEC 1 private key.
func parsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("oauth backend_services: KeyPEM holds no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("oauth backend_services: KeyPEM is not a PKCS#8, PKCS#1 or SEC 1 private key")
}
