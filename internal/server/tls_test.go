package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lapis-health/lapis/internal/metrics"
)

// writePair writes a self-signed certificate for 127.0.0.1 with the given
// common name to dir/cert.pem and dir/key.pem (through a rename, as
// certificate managers do).
func writePair(t *testing.T, dir, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, block *pem.Block) {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	write("key.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

func startTLS(t *testing.T, dir string, interval time.Duration, m *metrics.Metrics) string {
	t.Helper()
	fhir := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("fhir")) })
	s := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: fhir, Logger: quiet, TLSCertFile: filepath.Join(dir, "cert.pem"), TLSKeyFile: filepath.Join(dir, "key.pem"),
		CertCheckInterval: interval, Metrics: m})
	addr, cancel, done := serve(t, s)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return addr
}

// handshake connects with the TLS version range and returns the common
// name of the certificate served.
func handshake(addr string, minV, maxV uint16) (string, uint16, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: minV, MaxVersion: maxV})
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0].Subject.CommonName, st.Version, nil
}

func TestTLSVersions(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "first")
	addr := startTLS(t, dir, time.Hour, nil)
	if _, _, err := handshake(addr, tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 client was accepted")
	}
	if _, _, err := handshake(addr, tls.VersionTLS10, tls.VersionTLS10); err == nil {
		t.Fatal("a TLS 1.0 client was accepted")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if _, got, err := handshake(addr, v, v); err != nil || got != v {
			t.Fatalf("TLS %x: %v (negotiated %x)", v, err, got)
		}
	}
	// TLS 1.2 with a CBC (non-AEAD) suite only is refused.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}})
	if err == nil {
		conn.Close()
		t.Fatal("a CBC-only TLS 1.2 client was accepted")
	}

	// HSTS on TLS responses; plain HTTP to the TLS port fails.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/fhir/Patient")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fhir" || resp.Header.Get("Strict-Transport-Security") != HSTS || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("TLS response %q %v", b, resp.Header)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
}

// TestTLSReload checks the files on every handshake (a 1 ns interval),
// so each step is seen by the next handshake; the interval itself is
// checked by TestCertReloadInterval.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "first")
	m := metrics.New()
	addr := startTLS(t, dir, time.Nanosecond, m)
	serving := func(want, when string) {
		t.Helper()
		if cn, _, err := handshake(addr, tls.VersionTLS12, tls.VersionTLS13); err != nil || cn != want {
			t.Fatalf("%s: serving %q (%v), want %q", when, cn, err, want)
		}
	}
	serving("first", "initial cert")
	writePair(t, dir, "second")
	serving("second", "after a new pair")

	// An invalid new pair (key of another certificate) keeps the old one.
	other := t.TempDir()
	writePair(t, other, "third")
	kb, _ := os.ReadFile(filepath.Join(other, "key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), kb, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		serving("second", "after a broken pair")
	}
	// Garbage is kept out too; then a good pair is picked up again.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	serving("second", "after garbage")
	writePair(t, dir, "fourth")
	serving("fourth", "after a good pair again")

	w := scrapeText(t, m)
	for _, want := range []string{`lapis_tls_certificate_reloads_total{result="ok"} 2`, `lapis_tls_certificate_reloads_total{result="failed"}`, "lapis_tls_certificate_expiry_timestamp_seconds"} {
		if !strings.Contains(w, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestCertReloadInterval: the files are checked at most once per
// interval, on a handshake (synctest's fake clock).
func TestCertReloadInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 5 * time.Second
		dir := t.TempDir()
		writePair(t, dir, "first")
		c, err := newCertReloader(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), interval, quiet, nil)
		if err != nil {
			t.Fatal(err)
		}
		cn := func() string {
			cert, err := c.GetCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}
			return cert.Leaf.Subject.CommonName
		}
		writePair(t, dir, "second")
		time.Sleep(interval - time.Millisecond)
		if got := cn(); got != "first" {
			t.Fatalf("checked before the interval: serving %q", got)
		}
		time.Sleep(time.Millisecond)
		if got := cn(); got != "second" {
			t.Fatalf("not checked after the interval: serving %q", got)
		}
		writePair(t, dir, "third")
		if got := cn(); got != "second" {
			t.Fatalf("checked twice within the interval: serving %q", got)
		}
	})
}

func TestTLSStartupErrors(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: http.NotFoundHandler(), Logger: quiet, TLSCertFile: filepath.Join(dir, "missing.pem"), TLSKeyFile: filepath.Join(dir, "missing.key")})
	if _, err := s.Listen(); err == nil {
		t.Fatal("missing files accepted")
	}
	s = New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: http.NotFoundHandler(), Logger: quiet, TLSCertFile: filepath.Join(dir, "c.pem")})
	if _, err := s.Listen(); err == nil {
		t.Fatal("certificate without key accepted")
	}
}
