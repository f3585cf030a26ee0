package authorize_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/authorize"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
)

// fakePatients is a PatientLister over two patients.
type fakePatients struct{}

var testPatients = []oauth.PatientSummary{{ID: "p1", Name: "Alice Smith", BirthDate: "1970-01-01", Gender: "female"}, {ID: "p2", Name: "Bob Jones"}}

func (fakePatients) SearchPatients(_ context.Context, name string, limit int) ([]oauth.PatientSummary, error) {
	var out []oauth.PatientSummary
	for _, p := range testPatients {
		if strings.Contains(strings.ToLower(p.Name), strings.ToLower(name)) && len(out) < limit {
			out = append(out, p)
		}
	}
	return out, nil
}

func (fakePatients) Patient(_ context.Context, id string) (*oauth.PatientSummary, error) {
	for _, p := range testPatients {
		if p.ID == id {
			return &p, nil
		}
	}
	return nil, nil
}

func (fakePatients) Encounters(_ context.Context, pid string, _ int) ([]oauth.EncounterSummary, error) {
	if pid == "p1" {
		return []oauth.EncounterSummary{{ID: "e1", Label: "2024-01-01 Checkup"}}, nil
	}
	return nil, nil
}

// authEnv is an authorization server with accounts and pages over HTTP.
type authEnv struct {
	t      *testing.T
	db     *authdb.DB
	srv    *oauth.Server
	issuer string
	mu     sync.Mutex
	grants []*oauth.Grant
	codes  []string
}

const appCB = "https://app.example/cb"

// authDialects runs f as a subtest on an authEnv of each dialect with
// login policy pol.
func authDialects(t *testing.T, pol oauth.LoginPolicy, f func(t *testing.T, e *authEnv)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) { f(t, newAuthEnv(t, d, pol)) })
	}
}

func newAuthEnv(t *testing.T, dialect string, pol oauth.LoginPolicy, mods ...func(*oauth.Config)) *authEnv {
	t.Helper()
	db, km, _ := authtest.Stores(t, dialect)
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String() + "/fhir"
	cfg := oauth.Config{Issuer: issuer, Clients: db, Assertions: db, Revocations: db, Keys: km,
		JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true}), Codes: oauth.NewCodeStore(db), Refresh: db,
		Accounts: db, Sessions: db, Launches: db, Patients: fakePatients{}, Login: pol}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &authEnv{t: t, db: db, srv: srv, issuer: issuer}
	pages := authorize.New(srv)
	pages.SetCodeIssuer(func(ctx context.Context, g *oauth.Grant) (string, error) {
		code, err := srv.IssueCode(ctx, g)
		e.mu.Lock()
		e.grants = append(e.grants, g)
		e.codes = append(e.codes, code)
		e.mu.Unlock()
		return code, err
	})
	mux := http.NewServeMux()
	srv.Mount(mux)
	pages.Mount(mux)
	ts.Config.Handler = mux
	ts.Start()
	t.Cleanup(ts.Close)
	return e
}

func (e *authEnv) lastGrant() *oauth.Grant {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.grants) == 0 {
		return nil
	}
	return e.grants[len(e.grants)-1]
}

func (e *authEnv) account(username, password, fhirUser string) *authdb.Account {
	e.t.Helper()
	a, err := oauth.CreateAccount(context.Background(), e.db, username, password, fhirUser)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *authEnv) client(reg oauth.Registration) string {
	e.t.Helper()
	return oauthtest.Register(e.t, e.db, reg).ClientID
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	hdr    http.Header
	body   string
}

func (p page) field(name string) string {
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// location parses the redirect target.
func (p page) location(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(p.hdr.Get("Location"))
	if err != nil || p.hdr.Get("Location") == "" {
		t.Fatalf("no redirect: %d %s", p.status, p.body)
	}
	return u
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, hdr: resp.Header, body: string(body)}
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values, mod ...func(*http.Request)) page {
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, m := range mod {
		m(req)
	}
	return b.do(req)
}

const pkceVerifier = "0f4e3c1a-4b7e-4c5a-9d1e-1c2b3a4d5e6f-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"

