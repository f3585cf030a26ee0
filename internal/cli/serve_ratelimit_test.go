package cli

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/metrics"
)

func defaultRateLimitFlags() rateLimitFlags {
	return rateLimitFlags{RateLimitClient: "100/s", RateLimitClientBurst: 200, RateLimitPatient: "50/s", RateLimitPatientBurst: 100,
		RateLimitAuthIP: "10/s", RateLimitAuthIPBurst: 100, RateLimitRedisFailure: "open"}
}

func TestRateLimitFlagErrors(t *testing.T) {
	cfg := config.Defaults()
	cfg.Addr = "127.0.0.1:8080"
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		edit func(*rateLimitFlags)
		want string
	}{
		{func(f *rateLimitFlags) { f.RateLimitClient = "lots" }, "--rate-limit-client: invalid rate limit"},
		{func(f *rateLimitFlags) { f.RateLimitPatient = "5/fortnight" }, "--rate-limit-patient: invalid rate limit"},
		{func(f *rateLimitFlags) { f.RateLimitAuthIPBurst = -1 }, "--rate-limit-auth-ip: invalid burst"},
		{func(f *rateLimitFlags) { f.RateLimitCosts = "read=1,fetch=2" }, "--rate-limit-costs: invalid rate-limit cost"},
		{func(f *rateLimitFlags) { f.RedisURL = "http://user:hunter2@example" }, "--redis-url: invalid Redis URL"},
	} {
		f := defaultRateLimitFlags()
		tc.edit(&f)
		_, err := f.stages(cfg, log, nil, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %v, want prefix %q", err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the Redis password: %v", err)
		}
	}
}

// TestRateLimitStages checks the wiring: the per-IP stage guards the OAuth
// endpoints under the FHIR base path and reports to *metrics.Metrics.
func TestRateLimitStages(t *testing.T) {
	cfg := config.Defaults()
	cfg.Addr, cfg.DataDir = "127.0.0.1:8080", t.TempDir()
	if err := cfg.Normalize(true); err != nil {
		t.Fatal(err)
	}
	f := defaultRateLimitFlags()
	f.RateLimitAuthIP, f.RateLimitAuthIPBurst = "1/m", 1
	mets := metrics.New()
	st, err := f.stages(cfg, slog.New(slog.DiscardHandler), mets, audit.Discard{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := st.AuthIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
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
