package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/metrics"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func scrapeText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRequestLogAndMetrics(t *testing.T) {
	logs := &syncBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := metrics.New()
	fhir := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetClientID(r.Context(), "client-123")
		if RequestID(r.Context()) == "" || r.Header.Get(HeaderRequestID) != RequestID(r.Context()) {
			t.Error("request id not visible to handlers")
		}
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(404)
			return
		}
		_, _ = w.Write([]byte("{}"))
	})
	h := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: fhir, Logger: log, Metrics: m}).http.Handler

	do := func(method, target string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		r.RemoteAddr = "127.0.0.1:4000"
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := do("GET", "/fhir/Patient/secret-id-42?name=SecretName&access_token=tok123", "X-Request-ID", "abc-123")
	if w.Header().Get(HeaderRequestID) != "abc-123" {
		t.Fatalf("request id not echoed: %v", w.Header())
	}
	if w.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS on plain HTTP")
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Fatal("FHIR response without Cache-Control: no-store")
	}
	w = do("GET", "/fhir/Observation/missing", "X-Request-ID", "bad id\nwith newline")
	gen := w.Header().Get(HeaderRequestID)
	if len(gen) != 32 || strings.Contains(gen, " ") {
		t.Fatalf("invalid request id not replaced: %q", gen)
	}
	do("POST", "/fhir/Patient/_search")
	do("GET", "/healthz")

	out := logs.String()
	for _, leak := range []string{"secret-id-42", "SecretName", "tok123", "name="} {
		if strings.Contains(out, leak) {
			t.Fatalf("log carries %q:\n%s", leak, out)
		}
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if v["msg"] == "request" {
			lines = append(lines, v)
		}
	}
	if len(lines) != 4 {
		t.Fatalf("want 4 request lines, got %d:\n%s", len(lines), out)
	}
	first := lines[0]
	if first["route"] != "/fhir/Patient/{id}" || first["method"] != "GET" || first["status"].(float64) != 200 || first["client_id"] != "client-123" ||
		first["request_id"] != "abc-123" || first["level"] != "DEBUG" {
		t.Fatalf("log line %v", first)
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Fatalf("no duration: %v", first)
	}
	if lines[1]["level"] != "INFO" || lines[1]["status"].(float64) != 404 || lines[1]["request_id"] != gen {
		t.Fatalf("404 line %v", lines[1])
	}

	body := scrapeText(t, m)
	for _, want := range []string{
		`lapis_http_requests_total{method="GET",route="fhir.read",status="200"} 1`,
		`lapis_http_requests_total{method="GET",route="fhir.read",status="404"} 1`,
		`lapis_http_requests_total{method="POST",route="fhir.search-type",status="200"} 1`,
		`lapis_http_requests_total{method="GET",route="healthz",status="200"} 1`,
		`lapis_http_request_duration_seconds_bucket{method="GET",route="fhir.read",le="0.005"}`,
		`lapis_http_requests_in_flight 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

func TestMetricsEndpointGuard(t *testing.T) {
	m := metrics.New()
	h := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: http.NotFoundHandler(), Logger: quiet, Metrics: m}).http.Handler
	get := func(peer string, hdr ...string) int {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = peer
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 200 && !strings.Contains(w.Body.String(), "lapis_http_requests_in_flight") {
			t.Fatalf("metrics body %q", w.Body.String())
		}
		return w.Code
	}
	if c := get("127.0.0.1:5"); c != 200 {
		t.Fatalf("loopback: %d", c)
	}
	if c := get("[::1]:5"); c != 200 {
		t.Fatalf("IPv6 loopback: %d", c)
	}
	if c := get("192.0.2.1:5"); c != 404 {
		t.Fatalf("remote: %d", c)
	}
	if c := get("127.0.0.1:5", "X-Forwarded-For", "192.0.2.1"); c != 404 {
		t.Fatalf("through a local proxy: %d", c)
	}
	// A custom guard.
	h = New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: http.NotFoundHandler(), Logger: quiet, Metrics: m,
		MetricsAllowed: func(r *http.Request) bool { return r.RemoteAddr == "192.0.2.1:5" }}).http.Handler
	if c := get("192.0.2.1:5"); c != 200 {
		t.Fatalf("custom guard: %d", c)
	}

	// The separate listener serves /metrics to anyone who reaches it.
	s := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: http.NotFoundHandler(), Logger: quiet})
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeMetrics(ctx, ln, m, quiet) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "lapis_http_requests_in_flight") {
		t.Fatalf("metrics listener %d", resp.StatusCode)
	}
	if resp, _ := http.Get("http://" + ln.Addr().String() + "/fhir/Patient"); resp == nil || resp.StatusCode != 404 {
		t.Fatal("metrics listener serves other paths")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRoute(t *testing.T) {
	cases := []struct{ method, path, class, pattern string }{
		{"GET", "/fhir", "fhir.search-system", "/fhir"},
		{"POST", "/fhir/", "fhir.batch", "/fhir"},
		{"GET", "/fhir/metadata", "fhir.metadata", "/fhir/metadata"},
		{"GET", "/fhir/Patient", "fhir.search-type", "/fhir/Patient"},
		{"POST", "/fhir/Patient", "fhir.create", "/fhir/Patient"},
		{"DELETE", "/fhir/Patient", "fhir.conditional-delete", "/fhir/Patient"},
		{"POST", "/fhir/Patient/_search", "fhir.search-type", "/fhir/Patient/_search"},
		{"GET", "/fhir/Patient/123", "fhir.read", "/fhir/Patient/{id}"},
		{"PUT", "/fhir/Patient/123", "fhir.update", "/fhir/Patient/{id}"},
		{"GET", "/fhir/Patient/123/_history", "fhir.history-instance", "/fhir/Patient/{id}/_history"},
		{"GET", "/fhir/Patient/123/_history/2", "fhir.vread", "/fhir/Patient/{id}/_history/{vid}"},
		{"GET", "/fhir/_history", "fhir.history-system", "/fhir/_history"},
		{"GET", "/fhir/pat'ient/1", "fhir.read", "/fhir/{type}/{id}"},
		{"GET", "/fhir/Patient/1/$everything", "fhir.other", "/fhir/{path}"},
		{"GET", "/fhir/Patient/1/Observation", "fhir.search-compartment", "/fhir/{compartment}/{id}/{type}"},
		{"POST", "/fhir/Patient/1/*/_search", "fhir.search-compartment", "/fhir/{compartment}/{id}/{type}"},
		{"PATCH", "/fhir/Patient", "fhir.conditional-patch", "/fhir/Patient"},
		{"POST", "/fhir/Patient/1/Observation", "fhir.other", "/fhir/{path}"},
		{"GET", "/fhir/_search", "fhir.search-system", "/fhir/_search"},
		{"POST", "/fhir/auth/token", "auth.token", "/fhir/auth/token"},
		{"GET", "/fhir/auth/userinfo", "auth.userinfo", "/fhir/auth/userinfo"},
		{"GET", "/fhir/auth/smart-style.json", "auth.smart-style", "/fhir/auth/smart-style.json"},
		{"GET", "/fhir/auth/admin/clients/x", "auth.admin", "/fhir/auth/admin/{path}"},
		{"GET", "/fhir/auth/whatever", "auth.other", "/fhir/auth/{other}"},
		{"GET", "/fhir/.well-known/smart-configuration", "auth.discovery", "/fhir/.well-known/{document}"},
		{"OPTIONS", "/fhir/Patient", "fhir.options", "/fhir/{path}"},
		{"GET", "/fhirx", "other", "/{other}"},
		{"GET", "/readyz", "readyz", "/readyz"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://x"+strings.ReplaceAll(c.path, "'", "%27"), nil)
		if class, pattern := Route("/fhir", r); class != c.class || pattern != c.pattern {
			t.Errorf("%s %s: %s %s, want %s %s", c.method, c.path, class, pattern, c.class, c.pattern)
		}
		// The same routes under a base path with a prefix.
		r = httptest.NewRequest(c.method, "http://x/lapis"+strings.ReplaceAll(c.path, "'", "%27"), nil)
		class, pattern := Route("/lapis/fhir", r)
		if c.class == "readyz" {
			class, pattern = c.class, c.pattern // /lapis/readyz is no health endpoint
		} else if c.class != "other" {
			pattern = strings.TrimPrefix(pattern, "/lapis")
		}
		if class != c.class || pattern != c.pattern {
			t.Errorf("/lapis: %s %s: %s %s, want %s %s", c.method, c.path, class, pattern, c.class, c.pattern)
		}
	}
	// Outside the base path: not FHIR.
	if class, _ := Route("/lapis/fhir", httptest.NewRequest("GET", "/fhir/Patient/1", nil)); class != "other" {
		t.Errorf("/fhir/Patient/1 under /lapis/fhir: %s", class)
	}
}

func TestSearchTimeout(t *testing.T) {
	var deadline time.Time
	var has bool
	h := SearchTimeout("/fhir", 50*time.Millisecond)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, has = r.Context().Deadline()
	}))
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/fhir/Observation", true},
		{"POST", "/fhir/Observation/_search", true},
		{"GET", "/fhir", true},
		{"POST", "/fhir/_search", true},
		{"GET", "/fhir/Patient/1/_history", true},
		{"GET", "/fhir/Patient/1", false},
		{"POST", "/fhir/Patient", false},
		{"POST", "/fhir", false},
		// Compartment searches and $everything are searches too (Route
		// used to call them fhir.other, outside the budget).
		{"GET", "/fhir/Patient/1/Observation", true},
		{"POST", "/fhir/Patient/1/Observation/_search", true},
		{"GET", "/fhir/Patient/1/$everything", true},
		{"POST", "/fhir/Group/1/$export", false},
	} {
		has = false
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		if has != c.want || (has && time.Until(deadline) > 50*time.Millisecond) {
			t.Errorf("%s %s: deadline %v (%v)", c.method, c.path, has, deadline)
		}
	}
	if SearchTimeout("/fhir", 0) != nil {
		t.Fatal("zero budget made a stage")
	}
}
