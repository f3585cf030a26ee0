package adminapi_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestAdminClientNetwork covers the clients' network rules in the admin API.
func TestAdminClientNetwork(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		admin := e.admin()
		tok := e.ccToken(admin)
		count := func() int {
			r := e.call("GET", "clients", tok, "")
			cs, _ := r.Body["clients"].([]any)
			return len(cs)
		}
		before := count()
		r := e.call("POST", "clients", tok, `{"name":"Web","type":"public","redirect_uris":["https://app.example/cb"],"scopes":["openid"],"allow_ips":["10.0.0.0/33"]}`)
		wantAdmin(t, "invalid allow_ips", r, 400, "invalid_request")
		r = e.call("POST", "clients", tok, `{"name":"Web","type":"public","redirect_uris":["https://app.example/cb"],"scopes":["openid"],"cors_origins":["http://app.example"]}`)
		wantAdmin(t, "http origin", r, 400, "invalid_request")
		if count() != before {
			t.Fatal("a refused client was created")
		}
		r = e.call("POST", "clients", tok, `{"name":"Web","type":"public","redirect_uris":["https://app.example/cb"],"scopes":["openid"],
			"allow_ips":["192.0.2.0/24","2001:db8::1"],"cors_origins":["https://App.example"]}`)
		wantAdmin(t, "create with rules", r, 201, "")
		id, _ := r.Body["client_id"].(string)

		get := func() string {
			r := e.call("GET", "clients/"+id+"/network", tok, "")
			wantAdmin(t, "get network", r, 200, "")
			return fmt.Sprint(r.Body["allow_ips"], r.Body["cors_origins"])
		}
		if got := get(); got != "[192.0.2.0/24 2001:db8::1/128] [https://app.example]" {
			t.Fatalf("stored rules %s", got)
		}
		r = e.call("PUT", "clients/"+id+"/network", tok, `{"allow_ips":["198.51.100.7"],"cors_origins":[]}`)
		wantAdmin(t, "put network", r, 200, "")
		if got := get(); got != "[198.51.100.7/32] []" {
			t.Fatalf("replaced rules %s", got)
		}
		wantAdmin(t, "put invalid", e.call("PUT", "clients/"+id+"/network", tok, `{"allow_ips":["nope"]}`), 400, "invalid_request")
		wantAdmin(t, "missing client", e.call("GET", "clients/no-such/network", tok, ""), 404, "not_found")
		wantAdmin(t, "missing client put", e.call("PUT", "clients/no-such/network", tok, `{"allow_ips":["10.0.0.1"]}`), 404, "not_found")
		r = e.call("POST", "clients/"+id+"/network", tok, `{}`)
		if r.Status != 405 || !strings.Contains(r.Header.Get("Allow"), "PUT") {
			t.Fatalf("POST network: %d %v", r.Status, r.Header)
		}
		wantAdmin(t, "nested path", e.call("GET", "clients/"+id+"/network/x", tok, ""), 404, "not_found")
	})
}
