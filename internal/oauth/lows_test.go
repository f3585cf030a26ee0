package oauth_test

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/oauth"
)

// malleate returns the twin (r, n−s) of an ES256 token: a second string
// that verifies cryptographically with the same key.
func malleate(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	new(big.Int).Sub(elliptic.P256().Params().N, s).FillBytes(sig[32:])
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// respell changes the last character of the signature to one that the lax
// base64url decoder reads as the same bytes (its 4 unused bits differ).
func respell(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

// TestAccessTokenOneForm: an access token has exactly one valid string.
// Its malleated twin (r, n−s) and a re-spelling of its signature are
// refused by the Verifier, by introspection and by the FHIR API's
// authentication (which uses the Verifier); tokens issued before the
// LegacyHighSBefore cut-off (by an older Lapis) keep working until they
// expire.
func TestAccessTokenOneForm(t *testing.T) {
	e := newCodeEnv(t, "sqlite")
	ctx := context.Background()
	// Tokens issued after the default transition window.
	e.advance(oauth.DefaultLegacyHighSWindow + time.Minute)
	rs := e.register(oauth.Registration{Name: "rs", Type: "confidential", Scopes: []string{oauth.ScopeIntrospect}})
	for i := range 8 { // whichever S crypto/ecdsa picked, the token is low-S
		tok, _, err := e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.Verifier().Verify(ctx, tok); err != nil {
			t.Fatalf("token %d refused: %v", i, err)
		}
		for name, bad := range map[string]string{"malleated (r, n-s)": malleate(t, tok), "re-spelled signature": respell(tok)} {
			if _, err := e.srv.Verifier().Verify(ctx, bad); !errors.Is(err, oauth.ErrInvalidToken) {
				t.Fatalf("%s accepted: %v", name, err)
			}
			r := e.post(oauth.PathIntrospect, url.Values{"token": {bad}}, basic(rs.ClientID, rs.ClientSecret))
			if r.Status != 200 || strings.TrimSpace(r.Raw) != `{"active":false}` {
				t.Fatalf("%s introspected: %d %s", name, r.Status, r.Raw)
			}
		}
	}
	// Legacy tokens: issued before the cut-off, a high S is still accepted.
	tok, _, err := e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(oauth.DefaultLegacyHighSWindow + time.Minute)
	clock := func() time.Time { return now }
	legacy := oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: e.issuer, Keys: e.keys, Revocations: e.db, Now: clock,
		LegacyHighSBefore: now.Add(time.Minute)})
	if _, err := legacy.Verify(ctx, malleate(t, tok)); err != nil {
		t.Fatalf("high-S token issued before the cut-off refused: %v", err)
	}
	if _, err := legacy.Verify(ctx, respell(tok)); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("re-spelled signature accepted: %v", err)
	}
	strict := oauth.NewVerifier(oauth.VerifierConfig{Issuer: e.issuer, Audience: e.issuer, Keys: e.keys, Revocations: e.db, Now: clock,
		LegacyHighSBefore: now.Add(-time.Hour)})
	if _, err := strict.Verify(ctx, malleate(t, tok)); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("high-S token accepted: %v", err)
	}
	if _, err := strict.Verify(ctx, tok); err != nil {
		t.Fatalf("low-S token refused: %v", err)
	}
}
