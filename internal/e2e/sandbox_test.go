package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// envCreds are the credentials of one environment: a confidential client
// (allowed HTTP Basic), its access token and an API key.
type envCreds struct {
	base, clientID, secret, token, apiKey string
}

// newCreds registers a client and an API key in the environment env
// (--env) of in and gets a client_credentials token from base.
func newCreds(t *testing.T, in *instance, env, base string) envCreds {
	t.Helper()
	c := envCreds{base: base}
	var cc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	cliJSON(t, in, &cc, "client", "create", "--env", env, "--name", "cc-"+env, "--type", "confidential", "--scope", "system/*.cruds", "--json")
	c.clientID, c.secret = cc.ClientID, cc.ClientSecret
	in.MustCLI(t, "", "client", "basic", "enable", "--env", env, cc.ClientID)
	st, tok := form(t, nil, base+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, cc.ClientID, cc.ClientSecret)
	if st != 200 || str(tok, "access_token") == "" {
		t.Fatalf("%s client_credentials: %d %v", env, st, tok)
	}
	c.token = str(tok, "access_token")
	var k struct{ Key string }
	cliJSON(t, in, &k, "apikey", "create", "--env", env, "--name", "k-"+env, "--scope", "system/*.cruds", "--json")
	c.apiKey = k.Key
	return c
}

func cliJSON(t *testing.T, in *instance, v any, args ...string) {
	t.Helper()
	out := in.MustCLI(t, "", args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("lapis %s: output %q: %v", strings.Join(args, " "), out, err)
	}
}

// headers are the three ways c authenticates.
func (c envCreds) headers() map[string][]string {
	return map[string][]string{
		"bearer": {"Authorization", "Bearer " + c.token},
		"apikey": {"X-API-Key", c.apiKey},
		"basic":  {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.clientID)+":"+url.QueryEscape(c.secret)))},
	}
}

// jwtClaims decodes the payload of a JWT (no verification).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSandbox runs lapis serve with its two environments, production at
// /fhir and the sandbox at /sandbox/fhir: each publishes its own issuer,
// issues tokens naming it (iss, lapis_env, introspection), and refuses
// the other's bearer tokens, API keys and Basic credentials (401) and
// client secrets (token endpoint 401); data written in one is not in the
// other; lapis sandbox load fills the sandbox and lapis sandbox reset
// empties it while the server runs (old sandbox credentials stop, new
// ones work, production is untouched); /readyz names the sandbox's checks.
func TestSandbox(t *testing.T) {
	t.Parallel()
	forDialects(t, testSandbox)
}

