package netpolicy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type recSink struct {
	mu     sync.Mutex
	events []audit.Event
}

func (s *recSink) Record(_ context.Context, e audit.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *recSink) last() audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 {
		return audit.Event{}
	}
	return s.events[len(s.events)-1]
}

type staticRules []Rules

func (s staticRules) ClientNetRules(context.Context) ([]Rules, error) { return s, nil }

func (s staticRules) ClientNetRulesFor(_ context.Context, id string) (Rules, error) {
	for _, r := range s {
		if r.ClientID == id {
			return r, nil
		}
	}
	return Rules{ClientID: id}, nil
}

// dbRules reads the rules from the authorization database, as the
// composition root does (internal/cli netRules).
type dbRules struct{ db *authdb.DB }

func (d dbRules) ClientNetRules(ctx context.Context) ([]Rules, error) {
	rows, err := d.db.ClientNetRules(ctx)
	out := make([]Rules, len(rows))
	for i, r := range rows {
		out[i] = Rules(r)
	}
	return out, err
}

func (d dbRules) ClientNetRulesFor(ctx context.Context, id string) (Rules, error) {
	r, err := d.db.ClientNetRulesFor(ctx, id)
	if errors.Is(err, authdb.ErrNotFound) {
		return Rules{ClientID: id}, nil
	}
	return Rules(r), err
}

var ok200 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })

// serve runs r through the stages, outermost first.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func want403(t *testing.T, w *httptest.ResponseRecorder, what string) {
	t.Helper()
	if w.Code != http.StatusForbidden {
		t.Fatalf("%s: status %d, want 403", what, w.Code)
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Code, Diagnostics string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "forbidden" {
		t.Fatalf("%s: body %s", what, w.Body.String())
	}
	if oo.Issue[0].Diagnostics != "the request is not allowed" {
		t.Fatalf("%s: diagnostics reveal %q", what, oo.Issue[0].Diagnostics)
	}
}

