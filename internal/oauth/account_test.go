package oauth_test

import (
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/oauth"
)

func TestPasswordHash(t *testing.T) {
	h, err := oauth.HashPassword("s3cret-passphrase")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatal(h, err)
	}
	if !oauth.VerifyPassword(h, "s3cret-passphrase") || oauth.VerifyPassword(h, "s3cret-passphrasE") || oauth.VerifyPassword("$argon2id$bogus", "x") {
		t.Fatal("verify")
	}
	if h2, _ := oauth.HashPassword("s3cret-passphrase"); h2 == h {
		t.Fatal("salt not random")
	}
}

// TestDummyHash: the dummy hash has the parameters of a real one (so
// verifying against it costs the same), a salt and key of a real one's
// size, differs each time, and matches no password.
func TestDummyHash(t *testing.T) {
	h, _ := oauth.HashPassword("s3cret-passphrase")
	d := oauth.DummyHash()
	hp, dp := strings.Split(h, "$"), strings.Split(d, "$")
	if len(dp) != 6 || strings.Join(dp[:4], "$") != strings.Join(hp[:4], "$") || len(dp[4]) != len(hp[4]) || len(dp[5]) != len(hp[5]) {
		t.Fatalf("dummy %q, real %q", d, h)
	}
	if oauth.DummyHash() == d {
		t.Fatal("dummy hash not random")
	}
	for _, pw := range []string{"", "s3cret-passphrase", "not a password of anyone"} {
		if oauth.VerifyPassword(d, pw) {
			t.Fatalf("dummy hash matches %q", pw)
		}
	}
}
