package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// rlServer is a `lapis serve` started with rate-limit flags.
type rlServer struct {
	base string
	logs *syncWriter
}

// log returns what the server has written to stderr so far.
func (s *rlServer) log() string {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	return s.logs.buf.String()
}

// startRL starts lapis serve on dbURL/dataDir with extra flags and waits
// until /metadata answers.
func startRL(t *testing.T, dbURL, dataDir string, extra ...string) *rlServer {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &rlServer{base: "http://" + addr + "/fhir", logs: &syncWriter{}}
	args := append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--database", dbURL}, extra...)
	cmd := exec.Command(lapisBin, args...)
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("server did not shut down within 10s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.base + "/metadata"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not start: %s", s.log())
	return nil
}

// syncWriter is a buffer the server process and the test share.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// rlAPIKey creates a system/*.rs API key on the database.
func rlAPIKey(t *testing.T, dbURL, dataDir string) string {
	t.Helper()
	out, errOut, code := run(t, "apikey", "create", "--name", "burst", "--scope", "system/*.rs", "--json", "--data-dir", dataDir, "--database", dbURL)
	if code != 0 {
		t.Fatalf("apikey create: %s", errOut)
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
		t.Fatalf("apikey create output unreadable: %v", err)
	}
	return k.Key
}

// burst sends GET reads (cost 1) paced at rps, spread round-robin over
// the servers, for d; it returns the admitted (not 429) and refused
// counts and the time from the first to the last request sent.
func burst(t *testing.T, servers []*rlServer, key string, rps int, d time.Duration) (admitted, refused int64, elapsed time.Duration) {
	t.Helper()
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
	interval := time.Second / time.Duration(rps)
	start := time.Now()
	var last time.Time
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		last = time.Now()
		jobs <- servers[i%len(servers)].base + "/Observation/rl-probe-" + strconv.Itoa(i%7)
	}
	close(jobs)
	wg.Wait()
	if n := other.Load(); n > 0 {
		t.Fatalf("%d requests failed or answered neither 404 nor 429", n)
	}
	return ok.Load(), limited.Load(), last.Sub(start)
}

// checkAccuracy asserts admitted is within 5 % of rate × elapsed + burst.
func checkAccuracy(t *testing.T, name string, admitted, refused int64, elapsed time.Duration, rate, burstN int) {
	t.Helper()
	want := float64(rate)*elapsed.Seconds() + float64(burstN)
	errPct := 100 * (float64(admitted) - want) / want
	t.Logf("%s: sent %d in %.2f s (3× the limit), admitted %d, refused %d; expected %.0f (limit %d/s × %.2f s + burst %d): error %+.2f %%",
		name, admitted+refused, elapsed.Seconds(), admitted, refused, want, rate, elapsed.Seconds(), burstN, errPct)
	if math.Abs(errPct) > 5 {
		t.Fatalf("%s: admitted %d, want %.0f ± 5 %%", name, admitted, want)
	}
}

const (
	rlRate  = 40 // per second
	rlBurst = 40
	rlTime  = 10 * time.Second
)

// TestRateLimitAccuracyRedis: two instances on one PostgreSQL database
// sharing one Redis; one API key bursting at 3× its limit for 10 s
// across both must be admitted within 5 % of the limit.
func TestRateLimitAccuracyRedis(t *testing.T) {
	rds := redistest.Start(t)
	db := pgtest.New(t)
	dir := t.TempDir() // shared: the instances of a cluster share auth-kek
	// The key is a system/ key: its class limit is --rate-limit-system.
	flags := []string{"--redis-url", rds.URL, "--rate-limit-system", strconv.Itoa(rlRate) + "/s", "--rate-limit-system-burst", strconv.Itoa(rlBurst), "--rate-limit-patient", "0"}
	a := startRL(t, db, dir, append(flags, "--rate-limit-redis-failure", "open")...)
	b := startRL(t, db, dir, append(flags, "--rate-limit-redis-failure", "closed")...)
	key := rlAPIKey(t, db, dir)

	admitted, refused, elapsed := burst(t, []*rlServer{a, b}, key, 3*rlRate, rlTime)
	checkAccuracy(t, "redis, 2 instances", admitted, refused, elapsed, rlRate, rlBurst)

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
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(b.log(), "rate limit backend unavailable"); {
		if time.Now().After(deadline) {
			t.Fatal("no log line about the failing backend")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range []*rlServer{a, b} {
		if strings.Contains(s.log(), key) {
			t.Fatal("the API key appears in the server log")
		}
	}
}

// TestRateLimitAccuracyMemory: the same burst against one instance with
// the in-process limiter (SQLite), and the response contract of 429s.
func TestRateLimitAccuracyMemory(t *testing.T) {
	dir := t.TempDir()
	db := "" // the embedded SQLite database in dir
	// The key is a system/ key: its class limit is --rate-limit-system.
	s := startRL(t, db, dir, "--rate-limit-system", strconv.Itoa(rlRate)+"/s", "--rate-limit-system-burst", strconv.Itoa(rlBurst),
		"--rate-limit-patient", "0", "--rate-limit-auth-ip", "5/m", "--rate-limit-auth-ip-burst", "3")
	key := rlAPIKey(t, db, dir)

	admitted, refused, elapsed := burst(t, []*rlServer{s}, key, 3*rlRate, rlTime)
	checkAccuracy(t, "in-process, 1 instance", admitted, refused, elapsed, rlRate, rlBurst)

	// The budget is spent: the next search (cost 2) is refused with the
	// full response contract.
	st, h := rlGet(t, s.base+"/Observation?code=x", key)
	if st != http.StatusTooManyRequests {
		t.Fatalf("after the burst: %d, want 429", st)
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
	// An admitted response carries the headers too; /metadata does not.
	time.Sleep(time.Second)
	if st, h := rlGet(t, s.base+"/Observation/x", key); st != http.StatusNotFound || !strings.HasPrefix(h.Get("RateLimit"), `"client";r=`) {
		t.Fatalf("admitted: %d RateLimit %q", st, h.Get("RateLimit"))
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		var oo map[string]any
		if json.Unmarshal(body, &oo) != nil || oo["resourceType"] != "OperationOutcome" {
			t.Fatalf("%d body is not an OperationOutcome: %s", resp.StatusCode, body)
		}
	}
	return resp.StatusCode, resp.Header
}
