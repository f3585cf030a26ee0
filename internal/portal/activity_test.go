package portal

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/ratelimit"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// actEnv is a portal with a sandbox environment (its own database,
// clients, keys and activity) beside the portal's production database.
type actEnv struct {
	*env
	sb  *admin.Service
	rec *activity.Recorder
}

// newActEnv starts the portal with a sandbox environment on newDB().
func newActEnv(t *testing.T, newDB func(t *testing.T) string) *actEnv {
	t.Helper()
	ctx := context.Background()
	h, err := database.Open(ctx, database.Options{URL: newDB(t), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	adb, err := authdb.New(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	a := &actEnv{sb: admin.New(admin.Config{Store: adb})}
	a.env = newEnvOn(t, newDB(t), func(c *Config) {
		a.rec, err = activity.NewRecorder(ctx, h, audit.Discard{}, activity.Options{Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.rec.Close() })
		budget := func(_ context.Context, p *principal.Principal) (ratelimit.Budget, error) {
			return ratelimit.Budget{Limit: ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 20}, Remaining: 15, Reset: 500 * time.Millisecond}, nil
		}
		c.Environments = []Env{
			{Name: "production", FHIRBase: "http://x/fhir"},
			{Name: "sandbox", FHIRBase: "http://x/sandbox/fhir", Admin: a.sb, Activity: a.rec.Store, Budget: budget},
		}
	})
	return a
}

func sqliteURL(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "lapis.db") }

// orgOwner is the owner string of the first organisation of email.
func (a *actEnv) orgOwner(t *testing.T, email string) string {
	t.Helper()
	ms, err := a.p.dev.Memberships(context.Background(), mustDev(t, a.env, email))
	if err != nil || len(ms) == 0 {
		t.Fatalf("memberships %v %v", ms, err)
	}
	return ms[0].Owner()
}

// credentials creates an app and an API key owned by owner in the
// sandbox.
func (a *actEnv) credentials(t *testing.T, owner string) (clientID, keyID string) {
	t.Helper()
	ctx := admin.WithActor(context.Background(), admin.CommandActor())
	reg, err := a.sb.CreateClient(ctx, api.ClientRequest{Name: "App <of> " + owner, Type: "public", RedirectURIs: []string{"https://app.example/cb"},
		LaunchURI: "https://app.example/launch", Scopes: []string{"launch", "launch/patient", "openid", "fhirUser", "patient/*.rs"}, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	k, err := a.sb.CreateAPIKey(ctx, api.APIKeyRequest{Name: "key", Scopes: []string{"system/Patient.rs"}, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	return reg.ClientID, k.ID
}

// traffic records requests of cred: n successes, a scope refusal, a
// compartment refusal and a rate-limited burst.
func (a *actEnv) traffic(cred string, n int) {
	ctx := context.Background()
	now := a.clock.Now()
	for i := range n {
		a.rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-time.Duration(i) * 3 * time.Minute), ClientID: cred, Status: 200,
			Interaction: "read", Route: "GET /sandbox/fhir/Patient/{id}", Latency: 4 * time.Millisecond, Patient: "secret-patient-85"})
	}
	a.rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-time.Hour), ClientID: cred, Status: 403, Cause: "scope", Interaction: "search-type", Route: "GET /sandbox/fhir/Condition?…"})
	a.rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-2 * time.Hour), ClientID: cred, Status: 403, Cause: "compartment", Interaction: "read", Route: "GET /sandbox/fhir/Patient/{id}"})
	a.rec.Record(ctx, audit.Event{Kind: audit.KindRateLimited, Time: now.Add(-30 * time.Minute), ClientID: cred, Status: 429, Route: "GET /sandbox/fhir/Observation?…", Occurrences: 4})
	a.rec.Flush()
}

var (
	styleAttrRE = regexp.MustCompile(`(?i)<[a-z][^>]*\sstyle=`)
	scriptRE    = regexp.MustCompile(`(?i)<script`)
	styleTagRE  = regexp.MustCompile(`(?i)<style([^>]*)>`)
	onAttrRE    = regexp.MustCompile(`(?i)<[a-z][^>]*\son[a-z]+=`)
)

