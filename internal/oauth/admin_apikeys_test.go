package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/lapis-health/lapis/internal/apikey"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns the JSON log records written since the last call.
func (l *lockedBuffer) take(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	l.b.Reset()
	return out
}

// newKeyEnv is newCodeEnv with the server's log captured.
func newKeyEnv(t *testing.T, dialect string) (*codeEnv, *lockedBuffer) {
	t.Helper()
	db, km, dir := openStores(t, dialect)
	logs := &lockedBuffer{}
	ce := &codeEnv{}
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String() + "/fhir"
	srv, err := oauth.New(oauth.Config{Issuer: issuer, Clients: db, Assertions: db, Revocations: db, Keys: km,
		JWKS: jwksfetch.New(jwksfetch.Options{AllowPrivate: true}), Codes: oauth.NewCodeStore(db), Refresh: db,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Now:    func() time.Time { return time.Now().Add(time.Duration(ce.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv.Mount(mux)
	ts.Config.Handler = mux
	ts.Start()
	t.Cleanup(ts.Close)
	ce.env = &env{t: t, db: db, keys: km, srv: srv, ts: ts, issuer: issuer, token: issuer + oauth.PathToken, kek: filepath.Join(dir, keys.KEKFile)}
	return ce, logs
}

func keyDialects(t *testing.T, f func(t *testing.T, e *codeEnv, logs *lockedBuffer)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			e, logs := newKeyEnv(t, d)
			f(t, e, logs)
		})
	}
}

func bodyKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func wantKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := bodyKeys(m); !slices.Equal(got, want) {
		t.Fatalf("%s: fields %v, want %v", what, got, want)
	}
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return tm
}

// wantAudit asserts exactly one admin log line with these attributes (and
// nothing secret in it).
func wantAudit(t *testing.T, logs *lockedBuffer, action string, attrs map[string]string, secrets ...string) {
	t.Helper()
	recs := logs.take(t)
	if len(recs) != 1 {
		t.Fatalf("%s: %d log lines: %v", action, len(recs), recs)
	}
	r := recs[0]
	if r["msg"] != "oauth: admin" || r["action"] != action || r["admin_client_id"] == "" {
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
	raw, _ := json.Marshal(r)
	for _, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Fatalf("%s: log leaks %q", action, s)
		}
	}
}

