package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/developer"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/webhook"
)

// appsEnv is the portal with a production and a sandbox environment, each
// an admin.Service on its own authorization database, and a webhook
// receiver.
type appsEnv struct {
	*env
	prod, sb *admin.Service
	sbDB     *authdb.DB
	sbKeys   *keys.Manager
	hooks    *webhook.Service
	recv     *receiver
	audit    *memAudit
}

// memAudit records the portal's audit events (Record and Commit).
type memAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (m *memAudit) Record(_ context.Context, e audit.Event) {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
}

func (m *memAudit) Commit(ctx context.Context, e audit.Event) error { m.Record(ctx, e); return nil }

func (m *memAudit) has(desc string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.events {
		if strings.Contains(e.Description, desc) {
			return true
		}
	}
	return false
}

// receiver records webhook deliveries.
type receiver struct {
	mu     sync.Mutex
	events []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 4096)
	n, _ := r.Body.Read(b)
	rc.mu.Lock()
	rc.events = append(rc.events, string(b[:n]))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) got() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return strings.Join(rc.events, "\n")
}

func newAppsEnv(t *testing.T, dialect string) *appsEnv {
	t.Helper()
	dbURL := ""
	if dialect == "postgres" {
		dbURL = pgtest.New(t)
	} else {
		dbURL = migratedURL(t)
	}
	ae := &appsEnv{recv: &receiver{}, audit: &memAudit{}}
	hook := func(env string) func(context.Context, admin.StatusChange) error {
		return func(ctx context.Context, c admin.StatusChange) error { return ae.p.StatusHook(env)(ctx, c) }
	}
	quiet := slog.New(slog.DiscardHandler)
	ae.prod = admin.New(admin.Config{Store: authtest.DB(t, dialect), OnStatus: hook(EnvProduction), Logger: quiet})
	ae.sbDB, ae.sbKeys, _ = authtest.Stores(t, dialect)
	ae.sb = admin.New(admin.Config{Store: ae.sbDB, OnStatus: hook(EnvSandbox), Logger: quiet})
	ae.env = newEnvOn(t, dbURL, func(c *Config) {
		h, err := webhook.New(context.Background(), c.DB, webhook.Config{AllowPrivate: true})
		if err != nil {
			t.Fatal(err)
		}
		ae.hooks = h
		c.Webhooks = h
		c.Audit = ae.audit
		c.Environments = []Env{{Name: EnvProduction, FHIRBase: "http://prod.test/fhir", Admin: ae.prod}, {Name: EnvSandbox, FHIRBase: "http://prod.test/sandbox/fhir", Admin: ae.sb}}
	})
	return ae
}

// developer signs up a developer through the API, accepts the terms
// (unless terms is false) and returns its token and organisation id.
func (ae *appsEnv) developer(email string, terms bool) (string, string) {
	t := ae.t
	t.Helper()
	tok := ae.apiDeveloper(email)
	st, _, orgs := ae.api("GET", "/portal/api/orgs", tok, nil)
	if st != 200 {
		t.Fatal(st)
	}
	if len(orgs) == 0 {
		st, o, _ := ae.api("POST", "/portal/api/orgs", tok, map[string]string{"name": "Org of " + email})
		if st != 201 {
			t.Fatalf("org %d %v", st, o)
		}
		orgs = []any{o}
	}
	org := orgs[0].(map[string]any)["id"].(string)
	if terms {
		if st, out, _ := ae.api("POST", "/portal/api/terms/accept", tok, map[string]int{"version": 1}); st != 204 {
			t.Fatalf("terms %d %v", st, out)
		}
	}
	return tok, org
}

func (ae *appsEnv) operator(email string) string {
	tok, _ := ae.developer(email, true)
	if err := ae.p.dev.SetOperator(context.Background(), email, true); err != nil {
		ae.t.Fatal(err)
	}
	return tok
}

