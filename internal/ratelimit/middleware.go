package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
)

// Scopes: the names of the limits, used as RateLimit policy names, metric
// labels and key prefixes.
const (
	ScopeClient  = "client"
	ScopePatient = "patient"
	ScopeIP      = "ip"
)

// Observer receives rate-limit metrics; *metrics.Metrics satisfies it.
type Observer interface {
	RateLimitChecked(scope string, allowed bool)
	RateLimitBackendFailure(failOpen bool)
	Refused(reason string)
}

// Options configures the Middleware.
type Options struct {
	// Limiter decides; nil means a fresh in-process Memory limiter.
	Limiter Limiter
	// FailOpen chooses what happens when Limiter fails (Redis
	// unreachable): true admits the request through Fallback, so each
	// instance still enforces the limits on its own; false refuses it
	// with 503 and Retry-After.
	FailOpen bool
	// Fallback is the limiter used when Limiter fails and FailOpen is
	// set; nil means a fresh Memory limiter.
	Fallback Limiter

	// Client, Patient and IP are the limits per client (OAuth client id
	// or API key id), per patient and per IP address on AuthPaths. A
	// disabled Limit is not checked.
	Client, Patient, IP Limit
	// System replaces Client for a system credential (see IsSystem): a
	// backend integration or a data-load job, acting for no patient and
	// no user. Disabled: such credentials have no per-client limit.
	System Limit
	// Credentials, when set, tells a credential's own limit, which
	// replaces Client or System for it (see CredentialLimit).
	Credentials CredentialLimits
	// Costs price FHIR interactions; the zero value means DefaultCosts.
	Costs Costs

	// FHIRBase is the path of the FHIR base URL ("/fhir", or "" at the
	// root).
	FHIRBase string
	// AuthPaths are the full paths (e.g. "/fhir/auth/token") limited per
	// IP address by AuthEndpoints; Browser marks those that serve pages
	// to a browser (answered in plain text rather than JSON).
	AuthPaths map[string]Endpoint
	// MaxBodyBytes bounds the part of a batch/transaction or _search body
	// read to price it (0 = 16 MiB); a larger body costs the minimum and
	// is refused by the handler.
	MaxBodyBytes int64
	// MaxBundleEntries is the handler's entry limit of a batch or
	// transaction (0 = none): a Bundle with more is refused before any
	// entry runs, so it costs the minimum.
	MaxBundleEntries int

	// Metrics, Audit and Logger are optional observers.
	Metrics Observer
	Audit   audit.Sink
	Logger  *slog.Logger
	// Now is the clock of the backend-failure log throttle (nil =
	// time.Now).
	Now func() time.Time
}

// Endpoint describes a path limited per IP address.
type Endpoint struct {
	// Browser is true for pages a user's browser loads (authorize,
	// login, consent, patient picker): their refusal is plain text.
	Browser bool
}

// backendLogEvery is the least time between two log lines about a failing
// backend.
const backendLogEvery = 10 * time.Second

// Middleware enforces the limits. Its FHIR stage goes after
// authentication (it keys on the authenticated principal); its
// AuthEndpoints stage goes in front of the OAuth endpoints.
type Middleware struct {
	o        Options
	limiter  Limiter
	fallback Limiter
	costs    Costs
	prefix   string
	maxBody  int64
	obs      Observer
	sink     audit.Sink
	log      *slog.Logger
	now      func() time.Time

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int

	// keys caches the limiter key of each (scope, id) checked recently,
	// so that a caller's every request does not hash its id again.
	keysMu sync.RWMutex
	keys   map[keyID]string
}

// keyID names a limiter key before hashing: a scope and an identifier.
type keyID struct{ scope, id string }

// maxCachedKeys bounds Middleware.keys; when full it starts over.
const maxCachedKeys = 10_000

