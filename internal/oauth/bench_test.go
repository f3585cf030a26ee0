package oauth_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// benchPost sends b.N form POSTs from 16 concurrent clients over
// keep-alive connections; body(i) builds the i-th request.
func benchPost(b *testing.B, u string, body func(i int64) string, auth string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1) - 1
			req, _ := http.NewRequest("POST", u, strings.NewReader(body(i)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func BenchmarkClientCredentialsSecret(b *testing.B) {
	dialects(b, func(b *testing.B, e *env) {
		c := e.register(oauth.Registration{Name: "svc", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		req, _ := http.NewRequest("POST", "/", nil)
		basic(c.ClientID, c.ClientSecret)(req)
		benchPost(b, e.token, func(int64) string { return "grant_type=client_credentials&scope=system%2F%2A.rs" }, req.Header.Get("Authorization"))
	})
}

func BenchmarkClientCredentialsPrivateKeyJWT(b *testing.B) {
	bk := newBackendKeys(b)
	dialects(b, func(b *testing.B, e *env) {
		c := e.register(oauth.Registration{Name: "bulk", Type: authdb.Backend, JWKS: bk.public, Scopes: []string{"system/*.read"}})
		// Assertions are signed before the timer starts: only the server's
		// work (and HTTP) is measured.
		bodies := make([]string, b.N)
		exp := time.Now().Add(5 * time.Minute).Unix()
		for i := range bodies {
			a := sign(b, bk.ec, jose.ES384, "4b49a739d1eb115b3225f4cf9beb6d1b",
				map[string]any{"iss": c.ClientID, "sub": c.ClientID, "aud": e.token, "exp": exp, "jti": jti()}, nil)
			bodies[i] = url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.read"},
				"client_assertion_type": {oauth.AssertionType}, "client_assertion": {a}}.Encode()
		}
		benchPost(b, e.token, func(i int64) string { return bodies[i] }, "")
	})
}

func BenchmarkIntrospection(b *testing.B) {
	dialects(b, func(b *testing.B, e *env) {
		c := e.register(oauth.Registration{Name: "svc", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		tok, err := (&clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: e.token}).Token(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "/", nil)
		basic(c.ClientID, c.ClientSecret)(req)
		body := url.Values{"token": {tok.AccessToken}}.Encode()
		benchPost(b, e.issuer+oauth.PathIntrospect, func(int64) string { return body }, req.Header.Get("Authorization"))
	})
}

// BenchmarkVerify is the FHIR API's hot path: a cached, verified token
// plus the revocation lookup.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, "sqlite")
	ctx := context.Background()
	tok, _, err := e.srv.IssueAccessToken(ctx, oauth.AccessClaims{Subject: "s", ClientID: "c", Scope: "system/*.rs"}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	v := e.srv.Verifier()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
