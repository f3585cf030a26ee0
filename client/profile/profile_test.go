package profile

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const goodFile = `{
  "default": "prod",
  "profiles": {
    "prod": {
      "base_url": "https://fhir.example.org/fhir",
      "auth": {"method": "client_credentials", "client_id": "c1", "client_secret": "env:PROFILE_TEST_SECRET",
               "scopes": ["system/Patient.rs system/Observation.rs"], "margin": "90s"},
      "tls": {"mode": "ca_file", "ca_file": "ca.pem"}
    },
    "local": {"base_url": "http://127.0.0.1:8080/fhir", "auth": {"method": "apikey", "api_key": "file:key.txt"}},
    "open": {"base_url": "https://hapi.example.org/baseR4"}
  }
}`

func TestParse(t *testing.T) {
	cfg, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Names(), ","); got != "local,open,prod" {
		t.Errorf("names %s", got)
	}
	p, err := cfg.Get("")
	if err != nil || p.Name != "prod" {
		t.Fatalf("default profile: %v %v", p, err)
	}
	if time.Duration(p.Auth.Margin) != 90*time.Second || p.margin() != 90*time.Second {
		t.Errorf("margin %v", p.Auth.Margin)
	}
	if got := strings.Join(p.Auth.ScopeList(), "|"); got != "system/Patient.rs|system/Observation.rs" {
		t.Errorf("scopes %s", got)
	}
	if _, err := cfg.Get("nope"); err == nil {
		t.Error("unknown profile accepted")
	}
	if p, _ := cfg.Get("open"); p.margin() != DefaultMargin {
		t.Errorf("default margin %v", p.margin())
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"inline secret":      `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"apikey","api_key":"lapis_sk_abcdef123456"}}}}`,
		"inline secret 2":    `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"basic","username":"u","password":"hunter2:x"}}}}`,
		"unknown field":      `{"profiles":{"a":{"base_url":"https://h/fhir","auht":{}}}}`,
		"unknown auth field": `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"none","secret":"x"}}}}`,
		"unknown top field":  `{"profile":{}}`,
		"no profiles":        `{"profiles":{}}`,
		"bad method":         `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"magic"}}}}`,
		"missing secret":     `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"client_credentials","client_id":"c"}}}}`,
		"missing client id":  `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"login"}}}}`,
		"secret unused":      `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"apikey","api_key":"env:K","password":"env:P"}}}}`,
		"bad env name":       `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"apikey","api_key":"env:1-x"}}}}`,
		"relative base":      `{"profiles":{"a":{"base_url":"/fhir"}}}`,
		"base with query":    `{"profiles":{"a":{"base_url":"https://h/fhir?x=1"}}}`,
		"http credentials":   `{"profiles":{"a":{"base_url":"http://fhir.example.org/fhir","auth":{"method":"apikey","api_key":"env:K"}}}}`,
		"bad tls mode":       `{"profiles":{"a":{"base_url":"https://h/fhir","tls":{"mode":"insecure"}}}}`,
		"ca mode no file":    `{"profiles":{"a":{"base_url":"https://h/fhir","tls":{"mode":"ca_file"}}}}`,
		"bad default":        `{"default":"b","profiles":{"a":{"base_url":"https://h/fhir"}}}`,
		"bad alg":            `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"backend_services","client_id":"c","private_key":"file:k.pem","alg":"HS256"}}}}`,
		"bad margin":         `{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"margin":"soon"}}}}`,
		"trailing data":      `{"profiles":{"a":{"base_url":"https://h/fhir"}}} {}`,
		"not json":           `profiles: a`,
		"empty":              ``,
		"bad name":           `{"profiles":{"a b":{"base_url":"https://h/fhir"}}}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(in))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, secret := range []string{"lapis_sk_abcdef123456", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals the inline secret: %v", err)
				}
			}
		})
	}
	_, err := Parse([]byte(cases["inline secret"]))
	if !errors.Is(err, ErrInlineSecret) && !strings.Contains(err.Error(), "inline secrets are refused") {
		t.Errorf("inline secret error: %v", err)
	}
	// Plain http with credentials is allowed to loopback and with allow_http.
	for _, ok := range []string{
		`{"profiles":{"a":{"base_url":"http://localhost:8080/fhir","auth":{"method":"apikey","api_key":"env:K"}}}}`,
		`{"profiles":{"a":{"base_url":"http://[::1]:8080/fhir","auth":{"method":"apikey","api_key":"env:K"}}}}`,
		`{"profiles":{"a":{"base_url":"http://fhir.internal/fhir","allow_http":true,"auth":{"method":"apikey","api_key":"env:K"}}}}`,
		`{"profiles":{"a":{"base_url":"http://fhir.example.org/fhir"}}}`,
	} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestSecretResolve(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PROFILE_TEST_SECRET", "s3cr3t-from-env")
	if err := os.WriteFile(filepath.Join(dir, "key.txt"), []byte("s3cr3t-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := Secret("env:PROFILE_TEST_SECRET").Resolve(dir); err != nil || v != "s3cr3t-from-env" {
		t.Errorf("env: %q %v", v, err)
	}
	if v, err := Secret("file:key.txt").Resolve(dir); err != nil || v != "s3cr3t-from-file" {
		t.Errorf("relative file: %q %v", v, err)
	}
	if v, err := Secret("file:" + filepath.Join(dir, "key.txt")).Resolve(""); err != nil || v != "s3cr3t-from-file" {
		t.Errorf("absolute file: %q %v", v, err)
	}
	if _, err := Secret("env:PROFILE_TEST_UNSET_VAR").Resolve(dir); err == nil || !strings.Contains(err.Error(), "PROFILE_TEST_UNSET_VAR") {
		t.Errorf("unset env: %v", err)
	}
	if _, err := Secret("file:missing.txt").Resolve(dir); err == nil {
		t.Error("missing file resolved")
	}
	os.WriteFile(filepath.Join(dir, "empty.txt"), []byte("\n"), 0o600)
	if _, err := Secret("file:empty.txt").Resolve(dir); err == nil {
		t.Error("empty file resolved")
	}
	if _, err := Secret("plain-value").Resolve(dir); !errors.Is(err, ErrInlineSecret) {
		t.Errorf("inline: %v", err)
	}

	// Through a loaded profile: relative paths are relative to the file.
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("not used here"), 0o600)
	path := filepath.Join(dir, "profiles.json")
	os.WriteFile(path, []byte(goodFile), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Get("local")
	if v, err := p.secret(p.Auth.APIKey, "api_key"); err != nil || v != "s3cr3t-from-file" {
		t.Errorf("profile secret: %q %v", v, err)
	}
	prod, _ := cfg.Get("prod")
	if got := prod.tlsConfig().CAFile; got != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca file %s", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.json")); err == nil {
		t.Error("missing file loaded")
	}
	bad := filepath.Join(dir, "bad.json")
	inline := "inline-" + rand.Text() // an inline secret, which must be refused and never echoed
	os.WriteFile(bad, []byte(`{"profiles":{"a":{"base_url":"https://h/fhir","auth":{"method":"apikey","api_key":"`+inline+`"}}}}`), 0o600)
	_, err := Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), inline) {
		t.Errorf("bad file: %v", err)
	}
	t.Setenv("XDG_CONFIG_HOME", dir)
	if p, err := DefaultPath(); err != nil || p != filepath.Join(dir, "lapis", "profiles.json") {
		t.Errorf("default path %s %v", p, err)
	}
}

// writeFile replaces path's content atomically, as editors do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherReload runs the polling watcher on a fake clock
// (testing/synctest): each step waits exactly for the next poll.
func TestWatcherReload(t *testing.T) {
	synctest.Test(t, testWatcherReload)
}

func testWatcherReload(t *testing.T) {
	const interval = 10 * time.Millisecond
	// poll lets n polling intervals pass (on the fake clock) and waits
	// until the watcher has handled their polls.
	poll := func(n int) {
		time.Sleep(time.Duration(n) * interval)
		synctest.Wait()
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "profiles.json")
	writeFile(t, path, `{"profiles":{"a":{"base_url":"https://one.example/fhir"}}}`)
	var mu sync.Mutex
	var errs []error
	reloads := make(chan struct{}, 10)
	w, err := NewWatcher(path, interval,
		OnError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }),
		OnReload(func(*Config) { reloads <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	time.Sleep(interval / 2) // between polls from now on
	if p, err := w.Current("a"); err != nil || p.BaseURL != "https://one.example/fhir" {
		t.Fatalf("initial: %v %v", p, err)
	}

	// A valid change is picked up by the next poll.
	writeFile(t, path, `{"profiles":{"a":{"base_url":"https://two.example/fhir"},"b":{"base_url":"https://b.example/fhir"}}}`)
	poll(1)
	if len(reloads) != 1 {
		t.Fatalf("change picked up %d times by the next poll, want 1", len(reloads))
	}
	<-reloads
	if p, err := w.Current("a"); err != nil || p.BaseURL != "https://two.example/fhir" {
		t.Fatalf("after change: %v %v", p, err)
	}
	if _, err := w.Current("b"); err != nil {
		t.Errorf("new profile: %v", err)
	}

	// An invalid edit keeps the old configuration and is reported once,
	// however many polls see it.
	writeFile(t, path, `{"profiles":{"a":{"base_url":"https://three.example/fhir","auth":{"method":"apikey","api_key":"inline-key"}}}}`)
	poll(1)
	if w.Err() == nil || strings.Contains(w.Err().Error(), "inline-key") {
		t.Fatalf("invalid edit: err %v", w.Err())
	}
	if p, err := w.Current("a"); err != nil || p.BaseURL != "https://two.example/fhir" {
		t.Fatalf("old config not kept: %v %v", p, err)
	}
	poll(5)
	mu.Lock()
	n := len(errs)
	mu.Unlock()
	if n != 1 || len(reloads) != 0 {
		t.Errorf("invalid edit reported %d times (and %d reloads), want once", n, len(reloads))
	}

	// Fixing the file recovers; Check reports the change at once.
	os.WriteFile(path, []byte(`{"profiles":{"a":{"base_url":"https://four.example/fhir"}}}`), 0o600)
	w.Check()
	if p, _ := w.Current("a"); p.BaseURL != "https://four.example/fhir" || w.Err() != nil {
		t.Errorf("after fix: %s %v", p.BaseURL, w.Err())
	}
	if _, err := w.Current("b"); err == nil {
		t.Error("removed profile still served")
	}
}

func TestWatcherFirstLoadMustSucceed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "profiles.json")
	os.WriteFile(path, []byte(`{"profiles":{"a":{"base_url":"ftp://x"}}}`), 0o600)
	if _, err := NewWatcher(path, time.Second); err == nil {
		t.Error("invalid first file accepted")
	}
	if _, err := NewWatcher(path+".missing", time.Second); err == nil {
		t.Error("missing file accepted")
	}
}

func TestTokenCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tokens")
	c := &TokenCache{Dir: dir}
	if _, err := c.Load("p"); !errors.Is(err, ErrNoToken) {
		t.Fatalf("empty cache: %v", err)
	}
	tok := &StoredToken{AccessToken: "at-secret", RefreshToken: "rt-secret", ExpiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		FHIRBase: "https://h/fhir", ClientID: "c"}
	if err := c.Save("p", tok); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "p.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("token dir mode %v", di.Mode())
	}
	got, err := c.Load("p")
	if err != nil || got.AccessToken != "at-secret" || got.RefreshToken != "rt-secret" || !got.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Fatalf("load: %+v %v", got, err)
	}
	if s := got.String() + got.GoString(); strings.Contains(s, "secret") {
		t.Errorf("String reveals a token: %s", s)
	}
	if !got.Valid(time.Now(), time.Minute) || got.Valid(time.Now().Add(time.Hour), time.Minute) {
		t.Error("Valid")
	}
	os.Chmod(filepath.Join(dir, "p.json"), 0o644)
	if _, err := c.Load("p"); err == nil {
		t.Error("world-readable token file accepted")
	}
	if _, err := c.Load("../etc/passwd"); err == nil {
		t.Error("path traversal key accepted")
	}
	if err := c.Delete("p"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load("p"); !errors.Is(err, ErrNoToken) {
		t.Errorf("after delete: %v", err)
	}
	if k := ServerKey("https://h/fhir", "c"); !profileName.MatchString(k) || k == ServerKey("https://h/fhir", "d") {
		t.Errorf("server key %s", k)
	}
}
