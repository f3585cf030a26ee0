package developer

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/testclock"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// open returns a service on a fresh database of each dialect.
func open(t *testing.T, dialect string, key []byte) (*Service, *testclock.Clock) {
	var kek cipher.AEAD
	if key != nil {
		b, _ := aes.NewCipher(key)
		kek, _ = cipher.NewGCM(b)
	}
	t.Helper()
	c := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, err := New(context.Background(), dbtest.Open(t, dialect), Options{Now: c.Now, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func dialects(t *testing.T, fn func(t *testing.T, s *Service, c *testclock.Clock)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			s, c := open(t, d, nil)
			fn(t, s, c)
		})
	}
}

// signUp creates a verified developer.
func signUp(t *testing.T, s *Service, email string) *Developer {
	t.Helper()
	ctx := context.Background()
	d, tok, err := s.SignUp(ctx, email, "Dev "+email, "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSignUpVerifyLogin(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, c *testclock.Clock) {
		ctx := context.Background()
		d, tok, err := s.SignUp(ctx, " Alice@Example.ORG ", "Alice", "correct horse battery", "Acme")
		if err != nil {
			t.Fatal(err)
		}
		if d.Email != "alice@example.org" || d.Verified {
			t.Fatalf("%+v", d)
		}
		if _, _, err := s.SignUp(ctx, "alice@example.org", "A", "correct horse battery", ""); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate: %v", err)
		}
		for _, bad := range [][2]string{{"not-an-email", "correct horse battery"}, {"Bob <b@x.org>", "correct horse battery"}, {"b@x.org", "short"}} {
			var ie *InvalidError
			if _, _, err := s.SignUp(ctx, bad[0], "", bad[1], ""); !errors.As(err, &ie) {
				t.Errorf("%q: %v", bad, err)
			}
		}
		// Unverified: the right password says so; a wrong one does not.
		if _, err := s.Login(ctx, "alice@example.org", "correct horse battery", "192.0.2.1"); !errors.Is(err, ErrNotVerified) {
			t.Fatalf("unverified login: %v", err)
		}
		if _, err := s.Verify(ctx, tok+"x"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("wrong token: %v", err)
		}
		v, err := s.Verify(ctx, tok)
		if err != nil || !v.Verified {
			t.Fatalf("verify: %v %+v", err, v)
		}
		if _, err := s.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("second use: %v", err)
		}
		r, err := s.Login(ctx, "ALICE@example.org", "correct horse battery", "192.0.2.1")
		if err != nil || r.SecondFactor != "" || r.Developer.ID != d.ID {
			t.Fatalf("login: %v %+v", err, r)
		}
		ms, err := s.Memberships(ctx, d.ID)
		if err != nil || len(ms) != 1 || ms[0].Name != "Acme" || ms[0].Role != RoleOwner {
			t.Fatalf("orgs %v %+v", err, ms)
		}
	})
}

