package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/time/rate"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/mail"
	"github.com/lapis-health/lapis/internal/review"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/testclock"
	"github.com/lapis-health/lapis/internal/webhook"
)

type env struct {
	t     *testing.T
	p     *Portal
	srv   *httptest.Server
	mail  *mail.Memory
	log   *logbuf.Buffer
	clock *testclock.Clock
}

// newEnv starts the portal on a fresh SQLite database over httptest.
func newEnv(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	return newEnvOn(t, migratedURL(t), tweak)
}

// migratedURL returns the URL of a new SQLite database with, and holding
// nothing but, the schemas New migrates (the developer accounts', the
// apps' metadata, the webhooks' and the reviews'): a copy, in a
// temporary directory of t, of one migrated once per test process
// (dbtest.Template). New still applies the migrations, finding them done.
func migratedURL(t *testing.T) string {
	t.Helper()
	dir := dbtest.Template(t, "portal.migratedURL", func(dir string) error {
		ctx := context.Background()
		h, err := database.Open(ctx, database.Options{DataDir: dir})
		if err != nil {
			return err
		}
		defer h.Close()
		if _, err := developer.New(ctx, h, developer.Options{}); err != nil {
			return err
		}
		if _, err := newMetaStore(ctx, h); err != nil {
			return err
		}
		hooks, err := webhook.New(ctx, h, webhook.Config{})
		if err != nil {
			return err
		}
		if err := hooks.Close(); err != nil {
			return err
		}
		_, err = review.New(ctx, h, review.Config{})
		return err
	})
	return "sqlite:" + filepath.Join(dir, "lapis.db")
}

