package portal

import (
	"fmt"
	"testing"
)

// TestAppsPerOrgBounded: an organisation has at most MaxSandboxApps
// sandbox apps; one more is a 400 saying so, not a new client.
func TestAppsPerOrgBounded(t *testing.T) {
	ae := newAppsEnv(t, "sqlite")
	tok, org := ae.developer("bound@example.org", true)
	base := "/portal/api/orgs/" + org
	for i := range MaxSandboxApps {
		in := map[string]any{"preset": "patient-standalone", "name": fmt.Sprintf("App %d", i), "redirect_uris": []string{"https://a.example.org/cb"}}
		if st, out, _ := ae.api("POST", base+"/apps", tok, in); st != 201 {
			t.Fatalf("app %d: %d %v", i, st, out)
		}
	}
	in := map[string]any{"preset": "patient-standalone", "name": "One more", "redirect_uris": []string{"https://a.example.org/cb"}}
	if st, out, _ := ae.api("POST", base+"/apps", tok, in); st != 400 || out["error"] != "invalid_request" {
		t.Fatalf("over the bound: %d %v", st, out)
	}
}
