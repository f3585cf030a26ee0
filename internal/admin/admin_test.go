package admin_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/testutil/auditrec"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
)

func openBoth(t *testing.T, f func(t *testing.T, db *authdb.DB)) { authtest.Both(t, f) }

// actors are the two front ends' actors: the admin API's client and a
// local command's user.
var actors = map[string]admin.Actor{
	"api": {ClientID: "admin-client", Method: "access_token", CredentialID: "jti-1", Address: "192.0.2.1", UserAgent: "lapis-cli/0.1.0"},
	"cli": {ClientID: "lapis-cli", Subject: "os:ops", Method: "cli", Address: "local"},
}

// step is one admin action and what its event must say.
type step struct {
	action string
	kind   audit.Kind
	do     func(ctx context.Context) (targets []string, err error)
}

// TestOneEventPerAction: every change records exactly one audit event,
// of the same shape for both front ends (only the actor's fields differ):
// its kind, "admin ACTION IDS…" and, for API keys, the keys as entities.
func TestOneEventPerAction(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		for name, actor := range actors {
			t.Run(name, func(t *testing.T) {
				ev := &auditrec.Recorder{}
				s := admin.New(admin.Config{Store: db, Audit: ev, Logger: slog.New(slog.DiscardHandler)})
				ctx := admin.WithActor(context.Background(), actor)
				var client, keyID, newKeyID string
				var subject string
				steps := []step{
					{"create_client", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						r, err := s.CreateClient(ctx, api.ClientRequest{Name: "c " + name, Type: "confidential", Scopes: []string{"system/*.rs"}, Owner: "admin"})
						if err != nil {
							return nil, err
						}
						client = r.ClientID
						return []string{client}, nil
					}},
					{"set_client_network", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						_, err := s.SetClientNetwork(ctx, client, api.NetworkRequest{AllowIPs: []string{"10.0.0.0/8"}})
						return []string{client}, err
					}},
					{"enable_basic", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						return []string{client}, s.SetClientBasic(ctx, client, true)
					}},
					{"disable_basic", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						return []string{client}, s.SetClientBasic(ctx, client, false)
					}},
					{"create_user", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						u, err := s.CreateUser(ctx, api.UserRequest{Username: "user-" + name, Password: "a long password", FHIRUser: "Patient/p1"})
						if err != nil {
							return nil, err
						}
						subject = u.Subject
						return []string{subject}, nil
					}},
					{"revoke_grants", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						_, err := s.RevokeGrants(ctx, api.RevokeRequest{ClientID: client, Username: "USER-" + name})
						return []string{client, subject}, err
					}},
					{"create_apikey", audit.KindAPIKeyCreated, func(ctx context.Context) ([]string, error) {
						k, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "k", Scopes: []string{"system/*.rs"}})
						if err != nil {
							return nil, err
						}
						keyID = k.ID
						return []string{keyID}, nil
					}},
					{"rotate_apikey", audit.KindAPIKeyRotated, func(ctx context.Context) ([]string, error) {
						k, err := s.RotateAPIKey(ctx, keyID, api.RotateRequest{})
						if err != nil {
							return nil, err
						}
						newKeyID = k.ID
						return []string{newKeyID, keyID}, nil
					}},
					{"revoke_apikey", audit.KindAPIKeyRevoked, func(ctx context.Context) ([]string, error) {
						return []string{newKeyID}, s.RevokeAPIKey(ctx, newKeyID)
					}},
					{"delete_user", audit.KindAdmin, func(ctx context.Context) ([]string, error) {
						return []string{subject}, s.DeleteUser(ctx, "user-"+name)
					}},
					{"delete_client", audit.KindAdmin, func(ctx context.Context) ([]string, error) { return []string{client}, s.DeleteClient(ctx, client) }},
				}
				for _, st := range steps {
					targets, err := st.do(ctx)
					if err != nil {
						t.Fatalf("%s: %v", st.action, err)
					}
					evs := ev.Take()
					if len(evs) != 1 {
						t.Fatalf("%s: %d events", st.action, len(evs))
					}
					e := evs[0]
					if e.Kind != st.kind || e.Action != "E" || e.Outcome != audit.OutcomeSuccess || e.Time.IsZero() || e.Status != 0 ||
						e.Description != "admin "+st.action+" "+strings.Join(targets, " ") {
						t.Fatalf("%s: event %+v", st.action, e)
					}
					if e.ClientID != actor.ClientID || e.Subject != actor.Subject || e.Method != actor.Method || e.CredentialID != actor.CredentialID ||
						e.Address != actor.Address || e.UserAgent != actor.UserAgent {
						t.Fatalf("%s: actor of %+v", st.action, e)
					}
					var keys []string
					for _, en := range e.Entities {
						if en.Type != "Basic" || en.Role != "apikey" {
							t.Fatalf("%s: entity %+v", st.action, en)
						}
						keys = append(keys, en.ID)
					}
					if strings.HasSuffix(st.action, "_apikey") != (len(keys) > 0) || (len(keys) > 0 && !slices.Contains(keys, targets[0])) {
						t.Fatalf("%s: entities %v", st.action, keys)
					}
				}
				// Reads and refusals record nothing.
				if _, err := s.Clients(ctx, api.ClientFilter{}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: " ", Scopes: []string{"system/*.rs"}}); err == nil {
					t.Fatal("blank name accepted")
				}
				if err := s.DeleteClient(ctx, client); !errors.Is(err, api.ErrNotFound) {
					t.Fatalf("delete again: %v", err)
				}
				if evs := ev.Take(); len(evs) != 0 {
					t.Fatalf("reads or refusals recorded: %+v", evs)
				}
			})
		}
	})
}