var confidentialApp = map[string]any{"preset": "confidential-web", "name": "Web App", "description": "A web app",
	"redirect_uris": []string{"https://app.example.org/cb"}, "homepage": "https://app.example.org/", "logo_uri": "https://app.example.org/logo.png",
	"scopes": []string{"launch/patient", "openid", "fhirUser", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}

func TestAppsAPIFlow(t *testing.T) { appsAPIFlow(t, "sqlite") }

func TestAppsAPIFlowPostgres(t *testing.T) { appsAPIFlow(t, "postgres") }

// appsAPIFlow walks the JSON API: create sandbox apps with presets,
// secret shown once, rotation with overlap, production access request,
// approval (production client created), decline, production keys gated
// on approval, key rotate/suspend/revoke, webhooks for decisions and
// suspensions.
func appsAPIFlow(t *testing.T, dialect string) {
	ae := newAppsEnv(t, dialect)
	ctx := context.Background()
	tok, org := ae.developer("dev@example.org", true)
	op := ae.operator("op@example.org")
	base := "/portal/api/orgs/" + org

	// Webhook endpoint (secret once).
	rs := httptest.NewServer(ae.recv)
	t.Cleanup(rs.Close)
	st, wh, _ := ae.api("POST", base+"/webhooks", tok, map[string]any{"url": rs.URL + "/hook"})
	if st != 201 || !strings.HasPrefix(wh["secret"].(string), "whsec_") {
		t.Fatalf("webhook %d %v", st, wh)
	}
	whID := wh["endpoint"].(map[string]any)["id"].(string)
	if st, _, l := ae.api("GET", base+"/webhooks", tok, nil); st != 200 || len(l) != 1 || strings.Contains(toJSON(l), "whsec_") {
		t.Fatalf("webhooks %d %v", st, l)
	}

	// Presets are offered with scope options.
	if st, _, l := ae.api("GET", "/portal/api/presets", tok, nil); st != 200 || len(l) != 4 {
		t.Fatalf("presets %d %v", st, l)
	}
	// Confidential web app: created in the sandbox with a secret.
	st, out, _ := ae.api("POST", base+"/apps", tok, confidentialApp)
	if st != 201 {
		t.Fatalf("create %d %v", st, out)
	}
	secret, _ := out["client_secret"].(string)
	app := out["app"].(map[string]any)
	id := app["client_id"].(string)
	if secret == "" || app["environment"] != EnvSandbox || app["owner"] != "org:"+org || app["description"] != "A web app" {
		t.Fatalf("app %v", out)
	}
	if c, err := ae.sb.OAuthClient(ctx, id); err != nil || c.Owner != "org:"+org {
		t.Fatalf("sandbox client %v %v", c, err)
	}
	if _, err := ae.prod.OAuthClient(ctx, id); err == nil {
		t.Fatal("a sandbox app exists in production")
	}
	// The secret is never shown again.
	_, got, _ := ae.api("GET", base+"/apps/sandbox/"+id, tok, nil)
	_, _, list := ae.api("GET", base+"/apps", tok, nil)
	if s := toJSON(got) + toJSON(list); strings.Contains(s, secret) || !strings.Contains(s, id) {
		t.Fatalf("secret shown again or app missing: %s", s)
	}
	// Rotation with an overlap.
	st, rot, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/secret", tok, map[string]any{"overlap": 3600})
	if st != 200 || rot["client_secret"] == "" || rot["client_secret"] == secret || rot["old_valid_until"] == nil {
		t.Fatalf("rotate %d %v", st, rot)
	}
	if st, e, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/secret", tok, map[string]any{"overlap": 90 * 24 * 3600}); st != 400 {
		t.Fatalf("long overlap %d %v", st, e)
	}
	// An overlap no duration can hold says what a duration is (it said
	// the body was not a valid JSON object).
	for _, bad := range []any{99999999999, "forever"} {
		st, e, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/secret", tok, map[string]any{"overlap": bad})
		if st != 400 || !strings.Contains(fmt.Sprint(e), "whole seconds") {
			t.Fatalf("overlap %v: %d %v", bad, st, e)
		}
	}
	// Other presets: public (no secret), backend with a JWKS URL, EHR launch.
	for _, in := range []map[string]any{
		{"preset": "patient-standalone", "name": "Phone", "redirect_uris": []string{"com.example.app:/cb"}},
		{"preset": "backend", "name": "Batch", "jwks_uri": "https://keys.example.org/jwks.json"},
		{"preset": "ehr-launch", "name": "EHR", "redirect_uris": []string{"https://ehr.example.org/cb"}, "launch_uri": "https://ehr.example.org/launch"},
	} {
		st, out, _ := ae.api("POST", base+"/apps", tok, in)
		if st != 201 || out["client_secret"] != nil {
			t.Fatalf("%v: %d %v", in["preset"], st, out)
		}
	}
	// Bad input is a 400 saying what is wrong.
	for _, in := range []map[string]any{
		{"preset": "nope", "name": "X"},
		{"preset": "backend", "name": "X"},
		{"preset": "confidential-web", "name": "X", "redirect_uris": []string{"http://evil.example.org/cb"}},
		{"preset": "confidential-web", "name": "X", "redirect_uris": []string{"https://a.example.org/cb"}, "scopes": []string{"system/*.rs"}},
		{"preset": "confidential-web", "name": "X", "redirect_uris": []string{"https://a.example.org/cb"}, "homepage": "javascript:alert(1)"},
	} {
		if st, out, _ := ae.api("POST", base+"/apps", tok, in); st != 400 || out["error"] != "invalid_request" {
			t.Fatalf("%v: %d %v", in, st, out)
		}
	}

	// Production keys need approved production access.
	if st, out, _ := ae.api("POST", base+"/keys", tok, map[string]any{"environment": "production", "name": "k", "scopes": []string{"system/*.rs"}}); st != 403 || out["error"] != "no_production_access" {
		t.Fatalf("early production key %d %v", st, out)
	}
	// Production access request.
	st, rq, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/production", tok, nil)
	if st != 201 || rq["status"] != "pending" || rq["due_at"] == nil {
		t.Fatalf("request %d %v", st, rq)
	}
	if st, _, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/production", tok, nil); st != 409 {
		t.Fatalf("second request %d", st)
	}
	// Only operators review.
	if st, _, _ := ae.api("GET", "/portal/api/admin/reviews", tok, nil); st != 403 {
		t.Fatalf("non-operator queue %d", st)
	}
	st, _, queue := ae.api("GET", "/portal/api/admin/reviews?status=pending", op, nil)
	if st != 200 || len(queue) != 1 {
		t.Fatalf("queue %d %v", st, queue)
	}
	st, ok, _ := ae.api("POST", "/portal/api/admin/reviews/"+rq["id"].(string)+"/approve", op, nil)
	prodID, _ := ok["production_client_id"].(string)
	if st != 200 || ok["status"] != "approved" || prodID == "" {
		t.Fatalf("approve %d %v", st, ok)
	}
	pc, err := ae.prod.OAuthClient(ctx, prodID)
	if err != nil || pc.Owner != "org:"+org || pc.Name != "Web App" || pc.Type != "confidential" {
		t.Fatalf("production client %+v %v", pc, err)
	}
	if st, _, _ := ae.api("POST", "/portal/api/admin/reviews/"+rq["id"].(string)+"/approve", op, nil); st != 409 {
		t.Fatalf("second approval %d", st)
	}
	// Asking again names the request that stands and its status.
	if st, out, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/production", tok, nil); st != 409 ||
		out["error_description"] != "this app already has production access request "+rq["id"].(string)+" (approved)" {
		t.Fatalf("request after approval %d %v", st, out)
	}
	// The developer sees the production app (with the sandbox app's
	// metadata) and issues its first secret.
	st, papp, _ := ae.api("GET", base+"/apps/production/"+prodID, tok, nil)
	if st != 200 || papp["app"].(map[string]any)["homepage"] != "https://app.example.org/" {
		t.Fatalf("production app %d %v", st, papp)
	}
	if st, ns, _ := ae.api("POST", base+"/apps/production/"+prodID+"/secret", tok, map[string]any{"overlap": 0}); st != 200 || ns["client_secret"] == "" {
		t.Fatalf("production secret %d %v", st, ns)
	}
	// Developers cannot delete production apps.
	if st, _, _ := ae.api("DELETE", base+"/apps/production/"+prodID, tok, nil); st != 403 {
		t.Fatalf("delete production %d", st)
	}

	// Decline path.
	_, out2, _ := ae.api("POST", base+"/apps", tok, map[string]any{"preset": "patient-standalone", "name": "Second", "redirect_uris": []string{"https://b.example.org/cb"}})
	id2 := out2["app"].(map[string]any)["client_id"].(string)
	_, rq2, _ := ae.api("POST", base+"/apps/sandbox/"+id2+"/production", tok, nil)
	if st, out, _ := ae.api("POST", "/portal/api/admin/reviews/"+rq2["id"].(string)+"/decline", op, map[string]any{}); st != 400 {
		t.Fatalf("decline without reason %d %v", st, out)
	}
	if st, out, _ := ae.api("POST", "/portal/api/admin/reviews/"+rq2["id"].(string)+"/decline", op, map[string]any{"reason": "no privacy policy"}); st != 200 || out["status"] != "declined" {
		t.Fatalf("decline %d %v", st, out)
	}
	if _, _, l := ae.api("GET", base+"/requests", tok, nil); !strings.Contains(toJSON(l), "no privacy policy") {
		t.Fatalf("requests %v", l)
	}

	// API keys.
	st, k, _ := ae.api("POST", base+"/keys", tok, map[string]any{"environment": "production", "name": "prod batch", "scopes": []string{"system/*.rs"}})
	if st != 201 || !strings.HasPrefix(k["key"].(string), "lapis_") && k["key"] == "" {
		t.Fatalf("production key %d %v", st, k)
	}
	if st, out, _ := ae.api("POST", base+"/keys", tok, map[string]any{"environment": "production", "name": "p", "scopes": []string{"patient/*.rs"}, "patient": "85"}); st != 400 {
		t.Fatalf("patient-bound production key %d %v", st, out)
	}
	if st, out, _ := ae.api("POST", base+"/keys", tok, map[string]any{"name": "p", "scopes": []string{"patient/*.rs"}}); st != 400 {
		t.Fatalf("patient scopes without patient %d %v", st, out)
	}
	st, sk, _ := ae.api("POST", base+"/keys", tok, map[string]any{"name": "patient key", "scopes": []string{"patient/*.rs"}, "patient": "85"})
	if st != 201 || sk["environment"] != "sandbox" || sk["patient"] != "85" {
		t.Fatalf("sandbox key %d %v", st, sk)
	}
	kid := sk["id"].(string)
	if ks, _ := ae.sb.APIKeys(ctx, api.APIKeyFilter{Owner: "org:" + org}); len(ks) != 1 {
		t.Fatalf("sandbox keys %v", ks)
	}
	_, _, kl := ae.api("GET", base+"/keys", tok, nil)
	if len(kl) != 2 || strings.Contains(toJSON(kl), sk["key"].(string)) {
		t.Fatalf("keys list %v", kl)
	}
	st, rk, _ := ae.api("POST", base+"/keys/sandbox/"+kid+"/rotate", tok, map[string]any{"grace": 60})
	if st != 200 || rk["replaces"] != kid || rk["key"] == sk["key"] {
		t.Fatalf("rotate key %d %v", st, rk)
	}
	nid := rk["id"].(string)
	if st, out, _ := ae.api("POST", base+"/keys/sandbox/"+nid+"/suspend", tok, nil); st != 200 || out["status"] != "suspended" {
		t.Fatalf("suspend key %d %v", st, out)
	}
	if st, out, _ := ae.api("POST", base+"/keys/sandbox/"+nid+"/resume", tok, nil); st != 200 || out["status"] != "active" {
		t.Fatalf("resume key %d %v", st, out)
	}
	if st, _, _ := ae.api("DELETE", base+"/keys/sandbox/"+nid, tok, nil); st != 204 {
		t.Fatalf("revoke key %d", st)
	}
	if k, _ := ae.sb.APIKey(ctx, nid); k.Status != api.StatusRevoked {
		t.Fatalf("key status %v", k.Status)
	}

	// Operators suspend, resume and revoke apps in either environment.
	if st, _, l := ae.api("GET", "/portal/api/admin/apps", op, nil); st != 200 || len(l) != 6 {
		t.Fatalf("all apps %d %d", st, len(l))
	}
	if st, out, _ := ae.api("POST", "/portal/api/admin/apps/production/"+prodID+"/suspend", op, map[string]string{"reason": "abuse report"}); st != 200 || out["status"] != "suspended" {
		t.Fatalf("suspend %d %v", st, out)
	}
	if st, _, _ := ae.api("POST", "/portal/api/admin/apps/production/"+prodID+"/suspend", tok, map[string]string{"reason": "x"}); st != 403 {
		t.Fatalf("developer suspends %d", st)
	}
	if st, out, _ := ae.api("POST", "/portal/api/admin/apps/production/"+prodID+"/resume", op, nil); st != 200 || out["status"] != "active" {
		t.Fatalf("resume %d %v", st, out)
	}
	if st, _, _ := ae.api("DELETE", "/portal/api/admin/apps/sandbox/"+id2, op, nil); st != 204 {
		t.Fatalf("revoke %d", st)
	}
	if _, err := ae.sb.OAuthClient(ctx, id2); err == nil {
		t.Fatal("revoked app still exists")
	}

	// Every decision was audited.
	for _, d := range []string{"review submit " + rq["id"].(string), "review approve " + rq["id"].(string), "review decline " + rq2["id"].(string)} {
		if !ae.audit.has(d) {
			t.Errorf("no audit event %q", d)
		}
	}
	// Webhooks: approved, declined, suspended, resumed were delivered.
	if _, err := ae.hooks.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	got2 := ae.recv.got()
	for _, ev := range []string{"app.approved", "app.declined", "app.suspended", "app.resumed", prodID} {
		if !strings.Contains(got2, ev) {
			t.Errorf("webhook %s not delivered: %s", ev, got2)
		}
	}
	if st, _, ds := ae.api("GET", base+"/webhooks/"+whID+"/deliveries", tok, nil); st != 200 || len(ds) < 4 {
		t.Fatalf("deliveries %d %v", st, ds)
	}
	if st, _, _ := ae.api("DELETE", base+"/webhooks/"+whID, tok, nil); st != 204 {
		t.Fatalf("delete webhook %d", st)
	}
	// No secret reached the log.
	if l := ae.log.String(); strings.Contains(l, secret) || strings.Contains(l, sk["key"].(string)) || strings.Contains(l, wh["secret"].(string)) {
		t.Fatal("a secret reached the log")
	}
}

