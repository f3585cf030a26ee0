package netpolicy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/httpx"
)

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func req(peer string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
	r.RemoteAddr = peer
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestResolveXFF(t *testing.T) {
	p, err := New(Options{TrustedProxies: mustPrefixes(t, "10.0.0.0/8", "2001:db8:1::/48")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		peer    string
		headers []string
		want    string
	}{
		{"no header", "10.1.1.1:5000", nil, "10.1.1.1"},
		{"untrusted peer: header ignored (spoofing)", "203.0.113.9:5000", []string{"X-Forwarded-For", "198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer with many hops", "203.0.113.9:5000", []string{"X-Forwarded-For", "1.2.3.4, 10.0.0.1"}, "203.0.113.9"},
		{"trusted peer: honoured", "10.1.1.1:5000", []string{"X-Forwarded-For", "198.51.100.1"}, "198.51.100.1"},
		{"spoofed left entries skipped", "10.1.1.1:5000", []string{"X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.2.2.2"}, "198.51.100.1"},
		{"repeated header lines form one list", "10.1.1.1:5000", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "198.51.100.7, 10.2.2.2"}, "198.51.100.7"},
		{"all trusted: leftmost", "10.1.1.1:5000", []string{"X-Forwarded-For", "10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"malformed entry: ignored", "10.1.1.1:5000", []string{"X-Forwarded-For", "198.51.100.1, not-an-ip"}, "10.1.1.1"},
		{"empty element: ignored", "10.1.1.1:5000", []string{"X-Forwarded-For", "198.51.100.1,,"}, "10.1.1.1"},
		{"zone: ignored", "10.1.1.1:5000", []string{"X-Forwarded-For", "fe80::1%eth0"}, "10.1.1.1"},
		{"with port", "10.1.1.1:5000", []string{"X-Forwarded-For", "198.51.100.1:4444"}, "198.51.100.1"},
		{"IPv6 client", "10.1.1.1:5000", []string{"X-Forwarded-For", "2001:db8:99::5"}, "2001:db8:99::5"},
		{"bracketed IPv6 with port", "10.1.1.1:5000", []string{"X-Forwarded-For", "[2001:db8:99::5]:443"}, "2001:db8:99::5"},
		{"IPv6 trusted peer", "[2001:db8:1::7]:5000", []string{"X-Forwarded-For", "198.51.100.1"}, "198.51.100.1"},
		{"mapped IPv4 unmapped", "[::ffff:10.1.1.1]:5000", []string{"X-Forwarded-For", "::ffff:198.51.100.1"}, "198.51.100.1"},
		{"garbage prepended by the client cannot hide its address", "10.1.1.1:5000", []string{"X-Forwarded-For", "garbage, 198.51.100.1"}, "198.51.100.1"},
		{"Forwarded ignored when X-Forwarded-For configured", "10.1.1.1:5000", []string{"Forwarded", "for=198.51.100.1"}, "10.1.1.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := req(c.peer, c.headers...)
			if got := p.ResolveIP(r); got.String() != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	// A long chain of trusted hops is malformed; a long client-made prefix
	// is irrelevant.
	long := ""
	for i := 0; i < 40; i++ {
		long += "10.0.0.9,"
	}
	if got := p.ResolveIP(req("10.1.1.1:1", "X-Forwarded-For", "198.51.100.2,"+long+"10.0.0.8")); got.String() != "10.1.1.1" {
		t.Fatalf("long trusted chain: %s", got)
	}
	junk := strings.Repeat("x,", 3000)
	if got := p.ResolveIP(req("10.1.1.1:1", "X-Forwarded-For", junk+"198.51.100.2")); got.String() != "198.51.100.2" {
		t.Fatalf("long client prefix: %s", got)
	}
}

func TestResolveForwarded(t *testing.T) {
	p, err := New(Options{TrustedProxies: mustPrefixes(t, "10.0.0.0/8"), ForwardedHeader: "Forwarded"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, peer, value, want string }{
		{"simple", "10.0.0.1:1", "for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"},
		{"quoted IPv6 with port", "10.0.0.1:1", `for="[2001:db8:cafe::17]:4711"`, "2001:db8:cafe::17"},
		{"chain right to left", "10.0.0.1:1", "for=6.6.6.6, for=192.0.2.43, for=10.9.9.9", "192.0.2.43"},
		{"case-insensitive name", "10.0.0.1:1", "For=192.0.2.60", "192.0.2.60"},
		{"quoted comma inside value", "10.0.0.1:1", `for=192.0.2.60;ext="a,b"`, "192.0.2.60"},
		{"unknown: ignored", "10.0.0.1:1", "for=unknown", "10.0.0.1"},
		{"obfuscated: ignored", "10.0.0.1:1", "for=_hidden, for=192.0.2.1", "192.0.2.1"},
		{"obfuscated rightmost: ignored", "10.0.0.1:1", "for=192.0.2.1, for=_hidden", "10.0.0.1"},
		{"element without for: ignored", "10.0.0.1:1", "proto=https", "10.0.0.1"},
		{"unterminated quote: ignored", "10.0.0.1:1", `for="192.0.2.1`, "10.0.0.1"},
		{"untrusted peer", "192.0.2.99:1", "for=198.51.100.1", "192.0.2.99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.ResolveIP(req(c.peer, "Forwarded", c.value)); got.String() != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	// A broken line from the client does not hide the proxy's line.
	r := req("10.0.0.1:1", "Forwarded", `for="6.6.6.6`)
	r.Header.Add("Forwarded", "for=192.0.2.77")
	if got := p.ResolveIP(r); got.String() != "192.0.2.77" {
		t.Fatalf("broken client line: %s", got)
	}
	// X-Forwarded-For is not read in Forwarded mode.
	if got := p.ResolveIP(req("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1")); got.String() != "10.0.0.1" {
		t.Fatalf("XFF read in Forwarded mode: %s", got)
	}
	if _, err := New(Options{ForwardedHeader: "X-Real-IP"}); err == nil {
		t.Fatal("unsupported header accepted")
	}
}

func TestClientIPContext(t *testing.T) {
	p, _ := New(Options{TrustedProxies: mustPrefixes(t, "127.0.0.0/8")})
	var got netip.Addr
	h := p.Resolve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = httpx.ClientIP(r) }))
	h.ServeHTTP(httptest.NewRecorder(), req("127.0.0.1:9", "X-Forwarded-For", "198.51.100.3"))
	if got.String() != "198.51.100.3" {
		t.Fatalf("context: %s", got)
	}
	// Without Resolve, ClientIP is the peer, even with a forwarding header.
	if a := httpx.ClientIP(req("[::ffff:192.0.2.1]:9", "X-Forwarded-For", "198.51.100.3")); a.String() != "192.0.2.1" {
		t.Fatalf("fallback: %s", a)
	}
	if a := httpx.ClientIP(req("garbage")); a.IsValid() {
		t.Fatalf("garbage peer: %s", a)
	}
}

func TestParsePrefix(t *testing.T) {
	good := map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8",
		"192.0.2.7":           "192.0.2.7/32",
		"2001:db8::/32":       "2001:db8::/32",
		"2001:db8::1":         "2001:db8::1/128",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:192.0.2.7":    "192.0.2.7/32",
	}
	for in, want := range good {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "nope", "fe80::1%eth0", "::ffff:0:0/90", "10.0.0.0/8/8"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
