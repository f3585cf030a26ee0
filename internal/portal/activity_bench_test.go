package portal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/mail"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/ratelimit"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// BenchmarkActivityPage measures the activity page of one app (and its
// JSON equivalent) over HTTP with the load: an organisation with
// 100 sandbox apps and 10,000 requests of activity over the last day. It
// reports the median time of a page (ms/median) and its size.
func BenchmarkActivityPage(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchActivityPage(b, func() string { return "sqlite:" + filepath.Join(b.TempDir(), "lapis.db") })
	})
	b.Run("postgres", func(b *testing.B) { benchActivityPage(b, func() string { return pgtest.New(b) }) })
}

func openBenchDB(b *testing.B, u string) *database.DB {
	b.Helper()
	h, err := database.Open(context.Background(), database.Options{URL: u, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	return h
}

func benchActivityPage(b *testing.B, newDB func() string) {
	ctx := context.Background()
	sbDB := openBenchDB(b, newDB())
	adb, err := authdb.New(ctx, sbDB)
	if err != nil {
		b.Fatal(err)
	}
	sb := admin.New(admin.Config{Store: adb, Logger: slog.New(slog.DiscardHandler)})
	now := time.Now()
	rec, err := activity.NewRecorder(ctx, sbDB, audit.Discard{}, activity.Options{MaxBatch: 2000, QueueSize: 1 << 15})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rec.Close() })
	budget := func(context.Context, *principal.Principal) (ratelimit.Budget, error) {
		return ratelimit.Budget{Limit: ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 200}, Remaining: 180}, nil
	}
	srv := httptest.NewUnstartedServer(nil)
	p, err := New(Config{BaseURL: "http://" + srv.Listener.Addr().String(), DB: openBenchDB(b, newDB()), Mail: &mail.Memory{},
		Logger: slog.New(slog.DiscardHandler), AuthRate: rate.Limit(1000), AuthBurst: 1000,
		Environments: []Env{{Name: "sandbox", FHIRBase: "http://x/sandbox/fhir", Admin: sb, Activity: rec.Store, Budget: budget}}})
	if err != nil {
		b.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	b.Cleanup(srv.Close)

	d, tok, err := p.dev.SignUp(ctx, "bench@example.org", "Bench", "correct horse battery", "Bench org")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.dev.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	ms, err := p.dev.Memberships(ctx, d.ID)
	if err != nil || len(ms) == 0 {
		b.Fatal(err)
	}
	actx := admin.WithActor(ctx, admin.CommandActor())
	var apps []string
	for i := range 100 {
		reg, err := sb.CreateClient(actx, api.ClientRequest{Name: fmt.Sprintf("App %d", i), Type: "public", RedirectURIs: []string{"https://app.example/cb"},
			Scopes: []string{"launch/patient openid fhirUser patient/*.rs"}, Owner: ms[0].Owner()})
		if err != nil {
			b.Fatal(err)
		}
		apps = append(apps, reg.ClientID)
	}
	statuses := []int{200, 200, 200, 200, 201, 200, 304, 404, 403, 429}
	causes := map[int]string{403: "scope", 429: "rate-limit"}
	for i := range 10000 {
		st := statuses[i%len(statuses)]
		rec.Record(ctx, audit.Event{Kind: audit.KindREST, Time: now.Add(-time.Duration(i) * 24 * time.Hour / 10000), ClientID: apps[i%len(apps)], Status: st,
			Cause: causes[st], Interaction: "search-type", Route: "GET /sandbox/fhir/Observation?…", Latency: time.Duration(i%50) * time.Millisecond})
	}
	rec.Flush()

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.Post(srv.URL+"/portal/api/login", "application/json", strings.NewReader(`{"email":"bench@example.org","password":"correct horse battery"}`))
	if err != nil || res.StatusCode != 200 {
		b.Fatalf("login %v %v", res, err)
	}
	res.Body.Close()

	for _, path := range []string{"/portal/activity", "/portal/api/activity"} {
		b.Run(strings.TrimPrefix(path, "/portal/"), func(b *testing.B) {
			u := srv.URL + path + "?" + url.Values{"env": {"sandbox"}, "client": {apps[0]}}.Encode()
			var times []time.Duration
			size := 0
			for b.Loop() {
				t0 := time.Now()
				res, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				times = append(times, time.Since(t0))
				if res.StatusCode != 200 {
					b.Fatalf("%s: %d", path, res.StatusCode)
				}
				size = int(n)
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms/median")
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