// TestAdminAPIKeys covers the apikeys endpoints' happy paths: create (with
// every option), list, get, rotate and revoke, each logged once by id.
func TestAdminAPIKeys(t *testing.T) {
	keyDialects(t, func(t *testing.T, e *codeEnv, logs *lockedBuffer) {
		ctx := context.Background()
		admin := e.register(oauth.Registration{Name: "admin", Type: authdb.Confidential, Scopes: []string{oauth.ScopeAdmin}})
		tok := e.ccToken(admin)
		logs.take(t)
		now := time.Now()

		// A system key with an allow-list and a lifetime as a duration
		// string.
		r := e.adminCall("POST", "apikeys", tok, `{"name":" ETL ","scopes":["system/Patient.rs system/Observation.rs"],"expires_in":"720h","allow_ips":["10.1.2.3/8, 2001:db8::1","::ffff:192.0.2.7"]}`)
		wantAdmin(t, "create system key", r, 201, "")
		wantKeys(t, "create", r.body, "key", "id", "prefix", "name", "scopes", "allow_ips", "expires_at")
		key, id := r.body["key"].(string), r.body["id"].(string)
		if !apikey.ValidFormat(key) || !strings.HasPrefix(id, "ak_") || r.body["prefix"] != key[:len(apikey.Prefix)+8] || r.body["name"] != "ETL" ||
			!slices.Equal(strs(r.body["scopes"]), []string{"system/Patient.rs", "system/Observation.rs"}) ||
			!slices.Equal(strs(r.body["allow_ips"]), []string{"10.0.0.0/8", "2001:db8::1/128", "192.0.2.7/32"}) {
			t.Fatalf("create: %s", r.raw)
		}
		if exp := parseTime(t, r.body["expires_at"]); exp.Sub(now.Add(720*time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("expires_at %v", exp)
		}
		if loc := r.hdr.Get("Location"); loc != e.issuer+oauth.PathAdmin+"apikeys/"+id {
			t.Fatalf("Location %q", loc)
		}
		wantAudit(t, logs, "create_apikey", map[string]string{"key_id": id}, key, "ETL", "system/Patient.rs")
		// Stored only as its hash, and usable.
		stored, err := e.db.APIKeyByHash(ctx, apikey.Hash(key))
		if err != nil || stored.ID != id || !stored.Valid(time.Now()) || stored.Name != "ETL" {
			t.Fatalf("stored %+v %v", stored, err)
		}

		// A patient-bound key, lifetime in seconds.
		r = e.adminCall("POST", "apikeys", tok, `{"name":"portal","scopes":["patient/Observation.rs","patient/Patient.r"],"patient":"p-1","expires_in":3600}`)
		wantAdmin(t, "create patient key", r, 201, "")
		wantKeys(t, "create patient", r.body, "key", "id", "prefix", "name", "scopes", "patient", "expires_at")
		pid := r.body["id"].(string)
		if r.body["patient"] != "p-1" || parseTime(t, r.body["expires_at"]).Sub(now.Add(time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("create patient: %s", r.raw)
		}
		logs.take(t)
		// expires_at, and no expiry at all.
		at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
		r = e.adminCall("POST", "apikeys", tok, `{"name":"until","scopes":["system/*.rs"],"expires_at":"`+at.Format(time.RFC3339)+`"}`)
		wantAdmin(t, "create with expires_at", r, 201, "")
		if !parseTime(t, r.body["expires_at"]).Equal(at) {
			t.Fatalf("expires_at: %s", r.raw)
		}
		r = e.adminCall("POST", "apikeys", tok, `{"name":"forever","scopes":["system/*.read"],"patient":"","allow_ips":[]}`)
		wantAdmin(t, "create without expiry", r, 201, "")
		wantKeys(t, "create without expiry", r.body, "key", "id", "prefix", "name", "scopes")
		forever, foreverKey := r.body["id"].(string), r.body["key"].(string)
		logs.take(t)

		// List: never the key or its hash.
		r = e.adminCall("GET", "apikeys", tok, "")
		wantAdmin(t, "list", r, 200, "")
		wantKeys(t, "list", r.body, "apikeys")
		list := r.body["apikeys"].([]any)
		if len(list) != 4 || strings.Contains(r.raw, key) || strings.Contains(r.raw, foreverKey) || strings.Contains(strings.ToLower(r.raw), "hash") {
			t.Fatalf("list: %s", r.raw)
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
		if len(logs.take(t)) != 0 {
			t.Fatal("reads are logged")
		}
		r = e.adminCall("GET", "apikeys/"+pid, tok, "")
		wantAdmin(t, "get", r, 200, "")
		wantKeys(t, "get", r.body, "id", "name", "prefix", "scopes", "patient", "created_at", "expires_at", "status")
		if r.body["patient"] != "p-1" || r.body["status"] != "active" || strings.Contains(r.raw, "key\"") {
			t.Fatalf("get: %s", r.raw)
		}
		// last_used_at appears once the key is used.
		if err := e.db.TouchAPIKey(ctx, pid, time.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
		if r = e.adminCall("GET", "apikeys/"+pid, tok, ""); r.body["last_used_at"] == nil {
			t.Fatalf("last_used_at: %s", r.raw)
		}

		// Rotate with a grace period: the new key inherits everything, the
		// old one stays valid until old_valid_until.
		r = e.adminCall("POST", "apikeys/"+id+"/rotate", tok, `{"grace":"1h"}`)
		wantAdmin(t, "rotate", r, 201, "")
		wantKeys(t, "rotate", r.body, "key", "id", "prefix", "name", "scopes", "allow_ips", "expires_at", "replaces", "old_valid_until")
		key2, id2 := r.body["key"].(string), r.body["id"].(string)
		if !apikey.ValidFormat(key2) || key2 == key || id2 == id || r.body["replaces"] != id || r.body["name"] != "ETL" || len(strs(r.body["allow_ips"])) != 3 ||
			parseTime(t, r.body["old_valid_until"]).Sub(time.Now().Add(time.Hour)).Abs() > 5*time.Second {
			t.Fatalf("rotate: %s", r.raw)
		}
		if loc := r.hdr.Get("Location"); loc != e.issuer+oauth.PathAdmin+"apikeys/"+id2 {
			t.Fatalf("rotate Location %q", loc)
		}
		wantAudit(t, logs, "rotate_apikey", map[string]string{"key_id": id2, "replaces": id}, key, key2)
		if r = e.adminCall("GET", "apikeys/"+id, tok, ""); r.body["status"] != "rotated" || r.body["replaced_by"] != id2 {
			t.Fatalf("old key after rotate: %s", r.raw)
		}
		if k, err := e.db.APIKeyByHash(ctx, apikey.Hash(key2)); err != nil || k.ID != id2 || !k.Valid(time.Now()) {
			t.Fatalf("new key %+v %v", k, err)
		}
		wantAdmin(t, "rotate twice", e.adminCall("POST", "apikeys/"+id+"/rotate", tok, `{"grace":60}`), 409, "conflict")
		// Default grace (24h) with no body; grace 0 ends the old key at once.
		r = e.adminCall("POST", "apikeys/"+pid+"/rotate", tok, "")
		wantAdmin(t, "rotate, no body", r, 201, "")
		if r.body["patient"] != "p-1" || !parseTime(t, r.body["old_valid_until"]).Equal(parseTime(t, r.body["expires_at"])) {
			// The patient key expires in an hour, before the default grace.
			t.Fatalf("rotate, no body: %s", r.raw)
		}
		r = e.adminCall("POST", "apikeys/"+forever+"/rotate", tok, "")
		if old := parseTime(t, r.body["old_valid_until"]); r.status != 201 || old.Sub(time.Now().Add(oauth.DefaultAPIKeyGrace)).Abs() > 5*time.Second {
			t.Fatalf("rotate, default grace: %s", r.raw)
		}
		forever2 := r.body["id"].(string)
		r = e.adminCall("POST", "apikeys/"+forever2+"/rotate", tok, `{"grace":0}`)
		wantAdmin(t, "rotate, grace 0", r, 201, "")
		if r = e.adminCall("GET", "apikeys/"+forever2, tok, ""); r.body["status"] != "expired" {
			t.Fatalf("grace 0: %s", r.raw)
		}
		logs.take(t)

		// Revoke: 204, at once, idempotent.
		r = e.adminCall("DELETE", "apikeys/"+id2, tok, "")
		if r.status != 204 || r.raw != "" {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		wantAudit(t, logs, "revoke_apikey", map[string]string{"key_id": id2})
		if k, _ := e.db.APIKeyByHash(ctx, apikey.Hash(key2)); k.Valid(time.Now()) {
			t.Fatal("revoked key still valid")
		}
		r = e.adminCall("GET", "apikeys/"+id2, tok, "")
		if r.body["status"] != "revoked" || r.body["revoked_at"] == nil {
			t.Fatalf("after revoke: %s", r.raw)
		}
		if r = e.adminCall("DELETE", "apikeys/"+id2, tok, ""); r.status != 204 {
			t.Fatalf("revoke again: %d %s", r.status, r.raw)
		}
		logs.take(t)
		wantAdmin(t, "rotate revoked", e.adminCall("POST", "apikeys/"+id2+"/rotate", tok, ""), 409, "conflict")

		// Expiry shows in the status.
		e.advance(2 * time.Hour)
		r = e.adminCall("GET", "apikeys", e.ccToken(admin), "")
		status := map[string]string{}
		for _, x := range r.body["apikeys"].([]any) {
			m := x.(map[string]any)
			status[m["id"].(string)] = m["status"].(string)
		}
		if status[id] != "expired" || status[pid] != "expired" || status[id2] != "revoked" || len(status) != 8 {
			t.Fatalf("statuses %v", status)
		}
		if len(logs.take(t)) != 0 {
			t.Fatal("rejections or reads are logged as actions")
		}
	})
}

// TestAdminAPIKeysRejections covers every refusal of the apikeys
// endpoints; none creates or changes a key.
func TestAdminAPIKeysRejections(t *testing.T) {
	keyDialects(t, func(t *testing.T, e *codeEnv, logs *lockedBuffer) {
		admin := e.register(oauth.Registration{Name: "admin", Type: authdb.Confidential, Scopes: []string{oauth.ScopeAdmin, "system/Patient.rs"}})
		tok := e.ccToken(admin, oauth.ScopeAdmin)
		r := e.adminCall("POST", "apikeys", tok, `{"name":"k","scopes":["system/*.rs"]}`)
		wantAdmin(t, "setup", r, 201, "")
		id := r.body["id"].(string)
		logs.take(t)

		// Authentication and scope, before routing.
		const good = `{"name":"k","scopes":["system/*.rs"]}`
		for _, c := range []struct{ method, path, body string }{
			{"POST", "apikeys", good}, {"GET", "apikeys", ""}, {"GET", "apikeys/" + id, ""},
			{"DELETE", "apikeys/" + id, ""}, {"POST", "apikeys/" + id + "/rotate", ""}, {"GET", "apikeys/x/y/z", ""},
		} {
			wantAdmin(t, "no token "+c.method+" "+c.path, e.adminCall(c.method, c.path, "", c.body), 401, "invalid_token")
			wantAdmin(t, "bad token "+c.method+" "+c.path, e.adminCall(c.method, c.path, "garbage", c.body), 401, "invalid_token")
			r := e.adminCall(c.method, c.path, e.ccToken(admin, "system/Patient.rs"), c.body)
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
			r := e.adminCall("POST", "apikeys", tok, body)
			wantAdmin(t, what, r, 400, "invalid_request")
			if strings.Contains(r.raw, "--") {
				t.Fatalf("%s: CLI wording: %s", what, r.raw)
			}
		}
		big := `{"name":"` + strings.Repeat("a", 70<<10) + `","scopes":["system/*.rs"]}`
		wantAdmin(t, "oversize body", e.adminCall("POST", "apikeys", tok, big), 413, "invalid_request")
		wantAdmin(t, "form body", e.adminCall("POST", "apikeys", tok, good, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }), 415, "invalid_request")
		wantAdmin(t, "no content type", e.adminCall("POST", "apikeys", tok, good, func(r *http.Request) { r.Header.Del("Content-Type") }), 415, "invalid_request")

		// Rotate bodies.
		for what, body := range map[string]string{
			"negative grace":       `{"grace":"-1s"}`,
			"bad grace":            `{"grace":"a while"}`,
			"unknown rotate field": `{"grace":"1h","expires_in":60}`,
			"rotate trailing":      `{} {}`,
		} {
			wantAdmin(t, what, e.adminCall("POST", "apikeys/"+id+"/rotate", tok, body), 400, "invalid_request")
		}
		wantAdmin(t, "rotate form body", e.adminCall("POST", "apikeys/"+id+"/rotate", tok, `{}`, func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), 415, "invalid_request")
		wantAdmin(t, "rotate oversize", e.adminCall("POST", "apikeys/"+id+"/rotate", tok, `{"grace":"`+strings.Repeat("1", 70<<10)+`s"}`), 413, "invalid_request")

		// Unknown ids and paths.
		wantAdmin(t, "get unknown", e.adminCall("GET", "apikeys/ak_0000000000000000", tok, ""), 404, "not_found")
		wantAdmin(t, "revoke unknown", e.adminCall("DELETE", "apikeys/ak_0000000000000000", tok, ""), 404, "not_found")
		wantAdmin(t, "rotate unknown", e.adminCall("POST", "apikeys/ak_0000000000000000/rotate", tok, ""), 404, "not_found")
		for _, p := range []string{"apikeys/", "apikeys//rotate", "apikeys/" + id + "/", "apikeys/" + id + "/revoke", "apikeys/" + id + "/rotate/x", "apikeys/" + id + "/rotate/"} {
			wantAdmin(t, "path "+p, e.adminCall("GET", p, tok, ""), 404, "not_found")
			if !strings.Contains(p, "//") { // ServeMux redirects unclean paths
				wantAdmin(t, "path POST "+p, e.adminCall("POST", p, tok, `{}`), 404, "not_found")
			}
		}

		// Methods.
		for _, c := range []struct{ method, path, allow string }{
			{"PUT", "apikeys", "GET, POST"}, {"DELETE", "apikeys", "GET, POST"}, {"PATCH", "apikeys", "GET, POST"},
			{"POST", "apikeys/" + id, "GET, DELETE"}, {"PUT", "apikeys/" + id, "GET, DELETE"},
			{"GET", "apikeys/" + id + "/rotate", "POST"}, {"DELETE", "apikeys/" + id + "/rotate", "POST"},
		} {
			r := e.adminCall(c.method, c.path, tok, "")
			wantAdmin(t, c.method+" "+c.path, r, 405, "invalid_request")
			if r.hdr.Get("Allow") != c.allow {
				t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, r.hdr.Get("Allow"), c.allow)
			}
		}

		// Nothing changed, nothing logged as an action.
		r = e.adminCall("GET", "apikeys", tok, "")
		if list := r.body["apikeys"].([]any); len(list) != 1 || list[0].(map[string]any)["status"] != "active" {
			t.Fatalf("after rejections: %s", r.raw)
		}
		for _, rec := range logs.take(t) {
			if rec["msg"] == "oauth: admin" {
				t.Fatalf("rejection logged as an action: %v", rec)
			}
		}
	})
}
