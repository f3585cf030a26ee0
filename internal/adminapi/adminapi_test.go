package adminapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// TestAdminAPI covers the admin API's happy paths over HTTP.
func TestAdminAPI(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		admin := e.admin()
		tok := e.ccToken(admin)

		// Clients.
		r := e.call("POST", "clients", tok, `{"name":"Reporting","type":"confidential","scopes":["system/Patient.rs system/Observation.rs"]}`)
		wantAdmin(t, "create confidential", r, 201, "")
		id, _ := r.Body["client_id"].(string)
		secret, _ := r.Body["client_secret"].(string)
		if id == "" || len(secret) < 43 || len(r.Body) != 2 {
			t.Fatalf("create: %s", r.Raw)
		}
		if got := e.ccToken(&oauth.Registered{ClientID: id, ClientSecret: secret}, "system/Patient.rs"); got == "" {
			t.Fatal("new client's secret does not work")
		}
		r = e.call("POST", "clients", tok, `{"name":"Patient app","type":"public","redirect_uris":["https://app.example/cb"],"launch_uri":"https://app.example/launch","scopes":["launch/patient","openid","fhirUser","offline_access","patient/*.rs"]}`)
		wantAdmin(t, "create public", r, 201, "")
		pub, _ := r.Body["client_id"].(string)
		if _, has := r.Body["client_secret"]; has || pub == "" {
			t.Fatalf("public client: %s", r.Raw)
		}
		r = e.call("POST", "clients", tok, `{"name":"Bulk","type":"backend","scopes":["system/*.read"],"jwks":`+publicJWKS(t)+`}`)
		wantAdmin(t, "create backend", r, 201, "")
		wantAdmin(t, "public client with system scope", e.call("POST", "clients", tok, `{"name":"x","type":"public","redirect_uris":["https://a/cb"],"scopes":["system/lapis.admin"]}`), 400, "invalid_request")
		wantAdmin(t, "backend without keys", e.call("POST", "clients", tok, `{"name":"x","type":"backend","scopes":["system/*.read"]}`), 400, "invalid_request")

		r = e.call("GET", "clients", tok, "")
		list, _ := r.Body["clients"].([]any)
		if r.Status != 200 || len(list) != 4 || strings.Contains(r.Raw, secret) || strings.Contains(r.Raw, "secret") {
			t.Fatalf("list clients: %d %s", r.Status, r.Raw)
		}
		r = e.call("GET", "clients/"+pub, tok, "")
		if r.Status != 200 || r.Body["name"] != "Patient app" || r.Body["launch_uri"] != "https://app.example/launch" {
			t.Fatalf("get client: %d %s", r.Status, r.Raw)
		}
		wantAdmin(t, "get unknown client", e.call("GET", "clients/nope", tok, ""), 404, "not_found")

		// Users.
		r = e.call("POST", "users", tok, `{"username":"Alice","password":"alice-password-1","fhir_user":"Patient/p-1"}`)
		wantAdmin(t, "create user", r, 201, "")
		if r.Body["username"] != "alice" || r.Body["fhir_user"] != "Patient/p-1" || r.Body["subject"] == "" || strings.Contains(r.Raw, "password") {
			t.Fatalf("create user: %s", r.Raw)
		}
		subject := r.Body["subject"].(string)
		wantAdmin(t, "duplicate user", e.call("POST", "users", tok, `{"username":"alice","password":"alice-password-2","fhir_user":"Patient/p-1"}`), 409, "conflict")
		wantAdmin(t, "short password", e.call("POST", "users", tok, `{"username":"bob","password":"short","fhir_user":"Patient/p-2"}`), 400, "invalid_request")
		wantAdmin(t, "bad fhir_user", e.call("POST", "users", tok, `{"username":"bob","password":"bob-password-1","fhir_user":"Observation/1"}`), 400, "invalid_request")
		r = e.call("GET", "users", tok, "")
		if users, _ := r.Body["users"].([]any); r.Status != 200 || len(users) != 1 || strings.Contains(r.Raw, "argon2") {
			t.Fatalf("list users: %s", r.Raw)
		}
		if r = e.call("GET", "users/alice", tok, ""); r.Status != 200 || r.Body["subject"] != subject {
			t.Fatalf("get user: %s", r.Raw)
		}

		// Grants: alice authorizes the public app; the admin sees and
		// revokes it; its tokens stop working at once.
		alice := &authdb.Account{Subject: subject, FHIRUser: "Patient/p-1"}
		at, rt := e.userTokens(pub, alice)
		intro := e.register(oauth.Registration{Name: "rs", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		r = e.call("GET", "grants?username=alice", tok, "")
		gs, _ := r.Body["grants"].([]any)
		if r.Status != 200 || len(gs) != 1 || gs[0].(map[string]any)["client_id"] != pub || gs[0].(map[string]any)["client_name"] != "Patient app" {
			t.Fatalf("grants: %s", r.Raw)
		}
		wantAdmin(t, "revoke without client", e.call("POST", "grants/revoke", tok, `{"username":"alice"}`), 400, "invalid_request")
		wantAdmin(t, "revoke unknown user", e.call("POST", "grants/revoke", tok, `{"client_id":"`+pub+`","username":"nobody"}`), 404, "not_found")
		r = e.call("POST", "grants/revoke", tok, `{"client_id":"`+pub+`","username":"alice"}`)
		if r.Status != 200 || r.Body["revoked"] != float64(1) || len(r.Body) != 1 {
			t.Fatalf("revoke: %d %s", r.Status, r.Raw)
		}
		if e.active(intro, at) {
			t.Fatal("access token active after admin revocation")
		}
		rr := e.post(oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub}}, "", "")
		if rr.Status != 400 || rr.Body["error"] != "invalid_grant" {
			t.Fatalf("refresh after admin revocation: %d %s", rr.Status, rr.Raw)
		}
		if r = e.call("GET", "grants", tok, ""); !strings.Contains(r.Raw, `"grants":[]`) {
			t.Fatalf("grants after revocation: %s", r.Raw)
		}
		// Revoking for every user of a client.
		at2, _ := e.userTokens(pub, alice)
		if r = e.call("POST", "grants/revoke", tok, `{"client_id":"`+pub+`"}`); r.Body["revoked"] != float64(1) {
			t.Fatalf("revoke all: %s", r.Raw)
		}
		if _, err := e.srv.Verifier().Verify(context.Background(), at2); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("verify after revoke-all: %v", err)
		}

		// Deleting a user revokes its grants; deleting a client too.
		at3, _ := e.userTokens(pub, alice)
		if r = e.call("DELETE", "users/alice", tok, ""); r.Status != 204 {
			t.Fatalf("delete user: %d %s", r.Status, r.Raw)
		}
		if _, err := e.srv.Verifier().Verify(context.Background(), at3); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Fatalf("token of a deleted user verifies: %v", err)
		}
		wantAdmin(t, "delete user again", e.call("DELETE", "users/alice", tok, ""), 404, "not_found")
		if r = e.call("DELETE", "clients/"+id, tok, ""); r.Status != 204 {
			t.Fatalf("delete client: %d %s", r.Status, r.Raw)
		}
		wantAdmin(t, "deleted client", e.call("GET", "clients/"+id, tok, ""), 404, "not_found")
		wantAdmin(t, "delete client again", e.call("DELETE", "clients/"+id, tok, ""), 404, "not_found")
	})
}

