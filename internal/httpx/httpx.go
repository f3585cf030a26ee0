// Package httpx holds the facts of one HTTP request that several stages
// share and no single stage owns — the request id, what the request log
// learns from inner stages (the matched route, the calling client), the
// caller's address — and the one writer of OAuth 2.0 error bodies for the
// stages outside the authorization server. It imports nothing of Lapis.
package httpx

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
)

// Info is what the request log learns about a request from the stages
// inside it: the matched route (set by the router once it has matched)
// and the calling client (set after authentication).
type Info struct {
	id       string
	clientID atomic.Pointer[string]
	route    atomic.Pointer[Route]
	refusal  atomic.Pointer[Cause]
	// clientIP is the address WithClientIP resolved (valid when hasIP):
	// set by the gateway's first stage before any inner stage runs, so
	// read without synchronization.
	clientIP netip.Addr
	hasIP    bool
}

// Cause is why a stage refused a request, for the activity a client's
// developer sees: a fixed word, never request data.
type Cause string

// Causes of refusals, set by the stage that refuses (SetRefusal) or on
// its audit event.
const (
	CauseScope       Cause = "scope"       // no scope grants the interaction (403)
	CauseCompartment Cause = "compartment" // outside the patient's compartment (403)
	CauseRateLimit   Cause = "rate-limit"  // rate limit exceeded (429)
	CauseConcurrency Cause = "concurrency" // too many concurrent searches (429)
	CauseNetwork     Cause = "network"     // network rule: allow-list, user agent (403)
	CauseCredential  Cause = "credential"  // credential missing, invalid, expired or revoked (401)
)

// SetRefusal tells the stages outside (the audit stage) why the request
// was refused; the stage that refuses calls it.
func SetRefusal(ctx context.Context, c Cause) {
	if ri := infoFrom(ctx); ri != nil {
		ri.refusal.Store(&c)
	}
}

// Refusal is the cause SetRefusal named for the request of ctx, "" if
// none.
func Refusal(ctx context.Context) Cause {
	if ri := infoFrom(ctx); ri != nil {
		if p := ri.refusal.Load(); p != nil {
			return *p
		}
	}
	return ""
}

// RouteOf is the route SetRoute named for the request of ctx; ok is
// false when none did.
func RouteOf(ctx context.Context) (Route, bool) {
	if ri := infoFrom(ctx); ri != nil {
		return ri.Route()
	}
	return Route{}, false
}

// Route names the route a request matched, for logs and metric labels:
// Class is a fixed word ("fhir.read", "auth.token", "healthz"), Pattern
// the ServeMux pattern's path ("/fhir/{type}/{id}"); neither carries an
// id or the query string.
type Route struct {
	Class, Pattern string
}

type infoKey struct{}

// NewContext returns ctx carrying a new Info for the request id.
func NewContext(ctx context.Context, id string) (context.Context, *Info) {
	ri := &Info{id: id}
	return context.WithValue(ctx, infoKey{}, ri), ri
}

func infoFrom(ctx context.Context) *Info {
	ri, _ := ctx.Value(infoKey{}).(*Info)
	return ri
}

// RequestID returns the id of the request ctx belongs to ("" outside the
// server).
func RequestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// SetClientID tells the request log which client (OAuth client id or API
// key id) made the request; stages after authentication call it.
func SetClientID(ctx context.Context, clientID string) {
	if ri := infoFrom(ctx); ri != nil {
		ri.clientID.Store(&clientID)
	}
}

// SetRoute tells the request log which route the request matched; the
// router calls it, the innermost router last.
func SetRoute(ctx context.Context, class, pattern string) {
	if ri := infoFrom(ctx); ri != nil {
		ri.route.Store(&Route{Class: class, Pattern: pattern})
	}
}

// ClientID is the client SetClientID named, "" if none.
func (ri *Info) ClientID() string {
	if p := ri.clientID.Load(); p != nil {
		return *p
	}
	return ""
}

// Route is the route SetRoute named; ok is false when none did.
func (ri *Info) Route() (r Route, ok bool) {
	if p := ri.route.Load(); p != nil {
		return *p, true
	}
	return Route{}, false
}

// PatternPath is the path of a ServeMux pattern: the pattern without its
// method ("GET /fhir/{type}" → "/fhir/{type}").
func PatternPath(pattern string) string {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '/' {
			return pattern[i:]
		}
	}
	return pattern
}

// Method returns the request method m when it is one Lapis serves (GET,
// HEAD, POST, PUT, PATCH, DELETE, OPTIONS), else "OTHER": a bounded value
// for the request log and the metrics' method label, whatever a client
// sends.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

type clientIPKey struct{}

// ClientIP returns the caller's address: the one the gateway resolved
// (WithClientIP: the forwarded address when the direct peer is a trusted
// proxy), else the direct peer's (PeerIP). IPv4-mapped IPv6 addresses are
// returned as IPv4; the zero Addr means the peer address could not be
// parsed. Every stage that names the caller's address uses it.
func ClientIP(r *http.Request) netip.Addr {
	ctx := r.Context()
	if ri := infoFrom(ctx); ri != nil && ri.hasIP {
		return ri.clientIP
	}
	if a, ok := ctx.Value(clientIPKey{}).(netip.Addr); ok {
		return a
	}
	return PeerIP(r)
}

// ClientAddr is ClientIP as text for records and lockout keys, "" when
// the address is unknown.
func ClientAddr(r *http.Request) string {
	if a := ClientIP(r); a.IsValid() {
		return a.String()
	}
	return ""
}

// LockoutAddr is the unit failed sign-ins are counted against per
// address (the authorization server's login page, the developer portal):
// the address for IPv4, its /64 for IPv6 (one host commonly holds a whole
// /64), as for the per-IP rate limit. Text that is no address, and
// IPv4-mapped IPv6, is returned as it is.
func LockoutAddr(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// WithClientIP returns ctx carrying addr as the resolved client address
// (the gateway's resolver, and tests). Within the server (ctx carries the
// request's Info) the address is kept in the Info and ctx itself is
// returned: no new context, and no copy of the request for the caller;
// the address set last is the one ClientIP returns.
func WithClientIP(ctx context.Context, addr netip.Addr) context.Context {
	if ri := infoFrom(ctx); ri != nil {
		ri.clientIP, ri.hasIP = addr.Unmap(), true
		return ctx
	}
	return context.WithValue(ctx, clientIPKey{}, addr.Unmap())
}

// PeerIP is the address of the direct peer (the host of r.RemoteAddr),
// unmapped; the zero Addr when it cannot be parsed.
func PeerIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

// WriteOAuthError writes an RFC 6749 §5.2 error response: a JSON object
// with error and (when not empty) error_description, never cached.
func WriteOAuthError(w http.ResponseWriter, status int, code, description string) {
	body := map[string]string{"error": code}
	if description != "" {
		body["error_description"] = description
	}
	WriteNoStoreJSON(w, status, body)
}

// WriteNoStoreJSON writes v as JSON with the no-store headers every
// token-bearing or error response of the authorization server carries.
func WriteNoStoreJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
