package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// gwServer is a lapis serve process speaking TLS.
type gwServer struct {
	*lapistest.Server
	t      *testing.T
	base   string // https://127.0.0.1:PORT/fhir
	addr   string
	client *http.Client
}

// gwCert writes a self-signed certificate for 127.0.0.1 into dir and
// returns the certificate and key paths and a pool that trusts it.
func gwCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "lapis e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

func startGateway(t *testing.T, dbURL string, extra ...string) *gwServer {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := gwCert(t, dir)
	srv := lapistest.Start(t, lapistest.Options{DataDir: filepath.Join(dir, "data"), Database: dbURL, RootCAs: pool,
		Args: append([]string{"--tls-cert", certFile, "--tls-key", keyFile, "--log-level", "debug"}, extra...)})
	if !strings.HasPrefix(srv.Base, "https://127.0.0.1:") {
		t.Fatalf("TLS server's FHIR base %q", srv.Base)
	}
	return &gwServer{Server: srv, t: t, base: srv.Base, addr: srv.Addr, client: srv.Client}
}

func (s *gwServer) lapis(args ...string) string {
	s.t.Helper()
	return s.MustCLI(s.t, "", args...)
}

type gwResp struct {
	status int
	header http.Header
	body   string
}

func (s *gwServer) do(method, u string, body io.Reader, hdr ...string) gwResp {
	s.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return gwResp{resp.StatusCode, resp.Header, string(b)}
}

func TestGatewayTLS(t *testing.T) {
	t.Parallel()
	for name, dbURL := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startGateway(t, dbURL(t), "--trusted-proxies", "127.0.0.1/32", "--allow-ip", "127.0.0.0/8,2001:db8::/32", "--metrics-addr", "127.0.0.1:0")
			// The metrics listener is logged before "lapis serving".
			var ml struct{ Addr string }
			if err := json.Unmarshal([]byte(s.WaitLog(t, time.Minute, `"msg":"metrics listener"`)), &ml); err != nil || ml.Addr == "" {
				t.Fatalf("metrics listener line: %v", err)
			}
			metricsAddr := ml.Addr
			testGatewayTLS(t, s)
			// The separate metrics listener (plain HTTP, unrestricted).
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), "lapis_http_requests_total") {
				t.Fatalf("--metrics-addr: %d", resp.StatusCode)
			}
		})
	}
}

