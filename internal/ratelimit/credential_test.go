package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/principal"
)

func TestParseCredentialLimit(t *testing.T) {
	for _, tc := range []struct {
		in    string
		burst int
		want  string
		spec  string
		err   bool
	}{
		{"", 0, "default", "", false},
		{"default", 0, "default", "", false},
		{"none", 0, "none", "none", false},
		{"0", 0, "none", "none", false},
		{"Unlimited", 0, "none", "none", false},
		{"500/s", 2000, "500/s burst 2000", "500/s", false},
		{"500/s", 0, "500/s burst 500", "500/s", false},
		{"6000/m", 100, "6000/m burst 100", "6000/m", false},
		{"10/30s", 0, "10/30s burst 10", "10/30s", false},
		{"none", 5, "", "", true},
		{"default", 5, "", "", true},
		{"lots", 0, "", "", true},
		{"5/s", -1, "", "", true},
	} {
		c, err := ParseCredentialLimit(tc.in, tc.burst)
		if (err != nil) != tc.err {
			t.Errorf("%q burst %d: error %v", tc.in, tc.burst, err)
			continue
		}
		if err != nil {
			continue
		}
		if c.String() != tc.want {
			t.Errorf("%q burst %d: %s, want %s", tc.in, tc.burst, c, tc.want)
		}
		spec, b := c.Spec()
		if spec != tc.spec {
			t.Errorf("%q: spec %q, want %q", tc.in, spec, tc.spec)
		}
		// The stored form reads back the same.
		if back, err := ParseCredentialLimit(spec, b); err != nil || back != c {
			t.Errorf("%q: round trip %v %v", tc.in, back, err)
		}
	}
}

func TestIsSystem(t *testing.T) {
	for _, tc := range []struct {
		p    principal.Principal
		want bool
	}{
		{principal.Principal{Scopes: []string{"system/*.*"}}, true},
		{principal.Principal{Scopes: []string{"system/Patient.rs", "system/Observation.cruds"}}, true},
		{principal.Principal{Scopes: []string{"system/*.rs", "user/*.rs"}}, false},
		{principal.Principal{Scopes: []string{"system/*.rs", "patient/*.rs"}}, false},
		{principal.Principal{Scopes: []string{"system/*.rs"}, Patient: "p1"}, false},
		{principal.Principal{Scopes: []string{"system/*.rs"}, FHIRUser: "Practitioner/1"}, false},
		{principal.Principal{Scopes: []string{"patient/*.rs"}, Patient: "p1"}, false},
		{principal.Principal{Scopes: []string{"openid", "fhirUser"}}, false},
		{principal.Principal{}, false},
	} {
		if got := IsSystem(&tc.p); got != tc.want {
			t.Errorf("IsSystem(%+v) = %v", tc.p, got)
		}
	}
}

// TestSystemClassLimit: a system credential is limited by System, an app
// acting for a patient or a user by Client, as before.
func TestSystemClassLimit(t *testing.T) {
	h := newHarness(t, Options{Client: Limit{Rate: 1, Period: time.Hour, Burst: 2}, System: Limit{Rate: 1, Period: time.Hour, Burst: 50}})
	admitted := func(client, scopes string, extra ...string) int {
		n := 0
		for range 60 {
			w := h.do("GET", "/fhir/Observation/1", "", append([]string{"X-Test-Client", client, "X-Test-Scopes", scopes}, extra...)...)
			if w.Code == http.StatusOK {
				n++
			}
		}
		return n
	}
	if n := admitted("loader", "system/*.*"); n != 50 {
		t.Errorf("system credential admitted %d of 60, want its class burst 50", n)
	}
	if n := admitted("app", "patient/*.rs", "X-Test-Patient", "p1"); n != 2 {
		t.Errorf("patient app admitted %d, want the client burst 2", n)
	}
	if n := admitted("mixed", "system/*.rs user/*.rs"); n != 2 {
		t.Errorf("system+user credential admitted %d, want the client burst 2", n)
	}
	w := h.do("GET", "/fhir/Observation/1", "", "X-Test-Client", "loader2", "X-Test-Scopes", "system/*.rs")
	if got := w.Header().Get("RateLimit-Policy"); got != `"client";q=1;w=3600` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	// A disabled System leaves system credentials without a per-client
	// limit, and the per-patient limit never applies to them.
	h = newHarness(t, Options{Client: Limit{Rate: 1, Period: time.Hour, Burst: 2}, Patient: Limit{Rate: 1, Period: time.Hour, Burst: 5}})
	if n := admitted("loader", "system/*.*"); n != 60 {
		t.Errorf("system credential with System disabled admitted %d of 60", n)
	}
	n := 0
	for range 10 {
		if w := h.do("GET", "/fhir/Patient/p9", "", "X-Test-Client", "loader", "X-Test-Scopes", "system/*.*"); w.Code == http.StatusOK {
			n++
		}
	}
	if n != 10 {
		t.Errorf("per-patient limit applied to a system credential: %d of 10 admitted", n)
	}
}

// fakeCreds is a CredentialSource and a CredentialFeed.
type fakeCreds struct {
	mu    sync.Mutex
	m     map[string]authdb.RateLimit // "kind:id"
	reads int
	fail  bool
	fn    authdb.RevSubscriber
}

