package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func scrapeText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

func TestRequestLogAndMetrics(t *testing.T) {
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := metrics.New()
	serve := func(w http.ResponseWriter, r *http.Request) {
		httpx.SetClientID(r.Context(), "client-123")
		if RequestID(r.Context()) == "" || r.Header.Get(HeaderRequestID) != RequestID(r.Context()) {
			t.Error("request id not visible to handlers")
		}
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(404)
			return
		}
		_, _ = w.Write([]byte("{}"))
	}
	// The FHIR handler names its routes to the request log.
	fhir := http.NewServeMux()
	for pattern, class := range map[string]string{"GET /fhir/{type}/{id}": "fhir.read", "POST /fhir/{type}/_search": "fhir.search-type"} {
		fhir.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			httpx.SetRoute(r.Context(), class, httpx.PatternPath(pattern))
			serve(w, r)
		})
	}
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
	if first["route"] != "/fhir/{type}/{id}" || first["method"] != "GET" || first["status"].(float64) != 200 || first["client_id"] != "client-123" ||
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

type routedKey struct{}
