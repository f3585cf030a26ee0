package oauth

import "testing"

func TestRedirectAllowed(t *testing.T) {
	reg := []string{"https://app.example/cb", "http://127.0.0.1:8765/callback", "http://[::1]/cb?x=1"}
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/cb", true},
		{"https://app.example/cb2", false},
		{"https://app.example:8443/cb", false}, // only loopback IPs get any port
		{"http://127.0.0.1:8765/callback", true},
		{"http://127.0.0.1:51234/callback", true}, // RFC 8252 §7.3
		{"http://127.0.0.1/callback", true},
		{"http://127.0.0.1:51234/other", false},
		{"http://127.0.0.1:51234/callback?x=1", false},
		{"http://127.0.0.1:51234/callback#f", false},
		{"http://u@127.0.0.1:51234/callback", false},
		{"https://127.0.0.1:51234/callback", false},
		{"http://localhost:51234/callback", false},
		{"http://[::1]:40000/cb?x=1", true},
		{"http://[::1]:40000/cb", false},
		{"http://127.0.0.1:40000/cb?x=1", false}, // another loopback address is another URI
		{"http://127.0.0.2:8765/callback", false},
	} {
		if got := redirectAllowed(reg, c.uri); got != c.ok {
			t.Errorf("%s: %v, want %v", c.uri, got, c.ok)
		}
	}
}
