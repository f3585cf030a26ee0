package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestDialGuard: the delivery client refuses to connect to a loopback
// address (checked at dial time, after name resolution), unless
// AllowPrivate is set.
func TestDialGuard(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	t.Cleanup(srv.Close)
	for _, allow := range []bool{false, true} {
		c := newClient(Config{Timeout: 10 * time.Second, AllowPrivate: allow})
		resp, err := c.Get(srv.URL)
		if allow {
			if err != nil {
				t.Fatalf("allowed: %v", err)
			}
			resp.Body.Close()
			continue
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Fatalf("loopback dialled: %v", err)
		}
	}
	if hits != 1 {
		t.Fatalf("hits %d", hits)
	}
}
