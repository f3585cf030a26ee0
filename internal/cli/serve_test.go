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
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/lapis-health/lapis/internal/config"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	var out, errb bytes.Buffer
	code := Main([]string{"serve", "--dev-no-auth", "--allow-remote", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, nil, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--dev-no-auth cannot be combined with --allow-remote") {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
}

// parseServe parses a lapis serve command line into its configuration.
func parseServe(t *testing.T, args ...string) (config.Config, error) {
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

// TestServeResponseLimits: --max-bundle-entries and --max-response (and
// their LAPIS_ variables) reach the configuration, with the config
// package's defaults; 0 lifts a limit.
func TestServeResponseLimits(t *testing.T) {
	parse := func(args ...string) (config.Config, error) { return parseServe(t, args...) }
	cfg, err := parse()
	if err != nil || cfg.FHIR.MaxBundleEntries != config.DefaultMaxBundleEntries || cfg.FHIR.MaxResponseBytes != config.DefaultMaxResponseBytes {
		t.Fatalf("defaults: %d entries, %d bytes, %v", cfg.FHIR.MaxBundleEntries, cfg.FHIR.MaxResponseBytes, err)
	}
	if cfg, err := parse("--max-bundle-entries", "0", "--max-response", "0"); err != nil || cfg.FHIR.MaxBundleEntries != 0 || cfg.FHIR.MaxResponseBytes != 0 {
		t.Fatalf("no limits: %d entries, %d bytes, %v", cfg.FHIR.MaxBundleEntries, cfg.FHIR.MaxResponseBytes, err)
	}
	t.Setenv("LAPIS_MAX_BUNDLE_ENTRIES", "300")
	t.Setenv("LAPIS_MAX_RESPONSE", "8MiB")
	if cfg, err := parse(); err != nil || cfg.FHIR.MaxBundleEntries != 300 || cfg.FHIR.MaxResponseBytes != 8<<20 {
		t.Fatalf("from the environment: %d entries, %d bytes, %v", cfg.FHIR.MaxBundleEntries, cfg.FHIR.MaxResponseBytes, err)
	}
	for _, bad := range [][]string{{"--max-bundle-entries", "-1"}, {"--max-response", "lots"}, {"--max-response", "-5"}} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// The admin commands (lapis import) keep no limit.
	if d := config.Defaults(); d.FHIR.MaxBundleEntries != 0 || d.FHIR.MaxResponseBytes != 0 {
		t.Fatalf("config.Defaults: %d entries, %d bytes, want no limits", d.FHIR.MaxBundleEntries, d.FHIR.MaxResponseBytes)
	}
}

// TestServeDefaults: the defaults of the serve flags (shown by --help)
// are config.ServeDefaults, so code that builds a server from the config
// package (tests) runs what lapis serve runs.
func TestServeDefaults(t *testing.T) {
	t.Parallel()
	got, err := parseServe(t, "--data-dir", "/data")
	if err != nil {
		t.Fatal(err)
	}
	want := config.ServeDefaults()
	want.Database.DataDir = "/data"
	if err := want.Normalize(true); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flag defaults\n%+v\nconfig.ServeDefaults\n%+v", got, want)
	}
}

// TestServeFlags: every serve flag reaches its field of the
// configuration.
func TestServeFlags(t *testing.T) {
	t.Parallel()
	got, err := parseServe(t,
		"--addr", "0.0.0.0:8443", "--base-url", "https://example.org/lapis/", "--data-dir", "/data", "--database", "postgres://db/lapis",
		"--tls-cert", "c.pem", "--tls-key", "k.pem", "--read-header-timeout", "1s", "--read-timeout", "2s", "--write-timeout", "3s", "--idle-timeout", "4s", "--shutdown-timeout", "5s",
		"--max-body", "1MiB", "--default-count", "5", "--max-count", "50", "--max-bundle-entries", "7", "--max-response", "2MiB", "--search-timeout", "5s",
		"--us-core-version", "7.0.0", "--service-base-urls", "sbu.json", "--profile-validation", "claimed",
		"--dev-allow-private-jwks",
		"--trusted-proxies", "10.0.0.0/8", "--forwarded-header", "Forwarded", "--allow-ip", "192.0.2.0/24,198.51.100.7", "--deny-user-agent", "curl", "--no-default-deny-user-agents",
		"--metrics-addr", "127.0.0.1:9090", "--metrics-allow", "10.1.0.0/16",
		"--rate-limit-client", "5/s", "--rate-limit-client-burst", "6", "--rate-limit-patient", "7/m", "--rate-limit-patient-burst", "8",
		"--rate-limit-auth-ip", "9/h", "--rate-limit-auth-ip-burst", "10", "--rate-limit-costs", "read=2", "--redis-url", "redis://r:6379/1", "--rate-limit-redis-failure", "closed", "--rate-limit-system", "9/s", "--rate-limit-system-burst", "11", "--max-concurrent-per-client", "2", "--concurrency-wait", "7s",
		"--audit-stream", "stdout", "--audit-queue", "99", "--audit-copy-duty", "0.5", "--audit-copy-lag", "45s", "--alert-webhook", "https://alerts.example.org/hook",
		"--alert-volume", "11", "--alert-volume-window", "2h", "--alert-auth-failures", "12", "--alert-auth-window", "3m", "--no-alert-refusals",
		"--export-dir", "/exp", "--export-workers", "3", "--export-max-per-client", "4", "--export-expire", "5h", "--export-lease", "6s", "--export-file-size", "7MiB", "--export-rate", "8",
		"--export-s3-url", "https://s3.example.org/exports/lapis",
		"--no-portal", "--smtp-url", "smtp://u:p@mail.example.org:587", "--smtp-from", "portal@example.org",
		"--sandbox-database", "sqlite:/sb/lapis.db", "--sandbox-rate-limit", "3/s", "--sandbox-rate-burst", "4",
		"--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Server: config.Server{Addr: "0.0.0.0:8443", BaseURL: "https://example.org/lapis",
			ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second, ShutdownTimeout: 5 * time.Second},
		TLS:      config.TLS{CertFile: "c.pem", KeyFile: "k.pem"},
		Database: config.Database{URL: "postgres://db/lapis", DataDir: "/data"},
		FHIR: config.FHIR{MaxBodyBytes: 1 << 20, DefaultCount: 5, MaxCount: 50, MaxBundleEntries: 7, MaxResponseBytes: 2 << 20, SearchTimeout: 5 * time.Second,
			USCoreVersion: "7.0.0", ServiceBaseURLs: "sbu.json", ProfileValidation: "claimed"},
		Auth: config.Auth{DevAllowPrivateJWKS: true},
		Gateway: config.Gateway{TrustedProxies: []string{"10.0.0.0/8"}, ForwardedHeader: "Forwarded", AllowIPs: []string{"192.0.2.0/24", "198.51.100.7"},
			DenyUserAgents: []string{"curl"}},
		Metrics: config.Metrics{Addr: "127.0.0.1:9090", Allow: []string{"10.1.0.0/16"}},
		RateLimit: config.RateLimit{Client: "5/s", ClientBurst: 6, Patient: "7/m", PatientBurst: 8, AuthIP: "9/h", AuthIPBurst: 10,
			System: "9/s", SystemBurst: 11, Costs: "read=2", RedisURL: "redis://r:6379/1", RedisFailure: "closed", MaxConcurrentPerClient: 2, ConcurrencyWait: 7 * time.Second},
		Audit: config.Audit{Enabled: true, Stream: "stdout", Queue: 99, CopyDuty: 0.5, CopyLag: 45 * time.Second, AlertWebhook: "https://alerts.example.org/hook",
			AlertVolume: 11, AlertVolumeWindow: 2 * time.Hour, AlertAuthFailures: 12, AlertAuthWindow: 3 * time.Minute},
		Export: config.Export{Dir: "/exp", Workers: 3, MaxJobsPerClient: 4, Expire: 5 * time.Hour, Lease: 6 * time.Second, MaxFileBytes: 7 << 20, Rate: 8,
			S3URL: "https://s3.example.org/exports/lapis", S3AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), S3SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")},
		Portal:   config.Portal{SMTPURL: "smtp://u:p@mail.example.org:587", SMTPFrom: "portal@example.org"},
		Sandbox:  config.Sandbox{Enabled: true, Load: true, DatabaseURL: "sqlite:/sb/lapis.db", RateLimit: "3/s", RateLimitBurst: 4},
		LogLevel: "debug",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
	if cfg, err := parseServe(t, "--sandbox=false"); err != nil || cfg.Sandbox.Enabled {
		t.Fatalf("--sandbox=false: %+v %v", cfg.Sandbox, err)
	}
	if cfg, err := parseServe(t, "--dev-no-auth", "--allow-remote", "--no-audit"); err == nil || cfg.Auth.DevNoAuth != true || cfg.Server.AllowRemote != true || cfg.Audit.Enabled {
		t.Fatalf("--dev-no-auth --allow-remote --no-audit: %+v %v", cfg, err)
	}
}

// TestServePortZero checks --addr HOST:0: the kernel picks the port, and
// the default base URL (FHIR base, issuer) and the "lapis serving" log
// line name the port actually bound, so tests and supervisors can start a
// server without guessing a free port first.
func TestServePortZero(t *testing.T) {
	t.Parallel()
	var g grammar
	parser, err := kong.New(&g, kong.Name("lapis"), kong.Exit(func(int) { t.Fatal("kong exit") }))
	if err != nil {
		t.Fatal(err)
	}
	// --no-sandbox-load: the built-in dataset (loaded at start by
	// default, tens of CPU-seconds under -race) has nothing to do with
	// the port; TestEnvFlag and the e2e sandbox tests load it.
	kctx, err := parser.Parse([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--database", "", "--base-url", "", "--no-sandbox-load"})
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
