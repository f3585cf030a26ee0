package jwksfetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const set = `{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`

func TestCacheControl(t *testing.T) {
	var hits atomic.Int32
	cc := "max-age=600"
	body := set
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", cc)
		_, _ = w.Write([]byte(body))
	}))
	defer ts.Close()
	f := New(Options{AllowPrivate: true, MaxBytes: 4096})
	ctx := context.Background()
	for range 3 {
		s, err := f.Get(ctx, ts.URL+"/a", false)
		if err != nil || len(s.Keys) != 1 || s.Keys[0].KeyID != "a" {
			t.Fatal(s, err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("max-age: %d fetches", hits.Load())
	}
	// A refresh within MinRefresh is served from the cache.
	if _, err := f.Get(ctx, ts.URL+"/a", true); err != nil || hits.Load() != 1 {
		t.Fatalf("refresh rate limit: %d", hits.Load())
	}
	cc = "no-store"
	for range 2 {
		if _, err := f.Get(ctx, ts.URL+"/b", false); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 3 {
		t.Fatalf("no-store: %d fetches", hits.Load())
	}
	body = `{"keys":[` + strings.Repeat(`{"kty":"oct","k":"AAAA"},`, 300) + `{}]}`
	if _, err := f.Get(ctx, ts.URL+"/c", false); err == nil {
		t.Fatal("oversized JWKS accepted")
	}
	// Without AllowPrivate, loopback and plain http are refused.
	if _, err := New(Options{Timeout: time.Second}).Get(ctx, ts.URL+"/a", false); err == nil {
		t.Fatal("loopback fetched")
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{"": DefaultTTL, "max-age=60": time.Minute, "public, max-age=99999": MaxTTL, "no-cache": 0, "no-store, max-age=60": 0, "max-age=x": 0} {
		if got := cacheTTL(cc); got != want {
			t.Errorf("%q: %v, want %v", cc, got, want)
		}
	}
}

func TestPublic(t *testing.T) {
	for a, want := range map[string]bool{"8.8.8.8": true, "127.0.0.1": false, "10.1.2.3": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "::1": false, "fc00::1": false, "fe80::1": false, "::ffff:127.0.0.1": false, "2606:4700::1111": true, "0.0.0.0": false} {
		if Public(netip.MustParseAddr(a)) != want {
			t.Errorf("%s: want %v", a, want)
		}
	}
}