// TestChangesNeedAnActor: a change without an actor in its context is
// refused before anything is written.
func TestChangesNeedAnActor(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ev := &auditrec.Recorder{}
		s := admin.New(admin.Config{Store: db, Audit: ev, Logger: slog.New(slog.DiscardHandler)})
		ctx := context.Background()
		if _, err := s.CreateClient(ctx, api.ClientRequest{Name: "x", Type: "confidential", Scopes: []string{"system/*.rs"}}); err == nil {
			t.Fatal("client created without an actor")
		}
		if _, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "x", Scopes: []string{"system/*.rs"}}); err == nil {
			t.Fatal("key created without an actor")
		}
		if cs, _ := s.Clients(ctx, api.ClientFilter{}); len(cs) != 0 {
			t.Fatalf("clients %v", cs)
		}
		if ks, _ := s.APIKeys(ctx, api.APIKeyFilter{}); len(ks) != 0 {
			t.Fatalf("keys %v", ks)
		}
		if evs := ev.Take(); len(evs) != 0 {
			t.Fatalf("events %v", evs)
		}
	})
}

// TestAuditFailure: when the event cannot be recorded the action is not
// reported successful (the caller is told to undo it), and no secret is
// returned.
func TestAuditFailure(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ev := auditrec.Failing(audit.ErrUnavailable)
		s := admin.New(admin.Config{Store: db, Audit: ev, Logger: slog.New(slog.DiscardHandler)})
		ctx := admin.WithActor(context.Background(), actors["cli"])
		k, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "x", Scopes: []string{"system/*.rs"}})
		var ae *admin.AuditError
		if k != nil || !errors.As(err, &ae) || ae.Action != "create_apikey" || !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "undo") {
			t.Fatalf("create: %v %v", k, err)
		}
		ks, _ := s.APIKeys(ctx, api.APIKeyFilter{})
		if len(ks) != 1 || ae.Target != ks[0].ID {
			t.Fatalf("the audit error does not name the key to undo: %v %+v", err, ks)
		}
	})
}

