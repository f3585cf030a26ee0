package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestSyntheaLoadUnderDefaultLimits: with the default rate limits, an API
// key created as `lapis apikey create --scope 'system/*.*'` loads the
// Synthea bundles as transactions, 4 at a time, over HTTP, without a
// single 429 (the old per-client default, 100 units/s with a burst of
// 200, refused 88 of 90). Then the key's own limit, changed by the CLI (a
// process of its own), applies to the running server within a poll, and
// shows in RateLimit-Policy; "none" lifts it.
func TestSyntheaLoadUnderDefaultLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		db    func(t *testing.T) string
		files int
	}{
		{"sqlite", func(*testing.T) string { return "" }, 90},
		{"postgres", func(t *testing.T) string { return pgtest.New(t) }, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, db := t.TempDir(), tc.db(t)
			s := startRL(t, db, dir) // the default limits
			out, errOut, code := run(t, "apikey", "create", "--name", "load", "--scope", "system/*.*", "--json", "--data-dir", dir, "--database", db)
			if code != 0 {
				t.Fatalf("apikey create: %s", errOut)
			}
			var k struct{ Key, ID string }
			if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
				t.Fatalf("apikey create output unreadable: %v", err)
			}
			files := syntheaFiles(t, tc.files)
			hc := &http.Client{Timeout: 5 * time.Minute}
			post := func(body []byte) (int, http.Header) {
				req, _ := http.NewRequest("POST", s.base, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/fhir+json")
				req.Header.Set("Authorization", "Bearer "+k.Key)
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return 0, nil
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, resp.Header
			}
			jobs := make(chan string)
			var mu sync.Mutex
			codes := map[int]int{}
			var policy string
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for f := range jobs {
						b, err := os.ReadFile(f)
						if err != nil {
							t.Error(err)
							continue
						}
						st, h := post(b)
						mu.Lock()
						codes[st]++
						if h != nil {
							policy = h.Get("RateLimit-Policy")
						}
						mu.Unlock()
					}
				})
			}
			for _, f := range files {
				jobs <- f
			}
			close(jobs)
			wg.Wait()
			if codes[http.StatusOK] != len(files) {
				t.Fatalf("%d transactions, 4 at a time, under the default limits: status counts %v (want all 200, no 429)", len(files), codes)
			}
			// The system class default, in the policy.
			if policy != `"client";q=5000;w=1` {
				t.Fatalf("RateLimit-Policy of a system key: %q", policy)
			}

			// The key's own limit, set by another process, applies within
			// a poll of the revocation log.
			if _, errOut, code := run(t, "apikey", "update", k.ID, "--rate-limit", "1/h", "--rate-limit-burst", "1", "--data-dir", dir, "--database", db); code != 0 {
				t.Fatalf("apikey update: %s", errOut)
			}
			read := func() (int, http.Header) { return rlGet(t, s.base+"/Patient?_count=1", k.Key) }
			refused := false
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !refused; {
				st, h := read()
				if st == http.StatusTooManyRequests {
					refused = true
					if got := h.Get("RateLimit-Policy"); got != `"client";q=1;w=3600` {
						t.Fatalf("RateLimit-Policy under the key's own limit: %q", got)
					}
				}
			}
			if !refused {
				t.Fatal("the key's own limit of 1/h was not applied within 10 s")
			}
			if _, errOut, code := run(t, "apikey", "update", k.ID, "--rate-limit", "none", "--data-dir", dir, "--database", db); code != 0 {
				t.Fatalf("apikey update: %s", errOut)
			}
			var st int
			var h http.Header
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if st, h = read(); st == http.StatusOK {
					break
				}
			}
			if st != http.StatusOK || strings.Contains(h.Get("RateLimit-Policy"), `"client"`) {
				t.Fatalf("after --rate-limit none: %d, RateLimit-Policy %q", st, h.Get("RateLimit-Policy"))
			}
		})
	}
}
