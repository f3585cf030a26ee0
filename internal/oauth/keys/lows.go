package keys

import (
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// ECDSA signatures are malleable: if (r, s) verifies, so does (r, n−s),
// where n is the order of the curve. A JWS would then have two valid
// serializations (and, since the base64url decoder ignores the unused low
// bits of the last character, several more spellings of each). Lapis
// therefore signs every ECDSA token with the low form (s ≤ n/2, as
// Bitcoin's BIP 62 and libsecp256k1 do) and its verifier accepts only that
// form, canonically encoded: each token has exactly one valid string.

// curveOf is the curve of an ECDSA JWS algorithm, nil for other
// algorithms.
func curveOf(alg jose.SignatureAlgorithm) elliptic.Curve {
	switch alg {
	case jose.ES256:
		return elliptic.P256()
	case jose.ES384:
		return elliptic.P384()
	case jose.ES512:
		return elliptic.P521()
	}
	return nil
}

// LowS reports whether sig, the signature of a JWS made with alg, is in
// canonical form: for the ECDSA algorithms (ES256, ES384, ES512; R || S,
// RFC 7518 §3.4) it must have the curve's exact length and 0 < S ≤ N/2;
// signatures of other algorithms are not malleable this way and always
// qualify.
func LowS(alg jose.SignatureAlgorithm, sig []byte) bool {
	c := curveOf(alg)
	if c == nil {
		return true
	}
	n := c.Params().N
	size := (c.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	s := new(big.Int).SetBytes(sig[size:])
	half := new(big.Int).Rsh(n, 1)
	return s.Sign() > 0 && s.Cmp(half) <= 0
}

// SignatureOf returns the signature of a compact JWS, refusing any
// encoding but the canonical one (unpadded base64url whose unused bits are
// zero), so that one signature has one spelling.
func SignatureOf(compact string) ([]byte, error) {
	i := strings.LastIndexByte(compact, '.')
	if i < 0 {
		return nil, errors.New("keys: not a compact JWS")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(compact[i+1:])
	if err != nil {
		return nil, errors.New("keys: signature is not canonical base64url")
	}
	return sig, nil
}

// normalizeLowS rewrites the signature of a compact ECDSA JWS made with
// alg to its low-S form (s → n−s when s > n/2); the result verifies with
// the same key. Other algorithms are returned unchanged.
func normalizeLowS(alg jose.SignatureAlgorithm, compact string) (string, error) {
	c := curveOf(alg)
	if c == nil {
		return compact, nil
	}
	sig, err := SignatureOf(compact)
	if err != nil {
		return "", err
	}
	size := (c.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return "", errors.New("keys: ECDSA signature of unexpected length")
	}
	if LowS(alg, sig) {
		return compact, nil
	}
	s := new(big.Int).SetBytes(sig[size:])
	s.Sub(c.Params().N, s)
	s.FillBytes(sig[size:])
	i := strings.LastIndexByte(compact, '.')
	return compact[:i+1] + base64.RawURLEncoding.EncodeToString(sig), nil
}
