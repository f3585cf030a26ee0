package fhirapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// "Bad input never hurts" for the cost of a request: no response may
// grow with an input without bound (batch entries, _count, _include,
// history pages). With the lapis serve defaults (config.Default*) the
// hostile batch of the security review — 1,500 GET entries of
// Observation?_count=1000&_include=* in 108 KB, which built a 205 MiB
// response and took the heap up by ~630 MiB — is refused at once, the
// largest batch admitted stops at the response size limit, and the
// memory a request takes is bounded and given back. Bounds are generous
// (this is a resource-limit test, not a benchmark); the figures are
// logged.

// costEnv is an environment with the lapis serve limits (maxResp
// overrides the response size limit when positive), seeded with 20
// patients and 200 observations, each with a note of noteBytes: with
// 400, observations of ~600 bytes, so that
// Observation?_count=1000&_include=* returns ~140 KB.
func costEnv(t *testing.T, dialect string, maxResp int64, noteBytes int) *env {
	t.Helper()
	if maxResp <= 0 {
		maxResp = config.DefaultMaxResponseBytes
	}
	def := config.Defaults()
	e := newEnvOn(t, dialect, func(c *Config, rc *resourceConfig) {
		reg, _, _ := shared(t)
		c.MaxBodyBytes = def.FHIR.MaxBodyBytes
		rc.Parser = search.NewParser(reg, testBase, def.FHIR.MaxCount, def.FHIR.DefaultCount)
		rc.MaxBundleEntries = config.DefaultMaxBundleEntries
		rc.MaxResponseBytes = maxResp
	})
	var es []string
	for i := 0; i < 20; i++ {
		es = append(es, fmt.Sprintf(`{"resource":{"resourceType":"Patient","id":"p%d","name":[{"family":"F%d"}]},"request":{"method":"PUT","url":"Patient/p%d"}}`, i, i, i))
	}
	note := strings.Repeat("x", noteBytes)
	for i := 0; i < 200; i++ {
		es = append(es, fmt.Sprintf(`{"resource":{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"c"},"subject":{"reference":"Patient/p%d"},"note":[{"text":"%s"}]},"request":{"method":"PUT","url":"Observation/o%d"}}`, i, i%20, note, i))
	}
	e.do("POST", "/fhir", bundle("transaction", es...), "Prefer: return=minimal").expect(t, 200)
	return e
}

// repeatEntry is n copies of a GET entry of url.
func repeatEntry(n int, url string) []string {
	es := make([]string, n)
	for i := range es {
		es[i] = `{"request":{"method":"GET","url":"` + url + `"}}`
	}
	return es
}

// entryStatuses returns the response.status codes of a Bundle's entries
// and checks that every 4xx entry carries a clean OperationOutcome.
func entryStatuses(t *testing.T, b map[string]any) []int {
	t.Helper()
	var out []int
	for i, en := range entries(b) {
		st, _ := get(en, "response", "status").(string)
		code, _ := strconv.Atoi(strings.Fields(st + " 0")[0])
		if code >= 400 {
			oo, _ := json.Marshal(get(en, "response", "outcome"))
			checkOutcome(t, &resp{code: code, hdr: http.Header{"Content-Type": {contentType}}, body: oo})
			if d, _ := get(en, "response", "outcome", "issue", 0, "diagnostics").(string); !strings.HasPrefix(d, fmt.Sprintf("Bundle.entry[%d]: ", i)) {
				t.Errorf("entry %d: diagnostics %q do not name the entry", i, d)
			}
		}
		out = append(out, code)
	}
	return out
}

// diagnostics joins the diagnostics of an OperationOutcome body.
func diagnostics(issues []any) string {
	var ds []string
	for _, is := range issues {
		d, _ := get(is, "diagnostics").(string)
		ds = append(ds, d)
	}
	return strings.Join(ds, " | ")
}

