package app

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestActivityCauses makes real refusals against a running server — a
// missing scope, a write outside the patient's compartment, a rate limit,
// a network rule, a revoked API key — and checks the cause each
// credential's activity recorded, and that no id or query value is in
// it.
func TestActivityCauses(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			ln, root, cfg := listenConfig(t)
			cfg.Server.BaseURL = root
			if dialect == "postgres" {
				cfg.Database.URL = pgtest.New(t)
			}
			cfg.Gateway.TrustedProxies = []string{"127.0.0.1/32"}
			cfg.RateLimit.MaxConcurrentPerClient = -1
			if err := cfg.Normalize(true); err != nil {
				t.Fatal(err)
			}
			fhirBase := root + "/fhir"

			// Credentials, registered before the server loads its rules.
			db, err := authdb.Open(ctx, cfg.Database.URL, cfg.Database.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			newKey := func(name string, scopes []string, patient string, rl authdb.RateLimit) (id, secret string) {
				t.Helper()
				key, prefix, hash, err := apikey.New()
				if err != nil {
					t.Fatal(err)
				}
				id, err = apikey.NewID()
				if err != nil {
					t.Fatal(err)
				}
				if err := db.CreateAPIKey(ctx, &authdb.APIKey{ID: id, Name: name, Hash: hash, Prefix: prefix, Scopes: scopes, Patient: patient,
					CreatedAt: time.Now(), RateLimit: rl}); err != nil {
					t.Fatal(err)
				}
				return id, key
			}
			okID, okKey := newKey("ok", []string{"system/*.cruds"}, "", authdb.RateLimit{})
			scopedID, scopedKey := newKey("scoped", []string{"system/Patient.cruds"}, "", authdb.RateLimit{})
			limitedID, limitedKey := newKey("limited", []string{"system/*.rs"}, "", authdb.RateLimit{Limit: "2/h", Burst: 2})
			revokedID, revokedKey := newKey("revoked", []string{"system/*.rs"}, "", authdb.RateLimit{})
			if err := db.RevokeAPIKey(ctx, revokedID, time.Now()); err != nil {
				t.Fatal(err)
			}
			cc, err := oauth.RegisterClient(ctx, db, oauth.Registration{Name: "net", Type: authdb.Confidential, Scopes: []string{"system/*.rs"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.SetClientNetRules(ctx, authdb.ClientNetRules{ClientID: cc.ClientID, AllowIPs: []string{"127.0.0.0/8"}}); err != nil {
				t.Fatal(err)
			}

			srv, err := NewServer(ctx, cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				db.Close()
				t.Fatal(err)
			}
			shutdown := serveBackground(t, srv, ln)
			t.Cleanup(func() { db.Close() })

			req := func(method, path, key, body string, status int, hdr ...string) {
				t.Helper()
				r, _ := http.NewRequest(method, fhirBase+path, strings.NewReader(body))
				if key != "" {
					r.Header.Set("Authorization", "Bearer "+key)
				}
				if body != "" {
					r.Header.Set("Content-Type", "application/fhir+json")
				}
				for i := 0; i+1 < len(hdr); i += 2 {
					r.Header.Set(hdr[i], hdr[i+1])
				}
				do(t, r, status, nil)
			}
			// Successes, and a patient to be outside of.
			var created struct{ ID string }
			r, _ := http.NewRequest("POST", fhirBase+"/Patient", strings.NewReader(`{"resourceType":"Patient","name":[{"family":"Secretname"}]}`))
			r.Header.Set("Content-Type", "application/fhir+json")
			r.Header.Set("Authorization", "Bearer "+okKey)
			do(t, r, 201, &created)
			req("GET", "/Patient/"+created.ID, okKey, "", 200)
			req("GET", "/Patient?family=Secretname", okKey, "", 200)
			req("GET", "/Patient/no-such-id", okKey, "", 404)
			// Missing scope.
			req("GET", "/Observation?code=secret-code", scopedKey, "", 403)
			// Outside the patient's compartment: a key bound to another
			// patient writing an Observation about this one.
			var other struct{ ID string }
			r, _ = http.NewRequest("POST", fhirBase+"/Patient", strings.NewReader(`{"resourceType":"Patient"}`))
			r.Header.Set("Content-Type", "application/fhir+json")
			r.Header.Set("Authorization", "Bearer "+okKey)
			do(t, r, 201, &other)
			compID, compKey := newKey("compartment", []string{"patient/*.cruds"}, other.ID, authdb.RateLimit{})
			req("POST", "/Observation", compKey, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+created.ID+`"}}`, 403)
			// Rate limit: the third read in the hour is refused.
			req("GET", "/Patient/"+created.ID, limitedKey, "", 200)
			req("GET", "/Patient/"+created.ID, limitedKey, "", 200)
			req("GET", "/Patient/"+created.ID, limitedKey, "", 429)
			// Revoked key.
			req("GET", "/Patient/"+created.ID, revokedKey, "", 401)
			// Network rule: the client's token from an allowed address,
			// then a request forwarded from outside its allow-list.
			tok := clientToken(t, fhirBase, cc, "system/*.rs")
			req("GET", "/Patient/"+created.ID, tok, "", 200)
			req("GET", "/Patient/"+created.ID, tok, "", 403, "X-Forwarded-For", "192.0.2.7")
			// A revoked access token: refused as a credential, in its
			// client's activity.
			rv, _ := http.NewRequest("POST", fhirBase+"/auth/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
			rv.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rv.SetBasicAuth(cc.ClientID, cc.ClientSecret)
			do(t, rv, 200, nil)
			req("GET", "/Patient/"+created.ID, tok, "", 401)

			// Closing the server flushes the activity.
			shutdown()
			h, err := database.Open(ctx, database.Options{URL: cfg.Database.URL, DataDir: cfg.Database.DataDir})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			st, err := activity.Open(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			since := time.Now().Add(-time.Hour)
			for _, tc := range []struct{ cred, cause, route string }{
				{okID, "not-found", "GET /fhir/Patient/{id}"},
				{scopedID, "scope", "GET /fhir/Observation?…"},
				{compID, "compartment", "POST /fhir/Observation"},
				{limitedID, "rate-limit", "GET /fhir/Patient/{id}"},
				{revokedID, "credential", "GET /fhir/Patient/{id}"},
			} {
				errs, err := st.Errors(ctx, []string{tc.cred}, since)
				if err != nil {
					t.Fatal(err)
				}
				if len(errs) != 1 || errs[0].Cause != tc.cause || errs[0].Count != 1 || errs[0].Route != tc.route {
					t.Errorf("errors of %s: %+v, want one %s on %s", tc.cause, errs, tc.cause, tc.route)
				}
			}
			errs, err := st.Errors(ctx, []string{cc.ClientID}, since)
			if err != nil || len(errs) != 2 || errs[0].Cause != "credential" || errs[1].Cause != "network" || errs[0].Count != 1 || errs[1].Count != 1 {
				t.Errorf("errors of the OAuth client: %+v %v, want one credential (revoked token) and one network", errs, err)
			}
			rec, err := st.Recent(ctx, []string{okID}, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(rec) != 5 || rec[0].Status != 201 || rec[0].Interaction != "create" || rec[2].Route != "GET /fhir/Patient?…" || rec[2].Interaction != "search-type" || rec[4].Status != 201 {
				t.Errorf("recent of the ok key: %+v", rec)
			}
			for _, q := range rec {
				if strings.Contains(q.Route, created.ID) || strings.Contains(q.Route, "Secretname") || q.Latency <= 0 {
					t.Errorf("recent request leaks an id or a value, or has no latency: %+v", q)
				}
			}
			tot, err := st.Totals(ctx, []string{limitedID}, since, time.Now().Add(time.Minute))
			if err != nil || tot.Requests != 3 || tot.ByStatus[200] != 2 || tot.ByStatus[429] != 1 {
				t.Errorf("totals of the limited key: %+v %v", tot, err)
			}
		})
	}
}
