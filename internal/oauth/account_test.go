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