// checkStrictPage asserts a page is small, has the strict CSP and nothing a
// strict CSP refuses (inline style attributes, scripts, un-nonced style
// elements, event handler attributes).
func checkStrictPage(t *testing.T, res *http.Response, body string) {
	t.Helper()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if len(body) > 100<<10 {
		t.Errorf("page of %d bytes", len(body))
	}
	if styleAttrRE.MatchString(body) || scriptRE.MatchString(body) || onAttrRE.MatchString(body) {
		t.Errorf("inline style/script in page")
	}
	m := regexp.MustCompile(`'nonce-([^']+)'`).FindStringSubmatch(csp)
	for _, s := range styleTagRE.FindAllStringSubmatch(body, -1) {
		if m == nil || !strings.Contains(html.UnescapeString(s[1]), `nonce="`+m[1]+`"`) {
			t.Errorf("<style%s> without the page's nonce", s[1])
		}
	}
}

func (e *env) fetch(c *http.Client, path string) (*http.Response, string) {
	e.t.Helper()
	return e.read(c.Get(e.srv.URL + path))
}

func TestActivityPages(t *testing.T) { testActivityPages(t, sqliteURL) }

// TestActivityPagesPostgres runs the activity pages on PostgreSQL.
func TestActivityPagesPostgres(t *testing.T) {
	testActivityPages(t, func(t *testing.T) string { return pgtest.New(t) })
}

func testActivityPages(t *testing.T, newDB func(t *testing.T) string) {
	a := newActEnv(t, newDB)
	alice := a.signUpAndLogIn("alice@example.org")
	bob := a.signUpAndLogIn("bob@example.org")
	aClient, aKey := a.credentials(t, a.orgOwner(t, "alice@example.org"))
	bClient, bKey := a.credentials(t, a.orgOwner(t, "bob@example.org"))
	a.traffic(aClient, 300)
	a.traffic(aKey, 3)
	a.traffic(bClient, 2)

	// Alice's app: chart, statuses, errors with reasons, recent requests,
	// budget; no PHI; small and CSP-clean.
	for _, rg := range []string{"", "&range=24h", "&range=7d"} {
		res, body := a.fetch(alice, "/portal/activity?env=sandbox&client="+url.QueryEscape(aClient)+rg)
		if res.StatusCode != 200 {
			t.Fatalf("activity%s: %d %s", rg, res.StatusCode, body)
		}
		checkStrictPage(t, res, body)
		for _, want := range []string{"<svg", `role="img"`, "Missing scope", "Outside the patient&#39;s compartment", "Rate limit:",
			"GET /sandbox/fhir/Patient/{id}", "15 of 20", "App &lt;of&gt;", "Test launch in the sandbox", "<meter"} {
			if !strings.Contains(body, want) {
				t.Errorf("activity%s lacks %q", rg, want)
			}
		}
		if strings.Contains(body, "secret-patient") {
			t.Fatal("PHI on the activity page")
		}
	}
	// The API key's page.
	if res, body := a.fetch(alice, "/portal/activity?env=sandbox&key="+aKey); res.StatusCode != 200 || !strings.Contains(body, "API key") || strings.Contains(body, "Test launch") {
		t.Fatalf("key activity %d", res.StatusCode)
	}
	if res, _ := a.fetch(alice, "/portal/activity?env=sandbox&client="+aClient+"&range=1y"); res.StatusCode != 400 {
		t.Fatalf("bad range %d", res.StatusCode)
	}

	// Owned-only: every other organisation's, unknown or mismatched id is
	// 404 on the page and the API, for the client and the key.
	bobTok := a.devToken(bob)
	for _, q := range []string{
		"env=sandbox&client=" + aClient, "env=sandbox&key=" + aKey, "env=production&client=" + bClient, "env=staging&client=" + bClient,
		"env=sandbox&client=nope", "env=sandbox&key=" + aClient, "env=sandbox&client=" + bKey,
	} {
		if res, body := a.fetch(bob, "/portal/activity?"+q); res.StatusCode != 404 || strings.Contains(body, "App &lt;of&gt; org") {
			t.Errorf("bob page %s: %d", q, res.StatusCode)
		}
		if st, out, _ := a.api("GET", "/portal/api/activity?"+q, bobTok, nil); st != 404 || out["error"] != "not_found" {
			t.Errorf("bob API %s: %d %v", q, st, out)
		}
	}
	if res, _ := a.fetch(bob, "/portal/launch?client="+aClient); res.StatusCode != 404 {
		t.Errorf("bob launch page of alice's app: %d", res.StatusCode)
	}
	if st, _, _ := a.api("POST", "/portal/api/launch", bobTok, map[string]string{"client_id": aClient, "mode": "ehr", "login": "practitioner", "patient": "85"}); st != 404 {
		t.Errorf("bob launch API of alice's app: %d", st)
	}
	if st, out, _ := a.api("GET", "/portal/api/activity?env=sandbox&client="+bClient+"&key="+bKey, bobTok, nil); st != 400 {
		t.Errorf("client and key: %d %v", st, out)
	}
	if st, _, _ := a.api("GET", "/portal/api/activity?env=sandbox&client="+bClient, "", nil); st != 401 {
		t.Errorf("anonymous API: %d", st)
	}

	// The JSON equivalent.
	aliceTok := a.devToken(alice)
	st, out, _ := a.api("GET", "/portal/api/activity?env=sandbox&client="+url.QueryEscape(aClient), aliceTok, nil)
	if st != 200 || out["kind"] != "client" || out["step_seconds"] != float64(300) {
		t.Fatalf("API %d %v", st, out)
	}
	if s, _ := out["series"].([]any); len(s) != 288 {
		t.Errorf("series of %d steps, want 288", len(s))
	}
	errs, _ := out["errors"].([]any)
	if len(errs) != 3 || errs[0].(map[string]any)["cause"] != "rate-limit" || !strings.Contains(errs[0].(map[string]any)["reason"].(string), "budget") {
		t.Errorf("errors %v", errs)
	}
	if rl, _ := out["rate_limit"].(map[string]any); rl["remaining"] != float64(15) || rl["used_percent"] != float64(25) {
		t.Errorf("rate_limit %v", rl)
	}
	if tot, _ := out["totals"].(map[string]any); tot["requests"] != float64(300+1+1+4) {
		t.Errorf("totals %v", tot)
	}
	st, out, _ = a.api("GET", "/portal/api/activity?env=sandbox&key="+aKey+"&range=7d", aliceTok, nil)
	if s, _ := out["series"].([]any); st != 200 || len(s) != 168 || out["kind"] != "key" {
		t.Errorf("key API 7d %d %d", st, len(s))
	}
}

