package apikey

import "testing"

// TestValidFormat: a fresh key passes, and a change to any one character
// of its body or checksum fails the checksum.
func TestValidFormat(t *testing.T) {
	key, _, _, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if !ValidFormat(key) || len(checksum(key[:Len-keyCheckLen])) != keyCheckLen {
		t.Fatalf("fresh key %q refused", key)
	}
	for i := len(Prefix); i < Len; i++ {
		b := []byte(key)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		if ValidFormat(string(b)) {
			t.Errorf("key changed at %d accepted", i)
		}
	}
	if ValidFormat(key[:Len-1]) || ValidFormat(key+"x") || ValidFormat("lapis-"+key[len(Prefix):]) {
		t.Error("malformed key accepted")
	}
}
