package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/lapis-health/lapis/internal/testutil/browsertest"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// The portal's end-to-end tests run lapis serve with its default settings
// (audit on, rate limits on, no SMTP: the development-mode mail sender
// writes each email, with its link, to the server log, where the tests
// read it as a person reads their inbox).

// portalCookie is the portal's session cookie.
const portalCookie = "lapis_portal"

// dev is one person using the portal over HTTP: a cookie jar (the
// browser session) and, once created, a developer token. Each person
// connects from their own loopback address (127.0.0.N), as people do from
// their own machines, so the per-address limits of sign-up and login
// apply to each apart.
type dev struct {
	t        testing.TB
	s        *lapistest.Server
	hc       *http.Client
	jar      http.CookieJar
	email    string
	password string
	id       string
	org      string // the first organisation's id
	csrf     string // the session's CSRF token (cookie requests)
	token    string // the developer token (lpd_...)
}

// newDev makes a person connecting from 127.0.0.<n>.
func newDev(t testing.TB, s *lapistest.Server, email string, n int) *dev {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}, Timeout: 30 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
	return &dev{t: t, s: s, jar: jar, email: email, password: "correct horse battery " + email,
		hc: &http.Client{Jar: jar, Transport: tr, Timeout: 2 * time.Minute,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// portalURL is the absolute URL of a portal path ("/portal/...").
func (in *instance) portalURL(path string) string { return in.Origin + path }

// reply is a portal response.
type reply struct {
	status int
	header http.Header
	raw    []byte
}

// obj decodes the body as a JSON object.
func (r reply) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.raw, &m); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %s", r.status, truncate(r.raw))
	}
	return m
}

// list decodes the body as a JSON array of objects.
func (r reply) list(t testing.TB) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.raw, &l); err != nil {
		t.Fatalf("status %d: body is not a JSON array: %s", r.status, truncate(r.raw))
	}
	return l
}

// send sends a request with the person's cookies; header pairs are set
// (an empty value deletes).
func (d *dev) send(method, path string, body io.Reader, header ...string) reply {
	d.t.Helper()
	req, err := http.NewRequest(method, d.s.Origin+path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	res, err := d.hc.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, header: res.Header, raw: raw}
}

// api calls the JSON API with a JSON body (nil: none): with the
// developer token when there is one, else the session cookie and its CSRF
// token. It fails unless the status is want (0: any).
func (d *dev) api(method, path string, body any, want int, header ...string) reply {
	d.t.Helper()
	var rd io.Reader
	var h []string
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
		h = append(h, "Content-Type", "application/json")
	}
	if d.token != "" {
		h = append(h, "Authorization", "Bearer "+d.token)
	} else if d.csrf != "" {
		h = append(h, "X-CSRF-Token", d.csrf)
	}
	r := d.send(method, path, rd, append(h, header...)...)
	if want != 0 && r.status != want {
		d.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, truncate(r.raw))
	}
	return r
}

// form posts a page form (with the session's CSRF token unless csrf is
// given explicitly in vals).
func (d *dev) form(path string, vals url.Values) reply {
	d.t.Helper()
	if _, ok := vals["csrf"]; !ok {
		vals.Set("csrf", d.csrf)
	}
	return d.send("POST", path, strings.NewReader(vals.Encode()), "Content-Type", "application/x-www-form-urlencoded")
}

// cookie is the current value of the portal session cookie.
func (d *dev) cookie() string {
	u, _ := url.Parse(d.s.Origin + "/portal/")
	for _, c := range d.jar.Cookies(u) {
		if c.Name == portalCookie {
			return c.Value
		}
	}
	return ""
}

// mailLink waits for the development-mode email to `to` whose subject
// contains subject and returns the link to the portal page in it.
func mailLink(t testing.TB, s *lapistest.Server, to, subject, page string) string {
	t.Helper()
	line := s.WaitLog(t, 2*time.Minute, `"dev_mode":true`, `"to":"`+to+`"`, subject)
	var m struct{ Body string }
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("mail log line %q: %v", line, err)
	}
	link := regexp.MustCompile(`https?://\S+/portal/` + page + `\?token=\S+`).FindString(m.Body)
	if link == "" {
		t.Fatalf("no /portal/%s link in the mail to %s: %q", page, to, m.Body)
	}
	return link
}

// tokenOf is the token query parameter of a mailed link.
func tokenOf(t testing.TB, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("link %q has no token", link)
	}
	return u.Query().Get("token")
}

