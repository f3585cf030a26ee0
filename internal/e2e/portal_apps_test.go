package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lapis-health/lapis/internal/sandbox/dataset"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// callback is an app's redirect URI on loopback: it hands each
// authorization code to the test.
type callback struct {
	url   string
	codes chan url.Values
}

func newCallback(t *testing.T) *callback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &callback{url: "http://" + ln.Addr().String() + "/cb", codes: make(chan url.Values, 4)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r)
			return
		}
		select {
		case cb.codes <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><title>app</title><main><p id="done">The app got its code.</p></main>`)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return cb
}

// received returns the query of the request the redirect URI got, which
// the page the browser waited for was the answer to; what names the
// request in the failure when there was none.
func (cb *callback) received(t *testing.T, what string) url.Values {
	t.Helper()
	select {
	case got := <-cb.codes:
		return got
	default:
		t.Fatalf("the app's redirect URI got no %s", what)
		return nil
	}
}

// app is the answer of an app's creation.
type portalApp struct {
	App struct {
		ID          string `json:"client_id"`
		Type        string `json:"type"`
		Environment string `json:"environment"`
		Status      string `json:"status"`
	} `json:"app"`
	Secret string `json:"client_secret"`
}

func decodeInto(t *testing.T, r reply, v any) {
	t.Helper()
	if err := json.Unmarshal(r.raw, v); err != nil {
		t.Fatalf("status %d: %v: %s", r.status, err, truncate(r.raw))
	}
}

// introspectAuth reports the status of an introspection request
// authenticated with the client's secret: 200 when the secret is valid,
// 401 when not (a way to test a secret of an app with no
// client_credentials grant).
func introspectAuth(t *testing.T, base, id, secret string) int {
	t.Helper()
	st, _ := form(t, nil, base+"/auth/introspect", url.Values{"token": {"not-a-token"}}, id, secret)
	return st
}

// TestPortalApps walks the apps part of the portal through its JSON API
// (and the authorization code flow in headless Chromium) on a real server,
// on SQLite and PostgreSQL: a sandbox app of each preset (public ones
// without a secret, the confidential one's secret shown once and never
// listed), an authorization code for the confidential app with its secret
// and a client_credentials token for the backend app (private_key_jwt,
// pasted JWKS) on the sandbox token endpoint, both reading the sandbox's
// built-in dataset; an API key (shown once) reading the sandbox; a
// production key refused before production access; a production access
// request that an operator (lapis portal operator add) approves — the
// production credentials then work on production and get 401 on the
// sandbox, and the sandbox ones 401 on production; a declined request
// with its reason; an operator's suspension that stops the app's token at
// once and refuses new ones, and resumption; secret rotation with an
// overlap (both secrets valid) and without (the old one refused at once);
// a webhook endpoint's secret shown once; and the other-organisation
// sweep over every route with these apps, keys and webhooks.
func TestPortalApps(t *testing.T) {
	t.Parallel()
	if !hasRoute(t, "POST", "/portal/api/orgs/{org}/apps") {
		t.Skip("the portal's apps API is not built")
	}
	forDialects(t, func(t *testing.T, dbURL string) {
		testPortalApps(t, serve(t, lapistest.Options{Database: dbURL, SandboxData: true}))
	})
}

func testPortalApps(t *testing.T, in *instance) {
	var sec secretSet
	prodBase, sbBase := in.base, in.Origin+"/sandbox/fhir"
	a := newDev(t, in.Server, "ana@example.org", 30)
	a.signUpAPI("Ana Apps")
	tok := a.api("POST", "/portal/api/tokens", map[string]any{"name": "e2e"}, 201).obj(t)
	a.token = tok["token"].(string)
	sec.add("developer token", a.token)

	// No credential before the terms are accepted.
	key := newBackendKey(t)
	backend := map[string]any{"preset": "backend", "name": "Nightly sync", "jwks": key.jwks, "scopes": []string{"system/*.rs"}}
	if r := a.api("POST", "/portal/api/orgs/"+a.org+"/apps", backend, 0); r.status != 403 {
		t.Fatalf("app before the terms: %d %s", r.status, r.raw)
	}
	a.acceptTerms()

	// One sandbox app per preset.
	cb := newCallback(t)
	specs := map[string]map[string]any{
		"patient-standalone": {"preset": "patient-standalone", "name": "My PHR", "redirect_uris": []string{cb.url}},
		"ehr-launch":         {"preset": "ehr-launch", "name": "Chart tool", "redirect_uris": []string{cb.url}, "launch_uri": "https://chart.example/launch"},
		"confidential-web":   {"preset": "confidential-web", "name": "Care portal", "redirect_uris": []string{cb.url}, "homepage": "https://care.example"},
		"backend":            backend,
	}
	apps := map[string]portalApp{}
	for preset, spec := range specs {
		var pa portalApp
		decodeInto(t, a.api("POST", "/portal/api/orgs/"+a.org+"/apps", spec, 201), &pa)
		if pa.App.ID == "" || pa.App.Environment != "sandbox" || pa.App.Status != "active" {
			t.Fatalf("%s app: %+v", preset, pa)
		}
		if (pa.Secret != "") != (preset == "confidential-web") {
			t.Errorf("%s app: secret shown %v", preset, pa.Secret != "")
		}
		sec.add("client secret", pa.Secret)
		apps[preset] = pa
	}
	web, be := apps["confidential-web"], apps["backend"]
	// The secret is never shown again.
	for _, p := range []string{"/portal/api/orgs/" + a.org + "/apps", "/portal/api/orgs/" + a.org + "/apps/sandbox/" + web.App.ID} {
		if r := a.api("GET", p, nil, 200); strings.Contains(string(r.raw), web.Secret) {
			t.Errorf("GET %s shows the secret", p)
		}
	}
	if r := a.send("GET", "/portal/apps/sandbox/"+web.App.ID, nil); strings.Contains(string(r.raw), web.Secret) {
		t.Error("the app page shows the secret")
	}

	// Authorization code for the confidential app, in a browser, as a
	// sandbox patient; the code exchanged with the secret.
	patient := dataset.PatientIDs()[0]
	webTok := authCode(t, in, cb, sbBase, web.App.ID, web.Secret, patient)
	sec.add("access token", webTok)

	// client_credentials for the backend app.
	st, bt := backendToken(t, a, key, be.App.ID, "system/*.rs")
	if st != 200 {
		t.Fatalf("backend token: %d %v", st, bt)
	}
	sbTok := bt["access_token"].(string)
	sec.add("access token", sbTok)
	in.do("GET", sbBase+"/Patient/"+patient, nil, "Authorization", "Bearer "+sbTok).expect(t, 200)
	in.do("GET", sbBase+"/Observation?patient="+patient+"&_count=1", nil, "Authorization", "Bearer "+sbTok).expect(t, 200)
	in.do("GET", sbBase+"/Patient/no-such-patient", nil, "Authorization", "Bearer "+sbTok).expect(t, 404)
	in.do("DELETE", sbBase+"/Patient/"+patient, nil, "Authorization", "Bearer "+sbTok).expect(t, 403)

	// An API key in the sandbox, shown once.
	k := a.api("POST", "/portal/api/orgs/"+a.org+"/keys", map[string]any{"name": "reporting", "scopes": []string{"system/*.rs"}}, 201).obj(t)
	sbKey, _ := k["key"].(string)
	keyID, _ := k["id"].(string)
	if sbKey == "" || keyID == "" {
		t.Fatalf("key: %v", k)
	}
	sec.add("API key", sbKey)
	in.do("GET", sbBase+"/Patient/"+patient, nil, "X-API-Key", sbKey).expect(t, 200)
	in.do("GET", prodBase+"/Patient?_count=1", nil, "X-API-Key", sbKey).expect(t, 401)
	if r := a.api("GET", "/portal/api/orgs/"+a.org+"/keys", nil, 200); strings.Contains(string(r.raw), sbKey) {
		t.Error("the key list shows the key")
	}
	// A production key needs production access first.
	if r := a.api("POST", "/portal/api/orgs/"+a.org+"/keys", map[string]any{"environment": "production", "name": "prod", "scopes": []string{"system/*.rs"}}, 0); r.status != 403 {
		t.Errorf("production key before approval: %d %s", r.status, r.raw)
	}

	// The requests show in the app's activity.
	checkActivity(t, a, be.App.ID, patient)

	// A webhook endpoint: its secret shown once.
	wh := a.api("POST", "/portal/api/orgs/"+a.org+"/webhooks", map[string]any{"url": "https://hooks.example/lapis"}, 201).obj(t)
	whSecret, _ := wh["secret"].(string)
	if !strings.HasPrefix(whSecret, "whsec_") {
		t.Fatalf("webhook: %v", wh)
	}
	sec.add("webhook secret", whSecret)
	whID, _ := wh["endpoint"].(map[string]any)["id"].(string)
	if r := a.api("GET", "/portal/api/orgs/"+a.org+"/webhooks", nil, 200); strings.Contains(string(r.raw), whSecret) {
		t.Error("the webhook list shows the secret")
	}

	// Production access: requested, approved by an operator.
	op := newDev(t, in.Server, "operator@example.org", 31)
	op.signUpAPI("")
	if r := op.api("GET", "/portal/api/admin/reviews", nil, 0); r.status != 403 {
		t.Errorf("review queue before operator add: %d", r.status)
	}
	in.MustCLI(t, "", "portal", "operator", "add", op.email)
	rq := a.api("POST", "/portal/api/orgs/"+a.org+"/apps/sandbox/"+be.App.ID+"/production", nil, 201).obj(t)
	if rq["status"] != "pending" || rq["due_at"] == nil {
		t.Fatalf("production request: %v", rq)
	}
	a.api("POST", "/portal/api/orgs/"+a.org+"/apps/sandbox/"+be.App.ID+"/production", nil, 409)
	if r := a.api("POST", "/portal/api/admin/reviews/"+rq["id"].(string)+"/approve", nil, 0); r.status != 403 {
		t.Errorf("a developer approves: %d", r.status)
	}
	queue := op.api("GET", "/portal/api/admin/reviews", nil, 200)
	if !strings.Contains(string(queue.raw), rq["id"].(string)) {
		t.Fatalf("the queue lacks the request: %s", truncate(queue.raw))
	}
	ap := op.api("POST", "/portal/api/admin/reviews/"+rq["id"].(string)+"/approve", nil, 200).obj(t)
	prodID, _ := ap["production_client_id"].(string)
	if ap["status"] != "approved" || prodID == "" {
		t.Fatalf("approval: %v", ap)
	}
	// Production credentials: work on production, 401 on the sandbox.
	tokenAt := func(base, id string) (int, map[string]any) {
		f := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {key.assertion(t, id, base+"/auth/token")}}
		return form(t, nil, base+"/auth/token", f, "", "")
	}
	st, pt := tokenAt(prodBase, prodID)
	if st != 200 {
		t.Fatalf("production token: %d %v", st, pt)
	}
	prodTok := pt["access_token"].(string)
	sec.add("access token", prodTok)
	in.do("GET", prodBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+prodTok).expect(t, 200)
	in.do("GET", sbBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+prodTok).expect(t, 401)
	in.do("GET", prodBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+sbTok).expect(t, 401)
	// (invalid_client: 400 or 401, RFC 6749 §5.2, for an assertion in the body.)
	if st, body := tokenAt(sbBase, prodID); (st != 401 && st != 400) || body["error"] != "invalid_client" {
		t.Errorf("production client at the sandbox token endpoint: %d %v", st, body)
	}
	pk := a.api("POST", "/portal/api/orgs/"+a.org+"/keys", map[string]any{"environment": "production", "name": "prod", "scopes": []string{"system/*.rs"}}, 201).obj(t)
	prodKey, _ := pk["key"].(string)
	sec.add("API key", prodKey)
	in.do("GET", prodBase+"/Patient?_count=1", nil, "X-API-Key", prodKey).expect(t, 200)
	in.do("GET", sbBase+"/Patient?_count=1", nil, "X-API-Key", prodKey).expect(t, 401)

	// Decline, with a reason the developer sees.
	rq2 := a.api("POST", "/portal/api/orgs/"+a.org+"/apps/sandbox/"+web.App.ID+"/production", nil, 201).obj(t)
	op.api("POST", "/portal/api/admin/reviews/"+rq2["id"].(string)+"/decline", map[string]any{}, 400)
	op.api("POST", "/portal/api/admin/reviews/"+rq2["id"].(string)+"/decline", map[string]any{"reason": "no privacy policy"}, 200)
	mine := a.api("GET", "/portal/api/orgs/"+a.org+"/requests?status=declined", nil, 200).list(t)
	if len(mine) != 1 || mine[0]["reason"] != "no privacy policy" || mine[0]["production_client_id"] != nil {
		t.Errorf("declined requests: %v", mine)
	}
	op.api("POST", "/portal/api/admin/reviews/"+rq2["id"].(string)+"/approve", nil, 409)

	// The approval and the decline became webhook deliveries.
	dl := a.api("GET", "/portal/api/orgs/"+a.org+"/webhooks/"+whID+"/deliveries", nil, 200)
	for _, ev := range []string{"app.approved", "app.declined"} {
		if !strings.Contains(string(dl.raw), ev) {
			t.Errorf("no %s delivery: %s", ev, truncate(dl.raw))
		}
	}

	// Suspension by an operator: the token stops at once, no new token.
	op.api("POST", "/portal/api/admin/apps/production/"+prodID+"/suspend", map[string]any{"reason": "abuse report"}, 200)
	in.do("GET", prodBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+prodTok).expect(t, 401)
	if st, body := tokenAt(prodBase, prodID); (st != 401 && st != 400) || body["error"] != "invalid_client" {
		t.Errorf("token for a suspended app: %d %v", st, body)
	}
	if got := a.api("GET", "/portal/api/orgs/"+a.org+"/apps/production/"+prodID, nil, 200).obj(t); got["app"].(map[string]any)["status"] != "suspended" {
		t.Errorf("suspended app: %v", got)
	}
	op.api("POST", "/portal/api/admin/apps/production/"+prodID+"/resume", nil, 200)
	if st, _ := tokenAt(prodBase, prodID); st != 200 {
		t.Errorf("token after resume: %d", st)
	}

	// Rotation with an overlap: both secrets valid; then without: the
	// old one refused at once.
	if st := introspectAuth(t, sbBase, web.App.ID, web.Secret); st != 200 {
		t.Fatalf("the app's secret at introspection: %d", st)
	}
	rot := a.api("POST", "/portal/api/orgs/"+a.org+"/apps/sandbox/"+web.App.ID+"/secret", map[string]any{"overlap": 3600}, 200).obj(t)
	s2, _ := rot["client_secret"].(string)
	sec.add("client secret", s2)
	if s2 == "" || s2 == web.Secret || rot["old_valid_until"] == nil {
		t.Fatalf("rotation: %v", rot)
	}
	for _, s := range []string{web.Secret, s2} {
		if st := introspectAuth(t, sbBase, web.App.ID, s); st != 200 {
			t.Errorf("secret during the overlap: %d", st)
		}
	}
	rot3 := a.api("POST", "/portal/api/orgs/"+a.org+"/apps/sandbox/"+web.App.ID+"/secret", map[string]any{"overlap": 0}, 200).obj(t)
	s3, _ := rot3["client_secret"].(string)
	sec.add("client secret", s3)
	if st := introspectAuth(t, sbBase, web.App.ID, s3); st != 200 {
		t.Errorf("the newest secret: %d", st)
	}
	poll.Until(t, 30*time.Second, "the replaced secret is refused", func() bool {
		return introspectAuth(t, sbBase, web.App.ID, s2) == 401
	})
	if st := introspectAuth(t, sbBase, web.App.ID, web.Secret); st != 401 {
		t.Errorf("the first secret after a rotation without overlap: %d", st)
	}

	// Another organisation sees none of it.
	b := newDev(t, in.Server, "ben@example.org", 32)
	b.signUpAPI("Ben Org")
	b.acceptTerms()
	aTokens := a.api("GET", "/portal/api/tokens", nil, 200).list(t)
	sweepOtherOrg(t, in, b, map[string]string{"org": a.org, "dev": a.id, "tokens": aTokens[0]["id"].(string),
		"apps": be.App.ID, "keys": keyID, "webhooks": whID, "requests": rq["id"].(string)}, true)
	// The app still works: the sweep changed nothing.
	if st, _ := backendToken(t, a, key, be.App.ID, "system/*.rs"); st != 200 {
		t.Errorf("the backend app after the sweep: %d", st)
	}
	in.do("GET", sbBase+"/Patient?_count=1", nil, "X-API-Key", sbKey).expect(t, 200)

	sec.checkLog(t, in, nil)
}

// authCode runs the authorization code flow for a confidential app in
// headless Chromium as the sandbox patient's login, exchanges the code
// with the app's secret, reads the patient with the token (and gets 401
// on production), then replays the code: refused, and the token issued
// from it revoked. It returns the (revoked) access token.
func authCode(t *testing.T, in *instance, cb *callback, base, clientID, secret, patient string) string {
	t.Helper()
	b := newBrowser(t, in)
	verifier := strings.Repeat("v", 10) + fmt.Sprint(time.Now().UnixNano()) + strings.Repeat("x", 40)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {cb.url},
		"scope": {"launch/patient openid fhirUser patient/*.rs"}, "state": {"st-123"}, "aud": {base},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	b.step("authorize",
		chromedp.Navigate(base+"/auth/authorize?"+q.Encode()),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "patient-"+patient),
		chromedp.SendKeys(chromedp.ID("password"), dataset.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)),
	)
	b.screenshot("consent")
	b.step("consent",
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	got := cb.received(t, "request")
	if got.Get("state") != "st-123" || got.Get("code") == "" {
		t.Fatalf("redirect: %v", got)
	}
	st, tok := form(t, nil, base+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")},
		"redirect_uri": {cb.url}, "code_verifier": {verifier}}, clientID, secret)
	if st != 200 || str(tok, "access_token") == "" {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	at := str(tok, "access_token")
	if tok["patient"] != patient {
		t.Errorf("token response patient %v, want %s", tok["patient"], patient)
	}
	in.do("GET", base+"/Patient/"+patient, nil, "Authorization", "Bearer "+at).expect(t, 200)
	in.do("GET", in.base+"/Patient/"+patient, nil, "Authorization", "Bearer "+at).expect(t, 401)
	// The code works once; a replay revokes what it gave.
	if st, _ := form(t, nil, base+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")},
		"redirect_uri": {cb.url}, "code_verifier": {verifier}}, clientID, secret); st != 400 {
		t.Errorf("code replay: %d", st)
	}
	poll.Until(t, 30*time.Second, "the token of a replayed code revoked", func() bool {
		return in.do("GET", base+"/Patient/"+patient, nil, "Authorization", "Bearer "+at).status == 401
	})
	return at
}

// checkActivity checks that the app's requests (made before: reads, a
// 404 and a 403 with token) show in its activity: totals by status, the
// recent requests by route shape without the patient id, errors grouped
// by cause, the chart on the page.
func checkActivity(t *testing.T, d *dev, appID, patient string) {
	t.Helper()
	if !hasRoute(t, "GET", "/portal/api/activity") {
		t.Log("activity: the portal's activity API is not built")
		return
	}
	var rep struct {
		Totals struct {
			Requests int64         `json:"requests"`
			ByStatus map[int]int64 `json:"by_status"`
		} `json:"totals"`
		Recent []struct {
			Route  string `json:"route"`
			Status int    `json:"status"`
		} `json:"recent"`
		Errors []struct {
			Cause  string `json:"cause"`
			Reason string `json:"reason"`
		} `json:"errors"`
	}
	q := "/portal/api/activity?env=sandbox&client=" + url.QueryEscape(appID)
	poll.Until(t, time.Minute, "the app's requests in its activity", func() bool {
		decodeInto(t, d.api("GET", q, nil, 200), &rep)
		return rep.Totals.ByStatus[200] >= 2 && rep.Totals.ByStatus[404] >= 1 && rep.Totals.ByStatus[403] >= 1
	})
	raw := string(d.api("GET", q, nil, 200).raw)
	if strings.Contains(raw, "Patient/"+patient) || strings.Contains(raw, "patient="+patient) {
		t.Errorf("the activity shows a patient id: %.500s", raw)
	}
	if len(rep.Recent) < 4 || len(rep.Errors) == 0 {
		t.Errorf("activity: recent %v errors %v", rep.Recent, rep.Errors)
	}
	page := d.send("GET", "/portal/activity?env=sandbox&client="+url.QueryEscape(appID), nil)
	if page.status != 200 || !strings.Contains(string(page.raw), "<svg") {
		t.Errorf("activity page: %d, chart %v", page.status, strings.Contains(string(page.raw), "<svg"))
	}
}

// TestPortalBrowserApps walks the apps pages in headless Chromium on a
// real server, on SQLite and PostgreSQL: log in, create a sandbox app of
// each preset with the wizard (the confidential app's secret shown once:
// not on its page afterwards; the backend app with a pasted JWKS gets a
// client_credentials token on the sandbox), create an API key (shown once,
// reads the sandbox), request production access for the backend app; an
// operator approves it in the review queue, after which the production
// client's token works on production and gets 401 on the sandbox. The
// backend app's requests show on its activity page (chart); the patient
// app's test launch (standalone, as a sandbox patient) ends at its
// redirect URI with a code the shown verifier exchanges.
func TestPortalBrowserApps(t *testing.T) {
	t.Parallel()
	if !hasRoute(t, "GET", "/portal/apps/new") {
		t.Skip("the portal's apps pages are not built")
	}
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := serve(t, lapistest.Options{Database: db(t), SandboxData: true})
			b := newBrowser(t, in)
			if name != "sqlite" {
				b.shots = ""
			}
			testPortalBrowserApps(t, in, b)
		})
	}
}

// login logs a person in with the login page (no TOTP).
func (b *browser) login(email, password string) {
	b.t.Helper()
	b.step("log in "+email,
		chromedp.Navigate(b.in.portalURL("/portal/login")),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
		dashboard,
	)
}

// value is the value of an input.
func (b *browser) value(sel string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Value(css(sel)))
	if err != nil {
		b.t.Fatalf("value of %s: %v", sel, err)
	}
	return v
}

func testPortalBrowserApps(t *testing.T, in *instance, b *browser) {
	prodBase, sbBase := in.base, in.Origin+"/sandbox/fhir"
	d := newDev(t, in.Server, "wanda@example.org", 40)
	d.signUpAPI("Wizard Works")
	d.acceptTerms()
	b.login(d.email, d.password)

	cb := newCallback(t)
	key := newBackendKey(t)
	created := map[string]string{} // preset → client id
	for _, preset := range []string{"patient-standalone", "ehr-launch", "confidential-web", "backend"} {
		b.step("wizard "+preset,
			chromedp.Navigate(in.portalURL("/portal/apps/new?org="+d.org)),
			chromedp.Click(chromedp.ID("preset-"+preset)),
			chromedp.WaitVisible(chromedp.ID("create-app")),
			chromedp.SendKeys(chromedp.ID("name"), "App "+preset),
		)
		switch preset {
		case "backend":
			b.step("jwks", chromedp.SetValue(chromedp.ID("jwks"), string(key.jwks)))
		case "ehr-launch":
			b.step("launch", chromedp.SendKeys(chromedp.ID("redirect_uris"), cb.url), chromedp.SendKeys(chromedp.ID("launch_uri"), "https://chart.example/launch"))
		default:
			b.step("redirect", chromedp.SendKeys(chromedp.ID("redirect_uris"), cb.url))
		}
		if preset == "confidential-web" {
			b.screenshot("wizard")
		}
		b.step("create "+preset, chromedp.Click(chromedp.ID("create-app")), chromedp.WaitVisible(chromedp.ID("client-id")))
		created[preset] = b.value("#client-id")
		if preset == "confidential-web" {
			secret := b.value("#client-secret")
			if secret == "" {
				t.Fatal("no secret shown for the confidential app")
			}
			b.screenshot("app-secret")
			b.step("to the app", chromedp.Click(chromedp.ID("to-app")), chromedp.WaitVisible(chromedp.ID("app-status")))
			html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(css("html")))
			if strings.Contains(html, secret) {
				t.Error("the app page shows the secret again")
			}
			if st := introspectAuth(t, sbBase, created[preset], secret); st != 200 {
				t.Errorf("the shown secret at the sandbox: %d", st)
			}
		}
	}
	st, bt := backendToken(t, d, key, created["backend"], "system/*.rs")
	if st != 200 {
		t.Fatalf("backend token: %d %v", st, bt)
	}
	bearer := "Bearer " + str(bt, "access_token")
	patient := dataset.PatientIDs()[0]
	in.do("GET", sbBase+"/Patient?_count=1", nil, "Authorization", bearer).expect(t, 200)
	in.do("GET", sbBase+"/Observation?patient="+patient+"&_count=5", nil, "Authorization", bearer).expect(t, 200)
	in.do("GET", sbBase+"/Patient/no-such-patient", nil, "Authorization", bearer).expect(t, 404)
	in.do("DELETE", sbBase+"/Patient/"+patient, nil, "Authorization", bearer).expect(t, 403)
	checkActivity(t, d, created["backend"], patient)
	b.step("activity",
		chromedp.Navigate(in.portalURL("/portal/activity?env=sandbox&client="+created["backend"])),
		chromedp.WaitVisible(css("main svg")),
	)
	b.checkPage("activity")
	if b.shots != "" { // the long page's charts: the screen from the first one on
		if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => { const s = document.querySelector('main svg');
  (s.closest('.card') || s).scrollIntoView({block: 'start'}); return true })()`)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, "portal-activity.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Test launch (standalone) of the patient app as a sandbox patient:
	// the portal prepares the request, the sandbox signs in and asks for
	// consent, the app's redirect URI gets the code, which the verifier
	// the page showed exchanges.
	if hasRoute(t, "POST", "/portal/launch") {
		b.step("test launch",
			chromedp.Navigate(in.portalURL("/portal/launch?client="+created["patient-standalone"])),
			chromedp.WaitVisible(chromedp.ID("login")),
			chromedp.Click(css(`input[name="mode"][value="standalone"]`)),
			chromedp.SetValue(chromedp.ID("login"), "patient-"+patient),
			chromedp.Click(css(`form[action$="/launch"] button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("next-step")),
		)
		verifier, err := chromedp.Run(b.ctx, chromedp.Text(css(`dd p.secret`)))
		if err != nil {
			t.Fatal(err)
		}
		b.screenshot("launch")
		b.step("sandbox sign-in",
			chromedp.Click(css(`section a.button`)),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), "patient-"+patient),
			chromedp.SendKeys(chromedp.ID("password"), dataset.Password),
			chromedp.Click(css(`button[type="submit"]`)),
			chromedp.WaitVisible(css(`button[value="approve"]`)),
			chromedp.Click(css(`button[value="approve"]`)),
			chromedp.WaitVisible(chromedp.ID("done")),
		)
		got := cb.received(t, "code from the test launch")
		st, tok := form(t, nil, sbBase+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")},
			"redirect_uri": {cb.url}, "code_verifier": {strings.TrimSpace(verifier)}, "client_id": {created["patient-standalone"]}}, "", "")
		if st != 200 || tok["patient"] != patient {
			t.Fatalf("test launch code exchange: %d %v", st, tok)
		}
		in.do("GET", sbBase+"/Patient/"+patient, nil, "Authorization", "Bearer "+str(tok, "access_token")).expect(t, 200)
	}

	// An API key.
	b.step("new key",
		chromedp.Navigate(in.portalURL("/portal/keys?org="+d.org)),
		chromedp.WaitVisible(chromedp.ID("create-key")),
		chromedp.SendKeys(chromedp.ID("kname"), "Reporting"),
		chromedp.Click(css(`input[name="scope"][value="system/*.rs"]`)),
		chromedp.Click(chromedp.ID("create-key")),
		chromedp.WaitVisible(chromedp.ID("new-key")),
	)
	apiKey := b.value("#new-key")
	b.screenshot("keys")
	in.do("GET", sbBase+"/Patient?_count=1", nil, "X-API-Key", apiKey).expect(t, 200)

	// Production access for the backend app.
	b.step("request production",
		chromedp.Navigate(in.portalURL("/portal/apps/sandbox/"+created["backend"]+"?org="+d.org)),
		chromedp.Click(chromedp.ID("request-production")),
		chromedp.WaitVisible(css(`.req-status`)),
	)
	b.screenshot("app")
	b.logout()
	op := newDev(t, in.Server, "olga@example.org", 41)
	op.signUpAPI("")
	op.acceptTerms()
	in.MustCLI(t, "", "portal", "operator", "add", op.email)
	b.login(op.email, op.password)
	b.step("review queue",
		chromedp.Navigate(in.portalURL("/portal/admin/reviews")),
		chromedp.WaitVisible(css(`button.approve`)),
	)
	b.screenshot("review")
	b.step("approve", chromedp.Click(css(`button.approve`)), waitText("Decided"))
	reqs := d.api("GET", "/portal/api/orgs/"+d.org+"/requests?status=approved", nil, 200).list(t)
	if len(reqs) != 1 || reqs[0]["production_client_id"] == nil {
		t.Fatalf("approved requests: %v", reqs)
	}
	prodID := reqs[0]["production_client_id"].(string)
	f := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {key.assertion(t, prodID, prodBase+"/auth/token")}}
	st, pt := form(t, nil, prodBase+"/auth/token", f, "", "")
	if st != 200 {
		t.Fatalf("production token: %d %v", st, pt)
	}
	in.do("GET", prodBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+str(pt, "access_token")).expect(t, 200)
	in.do("GET", sbBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+str(pt, "access_token")).expect(t, 401)
}