// TestAdminAPIRejections covers every refusal: authentication, scope,
// request bodies, paths and methods.
func TestAdminAPIRejections(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		admin := e.admin("system/Patient.rs")
		data := e.register(oauth.Registration{Name: "data", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
		tok := e.ccToken(admin, oauth.ScopeAdmin)

		challenge := func(what string, r result, want string) {
			t.Helper()
			if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, want) {
				t.Fatalf("%s: WWW-Authenticate %q", what, h)
			}
		}
		r := e.call("GET", "clients", "", "")
		wantAdmin(t, "no token", r, 401, "invalid_token")
		challenge("no token", r, `realm="lapis"`)
		if strings.Contains(r.Header.Get("WWW-Authenticate"), "error=") {
			t.Fatal("challenge without credentials carries an error code")
		}
		r = e.call("GET", "clients", "", "", func(req *http.Request) { req.SetBasicAuth(admin.ClientID, admin.ClientSecret) })
		wantAdmin(t, "basic credentials", r, 401, "invalid_token")
		for what, bad := range map[string]string{
			"garbage":  "not-a-token",
			"bad JWT":  "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
			"tampered": tok[:len(tok)-4] + strings.Map(func(r rune) rune { return map[bool]rune{true: 'A', false: 'B'}[r != 'A'] }, tok[len(tok)-4:]),
		} {
			r = e.call("GET", "clients", bad, "")
			wantAdmin(t, what, r, 401, "invalid_token")
			challenge(what, r, `error="invalid_token"`)
		}
		// Unauthenticated callers learn nothing about the paths.
		wantAdmin(t, "unknown path, no token", e.call("GET", "nope", "", ""), 401, "invalid_token")

		// Wrong scope: a token without system/lapis.admin, from a client
		// that has it and from one that does not.
		for what, wrong := range map[string]string{"data client": e.ccToken(data), "admin client, narrower scope": e.ccToken(admin, "system/Patient.rs")} {
			r = e.call("GET", "clients", wrong, "")
			wantAdmin(t, what, r, 403, "insufficient_scope")
			challenge(what, r, `scope="system/lapis.admin"`)
		}

		// Bodies.
		wantAdmin(t, "bad JSON", e.call("POST", "clients", tok, `{"name":`), 400, "invalid_request")
		wantAdmin(t, "not an object", e.call("POST", "clients", tok, `["x"]`), 400, "invalid_request")
		wantAdmin(t, "unknown field", e.call("POST", "clients", tok, `{"name":"x","type":"confidential","scopes":["system/*.rs"],"client_secret":"mine"}`), 400, "invalid_request")
		wantAdmin(t, "unknown field (users)", e.call("POST", "users", tok, `{"username":"a","password":"long-enough-1","fhir_user":"Patient/1","admin":true}`), 400, "invalid_request")
		wantAdmin(t, "trailing data", e.call("POST", "grants/revoke", tok, `{"client_id":"x"} {}`), 400, "invalid_request")
		big := `{"name":"` + strings.Repeat("a", 70<<10) + `","type":"confidential","scopes":["system/*.rs"]}`
		wantAdmin(t, "oversize body", e.call("POST", "clients", tok, big), 413, "invalid_request")
		wantAdmin(t, "form body", e.call("POST", "clients", tok, `{"name":"x"}`, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }), 415, "invalid_request")
		wantAdmin(t, "unknown path", e.call("GET", "nope", tok, ""), 404, "not_found")
		wantAdmin(t, "nested path", e.call("GET", "clients/a/b", tok, ""), 404, "not_found")
		r = e.call("PUT", "clients", tok, `{}`)
		wantAdmin(t, "wrong method", r, 405, "invalid_request")
		if r.Header.Get("Allow") != "GET, POST" {
			t.Fatalf("Allow %q", r.Header.Get("Allow"))
		}
		wantAdmin(t, "GET grants/revoke", e.call("GET", "grants/revoke", tok, ""), 405, "invalid_request")

		// A token revoked at /auth/revoke stops working at once (even
		// after a successful call warmed the Verifier's cache).
		if r = e.call("GET", "clients", tok, ""); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		rv := e.post(oauth.PathRevoke, url.Values{"token": {tok}}, admin.ClientID, admin.ClientSecret)
		if rv.Status != 200 {
			t.Fatalf("revoke: %d %s", rv.Status, rv.Raw)
		}
		wantAdmin(t, "revoked token", e.call("GET", "clients", tok, ""), 401, "invalid_token")

		// Deleting the admin client (by another admin) invalidates its
		// tokens at once.
		admin2 := e.register(oauth.Registration{Name: "admin2", Type: authdb.Confidential, Scopes: []string{oauth.ScopeAdmin}})
		tok1, tok2 := e.ccToken(admin, oauth.ScopeAdmin), e.ccToken(admin2)
		if r = e.call("DELETE", "clients/"+admin.ClientID, tok2, ""); r.Status != 204 {
			t.Fatalf("delete admin: %d %s", r.Status, r.Raw)
		}
		wantAdmin(t, "token of a deleted client", e.call("GET", "clients", tok1, ""), 401, "invalid_token")

		// Expired.
		if _, err := e.srv.Verifier().Verify(ctx, tok2); err != nil {
			t.Fatal(err)
		}
		e.advance(oauth.MaxBackendTokenLifetime + time.Second)
		wantAdmin(t, "expired token", e.call("GET", "clients", tok2, ""), 401, "invalid_token")
		if r = e.call("GET", "clients", e.ccToken(admin2), ""); r.Status != 200 {
			t.Fatalf("fresh token: %d %s", r.Status, r.Raw)
		}
	})
}