func TestVerificationExpires(t *testing.T) {
	s, c := open(t, "sqlite", nil)
	ctx := context.Background()
	_, tok, err := s.SignUp(ctx, "late@example.org", "", "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(VerifyTTL + time.Second)
	if _, err := s.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token: %v", err)
	}
	tok2, err := s.ResendVerification(ctx, "late@example.org")
	if err != nil || tok2 == "" {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if tok3, err := s.ResendVerification(ctx, "late@example.org"); err != nil || tok3 != "" {
		t.Fatalf("verified account got a token: %q %v", tok3, err)
	}
	if tok4, err := s.ResendVerification(ctx, "nobody@example.org"); err != nil || tok4 != "" {
		t.Fatalf("unknown account: %q %v", tok4, err)
	}
}

func TestLockout(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, c *testclock.Clock) {
		ctx := context.Background()
		signUp(t, s, "lock@example.org")
		for i := 0; i < 5; i++ {
			if _, err := s.Login(ctx, "lock@example.org", "wrong password!", "192.0.2.7"); !errors.Is(err, ErrBadLogin) {
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		// Locked: even the right password fails, with the same error.
		if _, err := s.Login(ctx, "lock@example.org", "correct horse battery", "198.51.100.1"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("locked login: %v", err)
		}
		c.Add(16 * time.Minute)
		if _, err := s.Login(ctx, "lock@example.org", "correct horse battery", "198.51.100.1"); err != nil {
			t.Fatalf("after the window: %v", err)
		}
		// Unknown accounts fail the same way.
		if _, err := s.Login(ctx, "nobody@example.org", "correct horse battery", "198.51.100.1"); !errors.Is(err, ErrBadLogin) {
			t.Fatal(err)
		}
	})
}

func TestLockoutPerAddress(t *testing.T) {
	s, _ := open(t, "sqlite", nil)
	ctx := context.Background()
	signUp(t, s, "ip@example.org")
	for i := 0; i < 20; i++ {
		_, _ = s.Login(ctx, "x"+string(rune('a'+i))+"@example.org", "wrong password!", "2001:db8::1")
	}
	// Same /64, another host: locked.
	if _, err := s.Login(ctx, "ip@example.org", "correct horse battery", "2001:db8::2"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("address lockout: %v", err)
	}
	if _, err := s.Login(ctx, "ip@example.org", "correct horse battery", "2001:db9::2"); err != nil {
		t.Fatalf("other address: %v", err)
	}
}

func TestPasswordReset(t *testing.T) {
	s, c := open(t, "sqlite", nil)
	ctx := context.Background()
	d := signUp(t, s, "reset@example.org")
	if tok, err := s.RequestReset(ctx, "nobody@example.org"); err != nil || tok != "" {
		t.Fatalf("unknown: %q %v", tok, err)
	}
	tok, err := s.RequestReset(ctx, "reset@example.org")
	if err != nil {
		t.Fatal(err)
	}
	var ie *InvalidError
	if _, err := s.Reset(ctx, tok, "short"); !errors.As(err, &ie) {
		t.Fatalf("short password: %v", err)
	}
	if _, err := s.Reset(ctx, tok, "a new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reset(ctx, tok, "another new password"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := s.Login(ctx, d.Email, "correct horse battery", "192.0.2.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("old password: %v", err)
	}
	if _, err := s.Login(ctx, d.Email, "a new long password", "192.0.2.1"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	tok2, _ := s.RequestReset(ctx, d.Email)
	c.Add(ResetTTL + time.Second)
	if _, err := s.Reset(ctx, tok2, "yet another password"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired: %v", err)
	}
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTOTP(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("0123456789abcdef0123456789abcdef")} {
		s, c := open(t, "sqlite", key)
		ctx := context.Background()
		d := signUp(t, s, "totp@example.org")
		e, err := s.EnrollTOTP(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(e.URI, "otpauth://totp/Lapis:totp@example.org?") {
			t.Fatalf("uri %s", e.URI)
		}
		var stored string
		_ = s.r.QueryRow("SELECT totp_pending FROM dev_developer WHERE id = ?", d.ID).Scan(&stored)
		if key != nil && strings.Contains(stored, e.Secret) {
			t.Fatal("secret stored in the clear with a key")
		}
		var ie *InvalidError
		if _, err := s.ConfirmTOTP(ctx, d.ID, "000000"); !errors.As(err, &ie) {
			t.Fatalf("wrong code: %v", err)
		}
		codes, err := s.ConfirmTOTP(ctx, d.ID, code(t, e.Secret, c.Now()))
		if err != nil || len(codes) != RecoveryCodes {
			t.Fatal(err)
		}
		r, err := s.Login(ctx, d.Email, "correct horse battery", "192.0.2.1")
		if err != nil || r.SecondFactor == "" {
			t.Fatalf("login: %v %+v", err, r)
		}
		// The code used at enrolment cannot be replayed.
		if _, err := s.LoginSecondFactor(ctx, r.SecondFactor, code(t, e.Secret, c.Now()), "192.0.2.1"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("replayed code: %v", err)
		}
		c.Add(30 * time.Second)
		if _, err := s.LoginSecondFactor(ctx, "wrong", code(t, e.Secret, c.Now()), "192.0.2.1"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("wrong step token: %v", err)
		}
		got, err := s.LoginSecondFactor(ctx, r.SecondFactor, code(t, e.Secret, c.Now()), "192.0.2.1")
		if err != nil || got.ID != d.ID {
			t.Fatalf("second factor: %v", err)
		}
		if _, err := s.LoginSecondFactor(ctx, r.SecondFactor, code(t, e.Secret, c.Now().Add(30*time.Second)), "192.0.2.1"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("step token reused: %v", err)
		}
		// A recovery code works once.
		r2, _ := s.Login(ctx, d.Email, "correct horse battery", "192.0.2.1")
		if _, err := s.LoginSecondFactor(ctx, r2.SecondFactor, strings.ToUpper(codes[0]), "192.0.2.1"); err != nil {
			t.Fatalf("recovery code: %v", err)
		}
		r3, _ := s.Login(ctx, d.Email, "correct horse battery", "192.0.2.1")
		if _, err := s.LoginSecondFactor(ctx, r3.SecondFactor, codes[0], "192.0.2.1"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("recovery code reused: %v", err)
		}
		// The step token expires.
		c.Add(MFATTL)
		if _, err := s.LoginSecondFactor(ctx, r3.SecondFactor, codes[1], "192.0.2.1"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("expired step: %v", err)
		}
		if err := s.DisableTOTP(ctx, d.ID, "wrong password!"); !errors.Is(err, ErrBadLogin) {
			t.Fatal(err)
		}
		if err := s.DisableTOTP(ctx, d.ID, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Login(ctx, d.Email, "correct horse battery", "192.0.2.1"); err != nil || r.SecondFactor != "" {
			t.Fatalf("after disable: %v", err)
		}
	}
}

func TestRolesInvitesAndLastOwner(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, c *testclock.Clock) {
		ctx := context.Background()
		own := signUp(t, s, "owner@example.org")
		dev := signUp(t, s, "dev@example.org")
		other := signUp(t, s, "other@example.org")
		org := mustOrg(t, s, own.ID)
		// Only owners invite; non-members see nothing.
		if _, err := s.Invite(ctx, dev.ID, org.ID, "dev@example.org", RoleDeveloper); !errors.Is(err, ErrNotFound) {
			t.Fatalf("non-member invite: %v", err)
		}
		tok, err := s.Invite(ctx, own.ID, org.ID, "DEV@example.org", RoleDeveloper)
		if err != nil {
			t.Fatal(err)
		}
		if inv, err := s.Invitations(ctx, own.ID, org.ID); err != nil || len(inv) != 1 || inv[0].Email != "dev@example.org" {
			t.Fatalf("invitations %v %+v", err, inv)
		}
		var ie *InvalidError
		if _, err := s.AcceptInvite(ctx, other.ID, tok); !errors.As(err, &ie) {
			t.Fatalf("wrong address: %v", err)
		}
		if _, err := s.AcceptInvite(ctx, dev.ID, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcceptInvite(ctx, dev.ID, tok); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("reuse: %v", err)
		}
		if _, err := s.Invite(ctx, own.ID, org.ID, "dev@example.org", RoleDeveloper); !errors.Is(err, ErrExists) {
			t.Fatalf("member invited again: %v", err)
		}
		if _, err := s.Invite(ctx, own.ID, org.ID, "x@example.org", "admin"); !errors.As(err, &ie) {
			t.Fatalf("bad role: %v", err)
		}
		// A developer may not change roles or invite.
		if err := s.SetRole(ctx, dev.ID, org.ID, dev.ID, RoleOwner); !errors.Is(err, ErrForbidden) {
			t.Fatalf("self-promotion: %v", err)
		}
		if _, err := s.Invite(ctx, dev.ID, org.ID, "y@example.org", RoleDeveloper); !errors.Is(err, ErrForbidden) {
			t.Fatalf("developer invite: %v", err)
		}
		// The last owner can neither be demoted nor leave.
		if err := s.SetRole(ctx, own.ID, org.ID, own.ID, RoleDeveloper); !errors.Is(err, ErrLastOwner) {
			t.Fatalf("demote last owner: %v", err)
		}
		if err := s.RemoveMember(ctx, own.ID, org.ID, own.ID); !errors.Is(err, ErrLastOwner) {
			t.Fatalf("last owner leaves: %v", err)
		}
		if err := s.SetRole(ctx, own.ID, org.ID, dev.ID, RoleOwner); err != nil {
			t.Fatal(err)
		}
		if err := s.SetRole(ctx, dev.ID, org.ID, own.ID, RoleDeveloper); err != nil {
			t.Fatalf("demote the other owner: %v", err)
		}
		if err := s.RemoveMember(ctx, own.ID, org.ID, own.ID); err != nil {
			t.Fatalf("developer leaves: %v", err)
		}
		ms, err := s.Members(ctx, dev.ID, org.ID)
		if err != nil || len(ms) != 1 || ms[0].Email != "dev@example.org" || ms[0].Role != RoleOwner {
			t.Fatalf("members %v %+v", err, ms)
		}
		// Cross-organisation isolation.
		if _, err := s.Members(ctx, other.ID, org.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider lists members: %v", err)
		}
		if err := s.SetRole(ctx, other.ID, org.ID, dev.ID, RoleDeveloper); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider sets role: %v", err)
		}
		if err := s.RemoveMember(ctx, other.ID, org.ID, dev.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider removes: %v", err)
		}
		if _, err := s.Invitations(ctx, other.ID, org.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("outsider invitations: %v", err)
		}
		// Invitations expire.
		tok2, _ := s.Invite(ctx, dev.ID, org.ID, "other@example.org", RoleDeveloper)
		c.Add(InviteTTL + time.Second)
		if _, err := s.AcceptInvite(ctx, other.ID, tok2); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("expired invite: %v", err)
		}
	})
}

