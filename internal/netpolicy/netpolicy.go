// Package netpolicy is the network layer of the Lapis gateway: who is
// calling (the client address, trusting X-Forwarded-For or Forwarded only
// from configured proxies), from where they may call (global and
// per-client IP allow-lists, IPv4 and IPv6 CIDRs), which user agents are
// refused (scanner and bot rules), and which browser origins may call the
// FHIR API for which client (CORS).
//
// A Policy provides four stages for the request pipeline:
//
//   - Resolve (server level, first): puts the client address into the
//     request context; httpx.ClientIP reads it (rate limits, authn, audit).
//   - Global (server level): the global allow-list and the user-agent
//     rules, for the FHIR API and the authorization endpoints.
//   - Preflight (FHIR API, before authentication): answers CORS
//     preflights for origins registered by any client (a preflight
//     carries no credential).
//   - Client (FHIR API, after authentication): the allow-list of the
//     caller's client and the CORS check of actual requests: an Origin
//     is echoed in Access-Control-Allow-Origin only when the caller's
//     client registered it; a cross-origin request from another origin is
//     refused.
//
// Every refusal is a 403 whose OperationOutcome (or, on the
// authorization endpoints, RFC 6749 error) says only that the request is
// not allowed; it is counted by metrics.Refused with a fixed reason and
// recorded as an audit.KindNetworkRefused event.
//
// Per-client rules live in the authorization database (authdb) and are
// held in memory by ClientRules, reloaded in the background, so the
// request path does no database round trip.
package netpolicy

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/principal"
)

// methodAPIKey is principal.Principal.Method for API keys (authn.MethodAPIKey).
const methodAPIKey = "apikey"

// Refusal reasons passed to metrics.Refused.
const (
	ReasonIPAllowList     = "ip_allowlist"
	ReasonClientAllowList = "client_allowlist"
	ReasonUserAgent       = "user_agent"
	ReasonCORS            = "cors"
)

// DefaultDenyUserAgents are the user-agent rules applied unless disabled:
// well-known vulnerability scanners and attack tools, which no legitimate
// FHIR client identifies as. Generic HTTP libraries (curl, python-requests,
// Go-http-client) are deliberately not on the list: integrations use them.
var DefaultDenyUserAgents = []string{
	`sqlmap`, `nikto`, `nmap`, `masscan`, `zgrab`, `nuclei`, `wpscan`,
	`dirbuster`, `gobuster`, `ffuf`, `feroxbuster`, `acunetix`, `netsparker`,
	`openvas`, `w3af`, `havij`, `jorgee`, `morfeus`, `zmeu`, `fimap`,
}

