package netpolicy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkStages measures the server-level stages on an allowed request
// behind a trusted proxy with the default user-agent rules.
func BenchmarkStages(b *testing.B) {
	p, err := New(Options{TrustedProxies: mustPrefixes(b, "10.0.0.0/8"), AllowIPs: mustPrefixes(b, "192.0.2.0/24"), DenyUserAgents: DefaultDenyUserAgents, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	h := p.Resolve(p.Global(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	r := req("10.0.0.1:5000", "X-Forwarded-For", "192.0.2.7", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkResolveOnly is the address resolution and allow-list alone.
func BenchmarkResolveOnly(b *testing.B) {
	p, err := New(Options{TrustedProxies: mustPrefixes(b, "10.0.0.0/8"), AllowIPs: mustPrefixes(b, "192.0.2.0/24"), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	h := p.Resolve(p.Global(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	r := req("10.0.0.1:5000", "X-Forwarded-For", "192.0.2.7")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
