package oauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/argon2"

	"github.com/lapis-health/lapis/internal/authdb"
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
	return phc(salt, key), nil
}

// DummyHash returns a PHC string with the parameters of HashPassword, a
// random salt and a random key: the hash of no password. Verifying a
// password against it costs what verifying against a stored hash costs
// and always fails, so a login for an unknown or locked account can take
// the time a real one takes. Unlike a hash of a random password, it costs
// nothing to make (servers and tests made one, 30-60 ms of CPU, at every
// start).
func DummyHash() string {
	salt := make([]byte, argon2SaltLen)
	key := make([]byte, argon2KeyLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	_, _ = rand.Read(key)
	return phc(salt, key)
}

// phc is the argon2id PHC string of salt and key under the parameters of
// new hashes.
func phc(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, Argon2Memory, Argon2Time, Argon2Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
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
