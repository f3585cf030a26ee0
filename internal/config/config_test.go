package config

import (
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	c := Defaults()
	if err := c.Normalize(true); err != nil {
		t.Fatal(err)
	}
	if c.Server.BaseURL != "http://127.0.0.1:8080" || c.FHIRBase() != "http://127.0.0.1:8080/fhir" || c.FHIRPath() != "/fhir" {
		t.Fatalf("base %q", c.Server.BaseURL)
	}
	c = Defaults()
	c.Server.BaseURL = "https://fhir.example.org/"
	if err := c.Normalize(true); err != nil || c.Server.BaseURL != "https://fhir.example.org" {
		t.Fatalf("%v %q", err, c.Server.BaseURL)
	}
	bad := []func(*Config){
		func(c *Config) { c.Server.Addr = "nope" },
		func(c *Config) { c.Server.Addr = "0.0.0.0:80" },
		func(c *Config) { c.Server.Addr = "10.1.2.3:80" },
		func(c *Config) { c.Server.BaseURL = "ftp://x" },
		func(c *Config) { c.Server.BaseURL = "http://x/?q=1" },
		func(c *Config) { c.Database.URL = "mysql://x" },
		func(c *Config) { c.FHIR.MaxBodyBytes = 0 },
	}
	for i, f := range bad {
		c := Defaults()
		f(&c)
		if err := c.Normalize(true); err == nil {
			t.Errorf("case %d: expected error", i)
		}
	}
	c = Defaults()
	c.Server.Addr = "0.0.0.0:8080"
	c.Server.AllowRemote = true
	if err := c.Normalize(true); err != nil || c.Server.BaseURL != "http://localhost:8080" {
		t.Fatalf("%v %q", err, c.Server.BaseURL)
	}
	if c := ServeDefaults(); c.Normalize(true) != nil {
		t.Fatal("the serve defaults do not pass the serve checks")
	}
}

