package authdb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestRefreshFamilies(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		fam := &authdb.Family{ID: "fam-1", ClientID: "c", Subject: "u", CreatedAt: now}
		rt := &authdb.RefreshToken{Hash: hash("r0"), ClientID: "c", Subject: "u", Scope: "offline_access patient/*.rs",
			Session: []byte(`{"patient":"p"}`), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := db.StartFamily(ctx, fam, "jti-0", now.Add(time.Hour), rt); err != nil {
			t.Fatal(err)
		}
		if err := db.StartFamily(ctx, fam, "jti-x", now.Add(time.Hour), nil); !errors.Is(err, authdb.ErrRevoked) {
			t.Fatalf("duplicate family: %v", err)
		}
		got, err := db.RefreshToken(ctx, hash("r0"))
		if err != nil || got.FamilyID != "fam-1" || got.Scope != rt.Scope || string(got.Session) != `{"patient":"p"}` || !got.ExpiresAt.Equal(rt.ExpiresAt) || !got.RotatedAt.IsZero() {
			t.Fatalf("%+v %v", got, err)
		}
		next := func(name string) *authdb.RefreshToken {
			return &authdb.RefreshToken{Hash: hash(name), ClientID: "c", Subject: "u", Scope: rt.Scope, Session: rt.Session, IssuedAt: now, ExpiresAt: now.Add(2 * time.Hour)}
		}
		grace := 30 * time.Second
		if err := db.RotateRefreshToken(ctx, hash("r0"), now, now.Add(-grace), next("r1"), "jti-1", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.RefreshToken(ctx, hash("r0")); got.RotatedAt.IsZero() {
			t.Fatal("r0 not marked rotated")
		}
		// Within grace: r0 again supersedes r1.
		t1 := now.Add(10 * time.Second)
		if err := db.RotateRefreshToken(ctx, hash("r0"), t1, t1.Add(-grace), next("r2"), "jti-2", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.RefreshToken(ctx, hash("r1")); got.RotatedAt.IsZero() {
			t.Fatal("r1 still current after the grace retry")
		}
		// Unknown and expired tokens.
		if err := db.RotateRefreshToken(ctx, hash("nope"), t1, t1.Add(-grace), next("x"), "j", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		late := now.Add(3 * time.Hour)
		if err := db.RotateRefreshToken(ctx, hash("r2"), late, late.Add(-grace), next("x"), "j", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal("expired token rotated", err)
		}
		// After grace: reuse revokes the family and its access tokens.
		t2 := now.Add(time.Minute)
		if err := db.RotateRefreshToken(ctx, hash("r0"), t2, t2.Add(-grace), next("r3"), "jti-3", now.Add(time.Hour)); !errors.Is(err, authdb.ErrRefreshReused) {
			t.Fatalf("reuse: %v", err)
		}
		for _, h := range []string{"r0", "r1", "r2", "r3"} {
			if _, err := db.RefreshToken(ctx, hash(h)); !errors.Is(err, authdb.ErrNotFound) {
				t.Fatalf("%s after family revocation: %v", h, err)
			}
		}
		for _, j := range []string{"jti-0", "jti-1", "jti-2"} {
			if r, err := db.Revoked(ctx, j); err != nil || !r {
				t.Fatalf("%s not revoked: %v", j, err)
			}
		}
		// A family revoked before it is recorded cannot be started.
		if err := db.RevokeFamily(ctx, "fam-2", now); err != nil {
			t.Fatal(err)
		}
		if err := db.StartFamily(ctx, &authdb.Family{ID: "fam-2", ClientID: "c", Subject: "u", CreatedAt: now}, "jti-9", now.Add(time.Hour), nil); !errors.Is(err, authdb.ErrRevoked) {
			t.Fatalf("start after revocation: %v", err)
		}
		// A user withdraws the app: every family of client and subject.
		for _, id := range []string{"fam-3", "fam-4"} {
			if err := db.StartFamily(ctx, &authdb.Family{ID: id, ClientID: "c", Subject: "u2", CreatedAt: now}, "jti-"+id, now.Add(time.Hour),
				&authdb.RefreshToken{Hash: hash(id), ClientID: "c", Subject: "u2", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := db.RevokeClientGrants(ctx, "c", "u2", now); err != nil || n != 2 {
			t.Fatal(n, err)
		}
		if _, err := db.RefreshToken(ctx, hash("fam-3")); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		if r, _ := db.Revoked(ctx, "jti-fam-4"); !r {
			t.Fatal("access token of a withdrawn grant not revoked")
		}
	})
}

// TestRefreshGraceRetryOnce: within the grace period a rotated refresh
// token is accepted once more (the retry of a lost response), and only
// while its successor is the family's current token; a second retry, a
// retry after the successor was used, and the superseded successor itself
// are reuse and revoke the family (RFC 9700 §4.14.2).
func TestRefreshGraceRetryOnce(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		grace := 30 * time.Second
		n := 0
		start := func() string {
			n++
			id := fmt.Sprintf("fam-%d", n)
			if err := db.StartFamily(ctx, &authdb.Family{ID: id, ClientID: "c", Subject: "u", CreatedAt: now}, id+"-jti0", now.Add(time.Hour),
				&authdb.RefreshToken{Hash: hash(id + "-r0"), ClientID: "c", Subject: "u", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			return id
		}
		rotate := func(from, to string, at time.Time) error {
			return db.RotateRefreshToken(ctx, hash(from), at, at.Add(-grace), &authdb.RefreshToken{Hash: hash(to), ClientID: "c", Subject: "u",
				Session: []byte("{}"), IssuedAt: at, ExpiresAt: now.Add(time.Hour)}, to+"-jti", now.Add(time.Hour))
		}
		mustRotate := func(from, to string, at time.Time) {
			t.Helper()
			if err := rotate(from, to, at); err != nil {
				t.Fatalf("%s -> %s: %v", from, to, err)
			}
		}
		revoked := func(fam string, toks ...string) {
			t.Helper()
			for _, tk := range toks {
				if _, err := db.RefreshToken(ctx, hash(fam+"-"+tk)); !errors.Is(err, authdb.ErrNotFound) {
					t.Fatalf("%s-%s survives the reuse: %v", fam, tk, err)
				}
			}
			if r, err := db.Revoked(ctx, fam+"-jti0"); err != nil || !r {
				t.Fatalf("%s: access tokens not revoked: %v", fam, err)
			}
		}
		t1, t2, t3 := now.Add(time.Second), now.Add(5*time.Second), now.Add(10*time.Second)

		// Two rotations that succeed (at t1, t2), then one at t3 that is
		// reuse and revokes the family.
		for _, c := range []struct {
			name          string
			first, second [2]string // presented, successor
			reuse         [2]string
			revoked       []string
		}{
			// One retry inside the grace period; the second is reuse.
			{"second retry", [2]string{"r0", "r1"}, [2]string{"r0", "r2"}, [2]string{"r0", "r3"}, []string{"r0", "r1", "r2", "r3"}},
			// A retry after the successor was itself used is reuse.
			{"retry after the successor was used", [2]string{"r0", "r1"}, [2]string{"r1", "r2"}, [2]string{"r0", "r3"}, []string{"r0", "r1", "r2", "r3"}},
			// The successor a retry superseded was never delivered:
			// presenting it is reuse.
			{"superseded successor", [2]string{"r0", "r1"}, [2]string{"r0", "r2"}, [2]string{"r1", "r3"}, []string{"r0", "r1", "r2"}},
		} {
			f := start()
			mustRotate(f+"-"+c.first[0], f+"-"+c.first[1], t1)
			mustRotate(f+"-"+c.second[0], f+"-"+c.second[1], t2)
			if err := rotate(f+"-"+c.reuse[0], f+"-"+c.reuse[1], t3); !errors.Is(err, authdb.ErrRefreshReused) {
				t.Fatalf("%s: %v", c.name, err)
			}
			revoked(f, c.revoked...)
		}

		// The chain goes on normally from the retry's successor.
		f := start()
		mustRotate(f+"-r0", f+"-r1", t1)
		mustRotate(f+"-r0", f+"-r2", t2)
		mustRotate(f+"-r2", f+"-r3", t3)
		mustRotate(f+"-r3", f+"-r4", t3.Add(time.Minute))
		if got, err := db.RefreshToken(ctx, hash(f+"-r4")); err != nil || !got.RotatedAt.IsZero() {
			t.Fatalf("r4: %+v %v", got, err)
		}
	})
}

// TestRefreshConcurrentRedemption: however many requests redeem one
// refresh token at once, at most two succeed (the rotation and its one
// retry), the family never has more than one current token, and beyond
// two the reuse revokes the family.
func TestRefreshConcurrentRedemption(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		for _, parallel := range []int{2, 8} {
			fam := fmt.Sprintf("fam-par-%d", parallel)
			if err := db.StartFamily(ctx, &authdb.Family{ID: fam, ClientID: "c", Subject: "u", CreatedAt: now}, fam+"-jti", now.Add(time.Hour),
				&authdb.RefreshToken{Hash: hash(fam), ClientID: "c", Subject: "u", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			errs := make([]error, parallel)
			var wg sync.WaitGroup
			for i := range parallel {
				wg.Go(func() {
					next := &authdb.RefreshToken{Hash: hash(fmt.Sprintf("%s-%d", fam, i)), ClientID: "c", Subject: "u", Session: []byte("{}"),
						IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
					errs[i] = db.RotateRefreshToken(ctx, hash(fam), now, now.Add(-30*time.Second), next, fmt.Sprintf("%s-jti-%d", fam, i), now.Add(time.Hour))
				})
			}
			wg.Wait()
			ok, reused := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, authdb.ErrRefreshReused):
					reused++
				case errors.Is(err, authdb.ErrNotFound): // after the family was revoked
				default:
					t.Fatal(err)
				}
			}
			current := 0
			for i := range parallel {
				if rt, err := db.RefreshToken(ctx, hash(fmt.Sprintf("%s-%d", fam, i))); err == nil && rt.RotatedAt.IsZero() {
					current++
				}
			}
			if ok > 2 || current > 1 {
				t.Fatalf("%d concurrent redemptions: %d succeeded, %d current tokens", parallel, ok, current)
			}
			if parallel == 2 && (ok != 2 || current != 1) {
				t.Fatalf("rotation and its retry: %d succeeded, %d current", ok, current)
			}
			if parallel > 2 && (reused == 0 || current != 0) {
				t.Fatalf("%d concurrent redemptions: reuse not detected (%d reused, %d current)", parallel, reused, current)
			}
		}
		// The successor used while its predecessor is retried (two
		// different tokens of one family at once): whichever runs second is
		// reuse, so the family ends revoked, never with two live branches.
		for round := range 10 {
			fam := fmt.Sprintf("fam-branch-%d", round)
			tok := func(s string) []byte { return hash(fam + "-" + s) }
			next := func(s string) *authdb.RefreshToken {
				return &authdb.RefreshToken{Hash: tok(s), ClientID: "c", Subject: "u", Session: []byte("{}"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			}
			if err := db.StartFamily(ctx, &authdb.Family{ID: fam, ClientID: "c", Subject: "u", CreatedAt: now}, fam+"-jti", now.Add(time.Hour), next("r0")); err != nil {
				t.Fatal(err)
			}
			if err := db.RotateRefreshToken(ctx, tok("r0"), now, now.Add(-30*time.Second), next("r1"), fam+"-jti1", now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var errA, errB error
			wg.Go(func() {
				errA = db.RotateRefreshToken(ctx, tok("r1"), now, now.Add(-30*time.Second), next("a"), fam+"-jtia", now.Add(time.Hour))
			})
			wg.Go(func() {
				errB = db.RotateRefreshToken(ctx, tok("r0"), now, now.Add(-30*time.Second), next("b"), fam+"-jtib", now.Add(time.Hour))
			})
			wg.Wait()
			for _, err := range []error{errA, errB} {
				if err != nil && !errors.Is(err, authdb.ErrRefreshReused) && !errors.Is(err, authdb.ErrNotFound) {
					t.Fatal(err)
				}
			}
			for _, s := range []string{"a", "b"} {
				if rt, err := db.RefreshToken(ctx, tok(s)); err == nil {
					t.Fatalf("round %d: %s alive after a branching attempt (%v, %v): %+v", round, s, errA, errB, rt)
				}
			}
		}
	})
}