// TestTermsAndVerificationGateCredentials: a developer who has not
// accepted the current terms gets no app, key, secret or webhook secret;
// an unverified developer none either.
func TestTermsAndVerificationGateCredentials(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	tok, org := ae.developer("noterms@example.org", false)
	base := "/portal/api/orgs/" + org
	for _, c := range []struct {
		path string
		body any
	}{
		{base + "/apps", confidentialApp},
		{base + "/keys", map[string]any{"name": "k", "scopes": []string{"system/*.rs"}}},
		{base + "/webhooks", map[string]any{"url": "https://hooks.example.org/"}},
	} {
		if st, out, _ := ae.api("POST", c.path, tok, c.body); st != 403 || out["error"] != "terms_not_accepted" {
			t.Errorf("%s: %d %v", c.path, st, out)
		}
	}
	// An app made before new terms were published cannot get a new secret.
	if st, out, _ := ae.api("POST", "/portal/api/terms/accept", tok, map[string]int{"version": 1}); st != 204 {
		t.Fatal(st, out)
	}
	_, out, _ := ae.api("POST", base+"/apps", tok, confidentialApp)
	id := out["app"].(map[string]any)["client_id"].(string)
	op := ae.operator("op2@example.org")
	if st, out, _ := ae.api("PUT", "/portal/api/admin/terms", op, map[string]string{"text": "New terms v2"}); st != 201 {
		t.Fatal(st, out)
	}
	if st, out, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/secret", tok, map[string]any{"overlap": 0}); st != 403 || out["error"] != "terms_not_accepted" {
		t.Fatalf("rotate without terms %d %v", st, out)
	}
	if st, out, _ := ae.api("POST", base+"/apps/sandbox/"+id+"/production", tok, nil); st != 403 {
		t.Fatalf("production request without terms %d %v", st, out)
	}
	// The page says so too.
	c := ae.signUpAndLogIn("pageterms@example.org")
	_, body, csrf := ae.get(c, "/portal/apps/new?preset=confidential-web")
	form := url.Values{"csrf": {csrf}, "preset": {"confidential-web"}, "name": {"P"}, "redirect_uris": {"https://p.example.org/cb"}, "scope": {"openid"}}
	if res, body := ae.post(c, "/portal/apps/new", form); res.StatusCode != 403 || !strings.Contains(body, "terms of use") {
		t.Fatalf("page create without terms %d %s", res.StatusCode, body)
	}
	_ = body
	// Unverified developers are refused (they cannot log in either).
	v := &Visitor{Dev: &devUnverified}
	if err := canIssue(v); err != errUnverified {
		t.Fatalf("unverified: %v", err)
	}
}

