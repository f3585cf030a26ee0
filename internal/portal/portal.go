// Package portal is the developer portal's HTTP side: server-rendered
// pages under /portal/ (sign-up, login with an optional TOTP step, email
// verification, password reset, account, organisation, terms of use, and
// the operators' terms page) and the same actions as a JSON API under
// /portal/api/, authenticated by the portal's session cookie (with the
// CSRF token in the X-CSRF-Token header on unsafe methods) or by a
// developer API token (Authorization: Bearer lpd_...).
//
// Pages are built on internal/web (security headers, a per-page CSP
// nonce, sessions whose cookie rotates at login, CSRF tokens on every
// form) with one shared layout (templates/layout.html) that later portal
// pages reuse: p.render with a pageData, p.page and p.api to require a
// logged-in developer. The domain lives in internal/developer; mail goes
// through internal/mail.
package portal

import (
	"context"
	"crypto/cipher"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/mail"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/ratelimit"
	"github.com/lapis-health/lapis/internal/review"
	"github.com/lapis-health/lapis/internal/web"
	"github.com/lapis-health/lapis/internal/webhook"
)

//go:embed templates/*.html
var templateFS embed.FS

// Env is an environment the portal manages apps in.
type Env struct {
	// Name is "production" or "sandbox".
	Name string
	// FHIRBase is the environment's FHIR base URL.
	FHIRBase string
	// Admin acts on the environment's clients and keys.
	Admin *admin.Service
	// Activity is the environment's per-credential activity (nil: none
	// recorded; the activity pages say so).
	Activity *activity.Store
	// Budget tells a credential's rate-limit budget in use (nil: rate
	// limits are off); ratelimit.Middleware.Budget.
	Budget func(ctx context.Context, p *principal.Principal) (ratelimit.Budget, error)
	// Auth is the environment's authorization server (test launches in
	// the sandbox create their EHR launch contexts with it).
	Auth *oauth.Server
}

// DefaultTerms is the terms text published as version 1 when an operator
// has set none.
const DefaultTerms = `These are the default terms of use of this Lapis developer portal. The operator of this server has not published its own terms yet.

1. Use the sandbox for testing only; it holds synthetic data.
2. Keep your client secrets and API keys secret; revoke any that leak.
3. Production access is granted after review and may be suspended.`

// Config configures the portal.
type Config struct {
	// BaseURL is the server's public base URL ([base-url]); links in
	// emails and the cookie's Secure flag follow it.
	BaseURL string
	// DB is the production environment's database.
	DB *database.DB
	// Mail sends verification, reset and invitation emails.
	Mail mail.Sender
	// Logger receives errors (never tokens or passwords).
	Logger *slog.Logger
	// Audit receives account events (default: discarded).
	Audit audit.Sink
	// Environments the portal manages apps in (production, sandbox).
	Environments []Env
	// KEK, when set, seals TOTP secrets at rest: pass the server's
	// key-encryption key (keys.LoadKEK), as for the signing keys.
	KEK cipher.AEAD
	// Login is the lockout policy (zero: oauth.DefaultLoginPolicy).
	Login oauth.LoginPolicy
	// AuthRate limits sign-up, login, reset and resend requests per client
	// address (default 20 a minute, burst 10).
	AuthRate  rate.Limit
	AuthBurst int
	// Now is the clock (tests).
	Now func() time.Time
	// Terms is the default terms text (DefaultTerms when empty).
	Terms string
	// Webhooks sends app status webhooks; nil: the portal builds one on
	// DB with KEK (its worker is started by the caller: Webhooks().Start).
	Webhooks *webhook.Service
	// ReviewSLA is how long a production access request has until it is
	// due (default review.DefaultSLA).
	ReviewSLA time.Duration
}

// Portal serves the developer portal.
type Portal struct {
	cfg      Config
	dev      *developer.Service
	sessions *web.Sessions
	rd       *web.Renderer
	limiter  *ipLimiter
	mux      *http.ServeMux
	base     string // path prefix of BaseURL ("" or "/x")
	reviews  *review.Store
	hooks    *webhook.Service
	meta     *metaStore
}