func testSandbox(t *testing.T, dbURL string) {
	in := serve(t, lapistest.Options{Database: dbURL})
	prodBase := in.base
	sbBase := strings.TrimSuffix(in.base, "/fhir") + "/sandbox/fhir"

	// Discovery: each environment its own issuer.
	for _, base := range []string{prodBase, sbBase} {
		meta := in.do("GET", base+"/metadata", nil).expect(t, 200).body
		if impl, _ := meta["implementation"].(map[string]any); impl["url"] != base {
			t.Errorf("%s/metadata implementation %v", base, impl)
		}
		smart := in.do("GET", base+"/.well-known/smart-configuration", nil).expect(t, 200).body
		if smart["issuer"] != base || smart["token_endpoint"] != base+"/auth/token" {
			t.Errorf("%s smart-configuration issuer %v token_endpoint %v", base, smart["issuer"], smart["token_endpoint"])
		}
	}
	ready := in.do("GET", strings.TrimSuffix(in.base, "/fhir")+"/readyz", nil)
	if ready.status != 200 {
		t.Errorf("/readyz %d: %s", ready.status, ready.raw)
	}

	prod := newCreds(t, in, "production", prodBase)
	sb := newCreds(t, in, "sandbox", sbBase)
	for env, c := range map[string]envCreds{"production": prod, "sandbox": sb} {
		cl := jwtClaims(t, c.token)
		if cl["iss"] != c.base || cl["lapis_env"] != env {
			t.Errorf("%s token: iss %v lapis_env %v", env, cl["iss"], cl["lapis_env"])
		}
		st, intro := form(t, nil, c.base+"/auth/introspect", url.Values{"token": {c.token}}, c.clientID, c.secret)
		if st != 200 || intro["active"] != true || intro["lapis_env"] != env || intro["iss"] != c.base {
			t.Errorf("%s introspection: %d %v", env, st, intro)
		}
	}

	// Each credential works where it was issued and nowhere else.
	for _, pair := range []struct {
		name     string
		own      envCreds
		otherURL string
	}{{"production", prod, sbBase}, {"sandbox", sb, prodBase}} {
		for how, h := range pair.own.headers() {
			in.do("GET", pair.own.base+"/Patient?_count=1", nil, h...).expect(t, 200)
			r := in.do("GET", pair.otherURL+"/Patient?_count=1", nil, h...)
			if r.status != 401 {
				t.Errorf("%s %s credential on the other environment: %d, want 401", pair.name, how, r.status)
			}
		}
		// The client's secret at the other's token endpoint.
		st, body := form(t, nil, pair.otherURL+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, pair.own.clientID, pair.own.secret)
		if st != 401 || body["error"] != "invalid_client" {
			t.Errorf("%s client at the other token endpoint: %d %v", pair.name, st, body)
		}
	}

	// Data written in the sandbox is not in production, nor the reverse.
	key := func(c envCreds) []string { return []string{"X-API-Key", c.apiKey} }
	sbPat := in.do("POST", sbBase+"/Patient", `{"resourceType":"Patient","name":[{"family":"Sandboxonly"}]}`, key(sb)...).expect(t, 201).body
	prodPat := in.do("POST", prodBase+"/Patient", `{"resourceType":"Patient","name":[{"family":"Prodonly"}]}`, key(prod)...).expect(t, 201).body
	in.do("GET", prodBase+"/Patient/"+str(sbPat, "id"), nil, key(prod)...).expect(t, 404)
	in.do("GET", sbBase+"/Patient/"+str(prodPat, "id"), nil, key(sb)...).expect(t, 404)
	if n := total(t, in, prodBase+"/Patient?family=Sandboxonly&_total=accurate", key(prod)); n != 0 {
		t.Errorf("production finds %d sandbox patients", n)
	}

	// lapis sandbox load: US Core bundles, then readable in the sandbox only.
	dir := t.TempDir()
	var files []string
	for _, b := range shareddata.USCoreBundles(t) {
		f := filepath.Join(dir, b.Name)
		if err := os.WriteFile(f, b.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	out := in.MustCLI(t, "", append([]string{"sandbox", "load"}, files...)...)
	if !strings.Contains(out, "sandbox loaded: 3 bundles") {
		t.Errorf("sandbox load: %q", out)
	}
	in.do("GET", sbBase+"/Patient/85", nil, key(sb)...).expect(t, 200)
	in.do("GET", prodBase+"/Patient/85", nil, key(prod)...).expect(t, 404)

	// lapis sandbox reset while the server runs.
	in.MustCLI(t, "", "sandbox", "reset")
	for how, h := range sb.headers() {
		poll.Until(t, 30*time.Second, "old sandbox "+how+" credential refused after reset", func() bool {
			return in.do("GET", sbBase+"/Patient?_count=1", nil, h...).status == 401
		})
	}
	fresh := newCreds(t, in, "sandbox", sbBase)
	in.do("GET", sbBase+"/Patient?_count=1", nil, "Authorization", "Bearer "+fresh.token).expect(t, 200)
	if n := total(t, in, sbBase+"/Patient?_total=accurate", key(fresh)); n != 0 {
		t.Errorf("sandbox after reset: %d patients", n)
	}
	// Production untouched.
	for _, h := range prod.headers() {
		in.do("GET", prodBase+"/Patient/"+str(prodPat, "id"), nil, h...).expect(t, 200)
	}
	// Reload after a reset (--reset), and the data is back.
	in.MustCLI(t, "", append([]string{"sandbox", "load", "--reset"}, files...)...)
	poll.Until(t, 30*time.Second, "fresh sandbox key refused after load --reset", func() bool {
		return in.do("GET", sbBase+"/Patient/85", nil, key(fresh)...).status == 401
	})
	again := newCreds(t, in, "sandbox", sbBase)
	in.do("GET", sbBase+"/Patient/85", nil, key(again)...).expect(t, 200)
}

// total runs a search and returns Bundle.total.
func total(t *testing.T, in *instance, u string, h []string) int {
	t.Helper()
	b := in.do("GET", u, nil, h...).expect(t, 200).body
	n, _ := b["total"].(float64)
	return int(n)
}

// TestNoSandbox: with --sandbox=false nothing is served under /sandbox/.
func TestNoSandbox(t *testing.T) {
	t.Parallel()
	in := serve(t, lapistest.Options{Args: []string{"--sandbox=false"}})
	sbBase := strings.TrimSuffix(in.base, "/fhir") + "/sandbox/fhir"
	for _, p := range []string{"/metadata", "/.well-known/smart-configuration", "/auth/token"} {
		if r := in.do("GET", sbBase+p, nil); r.status != 404 {
			t.Errorf("GET %s%s: %d, want 404", sbBase, p, r.status)
		}
	}
	in.do("GET", in.base+"/metadata", nil).expect(t, 200)
	if r := in.do("GET", strings.TrimSuffix(in.base, "/fhir")+"/readyz", nil); strings.Contains(string(r.raw), "sandbox/") {
		t.Errorf("/readyz names sandbox checks without a sandbox: %s", r.raw)
	}
}
