package mail

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is what the test server got.
type received struct {
	mu   sync.Mutex
	from string
	to   []string
	data string
	user string
}

type backend struct{ r *received }

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &session{r: b.r}, nil
}

type session struct {
	r    *received
	auth bool
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "mailer" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.auth = true
		s.r.mu.Lock()
		s.r.user = user
		s.r.mu.Unlock()
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.to = append(s.r.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.data = string(b)
	return err
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// startServer runs an in-process SMTP server; withTLS offers STARTTLS.
func startServer(t *testing.T, withTLS bool) (*received, int, *x509.CertPool) {
	t.Helper()
	r := &received{}
	srv := smtp.NewServer(&backend{r: r})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = !withTLS
	var pool *x509.CertPool
	if withTLS {
		var cert tls.Certificate
		cert, pool = selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r, ln.Addr().(*net.TCPAddr).Port, pool
}

func TestSMTPStartTLSWithAuth(t *testing.T) {
	r, port, pool := startServer(t, true)
	s, err := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: port, Username: "mailer", Password: "s3cret", From: "portal@example.org",
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "dev@example.com", "Verify your address", "Open https://lapis.example/portal/verify?token=abc"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.from != "portal@example.org" || len(r.to) != 1 || r.to[0] != "dev@example.com" || r.user != "mailer" {
		t.Fatalf("from %q to %v user %q", r.from, r.to, r.user)
	}
	if !strings.Contains(r.data, "Subject: Verify your address") || !strings.Contains(r.data, "portal/verify?token=3Dabc") /* quoted-printable */ {
		t.Fatalf("message:\n%s", r.data)
	}
}

// TestSMTPMandatoryTLSRefusesPlainServer: with the default policy a server
// without STARTTLS gets no message (and no password).
func TestSMTPMandatoryTLSRefusesPlainServer(t *testing.T) {
	r, port, _ := startServer(t, false)
	s, err := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: port, Username: "mailer", Password: "s3cret", From: "portal@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "dev@example.com", "x", "y"); err == nil {
		t.Fatal("sent without TLS under the mandatory policy")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user != "" || r.data != "" {
		t.Fatalf("server got user %q data %q", r.user, r.data)
	}
}

func TestSMTPOpportunisticAndNone(t *testing.T) {
	for _, policy := range []string{TLSOpportunistic, TLSNone} {
		r, port, _ := startServer(t, false)
		s, err := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: port, From: "portal@example.org", TLS: policy})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), "dev@example.com", "Hello", "body"); err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		r.mu.Lock()
		if !strings.Contains(r.data, "body") {
			t.Fatalf("%s: data %q", policy, r.data)
		}
		r.mu.Unlock()
	}
}

func TestParseURL(t *testing.T) {
	c, err := ParseURL("smtp://u%40x:p%3Ass@mail.example.org:2525?tls=opportunistic")
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "mail.example.org" || c.Port != 2525 || c.Username != "u@x" || c.Password != "p:ss" || c.TLS != TLSOpportunistic {
		t.Fatalf("%+v", c)
	}
	if c, err := ParseURL("smtps://mail.example.org"); err != nil || c.TLS != TLSImplicit {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"http://x", "smtp://", "smtp://h:99999", "smtp://h?tls=maybe", "smtps://h?tls=none", "::"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := Redacted("smtp://u:secret@h:25"); strings.Contains(got, "secret") {
		t.Fatalf("redacted %q", got)
	}
	if _, err := NewSMTP(SMTPConfig{Host: "h"}); err == nil {
		t.Fatal("no From accepted")
	}
	if _, err := NewSMTP(SMTPConfig{Host: "h", From: "a@b", TLS: "weird"}); err == nil {
		t.Fatal("bad policy accepted")
	}
}

func TestLogSenderMarksDevelopmentMode(t *testing.T) {
	var buf bytes.Buffer
	l := &Log{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	if err := l.Send(context.Background(), "dev@example.com", "Verify", "https://x/portal/verify?token=T0K"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "DEVELOPMENT MODE") || !strings.Contains(out, "dev_mode=true") || !strings.Contains(out, "T0K") || !strings.Contains(out, "level=INFO") {
		t.Fatalf("log: %s", out)
	}
}

func TestMemory(t *testing.T) {
	m := &Memory{}
	_ = m.Send(context.Background(), "A@x.org", "s", "b1")
	_ = m.Send(context.Background(), "a@x.org", "s", "b2")
	if msg, ok := m.Last("a@x.org"); !ok || msg.Body != "b2" || len(m.Messages()) != 2 {
		t.Fatalf("%v %v", msg, ok)
	}
	if _, ok := m.Last("none@x.org"); ok {
		t.Fatal("found a message never sent")
	}
}