// TestOwners: clients and API keys take an optional, well-formed owner,
// list by it, and a rotated key's successor keeps it.
func TestOwners(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		s := admin.New(admin.Config{Store: db, Audit: &auditrec.Recorder{}, Logger: slog.New(slog.DiscardHandler)})
		ctx := admin.WithActor(context.Background(), actors["api"])
		for _, owner := range []string{"admin", "dev:42", ""} {
			if _, err := s.CreateClient(ctx, api.ClientRequest{Name: "c", Type: "confidential", Scopes: []string{"system/*.rs"}, Owner: owner}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "k", Scopes: []string{"system/*.rs"}, Owner: owner}); err != nil {
				t.Fatal(err)
			}
		}
		for _, bad := range []string{" admin", "a b", "dev/42", strings.Repeat("a", 129), "-x", "ädmin"} {
			_, err := s.CreateClient(ctx, api.ClientRequest{Name: "c", Type: "confidential", Scopes: []string{"system/*.rs"}, Owner: bad})
			var ie *admin.InvalidError
			if !errors.As(err, &ie) || ie.Field != "owner" {
				t.Fatalf("client owner %q: %v", bad, err)
			}
			if _, err := s.CreateAPIKey(ctx, api.APIKeyRequest{Name: "k", Scopes: []string{"system/*.rs"}, Owner: bad}); !errors.As(err, &ie) || ie.Field != "owner" {
				t.Fatalf("key owner %q: %v", bad, err)
			}
		}
		cs, err := s.Clients(ctx, api.ClientFilter{Owner: "dev:42"})
		if err != nil || len(cs) != 1 || cs[0].Owner != "dev:42" {
			t.Fatalf("clients of dev:42: %+v %v", cs, err)
		}
		if all, _ := s.Clients(ctx, api.ClientFilter{}); len(all) != 3 {
			t.Fatalf("all clients: %+v", all)
		}
		ks, err := s.APIKeys(ctx, api.APIKeyFilter{Owner: "dev:42"})
		if err != nil || len(ks) != 1 || ks[0].Owner != "dev:42" {
			t.Fatalf("keys of dev:42: %+v %v", ks, err)
		}
		next, err := s.RotateAPIKey(ctx, ks[0].ID, api.RotateRequest{})
		if err != nil || next.Owner != "dev:42" {
			t.Fatalf("rotated: %+v %v", next, err)
		}
		if ks, _ = s.APIKeys(ctx, api.APIKeyFilter{Owner: "dev:42"}); len(ks) != 2 {
			t.Fatalf("keys of dev:42 after rotation: %+v", ks)
		}
	})
}

// TestDeletesRevokeGrants: deleting a client or a user revokes the grants
// it holds or gave, whichever front end deletes it (the local commands
// used to leave them).
func TestDeletesRevokeGrants(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		s := admin.New(admin.Config{Store: db, Audit: &auditrec.Recorder{}, Logger: slog.New(slog.DiscardHandler)})
		ctx := admin.WithActor(context.Background(), actors["cli"])
		now := time.Now()
		grant := func(client, subject, fam string) {
			h := sha256.Sum256([]byte("rt-" + fam))
			rt := &authdb.RefreshToken{Hash: h[:], ClientID: client, Subject: subject, Scope: "openid offline_access patient/*.rs",
				Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := db.StartFamily(ctx, &authdb.Family{ID: fam, ClientID: client, Subject: subject, CreatedAt: now}, "jti-"+fam, now.Add(time.Hour), rt); err != nil {
				t.Fatal(err)
			}
		}
		var apps []string
		for i := range 2 {
			r, err := s.CreateClient(ctx, api.ClientRequest{Name: fmt.Sprint("app", i), Type: "public", RedirectURIs: []string{"https://app.example/cb"},
				Scopes: []string{"openid offline_access patient/*.rs"}})
			if err != nil {
				t.Fatal(err)
			}
			apps = append(apps, r.ClientID)
		}
		alice, err := s.CreateUser(ctx, api.UserRequest{Username: "alice", Password: "alice-password", FHIRUser: "Patient/1"})
		if err != nil {
			t.Fatal(err)
		}
		bob, err := s.CreateUser(ctx, api.UserRequest{Username: "bob", Password: "bob-password-1", FHIRUser: "Patient/2"})
		if err != nil {
			t.Fatal(err)
		}
		grant(apps[0], alice.Subject, "f1")
		grant(apps[0], bob.Subject, "f2")
		grant(apps[1], bob.Subject, "f3")
		if err := s.DeleteClient(ctx, apps[0]); err != nil {
			t.Fatal(err)
		}
		for _, jti := range []string{"jti-f1", "jti-f2"} {
			if ok, err := db.Revoked(ctx, jti); err != nil || !ok {
				t.Fatalf("%s of the deleted client not revoked: %v", jti, err)
			}
		}
		if ok, _ := db.Revoked(ctx, "jti-f3"); ok {
			t.Fatal("another client's grant revoked")
		}
		if err := s.DeleteUser(ctx, "BOB"); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.Revoked(ctx, "jti-f3"); err != nil || !ok {
			t.Fatalf("the deleted user's grant not revoked: %v", err)
		}
		if gs, err := s.Grants(ctx, api.GrantFilter{}); err != nil || len(gs) != 0 {
			t.Fatalf("grants left: %+v %v", gs, err)
		}
	})
}

