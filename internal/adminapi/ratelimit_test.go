package adminapi_test

import (
	"context"
	"errors"
	"testing"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
)

// TestAdminRateLimits: a client's and an API key's own rate limit over
// HTTP: set at creation, changed and cleared with PUT …/ratelimit (each
// change logged and audited once), shown in GET, and refused with 400 or
// 404 as RFC 6749 error JSON when wrong; the typed client does the same.
func TestAdminRateLimits(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		adm := e.admin()
		tok := e.ccToken(adm)
		e.take(t)

		r := e.call("POST", "apikeys", tok, `{"name":"load","scopes":["system/*.*"],"rate_limit":"500/s","rate_limit_burst":2000}`)
		wantAdmin(t, "create key with a limit", r, 201, "")
		id, _ := r.Body["id"].(string)
		if r.Body["rate_limit"] != "500/s" || r.Body["rate_limit_burst"] != float64(2000) {
			t.Fatalf("create: %s", r.Raw)
		}
		recs, _ := e.take(t)
		if len(recs) != 1 || recs[0]["rate_limit"] != "500/s" {
			t.Fatalf("create log: %v", recs)
		}
		r = e.call("PUT", "apikeys/"+id+"/ratelimit", tok, `{"rate_limit":"none"}`)
		wantAdmin(t, "unlimited", r, 200, "")
		if r.Body["rate_limit"] != "none" || len(r.Body) != 1 {
			t.Fatalf("put none: %s", r.Raw)
		}
		recs, evs := e.take(t)
		if len(recs) != 1 || recs[0]["action"] != "set_apikey_rate_limit" || recs[0]["key_id"] != id || recs[0]["rate_limit"] != "none" || len(evs) != 1 {
			t.Fatalf("log %v, audit %+v", recs, evs)
		}
		if k, err := e.db.APIKey(ctx, id); err != nil || k.RateLimit != (authdb.RateLimit{Limit: "none"}) {
			t.Fatalf("stored %+v %v", k, err)
		}
		r = e.call("GET", "apikeys/"+id, tok, "")
		if r.Body["rate_limit"] != "none" {
			t.Fatalf("get: %s", r.Raw)
		}
		r = e.call("PUT", "apikeys/"+id+"/ratelimit", tok, `{"rate_limit":"default"}`)
		wantAdmin(t, "default", r, 200, "")
		if r.Body["rate_limit"] != "default" {
			t.Fatalf("put default: %s", r.Raw)
		}
		if r = e.call("GET", "apikeys/"+id, tok, ""); r.Body["rate_limit"] != nil {
			t.Fatalf("get after default: %s", r.Raw)
		}
		e.take(t)

		// A client: created without a limit, then given one.
		r = e.call("POST", "clients", tok, `{"name":"etl","type":"confidential","scopes":["system/*.rs"]}`)
		wantAdmin(t, "create client", r, 201, "")
		cid, _ := r.Body["client_id"].(string)
		r = e.call("PUT", "clients/"+cid+"/ratelimit", tok, `{"rate_limit":"6000/m","rate_limit_burst":100}`)
		wantAdmin(t, "client limit", r, 200, "")
		if r = e.call("GET", "clients/"+cid, tok, ""); r.Body["rate_limit"] != "6000/m" || r.Body["rate_limit_burst"] != float64(100) {
			t.Fatalf("get client: %s", r.Raw)
		}
		e.take(t)

		// Refusals: nothing changes, nothing is logged.
		for _, tc := range []struct {
			method, path, body string
			status             int
			code               string
		}{
			{"PUT", "clients/" + cid + "/ratelimit", `{"rate_limit":"lots"}`, 400, api.CodeInvalidRequest},
			{"PUT", "clients/" + cid + "/ratelimit", `{"rate_limit":"none","rate_limit_burst":5}`, 400, api.CodeInvalidRequest},
			{"PUT", "clients/" + cid + "/ratelimit", `{"rate_limit":"5/s","rate_limit_burst":-1}`, 400, api.CodeInvalidRequest},
			{"PUT", "clients/" + cid + "/ratelimit", `{"rate":"5/s"}`, 400, api.CodeInvalidRequest},
			{"PUT", "clients/nope/ratelimit", `{"rate_limit":"5/s"}`, 404, api.CodeNotFound},
			{"PUT", "apikeys/ak_nope/ratelimit", `{"rate_limit":"5/s"}`, 404, api.CodeNotFound},
			{"POST", "apikeys", `{"name":"x","scopes":["system/*.rs"],"rate_limit":"1/fortnight"}`, 400, api.CodeInvalidRequest},
			{"POST", "clients", `{"name":"x","type":"confidential","scopes":["system/*.rs"],"rate_limit":"x"}`, 400, api.CodeInvalidRequest},
			{"GET", "clients/" + cid + "/ratelimit", ``, 405, api.CodeInvalidRequest},
		} {
			wantAdmin(t, tc.method+" "+tc.path+" "+tc.body, e.call(tc.method, tc.path, tok, tc.body), tc.status, tc.code)
		}
		if recs, evs := e.take(t); len(recs) != 0 || len(evs) != 0 {
			t.Fatalf("refusals logged: %v %+v", recs, evs)
		}
		if c, err := e.db.Client(ctx, cid); err != nil || c.RateLimit != (authdb.RateLimit{Limit: "6000/m", Burst: 100}) {
			t.Fatalf("client limit after refusals: %+v %v", c, err)
		}

		// The typed client.
		a := e.adminClient(adm)
		if l, err := a.SetClientRateLimit(ctx, cid, api.RateLimit{Limit: "200/s"}); err != nil || *l != (api.RateLimit{Limit: "200/s", Burst: 200}) {
			t.Fatalf("typed set client: %+v %v", l, err)
		}
		if l, err := a.SetAPIKeyRateLimit(ctx, id, api.RateLimit{Limit: "none"}); err != nil || l.Limit != "none" {
			t.Fatalf("typed set key: %+v %v", l, err)
		}
		if _, err := a.SetAPIKeyRateLimit(ctx, "ak_nope", api.RateLimit{Limit: "none"}); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("typed unknown key: %v", err)
		}
		if k, err := a.APIKey(ctx, id); err != nil || k.RateLimit.Limit != "none" {
			t.Fatalf("typed get key: %+v %v", k, err)
		}
	})
}
