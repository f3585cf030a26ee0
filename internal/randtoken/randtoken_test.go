package randtoken

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func TestNew(t *testing.T) {
	a, b := New(), New()
	if a == b {
		t.Fatal("two tokens are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || len(a) != 43 {
		t.Fatalf("%q: %d bytes, %v", a, len(raw), err)
	}
}

func TestHash(t *testing.T) {
	want := sha256.Sum256([]byte("x"))
	if got := Hash("x"); string(got) != string(want[:]) {
		t.Fatalf("%x", got)
	}
}