func testGatewayTLS(t *testing.T, s *gwServer) {
	// TLS versions: 1.1 refused, 1.2 and 1.3 accepted.
	for _, c := range []struct {
		v  uint16
		ok bool
	}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}, {tls.VersionTLS13, true}} {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: c.v, MaxVersion: c.v})
		if (err == nil) != c.ok {
			t.Errorf("TLS version %x: err %v", c.v, err)
		}
		if err == nil {
			conn.Close()
		}
	}

	// A confidential client restricted to a network the test is not on,
	// and one browser origin.
	var cl struct{ ClientID, ClientSecret string }
	out := s.lapis("client", "create", "--name", "gw", "--type", "confidential", "--scope", "system/*.rs",
		"--allow-ip", "192.0.2.0/24", "--cors-origin", "https://app.example", "--json")
	if err := json.Unmarshal([]byte(out), &struct {
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}{&cl.ClientID, &cl.ClientSecret}); err != nil || cl.ClientID == "" {
		t.Fatalf("client create: %q %v", out, err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	token := func() (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/auth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(cl.ClientID), url.QueryEscape(cl.ClientSecret))
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		tb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = json.Unmarshal(tb, &tok)
		return resp.StatusCode, tok.AccessToken, resp.Header
	}
	// eventually polls until f is true: running servers pick rule changes
	// up within seconds.
	eventually := func(what string, f func() bool) {
		t.Helper()
		poll.Until(t, 20*time.Second, what, f)
	}
	// The allow-list excludes 127.0.0.1: no token either (invalid_client,
	// as for a wrong secret).
	if status, _, _ := token(); status != http.StatusUnauthorized {
		t.Fatalf("token from outside the client's allow-list: %d", status)
	}
	// Widen it with the CLI: a token, and FHIR access.
	s.lapis("client", "network", cl.ClientID, "--allow-ip", "127.0.0.1", "--allow-ip", "192.0.2.0/24")
	var bearer string
	eventually("token after widening", func() bool {
		status, at, h := token()
		if status == 200 && h.Get("Strict-Transport-Security") != "max-age=63072000; includeSubDomains" {
			t.Fatalf("no HSTS on the token response: %v", h)
		}
		bearer = "Bearer " + at
		return status == 200
	})
	var r gwResp
	eventually("FHIR after widening", func() bool {
		r = s.do("GET", s.base+"/Patient?name=Secretname&_count=1", nil, "Authorization", bearer)
		return r.status == 200
	})
	// Narrow it again: the token already issued is refused on the FHIR API,
	// with a 403 that says nothing.
	s.lapis("client", "network", cl.ClientID, "--allow-ip", "192.0.2.0/24")
	eventually("FHIR after narrowing", func() bool {
		r = s.do("GET", s.base+"/Patient?name=Secretname&_count=1", nil, "Authorization", bearer)
		return r.status == 403
	})
	if !strings.Contains(r.body, `"forbidden"`) || strings.Contains(r.body, "192.0.2") {
		t.Fatalf("restricted client: %d %s", r.status, r.body)
	}
	s.lapis("client", "network", cl.ClientID, "--allow-ip", "127.0.0.1", "--allow-ip", "192.0.2.0/24")
	eventually("FHIR after widening again", func() bool {
		r = s.do("GET", s.base+"/Patient?name=Secretname&_count=1", nil, "Authorization", bearer)
		return r.status == 200
	})
	for h, want := range map[string]string{
		"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		"Cache-Control":             "no-store",
		"X-Content-Type-Options":    "nosniff",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if len(r.header.Get("X-Request-ID")) != 32 {
		t.Errorf("X-Request-ID %q", r.header.Get("X-Request-ID"))
	}
	if r = s.do("GET", s.base+"/Patient?_count=1", nil, "Authorization", bearer, "X-Request-ID", "trace-42"); r.header.Get("X-Request-ID") != "trace-42" {
		t.Errorf("request id not kept: %q", r.header.Get("X-Request-ID"))
	}

	// CORS: the registered origin is echoed; another origin is refused.
	r = s.do("GET", s.base+"/Patient?_count=1", nil, "Authorization", bearer, "Origin", "https://app.example")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("CORS actual request: %d %v", r.status, r.header)
	}
	if r = s.do("GET", s.base+"/Patient?_count=1", nil, "Authorization", bearer, "Origin", "https://evil.example"); r.status != 403 {
		t.Fatalf("unregistered origin: %d", r.status)
	}
	r = s.do("OPTIONS", s.base+"/Patient", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
	if r = s.do("OPTIONS", s.base+"/Patient", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET"); r.status != 403 {
		t.Fatalf("preflight from another origin: %d", r.status)
	}

	// The peer (127.0.0.1) is a trusted proxy: a forwarded address outside
	// the global allow-list is refused, one inside it accepted.
	if r = s.do("GET", s.base+"/Patient?_count=1", nil, "Authorization", bearer, "X-Forwarded-For", "198.51.100.7"); r.status != 403 {
		t.Fatalf("forwarded address outside the allow-list: %d", r.status)
	}
	if r = s.do("GET", s.base+"/.well-known/smart-configuration", nil, "X-Forwarded-For", "2001:db8::9"); r.status != 200 {
		t.Fatalf("forwarded IPv6 address inside the allow-list: %d", r.status)
	}
	// API-key allow-lists see the resolved address too.
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(s.lapis("apikey", "create", "--name", "gw", "--scope", "system/*.rs", "--allow-ip", "2001:db8:7::/48", "--json")), &key); err != nil || key.Key == "" {
		t.Fatalf("apikey create: %v", err)
	}
	if r = s.do("GET", s.base+"/Patient?_count=1", nil, "X-API-Key", key.Key, "X-Forwarded-For", "2001:db8:7::1"); r.status != 200 {
		t.Fatalf("API key from its forwarded network: %d %s", r.status, r.body)
	}
	if r = s.do("GET", s.base+"/Patient?_count=1", nil, "X-API-Key", key.Key); r.status != 401 {
		t.Fatalf("API key from elsewhere: %d", r.status)
	}
	// Scanner user agents are refused by default.
	if r = s.do("GET", s.base+"/metadata", nil, "User-Agent", "sqlmap/1.8"); r.status != 403 {
		t.Fatalf("scanner user agent: %d", r.status)
	}

	// /metrics on the main listener: loopback only, and not through a proxy header.
	r = s.do("GET", "https://"+s.addr+"/metrics", nil)
	if r.status != 200 {
		t.Fatalf("/metrics: %d", r.status)
	}
	for _, want := range []string{`lapis_http_requests_total{method="GET",route="fhir.search-type",status="200"}`,
		// client_allowlist: 1, plus the refusals while the widened list
		// reaches the running server.
		`lapis_refusals_total{reason="client_allowlist"} `, `lapis_refusals_total{reason="cors"} 2`,
		`lapis_refusals_total{reason="ip_allowlist"} 1`, `lapis_refusals_total{reason="user_agent"} 1`,
		"lapis_http_request_duration_seconds_bucket", "lapis_http_requests_in_flight", "lapis_tls_certificate_expiry_timestamp_seconds"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if r = s.do("GET", "https://"+s.addr+"/metrics", nil, "X-Forwarded-For", "198.51.100.7"); r.status != 404 {
		t.Errorf("/metrics for a forwarded remote caller: %d", r.status)
	}

	// The request log: one line per request, no query values, no tokens.
	logs := s.Logs()
	if !strings.Contains(logs, `"route":"/fhir/Patient"`) || !strings.Contains(logs, `"client_id":"`+cl.ClientID+`"`) {
		t.Errorf("request log lines missing")
	}
	for _, secret := range []string{strings.TrimPrefix(bearer, "Bearer "), cl.ClientSecret, key.Key, "Secretname"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log carries a secret or query value")
		}
	}
}