func challenge(v string) string {
	h := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// authorizeParams are valid parameters for client id.
func (e *authEnv) authorizeParams(id, scope string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {id}, "redirect_uri": {appCB}, "scope": {scope},
		"state": {"st 1/é&x=y+z"}, "aud": {e.issuer}, "code_challenge": {challenge(pkceVerifier)},
		"code_challenge_method": {"S256"}, "nonce": {"n-0S6_WzA2Mj"},
	}
}

func (e *authEnv) authorizeURL(v url.Values) string {
	return e.issuer + oauth.PathAuthorize + "?" + v.Encode()
}

// login submits the login form of p.
func (e *authEnv) login(b *browser, p page, user, pw string) page {
	e.t.Helper()
	return b.post(e.issuer+oauth.PathLogin, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "next": {p.field("next")}, "username": {user}, "password": {pw}})
}

func checkPageHeaders(t *testing.T, p page) {
	t.Helper()
	h := p.hdr
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("page headers: %v", h)
	}
}

const standaloneScope = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Condition.rs patient/Observation.rs patient/AllergyIntolerance.rs"

func TestAuthorizeStandalone(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{}, func(t *testing.T, e *authEnv) {
		acct := e.account("Alice", "correct horse battery", "Patient/p1")
		id := e.client(oauth.Registration{Name: "Patient app", Type: "public", RedirectURIs: []string{appCB},
			Scopes: []string{"launch/patient openid fhirUser offline_access patient/*.rs"}})
		b := newBrowser(t)
		params := e.authorizeParams(id, standaloneScope+" system/Patient.rs user/Patient.rs")
		p := b.get(e.authorizeURL(params))
		if p.status != 200 || !strings.Contains(p.body, `action="/fhir/auth/login"`) || p.field("csrf") == "" || p.field("req") == "" {
			t.Fatalf("login page: %d %s", p.status, p.body)
		}
		checkPageHeaders(t, p)
		ck := p.hdr.Get("Set-Cookie")
		if !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Lax") || !strings.HasPrefix(ck, "lapis_session=") {
			t.Fatalf("cookie: %s", ck)
		}
		p = e.login(b, p, "ALICE", "correct horse battery")
		if p.status != 200 || !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("consent page: %d %s", p.status, p.body)
		}
		checkPageHeaders(t, p)
		for _, want := range []string{"offline access", "Alice Smith", `value="patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"`, `value="patient/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern"`} {
			if !strings.Contains(p.body, want) {
				t.Errorf("consent page lacks %q", want)
			}
		}
		if strings.Contains(p.body, "system/Patient.rs") || strings.Contains(p.body, "user/Patient.rs") {
			t.Error("scopes outside the registration are offered")
		}
		lab := "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
		form := url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "decision": {"approve"},
			// AllergyIntolerance and the resource-level Observation unticked; one Observation category chosen;
			// a scope never offered is smuggled in and must be ignored.
			"scope": {"patient/Patient.rs", "patient/Condition.rs", lab, "offline_access", "patient/*.cruds"}}
		p = b.post(e.issuer+oauth.PathConsent, form)
		if p.status != http.StatusSeeOther {
			t.Fatalf("approve: %d %s", p.status, p.body)
		}
		loc := p.location(t)
		q := loc.Query()
		if loc.Scheme+"://"+loc.Host+loc.Path != appCB || q.Get("code") == "" || q.Get("state") != params.Get("state") || q.Get("error") != "" || q.Get("iss") != e.issuer {
			t.Fatalf("redirect %s", loc)
		}
		g := e.lastGrant()
		want := []string{"launch/patient", "openid", "fhirUser", "patient/Patient.rs", "patient/Condition.rs", lab, "offline_access"}
		if !slices.Equal(g.Scopes, want) {
			t.Fatalf("granted %q, want %q", g.Scopes, want)
		}
		if g.Subject != acct.Subject || g.FHIRUser != "Patient/p1" || g.Patient != "p1" || g.ClientID != id || g.RedirectURI != appCB ||
			g.CodeChallenge != challenge(pkceVerifier) || g.Nonce != "n-0S6_WzA2Mj" || g.NeedPatientBanner || g.AuthTime.IsZero() {
			t.Fatalf("grant %+v", g)
		}
		// The consent form is single-use.
		if p = b.post(e.issuer+oauth.PathConsent, form); p.status != 400 || p.hdr.Get("Location") != "" {
			t.Fatalf("second approval: %d", p.status)
		}
		// The code works at the token endpoint and carries exactly the choice.
		tr := b.post(e.issuer+oauth.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
			"redirect_uri": {appCB}, "code_verifier": {pkceVerifier}, "client_id": {id}})
		var tok map[string]any
		if tr.status != 200 || json.Unmarshal([]byte(tr.body), &tok) != nil {
			t.Fatalf("token: %d %s", tr.status, tr.body)
		}
		if got := strings.Fields(tok["scope"].(string)); !sameSet(got, want) || tok["patient"] != "p1" {
			t.Fatalf("token scope %v patient %v", got, tok["patient"])
		}

		// Logged in already: a second authorization goes straight to
		// consent; denying redirects with access_denied and the state.
		p = b.get(e.authorizeURL(params))
		if !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("SSO: %s", p.body)
		}
		p = b.post(e.issuer+oauth.PathConsent, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "decision": {"deny"}})
		if q := p.location(t).Query(); q.Get("error") != "access_denied" || q.Get("state") != params.Get("state") || q.Get("code") != "" || q.Get("iss") != e.issuer {
			t.Fatalf("deny: %v", q)
		}
		// prompt=login asks again.
		params.Set("prompt", "login")
		if p = b.get(e.authorizeURL(params)); !strings.Contains(p.body, `action="/fhir/auth/login"`) {
			t.Fatal("prompt=login did not ask for the password")
		}
		if p = e.login(b, p, "alice", "correct horse battery"); !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("after prompt=login: %s", p.body)
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestAuthorizeErrors: conformance.md §2.5 and RFC 6749 §4.1.2.1.
func TestAuthorizeErrors(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{}, func(t *testing.T, e *authEnv) {
		id := e.client(oauth.Registration{Name: "app", Type: "confidential", RedirectURIs: []string{appCB, "https://app.example/cb2?x=1"},
			Scopes: []string{"launch/patient openid fhirUser offline_access patient/*.rs"}})
		backend := e.client(oauth.Registration{Name: "bulk", Type: "backend", JWKSURI: "https://app.example/jwks", Scopes: []string{"system/*.rs"}})
		good := func() url.Values { return e.authorizeParams(id, "launch/patient openid patient/Patient.rs") }
		b := newBrowser(t)
		suspended := e.client(oauth.Registration{Name: "suspended", Type: "confidential", RedirectURIs: []string{appCB},
			Scopes: []string{"launch/patient openid fhirUser offline_access patient/*.rs"}})
		if _, err := e.db.SuspendClient(context.Background(), suspended, "policy", time.Now()); err != nil {
			t.Fatal(err)
		}

		// Error page, never a redirect.
		for name, mod := range map[string]func(url.Values){
			"unknown client":        func(v url.Values) { v.Set("client_id", "nope") },
			"no client":             func(v url.Values) { v.Del("client_id") },
			"repeated client":       func(v url.Values) { v.Add("client_id", id) },
			"no redirect_uri":       func(v url.Values) { v.Del("redirect_uri") },
			"unregistered redirect": func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") },
			"redirect prefix":       func(v url.Values) { v.Set("redirect_uri", appCB+"/x") },
			"backend client":        func(v url.Values) { v.Set("client_id", backend) },
			"suspended client":      func(v url.Values) { v.Set("client_id", suspended) },
		} {
			v := good()
			mod(v)
			p := b.get(e.authorizeURL(v))
			if p.status != 400 || p.hdr.Get("Location") != "" || !strings.Contains(p.hdr.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %q", name, p.status, p.hdr.Get("Location"))
			}
			checkPageHeaders(t, p)
		}

		// Redirected errors, with the state echoed exactly.
		for _, c := range []struct {
			name, code string
			mod        func(url.Values)
		}{
			{"invalid aud", "invalid_request", func(v url.Values) { v.Set("aud", "https://inferno.healthit.gov/invalid_aud") }},
			{"aud with slash", "invalid_request", func(v url.Values) { v.Set("aud", e.issuer+"/") }},
			{"no aud", "invalid_request", func(v url.Values) { v.Del("aud") }},
			{"plain PKCE", "invalid_request", func(v url.Values) {
				v.Set("code_challenge_method", "plain")
				v.Set("code_challenge", pkceVerifier)
			}},
			{"no PKCE method", "invalid_request", func(v url.Values) { v.Del("code_challenge_method") }},
			{"no PKCE", "invalid_request", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
			{"short challenge", "invalid_request", func(v url.Values) { v.Set("code_challenge", "abc") }},
			{"token response", "unsupported_response_type", func(v url.Values) { v.Set("response_type", "token") }},
			{"no response_type", "invalid_request", func(v url.Values) { v.Del("response_type") }},
			{"repeated scope", "invalid_request", func(v url.Values) { v.Add("scope", "openid") }},
			{"unregistered scope", "invalid_scope", func(v url.Values) { v.Set("scope", "system/*.rs user/Patient.rs") }},
			{"bad launch", "invalid_request", func(v url.Values) { v.Set("launch", "nope") }},
			{"prompt none", "login_required", func(v url.Values) { v.Set("prompt", "none") }},
		} {
			v := good()
			c.mod(v)
			p := b.get(e.authorizeURL(v))
			loc := p.location(t)
			q := loc.Query()
			if p.status != http.StatusFound || loc.Host != "app.example" || q.Get("error") != c.code || q.Get("error_description") == "" ||
				q.Get("state") != v.Get("state") || q.Has("code") {
				t.Errorf("%s: %d %s", c.name, p.status, loc)
			}
		}
		// No state: the error carries none.
		v := good()
		v.Del("state")
		if q := b.get(e.authorizeURL(v)).location(t).Query(); q.Get("error") != "invalid_request" || q.Has("state") {
			t.Errorf("no state: %v", q)
		}
		// A registered redirect URI with a query keeps it.
		v = good()
		v.Set("redirect_uri", "https://app.example/cb2?x=1")
		v.Set("aud", "https://wrong.example/fhir")
		if q := b.get(e.authorizeURL(v)).location(t).Query(); q.Get("x") != "1" || q.Get("error") != "invalid_request" {
			t.Errorf("redirect query: %v", q)
		}
		// POST (authorize-post), cross-origin like an app's auto-submitted form.
		v = good()
		v.Set("aud", "https://inferno.healthit.gov/invalid_aud")
		p := b.post(e.issuer+oauth.PathAuthorize, v, func(r *http.Request) {
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			r.Header.Set("Origin", "https://app.example")
		})
		if p.status != http.StatusSeeOther || p.location(t).Query().Get("error") != "invalid_request" {
			t.Errorf("POST invalid aud: %d %s", p.status, p.hdr.Get("Location"))
		}
		p = b.post(e.issuer+oauth.PathAuthorize, good(), func(r *http.Request) {
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			r.Header.Set("Origin", "https://app.example")
		})
		if p.status != 200 || !strings.Contains(p.body, `action="/fhir/auth/login"`) {
			t.Errorf("POST authorize: %d %s", p.status, p.body)
		}
		if len(e.grants) != 0 {
			t.Fatal("a code was issued")
		}
	})
}

