package authdb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// A client id, username or token id from a request that is not valid UTF-8
// or holds a NUL ("%00", "%ff" in a form, a Basic credential) finds
// nothing. On PostgreSQL, which refuses such text in a statement, each
// lookup was an error: a 500 from /auth/token, /auth/introspect,
// /auth/revoke and /auth/authorize, a 503 from the FHIR API's Basic
// authentication.
func TestLookupUnstorableText(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		for _, s := range []string{"a\x00b", "a\xffb", "\x00"} {
			if _, err := db.Client(ctx, s); !errors.Is(err, authdb.ErrNotFound) {
				t.Errorf("Client(%q): %v, want ErrNotFound", s, err)
			}
			if ok, err := db.BasicEnabled(ctx, s); ok || err != nil {
				t.Errorf("BasicEnabled(%q): %v, %v", s, ok, err)
			}
			if _, err := db.ClientNetRulesFor(ctx, s); !errors.Is(err, authdb.ErrNotFound) {
				t.Errorf("ClientNetRulesFor(%q): %v, want ErrNotFound", s, err)
			}
			if _, err := db.AccountByUsername(ctx, s); !errors.Is(err, authdb.ErrNotFound) {
				t.Errorf("AccountByUsername(%q): %v, want ErrNotFound", s, err)
			}
			if _, err := db.APIKey(ctx, s); !errors.Is(err, authdb.ErrNotFound) {
				t.Errorf("APIKey(%q): %v, want ErrNotFound", s, err)
			}
			if n, err := db.LoginFailures(ctx, s, time.Now().Add(-time.Hour)); n != 0 || err != nil {
				t.Errorf("LoginFailures(%q): %d, %v", s, n, err)
			}
			if err := db.RecordLoginFailure(ctx, s, time.Now()); err != nil {
				t.Errorf("RecordLoginFailure(%q): %v", s, err)
			}
			if err := db.ClearLoginFailures(ctx, s); err != nil {
				t.Errorf("ClearLoginFailures(%q): %v", s, err)
			}
			// No token of the server has such an id: refused, fail closed.
			if ok, err := db.Revoked(ctx, s); !ok || err != nil {
				t.Errorf("Revoked(%q): %v, %v", s, ok, err)
			}
			if ok, err := db.TokenRevoked(ctx, s, s); !ok || err != nil {
				t.Errorf("TokenRevoked(%q): %v, %v", s, ok, err)
			}
		}
	})
}