// New builds the portal on cfg.DB (applying the developer schema's
// migrations).
func New(cfg Config) (*Portal, error) {
	if cfg.DB == nil {
		return nil, errors.New("portal: no database")
	}
	if cfg.Mail == nil {
		return nil, errors.New("portal: no mail sender")
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("portal: the base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Audit == nil {
		cfg.Audit = audit.Discard{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AuthRate == 0 {
		cfg.AuthRate = rate.Limit(20.0 / 60)
	}
	if cfg.AuthBurst == 0 {
		cfg.AuthBurst = 10
	}
	if cfg.Terms == "" {
		cfg.Terms = DefaultTerms
	}
	ctx := context.Background()
	svc, err := developer.New(ctx, cfg.DB, developer.Options{Now: cfg.Now, Login: cfg.Login, KEK: cfg.KEK})
	if err != nil {
		return nil, err
	}
	if err := svc.EnsureTerms(ctx, cfg.Terms); err != nil {
		return nil, fmt.Errorf("portal: default terms: %w", err)
	}
	tmpl, err := template.New("portal").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &Portal{
		cfg:      cfg,
		dev:      svc,
		sessions: &web.Sessions{Store: svc.Sessions(), Secure: u.Scheme == "https", Now: cfg.Now, Name: "lapis_portal"},
		rd:       &web.Renderer{Templates: tmpl, Log: cfg.Logger, Prefix: "portal: template"},
		limiter:  newIPLimiter(cfg.AuthRate, cfg.AuthBurst),
		mux:      http.NewServeMux(),
		base:     strings.TrimSuffix(u.Path, "/"),
	}
	if err := p.initApps(ctx); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

// Developers is the portal's developer-account service (the CLI's
// operator command and later portal pages use it).
func (p *Portal) Developers() *developer.Service { return p.dev }

// Handler serves /portal/... (mount it at "/portal/" of the server's
// root; paths keep their /portal prefix). Unsafe cross-origin browser
// requests are refused (http.CrossOriginProtection) besides the CSRF
// token checks.
func (p *Portal) Handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isAPI(r) {
			writeError(w, http.StatusForbidden, "csrf", "cross-origin request refused")
			return
		}
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return cop.Handler(p.mux)
}

// Path is the absolute path of a portal page ("/account" →
// "[base path]/portal/account").
func (p *Portal) Path(page string) string { return p.base + "/portal" + page }

// link is an absolute URL of a portal page for emails.
func (p *Portal) link(page string, q url.Values) string {
	s := p.cfg.BaseURL + "/portal" + page
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

func isAPI(r *http.Request) bool { return strings.Contains(r.URL.Path, "/portal/api/") }

// Visitor is the logged-in developer of a request.
type Visitor struct {
	// Dev is the developer.
	Dev *developer.Developer
	// Orgs are the developer's organisations.
	Orgs []developer.Membership
	// Org is the organisation the request is about: the one named by the
	// "org" query or form value when the developer is a member, else the
	// first. Nil when the developer belongs to none.
	Org *developer.Membership
	// Session is the browser session (nil with an API token).
	Session *web.Session
	// NeedsTerms is set while the current terms are not accepted; no
	// credential may be issued then.
	NeedsTerms bool
}

// CSRF is the session's CSRF token for forms.
func (v *Visitor) CSRF() string {
	if v == nil || v.Session == nil {
		return ""
	}
	return v.Session.CSRF
}

// visitor loads the request's developer from the session cookie or an
// API token; nil when there is none. With bearer=false only the cookie
// counts (pages).
func (p *Portal) visitor(r *http.Request, bearer bool) (*Visitor, error) {
	ctx := r.Context()
	var d *developer.Developer
	var sess *web.Session
	if h := r.Header.Get("Authorization"); bearer && h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, nil
		}
		dv, err := p.dev.DeveloperByAPIToken(ctx, strings.TrimSpace(tok))
		if errors.Is(err, developer.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		d = dv
	} else {
		s, err := p.sessions.Load(ctx, r)
		if err != nil || !s.LoggedIn() {
			return nil, err
		}
		dv, err := p.dev.Developer(ctx, s.Subject)
		if errors.Is(err, developer.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		d, sess = dv, s
	}
	v := &Visitor{Dev: d, Session: sess}
	orgs, err := p.dev.Memberships(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	v.Orgs = orgs
	want := r.URL.Query().Get("org")
	if want == "" && r.PostForm != nil {
		want = r.PostForm.Get("org")
	}
	for i := range orgs {
		if orgs[i].ID == want || (want == "" && i == 0) {
			v.Org = &orgs[i]
		}
	}
	if v.NeedsTerms, err = p.dev.NeedsTerms(ctx, d.ID); err != nil {
		return nil, err
	}
	return v, nil
}

// session returns the request's logged-in developer and the current
// organisation (ok false when not logged in).
func (p *Portal) session(r *http.Request) (*developer.Developer, *developer.Membership, bool) {
	v, err := p.visitor(r, false)
	if err != nil || v == nil {
		return nil, nil, false
	}
	return v.Dev, v.Org, true
}

// page wraps a page handler that needs a logged-in developer: others are
// sent to the login page (and back afterwards). Unsafe methods must carry
// the session's CSRF token.
func (p *Portal) page(h func(http.ResponseWriter, *http.Request, *Visitor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := web.ParseForm(w, r); err != nil {
				p.message(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
				return
			}
		}
		v, err := p.visitor(r, false)
		if err != nil {
			p.internalError(w, r, err)
			return
		}
		if v == nil {
			next := r.URL.Path
			if r.URL.RawQuery != "" && r.Method == http.MethodGet {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, p.Path("/login")+"?"+url.Values{"next": {next}}.Encode(), web.RedirectStatus(r))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !web.CheckCSRF(v.Session, r) {
			p.message(w, r, v, http.StatusForbidden, "Form expired", "The form was stale or not sent from this site. Go back, reload the page and try again.")
			return
		}
		h(w, r, v)
	}
}

// api wraps a JSON API handler that needs a developer: a developer API
// token, or the session cookie with the CSRF token in X-CSRF-Token on
// unsafe methods.
func (p *Portal) api(h func(http.ResponseWriter, *http.Request, *Visitor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := p.visitor(r, true)
		if err != nil {
			p.apiInternal(w, r, err)
			return
		}
		if v == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lapis-portal"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "log in or send a developer token (Authorization: Bearer lpd_...)")
			return
		}
		if v.Session != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.Session.CSRF)) != 1 {
				writeError(w, http.StatusForbidden, "csrf", "missing or wrong X-CSRF-Token header (GET /portal/api/me returns it)")
				return
			}
		}
		h(w, r, v)
	}
}

// limited applies the per-address limit of the authentication actions;
// it answers 429 and returns false when the caller is over it.
func (p *Portal) limited(w http.ResponseWriter, r *http.Request) bool {
	if p.limiter.allow(httpx.ClientAddr(r), p.cfg.Now()) {
		return false
	}
	w.Header().Set("Retry-After", "60")
	if isAPI(r) {
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests from this address; try again in a minute")
	} else {
		p.message(w, r, nil, http.StatusTooManyRequests, "Too many attempts", "Too many requests came from your address. Please wait a minute and try again.")
	}
	return true
}

// record sends an account event to the audit trail (no secrets).
func (p *Portal) record(r *http.Request, e audit.Event) {
	e.Time = p.cfg.Now()
	e.Address = httpx.ClientAddr(r)
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeSuccess
	}
	if e.Method == "" {
		e.Method = "portal"
	}
	p.cfg.Audit.Record(r.Context(), e)
}

// send mails a message; a failure is logged (without the body).
func (p *Portal) send(ctx context.Context, to, subject, body string) {
	if err := p.cfg.Mail.Send(ctx, to, subject, body); err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "portal: mail not sent", slog.String("subject", subject), slog.String("error", err.Error()))
	}
}