// totpCode is the TOTP code of secret for the time step after now: the
// server accepts the neighbouring steps (clock drift) but never a step
// already used, so the next step's code is always fresh.
func totpCode(t testing.TB, secret string, step int) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, time.Now().Add(time.Duration(step)*30*time.Second),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signUpAPI signs d up through the JSON API, verifies the address with
// the mailed link, logs in (cookie + CSRF token) and loads its first
// organisation.
func (d *dev) signUpAPI(org string) {
	t := d.t
	t.Helper()
	body := map[string]any{"email": d.email, "password": d.password, "name": "Dev " + d.email}
	if org != "" {
		body["organization"] = org
	}
	d.api("POST", "/portal/api/signup", body, 201)
	// Unverified: no login.
	if r := d.api("POST", "/portal/api/login", map[string]any{"email": d.email, "password": d.password}, 403); r.obj(t)["error"] != "not_verified" {
		t.Fatalf("unverified login: %s", r.raw)
	}
	tok := tokenOf(t, mailLink(t, d.s, d.email, "Verify your email", "verify"))
	d.api("POST", "/portal/api/verify", map[string]any{"token": tok}, 200)
	// The link works once.
	d.api("POST", "/portal/api/verify", map[string]any{"token": tok}, 400)
	d.loginAPI()
}

// loginAPI logs d in by email and password (no TOTP) and reads /me.
func (d *dev) loginAPI() {
	t := d.t
	t.Helper()
	tok := d.token
	d.token = ""
	lr := d.api("POST", "/portal/api/login", map[string]any{"email": d.email, "password": d.password}, 200).obj(t)
	d.csrf, _ = lr["csrf_token"].(string)
	if d.csrf == "" || d.cookie() == "" {
		t.Fatalf("login: no CSRF token or cookie: %v", lr)
	}
	d.me()
	d.token = tok
}

// me reads /portal/api/me into d.
func (d *dev) me() map[string]any {
	t := d.t
	t.Helper()
	me := d.api("GET", "/portal/api/me", nil, 200).obj(t)
	dv, _ := me["developer"].(map[string]any)
	d.id, _ = dv["id"].(string)
	if orgs, _ := me["organizations"].([]any); len(orgs) > 0 && d.org == "" {
		d.org, _ = orgs[0].(map[string]any)["id"].(string)
	}
	return me
}

// acceptTerms accepts the current terms.
func (d *dev) acceptTerms() {
	t := d.t
	t.Helper()
	terms := d.api("GET", "/portal/api/terms", nil, 200).obj(t)
	if terms["accepted"] != false {
		t.Fatalf("terms accepted before acceptance: %v", terms)
	}
	d.api("POST", "/portal/api/terms/accept", map[string]any{"version": terms["version"]}, 204)
	if me := d.me(); me["needs_terms"] != false {
		t.Fatalf("needs_terms after acceptance: %v", me)
	}
}

// secretSet collects every secret the tests saw, to check the server log
// never shows one.
type secretSet struct{ vals map[string]string }

func (s *secretSet) add(what, v string) {
	if len(v) >= 8 {
		if s.vals == nil {
			s.vals = map[string]string{}
		}
		s.vals[v] = what
	}
}

// checkLog fails when a secret appears in the server's log. Mail tokens
// (verification, reset, invitation links) may appear in the
// development-mode mail lines only; nothing else may appear anywhere.
func (s *secretSet) checkLog(t *testing.T, in *instance, mailTokens []string) {
	t.Helper()
	logs := in.Logs()
	for _, line := range strings.Split(logs, "\n") {
		for v, what := range s.vals {
			if strings.Contains(line, v) || strings.Contains(line, url.QueryEscape(v)) {
				t.Errorf("the server log shows a %s: %.300s", what, line)
			}
		}
		if strings.Contains(line, `"dev_mode":true`) {
			continue
		}
		for _, v := range mailTokens {
			if strings.Contains(line, v) {
				t.Errorf("a mail token appears outside the development-mode mail lines: %.300s", line)
			}
		}
	}
	if len(s.vals) < 3 {
		t.Errorf("only %d secrets were checked", len(s.vals))
	}
}

// TestPortalAPI walks the developer portal through its JSON API on a real
// server, on SQLite and PostgreSQL: sign-up (refused login before
// verification), verification by the mailed link (used once), login with
// the session cookie rotated (no fixation: a cookie set before login is
// never logged in), CSRF (missing or wrong X-CSRF-Token, cross-site
// request: 403), developer tokens (lpd_...), terms acceptance, TOTP
// enrolment and login with a code (wrong code refused, recovery code),
// an invitation accepted by a new member, logout; a developer of another
// organisation gets 404 for every organisation-scoped API route and page
// (the route table read from the portal's source, filled with the first
// organisation's ids); sandbox credentials get 401 on production and the
// reverse; and no secret appears in the server log except the
// development-mode mail lines' links.
func TestPortalAPI(t *testing.T) {
	t.Parallel()
	forDialects(t, func(t *testing.T, dbURL string) { testPortalAPI(t, serve(t, lapistest.Options{Database: dbURL})) })
}

