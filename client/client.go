package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Default values of the retry policy and of the client.
const (
	// DefaultMaxRetries is the number of retries after a 429 or 503 answer
	// when no RetryPolicy is given.
	DefaultMaxRetries = 3
	// DefaultMaxWait is the longest single wait before a retry when no
	// RetryPolicy is given (or its MaxWait is zero).
	DefaultMaxWait = 30 * time.Second
	// DefaultUserAgent is the User-Agent header sent when none is configured.
	DefaultUserAgent = "lapis-client-go/1"

	// maxResponseBytes bounds a response body the client decodes in memory.
	maxResponseBytes = 512 << 20
	// fhirJSON is the FHIR JSON media type.
	fhirJSON = "application/fhir+json"
)

// Client talks to one FHIR server. It is safe for concurrent use by many
// goroutines; create it once with New and share it.
type Client struct {
	base   *url.URL
	hc     *http.Client
	auth   Auth
	logger *slog.Logger
	ua     string
	retry  RetryPolicy

	// sleep waits for d or until ctx ends; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
	// now is the clock; replaced in tests.
	now func() time.Time
}

// Option configures a Client; pass options to New.
type Option func(*options)

type options struct {
	auth     Auth
	tls      *TLSConfig
	hc       *http.Client
	logger   *slog.Logger
	ua       string
	retry    *RetryPolicy
	apiKeyHd string
}

// RetryPolicy bounds the retries of requests answered with 429 Too Many
// Requests or 503 Service Unavailable. The client waits as long as the
// Retry-After header asks (seconds or an HTTP date), or with exponential
// backoff and jitter when it is absent, never longer than MaxWait at a
// time; when the server asks for more than MaxWait the answer is returned
// to the caller instead. Waiting ends early when the context is cancelled.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt; 0
	// disables retries.
	MaxRetries int
	// MaxWait is the longest single wait; 0 means DefaultMaxWait.
	MaxWait time.Duration
}

// TLSConfig chooses how the client verifies the server's certificate.
// TLS 1.2 is always the minimum version.
type TLSConfig struct {
	// CAFile is a PEM bundle of the certificate authorities to trust
	// instead of the system trust store.
	CAFile string
	// CAPEM is a PEM bundle of certificate authorities, like CAFile but in
	// memory; both may be given and are merged.
	CAPEM []byte
	// InsecureSkipVerifyDangerous disables certificate verification
	// entirely: anyone on the network path can read and alter the traffic,
	// including credentials and patient data. For throwaway test servers
	// only; the client logs a warning when it is set.
	InsecureSkipVerifyDangerous bool
}

// WithAuth sets how requests are authenticated (APIKey, Basic,
// BearerToken, ClientCredentials, BackendServices, RefreshToken or your
// own Auth). Without it requests are sent unauthenticated.
func WithAuth(a Auth) Option { return func(o *options) { o.auth = a } }

// WithTLS sets the certificate verification of the client's own
// transport; it cannot be combined with WithHTTPClient unless that
// client's Transport is an *http.Transport (which is then cloned).
func WithTLS(t TLSConfig) Option { return func(o *options) { o.tls = &t } }

// WithHTTPClient sets the underlying HTTP client (for proxies, timeouts or
// test transports). Its Transport is used as is unless WithTLS is also
// given.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithLogger sets the logger for request, retry and warning messages. It
// never receives credentials, tokens, query strings or bodies. The default
// discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(o *options) { o.ua = ua } }

// WithRetry sets the retry policy for 429 and 503 answers; the default is
// DefaultMaxRetries retries waiting at most DefaultMaxWait each.
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = &p } }

// New returns a Client for the FHIR server whose base URL (the address
// that [base]/metadata and [base]/Patient/123 are relative to) is baseURL,
// for example "https://fhir.example.org/fhir". The URL must be absolute
// http or https, without query or fragment.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fhir client: base URL must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("fhir client: base URL must not have a query, fragment or user info")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		base:   u,
		auth:   o.auth,
		logger: o.logger,
		ua:     o.ua,
		retry:  RetryPolicy{MaxRetries: DefaultMaxRetries, MaxWait: DefaultMaxWait},
		sleep:  sleepCtx,
		now:    time.Now,
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if o.retry != nil {
		c.retry = *o.retry
		if c.retry.MaxRetries < 0 {
			c.retry.MaxRetries = 0
		}
		if c.retry.MaxWait <= 0 {
			c.retry.MaxWait = DefaultMaxWait
		}
	}
	hc, err := buildHTTPClient(o.hc, o.tls, c.logger)
	if err != nil {
		return nil, err
	}
	c.hc = c.guardRedirects(hc)
	if v, ok := c.auth.(interface{ configErr() error }); ok {
		if err := v.configErr(); err != nil {
			return nil, err
		}
	}
	if v, ok := c.auth.(interface{ adoptHTTPClient(*http.Client) }); ok {
		v.adoptHTTPClient(c.hc)
	}
	if v, ok := c.auth.(interface{ adoptRetry(RetryPolicy) }); ok {
		v.adoptRetry(c.retry) // token requests follow the client's policy
	}
	return c, nil
}

