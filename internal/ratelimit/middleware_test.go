package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// recorder is an Observer and an audit.Sink.
type recorder struct {
	mu       sync.Mutex
	checked  map[string]int // "scope/allowed" → count
	failures map[bool]int
	refused  map[string]int
	events   []audit.Event
}

func newRecorder() *recorder {
	return &recorder{checked: map[string]int{}, failures: map[bool]int{}, refused: map[string]int{}}
}

func (r *recorder) RateLimitChecked(scope string, allowed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked[scope+"/"+strconv.FormatBool(allowed)]++
}

func (r *recorder) RateLimitBackendFailure(failOpen bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[failOpen]++
}

func (r *recorder) Refused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused[reason]++
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// fakeAuthn puts a principal into the context from test headers (the real
// authn middleware runs before the FHIR stage).
func fakeAuthn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Test-Client"); id != "" {
			p := &principal.Principal{Method: "apikey", ClientID: id, TokenID: "ak_" + id, Patient: r.Header.Get("X-Test-Patient"),
				Scopes: strings.Fields(r.Header.Get("X-Test-Scopes"))}
			if m := r.Header.Get("X-Test-Method"); m != "" {
				p.Method = m
			}
			r = r.WithContext(principal.NewContext(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

// echo answers 200 with the length of the body it read.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Body-Len", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
})

type harness struct {
	m   *Middleware
	rec *recorder
	h   http.Handler
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	rec := newRecorder()
	o.Metrics, o.Audit, o.FHIRBase = rec, rec, "/fhir"
	if o.AuthPaths == nil {
		o.AuthPaths = map[string]Endpoint{"/fhir/auth/token": {}, "/fhir/auth/authorize": {Browser: true}}
	}
	m := New(o)
	mux := http.NewServeMux()
	mux.Handle("/fhir/auth/", echo)
	mux.Handle("/fhir/", routed(fakeAuthn(m.FHIR(echo))))
	return &harness{m: m, rec: rec, h: m.AuthEndpoints(mux)}
}

func (h *harness) do(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.RemoteAddr = "192.0.2.1:1234"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "RemoteAddr" {
			req.RemoteAddr = hdr[i+1]
			continue
		}
		if hdr[i] == "ClientIP" { // as the gateway resolved it
			req = req.WithContext(httpx.WithClientIP(req.Context(), netip.MustParseAddr(hdr[i+1])))
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, req)
	return w
}

var rateLimitRE = regexp.MustCompile(`^"client";r=(\d+);t=(\d+)$`)