func testPortalAPI(t *testing.T, in *instance) {
	var sec secretSet
	var mailToks []string

	// Session fixation: a visitor's anonymous session cookie (as an
	// attacker could plant one) is replaced at login.
	a := newDev(t, in.Server, "alice@example.org", 2)
	if r := a.send("GET", "/portal/login", nil); r.status != 200 {
		t.Fatalf("login page: %d", r.status)
	}
	planted := a.cookie()
	if planted == "" {
		t.Fatal("the login page set no session cookie")
	}
	a.signUpAPI("Org A")
	mailToks = append(mailToks, tokenOf(t, mailLink(t, in.Server, a.email, "Verify your email", "verify")))
	if a.cookie() == planted || a.cookie() == "" {
		t.Fatal("the session cookie was not rotated at login")
	}
	fix := newDev(t, in.Server, "attacker@example.org", 3)
	u, _ := url.Parse(in.Origin + "/portal/")
	fix.jar.SetCookies(u, []*http.Cookie{{Name: portalCookie, Value: planted, Path: "/"}})
	if r := fix.api("GET", "/portal/api/me", nil, 0); r.status != 401 {
		t.Fatalf("the planted pre-login cookie is logged in: %d %s", r.status, r.raw)
	}
	if r := fix.send("GET", "/portal/", nil); r.status/100 != 3 || !strings.Contains(r.header.Get("Location"), "/portal/login") {
		t.Fatalf("dashboard with the planted cookie: %d %s", r.status, r.header.Get("Location"))
	}
	sec.add("session cookie", a.cookie())
	sec.add("CSRF token", a.csrf)
	sec.add("password", a.password)
	if a.org == "" {
		t.Fatal("the sign-up made no organisation")
	}

	// Every page: strict CSP (no inline script without the page's nonce,
	// nothing from other origins), no framing, no caching of pages with a
	// session.
	lp := a.send("GET", "/portal/login", nil)
	csp := lp.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") && !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("login page CSP %q", csp)
	}
	if fa := lp.header.Get("X-Frame-Options"); fa == "" && !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("login page may be framed: %v", lp.header)
	}
	if r := in.CLI(t, "", "portal", "operator", "add", "nobody@example.org"); r.Code == 0 || !strings.Contains(r.Stderr, "no developer account") {
		t.Errorf("operator add of an unknown address: exit %d %q", r.Code, r.Stderr)
	}

	// CSRF: the cookie alone does not authorise an unsafe request.
	tokBody := map[string]any{"name": "ci"}
	for name, h := range map[string][]string{
		"no header":  {"X-CSRF-Token", ""},
		"wrong":      {"X-CSRF-Token", "not-the-token"},
		"cross-site": {"Sec-Fetch-Site", "cross-site"},
	} {
		r := a.api("POST", "/portal/api/tokens", tokBody, 0, h...)
		if r.status != 403 || r.obj(t)["error"] != "csrf" {
			t.Errorf("CSRF %s: %d %s", name, r.status, r.raw)
		}
	}
	// Page forms: without the token, or with another session's.
	if r := a.form("/portal/org/create", url.Values{"name": {"Nope"}, "csrf": {""}}); r.status != 403 {
		t.Errorf("form without CSRF token: %d", r.status)
	}
	if l := a.api("GET", "/portal/api/tokens", nil, 200).list(t); len(l) != 0 {
		t.Fatalf("a refused request made a token: %v", l)
	}

	// A developer token; then the API by token alone.
	tr := a.api("POST", "/portal/api/tokens", tokBody, 201).obj(t)
	lpd, _ := tr["token"].(string)
	if !strings.HasPrefix(lpd, "lpd_") {
		t.Fatalf("developer token %q", lpd)
	}
	sec.add("developer token", lpd)
	if l := a.api("GET", "/portal/api/tokens", nil, 200); strings.Contains(string(l.raw), lpd) {
		t.Fatal("the token list shows the token again")
	}
	a.token = lpd
	a.acceptTerms()

	// TOTP: enrol, confirm, then a login needs a code.
	en := a.api("POST", "/portal/api/totp/enroll", nil, 200).obj(t)
	secret, _ := en["secret"].(string)
	if secret == "" || !strings.HasPrefix(en["otpauth_uri"].(string), "otpauth://totp/") {
		t.Fatalf("enrolment: %v", en)
	}
	sec.add("TOTP secret", secret)
	a.api("POST", "/portal/api/totp/confirm", map[string]any{"code": "000000x"}, 400)
	cf := a.api("POST", "/portal/api/totp/confirm", map[string]any{"code": totpCode(t, secret, 0)}, 200).obj(t)
	recovery, _ := cf["recovery_codes"].([]any)
	if len(recovery) < 5 {
		t.Fatalf("recovery codes: %v", cf)
	}
	for _, c := range recovery {
		sec.add("recovery code", c.(string))
	}
	a.token = ""
	a.csrf = ""
	mfa := a.api("POST", "/portal/api/login", map[string]any{"email": a.email, "password": a.password}, 401).obj(t)
	if mfa["error"] != "mfa_required" || mfa["mfa_token"] == "" {
		t.Fatalf("login with TOTP on: %v", mfa)
	}
	sec.add("MFA token", mfa["mfa_token"].(string))
	a.api("POST", "/portal/api/login/totp", map[string]any{"mfa_token": mfa["mfa_token"], "code": "123456"}, 401)
	lr := a.api("POST", "/portal/api/login/totp", map[string]any{"mfa_token": mfa["mfa_token"], "code": totpCode(t, secret, 1)}, 200).obj(t)
	a.csrf, _ = lr["csrf_token"].(string)
	sec.add("session cookie", a.cookie())
	if me := a.me(); me["developer"].(map[string]any)["totp"] != true {
		t.Fatalf("me after TOTP login: %v", me)
	}
	// A recovery code works once in place of a code.
	mfa2 := a.api("POST", "/portal/api/login", map[string]any{"email": a.email, "password": a.password}, 401).obj(t)
	a.api("POST", "/portal/api/login/totp", map[string]any{"mfa_token": mfa2["mfa_token"], "code": recovery[0]}, 200)
	mfa3 := a.api("POST", "/portal/api/login", map[string]any{"email": a.email, "password": a.password}, 401).obj(t)
	a.api("POST", "/portal/api/login/totp", map[string]any{"mfa_token": mfa3["mfa_token"], "code": recovery[0]}, 401)
	a.csrf = ""
	a.token = lpd

	// Invitation: Alice invites Mia, who signs up and accepts.
	mia := newDev(t, in.Server, "mia@example.org", 4)
	a.api("POST", "/portal/api/orgs/"+a.org+"/invitations", map[string]any{"email": mia.email, "role": "developer"}, 201)
	invite := tokenOf(t, mailLink(t, in.Server, mia.email, "invited", "invite"))
	mailToks = append(mailToks, invite)
	mia.signUpAPI("")
	mailToks = append(mailToks, tokenOf(t, mailLink(t, in.Server, mia.email, "Verify your email", "verify")))
	sec.add("session cookie", mia.cookie())
	sec.add("password", mia.password)
	m := mia.api("POST", "/portal/api/invitations/accept", map[string]any{"token": invite}, 200).obj(t)
	if m["id"] != a.org || m["role"] != "developer" {
		t.Fatalf("accepted membership: %v", m)
	}
	mia.api("POST", "/portal/api/invitations/accept", map[string]any{"token": invite}, 0) // used: not again
	members := a.api("GET", "/portal/api/orgs/"+a.org+"/members", nil, 200).list(t)
	if len(members) != 2 {
		t.Fatalf("members: %v", members)
	}
	// A developer (not owner) cannot invite.
	if r := mia.api("POST", "/portal/api/orgs/"+a.org+"/invitations", map[string]any{"email": "x@example.org", "role": "owner"}, 0); r.status != 403 {
		t.Errorf("a developer member invites: %d %s", r.status, r.raw)
	}

	// Another organisation's developer: every org-scoped route is 404.
	b := newDev(t, in.Server, "bob@example.org", 5)
	b.signUpAPI("Org B")
	mailToks = append(mailToks, tokenOf(t, mailLink(t, in.Server, b.email, "Verify your email", "verify")))
	sec.add("session cookie", b.cookie())
	b.acceptTerms()
	aTokens := a.api("GET", "/portal/api/tokens", nil, 200).list(t)
	ids := map[string]string{"org": a.org, "dev": a.id, "tokens": aTokens[0]["id"].(string)}
	sweepOtherOrg(t, in, b, ids, false)

	// Password reset by the mailed link; the old password stops working.
	mia.api("POST", "/portal/api/reset/request", map[string]any{"email": mia.email}, 202)
	mia.api("POST", "/portal/api/reset/request", map[string]any{"email": "nobody@example.org"}, 202) // the same answer
	reset := tokenOf(t, mailLink(t, in.Server, mia.email, "Reset your", "reset"))
	mailToks = append(mailToks, reset)
	old := mia.password
	mia.password = "a brand new passphrase"
	sec.add("password", mia.password)
	mia.api("POST", "/portal/api/reset", map[string]any{"token": reset, "password": "short"}, 400)
	mia.api("POST", "/portal/api/reset", map[string]any{"token": reset, "password": mia.password}, 200)
	mia.api("POST", "/portal/api/reset", map[string]any{"token": reset, "password": mia.password}, 400) // once
	mia.api("POST", "/portal/api/login", map[string]any{"email": mia.email, "password": old}, 401)
	mia.loginAPI()

	// Sign-up and login are limited per address: a burst from one
	// address is refused with 429 and Retry-After.
	flood := newDev(t, in.Server, "flood@example.org", 9)
	limited := 0
	for range 25 {
		r := flood.api("POST", "/portal/api/login", map[string]any{"email": "flood@example.org", "password": "wrong wrong wrong"}, 0)
		if r.status == 429 {
			limited++
			if r.header.Get("Retry-After") == "" || r.obj(t)["error"] != "rate_limited" {
				t.Errorf("429 without Retry-After or error code: %v %s", r.header, r.raw)
			}
		} else if r.status != 401 {
			t.Errorf("login flood: %d %s", r.status, r.raw)
		}
	}
	if limited == 0 {
		t.Error("25 logins in a row from one address were never limited")
	}
	a.api("GET", "/portal/api/me", nil, 200) // others are not affected

	// Logout ends the session: its cookie no longer works.
	mia.api("POST", "/portal/api/logout", nil, 204)
	if r := mia.api("GET", "/portal/api/me", nil, 0); r.status != 401 {
		t.Errorf("me after logout: %d", r.status)
	}
	// The developer token is revoked by its owner only.
	b.api("DELETE", "/portal/api/tokens/"+ids["tokens"], nil, 404)
	a.api("GET", "/portal/api/me", nil, 200)

	// Sandbox and production credentials stay apart.
	prodBase, sbBase := in.base, in.Origin+"/sandbox/fhir"
	prod := newCreds(t, in, "production", prodBase)
	sb := newCreds(t, in, "sandbox", sbBase)
	for _, c := range []envCreds{prod, sb} {
		sec.add("client secret", c.secret)
		sec.add("access token", c.token)
		sec.add("API key", c.apiKey)
	}
	for _, pair := range []struct {
		own   envCreds
		other string
	}{{prod, sbBase}, {sb, prodBase}} {
		for how, h := range pair.own.headers() {
			in.do("GET", pair.own.base+"/Patient?_count=1", nil, h...).expect(t, 200)
			if r := in.do("GET", pair.other+"/Patient?_count=1", nil, h...); r.status != 401 {
				t.Errorf("%s %s credential on %s: %d", pair.own.base, how, pair.other, r.status)
			}
		}
	}

	sec.checkLog(t, in, mailToks)
}