// TestHostileCost stays sequential: it measures the process's heap, which
// a test running beside it would add to.
func TestHostileCost(t *testing.T) {
	const search = "Observation?_count=1000&_include=*"
	heapBound := uint64(256 << 20)
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			// Notes of 4,000 bytes: a search returns ~900 KB, so a batch
			// reaches the default response size limit after a few dozen
			// entries instead of 230 (each a search of 220 resources,
			// tens of CPU-seconds in all under -race); the limits are
			// the same.
			e := costEnv(t, dialect, 0, 4000)
			limit := int64(config.DefaultMaxResponseBytes)
			one := e.do("GET", "/fhir/"+search, "").expect(t, 200)
			t.Logf("one %s: %d bytes", search, len(one.body))

			t.Run("the issue's batch: 1500 searches with _include=*", func(t *testing.T) {
				body := bundle("batch", repeatEntry(1500, search)...)
				var r *resp
				m := measureMem(t, func() { r = e.do("POST", "/fhir", body) })
				issues := r.outcome(t, http.StatusRequestEntityTooLarge)
				if d := diagnostics(issues); !strings.Contains(d, "1500 entries") || !strings.Contains(d, "maximum is 1000") {
					t.Errorf("diagnostics %q do not say the limit", d)
				}
				if get(issues[0], "code") != "too-costly" {
					t.Errorf("issue code %v, want too-costly", get(issues[0], "code"))
				}
				t.Logf("%d-byte batch of 1500 searches: %d; peak heap +%.1f MiB, peak RSS +%.1f MiB, heap retained after GC %+.1f MiB",
					len(body), r.code, mib(int64(m.Heap)), mib(m.RSS), mib(m.Retained))
				if m.Heap > heapBound {
					t.Errorf("peak heap grew by %.0f MiB, want < %.0f MiB", mib(int64(m.Heap)), mib(int64(heapBound)))
				}
			})

			t.Run("1000 searches: the response stops at its size limit", func(t *testing.T) {
				body := bundle("batch", repeatEntry(1000, search)...)
				var r *resp
				m := measureMem(t, func() { r = e.do("POST", "/fhir", body) })
				r.expect(t, 200)
				code, size := r.code, len(r.body)
				statuses := entryStatuses(t, r.json(t))
				r = nil
				retained := heapOver(m.base)
				if int64(size) > limit {
					t.Errorf("response of %d bytes, over the limit of %d", size, limit)
				}
				if len(statuses) != 1000 {
					t.Fatalf("%d response entries, want 1000", len(statuses))
				}
				ok, first := 0, -1
				for i, st := range statuses {
					switch {
					case st == 200 && first < 0:
						ok++
					case st == 413:
						if first < 0 {
							first = i
						}
					default:
						t.Fatalf("entry %d: status %d after the limit was reached at entry %d", i, st, first)
					}
				}
				if first < 0 || ok == 0 {
					t.Fatalf("%d entries answered, first refused %d: want some answered, then 413s", ok, first)
				}
				t.Logf("batch of 1000 searches: %d, %.1f MiB, %d entries answered then 413; peak heap +%.1f MiB, peak RSS +%.1f MiB, heap retained after GC %+.1f MiB",
					code, mib(int64(size)), ok, mib(int64(m.Heap)), mib(m.RSS), mib(retained))
				if m.Heap > heapBound {
					t.Errorf("peak heap grew by %.0f MiB, want < %.0f MiB", mib(int64(m.Heap)), mib(int64(heapBound)))
				}
				if retained > 16<<20 {
					t.Errorf("%.0f MiB of heap still held after the response", mib(retained))
				}
			})

			t.Run("transaction of 1000 searches: refused, nothing written", func(t *testing.T) {
				es := append(repeatEntry(1000, search)[:999:999], `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}`)
				before := e.versionCount(t)
				var r *resp
				m := measureMem(t, func() { r = e.do("POST", "/fhir", bundle("transaction", es...)) })
				issues := r.outcome(t, http.StatusRequestEntityTooLarge)
				if d := diagnostics(issues); !strings.Contains(d, "response size limit of "+strconv.FormatInt(limit, 10)+" bytes") || !strings.Contains(d, "nothing was written") {
					t.Errorf("diagnostics %q", d)
				}
				checkOutcome(t, r)
				if after := e.versionCount(t); after != before {
					t.Errorf("the refused transaction stored %d versions", after-before)
				}
				t.Logf("transaction of 999 searches and a create: %d; peak heap +%.1f MiB", r.code, mib(int64(m.Heap)))
				if m.Heap > heapBound {
					t.Errorf("peak heap grew by %.0f MiB, want < %.0f MiB", mib(int64(m.Heap)), mib(int64(heapBound)))
				}
			})

			t.Run("huge _count is clamped", func(t *testing.T) {
				r := e.do("GET", "/fhir/Observation?_count=100000000&_include=*", "").expect(t, 200)
				b := r.json(t)
				if n := len(entries(b)); n > config.Defaults().FHIR.MaxCount+20+1 {
					t.Errorf("%d entries for a _count above the maximum", n)
				}
			})
		})
	}
}