// buildHTTPClient returns the HTTP client with the TLS policy applied.
func buildHTTPClient(hc *http.Client, tc *TLSConfig, logger *slog.Logger) (*http.Client, error) {
	if hc != nil && tc == nil {
		return hc, nil
	}
	var tr *http.Transport
	if hc != nil {
		t, ok := hc.Transport.(*http.Transport)
		if hc.Transport == nil {
			t, ok = http.DefaultTransport.(*http.Transport)
		}
		if !ok {
			return nil, errors.New("fhir client: WithTLS needs WithHTTPClient's Transport to be an *http.Transport")
		}
		tr = t.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	cfg, err := tlsClientConfig(tc, logger)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = cfg
	out := &http.Client{Transport: tr, Timeout: 0}
	if hc != nil {
		cp := *hc
		cp.Transport = tr
		out = &cp
	}
	return out, nil
}

// guardRedirects returns a copy of hc whose redirects to another origin
// carry no credentials: net/http drops Authorization itself only for other
// domains, and never a custom API key header.
func (c *Client) guardRedirects(hc *http.Client) *http.Client {
	cp := *hc
	prev := hc.CheckRedirect
	var custom string
	if sa, ok := c.auth.(*staticAuth); ok && sa.header != "Authorization" {
		custom = sa.header
	}
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && !sameOriginURL(req.URL, via[0].URL) {
			req.Header.Del("Authorization")
			if custom != "" {
				req.Header.Del(custom)
			}
		}
		if prev != nil {
			return prev(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}

func sameOriginURL(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// tlsClientConfig builds the crypto/tls configuration for tc (nil: system
// roots), always with TLS 1.2 as the minimum.
func tlsClientConfig(tc *TLSConfig, logger *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc == nil {
		return cfg, nil
	}
	if tc.CAFile != "" || len(tc.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if tc.CAFile != "" {
			pem, err := os.ReadFile(tc.CAFile)
			if err != nil {
				return nil, fmt.Errorf("fhir client: reading CA bundle: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("fhir client: CA bundle %s holds no PEM certificate", tc.CAFile)
			}
		}
		if len(tc.CAPEM) > 0 && !pool.AppendCertsFromPEM(tc.CAPEM) {
			return nil, errors.New("fhir client: CAPEM holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if tc.InsecureSkipVerifyDangerous {
		cfg.InsecureSkipVerify = true // #nosec G402 -- explicit, loudly named opt-in; warned below
		logger.Warn("fhir client: TLS certificate verification is DISABLED (InsecureSkipVerifyDangerous); traffic can be intercepted")
	}
	return cfg, nil
}

// BaseURL returns the FHIR base URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

// HTTPClient returns the HTTP client the Client sends requests with
// (including its TLS configuration), for companion requests such as
// Discover.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// Do sends a raw request to path, which is relative to the base URL
// ("Patient/123", "metadata", "Patient?name=x") or an absolute URL on the
// same scheme, host and port as the base URL (credentials are never sent
// elsewhere). The request is authenticated and follows the same rules as
// every other call: a 401 invalidates the credentials and is retried
// exactly once, then ends in an error matching ErrUnauthorized; 429 and
// 503 are retried per the RetryPolicy. The body is buffered so it can be
// replayed. Unless hdr says otherwise, Accept and (with a body)
// Content-Type are application/fhir+json. Any other status is returned as
// is: the caller must close the response body.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	u, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	var buf []byte
	if body != nil {
		buf, err = io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("fhir client: reading request body: %w", err)
		}
		if buf == nil {
			buf = []byte{}
		}
	}
	return c.send(ctx, &request{method: method, url: u, body: buf, hdr: hdr, auth: true})
}

// request is one logical call; send may transmit it several times.
type request struct {
	method string
	url    *url.URL
	body   []byte // nil: no body
	hdr    http.Header
	auth   bool // apply c.auth
}

// resolve turns a path relative to the base, or an absolute same-origin
// URL, into a URL.
func (c *Client) resolve(path string) (*url.URL, error) {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		u, err := url.Parse(path)
		if err != nil {
			return nil, errors.New("fhir client: invalid URL")
		}
		if !c.sameOrigin(u) {
			return nil, errors.New("fhir client: refusing to send a request to a different origin than the base URL")
		}
		return u, nil
	}
	rel, err := url.Parse(strings.TrimPrefix(path, "/"))
	if err != nil || rel.Scheme != "" || rel.Host != "" {
		return nil, errors.New("fhir client: invalid request path")
	}
	u := *c.base
	if rel.Path != "" {
		u.Path = strings.TrimRight(c.base.Path, "/") + "/" + rel.Path
		u.RawPath = ""
		if rel.RawPath != "" {
			u.RawPath = strings.TrimRight(c.base.EscapedPath(), "/") + "/" + rel.RawPath
		}
	}
	u.RawQuery = rel.RawQuery
	return &u, nil
}

// sameOrigin reports whether u has the base URL's scheme, host and port.
func (c *Client) sameOrigin(u *url.URL) bool {
	return sameOriginURL(u, c.base) && u.User == nil
}

// send transmits r with authentication, the single 401 retry and the
// 429/503 retry policy.
func (c *Client) send(ctx context.Context, r *request) (*http.Response, error) {
	authRetried := false
	retries := 0
	for {
		req, err := http.NewRequestWithContext(ctx, r.method, r.url.String(), nil)
		if err != nil {
			return nil, errors.New("fhir client: invalid request")
		}
		if r.body != nil {
			b := r.body
			req.Body = io.NopCloser(bytes.NewReader(b))
			req.ContentLength = int64(len(b))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
		for k, vs := range r.hdr {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		if req.Header.Get("Accept") == "" {
			req.Header.Set("Accept", fhirJSON)
		}
		if r.body != nil && req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", fhirJSON)
		}
		req.Header.Set("User-Agent", c.ua)
		useAuth := r.auth && c.auth != nil
		if useAuth {
			if err := c.auth.Apply(ctx, req); err != nil {
				return nil, err
			}
		}
		start := time.Now()
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &TransportError{Method: r.method, Path: r.url.Path, Err: scrubURLError(err)}
		}
		c.logger.LogAttrs(ctx, slog.LevelDebug, "fhir request",
			slog.String("method", r.method), slog.String("route", c.route(r.url)),
			slog.Int("status", resp.StatusCode), slog.Duration("elapsed", time.Since(start)))

		switch {
		case resp.StatusCode == http.StatusUnauthorized && useAuth && !authRetried:
			drain(resp)
			authRetried = true
			c.auth.Invalidate(req)
			c.logger.LogAttrs(ctx, slog.LevelInfo, "fhir request unauthorized; retrying once with fresh credentials",
				slog.String("method", r.method), slog.String("route", c.route(r.url)))
			continue
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, c.errorFrom(r, resp)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			if retries >= c.retry.MaxRetries {
				return resp, nil
			}
			wait, ok := c.retryWait(resp.Header.Get("Retry-After"), retries)
			if !ok {
				c.logger.LogAttrs(ctx, slog.LevelWarn, "fhir server asked to wait longer than the retry policy allows",
					slog.String("method", r.method), slog.String("route", c.route(r.url)), slog.Int("status", resp.StatusCode))
				return resp, nil
			}
			drain(resp)
			retries++
			c.logger.LogAttrs(ctx, slog.LevelInfo, "fhir request throttled; retrying",
				slog.String("method", r.method), slog.String("route", c.route(r.url)),
				slog.Int("status", resp.StatusCode), slog.Duration("wait", wait), slog.Int("retry", retries))
			if err := c.sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// route describes a request URL for logs without identifiers: the path
// relative to the base with ids replaced by {id}, e.g. Patient/{id} or
// Observation/{id}/_history/{id}; other origins are "(other)".
func (c *Client) route(u *url.URL) string {
	if !c.sameOrigin(u) {
		return "(other)"
	}
	p, ok := strings.CutPrefix(u.Path, strings.TrimRight(c.base.Path, "/"))
	if !ok {
		return "(other)"
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		switch {
		case s == "" || s == "metadata" || strings.HasPrefix(s, "$") || strings.HasPrefix(s, "_"):
		case i == 0 && validType.MatchString(s):
		default:
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// retryWait returns how long to wait before retry number n (0-based), and
// false when the server asks for longer than MaxWait.
func (c *Client) retryWait(retryAfter string, n int) (time.Duration, bool) {
	if d, ok := parseRetryAfter(retryAfter, c.now()); ok {
		if d > c.retry.MaxWait {
			return 0, false
		}
		return d, true
	}
	d := 500 * time.Millisecond << min(n, 10)
	d += rand.N(d/2 + 1) // jitter
	return min(d, c.retry.MaxWait), true
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > 1<<31 {
			s = 1 << 31
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain discards a little of the body so the connection can be reused,
// then closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// readBody reads a whole response body, bounded, and closes it.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fhir client: reading response: %w", err)
	}
	if len(b) > maxResponseBytes {
		return nil, errors.New("fhir client: response body too large")
	}
	return b, nil
}

// scrubURLError removes the URL (whose query may hold search values) from
// a transport error, keeping the cause.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// TransportError reports that a request got no HTTP answer (DNS, connect,
// TLS verification, timeout). It names the method and path, never the
// query string or credentials.
type TransportError struct {
	// Method and Path are the request's method and URL path.
	Method string
	Path   string
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *TransportError) Error() string {
	return fmt.Sprintf("fhir client: %s %s: %v", e.Method, e.Path, e.Err)
}

// Unwrap returns the cause, such as a *tls.CertificateVerificationError.
func (e *TransportError) Unwrap() error { return e.Err }
