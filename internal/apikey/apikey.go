// Package apikey is the format of Lapis API keys: generation (prefix,
// 256 random bits, CRC-32 checksum), hashing, format checks, and the
// validation of their scopes and IP allow-lists. Both the authentication
// middleware and the admin API use it.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"net/netip"
	"regexp"
	"strings"
)

// API key format: Prefix, 43 base62 characters of 256 random bits, and
// 6 base62 characters of the CRC-32 (IEEE) of everything before them, e.g.
//
//	lapis_3vQ8…(43)…Xk2a7Z
//
// The fixed prefix and the checksum let secret scanners recognise leaked
// keys with almost no false positives, and let the server reject typos
// and random guesses without a database lookup. Only the key's SHA-256 is
// stored.
const (
	Prefix        = "lapis_"
	keyBodyLen    = 43 // ceil(256 / log2(62))
	keyCheckLen   = 6  // 62^6 > 2^32
	Len           = len(Prefix) + keyBodyLen + keyCheckLen
	displayPrefix = len(Prefix) + 8
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Pattern matches API keys (for secret scanners; the checksum is what
// tells a real key from a look-alike).
var Pattern = regexp.MustCompile(`\blapis_[0-9A-Za-z]{49}\b`)

// New returns a fresh API key, its display prefix (non-secret, for
// listings) and its SHA-256 (what is stored).
func New() (key, prefix string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, err
	}
	body := new(big.Int).SetBytes(b)
	var sb strings.Builder
	sb.WriteString(Prefix)
	digits := make([]byte, keyBodyLen)
	sixtyTwo, mod := big.NewInt(62), new(big.Int)
	for i := keyBodyLen - 1; i >= 0; i-- {
		body.DivMod(body, sixtyTwo, mod)
		digits[i] = base62[mod.Int64()]
	}
	sb.Write(digits)
	sb.WriteString(checksum(sb.String()))
	key = sb.String()
	h := Hash(key)
	return key, key[:displayPrefix], h, nil
}

func checksum(s string) string {
	out := checkDigits(s)
	return string(out[:])
}

// checkDigits are the base62 digits of the CRC-32 (IEEE) of s, in an
// array (ValidFormat, on every request with a key, compares them without
// making a string).
func checkDigits(s string) [keyCheckLen]byte {
	c := crc32.ChecksumIEEE([]byte(s))
	var out [keyCheckLen]byte
	for i := keyCheckLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return out
}

// IsKey reports whether s looks like an API key (the prefix), so it is
// not handed to the JWT verifier.
func IsKey(s string) bool { return strings.HasPrefix(s, Prefix) }

// ValidFormat reports whether key has the API key format and a
// correct checksum (no database lookup).
func ValidFormat(key string) bool {
	if len(key) != Len || !strings.HasPrefix(key, Prefix) {
		return false
	}
	for i := len(Prefix); i < Len; i++ {
		if strings.IndexByte(base62, key[i]) < 0 {
			return false
		}
	}
	sum := checkDigits(key[:Len-keyCheckLen])
	return string(sum[:]) == key[Len-keyCheckLen:]
}

// Hash is the stored form of a key: its SHA-256. A 256-bit random
// key needs no slow hash.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// NewID returns a fresh public key id ("ak_" + 16 hex digits).
func NewID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "ak_" + hex.EncodeToString(b), nil
}

var (
	scopeRE   = regexp.MustCompile(`^(system|patient)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)(\?[^\s]*)?$`)
	fhirIDRE  = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	errScopes = errors.New("api key scopes must be system/… or patient/… SMART scopes")
)

// CheckScopes validates the scopes and patient of a new API key:
// every scope is system/… or patient/…; patient/ scopes need a patient
// (and a patient needs patient/ scopes); the two kinds do not mix, so a
// patient-bound key can never reach beyond that patient's compartment.
func CheckScopes(scopes []string, patient string) error {
	if len(scopes) == 0 {
		return errors.New("at least one scope is required")
	}
	var sys, pat int
	for _, s := range scopes {
		m := scopeRE.FindStringSubmatch(s)
		if m == nil || m[3] == "" {
			return fmt.Errorf("%w: %q", errScopes, s)
		}
		if m[1] == "system" {
			sys++
		} else {
			pat++
		}
	}
	switch {
	case sys > 0 && pat > 0:
		return errors.New("an api key has either system/ or patient/ scopes, not both")
	case pat > 0 && patient == "":
		return errors.New("patient/ scopes need --patient")
	case patient != "" && pat == 0:
		return errors.New("--patient needs patient/ scopes")
	case patient != "" && !fhirIDRE.MatchString(patient):
		return fmt.Errorf("invalid patient id %q", patient)
	}
	return nil
}

// ParseAllowList parses CIDR prefixes (or single addresses) into their
// canonical strings.
func ParseAllowList(in []string) ([]string, error) {
	var out []string
	for _, f := range in {
		for _, s := range strings.FieldsFunc(f, func(r rune) bool { return r == ',' || r == ' ' }) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return nil, fmt.Errorf("invalid CIDR %q", s)
				}
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
			out = append(out, p.Masked().String())
		}
	}
	return out, nil
}

// Allowed reports whether addr is in one of the prefixes.
func Allowed(prefixes []string, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, s := range prefixes {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}
