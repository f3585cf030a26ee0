// Package jwksfetch fetches clients' registered JWKS URLs (SMART Backend
// Services) safely: with a timeout, a response size limit, a cache that
// honours Cache-Control, a refresh rate limit, and — unless explicitly
// allowed for development — no connections to loopback, private,
// link-local or otherwise non-public addresses (checked on the resolved
// address of every connection, so DNS tricks and redirects are covered)
// and https only.
package jwksfetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults of a Fetcher.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultMaxBytes = 256 << 10
	// DefaultTTL applies when the response has no Cache-Control max-age.
	DefaultTTL = 5 * time.Minute
	// MaxTTL caps any max-age.
	MaxTTL = time.Hour
	// MinRefresh is the shortest interval between two fetches of a URL.
	MinRefresh = 10 * time.Second
	maxEntries = 10000
)

// ErrForbiddenAddress is returned for a URL that resolves to a
// non-public address while private addresses are not allowed.
var ErrForbiddenAddress = errors.New("jwksfetch: address not allowed")

// Options configure a Fetcher.
type Options struct {
	// AllowPrivate permits http:// URLs and loopback/private addresses.
	// For development and tests only.
	AllowPrivate bool
	// Timeout bounds one fetch (default DefaultTimeout).
	Timeout time.Duration
	// MaxBytes bounds the response body (default DefaultMaxBytes).
	MaxBytes int64
}

// Fetcher fetches and caches JWKS documents. It is safe for concurrent use.
type Fetcher struct {
	opts   Options
	client *http.Client

	mu    sync.Mutex
	cache map[string]*entry
}

type entry struct {
	set     *jose.JSONWebKeySet
	expires time.Time // serve from cache until then
	fetched time.Time
	mu      sync.Mutex // serialises fetches of one URL
}

// New returns a Fetcher.
func New(opts Options) *Fetcher {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	dialer := &net.Dialer{Timeout: opts.Timeout}
	if !opts.AllowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !Public(ap.Addr()) {
				return ErrForbiddenAddress
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   opts.Timeout,
		ResponseHeaderTimeout: opts.Timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	f := &Fetcher{opts: opts, cache: map[string]*entry{}}
	f.client = &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("jwksfetch: too many redirects")
			}
			return f.checkURL(req.URL)
		},
	}
	return f
}

// Public reports whether a is a globally routable unicast address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach private IPv4
	netip.MustParsePrefix("2001:db8::/32"),
}

func (f *Fetcher) checkURL(u *url.URL) error {
	if u.Scheme != "https" && !(f.opts.AllowPrivate && u.Scheme == "http") {
		return fmt.Errorf("jwksfetch: %s URLs are not allowed", u.Scheme)
	}
	if u.User != nil {
		return errors.New("jwksfetch: credentials in URL")
	}
	return nil
}

// Get returns the key set at rawURL, from the cache while it is fresh.
// refresh asks for a new fetch (e.g. for an unknown kid); it is honoured
// at most once per MinRefresh.
func (f *Fetcher) Get(ctx context.Context, rawURL string, refresh bool) (*jose.JSONWebKeySet, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("jwksfetch: bad URL")
	}
	if err := f.checkURL(u); err != nil {
		return nil, err
	}
	f.mu.Lock()
	e := f.cache[rawURL]
	if e == nil {
		if len(f.cache) >= maxEntries {
			f.evictLocked()
		}
		e = &entry{}
		f.cache[rawURL] = e
	}
	f.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.set != nil && now.Before(e.expires) && (!refresh || now.Sub(e.fetched) < MinRefresh) {
		return e.set, nil
	}
	set, ttl, err := f.fetch(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	e.set, e.fetched, e.expires = set, now, now.Add(ttl)
	return set, nil
}

func (f *Fetcher) evictLocked() {
	now := time.Now()
	for k, e := range f.cache {
		if e.mu.TryLock() {
			stale := !now.Before(e.expires)
			e.mu.Unlock()
			if stale {
				delete(f.cache, k)
			}
		}
	}
	for k := range f.cache { // still full: drop arbitrary entries
		if len(f.cache) < maxEntries {
			break
		}
		delete(f.cache, k)
	}
}

func (f *Fetcher) fetch(ctx context.Context, rawURL string) (*jose.JSONWebKeySet, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("jwksfetch: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("jwksfetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("jwksfetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("jwksfetch: %w", err)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, 0, errors.New("jwksfetch: JWKS too large")
	}
	set, err := Parse(body)
	if err != nil {
		return nil, 0, err
	}
	return set, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// Parse decodes a JWKS document. Keys that cannot be parsed (unsupported
// key types) and private keys are skipped; a document that is not a JWKS
// is an error.
func Parse(b []byte) (*jose.JSONWebKeySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || raw.Keys == nil {
		return nil, errors.New("jwksfetch: not a JWK set")
	}
	set := &jose.JSONWebKeySet{}
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// cacheTTL derives the cache lifetime from a Cache-Control header:
// no-store/no-cache → 0, max-age=N → N (capped at MaxTTL), else DefaultTTL.
func cacheTTL(cc string) time.Duration {
	ttl := DefaultTTL
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(d, "max-age="), `"`))
			if err != nil || n < 0 {
				return 0
			}
			ttl = time.Duration(n) * time.Second
		}
	}
	return min(ttl, MaxTTL)
}
