package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestHugeExpiresInReusesToken: an expires_in beyond what a
// time.Duration holds (1e300, 1e10 seconds) overflowed into an expiry in
// the past, so every request fetched a new token; it is capped instead
// and the token reused.
func TestHugeExpiresInReusesToken(t *testing.T) {
	for _, exp := range []string{"1e300", "10000000000", "9.3e9"} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"x","token_type":"bearer","expires_in":` + exp + `}`))
		}))
		a := ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: "a", ClientSecret: "b"})
		for range 3 {
			if _, err := a.Token(context.Background()); err != nil {
				t.Fatalf("expires_in %s: %v", exp, err)
			}
		}
		if got := n.Load(); got != 1 {
			t.Errorf("expires_in %s: %d token requests, want 1", exp, got)
		}
		srv.Close()
	}
}
