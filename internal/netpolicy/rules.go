package netpolicy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rules are one client's network rules as stored (the fields of
// authdb.ClientNetRules, which converts to and from Rules).
type Rules struct {
	// ClientID is the client the rules belong to.
	ClientID string
	// AllowIPs are the CIDRs (or single addresses) the client's tokens may
	// be used from; empty allows every address.
	AllowIPs []string
	// CORSOrigins are the browser origins allowed to call the FHIR API
	// with the client's tokens.
	CORSOrigins []string
}

// RulesSource reads clients' network rules (the authorization database,
// adapted by the composition root).
type RulesSource interface {
	// ClientNetRules returns the rules of every client (empty lists for
	// clients without rules).
	ClientNetRules(ctx context.Context) ([]Rules, error)
	// ClientNetRulesFor returns one client's rules: empty lists for a
	// client without rules or that does not exist.
	ClientNetRulesFor(ctx context.Context, clientID string) (Rules, error)
}

// DefaultRefresh is how often ClientRules reloads the rules by default:
// a change made with lapis client network (or the admin API) is enforced
// by every instance within this interval.
const DefaultRefresh = 2 * time.Second

// ClientRules holds the per-client rules in memory, reloaded from the
// database in the background. A nil *ClientRules has no rules.
type ClientRules struct {
	src     RulesSource
	refresh time.Duration
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
}

type clientRule struct {
	hasAllow bool // the client has an allow-list (even one whose entries are all invalid)
	allow    []netip.Prefix
	origins  map[string]bool
}

type snapshot struct {
	clients map[string]*clientRule // every client at load time; nil: no rules
	origins map[string]bool        // registered by any client
	// looked holds clients looked up one by one since the snapshot was
	// loaded (id -> *clientRule, nil when the client has no rules): a
	// client created after the last reload is still checked at once.
	looked sync.Map
}

// NewClientRules returns rules read from src every refresh (0:
// DefaultRefresh). Call Load before serving and Run for the reloads.
func NewClientRules(src RulesSource, refresh time.Duration, log *slog.Logger) *ClientRules {
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	if log == nil {
		log = slog.Default()
	}
	c := &ClientRules{src: src, refresh: refresh, log: log}
	c.snap.Store(&snapshot{})
	return c
}

// Load reads the rules once.
func (c *ClientRules) Load(ctx context.Context) error {
	rows, err := c.src.ClientNetRules(ctx)
	if err != nil {
		return err
	}
	s := &snapshot{clients: make(map[string]*clientRule, len(rows)), origins: map[string]bool{}}
	for _, row := range rows {
		if len(row.AllowIPs) == 0 && len(row.CORSOrigins) == 0 {
			s.clients[row.ClientID] = nil // known, no rules
			continue
		}
		cr := buildRule(row)
		for o := range cr.origins {
			s.origins[o] = true
		}
		s.clients[row.ClientID] = cr
	}
	c.snap.Store(s)
	return nil
}

func buildRule(row Rules) *clientRule {
	cr := &clientRule{hasAllow: len(row.AllowIPs) > 0, origins: map[string]bool{}}
	for _, a := range row.AllowIPs {
		// An entry that no longer parses matches nothing: the client
		// stays restricted (fail closed).
		if p, err := ParsePrefix(a); err == nil {
			cr.allow = append(cr.allow, p)
		}
	}
	for _, o := range row.CORSOrigins {
		if n, err := NormalizeOrigin(o); err == nil {
			cr.origins[n] = true
		}
	}
	return cr
}

// Run reloads the rules every refresh interval until ctx ends. A failed
// reload keeps the previous rules and is logged.
func (c *ClientRules) Run(ctx context.Context) {
	t := time.NewTicker(c.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Load(lctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			c.log.Warn("netpolicy: reloading client network rules failed; keeping the previous rules", "err", err.Error())
		case err == nil && failing:
			failing = false
			c.log.Info("netpolicy: client network rules reloaded")
		}
	}
}

// rule returns the rules of clientID (nil: none). A client missing from
// the snapshot is looked up in the database once per reload interval; an
// error is returned only when that lookup fails.
func (c *ClientRules) rule(ctx context.Context, clientID string) (*clientRule, error) {
	if c == nil || clientID == "" {
		return nil, nil
	}
	s := c.snap.Load()
	if r, ok := s.clients[clientID]; ok {
		return r, nil
	}
	if v, ok := s.looked.Load(clientID); ok {
		return v.(*clientRule), nil
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	row, err := c.src.ClientNetRulesFor(lctx, clientID)
	var r *clientRule
	switch {
	case err != nil:
		return nil, err
	case len(row.AllowIPs) > 0 || len(row.CORSOrigins) > 0:
		r = buildRule(row)
	}
	s.looked.Store(clientID, r)
	return r, nil
}

// AllowsAddress reports whether clientID may call from addr: true when
// the client has no allow-list or addr is on it.
func (c *ClientRules) AllowsAddress(ctx context.Context, clientID string, addr netip.Addr) (bool, error) {
	r, err := c.rule(ctx, clientID)
	if err != nil {
		return false, err
	}
	return r == nil || !r.hasAllow || contains(r.allow, addr), nil
}

func (c *ClientRules) anyOrigin(origin string) bool {
	if c == nil {
		return false
	}
	return c.snap.Load().origins[origin]
}

// NormalizeOrigin checks a browser origin and returns its canonical form,
// scheme://host[:port] in lower case without a default port. Only http
// and https origins are accepted, and http only for loopback hosts
// (development); "null" and URLs with a path, query, fragment or user
// information are refused.
func NormalizeOrigin(s string) (string, error) { return normalizeOrigin(s, false) }

// normalizeOrigin is NormalizeOrigin; anyHTTP also accepts http origins of
// any host (for comparing request origins with the server's own).
func normalizeOrigin(s string, anyHTTP bool) (string, error) {
	bad := errors.New("invalid origin " + quoteShort(s) + ": want https://host[:port]")
	if len(s) > 512 {
		return "", bad
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.Host == "" {
		return "", bad
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	switch {
	case scheme == "https":
		if port == "443" {
			port = ""
		}
	case scheme == "http":
		if !anyHTTP && !isLoopbackHost(host) {
			return "", errors.New("invalid origin " + quoteShort(s) + ": http is allowed only for localhost; use https")
		}
		if port == "80" {
			port = ""
		}
	default:
		return "", bad
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return "", bad
	}
	h := host
	if strings.Contains(host, ":") {
		h = "[" + host + "]"
	}
	if port != "" {
		h += ":" + port
	}
	return scheme + "://" + h, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// ClientRulesFrom checks and canonicalises a client's allow-list (CIDRs
// or addresses) and CORS origins, dropping duplicates, for
// authdb.SetClientNetRules. The error names the first invalid entry.
func ClientRulesFrom(clientID string, allowIPs, origins []string) (Rules, error) {
	r := Rules{ClientID: clientID}
	seen := map[string]bool{}
	for _, a := range allowIPs {
		p, err := ParsePrefix(a)
		if err != nil {
			return r, err
		}
		if s := p.String(); !seen[s] {
			seen[s] = true
			r.AllowIPs = append(r.AllowIPs, s)
		}
	}
	for _, o := range origins {
		n, err := NormalizeOrigin(o)
		if err != nil {
			return r, err
		}
		if !seen[n] {
			seen[n] = true
			r.CORSOrigins = append(r.CORSOrigins, n)
		}
	}
	return r, nil
}