func TestAuthorizeCSRFAndLockout(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{MaxFailures: 5, MaxFailuresPerIP: 8}, func(t *testing.T, e *authEnv) {
		e.account("bob", "bob's password", "Patient/p2")
		e.account("carol", "carol's password", "Patient/p1")
		e.account("dave", "dave's password", "Patient/p1")
		id := e.client(oauth.Registration{Name: "app", Type: "public", RedirectURIs: []string{appCB}, Scopes: []string{"openid fhirUser launch/patient patient/*.rs"}})
		b := newBrowser(t)
		lp := b.get(e.authorizeURL(e.authorizeParams(id, "openid patient/Patient.rs")))

		// CSRF: a wrong or missing token, no session, or a cross-site
		// submission are refused.
		for name, f := range map[string]func() page{
			"wrong token": func() page {
				return b.post(e.issuer+oauth.PathLogin, url.Values{"csrf": {"x"}, "req": {lp.field("req")}, "username": {"bob"}, "password": {"bob's password"}})
			},
			"no token": func() page {
				return b.post(e.issuer+oauth.PathLogin, url.Values{"req": {lp.field("req")}, "username": {"bob"}, "password": {"bob's password"}})
			},
			"no session": func() page {
				return newBrowser(t).post(e.issuer+oauth.PathLogin, url.Values{"csrf": {lp.field("csrf")}, "req": {lp.field("req")}, "username": {"bob"}, "password": {"bob's password"}})
			},
			"cross-site": func() page {
				return b.post(e.issuer+oauth.PathLogin, url.Values{"csrf": {lp.field("csrf")}, "req": {lp.field("req")}, "username": {"bob"}, "password": {"bob's password"}},
					func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") })
			},
		} {
			if p := f(); p.status != http.StatusForbidden || strings.Contains(p.body, "consent") {
				t.Errorf("%s: %d", name, p.status)
			}
		}
		// Another session's request id is not usable.
		other := newBrowser(t)
		op := other.get(e.authorizeURL(e.authorizeParams(id, "openid patient/Patient.rs")))
		if p := b.post(e.issuer+oauth.PathLogin, url.Values{"csrf": {lp.field("csrf")}, "req": {op.field("req")}, "username": {"bob"}, "password": {"bob's password"}}); p.status != 400 {
			t.Errorf("foreign request: %d", p.status)
		}

		// Lockout: 5 failures lock the account; the message never changes.
		msg := "Invalid username or password."
		for i := range 5 {
			p := e.login(b, lp, "bob", "wrong password "+string(rune('a'+i)))
			if p.status != 401 || !strings.Contains(p.body, msg) {
				t.Fatalf("failure %d: %d", i, p.status)
			}
		}
		if p := e.login(b, lp, "bob", "bob's password"); p.status != 401 || !strings.Contains(p.body, msg) {
			t.Fatalf("locked account logged in: %d", p.status)
		}
		if p := e.login(b, lp, "nobody", "whatever123"); p.status != 401 || !strings.Contains(p.body, msg) {
			t.Fatalf("unknown user: %d", p.status)
		}
		// CSRF on the consent form: a logged-in user's consent with a
		// wrong token issues nothing.
		p := e.login(b, lp, "carol", "carol's password")
		if !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("carol: %d %s", p.status, p.body)
		}
		if lp.field("csrf") == p.field("csrf") {
			t.Fatal("CSRF token not rotated at login")
		}
		if p2 := b.post(e.issuer+oauth.PathConsent, url.Values{"csrf": {lp.field("csrf")}, "req": {p.field("req")}, "decision": {"approve"}}); p2.status != 403 || e.lastGrant() != nil {
			t.Fatalf("consent with stale CSRF: %d", p2.status)
		}
		// Per-address lockout: 8 failures from this address in the
		// window (7 so far) lock every account here.
		fb := newBrowser(t)
		fp := fb.get(e.authorizeURL(e.authorizeParams(id, "openid patient/Patient.rs")))
		if p := e.login(fb, fp, "carol", "nope nope"); p.status != 401 {
			t.Fatalf("8th failure: %d", p.status)
		}
		if p := e.login(fb, fp, "dave", "dave's password"); p.status != 401 || !strings.Contains(p.body, msg) {
			t.Fatalf("IP lockout: %d", p.status)
		}
	})
}

