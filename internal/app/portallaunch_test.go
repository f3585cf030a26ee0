package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// launchBrowser is a cookie-keeping HTTP client that does not follow
// redirects.
type launchBrowser struct {
	t *testing.T
	c *http.Client
}

func newLaunchBrowser(t *testing.T) *launchBrowser {
	jar, _ := cookiejar.New(nil)
	return &launchBrowser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *launchBrowser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body)
}

func (b *launchBrowser) get(u string) (*http.Response, string) {
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

func (b *launchBrowser) postForm(u string, f url.Values) (*http.Response, string) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// json calls the portal API; csrf goes in X-CSRF-Token, tok in
// Authorization.
func (b *launchBrowser) json(method, u, csrf, tok string, in, out any) int {
	b.t.Helper()
	var r io.Reader
	if in != nil {
		j, _ := json.Marshal(in)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, u, r)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, body := b.do(req)
	if out != nil {
		_ = json.Unmarshal([]byte(body), out)
	}
	return res.StatusCode
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)"`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	scopeRE  = regexp.MustCompile(`name="scope" value="([^"]+)" checked`)
	mailRE   = regexp.MustCompile(`token=([A-Za-z0-9_-]+)`)
)

// form returns the first POST form's absolute action and hidden fields.
func form(t *testing.T, root, body string) (string, url.Values) {
	t.Helper()
	m := actionRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form in %s", body)
	}
	f := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(body, -1) {
		f.Set(h[1], html.UnescapeString(h[2]))
	}
	return root + html.UnescapeString(m[1]), f
}

// signInAndConsent walks the sandbox's sign-in and consent pages from
// the authorization request u as login and returns the redirect to the
// app.
func signInAndConsent(t *testing.T, b *launchBrowser, root, u, login string) *url.URL {
	t.Helper()
	res, body := b.get(u)
	if res.StatusCode != 200 || !strings.Contains(body, `name="password"`) {
		t.Fatalf("authorize %d: %s", res.StatusCode, body)
	}
	action, f := form(t, root, body)
	f.Set("username", login)
	f.Set("password", dataset.Password)
	res, body = b.postForm(action, f)
	if res.StatusCode != 200 || !strings.Contains(body, `value="approve"`) {
		t.Fatalf("login %d: %s", res.StatusCode, body)
	}
	action, f = form(t, root, body)
	f.Set("decision", "approve")
	for _, s := range scopeRE.FindAllStringSubmatch(body, -1) {
		f.Add("scope", s[1])
	}
	res, body = b.postForm(action, f)
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode/100 != 3 || err != nil {
		t.Fatalf("consent %d %s", res.StatusCode, body)
	}
	return loc
}

// exchange redeems code at the sandbox's token endpoint.
func exchange(t *testing.T, tokenURL string, f url.Values) map[string]any {
	t.Helper()
	res, err := http.PostForm(tokenURL, f)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	if res.StatusCode != 200 || out["access_token"] == nil {
		t.Fatalf("token %d %v", res.StatusCode, out)
	}
	return out
}

// TestPortalTestLaunch runs the server with its sandbox (loaded with the
// built-in dataset) and the portal: a developer launches their sandbox
// app as a sandbox practitioner (EHR launch from the page: the portal
// sends the browser to the app's launch URI with iss and launch; the app
// makes its authorization request; the practitioner signs in and
// consents; the code is exchanged for a token with the chosen patient,
// whose sandbox read then shows in the app's activity page and API) and
// as a sandbox patient (standalone launch from the API: the portal's
// authorization request with PKCE S256 goes through sign-in and consent
// to the redirect URI; the shown code_verifier exchanges the code). A
// launch value works once; another organisation's developer gets 404.
func TestPortalTestLaunch(t *testing.T) {
	ctx := context.Background()
	ln, root, cfg := listenConfig(t)
	cfg.Server.BaseURL = root
	cfg.Sandbox.Load = true
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	srv, err := NewServer(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	serveBackground(t, srv, ln)
	sb := srv.Environment("sandbox")
	sbBase := root + "/sandbox/fhir"

	// A developer: sign up, verify (the link is in the log: no SMTP), log in.
	developer := func(email string) (*launchBrowser, string, string) {
		b := newLaunchBrowser(t)
		if st := b.json("POST", root+"/portal/api/signup", "", "", map[string]string{"email": email, "password": "correct horse battery", "name": "D"}, nil); st != 201 {
			t.Fatalf("signup %d", st)
		}
		m := mailRE.FindAllStringSubmatch(logs.String(), -1)
		if m == nil {
			t.Fatal("no verification link in the log")
		}
		if st := b.json("POST", root+"/portal/api/verify", "", "", map[string]string{"token": m[len(m)-1][1]}, nil); st != 200 {
			t.Fatalf("verify %d", st)
		}
		var login struct {
			CSRF string `json:"csrf_token"`
		}
		if st := b.json("POST", root+"/portal/api/login", "", "", map[string]string{"email": email, "password": "correct horse battery"}, &login); st != 200 {
			t.Fatalf("login %d", st)
		}
		var me struct {
			Orgs []struct{ ID string } `json:"organizations"`
		}
		if st := b.json("GET", root+"/portal/api/me", "", "", nil, &me); st != 200 || len(me.Orgs) != 1 {
			t.Fatalf("me %d %v", st, me)
		}
		return b, login.CSRF, "org:" + me.Orgs[0].ID
	}
	dev, csrf, owner := developer("launch@example.org")
	other, otherCSRF, _ := developer("other@example.org")

	// The developer's sandbox app (what the portal's app wizard creates).
	actx := admin.WithActor(ctx, admin.CommandActor())
	reg, err := sb.Admin.CreateClient(actx, api.ClientRequest{Name: "Test app", Type: "public", Owner: owner,
		RedirectURIs: []string{"http://127.0.0.1:9/cb"}, LaunchURI: "http://127.0.0.1:9/launch",
		Scopes: []string{"launch launch/patient openid fhirUser patient/*.rs"}})
	if err != nil {
		t.Fatal(err)
	}

	// EHR launch from the page as the practitioner, with patient 85.
	res, body := dev.get(root + "/portal/launch?client=" + url.QueryEscape(reg.ClientID))
	if res.StatusCode != 200 || !strings.Contains(body, dataset.Password) || !strings.Contains(body, "practitioner") {
		t.Fatalf("launch page %d", res.StatusCode)
	}
	action, f := form(t, root, body[strings.Index(body, `action="/portal/launch"`)-30:])
	f.Set("mode", "ehr")
	f.Set("login", "practitioner")
	f.Set("patient", "85")
	res, body = dev.postForm(action, f)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/launch" || loc.Query().Get("iss") != sbBase || loc.Query().Get("launch") == "" {
		t.Fatalf("EHR launch %d %s %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	// The app's authorization request with the launch value.
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	authz := func(launch, state string) string {
		return sbBase + "/auth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {"http://127.0.0.1:9/cb"},
			"scope": {"launch openid fhirUser patient/*.rs"}, "state": {state}, "aud": {sbBase}, "launch": {launch},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}.Encode()
	}
	user := newLaunchBrowser(t)
	back := signInAndConsent(t, user, root, authz(loc.Query().Get("launch"), "s1"), "practitioner")
	if back.Path != "/cb" || back.Query().Get("state") != "s1" || back.Query().Get("code") == "" {
		t.Fatalf("EHR redirect %s", back)
	}
	tok := exchange(t, sbBase+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1:9/cb"}, "client_id": {reg.ClientID}, "code_verifier": {verifier}})
	if tok["patient"] != "85" {
		t.Fatalf("EHR token patient %v", tok["patient"])
	}
	// The token reads the sandbox, and the request shows in the app's
	// activity (API and page), written in the background.
	req, _ := http.NewRequest("GET", sbBase+"/Patient/85", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	if res, _ := user.do(req); res.StatusCode != 200 {
		t.Fatalf("sandbox read with the launch's token: %d", res.StatusCode)
	}
	actURL := "/activity?env=sandbox&client=" + url.QueryEscape(reg.ClientID)
	poll.Until(t, 10*time.Second, "the read in the app's activity", func() bool {
		var act struct {
			Recent []struct{ Route string }
		}
		return dev.json("GET", root+"/portal/api"+actURL, "", "", nil, &act) == 200 && len(act.Recent) > 0 && act.Recent[0].Route == "GET /sandbox/fhir/Patient/{id}"
	})
	if res, body := dev.get(root + "/portal" + actURL); res.StatusCode != 200 || !strings.Contains(body, "GET /sandbox/fhir/Patient/{id}") || !strings.Contains(body, "<svg") {
		t.Fatalf("activity page %d", res.StatusCode)
	}

	// The launch value works once.
	res, _ = user.get(authz(loc.Query().Get("launch"), "s2"))
	if l, _ := url.Parse(res.Header.Get("Location")); res.StatusCode/100 != 3 || l.Query().Get("error") != "invalid_request" {
		t.Fatalf("reused launch %d %s", res.StatusCode, res.Header.Get("Location"))
	}

	// EHR launch from the API as a sandbox patient: their own record is
	// in context.
	var ehr struct{ URL, Patient string }
	if st := dev.json("POST", root+"/portal/api/launch", csrf, "", map[string]string{"client_id": reg.ClientID, "mode": "ehr", "login": "patient-85", "patient": "355"}, &ehr); st != 200 || ehr.Patient != "85" {
		t.Fatalf("API EHR launch as a patient %d %+v", st, ehr)
	}
	lu, _ := url.Parse(ehr.URL)
	back = signInAndConsent(t, newLaunchBrowser(t), root, authz(lu.Query().Get("launch"), "s3"), "patient-85")
	tok = exchange(t, sbBase+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1:9/cb"}, "client_id": {reg.ClientID}, "code_verifier": {verifier}})
	if tok["patient"] != "85" {
		t.Fatalf("patient EHR token patient %v", tok["patient"])
	}

	// Standalone launch from the API as a sandbox patient.
	var out struct {
		URL, State, CodeVerifier, RedirectURI, TokenURL, Curl, Password string
	}
	var raw map[string]any
	in := map[string]string{"client_id": reg.ClientID, "mode": "standalone", "login": "patient-355"}
	if st := dev.json("POST", root+"/portal/api/launch", csrf, "", in, &raw); st != 200 {
		t.Fatalf("API launch %d %v", st, raw)
	}
	j, _ := json.Marshal(raw)
	_ = json.Unmarshal(j, &out)
	out.State, out.CodeVerifier, out.RedirectURI, out.TokenURL = raw["state"].(string), raw["code_verifier"].(string), raw["redirect_uri"].(string), raw["token_url"].(string)
	if !strings.Contains(out.Curl, out.CodeVerifier) || out.Password != dataset.Password || out.TokenURL != sbBase+"/auth/token" {
		t.Fatalf("launch result %v", raw)
	}
	back = signInAndConsent(t, newLaunchBrowser(t), root, out.URL, "patient-355")
	if back.String() == "" || back.Query().Get("state") != out.State || back.Query().Get("code") == "" || !strings.HasPrefix(back.String(), out.RedirectURI) {
		t.Fatalf("standalone redirect %s", back)
	}
	tok = exchange(t, out.TokenURL, url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {out.RedirectURI}, "client_id": {reg.ClientID}, "code_verifier": {out.CodeVerifier}})
	if tok["patient"] != "355" {
		t.Fatalf("standalone token patient %v", tok["patient"])
	}

	// The standalone launch from the page shows the verifier, the curl
	// and the link to the sandbox sign-in; the page is small, with the
	// strict CSP.
	res, body = dev.get(root + "/portal/launch?client=" + url.QueryEscape(reg.ClientID))
	action, f = form(t, root, body[strings.Index(body, `action="/portal/launch"`)-30:])
	f.Set("mode", "standalone")
	f.Set("login", "patient-85")
	res, body = dev.postForm(action, f)
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.Contains(body, "code_verifier") || !strings.Contains(body, "curl -s") ||
		!strings.Contains(body, `href="`+html.EscapeString(sbBase+"/auth/authorize?")) || len(body) > 100<<10 ||
		!strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(body, "<script") || strings.Contains(body, " style=") {
		t.Fatalf("standalone launch page %d %q: %s", res.StatusCode, csp, body)
	}

	// Rejections: bad mode, unknown login, no patient for the
	// practitioner's EHR launch, another organisation's app.
	for _, bad := range []map[string]string{
		{"client_id": reg.ClientID, "mode": "implicit", "login": "practitioner"},
		{"client_id": reg.ClientID, "mode": "ehr", "login": "root"},
		{"client_id": reg.ClientID, "mode": "ehr", "login": "practitioner", "patient": "not-a-sandbox-patient"},
	} {
		if st := dev.json("POST", root+"/portal/api/launch", csrf, "", bad, &raw); st != 400 || raw["error"] != "invalid_request" {
			t.Errorf("launch %v: %d %v", bad, st, raw)
		}
	}
	if st := other.json("POST", root+"/portal/api/launch", otherCSRF, "", in, nil); st != 404 {
		t.Errorf("other organisation's launch: %d", st)
	}
	if res, _ := other.get(root + "/portal/launch?client=" + url.QueryEscape(reg.ClientID)); res.StatusCode != 404 {
		t.Errorf("other organisation's launch page: %d", res.StatusCode)
	}
	// No CSRF header with the session cookie: refused.
	if st := dev.json("POST", root+"/portal/api/launch", "", "", in, nil); st != 403 {
		t.Errorf("launch without CSRF: %d", st)
	}
}