func TestGlobalAllowList(t *testing.T) {
	sink := &recSink{}
	m := metrics.New()
	p, err := New(Options{AllowIPs: mustPrefixes(t, "192.0.2.0/24", "2001:db8::/32"), TrustedProxies: mustPrefixes(t, "10.0.0.1"),
		Audit: sink, Metrics: m, Logger: quiet, AuthPrefix: "/fhir/auth/"})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Resolve(p.Global(ok200))
	for _, peer := range []string{"192.0.2.5:1", "[2001:db8:5::1]:1", "[::ffff:192.0.2.9]:1"} {
		if w := serve(h, req(peer)); w.Code != 200 {
			t.Errorf("%s refused: %d", peer, w.Code)
		}
	}
	for _, peer := range []string{"198.51.100.1:1", "[2001:db9::1]:1", "[::ffff:198.51.100.1]:1"} {
		want403(t, serve(h, req(peer)), peer)
	}
	// Behind the trusted proxy the forwarded address decides.
	if w := serve(h, req("10.0.0.1:1", "X-Forwarded-For", "192.0.2.44")); w.Code != 200 {
		t.Errorf("forwarded allowed address refused: %d", w.Code)
	}
	want403(t, serve(h, req("10.0.0.1:1", "X-Forwarded-For", "198.51.100.44")), "forwarded refused address")
	// An untrusted peer cannot claim an allowed address.
	want403(t, serve(h, req("198.51.100.1:1", "X-Forwarded-For", "192.0.2.44")), "spoofed")
	e := sink.last()
	if e.Kind != audit.KindNetworkRefused || e.Address != "198.51.100.1" || e.Status != 403 {
		t.Fatalf("audit event %+v", e)
	}
	// Refusals on the authorization endpoints are RFC 6749 JSON.
	r := req("198.51.100.1:1")
	r.URL.Path = "/fhir/auth/token"
	w := serve(h, r)
	if w.Code != 403 || !strings.Contains(w.Body.String(), `"error":"access_denied"`) {
		t.Fatalf("auth refusal %d %s", w.Code, w.Body.String())
	}
	body := scrape(t, m)
	if !strings.Contains(body, `lapis_refusals_total{reason="ip_allowlist"} 6`) {
		t.Fatalf("refusal metric missing:\n%s", grepLines(body, "lapis_refusals_total"))
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestUserAgentRules(t *testing.T) {
	p, err := New(Options{DenyUserAgents: append([]string{`^BadBot/\d`}, DefaultDenyUserAgents...), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Global(ok200)
	for _, ua := range []string{"sqlmap/1.7.2#stable (https://sqlmap.org)", "Mozilla/5.0 (compatible; Nmap Scripting Engine)", "badbot/2.0", "Nuclei - Open-source project"} {
		want403(t, serve(h, req("192.0.2.1:1", "User-Agent", ua)), ua)
	}
	for _, ua := range []string{"", "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31", "Mozilla/5.0 (X11; Linux x86_64)", "xBadBot/2"} {
		if w := serve(h, req("192.0.2.1:1", "User-Agent", ua)); w.Code != 200 {
			t.Errorf("%q refused", ua)
		}
	}
	if _, err := New(Options{DenyUserAgents: []string{"("}}); err == nil {
		t.Fatal("invalid regex accepted")
	}
}

func withPrincipal(r *http.Request, clientID string) *http.Request {
	return r.WithContext(principal.NewContext(r.Context(), &principal.Principal{Method: "bearer", ClientID: clientID}))
}

func newRulesPolicy(t *testing.T, src RulesSource, sink audit.Sink) *Policy {
	t.Helper()
	cr := NewClientRules(src, 0, quiet)
	if err := cr.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Clients: cr, SelfOrigin: "https://fhir.example.org", Audit: sink, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkClientRules runs the per-client checks against p, whose rules are:
// client "a" allowed from 192.0.2.0/24 and 2001:db8::/32 with origin
// https://app.example; client "b" with origin http://localhost:3000 and no
// allow-list; client "c" with only invalid allow-list entries.
func checkClientRules(t *testing.T, p *Policy) {
	t.Helper()
	h := p.Resolve(p.Client(ok200))
	if w := serve(h, withPrincipal(req("192.0.2.9:1"), "a")); w.Code != 200 {
		t.Fatalf("allowed client address refused: %d", w.Code)
	}
	if w := serve(h, withPrincipal(req("[2001:db8::77]:1"), "a")); w.Code != 200 {
		t.Fatalf("allowed IPv6 client address refused: %d", w.Code)
	}
	want403(t, serve(h, withPrincipal(req("198.51.100.9:1"), "a")), "client a elsewhere")
	if w := serve(h, withPrincipal(req("198.51.100.9:1"), "b")); w.Code != 200 {
		t.Fatalf("client without allow-list refused: %d", w.Code)
	}
	if w := serve(h, withPrincipal(req("198.51.100.9:1"), "unknown")); w.Code != 200 {
		t.Fatalf("client without rules refused: %d", w.Code)
	}
	want403(t, serve(h, withPrincipal(req("192.0.2.9:1"), "c")), "client with broken allow-list (fail closed)")

	// CORS on actual requests.
	w := serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "https://APP.example:443"), "a"))
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example" || w.Header().Get("Vary") != "Origin" {
		t.Fatalf("registered origin: %d %v", w.Code, w.Header())
	}
	if w.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Fatal("credentials allowed")
	}
	want403(t, serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "https://evil.example"), "a")), "other origin")
	want403(t, serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "http://localhost:3000"), "a")), "origin of another client")
	want403(t, serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "null"), "a")), "null origin")
	if w := serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "http://localhost:3000"), "b")); w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("client b origin: %d %v", w.Code, w.Header())
	}
	// Same origin is not CORS.
	if w := serve(h, withPrincipal(req("192.0.2.9:1", "Origin", "https://fhir.example.org"), "a")); w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same origin: %d %v", w.Code, w.Header())
	}

	// Preflights: any registered origin, no credentials needed.
	pre := p.Preflight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Fatal("preflight reached the handler") }))
	pf := func(origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodOptions, "/fhir/Patient/1", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "PUT")
		r.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		return serve(pre, r)
	}
	for _, o := range []string{"https://app.example", "http://localhost:3000"} {
		w := pf(o)
		if w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != o || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "PUT") ||
			!strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("preflight %s: %d %v", o, w.Code, w.Header())
		}
	}
	want403(t, pf("https://evil.example"), "preflight from an unregistered origin")
	// Non-preflight OPTIONS and other methods pass through.
	passed := false
	pass := p.Preflight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { passed = true }))
	serve(pass, httptest.NewRequest(http.MethodOptions, "/fhir/Patient", nil))
	if !passed {
		t.Fatal("plain OPTIONS did not pass through")
	}
}

