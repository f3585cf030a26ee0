package adminapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/adminapi"
	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/oauth"
)

// take returns the log lines and audit events since the last call.
func (e *env) take(t *testing.T) ([]map[string]any, []audit.Event) {
	return take(t, e.logs), e.events.Take()
}

// wantAudit asserts exactly one admin log line with these attributes and
// exactly one audit event of the action, by the admin client over its
// access token, naming the changed ids (and nothing secret in either).
func wantAudit(t *testing.T, e *env, action string, attrs map[string]string, secrets ...string) {
	t.Helper()
	recs, evs := e.take(t)
	if len(recs) != 1 || len(evs) != 1 {
		t.Fatalf("%s: %d log lines, %d audit events: %v %+v", action, len(recs), len(evs), recs, evs)
	}
	r := recs[0]
	if r["msg"] != "admin" || r["action"] != action || r["admin_client_id"] == "" {
		t.Fatalf("%s: log %v", action, r)
	}
	want := []string{"time", "level", "msg", "action", "admin_client_id"}
	for k, v := range attrs {
		want = append(want, k)
		if r[k] != v {
			t.Fatalf("%s: log %s=%v, want %s", action, k, r[k], v)
		}
	}
	wantKeys(t, action+" log", r, want...)
	ev := evs[0]
	kinds := map[string]audit.Kind{"create_apikey": audit.KindAPIKeyCreated, "rotate_apikey": audit.KindAPIKeyRotated, "revoke_apikey": audit.KindAPIKeyRevoked}
	if ev.Kind != kinds[action] || ev.Action != "E" || ev.ClientID != r["admin_client_id"] || ev.Method != "access_token" ||
		ev.CredentialID == "" || ev.Address != "127.0.0.1" || !strings.HasPrefix(ev.Description, "admin "+action+" "+attrs["key_id"]) ||
		!slices.ContainsFunc(ev.Entities, func(en audit.Entity) bool { return en.ID == attrs["key_id"] && en.Role == "apikey" }) {
		t.Fatalf("%s: audit event %+v", action, ev)
	}
	raw, _ := json.Marshal(r)
	for _, s := range secrets {
		if strings.Contains(string(raw), s) || strings.Contains(fmt.Sprintf("%+v", ev), s) {
			t.Fatalf("%s: log or audit event leaks %q", action, s)
		}
	}
}

