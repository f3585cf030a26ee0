package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"CapabilityStatement"}`))
	})
}

// caFile writes the test server's certificate (its own CA) as a PEM file.
func caFile(t *testing.T, srv *httptest.Server) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSCustomCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(okHandler())
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{CAFile: caFile(t, srv)}))
	if _, err := c.Capabilities(context.Background()); err != nil {
		t.Fatalf("custom CA: %v", err)
	}
	// The same bundle given in memory.
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c2 := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{CAPEM: pemBytes}))
	if _, err := c2.Capabilities(context.Background()); err != nil {
		t.Fatalf("CAPEM: %v", err)
	}
}

func TestTLSSystemRootsRejectPrivateCA(t *testing.T) {
	srv := httptest.NewTLSServer(okHandler())
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/fhir")
	_, err := c.Capabilities(context.Background())
	var uae x509.UnknownAuthorityError
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) && !errors.As(err, &uae) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error does not say it is about the certificate: %v", err)
	}
}

// generatedCA returns a PEM self-signed CA certificate unrelated to the
// httptest certificate.
func generatedCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "Unrelated Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestTLSWrongCAFails(t *testing.T) {
	srv := httptest.NewTLSServer(okHandler())
	defer srv.Close()
	p := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(p, generatedCA(t), 0o600)
	c := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{CAFile: p}))
	_, err := c.Capabilities(context.Background())
	var uae x509.UnknownAuthorityError
	var cve *tls.CertificateVerificationError
	if err == nil || (!errors.As(err, &cve) && !errors.As(err, &uae)) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("unclear error: %v", err)
	}
}

func TestTLSBadBundleIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("not a certificate"), 0o600)
	for _, tc := range []TLSConfig{{CAFile: filepath.Join(dir, "missing.pem")}, {CAFile: empty}, {CAPEM: []byte("junk")}} {
		if _, err := New("https://x/fhir", WithTLS(tc)); err == nil {
			t.Errorf("New accepted %+v", tc)
		}
	}
	// WithTLS over a non-*http.Transport is refused rather than ignored.
	hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("x") })}
	if _, err := New("https://x/fhir", WithHTTPClient(hc), WithTLS(TLSConfig{})); err == nil {
		t.Error("WithTLS silently ignored")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTLSMinimumVersion12(t *testing.T) {
	srv := httptest.NewUnstartedServer(okHandler())
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{CAFile: caFile(t, srv)}))
	_, err := c.Capabilities(context.Background())
	if err == nil {
		t.Fatal("TLS 1.1 server accepted")
	}
	if !strings.Contains(err.Error(), "protocol version") {
		t.Logf("error (not naming the version): %v", err)
	}
	// Even the insecure option keeps the minimum.
	c2 := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{InsecureSkipVerifyDangerous: true}))
	if _, err := c2.Capabilities(context.Background()); err == nil {
		t.Fatal("TLS 1.1 server accepted with InsecureSkipVerifyDangerous")
	}
	// The default client (no WithTLS) too.
	tr := newTestClient(t, srv.URL+"/fhir").hc.Transport.(*http.Transport)
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("default transport TLS config = %+v", tr.TLSClientConfig)
	}
}

func TestTLSInsecureSkipVerifyWarnsOnce(t *testing.T) {
	srv := httptest.NewTLSServer(okHandler())
	defer srv.Close()
	var logs logBuffer
	c := newTestClient(t, srv.URL+"/fhir", WithTLS(TLSConfig{InsecureSkipVerifyDangerous: true}), WithLogger(logs.logger()))
	for i := 0; i < 3; i++ {
		if _, err := c.Capabilities(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "DISABLED"); n != 1 || !strings.Contains(out, `"level":"WARN"`) {
		t.Fatalf("warnings = %d in %s", n, out)
	}
}

func TestTLSAppliesToTokenRequests(t *testing.T) {
	tokSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"tls-token","token_type":"Bearer","expires_in":3600}`))
	}))
	defer tokSrv.Close()
	fhirSrv := httptest.NewTLSServer(okHandler())
	defer fhirSrv.Close()
	// httptest servers share one certificate, so one CA file trusts both.
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: tokSrv.URL + "/token", ClientID: "a", ClientSecret: "b"})
	c := newTestClient(t, fhirSrv.URL+"/fhir", WithAuth(auth), WithTLS(TLSConfig{CAFile: caFile(t, fhirSrv)}))
	if _, err := c.Capabilities(context.Background()); err != nil {
		t.Fatalf("token request did not use the client's CA bundle: %v", err)
	}
}

func TestRedirectToOtherOriginDropsCredentials(t *testing.T) {
	var seen []http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"Patient","id":"x"}`))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/Patient/same" {
			http.Redirect(w, r, "/fhir/Patient/x", http.StatusFound)
			return
		}
		if r.URL.Path == "/fhir/Patient/x" {
			seen = append(seen, r.Header.Clone())
			w.Header().Set("Content-Type", fhirJSON)
			w.Write([]byte(`{"resourceType":"Patient","id":"x"}`))
			return
		}
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	for _, a := range []Auth{APIKeyHeader("X-API-Key", "k1"), APIKey("k2"), Basic("u", "p")} {
		seen = nil
		c := newTestClient(t, srv.URL+"/fhir", WithAuth(a))
		if _, err := c.Read(context.Background(), "Patient", "away"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(context.Background(), "Patient", "same"); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 {
			t.Fatalf("%d requests seen", len(seen))
		}
		if seen[0].Get("X-API-Key") != "" || seen[0].Get("Authorization") != "" {
			t.Errorf("%v: credentials sent to another origin: %v", a, seen[0])
		}
		if seen[1].Get("X-API-Key") == "" && seen[1].Get("Authorization") == "" {
			t.Errorf("%v: credentials dropped on a same-origin redirect", a)
		}
	}
}
