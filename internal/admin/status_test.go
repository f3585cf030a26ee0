package admin_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/testutil/auditrec"
)

// TestStatusHook: each suspension and resumption that changes something
// is told to OnStatus with the owner (the portal's webhooks), after its
// audit event; a hook error does not fail the action; without an actor
// nothing changes.
func TestStatusHook(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ev := &auditrec.Recorder{}
		var got []admin.StatusChange
		s := admin.New(admin.Config{Store: db, Audit: ev, Logger: slog.New(slog.DiscardHandler), OnStatus: func(_ context.Context, c admin.StatusChange) error {
			got = append(got, c)
			return errors.New("receiver down")
		}})
		if _, err := s.SuspendClient(context.Background(), "x", "y"); err == nil {
			t.Fatal("suspension without an actor")
		}
		ctx := admin.WithActor(context.Background(), admin.CommandActor())
		reg, err := s.CreateClient(ctx, api.ClientRequest{Name: "app", Type: "confidential", Scopes: []string{"system/*.rs"}, Owner: "org:o1"})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "k", Scopes: []string{"system/*.rs"}, Owner: "org:o1"})
		if err != nil {
			t.Fatal(err)
		}
		ev.Take()
		if _, err := s.SuspendClient(ctx, reg.ClientID, "terms violated"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SuspendClient(ctx, reg.ClientID, "terms violated"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ResumeClient(ctx, reg.ClientID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ResumeClient(ctx, reg.ClientID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SuspendAPIKey(ctx, k.ID, "leak"); err != nil {
			t.Fatal(err)
		}
		want := []admin.StatusChange{
			{Kind: "client", ID: reg.ClientID, Owner: "org:o1", Status: "suspended", Reason: "terms violated"},
			{Kind: "client", ID: reg.ClientID, Owner: "org:o1", Status: "resumed"},
			{Kind: "apikey", ID: k.ID, Owner: "org:o1", Status: "suspended", Reason: "leak"},
		}
		if len(got) != len(want) {
			t.Fatalf("hook calls %+v", got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("hook call %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		if evs := ev.Take(); len(evs) != 3 {
			t.Fatalf("%d audit events, want 3", len(evs))
		}
		// The audit sink failing: the change is reported as an AuditError.
		ev.FailWith(errors.New("disk full"))
		var ae *admin.AuditError
		if _, err := s.RotateClientSecret(ctx, reg.ClientID, time.Hour); !errors.As(err, &ae) {
			t.Fatalf("rotation with a failing audit: %v", err)
		}
	})
}
