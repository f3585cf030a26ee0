// Package randtoken makes the random values Lapis hands out as bearer
// credentials (session cookies, CSRF tokens, authorization codes, refresh
// tokens, client secrets, emailed links) and their stored form.
package randtoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// New returns 256 random bits, base64url without padding (43 characters).
func New() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash is the stored form of a value New made: its SHA-256.
func Hash(v string) []byte {
	h := sha256.Sum256([]byte(v))
	return h[:]
}