// TestCrossOrgSweep: every app, key, request and webhook route tried by
// another organisation's developer, with the other organisation's ids,
// is 404 and changes nothing.
func TestCrossOrgSweep(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	ctx := context.Background()
	a, orgA := ae.developer("a@example.org", true)
	b, orgB := ae.developer("b@example.org", true)
	_, out, _ := ae.api("POST", "/portal/api/orgs/"+orgA+"/apps", a, confidentialApp)
	appA := out["app"].(map[string]any)["client_id"].(string)
	_, k, _ := ae.api("POST", "/portal/api/orgs/"+orgA+"/keys", a, map[string]any{"name": "k", "scopes": []string{"system/*.rs"}})
	keyA := k["id"].(string)
	_, wh, _ := ae.api("POST", "/portal/api/orgs/"+orgA+"/webhooks", a, map[string]any{"url": "https://hooks.example.org/a"})
	whA := wh["endpoint"].(map[string]any)["id"].(string)
	for _, org := range []string{orgA, orgB} {
		base := "/portal/api/orgs/" + org
		for _, c := range []struct{ method, path string }{
			{"GET", base + "/apps/sandbox/" + appA},
			{"DELETE", base + "/apps/sandbox/" + appA},
			{"POST", base + "/apps/sandbox/" + appA + "/secret"},
			{"POST", base + "/apps/sandbox/" + appA + "/production"},
			{"POST", base + "/keys/sandbox/" + keyA + "/rotate"},
			{"POST", base + "/keys/sandbox/" + keyA + "/suspend"},
			{"POST", base + "/keys/sandbox/" + keyA + "/resume"},
			{"DELETE", base + "/keys/sandbox/" + keyA},
			{"DELETE", base + "/webhooks/" + whA},
			{"GET", base + "/webhooks/" + whA + "/deliveries"},
		} {
			if st, out, _ := ae.api(c.method, c.path, b, nil); st != 404 {
				t.Errorf("%s %s: %d %v", c.method, c.path, st, out)
			}
		}
	}
	for _, path := range []string{"/apps", "/keys", "/webhooks", "/requests"} {
		if st, _, _ := ae.api("GET", "/portal/api/orgs/"+orgA+path, b, nil); st != 404 {
			t.Errorf("GET %s of another org: %d", path, st)
		}
		if st, _, l := ae.api("GET", "/portal/api/orgs/"+orgB+path, b, nil); st != 200 || len(l) != 0 {
			t.Errorf("GET own %s: %d %v", path, st, l)
		}
	}
	for _, path := range []string{"/apps", "/keys", "/webhooks"} {
		if st, _, _ := ae.api("POST", "/portal/api/orgs/"+orgA+path, b, map[string]any{}); st != 404 {
			t.Errorf("POST %s of another org: %d", path, st)
		}
	}
	// Pages: with A's ids under B's organisation (or naming A's org).
	c := ae.signUpAndLogIn("c@example.org")
	_, _, csrf := ae.get(c, "/portal/")
	acceptTerms(t, ae.env, c)
	for _, path := range []string{"/portal/apps/sandbox/" + appA, "/portal/apps/sandbox/" + appA + "?org=" + orgA, "/portal/apps/production/" + appA} {
		if st, _, _ := ae.get(c, path); st != 404 {
			t.Errorf("GET %s: %d", path, st)
		}
	}
	for _, path := range []string{"/portal/apps/sandbox/" + appA + "/rotate", "/portal/apps/sandbox/" + appA + "/delete", "/portal/apps/sandbox/" + appA + "/production",
		"/portal/keys/sandbox/" + keyA + "/revoke", "/portal/keys/sandbox/" + keyA + "/suspend", "/portal/webhooks/" + whA + "/delete"} {
		if res, body := ae.post(c, path, url.Values{"csrf": {csrf}, "org": {orgA}, "overlap": {"0"}, "grace": {"0"}}); res.StatusCode != 404 {
			t.Errorf("POST %s: %d %s", path, res.StatusCode, body)
		}
	}
	// Nothing changed.
	if cl, err := ae.sb.OAuthClient(ctx, appA); err != nil || !cl.PrevSecretUntil.IsZero() {
		t.Fatalf("app A changed: %+v %v", cl, err)
	}
	if k, _ := ae.sb.APIKey(ctx, keyA); k.Status != api.StatusActive {
		t.Fatalf("key A changed: %s", k.Status)
	}
	if eps, _ := ae.hooks.Endpoints(ctx, orgA); len(eps) != 1 {
		t.Fatal("webhook A deleted")
	}
	// Operator pages are for operators.
	if st, _, _ := ae.get(c, "/portal/admin/reviews"); st != 403 {
		t.Fatalf("admin reviews page %d", st)
	}
}