// pageData is what every portal template gets.
type pageData struct {
	Title string
	Nonce string
	// Base is the portal's path ("/portal" under the base URL's path).
	Base string
	// V is the logged-in developer (nil on public pages).
	V *Visitor
	// CSRF is the form token (the session's).
	CSRF string
	// Nav is the active navigation entry.
	Nav string
	// Error and Notice are messages at the top of the page.
	Error, Notice string
	// Data is the page's own data.
	Data any
}

// render writes a page with the shared layout. The session (for CSRF)
// comes from v, or sess on public pages.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData, sess *web.Session) {
	d.Nonce = web.NewNonce()
	d.Base = p.Path("")
	if d.V != nil && d.V.Session != nil {
		sess = d.V.Session
	}
	if sess != nil {
		d.CSRF = sess.CSRF
	}
	p.rd.Execute(w, r, status, name, d, d.Nonce)
}

// message renders a page with a title and a text.
func (p *Portal) message(w http.ResponseWriter, r *http.Request, v *Visitor, status int, title, text string) {
	p.render(w, r, status, "message", pageData{Title: title, V: v, Data: text}, nil)
}

func (p *Portal) internalError(w http.ResponseWriter, r *http.Request, err error) {
	p.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "portal: internal error", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	p.message(w, r, nil, http.StatusInternalServerError, "Something went wrong", "The request could not be completed. Please try again later.")
}

