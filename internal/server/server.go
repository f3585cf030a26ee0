// Package server is the HTTP listener of Lapis: it mounts the FHIR API
// under its base path (/fhir by default) next to the health endpoints and
// /metrics at the root, serves plain HTTP
// or TLS (certificate files reloaded without restart, TLS 1.2 minimum with
// AEAD ECDHE suites only), applies the transport limits (header, read,
// write and idle timeouts, header size), sets the security headers every
// response carries (HSTS on TLS), gives every request an X-Request-ID,
// counts it in the metrics, writes the request log line and shuts down
// gracefully. Gateway policies and authentication are composed in front of
// the FHIR handler by the caller.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/metrics"
)

// Default transport limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 120 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	// DefaultShutdownTimeout bounds the wait for requests in flight at
	// shutdown.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultCertCheckInterval is how often, at most, the certificate
	// files are checked for changes.
	DefaultCertCheckInterval = 5 * time.Second
)

// HSTS is the Strict-Transport-Security value sent on TLS responses.
const HSTS = "max-age=63072000; includeSubDomains"

// Options configure a Server.
type Options struct {
	// Addr is the listen address.
	Addr string
	// Listener, when set, is the socket Listen returns instead of opening
	// Addr (a caller that had to bind first, e.g. to learn the port the
	// kernel picked for port 0).
	Listener net.Listener
	// Base is the path of the FHIR base URL ("/fhir", "/lapis/fhir"),
	// without a trailing slash; empty is the root.
	Base string
	// FHIR serves everything under Base: the FHIR API and the
	// authorization server.
	FHIR http.Handler
	// Ready are the dependencies /readyz checks (none: ready while the
	// process serves).
	Ready []Check
	// ShutdownTimeout bounds the graceful shutdown: how long requests in
	// flight may take to finish once the context of Serve ends (default
	// DefaultShutdownTimeout); past it their connections are closed.
	ShutdownTimeout time.Duration
	// Landing, when set, serves GET / (other paths outside /fhir stay 404).
	Landing http.Handler
	// Mounts are more handlers by ServeMux pattern, typically a path
	// prefix ("/sandbox/fhir/", "/portal/"): served beside the FHIR base,
	// with Cache-Control: no-store as under Base (handlers may override
	// it).
	Mounts map[string]http.Handler
	// Logger receives lifecycle messages and the request log.
	Logger *slog.Logger

	// TLSCertFile and TLSKeyFile, when both set, make the server speak
	// TLS only. The files are re-read when they change (checked at most
	// every CertCheckInterval); an invalid new pair is logged and the
	// previous certificate kept.
	TLSCertFile, TLSKeyFile string
	// CertCheckInterval overrides DefaultCertCheckInterval.
	CertCheckInterval time.Duration

	// Timeouts and header limit; zero values take the defaults above.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int

	// Metrics receives the request instruments (nil: none) and is served
	// at /metrics to requests MetricsAllowed accepts.
	Metrics *metrics.Metrics
	// MetricsAllowed decides whether this listener answers /metrics for
	// r (otherwise 404). Nil: only loopback peers that sent no forwarding
	// header.
	MetricsAllowed func(r *http.Request) bool
	// SlowRequest is the duration above which a successful request is
	// logged at info (default one second).
	SlowRequest time.Duration
}

// Server is a configured HTTP server.
type Server struct {
	http  *http.Server
	opts  Options
	certs *certReloader // nil: plain HTTP
	ready *readiness
}

