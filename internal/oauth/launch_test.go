package oauth_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/web"
)

// TestCreateLaunch: a launch made outside the launch page names the
// account's subject, the patient and the client, is consumed once, and
// is refused for an unknown account, without a patient or with a
// lifetime over an hour.
func TestCreateLaunch(t *testing.T) {
	ctx := context.Background()
	db, km, _ := openStores(t, "sqlite")
	srv, err := oauth.New(oauth.Config{Issuer: "http://127.0.0.1/fhir", Clients: db, Assertions: db, Revocations: db, Keys: km,
		JWKS: jwksfetch.New(jwksfetch.Options{}), Accounts: db, Sessions: db, Launches: db,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := oauth.CreateAccount(ctx, db, "Doc", "correct horse battery", "Practitioner/pr-1")
	if err != nil {
		t.Fatal(err)
	}
	launch, err := srv.CreateLaunch(ctx, "app-1", " DOC ", "p-1", "e-1", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l, err := db.ConsumeLaunch(ctx, web.HashToken(launch), time.Now())
	if err != nil || l.ClientID != "app-1" || l.Subject != acct.Subject || l.Patient != "p-1" || l.Encounter != "e-1" {
		t.Fatalf("launch %+v %v", l, err)
	}
	if _, err := db.ConsumeLaunch(ctx, web.HashToken(launch), time.Now()); !errors.Is(err, authdb.ErrNotFound) {
		t.Fatalf("second use: %v", err)
	}
	if _, err := srv.CreateLaunch(ctx, "app-1", "nobody", "p-1", "", time.Minute); !errors.Is(err, authdb.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
	for _, bad := range []struct {
		patient string
		life    time.Duration
	}{{"", time.Minute}, {"p-1", 2 * time.Hour}, {"p-1", 0}} {
		if _, err := srv.CreateLaunch(ctx, "app-1", "doc", bad.patient, "", bad.life); err == nil {
			t.Errorf("launch %+v accepted", bad)
		}
	}
}