// New returns the middleware for o.
func New(o Options) *Middleware {
	m := &Middleware{o: o, limiter: o.Limiter, fallback: o.Fallback, costs: o.Costs,
		maxBody: o.MaxBodyBytes, obs: o.Metrics, sink: o.Audit, log: o.Logger, now: o.Now}
	if m.limiter == nil {
		m.limiter = NewMemory(MemoryOptions{})
	}
	if m.fallback == nil {
		m.fallback = NewMemory(MemoryOptions{})
	}
	if m.costs == (Costs{}) {
		m.costs = DefaultCosts()
	}
	m.prefix = strings.TrimSuffix(o.FHIRBase, "/")
	if m.maxBody <= 0 {
		m.maxBody = 16 << 20
	}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	if m.sink == nil {
		m.sink = audit.Discard{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

type nopObserver struct{}

func (nopObserver) RateLimitChecked(string, bool) {}
func (nopObserver) RateLimitBackendFailure(bool)  {}
func (nopObserver) Refused(string)                {}

// errClosed marks a check refused because the backend failed and the
// middleware fails closed.
var errClosed = errors.New("ratelimit: backend unavailable (failing closed)")

// decision is the outcome of one checked limit.
type decision struct {
	scope string
	limit Limit
	res   Result
}

// check spends cost units of id's bucket in scope. On a backend failure
// it counts the failure, logs (throttled) and either falls back (fail
// open) or returns errClosed.
func (m *Middleware) check(ctx context.Context, scope, id string, l Limit, cost int) (decision, error) {
	key := m.key(scope, id)
	res, err := m.limiter.AllowN(ctx, key, l, cost)
	if err != nil {
		m.obs.RateLimitBackendFailure(m.o.FailOpen)
		m.backendFailed(err)
		if !m.o.FailOpen {
			return decision{scope: scope, limit: l}, errClosed
		}
		res, _ = m.fallback.AllowN(ctx, key, l, cost)
	}
	m.obs.RateLimitChecked(scope, res.Allowed)
	return decision{scope: scope, limit: l, res: res}, nil
}

// key is the limiter key of id in scope: scope + ":" + hashID(id),
// remembered for the next request of the same caller.
func (m *Middleware) key(scope, id string) string {
	k := keyID{scope, id}
	m.keysMu.RLock()
	key, ok := m.keys[k]
	m.keysMu.RUnlock()
	if ok {
		return key
	}
	key = scope + ":" + hashID(id)
	// The cache keeps a copy of id: a patient id is a substring of the
	// request's query or body, which a cached substring would keep alive
	// (up to a megabyte per entry).
	k.id = strings.Clone(id)
	m.keysMu.Lock()
	if m.keys == nil || len(m.keys) >= maxCachedKeys {
		m.keys = make(map[keyID]string)
	}
	m.keys[k] = key
	m.keysMu.Unlock()
	return key
}

// hashID turns an identifier into a fixed-length key part, so that keys
// are bounded in size and Redis never stores patient ids, client ids or
// addresses in the clear.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// backendFailed logs a backend failure at most once per backendLogEvery,
// with the number of failures not logged since.
func (m *Middleware) backendFailed(err error) {
	now := m.now()
	m.logMu.Lock()
	if !m.lastLog.IsZero() && now.Sub(m.lastLog) < backendLogEvery {
		m.suppressed++
		m.logMu.Unlock()
		return
	}
	n := m.suppressed
	m.lastLog, m.suppressed = now, 0
	m.logMu.Unlock()
	mode := "closed (refusing with 503)"
	if m.o.FailOpen {
		mode = "open (in-process limits only)"
	}
	m.log.Warn("rate limit backend unavailable", "mode", mode, "error", err.Error(), "failures_not_logged", n)
}

// FHIR is the stage for the FHIR API, after routing and authentication:
// it charges the cost of the request's interaction (from the context) to
// the caller's client and, unless the caller is a system credential
// (IsSystem), to the patient in context or the patients the interaction
// targets. Requests without a principal (/metadata,
// --dev-no-auth) or without an interaction pass unlimited.
func (m *Middleware) FHIR(next http.Handler) http.Handler {
	if !m.o.Client.Enabled() && !m.o.System.Enabled() && !m.o.Patient.Enabled() && m.o.Credentials == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal.FromContext(r.Context())
		if p == nil {
			next.ServeHTTP(w, r)
			return
		}
		ix := interaction.FromContext(r.Context())
		if ix == nil || !ix.FHIR {
			next.ServeHTTP(w, r)
			return
		}
		cost := m.costs.cost(ix)
		switch {
		case ix.Kind == interaction.Batch:
			if body, whole := interaction.PeekBody(r, m.maxBody); whole {
				cost = m.costs.bundleCost(body, m.prefix, m.o.MaxBundleEntries)
			}
		case ix.Search():
			ix.ReadForm(r, min(m.maxBody, 1<<20))
		}
		if cost == 0 {
			next.ServeHTTP(w, r)
			return
		}
		var ds []decision
		if cl := m.clientLimit(r.Context(), p); cl.Enabled() && p.ClientID != "" {
			d, err := m.check(r.Context(), ScopeClient, p.ClientID, cl, cost)
			if err != nil {
				m.unavailable(w, false, true)
				return
			}
			ds = append(ds, d)
			if !d.res.Allowed {
				m.refuse(w, r, ds, d, p, "", false, true)
				return
			}
		}
		// A system credential (a backend integration, a data-load key) is
		// limited by its own class only: the per-patient limit guards
		// one patient's record against the apps acting for patients and
		// users, and charging a backend's reads to it would refuse those
		// apps while the backend works through the records.
		if m.o.Patient.Enabled() && !IsSystem(p) {
			var patients []string
			if p.Patient != "" {
				patients = []string{p.Patient}
			} else {
				patients = ix.Patients
			}
			var worst *decision
			for _, id := range patients {
				d, err := m.check(r.Context(), ScopePatient, id, m.o.Patient, cost)
				if err != nil {
					m.unavailable(w, false, true)
					return
				}
				if !d.res.Allowed {
					ds = append(ds, d)
					m.refuse(w, r, ds, d, p, id, false, true)
					return
				}
				if worst == nil || d.res.Remaining < worst.res.Remaining {
					worst = &d
				}
			}
			if worst != nil {
				ds = append(ds, *worst)
			}
		}
		setHeaders(w.Header(), ds)
		next.ServeHTTP(w, r)
	})
}

// clientLimit is the per-client limit of p: its credential's own, else
// the default of its class (System or Client).
func (m *Middleware) clientLimit(ctx context.Context, p *principal.Principal) Limit {
	if m.o.Credentials != nil && p.ClientID != "" {
		if c := m.o.Credentials.LimitFor(ctx, p); c.Set {
			return c.Limit
		}
	}
	if IsSystem(p) {
		return m.o.System
	}
	return m.o.Client
}

// IsSystem reports whether p is a system credential: it acts for no
// patient and no user (no patient in context, no fhirUser, no patient/
// or user/ scope) and holds at least one system/ scope — a backend
// services client or a system/ API key. Apps acting for a patient or a
// user are not.
func IsSystem(p *principal.Principal) bool {
	if p.Patient != "" || p.FHIRUser != "" {
		return false
	}
	system := false
	for _, s := range p.Scopes {
		switch {
		case strings.HasPrefix(s, "system/"):
			system = true
		case strings.HasPrefix(s, "patient/"), strings.HasPrefix(s, "user/"):
			return false
		}
	}
	return system
}

// AuthEndpoints is the stage for the unauthenticated OAuth endpoints: a
// request to one of AuthPaths (other than a CORS preflight) costs 1 unit
// of its IP address's limit. Other requests pass untouched.
func (m *Middleware) AuthEndpoints(next http.Handler) http.Handler {
	if !m.o.IP.Enabled() || len(m.o.AuthPaths) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep, ok := m.o.AuthPaths[r.URL.Path]
		if !ok || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		d, err := m.check(r.Context(), ScopeIP, ipKey(httpx.ClientIP(r)), m.o.IP, 1)
		if err != nil {
			m.unavailable(w, ep.Browser, false)
			return
		}
		if !d.res.Allowed {
			m.refuse(w, r, []decision{d}, d, nil, "", ep.Browser, false)
			return
		}
		setHeaders(w.Header(), []decision{d})
		next.ServeHTTP(w, r)
	})
}