// personalPages are portal pages about the visitor, not an
// organisation (?org= does not apply), and public pages.
var personalPages = map[string]bool{
	"/portal/": true, "/portal/signup": true, "/portal/login": true, "/portal/login/totp": true,
	"/portal/logout": true, "/portal/verify": true, "/portal/verify/resend": true, "/portal/reset": true,
	"/portal/account": true, "/portal/account/totp/enroll": true, "/portal/account/totp/confirm": true,
	"/portal/account/totp/disable": true, "/portal/account/tokens": true, "/portal/account/tokens/revoke": true,
	"/portal/invite": true, "/portal/terms": true, "/portal/org/create": true,
}

// sweepBodies are JSON bodies the sweep tries on unsafe API routes.
var sweepBodies = []map[string]any{
	{}, {"role": "owner"}, {"email": "x@example.org", "role": "owner"}, {"name": "x"},
	{"name": "x", "preset": "backend"}, {"overlap": "1h"}, {"reason": "x"}, {"url": "https://example.org/hook"},
}

// portalRoute is one route of the portal's mux.
type portalRoute struct{ method, pattern string }

// portalRoutes reads the portal's routes (m.HandleFunc("METHOD /portal/...")
// from its Go sources, so routes added later are swept too.
func portalRoutes(t testing.TB) []portalRoute {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(shareddata.Root(), "internal", "portal", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("portal sources: %v", err)
	}
	re := regexp.MustCompile(`HandleFunc\("(GET|POST|PUT|DELETE|PATCH) (/portal/[^"]*)"`)
	var out []portalRoute
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			out = append(out, portalRoute{m[1], m[2]})
		}
	}
	return out
}

