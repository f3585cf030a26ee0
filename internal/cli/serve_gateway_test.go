package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestServeTLSFlags: with --tls-cert and --tls-key lapis serve may bind
// any address and its default base URL is https.
func TestServeTLSFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr, cert, key string
		remote          bool
		wantErr         string
		wantBase        string
	}{
		{addr: "0.0.0.0:8443", cert: "c", key: "k", wantBase: "https://localhost:8443"},
		{addr: "10.1.2.3:8443", cert: "c", key: "k", wantBase: "https://10.1.2.3:8443"},
		{addr: "127.0.0.1:8443", cert: "c", key: "k", wantBase: "https://127.0.0.1:8443"},
		{addr: "0.0.0.0:8080", wantErr: "allow-remote"},
		{addr: "0.0.0.0:8080", remote: true, wantBase: "http://localhost:8080"},
		{addr: "127.0.0.1:8443", cert: "c", wantErr: "--tls-key"},
		{addr: "127.0.0.1:8443", key: "k", wantErr: "--tls-key"},
	}
	for _, c := range cases {
		args := []string{"--addr", c.addr}
		if c.cert != "" {
			args = append(args, "--tls-cert", c.cert)
		}
		if c.key != "" {
			args = append(args, "--tls-key", c.key)
		}
		if c.remote {
			args = append(args, "--allow-remote")
		}
		cfg, err := parseServe(t, args...)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: err %v, want %q", c, err, c.wantErr)
			}
			continue
		}
		if err != nil || cfg.Server.BaseURL != c.wantBase {
			t.Errorf("%+v: %v base %q", c, err, cfg.Server.BaseURL)
		}
	}
	// An explicit base URL is kept.
	if cfg, err := parseServe(t, "--addr", "0.0.0.0:8443", "--base-url", "https://fhir.example.org", "--tls-cert", "c", "--tls-key", "k"); err != nil || cfg.Server.BaseURL != "https://fhir.example.org" {
		t.Fatalf("%v %q", err, cfg.Server.BaseURL)
	}
}

func TestDevNoAuthTLSRemote(t *testing.T) {
	t.Parallel()
	code, _, errs := run("serve", "--dev-no-auth", "--addr", "0.0.0.0:0", "--tls-cert", "c", "--tls-key", "k", "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "--dev-no-auth") {
		t.Fatalf("dev-no-auth with TLS on every interface: %d %q", code, errs)
	}
	code, _, errs = run("serve", "--allow-ip", "10.0.0.0/33", "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "--allow-ip") {
		t.Fatalf("bad --allow-ip: %d %q", code, errs)
	}
}

func TestClientNetworkCommand(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, _ string, db []string, _ string) {
		// Invalid values are refused before anything is created.
		for _, bad := range [][]string{{"--allow-ip", "10.0.0.0/40"}, {"--cors-origin", "http://app.example"}, {"--cors-origin", "https://app.example/path"}} {
			code, _, errs := run(append(append([]string{"client", "create", "--name", "bad", "--type", "public", "--redirect-uri", "https://a.example/cb", "--scope", "openid"}, bad...), db...)...)
			if code == 0 || errs == "" {
				t.Fatalf("%v accepted", bad)
			}
		}
		if code, out, _ := run(append([]string{"client", "list", "--json"}, db...)...); code != 0 || strings.TrimSpace(out) != "[]" {
			t.Fatalf("a refused client was created: %s", out)
		}
		code, out, errs := run(append([]string{"client", "create", "--name", "web", "--type", "public", "--redirect-uri", "https://a.example/cb", "--scope", "openid",
			"--allow-ip", "192.0.2.7", "--allow-ip", "2001:db8::/32", "--cors-origin", "https://App.Example:443", "--json"}, db...)...)
		if code != 0 {
			t.Fatalf("create: %s", errs)
		}
		var created struct {
			ClientID string `json:"client_id"`
		}
		if err := json.Unmarshal([]byte(out), &created); err != nil || created.ClientID == "" {
			t.Fatalf("create output %q", out)
		}
		type rules struct {
			ClientID    string   `json:"client_id"`
			AllowIPs    []string `json:"allow_ips"`
			CORSOrigins []string `json:"cors_origins"`
		}
		show := func(args ...string) rules {
			t.Helper()
			code, out, errs := run(append(append([]string{"client", "network", created.ClientID, "--json"}, args...), db...)...)
			if code != 0 {
				t.Fatalf("network %v: %s", args, errs)
			}
			var r rules
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("network output %q", out)
			}
			return r
		}
		r := show()
		if strings.Join(r.AllowIPs, " ") != "192.0.2.7/32 2001:db8::/32" || strings.Join(r.CORSOrigins, " ") != "https://app.example" {
			t.Fatalf("stored rules %+v", r)
		}
		r = show("--allow-ip", "10.0.0.0/8")
		if strings.Join(r.AllowIPs, " ") != "10.0.0.0/8" || strings.Join(r.CORSOrigins, " ") != "https://app.example" {
			t.Fatalf("replaced allow-list %+v", r)
		}
		r = show("--clear")
		if len(r.AllowIPs) != 0 || len(r.CORSOrigins) != 0 {
			t.Fatalf("cleared %+v", r)
		}
		if code, _, _ := run(append([]string{"client", "network", "no-such-client"}, db...)...); code == 0 {
			t.Fatal("rules of a missing client")
		}
		if code, _, _ := run(append([]string{"client", "network", created.ClientID, "--clear", "--allow-ip", "10.0.0.0/8"}, db...)...); code == 0 {
			t.Fatal("--clear with --allow-ip accepted")
		}
	})
}
