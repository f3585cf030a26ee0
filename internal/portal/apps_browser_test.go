package portal

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/testutil/browsertest"
	"github.com/lapis-health/lapis/internal/testutil/oauthtest"
)

// sandboxTokenEndpoint serves the sandbox environment's real token
// endpoint (oauth.Server on the sandbox authorization database) and
// returns its URL.
func (ae *appsEnv) sandboxTokenEndpoint(t *testing.T) string {
	t.Helper()
	_, _, issuer := oauthtest.Serve(t, "/sandbox/fhir", func(issuer string) oauth.Config {
		return oauth.Config{Issuer: issuer, Clients: ae.sbDB, Assertions: ae.sbDB, Revocations: ae.sbDB, Keys: ae.sbKeys,
			JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true})}
	})
	return issuer + oauth.PathToken
}

// TestBrowserAppsToProduction walks the app flows in headless Chromium:
// create a sandbox app with a preset, the secret shown once (and it
// authenticates at the sandbox token endpoint), request production, the
// operator approves (the production client exists), a second request
// declined with a reason, and an API key created, rotated and revoked.
// Screenshots go to LAPIS_SCREENSHOT_DIR (portal-app-*.png).
func TestBrowserAppsToProduction(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	bctx := browsertest.New(t, browsertest.Options{Width: 420, Height: 900}) // a phone-sized window
	ctx := context.Background()
	base := ae.srv.URL
	tok, org := ae.developer("walker@example.org", true)
	ae.operator("operator@example.org")
	tokenURL := ae.sandboxTokenEndpoint(t)

	bk := newBrowserKit(t, bctx, "portal-app-")
	step, screenshot := bk.step, bk.screenshot
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	html := func() string { t.Helper(); return bk.read(chromedp.OuterHTML(chromedp.CSS("html"))) }
	login := func(email string) {
		t.Helper()
		step("log in "+email,
			chromedp.Navigate(base+"/portal/login"),
			chromedp.WaitVisible(chromedp.ID("password")),
			chromedp.SendKeys(chromedp.ID("email"), email),
			chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
			chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
			chromedp.WaitVisible(css(`nav a[aria-current="page"][href$="/portal/"]`)),
		)
	}
	logout := func() {
		t.Helper()
		step("log out", chromedp.Click(css(`form[action$="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("password")))
	}

	login("walker@example.org")
	step("wizard", chromedp.Navigate(base+"/portal/apps"), chromedp.Click(chromedp.ID("new-app")), chromedp.WaitVisible(chromedp.ID("preset-confidential-web")))
	screenshot("presets")
	step("preset", chromedp.Click(chromedp.ID("preset-confidential-web")), chromedp.WaitVisible(chromedp.ID("name")))
	step("fill",
		chromedp.SendKeys(chromedp.ID("name"), "Walker Web"),
		chromedp.SendKeys(chromedp.ID("description"), "Shows lab results to patients."),
		chromedp.SendKeys(chromedp.ID("redirect_uris"), "https://walker.example.org/callback"),
		chromedp.SendKeys(chromedp.ID("homepage"), "https://walker.example.org/"),
		chromedp.Click(css(`input[name="scope"][value="patient/Observation.rs"]`)),
	)
	screenshot("wizard")
	step("create", chromedp.Click(chromedp.ID("create-app")), chromedp.WaitVisible(chromedp.ID("client-secret")))
	secret, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID("client-secret")))
	if err != nil || len(secret) < 32 {
		t.Fatalf("secret %q %v", secret, err)
	}
	clientID, _ := chromedp.Run(bctx, chromedp.Value(chromedp.ID("client-id")))
	if !strings.Contains(html(), `download="lapis-sandbox-`+clientID+`.json"`) {
		t.Fatal("no download of the secret")
	}
	screenshot("secret")
	// The shown secret authenticates at the sandbox token endpoint; a
	// wrong one does not.
	tokenStatus := func(sec string) int {
		req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"patient/Observation.rs"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(sec))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := tokenStatus(secret); st == http.StatusUnauthorized {
		t.Fatalf("the shown secret does not authenticate: %d", st)
	}
	if st := tokenStatus(secret + "x"); st != http.StatusUnauthorized {
		t.Fatalf("a wrong secret: %d", st)
	}
	step("app page", chromedp.Click(chromedp.ID("to-app")), chromedp.WaitVisible(chromedp.ID("request-production")))
	if strings.Contains(html(), secret) {
		t.Fatal("the secret is shown twice")
	}
	step("request production", chromedp.Click(chromedp.ID("request-production")), chromedp.WaitVisible(css(".req-status")))
	if s, _ := chromedp.Run(bctx, chromedp.Text(css(".req-status"))); s != "pending" {
		t.Fatalf("request status %q", s)
	}
	screenshot("requested")
	// A second app whose request will be declined (through the API).
	_, out, _ := ae.api("POST", "/portal/api/orgs/"+org+"/apps", tok, map[string]any{"preset": "backend", "name": "Walker Batch", "jwks_uri": "https://walker.example.org/jwks.json"})
	id2 := out["app"].(map[string]any)["client_id"].(string)
	_, rq2, _ := ae.api("POST", "/portal/api/orgs/"+org+"/apps/sandbox/"+id2+"/production", tok, nil)
	logout()

	login("operator@example.org")
	step("queue", chromedp.Navigate(base+"/portal/admin/reviews"), chromedp.WaitVisible(css("button.approve")))
	screenshot("review-queue")
	rqs, _ := ae.p.reviews.Pending(ctx)
	var first string
	for _, r := range rqs {
		if r.SandboxClientID == clientID {
			first = r.ID
		}
	}
	step("approve", chromedp.Click(css(`#rq-`+first+` button.approve`)), chromedp.WaitVisible(css(`p.notice`)))
	prod, _ := ae.prod.Clients(ctx, api.ClientFilter{Owner: "org:" + org})
	if len(prod) != 1 || prod[0].Name != "Walker Web" {
		t.Fatalf("production clients %+v", prod)
	}
	rid := rq2["id"].(string)
	step("decline",
		chromedp.SendKeys(chromedp.ID("reason-"+rid), "The JWKS URL does not answer."),
		chromedp.Click(css(`#rq-`+rid+` button.decline`)),
		chromedp.WaitNotPresent(css(`#rq-`+rid)),
	)
	if r, _ := ae.p.reviews.Get(ctx, rid); r.Status != "declined" || r.Reason != "The JWKS URL does not answer." {
		t.Fatalf("declined %+v", r)
	}
	screenshot("review-decided")
	step("all apps", chromedp.Navigate(base+"/portal/admin/apps"), chromedp.WaitVisible(css("main table")))
	screenshot("admin-apps")
	logout()

	login("walker@example.org")
	step("approved app", chromedp.Navigate(base+"/portal/apps/sandbox/"+clientID), chromedp.WaitVisible(chromedp.ID("prod-link")))
	screenshot("approved")
	// Links in a nav inside the page (the activity page's range tabs) are
	// not drawn in the header's light colour, unreadable on a white card.
	step("activity", chromedp.Navigate(base+"/portal/activity?env=sandbox&client="+clientID), chromedp.WaitVisible(css(`nav.tabs a:not([aria-current])`)))
	if color, err := chromedp.Run(bctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('nav.tabs a:not([aria-current])')).color`)); err != nil || color == "rgb(219, 230, 247)" {
		t.Errorf("inactive range tab colour %q (%v): the header's light link colour on a white card", color, err)
	}
	step("keys", chromedp.Navigate(base+"/portal/keys"), chromedp.WaitVisible(chromedp.ID("kname")),
		chromedp.SendKeys(chromedp.ID("kname"), "nightly export"),
		chromedp.Click(css(`input[name="scope"][value="system/*.rs"]`)),
		chromedp.Click(chromedp.ID("create-key")),
		chromedp.WaitVisible(chromedp.ID("new-key")),
	)
	key1, _ := chromedp.Run(bctx, chromedp.Value(chromedp.ID("new-key")))
	screenshot("key")
	// The keys table (an active key, used: its rotate form and last use)
	// fits the phone's width: the page does not scroll sideways.
	used, _ := ae.sb.APIKeys(ctx, api.APIKeyFilter{Owner: "org:" + org})
	if len(used) != 1 {
		t.Fatalf("keys %+v", used)
	}
	if err := ae.sbDB.TouchAPIKeyFrom(ctx, used[0].ID, time.Now(), "203.0.113.77", 0); err != nil {
		t.Fatal(err)
	}
	step("keys again", chromedp.Navigate(base+"/portal/keys"), chromedp.WaitVisible(css("button.rotate-key")))
	if over, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`)); err != nil || over > 0 {
		t.Errorf("keys page wider than the 420-pixel window by %d pixels (%v)", over, err)
	}
	step("rotate key", chromedp.Click(css("button.rotate-key")))
	// The page before the click shows #new-key too: wait for the new value.
	// A poll that starts before the navigation is cut by it: poll again.
	var perr error
	for range 5 {
		if _, perr = chromedp.Run(bctx, chromedp.Poll[bool](fmt.Sprintf(`(() => { const e = document.getElementById("new-key"); return !!e && e.value !== %q })()`, key1))); perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("rotated key never shown: %v", perr)
	}
	key2, _ := chromedp.Run(bctx, chromedp.Value(chromedp.ID("new-key")))
	if key1 == "" || key2 == "" || key1 == key2 {
		t.Fatalf("keys %q %q", key1, key2)
	}
	var active string
	ks0, _ := ae.sb.APIKeys(ctx, api.APIKeyFilter{Owner: "org:" + org})
	for _, k := range ks0 {
		if k.Status == api.StatusActive {
			active = k.ID
		}
	}
	step("revoke key", chromedp.Click(css("#key-"+active+" button.revoke-key")), chromedp.WaitVisible(css("p.notice")))
	screenshot("keys")
	ks, _ := ae.sb.APIKeys(ctx, api.APIKeyFilter{Owner: "org:" + org})
	statuses := map[string]int{}
	for _, k := range ks {
		statuses[k.Status]++
	}
	if len(ks) != 2 || statuses[api.StatusRevoked] != 1 || statuses["rotated"] != 1 {
		t.Fatalf("key statuses %v", statuses)
	}
}
