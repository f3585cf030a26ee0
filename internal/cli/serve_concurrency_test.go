package cli

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/principal"
)

func TestConcurrencyFlags(t *testing.T) {
	cfg := config.Defaults()
	cfg.Addr = "127.0.0.1:8080"
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	f := defaultRateLimitFlags()
	f.MaxConcurrentPerClient = -2
	if _, err := f.concurrency(cfg, 4, log, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "--max-concurrent-per-client") {
		t.Errorf("-2: %v", err)
	}
	f = defaultRateLimitFlags()
	f.ConcurrencyWait = -1
	if _, err := f.concurrency(cfg, 4, log, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "--concurrency-wait") {
		t.Errorf("negative wait: %v", err)
	}
	f = defaultRateLimitFlags()
	f.MaxConcurrentPerClient = -1
	if st, err := f.concurrency(cfg, 4, log, nil, nil); err != nil || st != nil {
		t.Errorf("-1: stage %v, %v; want none", st != nil, err)
	}

	// The default leaves one search connection to the other clients.
	for _, c := range []struct{ conns, want int }{{4, 3}, {8, 7}, {1, 1}, {0, defaultConcurrencyConns - 1}} {
		f = defaultRateLimitFlags()
		st, err := f.concurrency(cfg, c.conns, log, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := admitted(t, st, c.want+2); got != c.want {
			t.Errorf("%d search connections: %d searches of one client ran at once, want %d", c.conns, got, c.want)
		}
	}
}

// admitted sends n searches of one client through stage, each blocking
// until the end, and returns how many ran at once (the others were
// refused, --concurrency-wait being 0).
func admitted(t *testing.T, stage func(http.Handler) http.Handler, n int) int {
	t.Helper()
	ran := 0
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		running := make(chan struct{}, n)
		h := stage(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			running <- struct{}{}
			<-release
		}))
		for range n {
			r := httptest.NewRequest("GET", "/fhir/Observation?code=x", nil)
			r = r.WithContext(principal.NewContext(r.Context(), &principal.Principal{ClientID: "c"}))
			go h.ServeHTTP(httptest.NewRecorder(), r)
		}
		synctest.Wait()
		ran = len(running)
		close(release)
		synctest.Wait()
	})
	return ran
}
