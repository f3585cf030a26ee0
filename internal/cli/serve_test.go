package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/config"

	"github.com/alecthomas/kong"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"16MiB": 16 << 20, "1024": 1024, "2 KiB": 2048, "1GB": 1e9, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1", "0", "1TiB", "99999999999GiB", "1.5MiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q: expected error", bad)
		}
	}
}

func TestMainErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"nope"}, nil, &out, &errb); code == 0 {
		t.Fatal("unknown command succeeded")
	}
	errb.Reset()
	if code := Main([]string{"serve", "--max-body", "lots"}, nil, &out, &errb); code == 0 || !strings.HasPrefix(errb.String(), "lapis: invalid size") || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("bad size: %d %q", code, errb.String())
	}
	out.Reset()
	if code := Main([]string{"version"}, nil, &out, &errb); code != 0 || out.String() != "lapis "+Version+"\n" {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"--help"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "serve") {
		t.Fatalf("help: %d %q", code, out.String())
	}
}

func TestDevNoAuthNeverRemote(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"serve", "--dev-no-auth", "--allow-remote", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, nil, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--dev-no-auth cannot be combined with --allow-remote") {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
}

// TestServePortZero checks --addr HOST:0: the kernel picks the port, and
// the default base URL (FHIR base, issuer) and the "lapis serving" log
// line name the port actually bound, so tests and supervisors can start a
// server without guessing a free port first.
func TestServePortZero(t *testing.T) {
	var g grammar
	parser, err := kong.New(&g, kong.Name("lapis"), kong.Exit(func(int) { t.Fatal("kong exit") }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := parser.Parse([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--database", "", "--base-url", ""})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := kctx.Run(&env{ctx: ctx, stdin: strings.NewReader(""), stdout: io.Discard, stderr: logW})
		logW.CloseWithError(fmt.Errorf("serve returned: %v", err))
		done <- err
	}()
	var serving struct {
		Msg      string `json:"msg"`
		Addr     string `json:"addr"`
		FHIRBase string `json:"fhir_base"`
	}
	sc := bufio.NewScanner(logR)
	for serving.Msg != "lapis serving" {
		if !sc.Scan() {
			t.Fatalf("no \"lapis serving\" line: %v", sc.Err())
		}
		serving.Msg = ""
		_ = json.Unmarshal(sc.Bytes(), &serving)
	}
	go func() { _, _ = io.Copy(io.Discard, logR) }()
	host, port, err := net.SplitHostPort(serving.Addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("serving addr %q", serving.Addr)
	}
	if want := "http://" + serving.Addr + "/fhir"; serving.FHIRBase != want {
		t.Fatalf("fhir_base %q, want %q", serving.FHIRBase, want)
	}
	resp, err := http.Get(serving.FHIRBase + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var smart struct {
		Issuer string `json:"issuer"`
	}
	err = json.NewDecoder(resp.Body).Decode(&smart)
	resp.Body.Close()
	if err != nil || smart.Issuer != serving.FHIRBase {
		t.Fatalf("issuer %q (%v), want %q", smart.Issuer, err, serving.FHIRBase)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestServeResponseLimits: --max-bundle-entries and --max-response (and
// their LAPIS_ variables) reach the configuration, with the config
// package's defaults; 0 lifts a limit.
func TestServeResponseLimits(t *testing.T) {
	parse := func(args ...string) (config.Config, error) {
		t.Helper()
		var g grammar
		p, err := kong.New(&g, kong.Exit(func(int) { t.Fatal("exit") }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(append([]string{"serve"}, args...)); err != nil {
			return config.Config{}, err
		}
		return g.Serve.config()
	}
	cfg, err := parse()
	if err != nil || cfg.MaxBundleEntries != config.DefaultMaxBundleEntries || cfg.MaxResponseBytes != config.DefaultMaxResponseBytes {
		t.Fatalf("defaults: %d entries, %d bytes, %v", cfg.MaxBundleEntries, cfg.MaxResponseBytes, err)
	}
	if cfg, err := parse("--max-bundle-entries", "0", "--max-response", "0"); err != nil || cfg.MaxBundleEntries != 0 || cfg.MaxResponseBytes != 0 {
		t.Fatalf("no limits: %d entries, %d bytes, %v", cfg.MaxBundleEntries, cfg.MaxResponseBytes, err)
	}
	t.Setenv("LAPIS_MAX_BUNDLE_ENTRIES", "300")
	t.Setenv("LAPIS_MAX_RESPONSE", "8MiB")
	if cfg, err := parse(); err != nil || cfg.MaxBundleEntries != 300 || cfg.MaxResponseBytes != 8<<20 {
		t.Fatalf("from the environment: %d entries, %d bytes, %v", cfg.MaxBundleEntries, cfg.MaxResponseBytes, err)
	}
	for _, bad := range [][]string{{"--max-bundle-entries", "-1"}, {"--max-response", "lots"}, {"--max-response", "-5"}} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// The admin commands (lapis import) keep no limit.
	if d := config.Defaults(); d.MaxBundleEntries != 0 || d.MaxResponseBytes != 0 {
		t.Fatalf("config.Defaults: %d entries, %d bytes, want no limits", d.MaxBundleEntries, d.MaxResponseBytes)
	}
}