func acceptTerms(t *testing.T, e *env, c *http.Client) {
	t.Helper()
	_, _, csrf := e.get(c, "/portal/terms")
	if res, _ := e.post(c, "/portal/terms", url.Values{"csrf": {csrf}, "version": {"1"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("accept terms %d", res.StatusCode)
	}
}

var devUnverified = developer.Developer{ID: "unverified", Email: "u@example.org"}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var secretInputRE = regexp.MustCompile(`id="client-secret" class="secret" readonly value="([^"]+)"`)

// TestAppsPages walks the pages: the wizard with a preset, the secret
// shown once (with a download), rotation, the production request, the
// operator's approval, keys and webhooks; every page under the strict
// CSP and 100 KB.
func TestAppsPages(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	ctx := context.Background()
	c := ae.signUpAndLogIn("pages@example.org")
	acceptTerms(t, ae.env, c)
	st, body, csrf := ae.get(c, "/portal/apps/new")
	if st != 200 || !strings.Contains(body, "Backend service") || !strings.Contains(body, `id="preset-confidential-web"`) {
		t.Fatalf("wizard %d", st)
	}
	st, body, csrf = ae.get(c, "/portal/apps/new?preset=confidential-web")
	if st != 200 || !strings.Contains(body, `value="patient/Observation.rs"`) || !strings.Contains(body, `id="redirect_uris"`) {
		t.Fatalf("wizard step 2 %d %s", st, body)
	}
	form := url.Values{"csrf": {csrf}, "preset": {"confidential-web"}, "name": {"Page App"}, "description": {"made on a page"},
		"redirect_uris": {"https://page.example.org/cb\nhttps://page.example.org/cb2"}, "scope": {"openid", "fhirUser", "launch/patient", "patient/Observation.rs"},
		"homepage": {"https://page.example.org/"}}
	res, body := ae.post(c, "/portal/apps/new", form)
	m := secretInputRE.FindStringSubmatch(body)
	if res.StatusCode != 201 || m == nil || !strings.Contains(body, `href="data:application/json;base64,`) {
		t.Fatalf("create %d %s", res.StatusCode, body)
	}
	secret := m[1]
	apps, _ := ae.sb.Clients(ctx, api.ClientFilter{})
	if len(apps) != 1 || len(apps[0].RedirectURIs) != 2 {
		t.Fatalf("clients %+v", apps)
	}
	id := apps[0].ID
	st, body, csrf = ae.get(c, "/portal/apps/sandbox/"+id)
	if st != 200 || strings.Contains(body, secret) || !strings.Contains(body, "made on a page") || !strings.Contains(body, `id="request-production"`) {
		t.Fatalf("app page %d", st)
	}
	// Errors are shown on the form with what was typed.
	bad := url.Values{"csrf": {csrf}, "preset": {"confidential-web"}, "name": {"Bad"}, "redirect_uris": {"http://evil.example.org/cb"}, "scope": {"openid"}}
	if res, body := ae.post(c, "/portal/apps/new", bad); res.StatusCode != 400 || !strings.Contains(body, "must use https") || !strings.Contains(body, "http://evil.example.org/cb") {
		t.Fatalf("bad create %d %s", res.StatusCode, body)
	} else if !strings.Contains(body, "Redirect URIs: entry") || strings.Contains(body, "Redirect_uris") {
		// The page names the field by its label, not by the JSON API's name.
		t.Errorf("bad create names the field as the API does: %s", body)
	}
	res, body = ae.post(c, "/portal/apps/sandbox/"+id+"/rotate", url.Values{"csrf": {csrf}, "overlap": {"1h"}})
	if m := secretInputRE.FindStringSubmatch(body); res.StatusCode != 200 || m == nil || m[1] == secret || !strings.Contains(body, "previous secret keeps working") {
		t.Fatalf("rotate %d %s", res.StatusCode, body)
	}
	res, _ = ae.post(c, "/portal/apps/sandbox/"+id+"/production", url.Values{"csrf": {csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("request production %d", res.StatusCode)
	}
	st, body, _ = ae.get(c, res.Header.Get("Location"))
	if st != 200 || !strings.Contains(body, "Production access requested") || !strings.Contains(body, "decision due by") {
		t.Fatalf("after request %d %s", st, body)
	}
	// Operator approves on the review page.
	oc := ae.signUpAndLogIn("oppage@example.org")
	acceptTerms(t, ae.env, oc)
	if err := ae.p.dev.SetOperator(ctx, "oppage@example.org", true); err != nil {
		t.Fatal(err)
	}
	st, body, ocsrf := ae.get(oc, "/portal/admin/reviews")
	rqs, _ := ae.p.reviews.Pending(ctx)
	if st != 200 || len(rqs) != 1 || !strings.Contains(body, "Page App") {
		t.Fatalf("queue %d %s", st, body)
	}
	// The queue names the requesting developer and the organisation.
	org, err := ae.p.dev.Org(ctx, rqs[0].OrgID)
	if err != nil || !strings.Contains(body, "pages@example.org") || !strings.Contains(body, "<strong>"+template.HTMLEscapeString(org.Name)+"</strong>") {
		t.Errorf("queue lacks the requester or organisation name (%v): %s", err, body)
	}
	if _, err := ae.p.dev.Org(ctx, "no-such-org"); !errors.Is(err, developer.ErrNotFound) {
		t.Errorf("unknown organisation: %v", err)
	}
	res, _ = ae.post(oc, "/portal/admin/reviews/"+rqs[0].ID+"/approve", url.Values{"csrf": {ocsrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve %d", res.StatusCode)
	}
	prod, _ := ae.prod.Clients(ctx, api.ClientFilter{})
	if len(prod) != 1 || prod[0].Name != "Page App" {
		t.Fatalf("production clients %+v", prod)
	}
	if st, body, _ := ae.get(c, "/portal/apps/sandbox/"+id); st != 200 || !strings.Contains(body, prod[0].ID) || strings.Contains(body, `id="request-production"`) {
		t.Fatalf("approved app page %d", st)
	}
	if st, body, _ := ae.get(oc, "/portal/admin/apps"); st != 200 || !strings.Contains(body, prod[0].ID) {
		t.Fatalf("admin apps %d", st)
	}
	// The decided table names the deciding operator by address, as the
	// queue names the requester, not by the internal "developer:ID".
	if st, body, _ := ae.get(oc, "/portal/admin/reviews"); st != 200 || !strings.Contains(body, "oppage@example.org</td>") || strings.Contains(body, "<code>developer:") {
		t.Errorf("decided table lacks the operator's address %d: %s", st, body)
	}
	// Keys: create (shown once), rotate, revoke.
	_, _, csrf = ae.get(c, "/portal/keys")
	res, body = ae.post(c, "/portal/keys/new", url.Values{"csrf": {csrf}, "environment": {"sandbox"}, "name": {"page key"}, "scope": {"system/*.rs"}})
	if res.StatusCode != 201 || !strings.Contains(body, `id="new-key"`) {
		t.Fatalf("key %d %s", res.StatusCode, body)
	}
	ks, _ := ae.sb.APIKeys(ctx, api.APIKeyFilter{})
	if st, body, _ := ae.get(c, "/portal/keys"); st != 200 || strings.Contains(body, `id="new-key"`) || !strings.Contains(body, ks[0].ID) {
		t.Fatalf("keys page %d", st)
	}
	if res, body := ae.post(c, "/portal/keys/sandbox/"+ks[0].ID+"/rotate", url.Values{"csrf": {csrf}, "grace": {"1h"}}); res.StatusCode != 200 || !strings.Contains(body, "keeps working until") {
		t.Fatalf("rotate key %d %s", res.StatusCode, body)
	}
	if res, _ := ae.post(c, "/portal/keys/sandbox/"+ks[0].ID+"/revoke", url.Values{"csrf": {csrf}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke key %d", res.StatusCode)
	}
	// A production key now works (approved access).
	if res, body := ae.post(c, "/portal/keys/new", url.Values{"csrf": {csrf}, "environment": {"production"}, "name": {"prod"}, "scope": {"system/*.rs"}}); res.StatusCode != 201 {
		t.Fatalf("production key %d %s", res.StatusCode, body)
	}
	// Webhooks page.
	_, _, csrf = ae.get(c, "/portal/webhooks")
	if res, body := ae.post(c, "/portal/webhooks/new", url.Values{"csrf": {csrf}, "url": {"https://hooks.example.org/x"}}); res.StatusCode != 201 || !strings.Contains(body, `id="wh-secret"`) {
		t.Fatalf("webhook %d %s", res.StatusCode, body)
	}
	// A form without the CSRF token is refused.
	if res, _ := ae.post(c, "/portal/apps/sandbox/"+id+"/rotate", url.Values{"overlap": {"0"}}); res.StatusCode != 403 {
		t.Fatalf("rotate without csrf %d", res.StatusCode)
	}
	for _, path := range []string{"/portal/apps", "/portal/apps/new", "/portal/apps/new?preset=ehr-launch", "/portal/apps/sandbox/" + id, "/portal/keys", "/portal/webhooks"} {
		checkPage(t, c, ae.srv.URL+path)
	}
	for _, path := range []string{"/portal/admin/reviews", "/portal/admin/apps"} {
		checkPage(t, oc, ae.srv.URL+path)
	}
}

func checkPage(t *testing.T, c *http.Client, u string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") || len(b) > 100<<10 {
		t.Errorf("%s: %d csp %q size %d", u, res.StatusCode, csp, len(b))
	}
}

// TestAppsAPISessionCSRF: with the session cookie, the app API needs the
// X-CSRF-Token header on unsafe methods.
func TestAppsAPISessionCSRF(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	c := ae.signUpAndLogIn("csrf@example.org")
	acceptTerms(t, ae.env, c)
	res, err := c.Get(ae.srv.URL + "/portal/api/me")
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]any
	_ = json.NewDecoder(res.Body).Decode(&me)
	res.Body.Close()
	org := me["organizations"].([]any)[0].(map[string]any)["id"].(string)
	csrf := me["csrf_token"].(string)
	post := func(h string) int {
		req, _ := http.NewRequest("POST", ae.srv.URL+"/portal/api/orgs/"+org+"/apps", strings.NewReader(toJSON(confidentialApp)))
		req.Header.Set("Content-Type", "application/json")
		if h != "" {
			req.Header.Set("X-CSRF-Token", h)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := post(""); st != 403 {
		t.Fatalf("without csrf %d", st)
	}
	if st := post("wrong"); st != 403 {
		t.Fatalf("wrong csrf %d", st)
	}
	if st := post(csrf); st != 201 {
		t.Fatalf("with csrf %d", st)
	}
	if apps, _ := ae.sb.Clients(context.Background(), api.ClientFilter{}); len(apps) != 1 {
		t.Fatalf("apps %d", len(apps))
	}
}

// TestAppEndpointsShown checks that an app's page and its API answers (the
// creation and the read) name the environment's FHIR base, authorization
// and token endpoints and SMART configuration, which a developer needs to
// configure the app.
func TestAppEndpointsShown(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	tok, org := ae.developer("endpoints@example.org", true)
	st, out, _ := ae.api("POST", "/portal/api/orgs/"+org+"/apps", tok, confidentialApp)
	if st != 201 {
		t.Fatalf("create %d %v", st, out)
	}
	want := map[string]any{"fhir_base": "http://prod.test/sandbox/fhir", "authorization_endpoint": "http://prod.test/sandbox/fhir/auth/authorize",
		"token_endpoint": "http://prod.test/sandbox/fhir/auth/token", "smart_configuration": "http://prod.test/sandbox/fhir/.well-known/smart-configuration"}
	check := func(what string, got any) {
		t.Helper()
		m, _ := got.(map[string]any)
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s: endpoints[%s] = %v, want %v", what, k, m[k], v)
			}
		}
	}
	check("create", out["endpoints"])
	id := out["app"].(map[string]any)["client_id"].(string)
	st, got, _ := ae.api("GET", "/portal/api/orgs/"+org+"/apps/sandbox/"+id, tok, nil)
	if st != 200 {
		t.Fatalf("read %d", st)
	}
	check("read", got["endpoints"])

	c := ae.signUpAndLogIn("endpoints-page@example.org")
	acceptTerms(t, ae.env, c)
	form := url.Values{"preset": {"backend"}, "name": {"Svc"}, "jwks_uri": {"https://svc.example.org/jwks.json"}, "scope": {"system/Patient.rs"}}
	_, _, csrf := ae.get(c, "/portal/apps/new?preset=backend")
	form.Set("csrf", csrf)
	if res, body := ae.post(c, "/portal/apps/new", form); res.StatusCode != 201 {
		t.Fatalf("create backend %d %s", res.StatusCode, body)
	}
	var bid string
	apps, _ := ae.sb.Clients(context.Background(), api.ClientFilter{})
	for _, a := range apps {
		if a.Name == "Svc" {
			bid = a.ID
		}
	}
	st, body, _ := ae.get(c, "/portal/apps/sandbox/"+bid)
	if st != 200 {
		t.Fatalf("app page %d", st)
	}
	for _, s := range []string{`id="app-fhir-base">http://prod.test/sandbox/fhir<`, `id="app-token-url">http://prod.test/sandbox/fhir/auth/token<`,
		`id="app-authorize-url">http://prod.test/sandbox/fhir/auth/authorize<`, "http://prod.test/sandbox/fhir/.well-known/smart-configuration"} {
		if !strings.Contains(body, s) {
			t.Errorf("app page lacks %s", s)
		}
	}
}