// TestBasePath: a path in the base URL moves the FHIR base, the issuer
// and every route under it, computed in one place; a path that a router
// or proxy could read differently is refused.
func TestBasePath(t *testing.T) {
	c := Defaults()
	c.Server.BaseURL = "http://127.0.0.1:18931/lapis/"
	if err := c.Normalize(true); err != nil {
		t.Fatal(err)
	}
	if c.FHIRBase() != "http://127.0.0.1:18931/lapis/fhir" || c.FHIRPath() != "/lapis/fhir" || c.Origin() != "http://127.0.0.1:18931" {
		t.Fatalf("base %q, path %q, origin %q", c.FHIRBase(), c.FHIRPath(), c.Origin())
	}
	c.Server.BaseURL = "https://example.org/a/sandbox-2"
	if err := c.Normalize(true); err != nil || c.FHIRPath() != "/a/sandbox-2/fhir" || c.Origin() != "https://example.org" {
		t.Fatalf("%v: path %q origin %q", err, c.FHIRPath(), c.Origin())
	}
	for _, bad := range []string{"http://x//a", "http://x/a/../b", "http://x/./a", "http://x/{id}", "http://x/a%2Fb", "http://x/a b", "http://user:pw@x/a", "http://x/a?", "http://x/a#f"} {
		c := Defaults()
		c.Server.BaseURL = bad
		if err := c.Normalize(true); err == nil || !strings.Contains(err.Error(), "--base-url") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestServeChecks: the listener, TLS, gateway, rate-limit and audit
// settings are checked here, and the errors name the flag.
func TestServeChecks(t *testing.T) {
	cases := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.TLS.CertFile = "c" }, "--tls-cert and --tls-key"},
		{func(c *Config) { c.TLS.KeyFile = "k" }, "--tls-cert and --tls-key"},
		{func(c *Config) { c.Auth.DevNoAuth, c.Server.AllowRemote = true, true }, "--dev-no-auth cannot be combined with --allow-remote"},
		{func(c *Config) {
			c.Auth.DevNoAuth, c.Server.Addr, c.TLS = true, "0.0.0.0:8443", TLS{CertFile: "c", KeyFile: "k"}
		}, "--dev-no-auth"},
		{func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		{func(c *Config) { c.Server.IdleTimeout = 0 }, "--idle-timeout must be positive"},
		{func(c *Config) { c.FHIR.SearchTimeout = -time.Second }, "--search-timeout"},
		{func(c *Config) { c.FHIR.USCoreVersion = "5.0.1" }, "--us-core-version"},
		{func(c *Config) { c.FHIR.ProfileValidation = "strict" }, "--profile-validation"},
		{func(c *Config) { c.Gateway.TrustedProxies = []string{"10.0.0.0/33"} }, "--trusted-proxies: invalid address"},
		{func(c *Config) { c.Gateway.AllowIPs = []string{"nope"} }, "--allow-ip: invalid address"},
		{func(c *Config) { c.Gateway.ForwardedHeader = "X-Real-IP" }, "--forwarded-header"},
		{func(c *Config) { c.Metrics.Allow = []string{"fe80::1%eth0"} }, "--metrics-allow: invalid address"},
		{func(c *Config) { c.RateLimit.Client = "lots" }, "--rate-limit-client: invalid rate limit"},
		{func(c *Config) { c.RateLimit.Patient = "5/fortnight" }, "--rate-limit-patient: invalid rate limit"},
		{func(c *Config) { c.RateLimit.AuthIPBurst = -1 }, "--rate-limit-auth-ip: invalid burst"},
		{func(c *Config) { c.RateLimit.Costs = "read=1,fetch=2" }, "--rate-limit-costs: invalid rate-limit cost"},
		{func(c *Config) { c.RateLimit.RedisFailure = "maybe" }, "--rate-limit-redis-failure"},
		{func(c *Config) { c.Audit.CopyDuty = 2 }, "--audit-copy-duty"},
		{func(c *Config) { c.Audit.CopyLag = time.Millisecond }, "--audit-copy-lag"},
		{func(c *Config) { c.Audit.AlertWebhook = "http://alerts.example.org/hook" }, "--alert-webhook"},
	}
	for _, tc := range cases {
		c := ServeDefaults()
		tc.edit(&c)
		err := c.Normalize(true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	// The admin commands check only what they use.
	c := Defaults()
	c.RateLimit.Client = "lots"
	if err := c.Normalize(false); err != nil {
		t.Fatalf("admin command: %v", err)
	}
	// Audit off: its alert webhook is not used.
	c = ServeDefaults()
	c.Audit.Enabled, c.Audit.AlertWebhook = false, "http://alerts.example.org/hook"
	if err := c.Normalize(true); err != nil {
		t.Fatalf("--no-audit: %v", err)
	}
}

// TestTLSListener: a TLS listener may bind any address (the loopback rule
// keeps plaintext on loopback) and makes the default base URL https.
func TestTLSListener(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8443":   "https://localhost:8443",
		"10.1.2.3:8443":  "https://10.1.2.3:8443",
		"127.0.0.1:8443": "https://127.0.0.1:8443",
	} {
		c := ServeDefaults()
		c.Server.Addr, c.TLS = addr, TLS{CertFile: "c", KeyFile: "k"}
		if err := c.Normalize(true); err != nil || c.Server.BaseURL != want {
			t.Errorf("%s: %v base %q", addr, err, c.Server.BaseURL)
		}
	}
	c := ServeDefaults()
	c.Server.Addr, c.Server.BaseURL, c.TLS = "0.0.0.0:8443", "https://fhir.example.org", TLS{CertFile: "c", KeyFile: "k"}
	if err := c.Normalize(true); err != nil || c.Server.BaseURL != "https://fhir.example.org" {
		t.Fatalf("explicit base: %v %q", err, c.Server.BaseURL)
	}
}

func TestPortalSMTPChecks(t *testing.T) {
	for _, c := range []struct {
		url, from string
		ok        bool
	}{
		{"", "", true},
		{"smtp://u:p@mail.example.org:587", "portal@example.org", true},
		{"smtp://u:p@mail.example.org:587", "", false},
		{"smtp://u:p@mail.example.org:587", "not an address", false},
		{"http://mail.example.org", "portal@example.org", false},
	} {
		cfg := ServeDefaults()
		cfg.Database.DataDir = t.TempDir()
		cfg.Portal.SMTPURL, cfg.Portal.SMTPFrom = c.url, c.from
		err := cfg.Normalize(true)
		if (err == nil) != c.ok {
			t.Errorf("%q %q: %v", c.url, c.from, err)
		}
		if err != nil && strings.Contains(err.Error(), ":p@") {
			t.Errorf("password in error: %v", err)
		}
	}
	if !Defaults().Portal.Enabled || !Defaults().Portal.DevMail() {
		t.Fatal("portal defaults")
	}
}
