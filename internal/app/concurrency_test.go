package app

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/principal"
)

// TestConcurrencyConfig: --max-concurrent-per-client and
// --concurrency-wait are checked by the configuration; -1 builds no
// stage, and the default leaves one search connection to the other
// clients.
func TestConcurrencyConfig(t *testing.T) {
	base := config.ServeDefaults()
	base.Sandbox.Load = false // the built-in dataset is not read here
	base.Server.Addr = "127.0.0.1:8080"
	cfg := base
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	bad := base
	bad.RateLimit.MaxConcurrentPerClient = -2
	if err := bad.Normalize(true); err == nil || !strings.Contains(err.Error(), "--max-concurrent-per-client") {
		t.Errorf("-2: %v", err)
	}
	bad = base
	bad.RateLimit.ConcurrencyWait = -1
	if err := bad.Normalize(true); err == nil || !strings.Contains(err.Error(), "--concurrency-wait") {
		t.Errorf("negative wait: %v", err)
	}
	off := cfg
	off.RateLimit.MaxConcurrentPerClient = -1
	if st, err := newConcurrency(off, 4, log, nil, nil); err != nil || st != nil {
		t.Errorf("-1: stage %v, %v; want none", st != nil, err)
	}
	wait0 := cfg
	wait0.RateLimit.ConcurrencyWait = 0
	for _, c := range []struct{ conns, want int }{{4, 3}, {8, 7}, {1, 1}, {0, defaultConcurrencyConns - 1}} {
		st, err := newConcurrency(wait0, c.conns, log, nil, nil)
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
			ctx := interaction.NewContext(r.Context(), interaction.Parse("/fhir", r)) // as routed
			r = r.WithContext(principal.NewContext(ctx, &principal.Principal{ClientID: "c"}))
			go h.ServeHTTP(httptest.NewRecorder(), r)
		}
		synctest.Wait()
		ran = len(running)
		close(release)
		synctest.Wait()
	})
	return ran
}