func mustOrg(t *testing.T, s *Service, devID string) *Membership {
	t.Helper()
	ms, err := s.Memberships(context.Background(), devID)
	if err != nil || len(ms) == 0 {
		t.Fatal(err)
	}
	return &ms[0]
}

func TestTerms(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, c *testclock.Clock) {
		ctx := context.Background()
		d := signUp(t, s, "terms@example.org")
		op := signUp(t, s, "op@example.org")
		if need, err := s.NeedsTerms(ctx, d.ID); err != nil || need {
			t.Fatalf("no terms: %v %v", need, err)
		}
		if err := s.EnsureTerms(ctx, "Default terms."); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureTerms(ctx, "Other default."); err != nil {
			t.Fatal(err)
		}
		cur, err := s.CurrentTerms(ctx)
		if err != nil || cur.Version != 1 || cur.Text != "Default terms." {
			t.Fatalf("%v %+v", err, cur)
		}
		if need, _ := s.NeedsTerms(ctx, d.ID); !need {
			t.Fatal("terms not needed")
		}
		if err := s.AcceptTerms(ctx, d.ID, 1); err != nil {
			t.Fatal(err)
		}
		if need, _ := s.NeedsTerms(ctx, d.ID); need {
			t.Fatal("accepted terms still needed")
		}
		if _, err := s.SetTerms(ctx, d.ID, "v2"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("non-operator sets terms: %v", err)
		}
		if err := s.SetOperator(ctx, "OP@example.org", true); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOperator(ctx, "nobody@example.org", true); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		v2, err := s.SetTerms(ctx, op.ID, "Version two.")
		if err != nil || v2.Version != 2 {
			t.Fatalf("%v %+v", err, v2)
		}
		var ie *InvalidError
		if _, err := s.SetTerms(ctx, op.ID, "  "); !errors.As(err, &ie) {
			t.Fatal(err)
		}
		if need, _ := s.NeedsTerms(ctx, d.ID); !need {
			t.Fatal("new version not needed")
		}
		if err := s.AcceptTerms(ctx, d.ID, 1); !errors.Is(err, ErrTermsOutdated) {
			t.Fatalf("old version: %v", err)
		}
		if err := s.AcceptTerms(ctx, d.ID, 2); err != nil {
			t.Fatal(err)
		}
		at, _ := s.AcceptedTerms(ctx, d.ID, 1)
		if at.IsZero() {
			t.Fatal("acceptance of version 1 lost")
		}
	})
}