// TestHostileCostSmallLimit: the response size limit holds for every
// Bundle the API builds, checked with a limit of 64 KiB against searches
// of ~140 KB: search and history pages, batch entries (reads not run
// once the response is full, writes run with their resource left out)
// and transactions (refused whole unless Prefer: return=minimal).
func TestHostileCostSmallLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			e := costEnv(t, dialect, limit, 400)
			tooCostly := func(t *testing.T, r *resp, want string) {
				t.Helper()
				issues := r.outcome(t, http.StatusRequestEntityTooLarge)
				checkOutcome(t, r)
				if get(issues[0], "code") != "too-costly" || !strings.Contains(diagnostics(issues), want) {
					t.Errorf("issues %v, want too-costly saying %q", issues, want)
				}
			}
			t.Run("search page", func(t *testing.T) {
				tooCostly(t, e.do("GET", "/fhir/Observation?_count=1000&_include=*", ""), "larger than the response size limit of 65536 bytes; lower _count")
				tooCostly(t, e.do("POST", "/fhir/Observation/_search", "_count=1000", "Content-Type: application/x-www-form-urlencoded"), "65536 bytes")
				tooCostly(t, e.do("GET", "/fhir/?_type=Observation,Patient&_count=1000", ""), "65536 bytes")
				if r := e.do("GET", "/fhir/Observation?_count=10&_include=*", "").expect(t, 200); len(r.body) > limit {
					t.Errorf("page of %d bytes", len(r.body))
				}
			})
			t.Run("history page", func(t *testing.T) {
				tooCostly(t, e.do("GET", "/fhir/Observation/_history?_count=1000", ""), "history page is larger than the response size limit of 65536 bytes")
				tooCostly(t, e.do("GET", "/fhir/_history?_count=1000", ""), "65536 bytes")
				e.do("GET", "/fhir/Observation/_history?_count=10", "").expect(t, 200)
			})
			t.Run("batch", func(t *testing.T) {
				big := `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("y", 80<<10) + `"}]}`
				before := e.versionCount(t)
				r := e.do("POST", "/fhir", bundle("batch",
					`{"request":{"method":"GET","url":"Observation?_count=50"}}`,
					`{"request":{"method":"GET","url":"Observation?_count=1000&_include=*"}}`,
					`{"request":{"method":"GET","url":"Patient/p1"}}`,
					`{"resource":`+big+`,"request":{"method":"POST","url":"Patient"}}`,
					`{"resource":{"resourceType":"Patient","id":"small"},"request":{"method":"PUT","url":"Patient/small"}}`,
					`{"request":{"method":"GET","url":"Observation/o1/_history"}}`,
				)).expect(t, 200)
				if len(r.body) > limit {
					t.Errorf("batch response of %d bytes, over the limit", len(r.body))
				}
				b := r.json(t)
				got := entryStatuses(t, b)
				if want := []int{200, 413, 413, 201, 201, 413}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("entry statuses %v, want %v", got, want)
				}
				es := entries(b)
				if d, _ := get(es[2], "response", "outcome", "issue", 0, "diagnostics").(string); !strings.Contains(d, "not run") || !strings.Contains(d, "at entry 1") {
					t.Errorf("entry 2: %q, want not run", d)
				}
				// The large create ran; its resource is left out, with a warning.
				if es[3]["resource"] != nil || get(es[3], "response", "location") == nil {
					t.Errorf("entry 3: %v", es[3])
				}
				if get(es[3], "response", "outcome", "issue", 0, "severity") != "warning" || get(es[3], "response", "outcome", "issue", 0, "code") != "too-costly" {
					t.Errorf("entry 3 outcome: %v", get(es[3], "response", "outcome"))
				}
				if get(es[4], "resource", "id") != "small" {
					t.Errorf("entry 4 (fits): %v", es[4])
				}
				if after := e.versionCount(t); after != before+2 {
					t.Errorf("%d versions written, want 2", after-before)
				}
			})
			t.Run("transaction", func(t *testing.T) {
				big := func(id string) string {
					return `{"resource":{"resourceType":"Patient","id":"` + id + `","name":[{"text":"` + strings.Repeat("z", 40<<10) + `"}]},"request":{"method":"PUT","url":"Patient/` + id + `"}}`
				}
				before := e.versionCount(t)
				r := e.do("POST", "/fhir", bundle("transaction", big("t1"), big("t2")))
				tooCostly(t, r, "Bundle.entry[1]: the transaction response would be larger than the response size limit of 65536 bytes")
				if after := e.versionCount(t); after != before {
					t.Fatalf("the refused transaction stored %d versions", after-before)
				}
				tooCostly(t, e.do("POST", "/fhir", bundle("transaction", `{"request":{"method":"GET","url":"Observation?_count=1000"}}`)), "nothing was written")
				// The same writes with return=minimal fit.
				r = e.do("POST", "/fhir", bundle("transaction", big("t1"), big("t2")), "Prefer: return=minimal").expect(t, 200)
				if after := e.versionCount(t); after != before+2 {
					t.Fatalf("%d versions written, want 2", after-before)
				}
				// History after the commit does not fit: an entry error.
				r = e.do("POST", "/fhir", bundle("transaction",
					`{"resource":{"resourceType":"Patient","id":"t3"},"request":{"method":"PUT","url":"Patient/t3"}}`,
					`{"request":{"method":"GET","url":"Observation/_history?_count=1000"}}`)).expect(t, 200)
				if got := entryStatuses(t, r.json(t)); fmt.Sprint(got) != "[201 413]" {
					t.Errorf("entry statuses %v, want [201 413]", got)
				}
			})
		})
	}
}