func TestClientRulesStatic(t *testing.T) {
	sink := &recSink{}
	p := newRulesPolicy(t, staticRules{
		{ClientID: "a", AllowIPs: []string{"192.0.2.0/24", "2001:db8::/32"}, CORSOrigins: []string{"https://app.example"}},
		{ClientID: "b", CORSOrigins: []string{"http://localhost:3000"}},
		{ClientID: "c", AllowIPs: []string{"garbage"}},
	}, sink)
	checkClientRules(t, p)
	if e := sink.last(); e.Kind != audit.KindNetworkRefused {
		t.Fatalf("no audit event: %+v", e)
	}
}

func TestClientRulesDatabase(t *testing.T) {
	authtest.Both(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		for _, id := range []string{"a", "b", "c", "gone"} {
			if err := db.CreateClient(ctx, &authdb.Client{ID: id, Name: id, Type: authdb.Public}); err != nil {
				t.Fatal(err)
			}
		}
		set := func(r authdb.ClientNetRules) {
			t.Helper()
			if err := db.SetClientNetRules(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		set(authdb.ClientNetRules{ClientID: "a", AllowIPs: []string{"10.0.0.0/8"}})
		set(authdb.ClientNetRules{ClientID: "a", AllowIPs: []string{"192.0.2.0/24", "2001:db8::/32"}, CORSOrigins: []string{"https://app.example"}}) // replaces
		set(authdb.ClientNetRules{ClientID: "b", CORSOrigins: []string{"http://localhost:3000"}})
		set(authdb.ClientNetRules{ClientID: "c", AllowIPs: []string{"203.0.113.1"}})
		set(authdb.ClientNetRules{ClientID: "gone", CORSOrigins: []string{"https://gone.example"}})
		if err := db.SetClientNetRules(ctx, authdb.ClientNetRules{ClientID: "nobody", AllowIPs: []string{"10.0.0.0/8"}}); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("rules for a missing client: %v", err)
		}
		if err := db.SetClientNetRules(ctx, authdb.ClientNetRules{ClientID: "a", AllowIPs: []string{"nope"}}); err == nil {
			t.Fatal("invalid CIDR stored")
		}
		if err := db.DeleteClient(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		got, err := db.ClientNetRulesFor(ctx, "a")
		if err != nil || len(got.AllowIPs) != 2 || got.CORSOrigins[0] != "https://app.example" {
			t.Fatalf("rules of a: %+v %v", got, err)
		}
		if _, err := db.ClientNetRulesFor(ctx, "gone"); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatalf("rules of a deleted client: %v", err)
		}
		p := newRulesPolicy(t, dbRules{db}, nil)
		// c is restricted to 203.0.113.1: the shared checks expect c to be
		// refused from 192.0.2.9.
		checkClientRules(t, p)
		// The deleted client's origin is no longer answered.
		r := httptest.NewRequest(http.MethodOptions, "/fhir/Patient", nil)
		r.Header.Set("Origin", "https://gone.example")
		r.Header.Set("Access-Control-Request-Method", "GET")
		want403(t, serve(p.Preflight(ok200), r), "deleted client's origin")
		// A client created after the last reload is checked at once.
		if err := db.CreateClient(ctx, &authdb.Client{ID: "late", Name: "late", Type: authdb.Public}); err != nil {
			t.Fatal(err)
		}
		set(authdb.ClientNetRules{ClientID: "late", AllowIPs: []string{"203.0.113.0/24"}})
		want403(t, serve(p.Client(ok200), withPrincipal(req("198.51.100.9:1"), "late")), "client created after the reload")
		if w := serve(p.Client(ok200), withPrincipal(req("203.0.113.5:1"), "late")); w.Code != 200 {
			t.Fatalf("late client from its network: %d", w.Code)
		}
		// Clearing the rules lifts the restriction after a reload.
		set(authdb.ClientNetRules{ClientID: "a"})
		if err := p.opts.Clients.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if w := serve(p.Client(ok200), withPrincipal(req("198.51.100.9:1"), "a")); w.Code != 200 {
			t.Fatalf("cleared rules still enforced: %d", w.Code)
		}
	})
}