// TestAdminAPIKeys covers the apikeys endpoints' happy paths: create (with
// every option), list, get, rotate and revoke, each logged once by id.
func TestAdminAPIKeys(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		admin := e.admin()
		tok := e.ccToken(admin)
		e.take(t)
		now := time.Now()

		// A system key with an allow-list and a lifetime as a duration
		// string.
		r := e.call("POST", "apikeys", tok, `{"name":" ETL ","scopes":["system/Patient.rs system/Observation.rs"],"expires_in":"720h","allow_ips":["10.1.2.3/8, 2001:db8::1","::ffff:192.0.2.7"]}`)
		wantAdmin(t, "create system key", r, 201, "")
		wantKeys(t, "create", r.Body, "key", "id", "prefix", "name", "scopes", "allow_ips", "expires_at")
		key, id := r.Body["key"].(string), r.Body["id"].(string)
		if !apikey.ValidFormat(key) || !strings.HasPrefix(id, "ak_") || r.Body["prefix"] != key[:len(apikey.Prefix)+8] || r.Body["name"] != "ETL" ||
			!slices.Equal(strs(r.Body["scopes"]), []string{"system/Patient.rs", "system/Observation.rs"}) ||
			!slices.Equal(strs(r.Body["allow_ips"]), []string{"10.0.0.0/8", "2001:db8::1/128", "192.0.2.7/32"}) {
			t.Fatalf("create: %s", r.Raw)
		}
		if exp := parseTime(t, r.Body["expires_at"]); exp.Sub(now.Add(720*time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("expires_at %v", exp)
		}
		if loc := r.Header.Get("Location"); loc != e.issuer+adminapi.Path+"apikeys/"+id {
			t.Fatalf("Location %q", loc)
		}
		wantAudit(t, e, "create_apikey", map[string]string{"key_id": id}, key, "ETL", "system/Patient.rs")
		// Stored only as its hash, and usable.
		stored, err := e.db.APIKeyByHash(ctx, apikey.Hash(key))
		if err != nil || stored.ID != id || !stored.Valid(time.Now()) || stored.Name != "ETL" {
			t.Fatalf("stored %+v %v", stored, err)
		}

		// A patient-bound key, lifetime in seconds.
		r = e.call("POST", "apikeys", tok, `{"name":"portal","scopes":["patient/Observation.rs","patient/Patient.r"],"patient":"p-1","expires_in":3600}`)
		wantAdmin(t, "create patient key", r, 201, "")
		wantKeys(t, "create patient", r.Body, "key", "id", "prefix", "name", "scopes", "patient", "expires_at")
		pid := r.Body["id"].(string)
		if r.Body["patient"] != "p-1" || parseTime(t, r.Body["expires_at"]).Sub(now.Add(time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("create patient: %s", r.Raw)
		}
		e.take(t)
		// expires_at, and no expiry at all.
		at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
		r = e.call("POST", "apikeys", tok, `{"name":"until","scopes":["system/*.rs"],"expires_at":"`+at.Format(time.RFC3339)+`"}`)
		wantAdmin(t, "create with expires_at", r, 201, "")
		if !parseTime(t, r.Body["expires_at"]).Equal(at) {
			t.Fatalf("expires_at: %s", r.Raw)
		}
		r = e.call("POST", "apikeys", tok, `{"name":"forever","scopes":["system/*.read"],"patient":"","allow_ips":[]}`)
		wantAdmin(t, "create without expiry", r, 201, "")
		wantKeys(t, "create without expiry", r.Body, "key", "id", "prefix", "name", "scopes")
		forever, foreverKey := r.Body["id"].(string), r.Body["key"].(string)
		e.take(t)

		// List: never the key or its hash.
		r = e.call("GET", "apikeys", tok, "")
		wantAdmin(t, "list", r, 200, "")
		wantKeys(t, "list", r.Body, "apikeys")
		list := r.Body["apikeys"].([]any)
		if len(list) != 4 || strings.Contains(r.Raw, key) || strings.Contains(r.Raw, foreverKey) || strings.Contains(strings.ToLower(r.Raw), "hash") {
			t.Fatalf("list: %s", r.Raw)
		}
		var first map[string]any
		for _, x := range list {
			if m := x.(map[string]any); m["id"] == id {
				first = m
			}
		}
		wantKeys(t, "list entry", first, "id", "name", "prefix", "scopes", "allow_ips", "created_at", "expires_at", "status")
		if first["id"] != id || first["status"] != "active" || parseTime(t, first["created_at"]).Sub(now).Abs() > 5*time.Second {
			t.Fatalf("list entry: %v", first)
		}
		if l, ev := e.take(t); len(l) != 0 || len(ev) != 0 {
			t.Fatal("reads are logged")
		}
		r = e.call("GET", "apikeys/"+pid, tok, "")
		wantAdmin(t, "get", r, 200, "")
		wantKeys(t, "get", r.Body, "id", "name", "prefix", "scopes", "patient", "created_at", "expires_at", "status")
		if r.Body["patient"] != "p-1" || r.Body["status"] != "active" || strings.Contains(r.Raw, "key\"") {
			t.Fatalf("get: %s", r.Raw)
		}
		// last_used_at appears once the key is used.
		if err := e.db.TouchAPIKey(ctx, pid, time.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
		if r = e.call("GET", "apikeys/"+pid, tok, ""); r.Body["last_used_at"] == nil {
			t.Fatalf("last_used_at: %s", r.Raw)
		}

		// Rotate with a grace period: the new key inherits everything, the
		// old one stays valid until old_valid_until.
		r = e.call("POST", "apikeys/"+id+"/rotate", tok, `{"grace":"1h"}`)
		wantAdmin(t, "rotate", r, 201, "")
		wantKeys(t, "rotate", r.Body, "key", "id", "prefix", "name", "scopes", "allow_ips", "expires_at", "replaces", "old_valid_until")
		key2, id2 := r.Body["key"].(string), r.Body["id"].(string)
		if !apikey.ValidFormat(key2) || key2 == key || id2 == id || r.Body["replaces"] != id || r.Body["name"] != "ETL" || len(strs(r.Body["allow_ips"])) != 3 ||
			parseTime(t, r.Body["old_valid_until"]).Sub(time.Now().Add(time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("rotate: %s", r.Raw)
		}
		if loc := r.Header.Get("Location"); loc != e.issuer+adminapi.Path+"apikeys/"+id2 {
			t.Fatalf("rotate Location %q", loc)
		}
		wantAudit(t, e, "rotate_apikey", map[string]string{"key_id": id2, "replaces": id}, key, key2)
		if r = e.call("GET", "apikeys/"+id, tok, ""); r.Body["status"] != "rotated" || r.Body["replaced_by"] != id2 {
			t.Fatalf("old key after rotate: %s", r.Raw)
		}
		if k, err := e.db.APIKeyByHash(ctx, apikey.Hash(key2)); err != nil || k.ID != id2 || !k.Valid(time.Now()) {
			t.Fatalf("new key %+v %v", k, err)
		}
		wantAdmin(t, "rotate twice", e.call("POST", "apikeys/"+id+"/rotate", tok, `{"grace":60}`), 409, "conflict")
		// A grace no duration can hold: 400 saying what a duration is.
		for _, bad := range []string{`{"grace":99999999999}`, `{"grace":"forever"}`} {
			r := e.call("POST", "apikeys/"+id+"/rotate", tok, bad)
			wantAdmin(t, "bad grace", r, 400, "invalid_request")
			if d, _ := r.Body["error_description"].(string); !strings.Contains(d, "whole seconds") {
				t.Fatalf("bad grace %s: %s", bad, r.Raw)
			}
		}
		// Default grace (24h) with no body; grace 0 ends the old key at once.
		r = e.call("POST", "apikeys/"+pid+"/rotate", tok, "")
		wantAdmin(t, "rotate, no body", r, 201, "")
		if r.Body["patient"] != "p-1" || !parseTime(t, r.Body["old_valid_until"]).Equal(parseTime(t, r.Body["expires_at"])) {
			// The patient key expires in an hour, before the default grace.
			t.Fatalf("rotate, no body: %s", r.Raw)
		}
		r = e.call("POST", "apikeys/"+forever+"/rotate", tok, "")
		if old := parseTime(t, r.Body["old_valid_until"]); r.Status != 201 || old.Sub(time.Now().Add(api.DefaultGrace)).Abs() > 5*time.Second {
			t.Fatalf("rotate, default grace: %s", r.Raw)
		}
		forever2 := r.Body["id"].(string)
		r = e.call("POST", "apikeys/"+forever2+"/rotate", tok, `{"grace":0}`)
		wantAdmin(t, "rotate, grace 0", r, 201, "")
		if r = e.call("GET", "apikeys/"+forever2, tok, ""); r.Body["status"] != "expired" {
			t.Fatalf("grace 0: %s", r.Raw)
		}
		e.take(t)

		// Revoke: 204, at once, idempotent.
		r = e.call("DELETE", "apikeys/"+id2, tok, "")
		if r.Status != 204 || r.Raw != "" {
			t.Fatalf("revoke: %d %s", r.Status, r.Raw)
		}
		wantAudit(t, e, "revoke_apikey", map[string]string{"key_id": id2})
		if k, _ := e.db.APIKeyByHash(ctx, apikey.Hash(key2)); k.Valid(time.Now()) {
			t.Fatal("revoked key still valid")
		}
		r = e.call("GET", "apikeys/"+id2, tok, "")
		if r.Body["status"] != "revoked" || r.Body["revoked_at"] == nil {
			t.Fatalf("after revoke: %s", r.Raw)
		}
		if r = e.call("DELETE", "apikeys/"+id2, tok, ""); r.Status != 204 {
			t.Fatalf("revoke again: %d %s", r.Status, r.Raw)
		}
		e.take(t)
		wantAdmin(t, "rotate revoked", e.call("POST", "apikeys/"+id2+"/rotate", tok, ""), 409, "conflict")

		// Expiry shows in the status.
		e.advance(2 * time.Hour)
		r = e.call("GET", "apikeys", e.ccToken(admin), "")
		status := map[string]string{}
		for _, x := range r.Body["apikeys"].([]any) {
			m := x.(map[string]any)
			status[m["id"].(string)] = m["status"].(string)
		}
		if status[id] != "expired" || status[pid] != "expired" || status[id2] != "revoked" || len(status) != 8 {
			t.Fatalf("statuses %v", status)
		}
		if l, ev := e.take(t); len(l) != 0 || len(ev) != 0 {
			t.Fatal("rejections or reads are logged as actions")
		}
	})
}

// TestAdminAPIKeysRejections covers every refusal of the apikeys
// endpoints; none creates or changes a key.
func TestAdminAPIKeysRejections(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		admin := e.admin("system/Patient.rs")
		tok := e.ccToken(admin, oauth.ScopeAdmin)
		r := e.call("POST", "apikeys", tok, `{"name":"k","scopes":["system/*.rs"]}`)
		wantAdmin(t, "setup", r, 201, "")
		id := r.Body["id"].(string)
		e.take(t)

		// Authentication and scope, before routing.
		const good = `{"name":"k","scopes":["system/*.rs"]}`
		for _, c := range []struct{ method, path, body string }{
			{"POST", "apikeys", good}, {"GET", "apikeys", ""}, {"GET", "apikeys/" + id, ""},
			{"DELETE", "apikeys/" + id, ""}, {"POST", "apikeys/" + id + "/rotate", ""}, {"GET", "apikeys/x/y/z", ""},
		} {
			wantAdmin(t, "no token "+c.method+" "+c.path, e.call(c.method, c.path, "", c.body), 401, "invalid_token")
			wantAdmin(t, "bad token "+c.method+" "+c.path, e.call(c.method, c.path, "garbage", c.body), 401, "invalid_token")
			r := e.call(c.method, c.path, e.ccToken(admin, "system/Patient.rs"), c.body)
			wantAdmin(t, "wrong scope "+c.method+" "+c.path, r, 403, "insufficient_scope")
		}

		// Validation, as the CLI's.
		for what, body := range map[string]string{
			"no name":                `{"scopes":["system/*.rs"]}`,
			"blank name":             `{"name":"  ","scopes":["system/*.rs"]}`,
			"no scopes":              `{"name":"k"}`,
			"empty scopes":           `{"name":"k","scopes":[" "]}`,
			"user scope":             `{"name":"k","scopes":["user/*.rs"]}`,
			"launch scope":           `{"name":"k","scopes":["launch/patient"]}`,
			"openid":                 `{"name":"k","scopes":["system/*.rs openid"]}`,
			"admin scope":            `{"name":"k","scopes":["system/lapis.admin"]}`,
			"bad permission":         `{"name":"k","scopes":["system/Patient.x"]}`,
			"mixed kinds":            `{"name":"k","scopes":["system/*.rs","patient/*.rs"],"patient":"p1"}`,
			"patient scope, no id":   `{"name":"k","scopes":["patient/*.rs"]}`,
			"patient id, sys scopes": `{"name":"k","scopes":["system/*.rs"],"patient":"p1"}`,
			"bad patient id":         `{"name":"k","scopes":["patient/*.rs"],"patient":"p/1"}`,
			"bad CIDR":               `{"name":"k","scopes":["system/*.rs"],"allow_ips":["10.0.0.0/33"]}`,
			"not an address":         `{"name":"k","scopes":["system/*.rs"],"allow_ips":["example.com"]}`,
			"negative expires_in":    `{"name":"k","scopes":["system/*.rs"],"expires_in":"-1h"}`,
			"zero expires_in":        `{"name":"k","scopes":["system/*.rs"],"expires_in":0}`,
			"bad duration":           `{"name":"k","scopes":["system/*.rs"],"expires_in":"soon"}`,
			"fractional seconds":     `{"name":"k","scopes":["system/*.rs"],"expires_in":1.5}`,
			"huge duration":          `{"name":"k","scopes":["system/*.rs"],"expires_in":99999999999999}`,
			"duration as bool":       `{"name":"k","scopes":["system/*.rs"],"expires_in":true}`,
			"both expiries":          `{"name":"k","scopes":["system/*.rs"],"expires_in":60,"expires_at":"2099-01-01T00:00:00Z"}`,
			"past expires_at":        `{"name":"k","scopes":["system/*.rs"],"expires_at":"2020-01-01T00:00:00Z"}`,
			"bad expires_at":         `{"name":"k","scopes":["system/*.rs"],"expires_at":"tomorrow"}`,
			"scopes as string":       `{"name":"k","scopes":"system/*.rs"}`,
			"unknown field":          `{"name":"k","scopes":["system/*.rs"],"key":"lapis_mine"}`,
			"unknown field (id)":     `{"name":"k","scopes":["system/*.rs"],"id":"ak_mine"}`,
			"bad JSON":               `{"name":`,
			"not an object":          `["k"]`,
			"trailing data":          good + ` {}`,
		} {
			r := e.call("POST", "apikeys", tok, body)
			wantAdmin(t, what, r, 400, "invalid_request")
			if strings.Contains(r.Raw, "--") {
				t.Fatalf("%s: CLI wording: %s", what, r.Raw)
			}
		}
		big := `{"name":"` + strings.Repeat("a", 70<<10) + `","scopes":["system/*.rs"]}`
		wantAdmin(t, "oversize body", e.call("POST", "apikeys", tok, big), 413, "invalid_request")
		wantAdmin(t, "form body", e.call("POST", "apikeys", tok, good, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }), 415, "invalid_request")
		wantAdmin(t, "no content type", e.call("POST", "apikeys", tok, good, func(r *http.Request) { r.Header.Del("Content-Type") }), 415, "invalid_request")

		// Rotate bodies.
		for what, body := range map[string]string{
			"negative grace":       `{"grace":"-1s"}`,
			"bad grace":            `{"grace":"a while"}`,
			"unknown rotate field": `{"grace":"1h","expires_in":60}`,
			"rotate trailing":      `{} {}`,
		} {
			wantAdmin(t, what, e.call("POST", "apikeys/"+id+"/rotate", tok, body), 400, "invalid_request")
		}
		wantAdmin(t, "rotate form body", e.call("POST", "apikeys/"+id+"/rotate", tok, `{}`, func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), 415, "invalid_request")
		wantAdmin(t, "rotate oversize", e.call("POST", "apikeys/"+id+"/rotate", tok, `{"grace":"`+strings.Repeat("1", 70<<10)+`s"}`), 413, "invalid_request")

		// Unknown ids and paths.
		wantAdmin(t, "get unknown", e.call("GET", "apikeys/ak_0000000000000000", tok, ""), 404, "not_found")
		wantAdmin(t, "revoke unknown", e.call("DELETE", "apikeys/ak_0000000000000000", tok, ""), 404, "not_found")
		wantAdmin(t, "rotate unknown", e.call("POST", "apikeys/ak_0000000000000000/rotate", tok, ""), 404, "not_found")
		for _, p := range []string{"apikeys/", "apikeys//rotate", "apikeys/" + id + "/", "apikeys/" + id + "/revoke", "apikeys/" + id + "/rotate/x", "apikeys/" + id + "/rotate/"} {
			wantAdmin(t, "path "+p, e.call("GET", p, tok, ""), 404, "not_found")
			if !strings.Contains(p, "//") { // ServeMux redirects unclean paths
				wantAdmin(t, "path POST "+p, e.call("POST", p, tok, `{}`), 404, "not_found")
			}
		}

		// Methods.
		for _, c := range []struct{ method, path, allow string }{
			{"PUT", "apikeys", "GET, POST"}, {"DELETE", "apikeys", "GET, POST"}, {"PATCH", "apikeys", "GET, POST"},
			{"POST", "apikeys/" + id, "GET, DELETE"}, {"PUT", "apikeys/" + id, "GET, DELETE"},
			{"GET", "apikeys/" + id + "/rotate", "POST"}, {"DELETE", "apikeys/" + id + "/rotate", "POST"},
		} {
			r := e.call(c.method, c.path, tok, "")
			wantAdmin(t, c.method+" "+c.path, r, 405, "invalid_request")
			if r.Header.Get("Allow") != c.allow {
				t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, r.Header.Get("Allow"), c.allow)
			}
		}

		// Nothing changed, nothing logged as an action.
		r = e.call("GET", "apikeys", tok, "")
		if list := r.Body["apikeys"].([]any); len(list) != 1 || list[0].(map[string]any)["status"] != "active" {
			t.Fatalf("after rejections: %s", r.Raw)
		}
		recs, evs := e.take(t)
		if len(evs) != 0 {
			t.Fatalf("rejections recorded as actions: %+v", evs)
		}
		for _, rec := range recs {
			if rec["msg"] == "admin" {
				t.Fatalf("rejection logged as an action: %v", rec)
			}
		}
	})
}
