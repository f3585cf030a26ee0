package authorize_test

import (
	"context"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/auditrec"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

// captureSink keeps the audit events and feeds them to an alerter, as the
// audit recorder does with committed events.
type captureSink struct {
	auditrec.Recorder
	alerts *audit.Alerter
}

func (c *captureSink) Record(ctx context.Context, e audit.Event) {
	_ = c.Commit(ctx, e)
	if c.alerts != nil {
		c.alerts.Observe(&e)
	}
}

// comparable strips what differs between two requests.
func comparable(e audit.Event) audit.Event {
	e.Time, e.UserAgent = time.Time{}, ""
	return e
}

// TestSignInOnePath: the apps page's sign-in goes through the same path as
// /auth/login: the same audit events (a failure there used to leave no
// trace), the same auth-failure alert, and one lockout shared by both
// pages.
func TestSignInOnePath(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			logs := &logbuf.Buffer{}
			alerts, err := audit.NewAlerter(audit.AlertConfig{AuthFailureLimit: 2, AuthFailureWindow: time.Minute,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer alerts.Close()
			sink := &captureSink{alerts: alerts}
			e := newAuthEnv(t, d, oauth.LoginPolicy{MaxFailures: 4, MaxFailuresPerIP: 100}, func(c *oauth.Config) { c.Audit = sink })
			e.account("alice", "alice-password-1", "Patient/p1")
			id := e.client(oauth.Registration{Name: "app", Type: "public", RedirectURIs: []string{appCB}, Scopes: []string{"openid fhirUser launch/patient patient/*.rs"}})

			// A failed login at /auth/login ...
			b := newBrowser(t)
			lp := b.get(e.authorizeURL(e.authorizeParams(id, "openid patient/Patient.rs")))
			if p := e.login(b, lp, "alice", "wrong password 1"); p.status != 401 {
				t.Fatalf("login page: %d", p.status)
			}
			loginEv := sink.Take()
			// ... and at /auth/apps write the same event.
			ab := newBrowser(t)
			appsURL := e.issuer + oauth.PathApps
			ap := ab.get(appsURL)
			appsLogin := func(pw string) page {
				return ab.post(appsURL, url.Values{"csrf": {ap.field("csrf")}, "action": {"login"}, "username": {"alice"}, "password": {pw}})
			}
			if p := appsLogin("wrong password 2"); p.status != 401 {
				t.Fatalf("apps page: %d", p.status)
			}
			appsEv := sink.Take()
			if len(loginEv) != 1 || len(appsEv) != 1 {
				t.Fatalf("events: /auth/login %+v, /auth/apps %+v", loginEv, appsEv)
			}
			if got, want := comparable(appsEv[0]), comparable(loginEv[0]); got.Kind != audit.KindLoginFailure || got.Address == "" || !reflect.DeepEqual(got, want) {
				t.Fatalf("apps failure event %+v, login failure event %+v", got, want)
			}
			// Two failures from this address within the window, and a third
			// raises the auth-failure alert — on the apps page alone too.
			if p := appsLogin("wrong password 3"); p.status != 401 {
				t.Fatalf("apps page: %d", p.status)
			}
			if !strings.Contains(logs.String(), "rule=auth_failures") {
				t.Fatalf("no auth-failure alert: %s", logs.String())
			}
			sink.Take()
			// One lockout across both pages: the 4th failure (of either page)
			// locks alice everywhere.
			if p := e.login(b, lp, "alice", "wrong password 4"); p.status != 401 {
				t.Fatalf("login page: %d", p.status)
			}
			if p := appsLogin("alice-password-1"); p.status != 401 {
				t.Fatalf("locked account signed in on the apps page: %d", p.status)
			}
			if ev := sink.Take(); len(ev) != 2 || ev[1].Kind != audit.KindLoginFailure {
				t.Fatalf("events while locked: %+v", ev)
			}
			// A successful sign-in at /auth/apps is audited like /auth/login's.
			bob := e.account("bob", "bob-password-1", "Patient/p2")
			ap = ab.get(appsURL)
			p := ab.post(appsURL, url.Values{"csrf": {ap.field("csrf")}, "action": {"login"}, "username": {"bob"}, "password": {"bob-password-1"}})
			if p.status != 303 {
				t.Fatalf("apps sign-in: %d", p.status)
			}
			if ev := sink.Take(); len(ev) != 1 || ev[0].Kind != audit.KindLogin || ev[0].Subject != bob.Subject || ev[0].Method != "password" {
				t.Fatalf("apps sign-in events: %+v", ev)
			}
		})
	}
}

// TestPasswordPagesIPLimited: every page that takes a password is in the
// per-IP rate limit's list, as a browser page.
func TestPasswordPagesIPLimited(t *testing.T) {
	eps := oauth.IPLimitedEndpoints()
	for _, p := range []string{oauth.PathLogin, oauth.PathApps} {
		if browser, ok := eps[p]; !ok || !browser {
			t.Errorf("%s: limited %v, browser %v", p, ok, browser)
		}
	}
	for _, p := range []string{oauth.PathJWKS, oauth.PathSMARTConfiguration, oauth.PathOpenIDConfiguration, oauth.PathSMARTStyle} {
		if _, ok := eps[p]; ok {
			t.Errorf("public document %s is rate limited", p)
		}
	}
}
