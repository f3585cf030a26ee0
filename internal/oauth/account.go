package oauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/argon2"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/web"
)

// Argon2id parameters of new password hashes: the OWASP Password Storage
// Cheat Sheet's first recommendation (19 MiB of memory, 2 passes, one
// lane), a 16-byte random salt and a 32-byte output. A hash costs about
// 30-60 ms on one core. Each hash records its own parameters in the PHC
// string format ($argon2id$v=19$m=19456,t=2,p=1$salt$hash), so they can be
// raised later without invalidating existing passwords.
const (
	Argon2Memory  = 19 * 1024 // KiB
	Argon2Time    = 2
	Argon2Threads = 1
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Password length limits (NIST SP 800-63B: at least 8 characters, long
// passphrases allowed).
const (
	MinPasswordLen = 8
	MaxPasswordLen = 256
)

// HashPassword returns the argon2id PHC string of password with a fresh
// salt.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, Argon2Time, Argon2Memory, Argon2Threads, argon2KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, Argon2Memory, Argon2Time, Argon2Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// maxArgon2Memory bounds the memory a stored hash may ask for (1 GiB), so
// a corrupt row cannot exhaust the server.
const maxArgon2Memory = 1 << 20

// VerifyPassword reports whether password matches the argon2id PHC string
// encoded, comparing in constant time.
func VerifyPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > maxArgon2Memory || t == 0 || t > 64 || p == 0 {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// AccountCreator stores new accounts.
type AccountCreator interface {
	CreateAccount(ctx context.Context, a *authdb.Account) error
}

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@+-]{0,63}$`)
	fhirUserRE = regexp.MustCompile(`^(Patient|Practitioner)/[A-Za-z0-9\-.]{1,64}$`)
)

// NormalizeUsername lower-cases and trims a username; logins compare the
// normalized form.
func NormalizeUsername(u string) string { return strings.ToLower(strings.TrimSpace(u)) }

// CreateAccount validates and stores a new account: the username (1-64 of
// a-z 0-9 . _ @ + -, case-insensitive), the password (8-256 characters,
// stored as an argon2id hash) and the FHIR user ("Patient/ID" or
// "Practitioner/ID"). The subject is a new random UUID that never changes.
func CreateAccount(ctx context.Context, store AccountCreator, username, password, fhirUser string) (*authdb.Account, error) {
	if err := ValidateAccount(username, password, fhirUser); err != nil {
		return nil, err
	}
	username = NormalizeUsername(username)
	h, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	a := &authdb.Account{Subject: uuid.NewString(), Username: username, PasswordHash: h, FHIRUser: fhirUser}
	if err := store.CreateAccount(ctx, a); errors.Is(err, authdb.ErrExists) {
		return nil, fmt.Errorf("the username %q is taken", username)
	} else if err != nil {
		return nil, err
	}
	return a, nil
}

// ValidateAccount checks what CreateAccount checks before storing: the
// username, the password length and the form of the FHIR user (not
// whether that resource exists: see CheckFHIRUser).
func ValidateAccount(username, password, fhirUser string) error {
	if !usernameRE.MatchString(NormalizeUsername(username)) {
		return errors.New("the username must be 1-64 characters: letters, digits, '.', '_', '@', '+' or '-'")
	}
	if n := len([]rune(password)); n < MinPasswordLen || n > MaxPasswordLen {
		return fmt.Errorf("the password must be %d to %d characters", MinPasswordLen, MaxPasswordLen)
	}
	if !fhirUserRE.MatchString(fhirUser) || strings.HasSuffix(fhirUser, "/.") || strings.HasSuffix(fhirUser, "/..") {
		return errors.New("the FHIR user must be Patient/ID or Practitioner/ID")
	}
	return nil
}

// IsPractitioner reports whether the account is a practitioner's.
func IsPractitioner(a *authdb.Account) bool { return strings.HasPrefix(a.FHIRUser, "Practitioner/") }

// patientID returns the Patient id of a patient's account, else "".
func patientID(a *authdb.Account) string {
	if id, ok := strings.CutPrefix(a.FHIRUser, "Patient/"); ok {
		return id
	}
	return ""
}

// LoginPolicy is the lockout policy: after MaxFailures failed logins for
// one account within Window, that account cannot log in until the window
// has passed; after MaxFailuresPerIP from one client address within
// Window, that address cannot log in. Both are answered with the same
// generic message as a wrong password.
type LoginPolicy struct {
	MaxFailures      int
	MaxFailuresPerIP int
	Window           time.Duration
}

// DefaultLoginPolicy: 5 failures per account or 20 per address in 15
// minutes.
var DefaultLoginPolicy = LoginPolicy{MaxFailures: 5, MaxFailuresPerIP: 20, Window: 15 * time.Minute}

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

// accounts holds the login machinery of a Server.
type accounts struct {
	sem       chan struct{}
	wait      time.Duration
	dummyOnce sync.Once
	dummy     string
}

// dummyHash is a hash of a random password, verified when the username is
// unknown or locked so that every failure costs the same time.
func (a *accounts) dummyHash() string {
	a.dummyOnce.Do(func() {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		a.dummy, _ = HashPassword(base64.RawURLEncoding.EncodeToString(b))
	})
	return a.dummy
}

// verify runs VerifyPassword under the concurrency bound, waiting at most
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
	return VerifyPassword(encoded, password), nil
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
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, sess *web.Session, username, password string) (*authdb.Account, error) {
	acct, err := s.authenticate(r.Context(), username, password, web.ClientIP(r))
	if errors.Is(err, errBadLogin) {
		// Never the username: users type passwords into it.
		s.record(r, audit.Event{Kind: audit.KindLoginFailure, Outcome: audit.OutcomeMinor, Description: "login failed",
			Method: "password", Status: http.StatusUnauthorized})
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := s.ui.sessions.LogIn(w, r, sess, acct.Subject); err != nil {
		return nil, err
	}
	s.record(r, audit.Event{Kind: audit.KindLogin, Description: "login", Subject: acct.Subject, FHIRUser: acct.FHIRUser, Method: "password"})
	return acct, nil
}

// signInError answers a sign-in that failed other than by errBadLogin:
// 503 with Retry-After when the hashing slots are busy, else an internal
// error.
func (s *Server) signInError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBusy) {
		w.Header().Set("Retry-After", "1")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress. Please wait a moment and try again.")
		return
	}
	s.internalError(w, r, err)
}

// authenticate checks a username and password under the lockout policy.
// Every refusal is errBadLogin; other errors are internal.
func (s *Server) authenticate(ctx context.Context, username, password, ip string) (*authdb.Account, error) {
	st := s.cfg.Accounts
	pol := s.cfg.Login
	now := s.now()
	since := now.Add(-pol.Window)
	username = NormalizeUsername(username)
	userKey, ipKey := "user:"+username, "ip:"+lockoutAddress(ip)
	if len(password) > 4*MaxPasswordLen || len(username) > 256 {
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
	hash := s.ui.acct.dummyHash()
	if acct != nil && !locked {
		hash = acct.PasswordHash
	}
	ok, err := s.ui.acct.verify(ctx, hash, password)
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

// lockoutAddress is the unit failed logins are counted against per
// address: the address for IPv4, its /64 for IPv6 (one host commonly holds
// a whole /64), as for the per-IP rate limit.
func lockoutAddress(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}