func TestFHIRHeadersAndRefusal(t *testing.T) {
	h := newHarness(t, Options{Client: Limit{Rate: 2, Period: time.Second, Burst: 3}})
	for i := range 3 {
		w := h.do("GET", "/fhir/Observation/1", "", "X-Test-Client", "app1")
		if w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"client";q=2;w=1` {
			t.Fatalf("RateLimit-Policy = %q", got)
		}
		m := rateLimitRE.FindStringSubmatch(w.Header().Get("RateLimit"))
		if m == nil || m[1] != strconv.Itoa(2-i) {
			t.Fatalf("request %d: RateLimit = %q, want r=%d", i, w.Header().Get("RateLimit"), 2-i)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Fatal("Retry-After on an admitted response")
		}
	}
	w := h.do("GET", "/fhir/Observation/1", "", "X-Test-Client", "app1")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("over the limit: %d, want 429", w.Code)
	}
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After = %q, want 1 (500 ms rounded up)", ra)
	}
	if got := w.Header().Get("RateLimit"); got != `"client";r=0;t=1` {
		t.Fatalf("RateLimit on 429 = %q", got)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Severity, Code, Diagnostics string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "throttled" {
		t.Fatalf("429 body: %s", w.Body)
	}
	// Another client is not affected.
	if w := h.do("GET", "/fhir/Observation/1", "", "X-Test-Client", "app2"); w.Code != 200 {
		t.Fatalf("other client: %d", w.Code)
	}
	// Metrics and audit.
	if h.rec.checked["client/true"] != 4 || h.rec.checked["client/false"] != 1 || h.rec.refused["ratelimit"] != 1 {
		t.Fatalf("metrics: %v %v", h.rec.checked, h.rec.refused)
	}
	if len(h.rec.events) != 1 {
		t.Fatalf("audit events: %d, want 1", len(h.rec.events))
	}
	ev := h.rec.events[0]
	if ev.Kind != audit.KindRateLimited || ev.ClientID != "app1" || ev.CredentialID != "ak_app1" || ev.Address != "192.0.2.1" || ev.Status != 429 {
		t.Fatalf("audit event: %+v", ev)
	}
}

func TestFHIRCosts(t *testing.T) {
	h := newHarness(t, Options{Client: Limit{Rate: 1, Period: time.Hour, Burst: 10}})
	spend := func(method, target, body string) string {
		t.Helper()
		w := h.do(method, target, body, "X-Test-Client", "c", "Content-Type", "application/fhir+json")
		if w.Code != 200 {
			t.Fatalf("%s %s: %d", method, target, w.Code)
		}
		if want := strconv.Itoa(len(body)); w.Header().Get("X-Body-Len") != want {
			t.Fatalf("%s %s: handler read %s body bytes, want %s", method, target, w.Header().Get("X-Body-Len"), want)
		}
		return rateLimitRE.FindStringSubmatch(w.Header().Get("RateLimit"))[1]
	}
	steps := []struct {
		method, target, body string
		remaining            string
	}{
		{"GET", "/fhir/Patient/1", "", "9"},                                  // read 1
		{"GET", "/fhir/Patient/1/_history/2", "", "8"},                       // vread 1
		{"GET", "/fhir/Observation?code=x", "", "6"},                         // search 2
		{"GET", "/fhir/Observation/1/_history", "", "4"},                     // history 2
		{"POST", "/fhir/Observation", `{"resourceType":"Observation"}`, "1"}, // create 3
	}
	for _, s := range steps {
		if got := spend(s.method, s.target, s.body); got != s.remaining {
			t.Fatalf("%s %s: remaining %s, want %s", s.method, s.target, got, s.remaining)
		}
	}
	if w := h.do("DELETE", "/fhir/Observation/1", "", "X-Test-Client", "c"); w.Code != 429 {
		t.Fatalf("delete (cost 3) with 1 unit left: %d, want 429", w.Code)
	}

	// Batch: one unit per entry, at least 3; the handler still reads the
	// whole body.
	costOf := func(body string) int {
		t.Helper()
		return bundleCostOf(t, Options{}, body)
	}
	entries := make([]string, 7)
	for i := range entries {
		entries[i] = `{"resource":{"resourceType":"Patient","name":[{"given":["a","b"]}]},"request":{"method":"POST","url":"Patient"}}`
	}
	big := `{"resourceType":"Bundle","type":"transaction","meta":{"tag":[{"code":"x"}]},"entry":[` + strings.Join(entries, ",") + `]}`
	if c := costOf(big); c != 7 {
		t.Fatalf("7-entry transaction cost %d, want 7", c)
	}
	if c := costOf(`{"resourceType":"Bundle","type":"batch","entry":[{}]}`); c != 3 {
		t.Fatalf("1-entry batch cost %d, want the minimum 3", c)
	}
	if c := costOf(`not json`); c != 3 {
		t.Fatalf("malformed batch cost %d, want the minimum 3", c)
	}
	// A batch above the burst costs what its entries cost (see
	// TestBundleCost for what happens at the limiter).
	many := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(`{},`, 499) + `{}]}`
	if c := costOf(many); c != 500 {
		t.Fatalf("500-entry batch cost %d, want 500", c)
	}
}

// bundleCostOf sends body as a batch through the middleware (o plus a
// client limit with a burst far above any cost) and returns what it
// cost; the handler must still read the whole body.
func bundleCostOf(t *testing.T, o Options, body string) int {
	t.Helper()
	const burst = 1_000_000
	o.Client = Limit{Rate: 1, Period: time.Hour, Burst: burst}
	h := newHarness(t, o)
	w := h.do("POST", "/fhir/", body, "X-Test-Client", "c", "Content-Type", "application/fhir+json")
	if w.Code != 200 || w.Header().Get("X-Body-Len") != strconv.Itoa(len(body)) {
		t.Fatalf("batch: %d, body %s", w.Code, w.Header().Get("X-Body-Len"))
	}
	r, _ := strconv.Atoi(rateLimitRE.FindStringSubmatch(w.Header().Get("RateLimit"))[1])
	return burst - r
}

// TestBundleCost: a Bundle costs what its entries would cost as requests
// of their own (GET entries: a search 2, a read 1, a history 2; writes
// the per-entry batch cost), whatever their number; one with more entries
// than the handler takes costs the minimum; and a Bundle costing more
// than the burst is not capped at the burst: it passes only on a full
// bucket and is charged in full.
func TestBundleCost(t *testing.T) {
	e := func(method, url string) string {
		return `{"fullUrl":"urn:uuid:x","resource":{"resourceType":"Patient","request":{"method":"DELETE"}},"request":{"method":"` + method + `","url":"` + url + `"}}`
	}
	b := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(entries, ",") + `]}`
	}
	rep := func(n int, entry string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = entry
		}
		return out
	}
	search := e("GET", "Observation?_count=1000&_include=*")
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"1500 searches (the hostile batch)", b(rep(1500, search)...), 3000},
		{"searches by absolute URL", b(rep(4, e("GET", "http://lapis.test/fhir/Observation?code=x"))...), 8},
		{"system search", b(e("GET", "?_type=Patient"), e("GET", "/?_type=Patient")), 4},
		{"reads, vread, history, operation", b(e("GET", "Patient/1"), e("HEAD", "Patient/1"), e("GET", "Patient/1/_history/2"), e("GET", "Patient/1/_history"), e("GET", "Patient/1/$everything")), 1 + 1 + 1 + 2 + 3},
		{"writes cost the per-entry batch cost", b(e("POST", "Patient"), e("PUT", "Patient/1"), e("PATCH", "Patient/1"), e("DELETE", "Patient/1")), 4},
		{"293 creates (the largest Synthea transaction)", b(rep(293, e("POST", "Patient"))...), 293},
		{"a method elsewhere than request.method does not count", b(`{"request":{"url":"Observation"},"Request":{"method":"GET"},"resource":{"method":"GET"}}`, e("POST", "Patient"), e("POST", "Patient")), 3},
		{"no request", b(`{}`, `[]`, `"x"`, `{"request":[1]}`, `{"request":{"method":{"x":"GET"},"url":["Observation"]}}`), 5},
		{"truncated entry list", `{"resourceType":"Bundle","entry":[` + search + `,` + search + `,{"request":`, 4},
	} {
		if got := bundleCostOf(t, Options{}, tc.body); got != tc.want {
			t.Errorf("%s: cost %d, want %d", tc.name, got, tc.want)
		}
	}
	// Configured costs apply per entry.
	c, _ := ParseCosts("search=5,batch=2")
	if got := bundleCostOf(t, Options{Costs: c}, b(search, e("GET", "Patient/1"), e("POST", "Patient"))); got != 5+2+2 {
		t.Errorf("configured costs: %d, want 9", got)
	}
	// Over the handler's entry limit: refused before it runs, the minimum.
	if got := bundleCostOf(t, Options{MaxBundleEntries: 1000}, b(rep(1001, search)...)); got != 3 {
		t.Errorf("1001 entries over a limit of 1000: cost %d, want 3", got)
	}
	if got := bundleCostOf(t, Options{MaxBundleEntries: 1000}, b(rep(1000, search)...)); got != 2000 {
		t.Errorf("1000 entries at a limit of 1000: cost %d, want 2000", got)
	}

	// At the limiter: burst 200 at 100/s. A 1,500-search batch (3000
	// units) passes on a full bucket and leaves a debt of 2800 units: the
	// client's next request waits 28 s, where capping the cost at the
	// burst let it send the same batch again after 2 s.
	h := newHarness(t, Options{Client: Limit{Rate: 100, Period: time.Second, Burst: 200}})
	hostile := b(rep(1500, search)...)
	if w := h.do("POST", "/fhir/", hostile, "X-Test-Client", "c", "Content-Type", "application/fhir+json"); w.Code != 200 {
		t.Fatalf("first hostile batch on a full bucket: %d", w.Code)
	}
	w := h.do("GET", "/fhir/Patient/1", "", "X-Test-Client", "c")
	if w.Code != 429 {
		t.Fatalf("read after a 3000-unit batch: %d, want 429", w.Code)
	}
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); ra < 27 || ra > 29 {
		t.Fatalf("Retry-After %q after a 3000-unit batch at 100/s burst 200, want ~28 s", w.Header().Get("Retry-After"))
	}
}

func TestParseCosts(t *testing.T) {
	c, err := ParseCosts("read=2, search=5,batch-min=4,operation=0")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultCosts()
	want.Read, want.Search, want.BatchMin, want.Operation = 2, 5, 4, 0
	if c != want {
		t.Fatalf("got %+v", c)
	}
	if back, err := ParseCosts(c.String()); err != nil || back != c {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, bad := range []string{"read", "read=x", "read=-1", "fetch=1", "read=100000"} {
		if _, err := ParseCosts(bad); err == nil {
			t.Errorf("ParseCosts(%q) accepted", bad)
		}
	}
}

// TestClassify: every request shape costs its interaction's price.
func TestClassify(t *testing.T) {
	c := Costs{Read: 1, VRead: 2, Search: 3, History: 4, Create: 5, Update: 6, Patch: 7, Delete: 8, Batch: 1, BatchMin: 9, Operation: 10}
	const (
		ixRead = iota + 1
		ixVRead
		ixSearch
		ixHistory
		ixCreate
		ixUpdate
		ixPatch
		ixDelete
		ixBatch
		ixOperation
	)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "", ixSearch},
		{"POST", "", ixBatch},
		{"POST", "_search", ixSearch},
		{"GET", "_history", ixHistory},
		{"GET", "Patient", ixSearch},
		{"HEAD", "Patient", ixSearch},
		{"POST", "Patient", ixCreate},
		{"PUT", "Patient", ixUpdate},
		{"PATCH", "Patient", ixPatch},
		{"DELETE", "Patient", ixDelete},
		{"POST", "Patient/_search", ixSearch},
		{"GET", "Patient/_history", ixHistory},
		{"GET", "Patient/1", ixRead},
		{"PUT", "Patient/1", ixUpdate},
		{"PATCH", "Patient/1", ixPatch},
		{"DELETE", "Patient/1", ixDelete},
		{"GET", "Patient/1/_history", ixHistory},
		{"GET", "Patient/1/_history/3", ixVRead},
		{"GET", "$export", ixOperation},
		{"GET", "Patient/1/$everything", ixOperation},
		{"POST", "Patient/1/$everything", ixOperation},
		{"POST", "Group/1/$export", ixOperation},
		{"GET", "Patient/1/Observation", ixSearch},
		{"HEAD", "Patient/1/*", ixSearch},
		{"POST", "Patient/1/Observation/_search", ixSearch},
		{"GET", "a/b/c/d/e", ixRead},
	} {
		r := httptest.NewRequest(tc.method, "/fhir/"+tc.path, nil)
		if got := c.cost(interaction.Parse("/fhir", r)); got != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestFHIRPerPatient(t *testing.T) {
	h := newHarness(t, Options{Patient: Limit{Rate: 1, Period: time.Hour, Burst: 4}})
	// Two clients share a patient's limit, whether it is read by id or
	// searched by reference.
	if w := h.do("GET", "/fhir/Patient/p1", "", "X-Test-Client", "a"); w.Code != 200 || w.Header().Get("RateLimit") != `"patient";r=3;t=3600` {
		t.Fatalf("read: %d %q", w.Code, w.Header().Get("RateLimit"))
	}
	if w := h.do("GET", "/fhir/Observation?subject=Patient/p1", "", "X-Test-Client", "b"); w.Code != 200 {
		t.Fatalf("search: %d", w.Code)
	}
	w := h.do("GET", "/fhir/Observation?patient=p1", "", "X-Test-Client", "c")
	if w.Code != 429 || w.Header().Get("RateLimit") != `"patient";r=0;t=3600` {
		t.Fatalf("third: %d %q", w.Code, w.Header().Get("RateLimit"))
	}
	if ev := h.rec.events[len(h.rec.events)-1]; ev.Patient != "p1" || ev.ClientID != "c" {
		t.Fatalf("audit event: %+v", ev)
	}
	// A POST _search form body names patients too (and the handler still
	// reads it).
	w = h.do("POST", "/fhir/Observation/_search", "patient=p1", "X-Test-Client", "a", "Content-Type", "application/x-www-form-urlencoded")
	if w.Code != 429 {
		t.Fatalf("form _search: %d, want 429", w.Code)
	}
	// Other patients, and requests without a patient, are not limited by
	// p1.
	if w := h.do("GET", "/fhir/Patient/p2", "", "X-Test-Client", "a"); w.Code != 200 {
		t.Fatalf("p2: %d", w.Code)
	}
	if w := h.do("GET", "/fhir/Observation?code=x", "", "X-Test-Client", "a"); w.Code != 200 || w.Header().Get("RateLimit") != "" {
		t.Fatalf("no patient: %d %q", w.Code, w.Header().Get("RateLimit"))
	}
	// The patient in context wins over the request's parameters.
	for range 2 {
		h.do("GET", "/fhir/Observation", "", "X-Test-Client", "d", "X-Test-Patient", "ctx")
	}
	if w := h.do("GET", "/fhir/Observation?patient=p9", "", "X-Test-Client", "d", "X-Test-Patient", "ctx"); w.Code != 429 {
		t.Fatalf("patient in context: %d, want 429", w.Code)
	}
	if w := h.do("GET", "/fhir/Patient/p9", "", "X-Test-Client", "e"); w.Code != 200 {
		t.Fatalf("p9 charged though the context patient was ctx: %d", w.Code)
	}
}

// TestFHIRPerPatientNotSystem checks that a system credential is not
// charged to, nor refused by, the per-patient limit, while an app acting
// for a user still is.
func TestFHIRPerPatientNotSystem(t *testing.T) {
	h := newHarness(t, Options{Patient: Limit{Rate: 1, Period: time.Hour, Burst: 2}})
	for i := range 5 {
		if w := h.do("GET", "/fhir/Patient/p1", "", "X-Test-Client", "backend", "X-Test-Scopes", "system/*.rs"); w.Code != 200 || w.Header().Get("RateLimit") != "" {
			t.Fatalf("system read %d: %d %q", i, w.Code, w.Header().Get("RateLimit"))
		}
	}
	for i, want := range []int{200, 200, 429} {
		if w := h.do("GET", "/fhir/Patient/p1", "", "X-Test-Client", "app", "X-Test-Scopes", "user/*.rs"); w.Code != want {
			t.Fatalf("user app read %d: %d, want %d", i, w.Code, want)
		}
	}
}

func TestFHIRBothPolicies(t *testing.T) {
	h := newHarness(t, Options{Client: Limit{Rate: 100, Period: time.Second, Burst: 200}, Patient: Limit{Rate: 50, Period: time.Second, Burst: 100}})
	w := h.do("GET", "/fhir/Patient/1", "", "X-Test-Client", "a")
	if got := w.Header().Get("RateLimit-Policy"); got != `"client";q=100;w=1, "patient";q=50;w=1` {
		t.Fatalf("RateLimit-Policy = %q", got)
	}
	if got := w.Header().Get("RateLimit"); !regexp.MustCompile(`^"client";r=199;t=1, "patient";r=99;t=1$`).MatchString(got) {
		t.Fatalf("RateLimit = %q", got)
	}
}

func TestFHIRNoPrincipal(t *testing.T) {
	h := newHarness(t, Options{Client: Limit{Rate: 1, Period: time.Hour, Burst: 1}, Patient: Limit{Rate: 1, Period: time.Hour, Burst: 1}})
	for range 5 {
		if w := h.do("GET", "/fhir/Patient/1", ""); w.Code != 200 || w.Header().Get("RateLimit") != "" {
			t.Fatalf("unauthenticated request limited: %d %q", w.Code, w.Header().Get("RateLimit"))
		}
	}
}

func TestAuthEndpointsPerIP(t *testing.T) {
	h := newHarness(t, Options{IP: Limit{Rate: 1, Period: time.Minute, Burst: 2}})
	for range 2 {
		if w := h.do("POST", "/fhir/auth/token", "grant_type=x"); w.Code != 200 || w.Header().Get("RateLimit-Policy") != `"ip";q=1;w=60` {
			t.Fatalf("token: %d %q", w.Code, w.Header().Get("RateLimit-Policy"))
		}
	}
	// CORS preflights are not counted.
	if w := h.do("OPTIONS", "/fhir/auth/token", ""); w.Code != 200 {
		t.Fatalf("preflight: %d", w.Code)
	}
	w := h.do("POST", "/fhir/auth/token", "grant_type=x")
	if w.Code != 429 || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("over the limit: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	var e map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"] != "temporarily_unavailable" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("OAuth error body: %s", w.Body)
	}
	// Browser pages get text, not JSON or HTML.
	w = h.do("GET", "/fhir/auth/authorize?client_id=x", "")
	if w.Code != 429 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") || !strings.Contains(w.Body.String(), "Too many requests") {
		t.Fatalf("authorize: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	// Another address is independent; an IPv6 /64 is one bucket.
	if w := h.do("POST", "/fhir/auth/token", "", "RemoteAddr", "192.0.2.2:1"); w.Code != 200 {
		t.Fatalf("other IP: %d", w.Code)
	}
	h.do("POST", "/fhir/auth/token", "", "RemoteAddr", "[2001:db8:1:2::1]:1")
	h.do("POST", "/fhir/auth/token", "", "RemoteAddr", "[2001:db8:1:2::2]:1")
	if w := h.do("POST", "/fhir/auth/token", "", "RemoteAddr", "[2001:db8:1:2:ffff::3]:1"); w.Code != 429 {
		t.Fatalf("same /64: %d, want 429", w.Code)
	}
	// Paths outside the OAuth endpoints are not limited per IP: the FHIR
	// API (including /metadata) and other /auth paths.
	for _, p := range []string{"/fhir/metadata", "/fhir/Patient/1", "/fhir/auth/jwks"} {
		if w := h.do("GET", p, ""); w.Code != 200 || w.Header().Get("RateLimit") != "" {
			t.Fatalf("%s: %d %q", p, w.Code, w.Header().Get("RateLimit"))
		}
	}
	if ev := h.rec.events[0]; ev.Kind != audit.KindRateLimited || ev.Address != "192.0.2.1" || ev.ClientID != "" {
		t.Fatalf("audit: %+v", ev)
	}
	if h.rec.checked["ip/false"] != 3 {
		t.Fatalf("metrics: %v", h.rec.checked)
	}
}

// TestResolvedClientIP: the per-IP limit keys on the address the gateway
// resolved (httpx.ClientIP), not the direct peer.
func TestResolvedClientIP(t *testing.T) {
	h := newHarness(t, Options{IP: Limit{Rate: 1, Period: time.Minute, Burst: 1}})
	h.do("POST", "/fhir/auth/token", "", "ClientIP", "198.51.100.1")
	if w := h.do("POST", "/fhir/auth/token", "", "ClientIP", "198.51.100.2"); w.Code != 200 {
		t.Fatalf("resolver ignored: %d", w.Code)
	}
	if w := h.do("POST", "/fhir/auth/token", "", "ClientIP", "198.51.100.1"); w.Code != 429 {
		t.Fatalf("resolver ignored: %d", w.Code)
	}
}

// logCounter counts log records.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(bytes.TrimSpace(p)))
	return len(p), nil
}

func TestRedisFailureModes(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run("failOpen="+strconv.FormatBool(failOpen), func(t *testing.T) {
			srv := redistest.Start(t)
			rl, err := OpenRedis(srv.URL, RedisOptions{Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer rl.Close()
			logs := &logCounter{}
			c := newClock()
			h := newHarness(t, Options{Limiter: rl, FailOpen: failOpen, Now: c.Now,
				Logger: slog.New(slog.NewJSONHandler(logs, nil)),
				Client: Limit{Rate: 1, Period: time.Hour, Burst: 3}, IP: Limit{Rate: 1, Period: time.Hour, Burst: 3}})
			if w := h.do("GET", "/fhir/Patient/1", "", "X-Test-Client", "a"); w.Code != 200 {
				t.Fatalf("Redis up: %d", w.Code)
			}
			srv.Stop()
			codes := map[int]int{}
			for range 5 {
				w := h.do("GET", "/fhir/Patient/1", "", "X-Test-Client", "a")
				codes[w.Code]++
				if w.Code == 503 {
					if w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"transient"`) {
						t.Fatalf("503: %q %s", w.Header().Get("Retry-After"), w.Body)
					}
				}
			}
			w := h.do("POST", "/fhir/auth/token", "")
			if failOpen {
				// Admitted through the in-process fallback, which still
				// enforces the limit (burst 3) on this instance.
				if codes[200] != 3 || codes[429] != 2 {
					t.Fatalf("fail open: %v, want 3×200 then 2×429 from the fallback", codes)
				}
				if w.Code != 200 {
					t.Fatalf("fail open token: %d", w.Code)
				}
			} else {
				if codes[503] != 5 {
					t.Fatalf("fail closed: %v, want 5×503", codes)
				}
				var e map[string]string
				if w.Code != 503 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] != "temporarily_unavailable" {
					t.Fatalf("fail closed token: %d %s", w.Code, w.Body)
				}
			}
			if n := h.rec.failures[failOpen]; n != 6 {
				t.Fatalf("backend failures counted: %d, want 6", n)
			}
			// One log line for the burst of failures, then one more
			// after the throttle interval, carrying the suppressed count.
			if len(logs.lines) != 1 || !strings.Contains(logs.lines[0], "rate limit backend unavailable") {
				t.Fatalf("log lines: %q", logs.lines)
			}
			c.Add(backendLogEvery)
			h.do("GET", "/fhir/Patient/2", "", "X-Test-Client", "b")
			if len(logs.lines) != 2 || !strings.Contains(logs.lines[1], `"failures_not_logged":5`) {
				t.Fatalf("log lines: %q", logs.lines)
			}
		})
	}
}

