package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// check is a readiness check that returns err.
func check(name string, err error) Check {
	return Check{Name: name, Check: func(context.Context) error { return err }}
}

func start(t *testing.T, ready []Check, fhir http.Handler) (string, context.CancelFunc, chan error) {
	t.Helper()
	return startOpts(t, Options{Ready: ready, FHIR: fhir})
}

// startOpts serves opts on a free port, under /fhir, until the returned
// cancel; done receives Serve's result.
func startOpts(t *testing.T, opts Options) (string, context.CancelFunc, chan error) {
	t.Helper()
	opts.Addr, opts.Base, opts.Logger = "127.0.0.1:0", "/fhir", slog.New(slog.DiscardHandler)
	addr, cancel, done := serve(t, New(opts))
	t.Cleanup(cancel)
	return "http://" + addr, cancel, done
}

// serve runs s on its listener until the returned cancel; it returns the
// listener's address, and done receives Serve's result.
func serve(t *testing.T, s *Server) (string, context.CancelFunc, chan error) {
	t.Helper()
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return ln.Addr().String(), cancel, done
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServer(t *testing.T) {
	fhir := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fhir:" + r.URL.Path)) })
	base, cancel, done := start(t, []Check{check("db", nil)}, fhir)
	resp, body := get(t, base+"/healthz")
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", resp.StatusCode, body)
	}
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if resp, _ := get(t, base+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	if _, body := get(t, base+"/fhir/Patient/1"); body != "fhir:/fhir/Patient/1" {
		t.Fatalf("fhir route: %q", body)
	}
	if _, body := get(t, base+"/fhir"); body != "fhir:/fhir" {
		t.Fatalf("fhir base: %q", body)
	}
	if resp, _ := get(t, base+"/elsewhere"); resp.StatusCode != 404 {
		t.Fatalf("unknown path %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no graceful shutdown")
	}
}

func TestReadyzDown(t *testing.T) {
	base, _, _ := start(t, []Check{check("fhir-database", nil), check("redis", errors.New("dial tcp 10.0.0.1:6379: refused")), check("signing-keys", errors.New("x"))}, http.NotFoundHandler())
	resp, body := get(t, base+"/readyz")
	// The names of what is not ready, in order, and no internals.
	if resp.StatusCode != 503 || body != "not ready: redis, signing-keys\n" {
		t.Fatalf("readyz %d %q", resp.StatusCode, body)
	}
}

// TestServerBasePath: with a base path the FHIR handler is mounted there
// only, the health endpoints stay at the root, and Cache-Control: no-store
// follows the base path.
func TestServerBasePath(t *testing.T) {
	fhir := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fhir:" + r.URL.Path)) })
	s := New(Options{Addr: "127.0.0.1:0", Base: "/lapis/fhir", FHIR: fhir, Ready: []Check{check("db", nil)}, Logger: slog.New(slog.DiscardHandler)})
	addr, cancel, done := serve(t, s)
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + addr
	for _, p := range []string{"/lapis/fhir", "/lapis/fhir/Patient/1", "/lapis/fhir/auth/token"} {
		resp, body := get(t, base+p)
		if body != "fhir:"+p || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %q, Cache-Control %q", p, body, resp.Header.Get("Cache-Control"))
		}
	}
	for _, p := range []string{"/fhir/Patient/1", "/fhir", "/lapis", "/lapis/fhirx", "/lapis/healthz"} {
		if resp, _ := get(t, base+p); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, body := get(t, base+p); resp.StatusCode != 200 || body != "ok\n" || resp.Header.Get("Cache-Control") != "" {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
}

// TestLanding: GET / serves the landing handler when one is set; other
// paths outside /fhir stay 404, and without one / is 404 too.
func TestLanding(t *testing.T) {
	fhir := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fhir")) })
	landing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("landing")) })
	s := New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: fhir, Landing: landing, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, c := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, "landing"},
		{"HEAD", "/", 200, ""},
		{"GET", "/index.html", 404, ""},
		{"GET", "/x/", 404, ""},
		{"POST", "/", 405, ""},
		{"GET", "/fhir", 200, "fhir"},
	} {
		rr := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(rr, httptest.NewRequest(c.method, c.path, nil))
		if rr.Code != c.code || c.body != "" && rr.Body.String() != c.body {
			t.Errorf("%s %s: %d %q", c.method, c.path, rr.Code, rr.Body.String())
		}
	}
	s = New(Options{Addr: "127.0.0.1:0", Base: "/fhir", FHIR: fhir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rr := httptest.NewRecorder()
	s.http.Handler.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	if rr.Code != 404 {
		t.Errorf("without a landing page: %d", rr.Code)
	}
}

// TestGracefulShutdown: once Serve's context ends, /readyz answers 503
// "shutting down" to requests on open connections, the listener refuses
// new connections, and a request in flight completes before Serve returns
// nil.
func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("done"))
	})
	base, cancel, done := startOpts(t, Options{FHIR: slow, Ready: []Check{check("db", nil)}})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/fhir/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	cancel()
	// The listener closes: new connections are refused.
	poll.Until(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestReadyzDraining: the readiness handler answers 503 "shutting down"
// once draining, whatever its checks say.
func TestReadyzDraining(t *testing.T) {
	rd := &readiness{checks: []Check{check("db", nil)}}
	rd.draining.Store(true)
	rr := httptest.NewRecorder()
	rd.ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != 503 || rr.Body.String() != "shutting down\n" {
		t.Fatalf("draining: %d %q", rr.Code, rr.Body.String())
	}
}

// TestShutdownTimeout: a request still running after ShutdownTimeout is
// cut, and Serve reports the deadline.
func TestShutdownTimeout(t *testing.T) {
	entered := make(chan struct{})
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	base, cancel, done := startOpts(t, Options{FHIR: hang, ShutdownTimeout: 50 * time.Millisecond})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/fhir/hang")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve after the shutdown timeout: %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("the cut request got a response")
	}
}

// TestSecurityHeadersShared: the security headers' values are shared by
// every response, so a handler that adds to one, or replaces it, changes
// its own response only.
func TestSecurityHeadersShared(t *testing.T) {
	n := 0
	h := securityHeaders([]string{"/fhir"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		if n == 1 {
			w.Header().Add("X-Frame-Options", "SAMEORIGIN")
			w.Header().Add("Cache-Control", "private")
			w.Header().Set("Referrer-Policy", "origin")
		}
	}))
	for i := range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/fhir/Patient/1", nil))
		got := w.Result().Header
		wantFrame, wantCache, wantRef := "DENY", "no-store", "no-referrer"
		if i == 0 {
			wantFrame, wantCache, wantRef = "DENY,SAMEORIGIN", "no-store,private", "origin"
		}
		if f, c, r := strings.Join(got.Values("X-Frame-Options"), ","), strings.Join(got.Values("Cache-Control"), ","), got.Get("Referrer-Policy"); f != wantFrame || c != wantCache || r != wantRef {
			t.Fatalf("response %d: X-Frame-Options %q, Cache-Control %q, Referrer-Policy %q", i, f, c, r)
		}
		if got.Get("X-Content-Type-Options") != "nosniff" || got.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
			t.Fatalf("response %d: %v", i, got)
		}
	}
	for path, want := range map[string]string{"/fhir": "no-store", "/fhirx": "", "/fhir/": "no-store", "/other": ""} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if got := w.Result().Header.Get("Cache-Control"); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", path, got, want)
		}
	}
}