// TestGatewayPlainRemote checks the listening rule: plain HTTP on a
// non-loopback address needs --allow-remote; TLS does not.
func TestGatewayPlainRemote(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, errOut, code := run(t, "serve", "--addr", "0.0.0.0:0", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "allow-remote") {
		t.Fatalf("plain HTTP on 0.0.0.0: code %d %s", code, errOut)
	}
	_, errOut, code = run(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--tls-cert", filepath.Join(dir, "x.crt"))
	if code == 0 || !strings.Contains(errOut, "--tls-key") {
		t.Fatalf("certificate without key: code %d %s", code, errOut)
	}
	certFile, keyFile, pool := gwCert(t, dir)
	srv := lapistest.Start(t, lapistest.Options{DataDir: dir, Addr: "0.0.0.0:0", RootCAs: pool, Args: []string{"--tls-cert", certFile, "--tls-key", keyFile}})
	_, port, _ := net.SplitHostPort(srv.Addr)
	if srv.Base != "https://localhost:"+port+"/fhir" {
		t.Fatalf("FHIR base %q for %s", srv.Base, srv.Addr)
	}
	if r := srv.Do(t, "GET", "https://127.0.0.1:"+port+"/healthz", nil); r.Status != 200 {
		t.Fatalf("TLS on 0.0.0.0: %d", r.Status)
	}
}

// TestGatewaySearchTimeout checks the search time budget on the real
// binary: a search over budget is a 503 OperationOutcome, a read is not
// affected.
func TestGatewaySearchTimeout(t *testing.T) {
	t.Parallel()
	s := lapistest.Start(t, lapistest.Options{Args: []string{"--dev-no-auth", "--search-timeout", "1ns"}})
	get := func(path string) (int, string) {
		r := s.Do(t, "GET", path, nil)
		return r.Status, string(r.Body)
	}
	code, body := get("/Patient?name=x")
	if code != 503 || !strings.Contains(body, `"code":"timeout"`) || !strings.Contains(body, "OperationOutcome") {
		t.Fatalf("search over budget: %d %s", code, body)
	}
	if code, body = get("/Patient/nope"); code != 404 {
		t.Fatalf("read under a search budget: %d %s", code, body)
	}
}