func (p *Portal) apiInternal(w http.ResponseWriter, r *http.Request, err error) {
	p.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "portal: internal error", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	writeError(w, http.StatusInternalServerError, "server_error", "the request could not be completed")
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes {"error","error_description"}.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// domainStatus maps a domain error to an HTTP status, an error code and
// a description safe to show; ok false for internal errors.
func domainStatus(err error) (int, string, string, bool) {
	var ie *developer.InvalidError
	switch {
	case errors.As(err, &ie):
		return http.StatusBadRequest, "invalid_request", ie.Msg, true
	case errors.Is(err, developer.ErrNotFound):
		return http.StatusNotFound, "not_found", "not found", true
	case errors.Is(err, developer.ErrExists):
		return http.StatusConflict, "conflict", "already exists", true
	case errors.Is(err, developer.ErrBadLogin):
		return http.StatusUnauthorized, "invalid_login", err.Error(), true
	case errors.Is(err, developer.ErrNotVerified):
		return http.StatusForbidden, "not_verified", err.Error(), true
	case errors.Is(err, developer.ErrInvalidToken):
		return http.StatusBadRequest, "invalid_token", err.Error(), true
	case errors.Is(err, developer.ErrForbidden):
		return http.StatusForbidden, "forbidden", "you are not allowed to do this", true
	case errors.Is(err, developer.ErrLastOwner):
		return http.StatusConflict, "last_owner", err.Error(), true
	case errors.Is(err, developer.ErrTermsOutdated):
		return http.StatusConflict, "terms_outdated", err.Error(), true
	case errors.Is(err, developer.ErrBusy):
		return http.StatusServiceUnavailable, "busy", "too many sign-ins in progress; try again", true
	}
	return 0, "", "", false
}

// answer writes v as JSON with status (204 No Content: no body), or err
// as apiFail does.
func (p *Portal) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	switch {
	case err != nil:
		p.apiFail(w, r, err)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, v)
	}
}

// apiFail answers a domain error as JSON.
func (p *Portal) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	if st, code, desc, ok := domainStatus(err); ok {
		if st == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, st, code, desc)
		return
	}
	p.apiInternal(w, r, err)
}

// ipLimiter is an in-process token bucket per client address, pruned of
// idle entries.
type ipLimiter struct {
	mu    sync.Mutex
	lim   rate.Limit
	burst int
	m     map[string]*rate.Limiter
	last  time.Time
}

func newIPLimiter(l rate.Limit, burst int) *ipLimiter {
	return &ipLimiter{lim: l, burst: burst, m: map[string]*rate.Limiter{}}
}

func (l *ipLimiter) allow(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 || now.Sub(l.last) > 10*time.Minute {
		for k, v := range l.m {
			if v.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
		l.last = now
	}
	lim := l.m[addr]
	if lim == nil {
		lim = rate.NewLimiter(l.lim, l.burst)
		l.m[addr] = lim
	}
	return lim.AllowN(now, 1)
}

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}