// newEnvOn starts the portal on the database URL.
func newEnvOn(t *testing.T, dbURL string, tweak func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	h, err := database.Open(context.Background(), database.Options{URL: dbURL, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	e := &env{t: t, mail: &mail.Memory{}, log: &logbuf.Buffer{}, clock: testclock.New(time.Now())}
	srv := httptest.NewUnstartedServer(nil)
	cfg := Config{BaseURL: "http://" + srv.Listener.Addr().String(), DB: h, Mail: e.mail,
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: e.clock.Now,
		AuthRate: rate.Limit(100), AuthBurst: 1000}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	e.srv = srv
	return e
}

// browser is a client with a cookie jar that does not follow redirects.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches a page and returns its status, body and CSRF token.
func (e *env) get(c *http.Client, path string) (int, string, string) {
	e.t.Helper()
	res, b := e.fetch(c, path)
	csrf := ""
	if m := csrfRE.FindStringSubmatch(b); m != nil {
		csrf = m[1]
	}
	return res.StatusCode, b, csrf
}

func (e *env) post(c *http.Client, path string, form url.Values) (*http.Response, string) {
	e.t.Helper()
	return e.read(c.PostForm(e.srv.URL+path, form))
}

// read reads and closes the body of the response to a request of the
// test (an error fails it).
func (e *env) read(res *http.Response, err error) (*http.Response, string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

var tokenRE = regexp.MustCompile(`token=([A-Za-z0-9_-]+)`)

// mailedToken is the token of the last link mailed to addr.
func (e *env) mailedToken(addr string) string {
	e.t.Helper()
	m, ok := e.mail.Last(addr)
	if !ok {
		e.t.Fatalf("no mail to %s", addr)
	}
	t := tokenRE.FindStringSubmatch(m.Body)
	if t == nil {
		e.t.Fatalf("no link in %q", m.Body)
	}
	return t[1]
}

func (e *env) cookie(c *http.Client) string {
	u, _ := url.Parse(e.srv.URL)
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == "lapis_portal" {
			return k.Value
		}
	}
	return ""
}

// signUpAndLogIn walks sign-up, verification and login with pages.
func (e *env) signUpAndLogIn(email string) *http.Client {
	e.t.Helper()
	c := e.browser()
	_, _, csrf := e.get(c, "/portal/signup")
	res, body := e.post(c, "/portal/signup", url.Values{"csrf": {csrf}, "email": {email}, "name": {"Dev"}, "organization": {"Org of " + email}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
	if res.StatusCode != 200 || !strings.Contains(body, "Check your email") {
		e.t.Fatalf("signup %d %s", res.StatusCode, body)
	}
	tok := e.mailedToken(email)
	st, body, csrf := e.get(c, "/portal/verify?token="+tok)
	if st != 200 || !strings.Contains(body, "Verify my address") {
		e.t.Fatalf("verify page %d", st)
	}
	if res, body := e.post(c, "/portal/verify", url.Values{"csrf": {csrf}, "token": {tok}}); res.StatusCode != 200 || !strings.Contains(body, "is verified") {
		e.t.Fatalf("verify %d %s", res.StatusCode, body)
	}
	_, _, csrf = e.get(c, "/portal/login")
	before := e.cookie(c)
	res, body = e.post(c, "/portal/login", url.Values{"csrf": {csrf}, "email": {email}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/portal/" {
		e.t.Fatalf("login %d %s", res.StatusCode, body)
	}
	if after := e.cookie(c); after == before || after == "" {
		e.t.Fatal("the session cookie did not change at login (session fixation)")
	}
	return c
}

func TestPagesSignUpVerifyLoginTerms(t *testing.T) {
	e := newEnv(t, nil)
	c := e.signUpAndLogIn("alice@example.org")
	st, body, csrf := e.get(c, "/portal/")
	if st != 200 || !strings.Contains(body, "Org of alice@example.org") || !strings.Contains(body, "current terms of use") {
		t.Fatalf("dashboard %d %s", st, body)
	}
	// Terms block: accept.
	_, body, csrf = e.get(c, "/portal/terms")
	if !strings.Contains(body, "default terms of use") {
		t.Fatalf("terms page %s", body)
	}
	if res, _ := e.post(c, "/portal/terms", url.Values{"csrf": {csrf}, "version": {"1"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("accept terms %d", res.StatusCode)
	}
	if need, _ := e.p.dev.NeedsTerms(context.Background(), mustDev(t, e, "alice@example.org")); need {
		t.Fatal("terms still needed")
	}
	// Every page carries the strict CSP, stays small and has a viewport.
	for _, path := range []string{"/portal/", "/portal/account", "/portal/org", "/portal/terms"} {
		res, b := e.fetch(c, path)
		csp := res.Header.Get("Content-Security-Policy")
		if res.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") || len(b) > 100<<10 || !strings.Contains(b, `name="viewport"`) {
			t.Errorf("%s: %d csp %q size %d", path, res.StatusCode, csp, len(b))
		}
	}
	// Logged out: pages send to the login page.
	anon := e.browser()
	res, _ := anon.Get(e.srv.URL + "/portal/account")
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(res.Header.Get("Location"), "/portal/login?next=") {
		t.Fatalf("anonymous account %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	// Logout ends the session.
	_, _, csrf = e.get(c, "/portal/")
	if res, _ := e.post(c, "/portal/logout", url.Values{"csrf": {csrf}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	if res, _ := c.Get(e.srv.URL + "/portal/"); res.StatusCode != http.StatusFound {
		t.Fatalf("after logout %d", res.StatusCode)
	}
}

func mustDev(t *testing.T, e *env, email string) string {
	d, err := e.p.dev.DeveloperByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return d.ID
}

// TestSessionFixation: a cookie planted before login is useless after it.
func TestSessionFixation(t *testing.T) {
	e := newEnv(t, nil)
	e.signUpAndLogIn("fix@example.org") // creates the account
	attacker := e.browser()
	_, _, csrf := e.get(attacker, "/portal/login")
	planted := e.cookie(attacker)
	// The victim logs in with the planted cookie.
	victim := e.browser()
	u, _ := url.Parse(e.srv.URL)
	victim.Jar.SetCookies(u, []*http.Cookie{{Name: "lapis_portal", Value: planted, Path: "/"}})
	res, _ := e.post(victim, "/portal/login", url.Values{"csrf": {csrf}, "email": {"fix@example.org"}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %d", res.StatusCode)
	}
	if e.cookie(victim) == planted {
		t.Fatal("cookie not rotated")
	}
	if res, _ := attacker.Get(e.srv.URL + "/portal/account"); res.StatusCode != http.StatusFound {
		t.Fatalf("planted cookie logged in: %d", res.StatusCode)
	}
}

func TestCSRFRefused(t *testing.T) {
	e := newEnv(t, nil)
	c := e.signUpAndLogIn("csrf@example.org")
	// A form without (or with a wrong) token.
	for _, tok := range []string{"", "wrong"} {
		if res, _ := e.post(c, "/portal/account/tokens", url.Values{"csrf": {tok}, "name": {"x"}}); res.StatusCode != http.StatusForbidden {
			t.Fatalf("token %q: %d", tok, res.StatusCode)
		}
	}
	if res, _ := e.post(e.browser(), "/portal/login", url.Values{"email": {"csrf@example.org"}, "password": {"correct horse battery"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("login without token: %d", res.StatusCode)
	}
	// API with the session cookie but no header.
	req, _ := http.NewRequest("POST", e.srv.URL+"/portal/api/tokens", strings.NewReader(`{"name":"x"}`))
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	assertAPIError(t, res, http.StatusForbidden, "csrf")
	// A cross-site browser request is refused before anything else.
	_, _, csrf := e.get(c, "/portal/account")
	req, _ = http.NewRequest("POST", e.srv.URL+"/portal/account/tokens", strings.NewReader(url.Values{"csrf": {csrf}, "name": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res, _ := c.Do(req); res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", res.StatusCode)
	}
	if l, _ := e.p.dev.APITokens(context.Background(), mustDev(t, e, "csrf@example.org")); len(l) != 0 {
		t.Fatal("a forged request created a token")
	}
}

func assertAPIError(t *testing.T, res *http.Response, status int, code string) {
	t.Helper()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	if res.StatusCode != status || out["error"] != code || out["error_description"] == "" {
		t.Fatalf("want %d %s, got %d %v", status, code, res.StatusCode, out)
	}
}

func TestLoginLockoutPage(t *testing.T) {
	e := newEnv(t, nil)
	e.signUpAndLogIn("lock@example.org")
	c := e.browser()
	for i := 0; i < 5; i++ {
		_, _, csrf := e.get(c, "/portal/login")
		if res, _ := e.post(c, "/portal/login", url.Values{"csrf": {csrf}, "email": {"lock@example.org"}, "password": {"wrong password"}}); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, res.StatusCode)
		}
	}
	_, _, csrf := e.get(c, "/portal/login")
	res, body := e.post(c, "/portal/login", url.Values{"csrf": {csrf}, "email": {"lock@example.org"}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Invalid email, password or code") {
		t.Fatalf("locked login %d", res.StatusCode)
	}
	e.clock.Add(16 * time.Minute)
	_, _, csrf = e.get(c, "/portal/login")
	if res, _ := e.post(c, "/portal/login", url.Values{"csrf": {csrf}, "email": {"lock@example.org"}, "password": {"correct horse battery"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window %d", res.StatusCode)
	}
}

func TestRateLimitPerAddress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthRate = rate.Limit(0.001); c.AuthBurst = 2 })
	for i := 0; i < 3; i++ {
		res, err := http.Post(e.srv.URL+"/portal/api/reset/request", "application/json", strings.NewReader(`{"email":"x@example.org"}`))
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 && res.StatusCode != http.StatusAccepted {
			t.Fatalf("%d: %d", i, res.StatusCode)
		}
		if i == 2 {
			if res.Header.Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
			assertAPIError(t, res, http.StatusTooManyRequests, "rate_limited")
		}
		res.Body.Close()
	}
}

// api calls the JSON API with a bearer token.
func (e *env) api(method, path, bearer string, body any) (int, map[string]any, []any) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res := httpcall.Do(e.t, req)
	var arr []any
	if res.Body == nil {
		_ = json.Unmarshal([]byte(res.Raw), &arr)
	}
	return res.Status, res.Body, arr
}

// apiDeveloper signs up, verifies and logs in through the API, then
// creates a developer token with the session.
func (e *env) apiDeveloper(email string) string {
	e.t.Helper()
	if st, out, _ := e.api("POST", "/portal/api/signup", "", map[string]string{"email": email, "password": "correct horse battery", "name": "D"}); st != 201 {
		e.t.Fatalf("signup %d %v", st, out)
	}
	if st, out, _ := e.api("POST", "/portal/api/verify", "", map[string]string{"token": e.mailedToken(email)}); st != 200 || out["verified"] != true {
		e.t.Fatalf("verify %d %v", st, out)
	}
	c := e.browser()
	res, err := c.Post(e.srv.URL+"/portal/api/login", "application/json", strings.NewReader(`{"email":"`+email+`","password":"correct horse battery"}`))
	if err != nil {
		e.t.Fatal(err)
	}
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	csrf, _ := out["csrf_token"].(string)
	if res.StatusCode != 200 || csrf == "" {
		e.t.Fatalf("login %d %v", res.StatusCode, out)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/portal/api/tokens", strings.NewReader(`{"name":"script"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", csrf)
	res, err = c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	out = nil
	_ = json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	tok, _ := out["token"].(string)
	if res.StatusCode != 201 || !strings.HasPrefix(tok, "lpd_") {
		e.t.Fatalf("token %d %v", res.StatusCode, out)
	}
	return tok
}

func TestAPIOrganisationsAndIsolation(t *testing.T) {
	e := newEnv(t, nil)
	a := e.apiDeveloper("a@example.org")
	b := e.apiDeveloper("b@example.org")
	x := e.apiDeveloper("x@example.org")
	st, me, _ := e.api("GET", "/portal/api/me", a, nil)
	if st != 200 || me["needs_terms"] != true {
		t.Fatalf("me %d %v", st, me)
	}
	orgA := me["organizations"].([]any)[0].(map[string]any)["id"].(string)
	// Invite b; b accepts with the mailed token.
	if st, out, _ := e.api("POST", "/portal/api/orgs/"+orgA+"/invitations", a, map[string]string{"email": "b@example.org", "role": "developer"}); st != 201 {
		t.Fatalf("invite %d %v", st, out)
	}
	if st, out, _ := e.api("POST", "/portal/api/invitations/accept", b, map[string]string{"token": e.mailedToken("b@example.org")}); st != 200 || out["role"] != "developer" {
		t.Fatalf("accept %d %v", st, out)
	}
	_, _, members := e.api("GET", "/portal/api/orgs/"+orgA+"/members", b, nil)
	if len(members) != 2 {
		t.Fatalf("members %v", members)
	}
	bID := mustDev(t, e, "b@example.org")
	aID := mustDev(t, e, "a@example.org")
	// b (developer) cannot promote itself; a cannot demote itself (last owner).
	if st, out, _ := e.api("PUT", "/portal/api/orgs/"+orgA+"/members/"+bID, b, map[string]string{"role": "owner"}); st != 403 || out["error"] != "forbidden" {
		t.Fatalf("self-promotion %d %v", st, out)
	}
	if st, out, _ := e.api("PUT", "/portal/api/orgs/"+orgA+"/members/"+aID, a, map[string]string{"role": "developer"}); st != 409 || out["error"] != "last_owner" {
		t.Fatalf("last owner %d %v", st, out)
	}
	// x, an outsider, gets 404 on every route of orgA.
	for _, c := range []struct{ m, p string }{
		{"GET", "/portal/api/orgs/" + orgA + "/members"},
		{"GET", "/portal/api/orgs/" + orgA + "/invitations"},
		{"POST", "/portal/api/orgs/" + orgA + "/invitations"},
		{"PUT", "/portal/api/orgs/" + orgA + "/members/" + bID},
		{"DELETE", "/portal/api/orgs/" + orgA + "/members/" + bID},
	} {
		var body any
		if c.m == "POST" {
			body = map[string]string{"email": "x@example.org", "role": "owner"}
		} else if c.m == "PUT" {
			body = map[string]string{"role": "owner"}
		}
		if st, out, _ := e.api(c.m, c.p, x, body); st != 404 || out["error"] != "not_found" {
			t.Errorf("%s %s by an outsider: %d %v", c.m, c.p, st, out)
		}
	}
	// Terms via the API; operators only may set them.
	st, terms, _ := e.api("GET", "/portal/api/terms", a, nil)
	if st != 200 || terms["version"] != float64(1) || terms["accepted"] != false {
		t.Fatalf("terms %d %v", st, terms)
	}
	if st, _, _ := e.api("POST", "/portal/api/terms/accept", a, map[string]int{"version": 1}); st != 204 {
		t.Fatalf("accept terms %d", st)
	}
	if st, out, _ := e.api("PUT", "/portal/api/admin/terms", a, map[string]string{"text": "new"}); st != 403 {
		t.Fatalf("non-operator terms %d %v", st, out)
	}
	if err := e.p.dev.SetOperator(context.Background(), "a@example.org", true); err != nil {
		t.Fatal(err)
	}
	if st, out, _ := e.api("PUT", "/portal/api/admin/terms", a, map[string]string{"text": "Terms v2"}); st != 201 || out["version"] != float64(2) {
		t.Fatalf("operator terms %d %v", st, out)
	}
	if _, me, _ := e.api("GET", "/portal/api/me", a, nil); me["needs_terms"] != true {
		t.Fatal("v2 not needed")
	}
	if st, out, _ := e.api("POST", "/portal/api/terms/accept", a, map[string]int{"version": 1}); st != 409 || out["error"] != "terms_outdated" {
		t.Fatalf("old version %d %v", st, out)
	}
	// Bad input is a 4xx with a description.
	if st, out, _ := e.api("POST", "/portal/api/orgs", a, map[string]any{"nme": "x"}); st != 400 || out["error"] != "invalid_request" {
		t.Fatalf("unknown field %d %v", st, out)
	}
	if st, out, _ := e.api("GET", "/portal/api/nothing", a, nil); st != 404 || out["error"] != "not_found" {
		t.Fatalf("unknown route %d %v", st, out)
	}
	// Unauthenticated and revoked tokens get 401.
	if st, out, _ := e.api("GET", "/portal/api/me", "lpd_nope", nil); st != 401 || out["error"] != "unauthorized" {
		t.Fatalf("bad token %d %v", st, out)
	}
	_, _, toks := e.api("GET", "/portal/api/tokens", a, nil)
	id := toks[0].(map[string]any)["id"].(string)
	if st, _, _ := e.api("DELETE", "/portal/api/tokens/"+id, x, nil); st != 404 {
		t.Fatalf("other's token revoked: %d", st)
	}
	if st, _, _ := e.api("DELETE", "/portal/api/tokens/"+id, a, nil); st != 204 {
		t.Fatalf("revoke %d", st)
	}
	if st, _, _ := e.api("GET", "/portal/api/me", a, nil); st != 401 {
		t.Fatalf("revoked token works: %d", st)
	}
}

// TestAPITOTP: two-step login through the JSON API, and the audit
// events of its account changes (the same as the pages' ones).
func TestAPITOTP(t *testing.T) {
	events := &memAudit{}
	e := newEnv(t, func(c *Config) { c.Audit = events })
	tok := e.apiDeveloper("t@example.org")
	st, en, _ := e.api("POST", "/portal/api/totp/enroll", tok, nil)
	if st != 200 || !strings.HasPrefix(en["otpauth_uri"].(string), "otpauth://totp/") {
		t.Fatalf("enroll %d %v", st, en)
	}
	secret := en["secret"].(string)
	code := func() string {
		c, _ := totp.GenerateCodeCustom(secret, e.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		return c
	}
	st, out, _ := e.api("POST", "/portal/api/totp/confirm", tok, map[string]string{"code": code()})
	if st != 200 || len(out["recovery_codes"].([]any)) != 10 {
		t.Fatalf("confirm %d %v", st, out)
	}
	st, out, _ = e.api("POST", "/portal/api/login", "", map[string]string{"email": "t@example.org", "password": "correct horse battery"})
	if st != 401 || out["error"] != "mfa_required" {
		t.Fatalf("login %d %v", st, out)
	}
	mfa := out["mfa_token"].(string)
	if st, out, _ := e.api("POST", "/portal/api/login/totp", "", map[string]string{"mfa_token": mfa, "code": "000000"}); st != 401 {
		t.Fatalf("bad code %d %v", st, out)
	}
	e.clock.Add(30 * time.Second)
	if st, out, _ := e.api("POST", "/portal/api/login/totp", "", map[string]string{"mfa_token": mfa, "code": code()}); st != 200 || out["csrf_token"] == "" {
		t.Fatalf("second factor %d %v", st, out)
	}
	st, out, _ = e.api("POST", "/portal/api/tokens", tok, map[string]string{"name": "ci"})
	if st != 201 {
		t.Fatalf("token %d %v", st, out)
	}
	if st, _, _ := e.api("DELETE", "/portal/api/tokens/"+out["id"].(string), tok, nil); st != 204 {
		t.Fatalf("revoke %d", st)
	}
	if st, out, _ := e.api("POST", "/portal/api/totp/disable", tok, map[string]string{"password": "wrong password"}); st != 401 {
		t.Fatalf("disable with a wrong password %d %v", st, out)
	}
	if events.has("developer disabled TOTP") {
		t.Fatal("a refused disable was audited as done")
	}
	if st, out, _ := e.api("POST", "/portal/api/totp/disable", tok, map[string]string{"password": "correct horse battery"}); st != 204 {
		t.Fatalf("disable %d %v", st, out)
	}
	for _, want := range []string{"developer enrolled TOTP", "developer created portal API token " + out["id"].(string), "developer revoked portal API token", "developer disabled TOTP"} {
		if !events.has(want) {
			t.Errorf("no audit event %q", want)
		}
	}
}

// TestNoSecretsInLogs: with a real sender no token or password reaches
// the log; the dev-mode sender logs the link, marked.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.apiDeveloper("s@example.org")
	e.api("POST", "/portal/api/reset/request", "", map[string]string{"email": "s@example.org"})
	reset := e.mailedToken("s@example.org")
	e.api("POST", "/portal/api/reset", "", map[string]string{"token": reset, "password": "another password"})
	e.api("POST", "/portal/api/login", "", map[string]string{"email": "s@example.org", "password": "wrong one!"})
	logs := e.log.String()
	for _, secret := range []string{tok, strings.TrimPrefix(tok, "lpd_"), reset, "correct horse battery", "another password", "wrong one!"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("log holds a secret: %s", logs)
		}
	}
	for _, m := range e.mail.Messages() {
		if tk := tokenRE.FindStringSubmatch(m.Body); tk != nil && strings.Contains(logs, tk[1]) {
			t.Fatal("a mailed token is in the log")
		}
	}
	// Development mode: the link is logged, marked as such.
	var buf logbuf.Buffer
	d := newEnv(t, func(c *Config) { c.Mail = &mail.Log{Logger: slog.New(slog.NewTextHandler(&buf, nil))} })
	d.api("POST", "/portal/api/signup", "", map[string]string{"email": "devmode@example.org", "password": "correct horse battery"})
	out := buf.String()
	if !strings.Contains(out, "DEVELOPMENT MODE") || !strings.Contains(out, "/portal/verify?token=") || strings.Contains(out, "correct horse battery") {
		t.Fatalf("dev-mode log: %s", out)
	}
}

func TestPagesOrgAndAccount(t *testing.T) {
	events := &memAudit{}
	e := newEnv(t, func(c *Config) { c.Audit = events })
	owner := e.signUpAndLogIn("own@example.org")
	_, body, csrf := e.get(owner, "/portal/org")
	if !strings.Contains(body, "Invite a member") {
		t.Fatalf("org page %s", body)
	}
	orgID := regexp.MustCompile(`name="org" value="([^"]+)"`).FindStringSubmatch(body)[1]
	if res, body := e.post(owner, "/portal/org/invite", url.Values{"csrf": {csrf}, "org": {orgID}, "email": {"mem@example.org"}, "role": {"developer"}}); res.StatusCode != 200 || !strings.Contains(body, "Invitation sent") {
		t.Fatalf("invite %d", res.StatusCode)
	}
	inv := e.mailedToken("mem@example.org")
	member := e.signUpAndLogIn("mem@example.org")
	_, body, csrf = e.get(member, "/portal/invite?token="+inv)
	if res, _ := e.post(member, "/portal/invite", url.Values{"csrf": {csrf}, "token": {inv}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("accept %d %s", res.StatusCode, body)
	}
	_, body, _ = e.get(member, "/portal/org?org="+orgID)
	if !strings.Contains(body, "own@example.org") || !strings.Contains(body, "Leave this organisation") {
		t.Fatalf("member's org page %s", body)
	}
	// The last owner cannot leave.
	_, _, csrf = e.get(owner, "/portal/org")
	res, body := e.post(owner, "/portal/org/remove", url.Values{"csrf": {csrf}, "org": {orgID}, "member": {mustDev(t, e, "own@example.org")}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "at least one owner") {
		t.Fatalf("last owner leaves %d", res.StatusCode)
	}
	// Another developer's organisation is not shown.
	outsider := e.signUpAndLogIn("out@example.org")
	if st, _, _ := e.get(outsider, "/portal/org?org="+orgID); st != http.StatusNotFound {
		t.Fatalf("outsider org page %d", st)
	}
	// API token on the account page, shown once.
	_, _, csrf = e.get(owner, "/portal/account")
	res, body = e.post(owner, "/portal/account/tokens", url.Values{"csrf": {csrf}, "name": {"ci"}})
	m := regexp.MustCompile(`id="new-token">(lpd_[^<]+)<`).FindStringSubmatch(body)
	if res.StatusCode != 200 || m == nil {
		t.Fatalf("token create %d", res.StatusCode)
	}
	if _, body, _ := e.get(owner, "/portal/account"); strings.Contains(body, m[1]) {
		t.Fatal("token shown twice")
	}
	if !events.has("developer created portal API token ") {
		t.Error("no audit event for the token")
	}
	// Operators only on the admin page.
	if st, _, _ := e.get(owner, "/portal/admin/terms"); st != http.StatusForbidden {
		t.Fatalf("admin page %d", st)
	}
}

func TestPagesPasswordResetAndResend(t *testing.T) {
	e := newEnv(t, nil)
	e.signUpAndLogIn("r@example.org")
	c := e.browser()
	_, _, csrf := e.get(c, "/portal/reset")
	// The same answer for a known and an unknown address.
	_, known := e.post(c, "/portal/reset", url.Values{"csrf": {csrf}, "email": {"r@example.org"}})
	_, unknown := e.post(c, "/portal/reset", url.Values{"csrf": {csrf}, "email": {"nobody@example.org"}})
	nonce := regexp.MustCompile(`nonce="[^"]*"`)
	if !strings.Contains(known, "If an account uses this address") || nonce.ReplaceAllString(known, "") != nonce.ReplaceAllString(unknown, "") {
		t.Fatal("reset answers differ")
	}
	tok := e.mailedToken("r@example.org")
	_, body, csrf := e.get(c, "/portal/reset?token="+tok)
	if !strings.Contains(body, "New password") {
		t.Fatalf("reset form %s", body)
	}
	if res, _ := e.post(c, "/portal/reset", url.Values{"csrf": {csrf}, "token": {tok}, "password": {"a brand new one"}, "password2": {"different"}}); res.StatusCode != 400 {
		t.Fatalf("mismatch %d", res.StatusCode)
	}
	if res, body := e.post(c, "/portal/reset", url.Values{"csrf": {csrf}, "token": {tok}, "password": {"a brand new one"}, "password2": {"a brand new one"}}); res.StatusCode != 200 || !strings.Contains(body, "Password changed") {
		t.Fatalf("reset %d", res.StatusCode)
	}
	if res, _ := e.post(c, "/portal/reset", url.Values{"csrf": {csrf}, "token": {tok}, "password": {"a third one!"}, "password2": {"a third one!"}}); res.StatusCode != 400 {
		t.Fatalf("token reused %d", res.StatusCode)
	}
	_, _, csrf = e.get(c, "/portal/login")
	if res, _ := e.post(c, "/portal/login", url.Values{"csrf": {csrf}, "email": {"r@example.org"}, "password": {"a brand new one"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the new password %d", res.StatusCode)
	}
	// An unverified account is told so after the right password, and can
	// ask for a new link.
	u := e.browser()
	_, _, csrf = e.get(u, "/portal/signup")
	e.post(u, "/portal/signup", url.Values{"csrf": {csrf}, "email": {"u@example.org"}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
	first := e.mailedToken("u@example.org")
	_, _, csrf = e.get(u, "/portal/login")
	res, body := e.post(u, "/portal/login", url.Values{"csrf": {csrf}, "email": {"u@example.org"}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Send a new link") {
		t.Fatalf("unverified login %d", res.StatusCode)
	}
	e.post(u, "/portal/verify/resend", url.Values{"csrf": {csrf}, "email": {"u@example.org"}})
	if second := e.mailedToken("u@example.org"); second == first {
		t.Fatal("no new link")
	}
	// A bad verification token.
	_, _, csrf = e.get(u, "/portal/verify?token=nope")
	if res, _ := e.post(u, "/portal/verify", url.Values{"csrf": {csrf}, "token": {"nope"}}); res.StatusCode != 400 {
		t.Fatalf("bad token %d", res.StatusCode)
	}
}

// TestPostgres runs the page and API flows on PostgreSQL.
func TestPostgres(t *testing.T) {
	e := newEnvOn(t, pgtest.New(t), nil)
	c := e.signUpAndLogIn("pg@example.org")
	if st, body, _ := e.get(c, "/portal/org"); st != 200 || !strings.Contains(body, "Org of pg@example.org") {
		t.Fatalf("org page %d", st)
	}
	a := e.apiDeveloper("pga@example.org")
	if st, me, _ := e.api("GET", "/portal/api/me", a, nil); st != 200 || me["developer"].(map[string]any)["email"] != "pga@example.org" {
		t.Fatalf("me %d %v", st, me)
	}
}

// TestLoggedInSkipsLogin: a logged-in developer who opens the login or
// sign-up page goes to the dashboard.
func TestLoggedInSkipsLogin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.signUpAndLogIn("in@example.org")
	for _, p := range []string{"/portal/login", "/portal/signup"} {
		res, err := c.Get(e.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/portal/" {
			t.Fatalf("%s: %d %s", p, res.StatusCode, res.Header.Get("Location"))
		}
	}
}
