package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/metrics"
)

// certReloader serves a certificate pair from files and picks up new
// files without a restart: on a handshake, at most once per interval, it
// compares the files' identity, size and modification time with the
// loaded ones and, when they changed, loads the new pair. A pair that
// does not load (half-written, mismatched, expired) is logged and the
// previous certificate stays in service; it is retried when the files
// change again.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	mets              *metrics.Metrics

	cert      atomic.Pointer[tls.Certificate]
	lastCheck atomic.Int64 // UnixNano of the last check

	mu            sync.Mutex // one check at a time
	certSt, keySt os.FileInfo
}

func newCertReloader(certFile, keyFile string, interval time.Duration, log *slog.Logger, m *metrics.Metrics) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, log: log, mets: m}
	cs, ks, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := loadPair(certFile, keyFile, time.Now())
	if err != nil {
		return nil, err
	}
	c.certSt, c.keySt = cs, ks
	c.cert.Store(cert)
	c.lastCheck.Store(time.Now().UnixNano())
	m.CertificateLoaded(cert.Leaf.NotAfter)
	return c, nil
}

func (c *certReloader) stat() (os.FileInfo, os.FileInfo, error) {
	cs, err := os.Stat(c.certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate file: %w", err)
	}
	ks, err := os.Stat(c.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS key file: %w", err)
	}
	return cs, ks, nil
}

// loadPair loads and checks a certificate pair: it must parse, match and
// be within its validity period.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	}
	if now.After(cert.Leaf.NotAfter) || now.Before(cert.Leaf.NotBefore) {
		return nil, errors.New("TLS certificate: outside its validity period")
	}
	return &cert, nil
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// GetCertificate is the tls.Config hook.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	if now.UnixNano()-c.lastCheck.Load() >= int64(c.interval) && c.mu.TryLock() {
		c.check(now)
		c.mu.Unlock()
	}
	return c.cert.Load(), nil
}

// check reloads the pair when the files changed. Callers hold c.mu.
func (c *certReloader) check(now time.Time) {
	c.lastCheck.Store(now.UnixNano())
	cs, ks, err := c.stat()
	if err != nil {
		c.log.Warn("TLS certificate files unreadable; keeping the current certificate", "err", err.Error())
		return
	}
	if sameFile(cs, c.certSt) && sameFile(ks, c.keySt) {
		return
	}
	c.certSt, c.keySt = cs, ks
	cert, err := loadPair(c.certFile, c.keyFile, now)
	if err != nil {
		c.mets.CertificateReload(false)
		c.log.Error("TLS certificate files changed but do not load; keeping the current certificate", "err", err.Error())
		return
	}
	c.cert.Store(cert)
	c.mets.CertificateReload(true)
	c.mets.CertificateLoaded(cert.Leaf.NotAfter)
	c.log.Info("TLS certificate reloaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}
