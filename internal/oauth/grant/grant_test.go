package grant

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// TestVerifyPKCE: a verifier matches its S256 challenge only when it is
// 43–128 unreserved characters.
func TestVerifyPKCE(t *testing.T) {
	v := strings.Repeat("a", 43)
	sum := sha256.Sum256([]byte(v))
	ch := base64.RawURLEncoding.EncodeToString(sum[:])
	if !verifyPKCE(v, ch) {
		t.Fatal("matching verifier refused")
	}
	for _, bad := range []string{v[:42], strings.Repeat("a", 129), v[:42] + "+", strings.Repeat("b", 43)} {
		if verifyPKCE(bad, ch) {
			t.Errorf("verifier %q accepted", bad)
		}
	}
	if verifyPKCE(v, "") {
		t.Error("empty challenge accepted")
	}
}

// TestSystemScopes: no scope means every registered system/ scope; a
// request is granted as asked within the registration; anything else is
// invalid_scope.
func TestSystemScopes(t *testing.T) {
	reg := []string{"system/*.rs", "openid"}
	got, err := systemScopes("", reg)
	if err != nil || !slices.Equal(got, []string{"system/*.rs"}) {
		t.Fatalf("default: %v %v", got, err)
	}
	got, err = systemScopes("system/Patient.r system/Patient.r system/Observation.rs?category=x", reg)
	if err != nil || !slices.Equal(got, []string{"system/Patient.r", "system/Observation.rs?category=x"}) {
		t.Fatalf("narrowed: %v %v", got, err)
	}
	for _, req := range []string{"system/Patient.c", "patient/*.rs", "openid"} {
		var e *tokenreq.Error
		if _, err := systemScopes(req, reg); !errors.As(err, &e) || e.Code != tokenreq.CodeInvalidScope {
			t.Errorf("%s: %v, want invalid_scope", req, err)
		}
	}
	if _, err := systemScopes("", []string{"openid"}); err == nil {
		t.Error("no system scope registered: granted")
	}
}