func TestEHRLaunchAndPicker(t *testing.T) {
	authDialects(t, oauth.LoginPolicy{}, func(t *testing.T, e *authEnv) {
		doc := e.account("dr.who", "practitioner pw", "Practitioner/pr1")
		e.account("pat", "patient password", "Patient/p1")
		scopes := []string{"launch launch/patient openid fhirUser offline_access user/*.rs patient/*.rs"}
		app := e.client(oauth.Registration{Name: "EHR app", Type: "public", RedirectURIs: []string{appCB}, LaunchURI: "https://app.example/launch", Scopes: scopes})
		other := e.client(oauth.Registration{Name: "Other app", Type: "public", RedirectURIs: []string{appCB}, LaunchURI: "https://other.example/launch", Scopes: scopes})
		// Clients an EHR launch cannot complete for are not offered, and
		// a launch of one is refused: suspended, or without a redirect URI.
		suspended := e.client(oauth.Registration{Name: "Suspended app", Type: "public", RedirectURIs: []string{appCB}, LaunchURI: "https://suspended.example/launch", Scopes: scopes})
		if ok, err := e.db.SuspendClient(context.Background(), suspended, "test", time.Now()); !ok || err != nil {
			t.Fatalf("suspend: %t %v", ok, err)
		}
		noRedirect := e.client(oauth.Registration{Name: "Backend app", Type: "backend", JWKSURI: "https://backend.example/jwks", LaunchURI: "https://backend.example/launch", Scopes: []string{"system/*.rs"}})

		// The SMART style document is public JSON.
		if p := newBrowser(t).get(e.issuer + oauth.PathSMARTStyle); p.status != 200 || !json.Valid([]byte(p.body)) {
			t.Fatalf("smart-style: %d", p.status)
		}
		// Patients may not launch.
		pb := newBrowser(t)
		p := pb.get(e.issuer + oauth.PathLaunch)
		if p = e.login(pb, p, "pat", "patient password"); p.status != 303 {
			t.Fatalf("patient login: %d", p.status)
		}
		if p = pb.get(e.issuer + oauth.PathLaunch); p.status != 403 {
			t.Fatalf("patient launch page: %d", p.status)
		}

		b := newBrowser(t)
		p = b.get(e.issuer + oauth.PathLaunch)
		if p.field("next") != "launch" {
			t.Fatalf("launch page without login: %s", p.body)
		}
		p = e.login(b, p, "dr.who", "practitioner pw")
		if p.status != 303 || p.hdr.Get("Location") != "/fhir/auth/launch" {
			t.Fatalf("practitioner login: %d %s", p.status, p.hdr.Get("Location"))
		}
		checkPageHeaders(t, p)
		if p = b.get(e.issuer + oauth.PathLaunch + "?q=ali"); !strings.Contains(p.body, "Alice Smith") || strings.Contains(p.body, "Bob Jones") {
			t.Fatalf("patient search: %s", p.body)
		}
		launch := func(client, enc string) string {
			t.Helper()
			p := b.get(e.issuer + oauth.PathLaunch + "?patient=p1")
			if !strings.Contains(p.body, "EHR app") || !strings.Contains(p.body, `value="e1"`) {
				t.Fatalf("launch page: %s", p.body)
			}
			if strings.Contains(p.body, "Suspended app") || strings.Contains(p.body, "Backend app") {
				t.Fatalf("launch page offers an app the launch cannot complete for: %s", p.body)
			}
			for _, id := range []string{suspended, noRedirect} {
				p := b.post(e.issuer+oauth.PathLaunch, url.Values{"csrf": {p.field("csrf")}, "patient": {"p1"}, "client_id": {id}})
				if p.status != 200 || p.hdr.Get("Location") != "" || !strings.Contains(p.body, "supports EHR launch") {
					t.Fatalf("launch of %s: %d %s", id, p.status, p.hdr.Get("Location"))
				}
			}
			p = b.post(e.issuer+oauth.PathLaunch, url.Values{"csrf": {p.field("csrf")}, "patient": {"p1"}, "encounter": {enc}, "client_id": {client}})
			loc := p.location(t)
			if p.status != 303 || loc.Query().Get("iss") != e.issuer || loc.Query().Get("launch") == "" {
				t.Fatalf("launch redirect: %d %s", p.status, loc)
			}
			return loc.Query().Get("launch")
		}
		// Launch POST needs the CSRF token.
		if p = b.post(e.issuer+oauth.PathLaunch, url.Values{"patient": {"p1"}, "client_id": {app}}); p.status != 403 {
			t.Fatalf("launch without CSRF: %d", p.status)
		}
		// Unknown encounter refused.
		lp := b.get(e.issuer + oauth.PathLaunch + "?patient=p1")
		if p = b.post(e.issuer+oauth.PathLaunch, url.Values{"csrf": {lp.field("csrf")}, "patient": {"p1"}, "encounter": {"e9"}, "client_id": {app}}); p.status != 200 || p.hdr.Get("Location") != "" {
			t.Fatalf("foreign encounter: %d", p.status)
		}

		ehrScope := "launch openid fhirUser offline_access user/Patient.rs user/Observation.rs patient/Patient.rs"
		authz := func(client, l string) page {
			v := e.authorizeParams(client, ehrScope)
			v.Set("launch", l)
			return b.post(e.issuer+oauth.PathAuthorize, v)
		}
		// Client-bound: another client cannot use it, and the attempt spends it.
		l1 := launch(app, "e1")
		if q := authz(other, l1).location(t).Query(); q.Get("error") != "invalid_request" {
			t.Fatalf("other client: %v", q)
		}
		if q := authz(app, l1).location(t).Query(); q.Get("error") != "invalid_request" {
			t.Fatalf("spent launch: %v", q)
		}
		l2 := launch(app, "e1")
		p = authz(app, l2)
		if p.status != 200 || !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("EHR consent: %d %s", p.status, p.body)
		}
		// Single use.
		if q := authz(app, l2).location(t).Query(); q.Get("error") != "invalid_request" {
			t.Fatalf("launch reused: %v", q)
		}
		p = b.post(e.issuer+oauth.PathConsent, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "decision": {"approve"},
			"scope": {"user/Patient.rs", "user/Observation.rs", "patient/Patient.rs", "offline_access"}})
		if q := p.location(t).Query(); q.Get("code") == "" {
			t.Fatalf("EHR approve: %v", q)
		}
		g := e.lastGrant()
		if g.Patient != "p1" || g.Encounter != "e1" || !g.NeedPatientBanner || g.SMARTStyleURL != e.issuer+oauth.PathSMARTStyle || g.Subject != doc.Subject ||
			!slices.Equal(g.Scopes, []string{"launch", "openid", "fhirUser", "user/Patient.rs", "user/Observation.rs", "patient/Patient.rs", "offline_access"}) {
			t.Fatalf("EHR grant %+v", g)
		}

		// Practitioner standalone with launch/patient: the picker.
		v := e.authorizeParams(app, "launch/patient openid fhirUser patient/Patient.rs")
		p = b.get(e.authorizeURL(v))
		if !strings.Contains(p.body, `action="/fhir/auth/select-patient"`) || !strings.Contains(p.body, "Bob Jones") {
			t.Fatalf("picker: %s", p.body)
		}
		// Consent cannot skip the picker.
		if c := b.post(e.issuer+oauth.PathConsent, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "decision": {"approve"}}); c.hdr.Get("Location") != "" {
			t.Fatal("consent without a patient issued a code")
		}
		p = b.post(e.issuer+oauth.PathSelectPatient, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "action": {"select"}, "patient": {"nope"}})
		if !strings.Contains(p.body, "Choose a patient from the list") {
			t.Fatalf("unknown patient: %s", p.body)
		}
		p = b.post(e.issuer+oauth.PathSelectPatient, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "action": {"select"}, "patient": {"p2"}})
		if !strings.Contains(p.body, `action="/fhir/auth/consent"`) || !strings.Contains(p.body, "Bob Jones") {
			t.Fatalf("after pick: %s", p.body)
		}
		p = b.post(e.issuer+oauth.PathConsent, url.Values{"csrf": {p.field("csrf")}, "req": {p.field("req")}, "decision": {"approve"}, "scope": {"patient/Patient.rs"}})
		if p.location(t).Query().Get("code") == "" {
			t.Fatal("no code after pick")
		}
		if g := e.lastGrant(); g.Patient != "p2" || g.NeedPatientBanner || !slices.Equal(g.Scopes, []string{"launch/patient", "openid", "fhirUser", "patient/Patient.rs"}) {
			t.Fatalf("picker grant %+v", g)
		}

		// An asymmetric app (a private_key_jwt client with a redirect and a
		// launch URI) is offered and launched like any other.
		asym := e.client(oauth.Registration{Name: "Asymmetric app", Type: "backend", JWKSURI: "https://asym.example/jwks",
			RedirectURIs: []string{appCB}, LaunchURI: "https://asym.example/launch", Scopes: scopes})
		lp = b.get(e.issuer + oauth.PathLaunch + "?patient=p1")
		if !strings.Contains(lp.body, "Asymmetric app") {
			t.Fatalf("launch page without the asymmetric app: %s", lp.body)
		}
		p = b.post(e.issuer+oauth.PathLaunch, url.Values{"csrf": {lp.field("csrf")}, "patient": {"p1"}, "client_id": {asym}})
		if loc := p.location(t); p.status != 303 || loc.Host != "asym.example" || loc.Query().Get("launch") == "" {
			t.Fatalf("asymmetric launch redirect: %d %s", p.status, loc)
		}
		if p = authz(asym, p.location(t).Query().Get("launch")); p.status != 200 || !strings.Contains(p.body, `action="/fhir/auth/consent"`) {
			t.Fatalf("asymmetric EHR consent: %d %s", p.status, p.body)
		}
	})
}