// recordsFake is a record checker that knows Patient/p1 and
// Practitioner/dr1.
type recordsFake struct{}

func (recordsFake) RecordExists(_ context.Context, typ, id string) (bool, error) {
	return typ+"/"+id == "Patient/p1" || typ+"/"+id == "Practitioner/dr1", nil
}

// TestRecordsChecked: a login whose FHIR user, or a patient-bound key
// whose patient, does not exist is refused (naming the resource and the
// override) unless forced; format errors come first.
func TestRecordsChecked(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		s := admin.New(admin.Config{Store: db, Audit: &auditrec.Recorder{}, Logger: slog.New(slog.DiscardHandler), Records: recordsFake{}})
		ctx := admin.WithActor(context.Background(), actors["api"])
		for _, c := range []struct {
			req     api.UserRequest
			missing string
		}{
			{api.UserRequest{Username: "a", Password: "long enough pw", FHIRUser: "Patient/123"}, "Patient/123"},
			{api.UserRequest{Username: "a", Password: "long enough pw", FHIRUser: "Practitioner/nope"}, "Practitioner/nope"},
			{api.UserRequest{Username: "a", Password: "long enough pw", FHIRUser: "Patient/p1"}, ""},
			{api.UserRequest{Username: "b", Password: "long enough pw", FHIRUser: "Practitioner/dr1"}, ""},
			{api.UserRequest{Username: "c", Password: "long enough pw", FHIRUser: "Patient/123", Force: true}, ""},
		} {
			_, err := s.CreateUser(ctx, c.req)
			if c.missing == "" && err != nil || c.missing != "" && (err == nil || !strings.Contains(err.Error(), c.missing+" does not exist") || !strings.Contains(err.Error(), "force")) {
				t.Errorf("%+v: %v", c.req, err)
			}
		}
		if _, err := s.CreateUser(ctx, api.UserRequest{Username: "d", Password: "short", FHIRUser: "Patient/123"}); err == nil || strings.Contains(err.Error(), "does not exist") {
			t.Errorf("short password: %v", err)
		}
		for _, c := range []struct {
			req     api.APIKeyRequest
			missing bool
		}{
			{api.APIKeyRequest{Name: "k", Scopes: []string{"patient/*.rs"}, Patient: "123"}, true},
			{api.APIKeyRequest{Name: "k", Scopes: []string{"patient/*.rs"}, Patient: "p1"}, false},
			{api.APIKeyRequest{Name: "k", Scopes: []string{"patient/*.rs"}, Patient: "123", Force: true}, false},
			{api.APIKeyRequest{Name: "k", Scopes: []string{"system/*.rs"}}, false},
		} {
			_, err := s.CreateAPIKey(ctx, c.req)
			if c.missing != (err != nil) || c.missing && !strings.Contains(err.Error(), "Patient/123 does not exist") {
				t.Errorf("%+v: %v", c.req, err)
			}
		}
	})
}
