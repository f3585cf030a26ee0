package app

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/oauth"
)

// TestRateLimitRedisURL: a bad --redis-url is refused when the server is
// built, without repeating its password.
func TestRateLimitRedisURL(t *testing.T) {
	cfg := config.ServeDefaults()
	cfg.Sandbox.Load = false // the built-in dataset is not read here
	cfg.RateLimit.RedisURL = "http://user:hunter2@example"
	_, err := newRateLimits(cfg, slog.New(slog.DiscardHandler), nil, nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "--redis-url: invalid Redis URL") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error repeats the Redis password: %v", err)
	}
}

// TestRateLimitStages checks the wiring: the per-IP stage guards the OAuth
// endpoints under the FHIR base path and reports to *metrics.Metrics.
func TestRateLimitStages(t *testing.T) {
	mets := metrics.New()
	h := authIPHandler(t, mets, func(cfg *config.Config) {
		cfg.RateLimit.AuthIP, cfg.RateLimit.AuthIPBurst = "1/m", 1
	})
	codes := func(path string) (int, int) {
		var out [2]int
		for i := range 2 {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", path, nil))
			out[i] = w.Code
		}
		return out[0], out[1]
	}
	if a, b := codes("/fhir/auth/token"); a != 200 || b != 429 {
		t.Fatalf("/fhir/auth/token: %d then %d, want 200 then 429", a, b)
	}
	if a, b := codes("/fhir/Patient"); a != 200 || b != 200 {
		t.Fatalf("/fhir/Patient limited per IP: %d %d", a, b)
	}
	rec := httptest.NewRecorder()
	mets.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `lapis_ratelimit_checks_total{result="limited",scope="ip"} 1`) {
		t.Fatal("rate-limit metric not exported")
	}
}

// TestRateLimitBasePath: under a base URL with a path, the per-IP limit
// guards the OAuth endpoints under that path (and no longer /fhir/auth/).
func TestRateLimitBasePath(t *testing.T) {
	h := authIPHandler(t, metrics.New(), func(cfg *config.Config) {
		cfg.Server.BaseURL = "http://127.0.0.1:8080/lapis"
		cfg.RateLimit.AuthIP, cfg.RateLimit.AuthIPBurst = "1/m", 1
	})
	for path, want := range map[string]int{"/lapis/fhir/auth/token": 429, "/fhir/auth/token": 200} {
		var code int
		for range 2 {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", path, nil))
			code = w.Code
		}
		if code != want {
			t.Errorf("second POST %s: %d, want %d", path, code, want)
		}
	}
}

// TestRateLimitPasswordPages: every page that takes a password (the apps
// page's sign-in as much as /auth/login) and every endpoint oauth lists is
// behind the per-IP limit: a burst of 300 concurrent POSTs to
// /fhir/auth/apps beyond a burst of 100 is answered 429 in plain text.
func TestRateLimitPasswordPages(t *testing.T) {
	h := authIPHandler(t, metrics.New(), func(cfg *config.Config) {
		cfg.RateLimit.AuthIP, cfg.RateLimit.AuthIPBurst = "1/m", 100
	})
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 300 {
		wg.Go(func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", "/fhir"+oauth.PathApps, strings.NewReader("action=login")))
			if w.Code == http.StatusTooManyRequests && !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
				t.Errorf("429 for a page in %q", w.Header().Get("Content-Type"))
			}
			mu.Lock()
			codes[w.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusTooManyRequests] < 190 || codes[http.StatusOK]+codes[http.StatusTooManyRequests] != 300 {
		t.Fatalf("300 POSTs to the apps page: %v", codes)
	}
	// Every endpoint of the list is limited (a fresh address each).
	for i, p := range slices.Sorted(maps.Keys(oauth.IPLimitedEndpoints())) {
		for range 101 {
			h.ServeHTTP(httptest.NewRecorder(), ipRequest(p, i))
		}
		w := httptest.NewRecorder()
		if h.ServeHTTP(w, ipRequest(p, i)); w.Code != http.StatusTooManyRequests {
			t.Errorf("%s not limited per IP: %d", p, w.Code)
		}
	}
}

// ipRequest is a POST to the endpoint p (relative to /fhir) from the i-th
// test address.
func ipRequest(p string, i int) *http.Request {
	r := httptest.NewRequest("POST", "/fhir"+p, nil)
	r.RemoteAddr = fmt.Sprintf("198.51.100.%d:1234", i+1)
	return r
}

// TestRateLimitSystemConfig: the system-credential class is configured
// and checked like the others.
func TestRateLimitSystemConfig(t *testing.T) {
	cfg := config.ServeDefaults()
	cfg.Sandbox.Load = false // the built-in dataset is not read here
	if cfg.RateLimit.System != "5000/s" || cfg.RateLimit.SystemBurst != 10000 {
		t.Fatalf("defaults %q %d", cfg.RateLimit.System, cfg.RateLimit.SystemBurst)
	}
	cfg.RateLimit.System = "fast"
	if _, err := cfg.RateLimit.Parse(); err == nil || !strings.HasPrefix(err.Error(), "--rate-limit-system: invalid rate limit") {
		t.Fatalf("error %v", err)
	}
}

// authIPHandler is the per-IP rate limit stage (AuthIP) of a server
// configured by edit (on the serve defaults, data in a temporary
// directory, no sandbox dataset), reporting to mets, around a handler
// that answers 200.
func authIPHandler(t *testing.T, mets *metrics.Metrics, edit func(*config.Config)) http.Handler {
	t.Helper()
	cfg := config.ServeDefaults()
	cfg.Sandbox.Load = false // the built-in dataset is not read here
	cfg.Database.DataDir = t.TempDir()
	edit(&cfg)
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	st, err := newRateLimits(cfg, slog.New(slog.DiscardHandler), mets, audit.Discard{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.AuthIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}
