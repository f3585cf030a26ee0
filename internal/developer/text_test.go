package developer

import (
	"context"
	"errors"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/testclock"
)

// An address with a NUL character (email=a%00b@x.org in the portal's
// forms) names no account: on PostgreSQL, which refuses NUL in a
// statement, the login and the verification resend failed (a 500).
func TestEmailWithNUL(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, _ *testclock.Clock) {
		ctx := context.Background()
		signUp(t, s, "a@x.org")
		for _, e := range []string{"a\x00@x.org", "\x00", "a@x.org\x00"} {
			if _, err := s.Login(ctx, e, "correct horse battery", "192.0.2.1"); !errors.Is(err, ErrBadLogin) {
				t.Errorf("Login(%q): %v, want ErrBadLogin", e, err)
			}
			if _, err := s.DeveloperByEmail(ctx, e); !errors.Is(err, ErrNotFound) {
				t.Errorf("DeveloperByEmail(%q): %v, want ErrNotFound", e, err)
			}
			if tok, err := s.ResendVerification(ctx, e); tok != "" || err != nil {
				t.Errorf("ResendVerification(%q): %q, %v", e, tok, err)
			}
			if tok, err := s.RequestReset(ctx, e); tok != "" || err != nil {
				t.Errorf("RequestReset(%q): %q, %v", e, tok, err)
			}
		}
	})
}
