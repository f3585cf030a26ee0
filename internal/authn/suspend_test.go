package authn_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestSuspendedAPIKey: an API key suspended through one instance is
// refused by it at once and by another instance at its next poll of the
// revocation log, with warm caches on both; resuming restores it. A use
// records the caller's address beside the time.
func TestSuspendedAPIKey(t *testing.T) {
	sharedDBs(t, func(t *testing.T, url, dir string) {
		ctx := context.Background()
		a := newInstance(t, url, dir, nil)
		b := newInstance(t, url, dir, nil)
		key := a.apiKey("ak_s1")
		for range 2 { // warm both caches
			a.want("X-API-Key", key, http.StatusOK)
			b.want("X-API-Key", key, http.StatusOK)
		}
		poll.Until(t, time.Minute, "last use not recorded with its address", func() bool {
			k, err := a.db.APIKey(ctx, "ak_s1")
			return err == nil && !k.LastUsedAt.IsZero() && k.LastUsedAddr == "192.0.2.1"
		})
		changed, err := a.db.SuspendAPIKey(ctx, "ak_s1", "leaked in a public repository", time.Now())
		if err != nil || !changed {
			t.Fatalf("suspend: %v %v", changed, err)
		}
		if changed, err := a.db.SuspendAPIKey(ctx, "ak_s1", "again", time.Now()); err != nil || changed {
			t.Fatalf("second suspension changed something: %v %v", changed, err)
		}
		a.want("X-API-Key", key, http.StatusUnauthorized)
		b.eventually("X-API-Key", key, http.StatusUnauthorized)
		if k, _ := a.db.APIKey(ctx, "ak_s1"); k.SuspendReason != "leaked in a public repository" || k.Status(time.Now()) != "suspended" {
			t.Fatalf("suspended key: %+v", k)
		}
		// Rotating would let the successor escape the suspension.
		if err := a.db.RotateAPIKey(ctx, "ak_s1", &authdb.APIKey{ID: "ak_s2", Hash: []byte("h"), Prefix: "p"}, time.Now().Add(time.Hour), time.Now()); !errors.Is(err, authdb.ErrAPIKeyRotated) {
			t.Fatalf("suspended key rotated: %v", err)
		}
		if changed, err := a.db.ResumeAPIKey(ctx, "ak_s1", time.Now()); err != nil || !changed {
			t.Fatalf("resume: %v %v", changed, err)
		}
		a.want("X-API-Key", key, http.StatusOK)
		b.eventually("X-API-Key", key, http.StatusOK)
		if _, err := a.db.SuspendAPIKey(ctx, "ak_nobody", "x", time.Now()); err == nil {
			t.Fatal("unknown key suspended")
		}
	})
}

// TestBasicRotatedAndSuspended: HTTP Basic on the FHIR API accepts the
// previous secret during a rotation's overlap and not after, and refuses
// a suspended client.
func TestBasicRotatedAndSuspended(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		oldSecret, newSecret := "old-secret-old-secret-old-secret-old-secret", "new-secret-new-secret-new-secret-new-secret"
		if err := e.db.CreateClient(ctx, &authdb.Client{ID: "legacy", Name: "legacy", Type: authdb.Confidential, SecretHash: authdb.HashSecret(oldSecret),
			Scopes: []string{"system/*.rs"}}); err != nil {
			t.Fatal(err)
		}
		if err := e.db.EnableBasic(ctx, "legacy", time.Now()); err != nil {
			t.Fatal(err)
		}
		now := time.Now().Add(time.Duration(e.offset.Load()))
		if err := e.db.RotateClientSecret(ctx, "legacy", authdb.HashSecret(newSecret), now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{oldSecret, newSecret} {
			if r := e.do("Authorization", basicHdr("legacy", s)); r.status != 200 {
				t.Fatalf("secret during the overlap: %d %s", r.status, r.body)
			}
		}
		e.offset.Add(int64(2 * time.Hour))
		want401(t, e.do("Authorization", basicHdr("legacy", oldSecret)), "invalid_token")
		if r := e.do("Authorization", basicHdr("legacy", newSecret)); r.status != 200 {
			t.Fatalf("new secret: %d %s", r.status, r.body)
		}
		if _, err := e.db.SuspendClient(ctx, "legacy", "policy", time.Now()); err != nil {
			t.Fatal(err)
		}
		want401(t, e.do("Authorization", basicHdr("legacy", newSecret)), "invalid_token")
	})
}
