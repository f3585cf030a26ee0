package keys_test

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// TestSignLowS: every ES256 signature the manager makes is in the one
// canonical form (low S, strict base64url) and verifies; its malleated twin
// (r, n−s) also verifies with go-jose but is not LowS. (Before
// normalisation about half of the signatures had a high S.)
func TestSignLowS(t *testing.T) {
	ctx := context.Background()
	_, m, _ := openManager(t)
	n := elliptic.P256().Params().N
	for i := range 64 {
		tok, err := m.Sign(ctx, keys.AccessTokenAlg, "at+jwt", []byte(`{"i":`+big.NewInt(int64(i)).String()+`}`))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := keys.SignatureOf(tok)
		if err != nil {
			t.Fatal(err)
		}
		if !keys.LowS(keys.AccessTokenAlg, sig) {
			t.Fatalf("signature %d has a high S", i)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{keys.AccessTokenAlg})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := m.PublicKey(ctx, jws.Signatures[0].Header.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(pub.Key); err != nil {
			t.Fatalf("normalised signature %d does not verify: %v", i, err)
		}
		// The twin verifies cryptographically, and LowS tells it apart.
		s := new(big.Int).SetBytes(sig[32:])
		twin := append([]byte(nil), sig...)
		new(big.Int).Sub(n, s).FillBytes(twin[32:])
		if keys.LowS(keys.AccessTokenAlg, twin) {
			t.Fatal("LowS accepted n−s")
		}
		mal := tok[:strings.LastIndexByte(tok, '.')+1] + base64.RawURLEncoding.EncodeToString(twin)
		if jws, err := jose.ParseSigned(mal, []jose.SignatureAlgorithm{keys.AccessTokenAlg}); err != nil {
			t.Fatal(err)
		} else if _, err := jws.Verify(pub.Key); err != nil {
			t.Fatalf("the malleated twin should verify cryptographically: %v", err)
		}
	}
	// RS256 (id_tokens) is deterministic and not checked.
	if !keys.LowS(jose.RS256, []byte{0xff}) {
		t.Fatal("RS256 signature refused")
	}
}

// TestSignatureOf refuses non-canonical base64url spellings of a
// signature (the last character's unused bits set, padding).
func TestSignatureOf(t *testing.T) {
	sig := make([]byte, 64)
	for i := range sig {
		sig[i] = byte(i)
	}
	enc := base64.RawURLEncoding.EncodeToString(sig)
	if got, err := keys.SignatureOf("h.p." + enc); err != nil || string(got) != string(sig) {
		t.Fatalf("canonical: %v", err)
	}
	// 64 bytes take 86 characters; the last carries 4 unused bits.
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", enc[len(enc)-1])
	alt := enc[:len(enc)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last+1])
	if dec, err := base64.RawURLEncoding.DecodeString(alt); err != nil || string(dec) != string(sig) {
		t.Fatalf("the lax decoder should read the variant as the same bytes: %v", err)
	}
	for _, bad := range []string{"h.p." + alt, "h.p." + enc + "==", "no-dots"} {
		if _, err := keys.SignatureOf(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
