package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// TestCapabilityAuditEvent: the CapabilityStatement claims for AuditEvent
// exactly the interactions the server performs. AuditEvents are written
// by the server only (every create, update, patch and delete is 405, for
// an admin too), so none of those, nor conditional or update-as-create
// writes, may be claimed; the reads an admin makes must be.
func TestCapabilityAuditEvent(t *testing.T) {
	t.Parallel()
	s := lapistest.Start(t, lapistest.Options{})
	var admin struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(s.MustCLI(t, "", "client", "create", "--name", "admin", "--type", "confidential", "--scope", "system/lapis.admin system/*.cruds", "--json")), &admin); err != nil || admin.ClientID == "" {
		t.Fatalf("client create: %v", err)
	}
	st, tok := form(t, nil, s.Base+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/lapis.admin system/*.cruds"}}, admin.ClientID, admin.ClientSecret)
	if st != http.StatusOK || str(tok, "access_token") == "" {
		t.Fatalf("client_credentials: %d %v", st, tok)
	}
	bearer := "Bearer " + str(tok, "access_token")
	var cs struct {
		Rest []struct {
			Resource []map[string]any
		}
	}
	if r := s.Do(t, "GET", "/metadata", nil); r.Status != http.StatusOK || json.Unmarshal(r.Body, &cs) != nil || len(cs.Rest) == 0 {
		t.Fatalf("metadata: %d", r.Status)
	}
	var audit map[string]any
	for _, res := range cs.Rest[0].Resource {
		if res["type"] == "AuditEvent" {
			audit = res
		}
	}
	if audit == nil {
		t.Fatal("no AuditEvent in the CapabilityStatement")
	}
	var claimed []string
	for _, i := range audit["interaction"].([]any) {
		claimed = append(claimed, i.(map[string]any)["code"].(string))
	}
	body := `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2024-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`
	for _, c := range []struct {
		code, method, path, body string
	}{
		{"create", "POST", "/AuditEvent", body},
		{"update", "PUT", "/AuditEvent/a1", strings.Replace(body, `{"resourceType":"AuditEvent",`, `{"resourceType":"AuditEvent","id":"a1",`, 1)},
		{"patch", "PATCH", "/AuditEvent/a1", `[{"op":"add","path":"/outcome","value":"0"}]`},
		{"delete", "DELETE", "/AuditEvent/a1", ""},
		{"search-type", "GET", "/AuditEvent?_count=1", ""},
		{"history-type", "GET", "/AuditEvent/_history?_count=1", ""},
	} {
		ctype := "application/fhir+json"
		if c.code == "patch" {
			ctype = "application/json-patch+json"
		}
		r := s.Do(t, c.method, c.path, strings.NewReader(c.body), "Authorization", bearer, "Content-Type", ctype)
		works := r.Status != http.StatusMethodNotAllowed && r.Status < 500
		if works != slices.Contains(claimed, c.code) {
			t.Errorf("AuditEvent %s: claimed %v, %s %s answers %d %s", c.code, slices.Contains(claimed, c.code), c.method, c.path, r.Status, r.Body)
		}
	}
	for _, i := range []string{"read", "vread", "history-instance"} {
		if !slices.Contains(claimed, i) {
			t.Errorf("AuditEvent interactions %v lack %s", claimed, i)
		}
	}
	for _, flag := range []string{"updateCreate", "conditionalCreate", "conditionalUpdate"} {
		if audit[flag] == true {
			t.Errorf("AuditEvent claims %s", flag)
		}
	}
	if d, ok := audit["conditionalDelete"]; ok && d != "not-supported" {
		t.Errorf("AuditEvent conditionalDelete %v", d)
	}
}