// sweepOtherOrg tries, as b, every portal route that names an
// organisation or one of its objects, filled with another organisation's
// ids (ids: "org", "dev", and per collection the id of one of its
// objects, keyed by the path segment before {id}); each must answer 404
// and change nothing. Page routes are tried with ?org= and an org form
// field too. With full, every {id} route must have an id in ids (else an
// unknown id is tried).
func sweepOtherOrg(t *testing.T, in *instance, b *dev, ids map[string]string, full bool) {
	t.Helper()
	tried := 0
	ph := regexp.MustCompile(`\{[a-z]+\}`)
	for _, rt := range portalRoutes(t) {
		p := strings.TrimSuffix(rt.pattern, "{$}")
		if strings.Contains(p, "/admin/") || personalPages[p] { // operators' routes: 403 for others (below)
			continue
		}
		segs := strings.Split(p, "/")
		named := false
		for i, s := range segs {
			switch s {
			case "{org}":
				segs[i], named = ids["org"], true
			case "{dev}":
				segs[i] = ids["dev"]
			case "{env}":
				segs[i] = "sandbox"
				if v := ids["env"]; v != "" {
					segs[i] = v
				}
			case "{action}":
				segs[i] = "revoke"
			case "{id}":
				v := ids[segs[i-1]]
				if segs[i-1] == "{env}" || segs[i-1] == "sandbox" || segs[i-1] == "production" {
					v = ids[segs[i-2]]
				}
				if v == "" && full {
					t.Errorf("sweep: no id of another organisation for %s %s; add one", rt.method, rt.pattern)
				}
				if v == "" {
					v = "unknown"
				}
				segs[i], named = v, true
			}
		}
		path := strings.Join(segs, "/")
		if ph.MatchString(path) {
			t.Errorf("sweep: unfilled placeholder in %s", path)
			continue
		}
		isAPI := strings.HasPrefix(path, "/portal/api/")
		if !named && isAPI {
			continue // not about an organisation's objects
		}
		if !named {
			// A page: the organisation goes in ?org= or the form.
			path += "?org=" + url.QueryEscape(ids["org"])
		}
		var r reply
		switch {
		case isAPI && rt.method == "GET":
			r = b.api("GET", path, nil, 0)
		case isAPI:
			// The body may be checked first: try plausible ones until
			// one passes that check.
			for _, body := range sweepBodies {
				if r = b.api(rt.method, path, body, 0); r.status != 400 {
					break
				}
			}
		case rt.method == "GET":
			r = b.send("GET", path, nil)
		default:
			r = b.form(path, url.Values{"org": {ids["org"]}, "member": {ids["dev"]}, "id": {ids["tokens"]}, "role": {"owner"}, "email": {"x@example.org"}, "name": {"x"}})
		}
		tried++
		if r.status != 404 {
			if !named && r.status == 200 && !strings.Contains(string(r.raw), ids["org"]) {
				continue // a page that ignores ?org= and shows b's own organisation
			}
			t.Errorf("other organisation: %s %s: %d, want 404: %.300s", rt.method, path, r.status, r.raw)
		}
	}
	t.Logf("other-organisation sweep: %d routes tried", tried)
	if tried < 8 {
		t.Errorf("sweep tried only %d routes", tried)
	}
	// Routes that name an app or key in the query or the body.
	if app := ids["apps"]; app != "" {
		type q struct {
			method, path string
			body         any
		}
		var qs []q
		if hasRoute(t, "GET", "/portal/api/activity") {
			qs = append(qs, q{"GET", "/portal/api/activity?env=sandbox&client=" + app, nil},
				q{"GET", "/portal/api/activity?env=sandbox&key=" + ids["keys"], nil},
				q{"GET", "/portal/activity?env=sandbox&client=" + app, nil},
				q{"GET", "/portal/activity?env=sandbox&key=" + ids["keys"], nil})
		}
		if hasRoute(t, "POST", "/portal/api/launch") {
			qs = append(qs, q{"GET", "/portal/launch?client=" + app, nil},
				q{"POST", "/portal/api/launch", map[string]any{"client_id": app, "mode": "standalone", "login": "practitioner"}},
				q{"POST", "/portal/launch", url.Values{"client": {app}, "client_id": {app}, "mode": {"standalone"}, "login": {"practitioner"}}})
		}
		for _, c := range qs {
			var r reply
			switch body := c.body.(type) {
			case url.Values:
				r = b.form(c.path, body)
			case nil:
				if strings.HasPrefix(c.path, "/portal/api/") {
					r = b.api(c.method, c.path, nil, 0)
				} else {
					r = b.send(c.method, c.path, nil)
				}
			default:
				r = b.api(c.method, c.path, body, 0)
			}
			if r.status != 404 {
				t.Errorf("other organisation: %s %s: %d, want 404: %.300s", c.method, c.path, r.status, r.raw)
			}
		}
	}
	// Operators' pages and API: 403 for a developer.
	for _, rt := range portalRoutes(t) {
		if !strings.Contains(rt.pattern, "/admin/") || strings.Contains(rt.pattern, "{") {
			continue
		}
		var r reply
		switch {
		case strings.HasPrefix(rt.pattern, "/portal/api/"):
			r = b.api(rt.method, rt.pattern, map[string]any{"text": "mine now"}, 0)
		case rt.method == "GET":
			r = b.send("GET", rt.pattern, nil)
		default:
			r = b.form(rt.pattern, url.Values{"text": {"mine now"}})
		}
		if r.status != 403 && r.status != 404 {
			t.Errorf("operator route %s %s as a developer: %d", rt.method, rt.pattern, r.status)
		}
	}
}

