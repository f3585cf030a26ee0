package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// TestBasePath runs lapis serve --base-url http://127.0.0.1:PORT/lapis:
// the FHIR API, its discovery documents and the authorization server are
// served under /lapis/fhir and name it in every URL they publish; a token
// from client_credentials creates and reads a Patient there; /healthz
// stays at the root and /fhir is not served.
func TestBasePath(t *testing.T) {
	t.Parallel()
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Port 0 in both: the server binds a free port and puts it in
			// the base URL too.
			in := serve(t, lapistest.Options{Database: db(t), Args: []string{"--base-url", "http://127.0.0.1:0/lapis"}})
			root := "http://" + in.Addr
			if in.base != root+"/lapis/fhir" {
				t.Fatalf("FHIR base %s, want %s/lapis/fhir", in.base, root)
			}

			meta := in.do("GET", "/metadata", nil).expect(t, 200).body
			if impl, _ := meta["implementation"].(map[string]any); impl["url"] != in.base {
				t.Errorf("implementation %v, want url %s", impl, in.base)
			}
			smart := in.do("GET", "/.well-known/smart-configuration", nil).expect(t, 200).body
			for k, want := range map[string]string{"issuer": in.base, "token_endpoint": in.base + "/auth/token",
				"authorization_endpoint": in.base + "/auth/authorize", "jwks_uri": in.base + "/auth/jwks"} {
				if smart[k] != want {
					t.Errorf("smart-configuration %s = %v, want %s", k, smart[k], want)
				}
			}
			oidc := in.do("GET", "/.well-known/openid-configuration", nil).expect(t, 200).body
			if oidc["issuer"] != in.base {
				t.Errorf("openid-configuration issuer %v", oidc["issuer"])
			}

			out, errs, code := in.lapis("client", "create", "--name", "cc", "--type", "confidential", "--scope", "system/*.cruds", "--json")
			var cc struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &cc) != nil {
				t.Fatalf("client create: %d %s %s", code, out, errs)
			}
			st, tok := form(t, nil, in.base+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, cc.ClientID, cc.ClientSecret)
			if st != 200 || str(tok, "access_token") == "" {
				t.Fatalf("client_credentials: %d %v", st, tok)
			}
			bearer := "Bearer " + str(tok, "access_token")
			created := in.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Sandbox"}]}`, "Authorization", bearer).expect(t, 201)
			id, _ := created.body["id"].(string)
			if loc := created.header.Get("Location"); !strings.HasPrefix(loc, in.base+"/Patient/"+id+"/_history/") {
				t.Errorf("Location %q", loc)
			}
			in.do("GET", "/Patient/"+id, nil).expect(t, 401)
			if r := in.do("GET", "/Patient/"+id, nil, "Authorization", bearer).expect(t, 200); r.body["id"] != id {
				t.Fatalf("read %s", r.raw)
			}
			found := in.do("GET", "/Patient?family=Sandbox", nil, "Authorization", bearer).expect(t, 200).body
			if got := ids(t, found, "match"); len(got) != 1 || !strings.HasPrefix(link(found, "self"), in.base+"/Patient?") {
				t.Fatalf("search: %v, self %q", got, link(found, "self"))
			}

			in.do("GET", root+"/fhir/metadata", nil).expect(t, 404)
			if resp, err := http.Get(root + "/healthz"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
		})
	}
}