// routed does what the FHIR API's router does before the stages: the
// request's interaction in its context (here by the shape of its path, as
// no route is registered).
func routed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ix := interaction.Parse("/fhir", r)
		next.ServeHTTP(w, r.WithContext(interaction.NewContext(r.Context(), ix)))
	})
}

// TestKeyCache: the limiter key of a caller is scope:hashID(id) whether
// it is computed or remembered, differs per scope, and the cache of keys
// stays bounded.
func TestKeyCache(t *testing.T) {
	m := New(Options{})
	for range 2 {
		if got, want := m.key(ScopeClient, "app"), ScopeClient+":"+hashID("app"); got != want {
			t.Fatalf("key %q, want %q", got, want)
		}
	}
	if m.key(ScopePatient, "app") == m.key(ScopeClient, "app") {
		t.Fatal("the same key in two scopes")
	}
	for i := range maxCachedKeys + 5 {
		m.key(ScopeIP, strconv.Itoa(i))
	}
	if n := len(m.keys); n > maxCachedKeys {
		t.Fatalf("%d cached keys, bound %d", n, maxCachedKeys)
	}
}

// TestSetHeadersValues: the RateLimit-Policy and RateLimit values, for
// one decision, several, and a refusal, are those of the draft's
// structured-field lists (what the strings.Builder version wrote).
func TestSetHeadersValues(t *testing.T) {
	client := decision{scope: ScopeClient, limit: Limit{Rate: 600, Period: time.Minute}, res: Result{Allowed: true, Remaining: 599, Reset: 1500 * time.Millisecond}}
	patient := decision{scope: ScopePatient, limit: Limit{Rate: 100000, Period: time.Hour}, res: Result{Allowed: false, Remaining: 0, Reset: time.Hour, RetryAfter: 2100 * time.Millisecond}}
	for _, tc := range []struct {
		ds          []decision
		policy, cur string
	}{
		{[]decision{client}, `"client";q=600;w=60`, `"client";r=599;t=2`},
		{[]decision{client, patient}, `"client";q=600;w=60, "patient";q=100000;w=3600`, `"client";r=599;t=2, "patient";r=0;t=3`},
	} {
		h := http.Header{}
		setHeaders(h, tc.ds)
		if h.Get("RateLimit-Policy") != tc.policy || h.Get("RateLimit") != tc.cur || len(h) != 2 {
			t.Errorf("%v: policy %q, current %q", h, h.Get("RateLimit-Policy"), h.Get("RateLimit"))
		}
	}
	h := http.Header{}
	setHeaders(h, nil)
	if len(h) != 0 {
		t.Errorf("no decision: %v", h)
	}
}