// New builds a Server; the TLS files are loaded by Listen.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MetricsAllowed == nil {
		opts.MetricsAllowed = LocalOnly
	}
	if opts.Base != "" && (opts.Base[0] != '/' || strings.HasSuffix(opts.Base, "/")) {
		panic("server: invalid base path " + opts.Base)
	}
	mux := http.NewServeMux()
	if opts.FHIR != nil {
		if opts.Base != "" {
			mux.Handle(opts.Base, opts.FHIR)
		}
		mux.Handle(opts.Base+"/", opts.FHIR)
	}
	if opts.Landing != nil {
		mux.Handle("GET /{$}", opts.Landing)
	}
	var prefixes []string
	for pattern, h := range opts.Mounts {
		mux.Handle(pattern, h)
		prefixes = append(prefixes, strings.TrimSuffix(httpx.PatternPath(pattern), "/"))
	}
	// The server's own routes name themselves to the request log (the
	// FHIR handler's routers name theirs).
	handle := func(pattern, class string, h http.HandlerFunc) {
		path := httpx.PatternPath(pattern)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			httpx.SetRoute(r.Context(), class, path)
			h(w, r)
		})
	}
	handle("GET /healthz", "healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	ready := &readiness{checks: opts.Ready}
	handle("GET /readyz", "readyz", ready.ServeHTTP)
	if opts.Metrics != nil {
		mh := opts.Metrics.Handler()
		handle("GET /metrics", "metrics", func(w http.ResponseWriter, r *http.Request) {
			if !opts.MetricsAllowed(r) {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			mh.ServeHTTP(w, r)
		})
	}
	s := &Server{opts: opts, ready: ready}
	h := requestLog(opts.Logger, opts.Metrics, opts.SlowRequest, securityHeaders(append([]string{opts.Base}, prefixes...), mux))
	s.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       orDefault(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	if opts.MaxHeaderBytes > 0 {
		s.http.MaxHeaderBytes = opts.MaxHeaderBytes
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// TLSConfig is the server TLS configuration: TLS 1.2 minimum, and for
// TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
// ChaCha20-Poly1305); TLS 1.3 suites are fixed by Go and all AEAD.
func TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// TLS reports whether the server speaks TLS.
func (s *Server) TLS() bool { return s.opts.TLSCertFile != "" || s.opts.TLSKeyFile != "" }

// securityHeaders sets the headers every response carries: no sniffing,
// no framing, no referrer, a deny-all CSP, HSTS on TLS, and Cache-Control:
// no-store under the FHIR base path (PHI), which handlers of public
// documents (discovery, JWKS) override.
//
// The values are assigned under their canonical keys (what Header.Set
// does) from slices made once and shared by every response: their
// capacity is their length, so a handler's Add appends to a copy, and
// Set or Del replace the entry; no handler writes into a value slice.
func securityHeaders(bases []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = hdrNosniff
		h["X-Frame-Options"] = hdrDeny
		h["Referrer-Policy"] = hdrNoReferrer
		h["Content-Security-Policy"] = hdrCSP
		if r.TLS != nil {
			h["Strict-Transport-Security"] = hdrHSTS
		}
		for _, base := range bases {
			if p := r.URL.Path; p == base || len(p) > len(base) && p[len(base)] == '/' && strings.HasPrefix(p, base) {
				h["Cache-Control"] = hdrNoStore
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

// The shared values of securityHeaders (len == cap).
var (
	hdrNosniff    = []string{"nosniff"}[:1:1]
	hdrDeny       = []string{"DENY"}[:1:1]
	hdrNoReferrer = []string{"no-referrer"}[:1:1]
	hdrCSP        = []string{"default-src 'none'; frame-ancestors 'none'"}[:1:1]
	hdrHSTS       = []string{HSTS}[:1:1]
	hdrNoStore    = []string{"no-store"}[:1:1]
)

// Listen loads the TLS certificate, if any, and opens the listening
// socket (so callers learn the bound address, e.g. with port 0 in tests).
func (s *Server) Listen() (net.Listener, error) {
	if s.TLS() && s.certs == nil {
		if s.opts.TLSCertFile == "" || s.opts.TLSKeyFile == "" {
			return nil, errors.New("TLS needs both a certificate file and a key file")
		}
		interval := s.opts.CertCheckInterval
		if interval <= 0 {
			interval = DefaultCertCheckInterval
		}
		c, err := newCertReloader(s.opts.TLSCertFile, s.opts.TLSKeyFile, interval, s.opts.Logger, s.opts.Metrics)
		if err != nil {
			return nil, err
		}
		s.certs = c
		s.http.TLSConfig = TLSConfig(c.GetCertificate)
	}
	if s.opts.Listener != nil {
		return s.opts.Listener, nil
	}
	return net.Listen("tcp", s.opts.Addr)
}

// Serve serves on ln until ctx is cancelled, then shuts down gracefully:
// /readyz answers 503 from then on, the listener closes (no new
// connection is accepted), idle connections close, and requests in flight
// may finish for up to ShutdownTimeout before their connections are
// closed too (Serve then reports context.DeadlineExceeded).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.TLS() && s.certs == nil {
		return errors.New("server: TLS configured but Listen was not called")
	}
	stop := context.AfterFunc(ctx, func() { s.ready.draining.Store(true) })
	defer stop()
	err := serveUntil(ctx, s.http, ln, s.certs != nil, orDefault(s.opts.ShutdownTimeout, DefaultShutdownTimeout))
	if errors.Is(err, context.DeadlineExceeded) {
		_ = s.http.Close()
		return fmt.Errorf("shutdown: requests still in flight after the shutdown timeout (%s) were cut: %w", orDefault(s.opts.ShutdownTimeout, DefaultShutdownTimeout), err)
	}
	return err
}

func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, useTLS bool, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeMetrics serves m's /metrics (and nothing else) on ln, plain HTTP
// and without access restriction, until ctx is cancelled: bind it to an
// address only the monitoring system reaches (--metrics-addr).
func ServeMetrics(ctx context.Context, ln net.Listener, m *metrics.Metrics, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return serveUntil(ctx, srv, ln, false, DefaultShutdownTimeout)
}

// LocalOnly is the default /metrics guard: the direct peer is a loopback
// address and the request carries no forwarding header (a reverse proxy
// on the same host would otherwise make every caller look local).
func LocalOnly(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Real-IP") != "" {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
