package adminapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// TestClientStatusEndpoints drives rotate-secret, suspend and resume (of
// clients and API keys) through package client/admin and the raw API:
// one audit event per change, none for a repeated suspension, refusals
// as 400/404/409, the suspended client refused at the token endpoint.
func TestClientStatusEndpoints(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		adm := e.admin()
		a := e.adminClient(adm)
		reg, err := a.CreateClient(ctx, api.ClientRequest{Name: "svc", Type: "confidential", Scopes: []string{"system/*.rs"}, Owner: "org:o1"})
		if err != nil {
			t.Fatal(err)
		}
		e.take(t)

		rot, err := a.RotateClientSecret(ctx, reg.ClientID, 2*time.Hour)
		if err != nil || rot.ClientSecret == "" || rot.ClientID != reg.ClientID || rot.OldValidUntil.Before(time.Now().Add(time.Hour)) {
			t.Fatalf("rotate: %+v %v", rot, err)
		}
		wantEvent(t, e, "rotate_client_secret", reg.ClientID, reg.ClientSecret, rot.ClientSecret)
		for _, secret := range []string{reg.ClientSecret, rot.ClientSecret} {
			if r := e.post(oauth.PathToken, map[string][]string{"grant_type": {"client_credentials"}}, reg.ClientID, secret); r.Status != 200 {
				t.Fatalf("secret during the overlap: %d %s", r.Status, r.Raw)
			}
		}
		pub, _ := a.CreateClient(ctx, api.ClientRequest{Name: "web", Type: "public", RedirectURIs: []string{"https://a.example/cb"}, Scopes: []string{"openid"}})
		if _, err := a.RotateClientSecret(ctx, pub.ClientID, time.Hour); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("public client rotated: %v", err)
		}
		if _, err := a.RotateClientSecret(ctx, "nobody", time.Hour); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
		e.take(t)

		tok := e.ccToken(adm)
		if r := e.call("POST", "clients/"+reg.ClientID+"/suspend", tok, `{"reason":""}`); r.Status != 400 || !strings.Contains(r.Raw, "reason") {
			t.Fatalf("suspend without reason: %d %s", r.Status, r.Raw)
		}
		if r := e.call("POST", "clients/"+reg.ClientID+"/suspend", tok, `{"reason":"x","extra":1}`); r.Status != 400 {
			t.Fatalf("unknown field: %d %s", r.Status, r.Raw)
		}
		if r := e.call("POST", "clients/"+reg.ClientID+"/rotate-secret", tok, `{"overlap":"-1h"}`); r.Status != 400 {
			t.Fatalf("negative overlap: %d %s", r.Status, r.Raw)
		}
		cl, err := a.SuspendClient(ctx, reg.ClientID, "abuse")
		if err != nil || cl.SuspendedAt.IsZero() || cl.SuspendReason != "abuse" {
			t.Fatalf("suspend: %+v %v", cl, err)
		}
		wantEvent(t, e, "suspend_client", reg.ClientID)
		if _, err := a.SuspendClient(ctx, reg.ClientID, "again"); err != nil {
			t.Fatal(err)
		}
		if _, evs := e.take(t); len(evs) != 0 {
			t.Fatalf("a repeated suspension recorded %d events", len(evs))
		}
		if r := e.post(oauth.PathToken, map[string][]string{"grant_type": {"client_credentials"}}, reg.ClientID, rot.ClientSecret); r.Status != 401 || r.Body["error"] != "invalid_client" {
			t.Fatalf("suspended client's token request: %d %s", r.Status, r.Raw)
		}
		if _, err := a.SuspendClient(ctx, "nobody", "x"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
		if cl, err := a.ResumeClient(ctx, reg.ClientID); err != nil || !cl.SuspendedAt.IsZero() {
			t.Fatalf("resume: %+v %v", cl, err)
		}
		wantEvent(t, e, "resume_client", reg.ClientID)
		if r := e.post(oauth.PathToken, map[string][]string{"grant_type": {"client_credentials"}}, reg.ClientID, rot.ClientSecret); r.Status != 200 {
			t.Fatalf("resumed client's token request: %d %s", r.Status, r.Raw)
		}
		if r := e.call("POST", "clients/"+reg.ClientID+"/resume", tok, ""); r.Status != 200 {
			t.Fatalf("resume without a body: %d %s", r.Status, r.Raw)
		}

		// API keys.
		k, err := a.CreateAPIKey(ctx, api.APIKeyRequest{Name: "etl", Scopes: []string{"system/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		e.take(t)
		sk, err := a.SuspendAPIKey(ctx, k.ID, "rotating vendors")
		if err != nil || sk.Status != authdb.APIKeySuspended || sk.SuspendReason != "rotating vendors" {
			t.Fatalf("suspend key: %+v %v", sk, err)
		}
		wantEvent(t, e, "suspend_apikey", k.ID)
		if rk, err := a.ResumeAPIKey(ctx, k.ID); err != nil || rk.Status != authdb.APIKeyActive {
			t.Fatalf("resume key: %+v %v", rk, err)
		}
		wantEvent(t, e, "resume_apikey", k.ID)
		if _, err := a.SuspendAPIKey(ctx, "ak_nobody", "x"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	})
}

// wantEvent asserts exactly one admin audit event of action naming id,
// with no secret in it.
func wantEvent(t *testing.T, e *env, action, id string, secrets ...string) {
	t.Helper()
	_, evs := e.take(t)
	if len(evs) != 1 {
		t.Fatalf("%s: %d audit events", action, len(evs))
	}
	ev := evs[0]
	if ev.Kind != audit.KindAdmin || ev.Description != "admin "+action+" "+id || ev.Method != "access_token" {
		t.Fatalf("%s: event %+v", action, ev)
	}
	for _, s := range secrets {
		if strings.Contains(ev.Description, s) {
			t.Fatalf("%s: the event shows a secret", action)
		}
	}
}
