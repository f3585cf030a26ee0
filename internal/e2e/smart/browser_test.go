package smart

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lapis-health/lapis/internal/testutil/browsertest"
	"golang.org/x/oauth2"
)

// TestBrowserStandaloneLaunch drives a patient's standalone launch in a
// real browser: login, consent with Condition denied and Observation
// narrowed to laboratory results, the code at the app, the exchange with
// golang.org/x/oauth2, the id_token through go-oidc and a refresh.
func TestBrowserStandaloneLaunch(t *testing.T) {
	t.Parallel()
	ctx := browsertest.New(t, browsertest.Options{Timeout: 90 * time.Second})
	f := setup(t, "")
	p, state := newPKCE(), "br-"+randHex(8)
	conf := f.oauthConfig(f.public, patientScopes)
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(p.verifier), oauth2.SetAuthURLParam("aud", f.base))
	const (
		cond = "patient/Condition.rs"
		obs  = "patient/Observation.rs"
		lab  = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
	)
	checkbox := func(v string) chromedp.CSS { return chromedp.CSS(`input[name="scope"][value="` + v + `"]`) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), f.patientUser.Username),
		chromedp.SendKeys(chromedp.ID("password"), f.patientUser.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/fhir/auth/consent"]`)),
		chromedp.Click(checkbox(cond)),
		chromedp.Click(checkbox(obs)),
		chromedp.Click(checkbox(lab)),
	)
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("login and consent: %v\npage:\n%s", err, truncate(html))
	}
	ticked, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('input[name="scope"]:checked')].map(e => e.value)`))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ticked)
	want := []string{"offline_access", "patient/Patient.rs", lab}
	slices.Sort(want)
	if !slices.Equal(ticked, want) {
		t.Fatalf("ticked on the consent page: %q, want %q", ticked, want)
	}

	// A screenshot of the consent page.
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "consent.png")
	if err := os.WriteFile(shot, png, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("consent screenshot %s is not a PNG (%d bytes)", shot, len(png))
	}

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("done")),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, f.app.redirectURI()+"?") {
		t.Fatalf("browser ended at %s", loc)
	}
	code := f.codeFromApp(t, state)

	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	scope, _ := tok.Extra("scope").(string)
	sameScopes(t, scope, "launch/patient", "openid", "fhirUser", "offline_access", "patient/Patient.rs", lab)
	for _, s := range strings.Fields(scope) {
		if strings.HasPrefix(s, "patient/Condition.") || s == obs {
			t.Errorf("scope %q was not chosen", s)
		}
	}
	if tok.Extra("patient") != f.patientID {
		t.Errorf("patient %v, want %s", tok.Extra("patient"), f.patientID)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt := f.verifyIDToken(t, rawID, f.public.ClientID)
	if idt.Subject != f.patientUser.Subject {
		t.Errorf("id_token sub %q, want %q", idt.Subject, f.patientUser.Subject)
	}

	// Refresh: same scopes, new access token.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	tok2, err := conf.TokenSource(context.Background(), &expired).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == "" || tok2.AccessToken == tok.AccessToken {
		t.Error("refresh gave no new access token")
	}
	scope2, _ := tok2.Extra("scope").(string)
	sameScopes(t, scope2, scopeSet(scope)...)
}
