package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

// The end-to-end test runs the SDK against the real lapis binary, built
// from this working tree on first use (not in TestMain, so the unit tests
// of this package never depend on the server compiling). It is skipped
// with -short.

// lapisServer is a running `lapis serve` on SQLite in a temp directory.
type lapisServer struct {
	*lapistest.Server
	t       *testing.T
	dataDir string
	base    string
}

// startLapis starts lapis serve (the binary is built on first use); with
// tlsFiles (cert, key, CA PEM) it serves HTTPS.
func startLapis(t *testing.T, tlsFiles ...string) *lapisServer {
	t.Helper()
	var opts lapistest.Options
	if len(tlsFiles) == 3 {
		opts.Args = []string{"--tls-cert", tlsFiles[0], "--tls-key", tlsFiles[1]}
		pool := x509.NewCertPool()
		ca, _ := os.ReadFile(tlsFiles[2])
		pool.AppendCertsFromPEM(ca)
		opts.RootCAs = pool
	}
	srv := lapistest.Start(t, opts)
	return &lapisServer{Server: srv, t: t, dataDir: srv.DataDir, base: srv.Base}
}

// cli runs an admin command with --json against the server's database.
func (s *lapisServer) cli(stdin string, v any, args ...string) {
	s.t.Helper()
	out := s.MustCLI(s.t, stdin, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("lapis %s output %q: %v", strings.Join(args[:2], " "), out, err)
	}
}