func (f *fakeCreds) CredentialRateLimit(_ context.Context, kind, id string) (authdb.RateLimit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.fail {
		return authdb.RateLimit{}, errors.New("database down")
	}
	return f.m[kind+":"+id], nil
}

func (f *fakeCreds) Subscribe(fn authdb.RevSubscriber) func() { f.fn = fn; return func() {} }

func (f *fakeCreds) set(key string, r authdb.RateLimit) {
	f.mu.Lock()
	f.m[key] = r
	f.mu.Unlock()
	f.fn([]authdb.RevEntry{{Kind: authdb.RevRateLimit, Subject: key}}, false)
}

// TestCredentialOwnLimit: a credential's own limit replaces its class
// default (and shows in RateLimit-Policy); "none" lifts the per-client
// limit; a change announced by the revocation log applies to the next
// request; limits are cached between changes.
func TestCredentialOwnLimit(t *testing.T) {
	src := &fakeCreds{m: map[string]authdb.RateLimit{
		"apikey:lim":  {Limit: "3/h", Burst: 3},
		"apikey:free": {Limit: "none"},
		"client:cl":   {Limit: "5/h", Burst: 5},
		"apikey:cl":   {Limit: "none"}, // another kind of credential
	}}
	cache := NewCredentialCache(src, src, CredentialCacheOptions{})
	h := newHarness(t, Options{Client: Limit{Rate: 1, Period: time.Hour, Burst: 1}, Credentials: cache})
	admitted := func(client string, extra ...string) (int, http.Header) {
		n := 0
		var last http.Header
		for range 10 {
			w := h.do("GET", "/fhir/Observation/1", "", append([]string{"X-Test-Client", client}, extra...)...)
			if w.Code == http.StatusOK {
				n++
			}
			last = w.Header()
		}
		return n, last
	}
	if n, hdr := admitted("lim"); n != 3 || hdr.Get("RateLimit-Policy") != `"client";q=3;w=3600` {
		t.Fatalf("own limit 3/h: %d admitted, policy %q", n, hdr.Get("RateLimit-Policy"))
	}
	if n, _ := admitted("cl", "X-Test-Method", "bearer"); n != 5 {
		t.Fatalf("OAuth client with its own 5/h: %d admitted", n)
	}
	if n, hdr := admitted("free"); n != 10 || hdr.Get("RateLimit-Policy") != "" {
		t.Fatalf("unlimited credential: %d admitted, policy %q", n, hdr.Get("RateLimit-Policy"))
	}
	if n, _ := admitted("plain"); n != 1 {
		t.Fatalf("credential without a limit: %d admitted, want the default burst 1", n)
	}
	src.mu.Lock()
	reads := src.reads
	src.mu.Unlock()
	if reads != 4 {
		t.Fatalf("%d reads for 4 credentials and 40 requests, want 4: not cached", reads)
	}
	// A change announced by the log applies at once.
	src.set("apikey:plain", authdb.RateLimit{Limit: "none"})
	if n, _ := admitted("plain"); n != 10 {
		t.Fatalf("after lifting the limit: %d admitted", n)
	}
	src.set("apikey:free", authdb.RateLimit{})
	if n, _ := admitted("free"); n != 1 {
		t.Fatalf("after restoring the default: %d admitted, want 1", n)
	}
	// After a feed outage everything is re-read.
	src.mu.Lock()
	src.m["apikey:lim"] = authdb.RateLimit{Limit: "none"}
	src.mu.Unlock()
	src.fn(nil, true)
	if n, _ := admitted("lim"); n != 10 {
		t.Fatalf("after a reset: %d admitted", n)
	}
	// A read failure falls back to the class default, uncached.
	src.mu.Lock()
	src.fail = true
	src.mu.Unlock()
	src.fn(nil, true)
	if n, _ := admitted("free2"); n != 1 {
		t.Fatalf("read failure: %d admitted, want the default 1", n)
	}
}

// TestCredentialCacheRace: a read racing a change is not cached, so the
// change cannot be lost.
func TestCredentialCacheRace(t *testing.T) {
	src := &fakeCreds{m: map[string]authdb.RateLimit{"apikey:k": {Limit: "1/h", Burst: 1}}}
	var c *CredentialCache
	racing := &racySource{fakeCreds: src}
	c = NewCredentialCache(racing, src, CredentialCacheOptions{})
	racing.during = func() { src.set("apikey:k", authdb.RateLimit{Limit: "none"}) }
	p := &principal.Principal{Method: "apikey", ClientID: "k"}
	if got := c.LimitFor(context.Background(), p); got.String() != "1/h burst 1" {
		t.Fatalf("first read %s", got)
	}
	if got := c.LimitFor(context.Background(), p); got.String() != "none" {
		t.Fatalf("after a racing change: %s (stale value cached)", got)
	}
}

// racySource runs during once, in the middle of the first read (after
// the value was read).
type racySource struct {
	*fakeCreds
	during func()
	once   sync.Once
}

func (r *racySource) CredentialRateLimit(ctx context.Context, kind, id string) (authdb.RateLimit, error) {
	v, err := r.fakeCreds.CredentialRateLimit(ctx, kind, id)
	r.once.Do(r.during)
	return v, err
}