// Options configure a Policy.
type Options struct {
	// TrustedProxies are the direct peers whose forwarding header is
	// believed. Empty: forwarding headers are ignored.
	TrustedProxies []netip.Prefix
	// ForwardedHeader selects the header the proxies set: HeaderXFF (the
	// default) or HeaderForwarded. Only one is read: a proxy that appends
	// to one passes the other through unchanged, so reading both would
	// let a client forge its address.
	ForwardedHeader string
	// AllowIPs is the global allow-list; empty allows every address.
	AllowIPs []netip.Prefix
	// DenyUserAgents are regular expressions (RE2, matched
	// case-insensitively anywhere in User-Agent); a match is refused.
	DenyUserAgents []string
	// Clients holds the per-client rules; nil: no per-client rules and no
	// CORS origins.
	Clients *ClientRules
	// SelfOrigin is the origin of the server's public base URL; requests
	// whose Origin is this one are same-origin, not CORS.
	SelfOrigin string
	// AuthPrefix is the path prefix of the authorization endpoints
	// (e.g. "/fhir/auth/"): their refusals are RFC 6749 JSON errors.
	AuthPrefix string
	// Metrics counts refusals (nil-safe).
	Metrics *metrics.Metrics
	// Audit records refusals (nil: none).
	Audit audit.Sink
	// Logger receives refusals at debug level; nil = slog.Default().
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Policy applies the network rules. It is safe for concurrent use.
type Policy struct {
	opts Options
	rv   resolver
	// uaWords are lower-case literal user-agent rules, uaRegexps the
	// others.
	uaWords   []string
	uaRegexps []*regexp.Regexp
	log       *slog.Logger
	now       func() time.Time
	sink      audit.Sink
	selfOrg   string
}

// New checks opts and returns a Policy.
func New(opts Options) (*Policy, error) {
	p := &Policy{opts: opts, log: opts.Logger, now: opts.Now, sink: opts.Audit}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sink == nil {
		p.sink = audit.Discard{}
	}
	switch strings.ToLower(opts.ForwardedHeader) {
	case "", strings.ToLower(HeaderXFF):
	case strings.ToLower(HeaderForwarded):
		p.rv.forwarded = true
	default:
		return nil, errors.New("netpolicy: forwarded header must be X-Forwarded-For or Forwarded")
	}
	p.rv.trusted = normalize(opts.TrustedProxies)
	p.opts.AllowIPs = normalize(opts.AllowIPs)
	for _, s := range opts.DenyUserAgents {
		// Plain words are matched as lower-case substrings (a regular
		// expression of many case-folded alternatives costs hundreds of
		// microseconds per request); the rest as regular expressions.
		re, err := syntax.Parse(s, syntax.Perl)
		if err != nil {
			return nil, errors.New("netpolicy: invalid user-agent rule " + quoteShort(s) + ": " + err.Error())
		}
		if re = re.Simplify(); re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase == 0 {
			p.uaWords = append(p.uaWords, strings.ToLower(string(re.Rune)))
			continue
		}
		p.uaRegexps = append(p.uaRegexps, regexp.MustCompile("(?i)"+s))
	}
	if opts.SelfOrigin != "" {
		o, err := normalizeOrigin(opts.SelfOrigin, true)
		if err != nil {
			return nil, err
		}
		p.selfOrg = o
	}
	return p, nil
}

func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// ResolveIP returns the client address of r by the trusted-proxy rules,
// without consulting the request context.
func (p *Policy) ResolveIP(r *http.Request) netip.Addr { return p.rv.resolve(r) }

// IsTrustedProxy reports whether a is one of the trusted proxies.
func (p *Policy) IsTrustedProxy(a netip.Addr) bool { return p.rv.isTrusted(a) }

// Resolve is the first server-level stage: it stores the client address
// in the request context for httpx.ClientIP.
func (p *Policy) Resolve(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ctx := httpx.WithClientIP(r.Context(), p.rv.resolve(r)); ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// Global is the server-level stage of the global allow-list and the
// user-agent rules.
func (p *Policy) Global(next http.Handler) http.Handler {
	if len(p.opts.AllowIPs) == 0 && len(p.uaWords) == 0 && len(p.uaRegexps) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(p.opts.AllowIPs) > 0 && !contains(p.opts.AllowIPs, httpx.ClientIP(r)) {
			p.refuse(w, r, ReasonIPAllowList, "address not on the global allow-list", "")
			return
		}
		if p.deniedUA(r.Header.Get("User-Agent")) {
			p.refuse(w, r, ReasonUserAgent, "user agent denied", "")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// deniedUA reports whether a user-agent rule matches ua (its first 512
// bytes).
func (p *Policy) deniedUA(ua string) bool {
	if ua == "" || len(p.uaWords) == 0 && len(p.uaRegexps) == 0 {
		return false
	}
	if len(ua) > 512 {
		ua = ua[:512]
	}
	lower := strings.ToLower(ua)
	for _, w := range p.uaWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	for _, re := range p.uaRegexps {
		if re.MatchString(ua) {
			return true
		}
	}
	return false
}

// Client is the per-principal stage, after authentication: the caller's
// client allow-list and the CORS decision for actual requests.
func (p *Policy) Client(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var clientID string
		var rule *clientRule
		// API keys carry their own allow-list (checked by authn); their
		// ClientID is the key id, not an OAuth client.
		if pr := principal.FromContext(r.Context()); pr != nil && pr.Method != methodAPIKey {
			clientID = pr.ClientID
			var err error
			if rule, err = p.opts.Clients.rule(r.Context(), clientID); err != nil {
				// The rules cannot be read: fail closed.
				p.log.WarnContext(r.Context(), "netpolicy: reading a client's network rules failed", "err", err.Error())
				w.Header().Set("Retry-After", "1")
				outcome.Write(w, outcome.New(http.StatusServiceUnavailable, "transient", "the request cannot be checked right now; retry shortly"))
				return
			}
		}
		if rule != nil && rule.hasAllow && !contains(rule.allow, httpx.ClientIP(r)) {
			p.refuse(w, r, ReasonClientAllowList, "address not on the client's allow-list", clientID)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			o, err := normalizeOrigin(origin, true)
			switch {
			case err == nil && o == p.selfOrg:
				// same origin: no CORS headers needed
			case err == nil && rule != nil && rule.origins[o]:
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", o)
				h.Set("Access-Control-Expose-Headers", exposeHeaders)
			default:
				p.refuse(w, r, ReasonCORS, "origin not registered for the client", clientID)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// CORS header values of the FHIR API.
const (
	allowMethods  = "GET, HEAD, POST, PUT, PATCH, DELETE"
	allowHeaders  = "Accept, Authorization, Content-Type, If-Match, If-Modified-Since, If-None-Exist, If-None-Match, Prefer, X-Lapis-Profile-Validation, X-Request-ID"
	exposeHeaders = "Content-Location, ETag, Last-Modified, Location, X-Request-ID"
)

// Preflight answers CORS preflight requests (OPTIONS with Origin and
// Access-Control-Request-Method) for origins that some client registered;
// other preflights are refused. Every other request passes through.
func (p *Policy) Preflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if r.Method != http.MethodOptions || origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		o, err := NormalizeOrigin(origin)
		if err != nil || !p.opts.Clients.anyOrigin(o) {
			p.refuse(w, r, ReasonCORS, "preflight from an unregistered origin", "")
			return
		}
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Methods", allowMethods)
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// refuse answers 403 and records the refusal.
func (p *Policy) refuse(w http.ResponseWriter, r *http.Request, reason, desc, clientID string) {
	p.opts.Metrics.Refused(reason)
	addr := httpx.ClientIP(r)
	ua := r.Header.Get("User-Agent")
	if len(ua) > 256 {
		ua = ua[:256]
	}
	p.sink.Record(r.Context(), audit.Event{
		Time:        p.now(),
		Kind:        audit.KindNetworkRefused,
		Action:      "E",
		Outcome:     audit.OutcomeMinor,
		Description: desc,
		Status:      http.StatusForbidden,
		ClientID:    clientID,
		Address:     addrString(addr),
		UserAgent:   ua,
		Route:       audit.RouteShape(r),
		Cause:       string(httpx.CauseNetwork),
	})
	p.log.DebugContext(r.Context(), "netpolicy: refused", "reason", reason, "client_ip", addrString(addr), "client_id", clientID)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if p.opts.AuthPrefix != "" && strings.HasPrefix(r.URL.Path, p.opts.AuthPrefix) {
		httpx.WriteOAuthError(w, http.StatusForbidden, "access_denied", "the request is not allowed")
		return
	}
	outcome.Write(w, outcome.New(http.StatusForbidden, "forbidden", "the request is not allowed"))
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
