package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionChecker verifies client assertions the way a SMART server
// does, with go-jose, and remembers the jtis it saw.
type assertionChecker struct {
	t     *testing.T
	pub   crypto.PublicKey
	alg   jose.SignatureAlgorithm
	kid   string
	aud   string
	mu    sync.Mutex
	jtis  map[string]bool
	count int
}

func (a *assertionChecker) check(_ *http.Request, form url.Values) (int, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count++
	if form.Get("grant_type") != "client_credentials" ||
		form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form.Has("client_secret") {
		a.t.Errorf("form = %v", form)
		return 400, "invalid_request"
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{a.alg})
	if err != nil {
		a.t.Errorf("parse assertion: %v", err)
		return 401, "invalid_client"
	}
	h := tok.Headers[0]
	if h.KeyID != a.kid || h.ExtraHeaders[jose.HeaderType] != "JWT" {
		a.t.Errorf("headers = %+v", h)
	}
	var c jwt.Claims
	if err := tok.Claims(a.pub, &c); err != nil {
		a.t.Errorf("signature: %v", err)
		return 401, "invalid_client"
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testClientID, Subject: testClientID, AnyAudience: jwt.Audience{a.aud}, Time: time.Now()}, 0); err != nil {
		a.t.Errorf("claims: %v", err)
		return 401, "invalid_client"
	}
	if life := c.Expiry.Time().Sub(time.Now()); life > 5*time.Minute || life <= 0 {
		a.t.Errorf("assertion lifetime %v", life)
	}
	if c.ID == "" || a.jtis[c.ID] {
		a.t.Errorf("jti %q missing or reused", c.ID)
		return 401, "invalid_client"
	}
	a.jtis[c.ID] = true
	return 0, ""
}

func TestBackendServicesAssertions(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	jwkJSON, _ := json.Marshal(jose.JSONWebKey{Key: rsaKey, KeyID: "jwk-kid", Algorithm: "RS384"})

	cases := []struct {
		name string
		cfg  BackendServicesConfig
		pub  crypto.PublicKey
		alg  jose.SignatureAlgorithm
		kid  string
	}{
		{"RS384 key", BackendServicesConfig{Key: rsaKey, KeyID: "rsa-1", Alg: "RS384"}, &rsaKey.PublicKey, jose.RS384, "rsa-1"},
		{"ES384 PEM", BackendServicesConfig{KeyPEM: ecPEM, KeyID: "ec-1"}, &ecKey.PublicKey, jose.ES384, "ec-1"},
		{"RS384 JWK", BackendServicesConfig{KeyJWK: jwkJSON}, &rsaKey.PublicKey, jose.RS384, "jwk-kid"},
		{"ES384 opaque signer", BackendServicesConfig{Key: opaqueSigner{ecKey}, KeyID: "hsm"}, &ecKey.PublicKey, jose.ES384, "hsm"},
		{"RS384 opaque signer", BackendServicesConfig{Key: opaqueSigner{rsaKey}, KeyID: "kms"}, &rsaKey.PublicKey, jose.RS384, "kms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ch := &assertionChecker{t: t, pub: tc.pub, alg: tc.alg, kid: tc.kid, aud: ts.url(), jtis: map[string]bool{}}
			ts.check = ch.check
			cfg := tc.cfg
			cfg.TokenURL, cfg.ClientID, cfg.Scopes = ts.url(), testClientID, []string{"system/*.rs"}
			auth := BackendServices(cfg)
			_, base := tokenFHIR(t, ts, nil)
			c := newTestClient(t, base, WithAuth(auth))
			// Three token requests: each must carry a fresh assertion.
			for i := 0; i < 3; i++ {
				if _, err := c.Capabilities(context.Background()); err != nil {
					t.Fatal(err)
				}
				auth.mu.Lock()
				auth.tok = nil // force renewal
				auth.mu.Unlock()
			}
			if ch.count != 3 || len(ch.jtis) != 3 {
				t.Fatalf("assertions %d, distinct jtis %d", ch.count, len(ch.jtis))
			}
			ts.mu.Lock()
			scope := ts.forms[0].Get("scope")
			ts.mu.Unlock()
			if scope != "system/*.rs" {
				t.Errorf("scope = %q", scope)
			}
		})
	}
}

// opaqueSigner hides the concrete key type, like an HSM or KMS signer.
type opaqueSigner struct{ k crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, d, opts)
}

func TestBackendServicesRejectsBadKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: &rsaKey.PublicKey})
	bad := map[string]BackendServicesConfig{
		"no key":         {},
		"RSA with ES":    {Key: rsaKey, Alg: "ES384"},
		"RS256":          {Key: rsaKey, Alg: "RS256"},
		"P-256":          {Key: p256},
		"small RSA":      {Key: smallRSA},
		"public JWK":     {KeyJWK: pubJWK},
		"garbage PEM":    {KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0, 0, 0}})},
		"two keys":       {Key: rsaKey, KeyJWK: pubJWK},
		"not PEM at all": {KeyPEM: []byte("hello")},
	}
	for name, cfg := range bad {
		cfg.TokenURL, cfg.ClientID = "https://x/token", testClientID
		a := BackendServices(cfg)
		if _, err := New("https://x/fhir", WithAuth(a)); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
		if _, err := a.Token(context.Background()); err == nil {
			t.Errorf("%s: Token succeeded", name)
		} else if strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: error shows key material: %v", name, err)
		}
	}
}