// ipKey is the bucket of an address: the address for IPv4, its /64 for
// IPv6 (one host commonly holds a whole /64).
func ipKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// seconds rounds d up to whole seconds (delay-seconds), at least min.
func seconds(d time.Duration, least int64) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, least)
}

// setHeaders writes RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers, structured-field lists).
//
// Both values are appended into one buffer (on the stack for the usual
// one or two decisions) and assigned under their canonical keys, as
// Header.Set would, in one slice: three allocations per response.
func setHeaders(h http.Header, ds []decision) {
	if len(ds) == 0 {
		return
	}
	var buf [256]byte
	b := buf[:0]
	for i, d := range ds {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(append(append(b, '"'), d.scope...), `";q=`...)
		b = strconv.AppendInt(b, int64(d.limit.Rate), 10)
		b = strconv.AppendInt(append(b, ";w="...), int64(d.limit.Period/time.Second), 10)
	}
	pol := len(b)
	for i, d := range ds {
		if i > 0 {
			b = append(b, ", "...)
		}
		t := d.res.Reset
		if !d.res.Allowed {
			t = d.res.RetryAfter
		}
		b = append(append(append(b, '"'), d.scope...), `";r=`...)
		b = strconv.AppendInt(b, int64(d.res.Remaining), 10)
		b = strconv.AppendInt(append(b, ";t="...), seconds(t, 0), 10)
	}
	v := make([]string, 2)
	v[0], v[1] = string(b[:pol]), string(b[pol:])
	h["Ratelimit-Policy"], h["Ratelimit"] = v[0:1:1], v[1:2:2]
}