func TestNormalizeOrigin(t *testing.T) {
	good := map[string]string{
		"https://App.Example":        "https://app.example",
		"https://app.example:443":    "https://app.example",
		"https://app.example:8443/":  "https://app.example:8443",
		"http://localhost:3000":      "http://localhost:3000",
		"http://127.0.0.1:80":        "http://127.0.0.1",
		"https://[2001:db8::1]:8443": "https://[2001:db8::1]:8443",
	}
	for in, want := range good {
		if got, err := NormalizeOrigin(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "null", "*", "app.example", "http://app.example", "https://app.example/path", "https://u:p@app.example", "https://app.example?q", "ftp://app.example", "https://"} {
		if got, err := NormalizeOrigin(in); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

type failingRules struct{}

func (failingRules) ClientNetRules(context.Context) ([]Rules, error) { return nil, nil }
func (failingRules) ClientNetRulesFor(context.Context, string) (Rules, error) {
	return Rules{}, errors.New("database down")
}

func TestClientRulesFailClosedAndAPIKeys(t *testing.T) {
	p := newRulesPolicy(t, failingRules{}, nil)
	w := serve(p.Client(ok200), withPrincipal(req("192.0.2.1:1"), "x"))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "database") {
		t.Fatalf("unreadable rules: %d %s", w.Code, w.Body.String())
	}
	// API keys have their own allow-list: no client lookup.
	r := req("192.0.2.1:1")
	r = r.WithContext(principal.NewContext(r.Context(), &principal.Principal{Method: "apikey", ClientID: "ak_1"}))
	if w := serve(p.Client(ok200), r); w.Code != 200 {
		t.Fatalf("API key: %d", w.Code)
	}
	// No principal (e.g. --dev-no-auth): no client rules.
	if w := serve(p.Client(ok200), req("192.0.2.1:1")); w.Code != 200 {
		t.Fatalf("anonymous: %d", w.Code)
	}
}

type countingRules struct {
	staticRules
	lookups int
}

func (c *countingRules) ClientNetRulesFor(ctx context.Context, id string) (Rules, error) {
	c.lookups++
	return c.staticRules.ClientNetRulesFor(ctx, id)
}

func TestClientRulesLookups(t *testing.T) {
	src := &countingRules{staticRules: staticRules{{ClientID: "known"}, {ClientID: "a", AllowIPs: []string{"192.0.2.0/24"}}}}
	p := newRulesPolicy(t, src, nil)
	h := p.Client(ok200)
	for range 3 {
		serve(h, withPrincipal(req("192.0.2.1:1"), "known"))
		serve(h, withPrincipal(req("192.0.2.1:1"), "a"))
	}
	if src.lookups != 0 {
		t.Fatalf("known clients looked up %d times", src.lookups)
	}
	for range 3 {
		serve(h, withPrincipal(req("192.0.2.1:1"), "new"))
	}
	if src.lookups != 1 {
		t.Fatalf("a new client looked up %d times, want once per reload", src.lookups)
	}
}
