package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// rlServer is a `lapis serve` started with rate-limit flags.
type rlServer struct {
	*lapistest.Server
	base string
}

// startRL starts lapis serve on dbURL/dataDir with extra flags.
func startRL(t testing.TB, dbURL, dataDir string, extra ...string) *rlServer {
	t.Helper()
	s := lapistest.Start(t, lapistest.Options{DataDir: dataDir, Database: dbURL, Args: extra})
	return &rlServer{Server: s, base: s.Base}
}

// rlAPIKey creates a system/*.rs API key on the database.
func rlAPIKey(t testing.TB, dbURL, dataDir string) string {
	t.Helper()
	r := lapistest.Run(t, nil, "", "apikey", "create", "--name", "burst", "--scope", "system/*.rs", "--json", "--data-dir", dataDir, "--database", dbURL)
	if r.Code != 0 {
		t.Fatalf("apikey create: %s", r.Stderr)
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(r.Stdout), &k); err != nil || k.Key == "" {
		t.Fatalf("apikey create output unreadable: %v", err)
	}
	return k.Key
}

// floodResult is how a flood of reads was answered.
type floodResult struct {
	admitted, refused int64
	// elapsed runs from before the first request was sent to after the
	// last answer arrived: every admission happened within it.
	elapsed time.Duration
	// refusal is the first 429 answer, and body its body.
	refusal *http.Response
	body    []byte
}

