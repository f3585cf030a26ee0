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
		// Loopback ports must be real ports.
		{"http://127.0.0.1:0/callback", false},
		{"http://127.0.0.1:99999/callback", false},
		{"http://127.0.0.1:65536/callback", false},
		{"http://127.0.0.1:65535/callback", true},
		{"http://127.0.0.1:1/callback", true},
		{"http://127.0.0.1:08765/callback", false},
		{"http://127.0.0.1:/callback", false},
		{"http://127.0.0.1:x/callback", false},
		{"http://[::1]:0/cb?x=1", false},
		{"http://[::1]:70000/cb?x=1", false},
	} {
		if got := RedirectAllowed(reg, c.uri); got != c.ok {
			t.Errorf("%s: %v, want %v", c.uri, got, c.ok)
		}
	}
}

// TestRegisterRedirectPort: registration refuses redirect, launch and
// JWKS URIs whose port is not 1-65535.
func TestRegisterRedirectPort(t *testing.T) {
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"http://127.0.0.1:8765/cb", true},
		{"http://127.0.0.1/cb", true},
		{"https://app.example:443/cb", true},
		{"com.example.app:/cb", true},
		{"http://127.0.0.1:0/cb", false},
		{"http://127.0.0.1:99999/cb", false},
		{"http://[::1]:65536/cb", false},
		{"https://app.example:00443/cb", false},
		{"http://127.0.0.1:/cb", false},
		{"http://127.0.0.1:port/cb", false},
	} {
		if err := checkURI(c.uri, false); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.uri, err, c.ok)
		}
	}
}
