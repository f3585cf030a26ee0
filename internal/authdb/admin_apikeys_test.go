package authdb_test

import (
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

func TestAPIKeyStatus(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		k    authdb.APIKey
		want string
	}{
		{authdb.APIKey{}, authdb.APIKeyActive},
		{authdb.APIKey{ExpiresAt: now.Add(time.Hour)}, authdb.APIKeyActive},
		{authdb.APIKey{ExpiresAt: now}, authdb.APIKeyExpired},
		{authdb.APIKey{ReplacedBy: "ak_2", ExpiresAt: now.Add(time.Minute)}, authdb.APIKeyRotated},
		{authdb.APIKey{ReplacedBy: "ak_2", ExpiresAt: now.Add(-time.Minute)}, authdb.APIKeyExpired},
		{authdb.APIKey{RevokedAt: now.Add(-time.Minute), ExpiresAt: now.Add(-time.Minute)}, authdb.APIKeyRevoked},
		{authdb.APIKey{RevokedAt: now, ReplacedBy: "ak_2"}, authdb.APIKeyRevoked},
	} {
		if got := c.k.Status(now); got != c.want {
			t.Errorf("%+v: status %q, want %q", c.k, got, c.want)
		}
	}
}