// flood sends GET reads (cost 1) as fast as 24 workers can, spread
// round-robin over the servers, until at least minSent were sent and
// minRefused refused (or 20000 were sent).
func flood(t *testing.T, servers []*rlServer, key string, minSent, minRefused int64) floodResult {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	var sent, ok, limited, other atomic.Int64
	var mu sync.Mutex
	var res floodResult
	var wg sync.WaitGroup
	start := time.Now()
	for range 24 {
		wg.Go(func() {
			for {
				if sent.Load() >= minSent && limited.Load() >= minRefused {
					return
				}
				i := sent.Add(1) - 1
				if i >= 20000 {
					return
				}
				req, _ := http.NewRequest("GET", servers[i%int64(len(servers))].base+"/Observation/rl-probe-"+strconv.Itoa(int(i%7)), nil)
				req.Header.Set("X-API-Key", key)
				resp, err := hc.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusTooManyRequests:
					limited.Add(1)
					mu.Lock()
					if res.refusal == nil {
						res.refusal, res.body = resp, body
					}
					mu.Unlock()
				case http.StatusNotFound, http.StatusOK:
					ok.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if n := other.Load(); n > 0 {
		t.Fatalf("%d requests failed or answered neither 404 nor 429", n)
	}
	res.admitted, res.refused = ok.Load(), limited.Load()
	return res
}

// checkLimit asserts that a flood was limited as configured: at least
// the burst was admitted, something was refused, and no more was
// admitted than the burst plus the rate over the flood's duration (a
// bound that only loosens when the machine is slow; the accuracy itself
// is measured by BenchmarkRateLimitAccuracy).
func checkLimit(t *testing.T, name string, r floodResult, rate, burstN int) {
	t.Helper()
	most := float64(burstN) + float64(rate)*r.elapsed.Seconds() + 2 // +2: token rounding at both ends
	t.Logf("%s: %d requests in %v, %d admitted (at most %.0f), %d refused", name, r.admitted+r.refused, r.elapsed.Round(time.Millisecond), r.admitted, most, r.refused)
	if r.refused == 0 {
		t.Fatalf("%s: nothing refused", name)
	}
	if r.admitted < int64(burstN) {
		t.Fatalf("%s: admitted %d, fewer than the burst %d", name, r.admitted, burstN)
	}
	if float64(r.admitted) > most {
		t.Fatalf("%s: admitted %d, more than burst %d + %d/s × %v", name, r.admitted, burstN, rate, r.elapsed)
	}
}

// burst sends GET reads (cost 1) paced at rps, spread round-robin over
// the servers, for d; it returns the admitted (not 429) and refused
// counts and the time from the first to the last request sent. It is the
// load of BenchmarkRateLimitAccuracy.
func burst(b *testing.B, servers []*rlServer, key string, rps int, d time.Duration) (admitted, refused int64, elapsed time.Duration) {
	b.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	jobs := make(chan string, rps)
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			for u := range jobs {
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("X-API-Key", key)
				resp, err := hc.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusTooManyRequests:
					limited.Add(1)
				case http.StatusNotFound, http.StatusOK:
					ok.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// The load generator paces itself by the clock: this is a
	// measurement, not a test.
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	start := time.Now()
	var last time.Time
	for i := 0; time.Since(start) < d; i++ {
		last = time.Now()
		jobs <- servers[i%len(servers)].base + "/Observation/rl-probe-" + strconv.Itoa(i%7)
		<-tick.C
	}
	close(jobs)
	wg.Wait()
	if n := other.Load(); n > 0 {
		b.Fatalf("%d requests failed or answered neither 404 nor 429", n)
	}
	return ok.Load(), limited.Load(), last.Sub(start)
}

const (
	rlRate  = 40 // per second
	rlBurst = 40
	rlTime  = 10 * time.Second
)

// rlRedisPair starts two instances on one PostgreSQL database sharing one
// Redis (a (fail-open, b fail-closed) and returns them with an API key.
func rlRedisPair(t testing.TB) (a, b *rlServer, key string, rds *redistest.Server) {
	rds = redistest.Start(t)
	db := pgtest.New(t)
	dir := t.TempDir() // shared: the instances of a cluster share auth-kek
	flags := []string{"--redis-url", rds.URL, "--rate-limit-system", strconv.Itoa(rlRate) + "/s", "--rate-limit-system-burst", strconv.Itoa(rlBurst), "--rate-limit-patient", "0"}
	a = startRL(t, db, dir, append(flags, "--rate-limit-redis-failure", "open")...)
	b = startRL(t, db, dir, append(flags, "--rate-limit-redis-failure", "closed")...)
	return a, b, rlAPIKey(t, db, dir), rds
}

// rlMemory starts one instance with the in-process limiter (SQLite).
func rlMemory(t testing.TB) (*rlServer, string) {
	dir := t.TempDir()
	db := "" // the embedded SQLite database in dir
	// The key is a system/ key: its class limit is --rate-limit-system.
	s := startRL(t, db, dir, "--rate-limit-system", strconv.Itoa(rlRate)+"/s", "--rate-limit-system-burst", strconv.Itoa(rlBurst),
		"--rate-limit-patient", "0", "--rate-limit-auth-ip", "5/m", "--rate-limit-auth-ip-burst", "3")
	return s, rlAPIKey(t, db, dir)
}

// TestRateLimitRedis: two instances on one PostgreSQL database sharing
// one Redis; one API key flooding both is held to one limit between them
// (two separate limits would admit twice as much).
func TestRateLimitRedis(t *testing.T) {
	// Not parallel: the shared limit holds only while Redis answers
	// within the limiter's timeout (else each instance falls back to its
	// own limit), which a busy machine can delay; it runs alone.
	a, b, key, rds := rlRedisPair(t)

	checkLimit(t, "redis, 2 instances", flood(t, []*rlServer{a, b}, key, 400, 40), rlRate, rlBurst)

	// Redis down: the fail-open instance admits under its own in-process
	// limit, the fail-closed one answers 503 with Retry-After.
	rds.Stop()
	if st, _ := rlGet(t, a.base+"/Observation/x", key); st != http.StatusNotFound {
		t.Fatalf("fail open with Redis down: %d, want 404 (admitted)", st)
	}
	st, h := rlGet(t, b.base+"/Observation/x", key)
	if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("fail closed with Redis down: %d Retry-After %q, want 503 with Retry-After", st, h.Get("Retry-After"))
	}
	// The server's stderr reaches the buffer through a pipe: wait for it.
	b.WaitLog(t, time.Minute, "rate limit backend unavailable")
	for _, s := range []*rlServer{a, b} {
		if strings.Contains(s.Logs(), key) {
			t.Fatal("the API key appears in the server log")
		}
	}
}

// TestRateLimitMemory: the same flood against one instance with the
// in-process limiter (SQLite), and the response contract of 429s.
func TestRateLimitMemory(t *testing.T) {
	t.Parallel()
	s, key := rlMemory(t)

	r := flood(t, []*rlServer{s}, key, 200, 20)
	checkLimit(t, "in-process, 1 instance", r, rlRate, rlBurst)

	// A refusal carries the full response contract.
	h := r.refusal.Header
	var oo map[string]any
	if json.Unmarshal(r.body, &oo) != nil || oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("429 body is not an OperationOutcome: %s", r.body)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q", h.Get("Retry-After"))
	}
	if got := h.Get("RateLimit-Policy"); got != `"client";q=40;w=1` {
		t.Fatalf("RateLimit-Policy = %q", got)
	}
	if !regexp.MustCompile(`^"client";r=0;t=\d+$`).MatchString(h.Get("RateLimit")) {
		t.Fatalf("RateLimit = %q", h.Get("RateLimit"))
	}
	// An admitted response carries the headers too (once the budget
	// refills); /metadata does not.
	var admitted http.Header
	poll.Until(t, time.Minute, "a read admitted again", func() bool {
		st, h := rlGet(t, s.base+"/Observation/x", key)
		admitted = h
		return st == http.StatusNotFound
	})
	if !strings.HasPrefix(admitted.Get("RateLimit"), `"client";r=`) {
		t.Fatalf("admitted: RateLimit %q", admitted.Get("RateLimit"))
	}
	if _, h := rlGet(t, s.base+"/metadata", ""); h.Get("RateLimit") != "" {
		t.Fatal("/metadata carries RateLimit")
	}

	// Per IP on the token endpoint: burst 3, then 429 in RFC 6749 shape.
	for i := range 4 {
		resp, err := http.Post(s.base+"/auth/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials&client_id=nobody&client_secret=x"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i < 3 {
			if resp.StatusCode == http.StatusTooManyRequests {
				t.Fatalf("token request %d refused", i)
			}
			continue
		}
		var e map[string]string
		if resp.StatusCode != http.StatusTooManyRequests || json.Unmarshal(body, &e) != nil || e["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("4th token request: %d %s", resp.StatusCode, body)
		}
	}
	// The same per-IP budget guards every page that takes a password: the
	// apps page's sign-in is refused too, in plain text for the browser.
	resp, err := http.Post(s.base+"/auth/apps", "application/x-www-form-urlencoded", strings.NewReader("action=login&username=a&password=b"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("apps sign-in over the per-IP limit: %d %s", resp.StatusCode, body)
	}
}

func rlGet(t *testing.T, u, key string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	r := httpcall.Do(t, req)
	if r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable {
		if r.Body["resourceType"] != "OperationOutcome" {
			t.Fatalf("%d body is not an OperationOutcome: %s", r.Status, r.Raw)
		}
	}
	return r.Status, r.Header
}

// BenchmarkRateLimitAccuracy measures how close the admitted count of a
// paced burst at 3× the limit for 10 s comes to limit × time + burst:
// "error-%" is the deviation (the limiter is meant to stay within 5 %).
//
//	go test -run '^$' -bench RateLimitAccuracy -benchtime 1x ./internal/e2e/
func BenchmarkRateLimitAccuracy(b *testing.B) {
	measure := func(b *testing.B, servers []*rlServer, key string) {
		for b.Loop() {
			admitted, refused, elapsed := burst(b, servers, key, 3*rlRate, rlTime)
			want := float64(rlRate)*elapsed.Seconds() + float64(rlBurst)
			b.ReportMetric(100*(float64(admitted)-want)/want, "error-%")
			b.ReportMetric(float64(refused), "refused")
		}
	}
	b.Run("redis-2-instances", func(b *testing.B) {
		a, c, key, _ := rlRedisPair(b)
		measure(b, []*rlServer{a, c}, key)
	})
	b.Run("in-process", func(b *testing.B) {
		s, key := rlMemory(b)
		measure(b, []*rlServer{s}, key)
	})
}
