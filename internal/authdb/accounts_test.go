package authdb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestAccountsSessionsLaunches(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()

		a := &authdb.Account{Subject: "s-1", Username: "alice", PasswordHash: "$argon2id$x", FHIRUser: "Patient/p1"}
		if err := db.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAccount(ctx, &authdb.Account{Subject: "s-2", Username: "alice", PasswordHash: "h", FHIRUser: "Patient/p2"}); !errors.Is(err, authdb.ErrExists) {
			t.Fatalf("duplicate username: %v", err)
		}
		got, err := db.AccountByUsername(ctx, "alice")
		if err != nil || got.Subject != "s-1" || got.PasswordHash != "$argon2id$x" || got.FHIRUser != "Patient/p1" {
			t.Fatalf("by username: %+v %v", got, err)
		}
		if got, err := db.AccountBySubject(ctx, "s-1"); err != nil || got.Username != "alice" {
			t.Fatalf("by subject: %+v %v", got, err)
		}
		if list, err := db.Accounts(ctx); err != nil || len(list) != 1 {
			t.Fatalf("list: %v %v", list, err)
		}

		now := time.Now()
		for range 3 {
			if err := db.RecordLoginFailure(ctx, "user:alice", now); err != nil {
				t.Fatal(err)
			}
		}
		_ = db.RecordLoginFailure(ctx, "user:alice", now.Add(-time.Hour))
		if n, err := db.LoginFailures(ctx, "user:alice", now.Add(-15*time.Minute)); err != nil || n != 3 {
			t.Fatalf("failures: %d %v", n, err)
		}
		if err := db.ClearLoginFailures(ctx, "user:alice"); err != nil {
			t.Fatal(err)
		}
		if n, _ := db.LoginFailures(ctx, "user:alice", time.Time{}); n != 0 {
			t.Fatalf("after clear: %d", n)
		}

		// Sessions: lookup by hash, rotation, expiry, deletion.
		s := &authdb.Session{ID: "sid-1", CSRF: "c1", Expires: now.Add(time.Hour)}
		if err := db.CreateSession(ctx, []byte("h1"), s); err != nil {
			t.Fatal(err)
		}
		if got, err := db.SessionByToken(ctx, []byte("h1"), now); err != nil || got.ID != "sid-1" || got.Subject != "" || got.CSRF != "c1" {
			t.Fatalf("session: %+v %v", got, err)
		}
		s2 := &authdb.Session{ID: "sid-1", Subject: "s-1", CSRF: "c2", AuthTime: now, Expires: now.Add(2 * time.Hour)}
		if err := db.RotateSession(ctx, []byte("h1"), []byte("h2"), s2); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionByToken(ctx, []byte("h1"), now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("old cookie still valid")
		}
		if got, err := db.SessionByToken(ctx, []byte("h2"), now); err != nil || got.Subject != "s-1" || got.CSRF != "c2" || got.AuthTime.Unix() != now.Unix() {
			t.Fatalf("rotated: %+v %v", got, err)
		}
		if _, err := db.SessionByToken(ctx, []byte("h2"), now.Add(3*time.Hour)); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("expired session returned")
		}

		// Authorization requests: bound to a session, consumed once.
		if err := db.SaveAuthzRequest(ctx, []byte("r1"), "sid-1", []byte(`{"a":1}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveAuthzRequest(ctx, []byte("r1"), "sid-1", []byte(`{"a":2}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if sid, data, err := db.AuthzRequest(ctx, []byte("r1"), now); err != nil || sid != "sid-1" || string(data) != `{"a":2}` {
			t.Fatalf("request: %s %s %v", sid, data, err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 4 {
			wg.Go(func() {
				if _, _, err := db.ConsumeAuthzRequest(ctx, []byte("r1"), now); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("request consumed %d times", wins)
		}

		// Launches: single-use, expiring.
		l := &authdb.Launch{ClientID: "c", Subject: "s-1", Patient: "p1", Encounter: "e1", Expires: now.Add(5 * time.Minute)}
		if err := db.SaveLaunch(ctx, []byte("l1"), l); err != nil {
			t.Fatal(err)
		}
		got2, err := db.ConsumeLaunch(ctx, []byte("l1"), now)
		if err != nil || got2.ClientID != "c" || got2.Patient != "p1" || got2.Encounter != "e1" || got2.Subject != "s-1" {
			t.Fatalf("launch: %+v %v", got2, err)
		}
		if _, err := db.ConsumeLaunch(ctx, []byte("l1"), now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("launch reused")
		}
		_ = db.SaveLaunch(ctx, []byte("l2"), l)
		if _, err := db.ConsumeLaunch(ctx, []byte("l2"), now.Add(6*time.Minute)); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("expired launch accepted")
		}

		if err := db.DeleteAccount(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionByToken(ctx, []byte("h2"), now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("session survives its account")
		}
		if err := db.DeleteAccount(ctx, "alice"); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
	})
}