type clientOut struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func TestEndToEndAgainstLapis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test (builds and runs lapis)")
	}
	s := startLapis(t)
	ctx := context.Background()

	var key struct{ Key string }
	s.cli("", &key, "apikey", "create", "--name", "sdk e2e", "--scope", "system/*.cruds")
	var logs logbuf.Buffer
	logger := newTestLogger(&logs)

	var patientID string
	t.Run("APIKey CRUD search transaction", func(t *testing.T) {
		c, err := client.New(s.base, client.WithAuth(client.APIKey(key.Key)), client.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Create(ctx, json.RawMessage(`{"resourceType":"Patient","name":[{"family":"Sdktest","given":["Ada"]}],"birthDate":"1970-01-01"}`))
		if err != nil {
			t.Fatal(err)
		}
		patientID = p.ID
		if p.ID == "" || p.VersionID != "1" || p.LastUpdated.IsZero() {
			t.Fatalf("created %+v", p)
		}
		got, err := c.Read(ctx, "Patient", p.ID)
		if err != nil || got.ID != p.ID {
			t.Fatalf("read: %v", err)
		}
		up, err := c.Update(ctx, "Patient", p.ID, json.RawMessage(`{"resourceType":"Patient","id":"`+p.ID+`","active":true,"name":[{"family":"Sdktest","given":["Ada"]}]}`), client.IfMatch("1"))
		if err != nil || up.VersionID != "2" {
			t.Fatalf("update: %v %+v", err, up)
		}
		if _, err := c.Update(ctx, "Patient", p.ID, json.RawMessage(`{"resourceType":"Patient","id":"`+p.ID+`"}`), client.IfMatch("1")); !client.IsPreconditionFailed(err) {
			t.Fatalf("stale update: %v", err)
		}
		pt, err := c.Patch(ctx, "Patient", p.ID, json.RawMessage(`[{"op":"replace","path":"/active","value":false}]`))
		if err != nil || pt.VersionID != "3" || !strings.Contains(string(pt.Raw), `"active":false`) {
			t.Fatalf("patch: %v %+v", err, pt)
		}
		if v1, err := c.VRead(ctx, "Patient", p.ID, "1"); err != nil || v1.VersionID != "1" {
			t.Fatalf("vread: %v", err)
		}
		h, err := c.History(ctx, "Patient", p.ID, nil)
		if err != nil || len(h.Entries) != 3 {
			t.Fatalf("history: %v %+v", err, h)
		}

		// Transaction of five Observations for the patient.
		b := &client.Bundle{}
		for i := 0; i < 5; i++ {
			b.Entries = append(b.Entries, client.BundleEntry{
				FullURL: fmt.Sprintf("urn:uuid:00000000-0000-0000-0000-00000000000%d", i),
				Resource: &client.Resource{Raw: json.RawMessage(fmt.Sprintf(
					`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},"valueQuantity":{"value":%d,"unit":"/min"}}`, p.ID, 60+i))},
				Request: &client.EntryRequest{Method: "POST", URL: "Observation"},
			})
		}
		tr, err := c.Transaction(ctx, b)
		if err != nil || tr.Type != "transaction-response" || len(tr.Entries) != 5 || tr.Entries[0].Response.StatusCode() != 201 {
			t.Fatalf("transaction: %v %+v", err, tr)
		}
		// A failing transaction is atomic and typed.
		_, err = c.Transaction(ctx, json.RawMessage(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}},{"request":{"method":"DELETE","url":"Patient/does-not-exist-xyz"}},{"resource":{"resourceType":"Patient","bogus":1},"request":{"method":"POST","url":"Patient"}}]}`))
		var fe *client.Error
		if !errors.As(err, &fe) || fe.StatusCode < 400 || fe.StatusCode >= 500 || fe.Outcome == nil {
			t.Fatalf("failing transaction: %v", err)
		}

		// Search across pages of two.
		n := 0
		it := c.Search(ctx, "Observation", url.Values{"patient": {p.ID}, "code": {"http://loinc.org|8867-4"}, "_count": {"2"}})
		for it.Next(ctx) {
			n++
		}
		if it.Err() != nil || n != 5 || it.Pages() != 3 {
			t.Fatalf("search: %v, %d matches on %d pages", it.Err(), n, it.Pages())
		}

		// Delete, then read: Gone (Lapis currently answers 404 instead with
		// a scoped API key; without access control it answers 410).
		obsID := strings.Split(tr.Entries[0].Response.Location, "/")[1]
		if err := c.Delete(ctx, "Observation", obsID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx, "Observation", obsID); !client.IsGone(err) && !client.IsNotFound(err) {
			t.Fatalf("read after delete: %v", err)
		}
		if _, err := c.Read(ctx, "Patient", "no-such-patient"); !client.IsNotFound(err) {
			t.Fatalf("unknown: %v", err)
		}
	})

	t.Run("wrong API key", func(t *testing.T) {
		c, _ := client.New(s.base, client.WithAuth(client.APIKey("lapis_wrong_key_0123456789")))
		_, err := c.Read(ctx, "Patient", patientID)
		if !errors.Is(err, client.ErrUnauthorized) || strings.Contains(err.Error(), "wrong_key") {
			t.Fatalf("err = %v", err)
		}
		// X-API-Key header form.
		c2, _ := client.New(s.base, client.WithAuth(client.APIKeyHeader("X-API-Key", key.Key)))
		if _, err := c2.Read(ctx, "Patient", patientID); err != nil {
			t.Fatalf("X-API-Key: %v", err)
		}
	})

	t.Run("client credentials", func(t *testing.T) {
		var cc clientOut
		s.cli("", &cc, "client", "create", "--name", "sdk reporting", "--type", "confidential", "--scope", "system/Patient.rs system/Observation.rs")
		for _, style := range []client.AuthStyle{client.AuthStyleBasic, client.AuthStylePost} {
			auth := client.ClientCredentials(client.ClientCredentialsConfig{FHIRBase: s.base, ClientID: cc.ClientID, ClientSecret: cc.ClientSecret,
				Scopes: []string{"system/Patient.rs", "system/Observation.rs"}, AuthStyle: style, Logger: logger})
			c, err := client.New(s.base, client.WithAuth(auth), client.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := c.Read(ctx, "Patient", patientID); err != nil {
					t.Fatalf("style %d read %d: %v", style, i, err)
				}
			}
			if auth.TokenRequests() != 1 {
				t.Fatalf("token requests = %d", auth.TokenRequests())
			}
			// The scopes do not allow writes: a typed 403.
			_, err = c.Create(ctx, json.RawMessage(`{"resourceType":"Patient"}`))
			if statusOf(err) != http.StatusForbidden {
				t.Fatalf("write with read scopes: %v", err)
			}
		}
		bad := client.ClientCredentials(client.ClientCredentialsConfig{FHIRBase: s.base, ClientID: cc.ClientID, ClientSecret: "not-the-secret"})
		c, _ := client.New(s.base, client.WithAuth(bad))
		if _, err := c.Read(ctx, "Patient", patientID); !errors.Is(err, client.ErrUnauthorized) || strings.Contains(err.Error(), "not-the-secret") {
			t.Fatalf("bad secret: %v", err)
		}
	})

	t.Run("backend services", func(t *testing.T) {
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		for _, k := range []struct {
			alg string
			key crypto.Signer
		}{{"RS384", rsaKey}, {"ES384", ecKey}} {
			jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.key.Public(), KeyID: "k-" + k.alg, Algorithm: k.alg, Use: "sig"}}})
			f := filepath.Join(t.TempDir(), "jwks.json")
			os.WriteFile(f, jwks, 0o600)
			var bc clientOut
			s.cli("", &bc, "client", "create", "--name", "sdk backend "+k.alg, "--type", "backend", "--jwks-file", f, "--scope", "system/*.rs")
			auth := client.BackendServices(client.BackendServicesConfig{FHIRBase: s.base, ClientID: bc.ClientID, Key: k.key,
				KeyID: "k-" + k.alg, Alg: k.alg, Scopes: []string{"system/*.rs"}})
			c, err := client.New(s.base, client.WithAuth(auth))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, err := range c.SearchAll(ctx, "Observation", url.Values{"patient": {patientID}}) {
				if err != nil {
					t.Fatalf("%s: %v", k.alg, err)
				}
				n++
			}
			if n != 4 {
				t.Fatalf("%s: %d observations", k.alg, n)
			}
			// A second token request needs a new jti; force one.
			tok, _ := auth.Token(ctx)
			req, _ := http.NewRequest("GET", s.base, nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			auth.Invalidate(req)
			if _, err := c.Read(ctx, "Patient", patientID); err != nil || auth.TokenRequests() != 2 {
				t.Fatalf("%s second token: %v (%d requests)", k.alg, err, auth.TokenRequests())
			}
		}
	})

	t.Run("PKCE login and refresh", func(t *testing.T) {
		// A loopback redirect on any port (RFC 8252 §7.3): the login
		// listens on a free one.
		redirect := "http://127.0.0.1/callback"
		var pub clientOut
		s.cli("", &pub, "client", "create", "--name", "sdk cli", "--type", "public", "--redirect-uri", redirect,
			"--scope", "launch/patient openid fhirUser offline_access patient/*.rs")
		var user struct{ Username string }
		s.cli("pw-for-the-sdk-e2e\n", &user, "user", "create", "--username", "sdk.user", "--password-stdin", "--fhir-user", "Patient/"+patientID)
		login := &client.PKCELogin{FHIRBase: s.base, ClientID: pub.ClientID,
			Scopes:      []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"},
			OpenBrowser: func(u string) error { go userAgent(t, s.base, u, user.Username, "pw-for-the-sdk-e2e"); return nil }}
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		tok, err := login.Run(lctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Patient != patientID || tok.RefreshToken == "" {
			t.Fatalf("token = %v (patient %q)", tok, tok.Patient)
		}
		var rotated []string
		var mu sync.Mutex
		auth := client.RefreshToken(client.RefreshConfig{FHIRBase: s.base, ClientID: pub.ClientID, Initial: tok,
			OnRotate: func(t client.Token) { mu.Lock(); rotated = append(rotated, t.RefreshToken); mu.Unlock() }})
		c, _ := client.New(s.base, client.WithAuth(auth))
		if _, err := c.Read(ctx, "Patient", patientID); err != nil || auth.TokenRequests() != 0 {
			t.Fatalf("read with the login's token: %v (%d token requests)", err, auth.TokenRequests())
		}
		// Force a refresh.
		req, _ := http.NewRequest("GET", s.base, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		auth.Invalidate(req)
		if _, err := c.Read(ctx, "Patient", patientID); err != nil || auth.TokenRequests() != 1 {
			t.Fatalf("read after refresh: %v (%d token requests)", err, auth.TokenRequests())
		}
		mu.Lock()
		defer mu.Unlock()
		if len(rotated) != 1 || rotated[0] == "" {
			t.Fatalf("OnRotate calls: %d", len(rotated))
		}
		// The access token as a fixed bearer token.
		fresh, _ := auth.Token(ctx)
		cb, _ := client.New(s.base, client.WithAuth(client.BearerToken(fresh.AccessToken)))
		if _, err := cb.Read(ctx, "Patient", patientID); err != nil {
			t.Fatalf("BearerToken: %v", err)
		}
	})

	t.Run("TLS with a private CA", func(t *testing.T) {
		cert, key, ca := writeTLSFiles(t)
		ts := startLapis(t, cert, key, ca)
		var k struct{ Key string }
		ts.cli("", &k, "apikey", "create", "--name", "tls", "--scope", "system/*.rs")
		c, err := client.New(ts.base, client.WithAuth(client.APIKey(k.Key)), client.WithTLS(client.TLSConfig{CAFile: ca}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Capabilities(ctx); err != nil {
			t.Fatalf("custom CA: %v", err)
		}
		if _, err := c.SearchPage(ctx, "Patient", nil); err != nil {
			t.Fatalf("search over TLS: %v", err)
		}
		sys, _ := client.New(ts.base, client.WithAuth(client.APIKey(k.Key)))
		if _, err := sys.Capabilities(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("system roots trusted a private CA: %v", err)
		}
	})

	if out := logs.String(); strings.Contains(out, key.Key) || strings.Contains(out, "Bearer ") {
		t.Fatal("credentials in the logs")
	}
}

// writeTLSFiles creates a private CA and a certificate for 127.0.0.1
// signed by it; it returns the certificate, key and CA file names.
func writeTLSFiles(t *testing.T) (cert, key, ca string) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "SDK e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	cert, key, ca = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return cert, key, ca
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func statusOf(err error) int {
	var fe *client.Error
	if errors.As(err, &fe) {
		return fe.StatusCode
	}
	return 0
}

var (
	inputRE = regexp.MustCompile(`<input\s[^>]*>`)
	attrRE  = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
)

// formInputs scrapes name → values of the inputs of an HTML page (only
// checked checkboxes).
func formInputs(body string) url.Values {
	v := url.Values{}
	for _, el := range inputRE.FindAllString(body, -1) {
		var typ, name, value string
		checked := false
		for _, m := range attrRE.FindAllStringSubmatch(strings.TrimPrefix(el, "<input"), -1) {
			switch m[1] {
			case "type":
				typ = m[2]
			case "name":
				name = html.UnescapeString(m[2])
			case "value":
				value = html.UnescapeString(m[2])
			case "checked":
				checked = true
			}
		}
		if name == "" || ((typ == "checkbox" || typ == "radio") && !checked) || typ == "submit" {
			continue
		}
		v.Add(name, value)
	}
	return v
}

// userAgent plays the user in the browser: it opens the authorization
// URL, signs in, approves the consent page, and follows the redirect to
// the SDK's loopback callback.
func userAgent(t *testing.T, base, authURL, username, password string) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	do := func(req *http.Request) string {
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("user agent: %v", err)
			return ""
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String()
	}
	get := func(u string) string {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Errorf("user agent: %v", err)
			return ""
		}
		return do(req)
	}
	post := func(u string, form url.Values) string {
		req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", strings.TrimSuffix(base, "/fhir"))
		return do(req)
	}
	loginPage := get(authURL)
	form := formInputs(loginPage)
	form.Set("username", username)
	form.Set("password", password)
	consent := post(base+"/auth/login", form)
	cf := formInputs(consent)
	cf.Set("decision", "approve")
	done := post(base+"/auth/consent", cf)
	if !strings.Contains(done, "Login complete") {
		t.Errorf("user agent: final page:\n%.2000s", done)
	}
}