// refuse answers 429 for the refused decision d, counts and audits it.
func (m *Middleware) refuse(w http.ResponseWriter, r *http.Request, ds []decision, d decision, p *principal.Principal, patient string, browser, fhir bool) {
	m.obs.Refused("ratelimit")
	ev := audit.Event{
		Time: m.now(), Kind: audit.KindRateLimited, Action: "E", Outcome: audit.OutcomeMinor,
		Description: "rate limit exceeded (" + d.scope + ")", Status: http.StatusTooManyRequests,
		UserAgent: truncate(r.UserAgent(), 256),
		Route:     audit.RouteShape(r), Cause: string(httpx.CauseRateLimit),
	}
	if a := httpx.ClientIP(r); a.IsValid() {
		ev.Address = a.String()
	}
	if p != nil {
		ev.ClientID, ev.Subject, ev.FHIRUser, ev.Method, ev.CredentialID = p.ClientID, p.Subject, p.FHIRUser, p.Method, p.TokenID
		ev.Patient = p.Patient
	}
	if patient != "" {
		ev.Patient = patient
	}
	m.sink.Record(r.Context(), ev)

	retry := seconds(d.res.RetryAfter, 1)
	h := w.Header()
	setHeaders(h, ds)
	h.Set("Retry-After", strconv.FormatInt(retry, 10))
	h.Set("Cache-Control", "no-store")
	msg := "too many requests for this " + scopeNoun(d.scope) + "; retry after " + strconv.FormatInt(retry, 10) + " s"
	page := "Too many requests from this address. Please wait " + strconv.FormatInt(retry, 10) + " seconds and try again.\n"
	writeRefusal(w, http.StatusTooManyRequests, "throttled", msg, page, browser, fhir)
}

// unavailable answers 503 when the backend failed and the middleware
// fails closed.
func (m *Middleware) unavailable(w http.ResponseWriter, browser, fhir bool) {
	m.obs.Refused("ratelimit")
	h := w.Header()
	h.Set("Retry-After", "1")
	h.Set("Cache-Control", "no-store")
	writeRefusal(w, http.StatusServiceUnavailable, "transient", "rate limiting is temporarily unavailable; retry later",
		"The service is temporarily unavailable. Please try again in a moment.\n", browser, fhir)
}

func scopeNoun(scope string) string {
	switch scope {
	case ScopeIP:
		return "address"
	}
	return scope
}

// writeRefusal writes a FHIR OperationOutcome, an RFC 6749 error object
// or plain text for browser pages.
func writeRefusal(w http.ResponseWriter, status int, issueCode, msg, page string, browser, fhir bool) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case fhir:
		outcome.Write(w, outcome.New(status, issueCode, "%s", msg))
	case browser:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(page))
	default:
		httpx.WriteOAuthError(w, status, "temporarily_unavailable", msg)
	}
}

// truncate shortens s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
