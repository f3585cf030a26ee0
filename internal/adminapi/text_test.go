package adminapi_test

import (
	"net/http"
	"testing"

	"github.com/lapis-health/lapis/internal/oauth"
)

// A NUL character or invalid UTF-8 in an admin API path, query or JSON
// string (%00, %ff, "\u0000") is a 400 invalid_request: on PostgreSQL,
// which refuses such text in a statement, most endpoints answered 500.
func TestAdminUnstorableText(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		tok := e.ccToken(e.admin(), oauth.ScopeAdmin)
		for _, v := range []string{"%00", "%FF"} {
			for _, c := range []struct{ method, path, body string }{
				{"GET", "clients?owner=" + v, ""},
				{"GET", "apikeys?owner=" + v, ""},
				{"GET", "grants?client_id=" + v, ""},
				{"GET", "clients/" + v, ""},
				{"DELETE", "clients/" + v, ""},
				{"DELETE", "apikeys/" + v, ""},
				{"POST", "clients/" + v + "/suspend", `{"reason":"x"}`},
				{"POST", "apikeys/" + v + "/resume", ""},
				{"POST", "apikeys/" + v + "/rotate", `{}`},
				{"PUT", "clients/" + v + "/ratelimit", `{"rate_limit":"5/s"}`},
				{"PUT", "clients/" + v + "/network", `{"allow_ips":[]}`},
			} {
				wantAdmin(t, c.method+" "+c.path, e.call(c.method, c.path, tok, c.body), http.StatusBadRequest, "invalid_request")
			}
		}
		for _, c := range []struct{ path, body string }{
			{"grants/revoke", `{"client_id":"a\u0000b"}`},
			{"clients", `{"name":"a\u0000b","type":"confidential","scopes":["system/*.rs"]}`},
			{"apikeys", `{"name":"a\u0000b","scopes":["system/*.rs"]}`},
		} {
			wantAdmin(t, "POST "+c.path, e.call("POST", c.path, tok, c.body), http.StatusBadRequest, "invalid_request")
		}
	})
}
