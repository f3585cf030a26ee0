package authorize

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/web"
)

// errBadLogin is the only login failure a user ever sees.
var errBadLogin = errors.New("invalid username or password")

// errBusy is a sign-in refused because every password-hashing slot stayed
// busy for hashWait (answered 503 with Retry-After; not a failed login).
var errBusy = errors.New("too many sign-ins in progress")

// maxConcurrentHashes caps concurrent argon2id computations (each takes
// Argon2Memory and a core for 30-60 ms); hashSlots is the bound actually
// used: half the cores, at least one, at most this.
const maxConcurrentHashes = 4

// hashWait is how long a sign-in waits for a hashing slot before it is
// answered 503: long enough to absorb a burst of legitimate logins, short
// enough that a flood cannot pile requests up.
const hashWait = 2 * time.Second

// hashSlots is the number of concurrent argon2id computations for
// GOMAXPROCS procs: a login flood then leaves at least half the cores to
// the FHIR API.
func hashSlots(procs int) int { return min(max(procs/2, 1), maxConcurrentHashes) }

// accounts holds the login machinery of the pages.
type accounts struct {
	sem  chan struct{}
	wait time.Duration
	// dummy is the hash of no password (oauth.DummyHash), verified when the
	// username is unknown or locked so that every failure costs the same
	// time.
	dummy string
}

// verify runs oauth.VerifyPassword under the concurrency bound, waiting at most
// a.wait for a slot (errBusy).
func (a *accounts) verify(ctx context.Context, encoded, password string) (bool, error) {
	select {
	case a.sem <- struct{}{}:
	default:
		t := time.NewTimer(a.wait)
		defer t.Stop()
		select {
		case a.sem <- struct{}{}:
		case <-t.C:
			return false, errBusy
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	defer func() { <-a.sem }()
	return oauth.VerifyPassword(encoded, password), nil
}

// signIn is the one password check of the authorization server: every
// page that takes a password (/auth/login, /auth/apps) calls it, and
// nothing else verifies a password. It applies the argon2id concurrency
// bound (errBusy when no slot frees within hashWait) and the lockout
// policy per account and per address (authenticate), logs the user into
// sess on success, and records the outcome as an audit event (login, or
// login.failure, which feeds the auth-failure alert). The per-IP rate
// limit runs in front of it: every page that calls signIn is in
// IPLimitedEndpoints. Every refusal is errBadLogin (the page shows its
// generic message, 401); errBusy and other errors are for signInError.
func (s *Pages) signIn(w http.ResponseWriter, r *http.Request, sess *web.Session, username, password string) (*authdb.Account, error) {
	acct, err := s.authenticate(r.Context(), username, password, httpx.ClientAddr(r))
	if errors.Is(err, errBadLogin) {
		// Never the username: users type passwords into it.
		s.record(r, audit.Event{Kind: audit.KindLoginFailure, Outcome: audit.OutcomeMinor, Description: "login failed",
			Method: "password", Status: http.StatusUnauthorized})
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := s.sessions.LogIn(w, r, sess, acct.Subject); err != nil {
		return nil, err
	}
	s.record(r, audit.Event{Kind: audit.KindLogin, Description: "login", Subject: acct.Subject, FHIRUser: acct.FHIRUser, Method: "password"})
	return acct, nil
}

// signInError answers a sign-in that failed other than by errBadLogin:
// 503 with Retry-After when the hashing slots are busy, else an internal
// error.
func (s *Pages) signInError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBusy) {
		w.Header().Set("Retry-After", "1")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress. Please wait a moment and try again.")
		return
	}
	s.internalError(w, r, err)
}

// authenticate checks a username and password under the lockout policy.
// Every refusal is errBadLogin; other errors are internal.
func (s *Pages) authenticate(ctx context.Context, username, password, ip string) (*authdb.Account, error) {
	st := s.cfg.Accounts
	pol := s.cfg.Login
	now := s.now()
	since := now.Add(-pol.Window)
	username = oauth.NormalizeUsername(username)
	userKey, ipKey := "user:"+username, "ip:"+httpx.LockoutAddr(ip)
	if len(password) > 4*oauth.MaxPasswordLen || len(username) > 256 {
		return nil, errBadLogin
	}
	locked := false
	if n, err := st.LoginFailures(ctx, ipKey, since); err != nil {
		return nil, err
	} else if n >= pol.MaxFailuresPerIP {
		locked = true
	}
	if n, err := st.LoginFailures(ctx, userKey, since); err != nil {
		return nil, err
	} else if n >= pol.MaxFailures {
		locked = true
	}
	acct, err := st.AccountByUsername(ctx, username)
	if err != nil && !errors.Is(err, authdb.ErrNotFound) {
		return nil, err
	}
	hash := s.acct.dummy
	if acct != nil && !locked {
		hash = acct.PasswordHash
	}
	ok, err := s.acct.verify(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if acct == nil || locked || !ok {
		// Failures count even while locked, so a sustained attack stays
		// locked out.
		if err := st.RecordLoginFailure(ctx, userKey, now); err != nil {
			return nil, err
		}
		if err := st.RecordLoginFailure(ctx, ipKey, now); err != nil {
			return nil, err
		}
		return nil, errBadLogin
	}
	if err := st.ClearLoginFailures(ctx, userKey); err != nil {
		return nil, err
	}
	return acct, nil
}