// browser is a person in headless Chromium on a portal.
type browser struct {
	t     *testing.T
	ctx   context.Context
	in    *instance
	shots string // screenshot folder ("" : none)
}

func newBrowser(t *testing.T, in *instance) *browser {
	return &browser{t: t, ctx: browsertest.New(t, browsertest.Options{Width: 420, Height: 900, Timeout: 4 * time.Minute}), in: in, shots: os.Getenv("LAPIS_SCREENSHOT_DIR")}
}

// step runs actions, failing with the page's main element on error.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		b.t.Fatalf("%s: %v\npage: %.3000s", name, err, html)
	}
}

// text is the text of the page's main element.
func (b *browser) text() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// screenshot saves the page as LAPIS_SCREENSHOT_DIR/portal-NAME.png
// (README images) when that variable is set.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.checkPage(name)
	if b.shots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if len(png) > maxShotBytes { // a long page: its first screen only
		if png, err = chromedp.Run(b.ctx, chromedp.CaptureScreenshot()); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(b.shots, "portal-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// pageProblems is a script listing what a portal page must not have:
// inputs without a label, scripts, styles or images from another origin,
// inline event handlers, and no main landmark or title.
const pageProblems = `(() => {
  const out = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const labelled = (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) || el.closest('label') ||
      el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!labelled) out.push('unlabelled ' + el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll('script[src], link[href], img[src]')) {
    const u = new URL(el.getAttribute('src') || el.getAttribute('href'), location.href);
    if (u.origin !== location.origin && u.protocol !== 'data:') out.push('third-party ' + u.href);
  }
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.getAttributeNames()) if (a.startsWith('on')) out.push('inline handler ' + a);
  }
  if (!document.querySelector('main')) out.push('no main landmark');
  if (!document.title) out.push('no title');
  if (!document.documentElement.lang) out.push('no lang');
  return out;
})()`

// checkPage fails on the problems pageProblems finds on the current page.
func (b *browser) checkPage(name string) {
	b.t.Helper()
	probs, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](pageProblems))
	if err != nil {
		b.t.Fatalf("checking page %s: %v", name, err)
	}
	for _, p := range probs {
		b.t.Errorf("page %s: %s", name, p)
	}
}