// memPeak is what measureMem observed while a function ran.
type memPeak struct {
	// Heap is the largest growth of live heap objects over the level
	// before (bytes), sampled every millisecond.
	Heap uint64
	// RSS is the growth of the process's peak resident set (VmHWM) over
	// the resident set before (bytes); 0 when the kernel does not report
	// it or the peak could not be reset.
	RSS int64
	// Retained is the live heap after the function returned and a GC ran,
	// over the level before (bytes; may be negative): what the function
	// and whatever it returned still hold.
	Retained int64

	base uint64 // live heap before
}

// heapOver runs a GC and returns the live heap over base (bytes; may be
// negative).
func heapOver(base uint64) int64 {
	runtime.GC()
	return int64(liveHeap()) - int64(base)
}

const heapObjects = "/memory/classes/heap/objects:bytes"

// liveHeap reads the bytes of heap objects (live and not yet swept).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: heapObjects}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// procStatus reads one kB field of /proc/self/status in bytes (0 if
// unavailable).
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// measureMem runs fn and reports the peak heap and RSS growth it caused.
// It is a bound check for tests, not a benchmark: the sampler may miss
// a peak shorter than its period, so bounds must be generous.
func measureMem(t testing.TB, fn func()) memPeak {
	t.Helper()
	runtime.GC()
	base := liveHeap()
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux).
	rssBase := procStatus("VmRSS")
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			if h := liveHeap(); h > peak {
				peak = h
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	if h := liveHeap(); h > peak {
		peak = h
	}
	m := memPeak{base: base}
	if peak > base {
		m.Heap = peak - base
	}
	if hwmReset && rssBase > 0 {
		m.RSS = procStatus("VmHWM") - rssBase
	}
	m.Retained = heapOver(base)
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// newEnvOn is newEnv on a dialect: "sqlite" (newEnv's) or "postgres" (a
// fresh database from pgtest).
func newEnvOn(t testing.TB, dialect string, opts ...envOption) *env {
	t.Helper()
	if dialect == "postgres" {
		return newEnvStore(t, pgtest.New(t), t.TempDir(), opts...)
	}
	return newEnv(t, opts...)
}
