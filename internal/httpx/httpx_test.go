package httpx

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddress(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	for remote, want := range map[string]string{"192.0.2.1:80": "192.0.2.1", "[::ffff:192.0.2.2]:9": "192.0.2.2", "[fe80::1%eth0]:1": "fe80::1%eth0", "garbage": ""} {
		r.RemoteAddr = remote
		if got := ClientAddr(r); got != want {
			t.Errorf("%s: %q, want %q", remote, got, want)
		}
	}
	r.RemoteAddr = "192.0.2.1:80"
	r = r.WithContext(WithClientIP(r.Context(), netip.MustParseAddr("::ffff:198.51.100.7")))
	if ClientIP(r).String() != "198.51.100.7" || PeerIP(r).String() != "192.0.2.1" {
		t.Fatalf("resolved %v, peer %v", ClientIP(r), PeerIP(r))
	}
}

// TestClientIPInInfo: within the server (a context with Info) the
// resolved address lives in the Info, so WithClientIP returns the same
// context (the request need not be copied), and the address set last is
// the one ClientIP returns; the peer is the fallback.
func TestClientIPInInfo(t *testing.T) {
	ctx, _ := NewContext(context.Background(), "id1")
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	r.RemoteAddr = "192.0.2.1:80"
	if got := ClientIP(r); got.String() != "192.0.2.1" {
		t.Fatalf("before resolution: %v", got)
	}
	if WithClientIP(ctx, netip.MustParseAddr("::ffff:198.51.100.7")) != ctx {
		t.Fatal("WithClientIP made a new context although the request has an Info")
	}
	if got := ClientIP(r); got.String() != "198.51.100.7" {
		t.Fatalf("resolved %v", got)
	}
	WithClientIP(ctx, netip.MustParseAddr("203.0.113.9"))
	if got := ClientAddr(r); got != "203.0.113.9" {
		t.Fatalf("after a second resolution %v", got)
	}
}

func TestWriteOAuthError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteOAuthError(w, 429, "temporarily_unavailable", "slow down")
	if w.Code != 429 || w.Header().Get("Cache-Control") != "no-store" || strings.TrimSpace(w.Body.String()) != `{"error":"temporarily_unavailable","error_description":"slow down"}` {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}

func TestInfo(t *testing.T) {
	SetRoute(context.Background(), "x", "y") // no Info: nothing happens
	ctx, ri := NewContext(context.Background(), "id1")
	if _, ok := ri.Route(); ok || ri.ClientID() != "" || RequestID(ctx) != "id1" {
		t.Fatal("fresh Info")
	}
	SetRoute(ctx, "fhir.read", "/fhir/{type}/{id}")
	SetClientID(ctx, "app")
	if r, ok := ri.Route(); !ok || r.Class != "fhir.read" || ri.ClientID() != "app" {
		t.Fatalf("%+v %q", r, ri.ClientID())
	}
	if PatternPath("GET /fhir/{type}") != "/fhir/{type}" || PatternPath("/x") != "/x" {
		t.Fatal("PatternPath")
	}
}

func TestRefusalAndRoute(t *testing.T) {
	ctx := context.Background()
	if Refusal(ctx) != "" {
		t.Fatal("a refusal outside a request")
	}
	SetRefusal(ctx, CauseScope) // no Info: ignored, no panic
	if _, ok := RouteOf(ctx); ok {
		t.Fatal("a route outside a request")
	}
	ctx, _ = NewContext(ctx, "req-1")
	if Refusal(ctx) != "" {
		t.Fatal("a refusal before any stage refused")
	}
	SetRefusal(ctx, CauseRateLimit)
	SetRefusal(ctx, CauseCompartment) // the innermost (last) stage wins
	SetRoute(ctx, "fhir.read", "/fhir/Patient/{id}")
	if Refusal(ctx) != CauseCompartment {
		t.Fatalf("refusal %q", Refusal(ctx))
	}
	if rt, ok := RouteOf(ctx); !ok || rt.Pattern != "/fhir/Patient/{id}" || rt.Class != "fhir.read" {
		t.Fatalf("route %+v %v", rt, ok)
	}
}

// TestLockoutAddr: IPv6 failures count per /64, like the rate limit.
func TestLockoutAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "::ffff:192.0.2.7",
		"not an address":       "not an address",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
	} {
		if got := LockoutAddr(in); got != want {
			t.Errorf("LockoutAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMethod(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE", "OPTIONS": "OPTIONS",
		"TRACE": "OTHER", "CONNECT": "OTHER", "get": "OTHER", "": "OTHER", "PROPFIND": "OTHER"} {
		if got := Method(m); got != want {
			t.Errorf("Method(%q) = %q, want %q", m, got, want)
		}
	}
}