// maxShotBytes bounds a README screenshot.
const maxShotBytes = 150 << 10

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// waitText waits for an element of the page's main part showing text
// (a page the last click leads to: the old page never shows it).
func waitText(text string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.Search(`//main//*[contains(., "` + text + `")]`))
}

// dashboard waits for the dashboard (its navigation entry current).
var dashboard = chromedp.WaitVisible(css(`nav a[aria-current="page"][href$="/portal/"]`))

// signUp signs a person up in the browser, opens the mailed link,
// verifies and logs in.
func (b *browser) signUp(email, password, org string) {
	b.t.Helper()
	b.step("open sign-up "+email, chromedp.Navigate(b.in.portalURL("/portal/signup")), chromedp.WaitVisible(chromedp.ID("email")))
	if org != "" {
		b.screenshot("signup")
		b.step("organisation", chromedp.SendKeys(chromedp.ID("organization"), org))
	}
	b.step("sign up "+email,
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("name"), "Browser "+email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("password2"), password),
		chromedp.Click(css(`form[action$="/signup"] button[type="submit"]`)),
		waitText("Check your email"),
	)
	link := mailLink(b.t, b.in.Server, email, "Verify your email", "verify")
	b.step("verify "+email,
		chromedp.Navigate(link),
		chromedp.Click(css(`form[action$="/verify"] button`)),
		waitText("is verified"),
	)
	b.step("log in "+email,
		chromedp.Click(css(`a.button[href$="/login"]`)),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
		dashboard,
	)
}