// devToken creates a developer API token with the browser's session.
func (e *env) devToken(c *http.Client) string {
	e.t.Helper()
	_, body, csrf := e.get(c, "/portal/account")
	_ = body
	res, body := e.post(c, "/portal/account/tokens", url.Values{"csrf": {csrf}, "name": {"script"}})
	m := regexp.MustCompile(`lpd_[A-Za-z0-9_-]+`).FindString(body)
	if res.StatusCode != 200 || m == "" {
		e.t.Fatalf("developer token %d", res.StatusCode)
	}
	return m
}

// TestActivityPageWeight: with requests of every status class in every
// step of the week (the densest chart), both ranges' pages stay under
// 100 KB.
func TestActivityPageWeight(t *testing.T) {
	a := newActEnv(t, sqliteURL)
	c := a.signUpAndLogIn("heavy@example.org")
	id, _ := a.credentials(t, a.orgOwner(t, "heavy@example.org"))
	ctx := context.Background()
	now := a.clock.Now()
	statuses := []int{200, 304, 404, 503, 403, 429, 401, 400, 409, 413, 405, 410}
	for m := 0; m < 7*24*60; m += 5 {
		for i, st := range statuses[:4] {
			a.rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-time.Duration(m) * time.Minute), ClientID: id, Status: st, Interaction: "search-type",
				Route: "GET /sandbox/fhir/Observation?…", Latency: time.Duration(i) * time.Millisecond})
		}
	}
	for i, st := range statuses {
		a.rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-time.Duration(i) * time.Minute), ClientID: id, Status: st, Interaction: "create",
			Route: "POST /sandbox/fhir/" + strings.Repeat("VeryLongResourceTypeName", 6)})
	}
	a.rec.Flush()
	for _, rg := range []string{"24h", "7d"} {
		res, body := a.fetch(c, "/portal/activity?env=sandbox&client="+url.QueryEscape(id)+"&range="+rg)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", rg, res.StatusCode)
		}
		checkStrictPage(t, res, body)
		t.Logf("range %s: %d bytes", rg, len(body))
	}
}