func TestAPITokens(t *testing.T) {
	s, c := open(t, "sqlite", nil)
	ctx := context.Background()
	d := signUp(t, s, "tok@example.org")
	o := signUp(t, s, "tok2@example.org")
	v, tk, err := s.CreateAPIToken(ctx, d.ID, "ci")
	if err != nil || !strings.HasPrefix(v, TokenPrefix) {
		t.Fatal(err)
	}
	var n int
	_ = s.r.QueryRow("SELECT COUNT(*) FROM dev_api_token WHERE token_hash = ?", v).Scan(&n)
	if n != 0 {
		t.Fatal("token stored in the clear")
	}
	got, err := s.DeveloperByAPIToken(ctx, v)
	if err != nil || got.ID != d.ID {
		t.Fatal(err)
	}
	c.Add(time.Minute)
	_, _ = s.DeveloperByAPIToken(ctx, v)
	if l, _ := s.APITokens(ctx, d.ID); len(l) != 1 || l[0].LastUsedAt.IsZero() {
		t.Fatalf("%+v", l)
	}
	if err := s.RevokeAPIToken(ctx, o.ID, tk.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other developer revokes: %v", err)
	}
	if err := s.RevokeAPIToken(ctx, d.ID, tk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeveloperByAPIToken(ctx, v); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.DeveloperByAPIToken(ctx, "lpd_unknown"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