// acceptTerms follows the dashboard's terms notice and accepts.
func (b *browser) acceptTerms() {
	b.t.Helper()
	if !strings.Contains(b.text(), "current terms of use") {
		b.t.Fatalf("no terms notice: %s", b.text())
	}
	b.step("accept terms",
		chromedp.Click(css(`p.note a[href$="/terms"]`)),
		chromedp.WaitVisible(chromedp.ID("accept-terms")),
		chromedp.Click(chromedp.ID("accept-terms")),
		dashboard,
	)
	if strings.Contains(b.text(), "current terms of use") {
		b.t.Fatal("the terms notice is still shown")
	}
}

// logout logs out from any logged-in page.
func (b *browser) logout() {
	b.t.Helper()
	b.step("log out", chromedp.Click(css(`form[action$="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("password")))
}

// TestPortalBrowser walks the portal in headless Chromium on a real
// server, on SQLite and PostgreSQL, as a person would: sign up, open the
// verification link from the (development-mode) mail, log in, accept the
// terms, enrol TOTP with the key shown, log out and in again with a code;
// invite a member by email, who signs up, opens the invitation and
// joins, and the owner sees them. With LAPIS_SCREENSHOT_DIR set it saves
// the README's screenshots there.
func TestPortalBrowser(t *testing.T) {
	t.Parallel()
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := serve(t, lapistest.Options{Database: db(t)})
			b := newBrowser(t, in)
			if name != "sqlite" {
				b.shots = ""
			}
			testPortalBrowser(t, in, b)
		})
	}
}

func testPortalBrowser(t *testing.T, in *instance, b *browser) {
	const owner, pw = "olivia@example.org", "correct horse battery"
	b.signUp(owner, pw, "Olivia Labs")
	if !strings.Contains(b.text(), "Olivia Labs") {
		t.Fatalf("dashboard: %s", b.text())
	}
	b.acceptTerms()
	b.screenshot("dashboard")

	// TOTP.
	b.step("enrol TOTP",
		chromedp.Navigate(in.portalURL("/portal/account")),
		chromedp.Click(css(`form[action$="/totp/enroll"] button`)),
		chromedp.WaitVisible(chromedp.ID("totp-secret")),
		chromedp.WaitVisible(css("img.qr")),
	)
	secret, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.ID("totp-secret")))
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	b.screenshot("totp")
	b.step("confirm TOTP",
		chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, 0)),
		chromedp.Click(css(`form[action$="/totp/confirm"] button`)),
		chromedp.WaitVisible(chromedp.ID("recovery")),
	)
	if !strings.Contains(b.text(), "Two-step verification is on") {
		t.Fatal("TOTP not on")
	}
	b.logout()
	b.step("log in with TOTP",
		chromedp.SendKeys(chromedp.ID("email"), owner),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`form[action$="/login/totp"]`)),
	)
	b.screenshot("login-totp")
	b.step("TOTP code",
		chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, 1)),
		chromedp.Click(css(`form[action$="/login/totp"] button`)),
		dashboard,
	)

	// Invite a member.
	const member = "max@example.org"
	b.step("invite",
		chromedp.Navigate(in.portalURL("/portal/org")),
		chromedp.WaitVisible(chromedp.ID("iemail")),
		chromedp.SendKeys(chromedp.ID("iemail"), member),
		chromedp.Click(css(`form[action$="/org/invite"] button`)),
		waitText("Invitation sent to "+member),
	)
	b.screenshot("org")
	invite := mailLink(t, in.Server, member, "invited", "invite")
	b.logout()
	b.signUp(member, "another good passphrase", "")
	b.step("open the invitation",
		chromedp.Navigate(invite),
		chromedp.Click(css(`form[action$="/invite"] button`)),
		chromedp.WaitVisible(css(`main table`)), // the organisation's members
	)
	if txt := b.text(); !strings.Contains(txt, "Olivia Labs") || !strings.Contains(txt, member) || !strings.Contains(txt, owner) {
		t.Fatalf("org page of the new member: %s", txt)
	}
	var sec secretSet
	sec.add("password", pw)
	sec.add("password", "another good passphrase")
	sec.add("TOTP secret", secret)
	sec.add("TOTP secret", strings.ReplaceAll(secret, " ", ""))
	sec.checkLog(t, in, []string{tokenOf(t, invite)})
}
