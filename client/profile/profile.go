// Package profile reads named outgoing FHIR connections ("profiles") from a
// JSON file and turns them into configured SDK clients.
//
// A profile holds a FHIR base URL, an authentication method with its
// secrets given by reference only (env:VAR or file:/path; inline secrets are
// refused), a TLS choice and the OAuth scopes. The default file is
// $XDG_CONFIG_HOME/lapis/profiles.json (~/.config/lapis/profiles.json):
//
//	{
//	  "default": "prod",
//	  "profiles": {
//	    "prod": {
//	      "base_url": "https://fhir.example.org/fhir",
//	      "auth": {
//	        "method": "client_credentials",
//	        "client_id": "integration-1",
//	        "client_secret": "env:PROD_CLIENT_SECRET",
//	        "scopes": ["system/Patient.rs", "system/Observation.rs"],
//	        "margin": "60s"
//	      },
//	      "tls": {"mode": "ca_file", "ca_file": "/etc/lapis/internal-ca.pem"}
//	    }
//	  }
//	}
//
// Unknown fields are errors, so a misspelt key never silently weakens a
// connection. Load reads the file once; a Watcher re-reads it when it
// changes, so long-running programs pick up new connections, rotated
// secrets and TLS changes without a restart, and keeps the previous
// configuration when an edit is invalid.
package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Authentication methods of Auth.Method.
const (
	// MethodNone sends no credentials.
	MethodNone = "none"
	// MethodAPIKey sends an API key as a bearer token (or in X-API-Key).
	MethodAPIKey = "apikey"
	// MethodBasic sends HTTP Basic credentials.
	MethodBasic = "basic"
	// MethodClientCredentials gets tokens with the OAuth client_credentials
	// grant and a client secret.
	MethodClientCredentials = "client_credentials"
	// MethodBackendServices gets tokens with SMART Backend Services
	// (client_credentials with a private_key_jwt assertion).
	MethodBackendServices = "backend_services"
	// MethodLogin uses the tokens that "lapis login" stored (browser PKCE
	// flow) and refreshes them.
	MethodLogin = "login"
)

// TLS modes of TLS.Mode.
const (
	// TLSSystem verifies the server against the system trust store.
	TLSSystem = "system"
	// TLSCAFile verifies the server against the PEM bundle in TLS.CAFile.
	TLSCAFile = "ca_file"
	// TLSInsecureSkipVerify disables certificate verification. The name is
	// long on purpose: it is for throwaway test servers only.
	TLSInsecureSkipVerify = "insecure_skip_verify_dangerous"
)

// maxFile bounds the profiles file and secret files.
const maxFile = 1 << 20

// Config is the content of a profiles file.
type Config struct {
	// Default names the profile used when none is asked for.
	Default string `json:"default,omitempty"`
	// Profiles are the named connections.
	Profiles map[string]*Profile `json:"profiles"`
}

// Profile is one named outgoing FHIR connection.
type Profile struct {
	// Name is the profile's key in the file (set by Load).
	Name string `json:"-"`
	// BaseURL is the FHIR base, e.g. https://host/fhir.
	BaseURL string `json:"base_url"`
	// Auth is how requests authenticate.
	Auth Auth `json:"auth"`
	// TLS is how the server's certificate is verified.
	TLS TLS `json:"tls"`
	// AllowHTTP permits credentials over plain http to a non-loopback
	// host. Off by default: credentials and patient data need TLS.
	AllowHTTP bool `json:"allow_http,omitempty"`
	// Timeout bounds each HTTP request (default: the SDK's).
	Timeout Duration `json:"timeout,omitzero"`

	// TokenCache, when set, keeps the access tokens of the
	// client_credentials and backend_services methods on disk, so that
	// short-lived processes (the CLI) reuse a token until it nears expiry
	// instead of requesting one per run. Not part of the file.
	TokenCache *TokenCache `json:"-"`

	// dir resolves relative paths (the profiles file's directory).
	dir string
}

// Auth is a profile's authentication method and its parameters. Secret
// fields are references (env:VAR or file:/path), resolved when a client is
// built.
type Auth struct {
	// Method is none, apikey, basic, client_credentials,
	// backend_services or login (default none).
	Method string `json:"method"`
	// APIKey is the API key (apikey).
	APIKey Secret `json:"api_key,omitzero"`
	// Username and Password are the Basic credentials (basic).
	Username string `json:"username,omitempty"`
	Password Secret `json:"password,omitzero"`
	// ClientID is the OAuth client id (client_credentials,
	// backend_services, login).
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret is the OAuth client secret (client_credentials;
	// optional for login with a confidential client).
	ClientSecret Secret `json:"client_secret,omitzero"`
	// PrivateKey is the PEM or JWK private key (backend_services).
	PrivateKey Secret `json:"private_key,omitzero"`
	// KeyID is the JWK "kid" of PrivateKey (backend_services).
	KeyID string `json:"key_id,omitempty"`
	// Alg is RS384 or ES384 (backend_services; default from the key).
	Alg string `json:"alg,omitempty"`
	// TokenURL is the token endpoint (default: SMART discovery from
	// BaseURL).
	TokenURL string `json:"token_url,omitempty"`
	// Scopes are the OAuth scopes requested (each entry may hold several,
	// space-separated).
	Scopes []string `json:"scopes,omitempty"`
	// Margin is how long before expiry a token is renewed (default 60s).
	Margin Duration `json:"margin,omitzero"`
	// RedirectPort is the loopback port of the login redirect (0: any).
	RedirectPort int `json:"redirect_port,omitempty"`
}

// TLS is a profile's certificate verification choice.
type TLS struct {
	// Mode is system (default), ca_file or insecure_skip_verify_dangerous.
	Mode string `json:"mode,omitempty"`
	// CAFile is the PEM CA bundle (ca_file).
	CAFile string `json:"ca_file,omitempty"`
}

// Secret is a reference to a secret: "env:VAR" (an environment variable)
// or "file:/path" (a file's content, trailing newline trimmed). Its
// String and JSON forms are the reference, never the value.
type Secret string

// IsZero reports whether no secret was given.
func (s Secret) IsZero() bool { return s == "" }

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ErrInlineSecret is returned for a secret written into the file instead of
// referenced; the value is never part of the message.
var ErrInlineSecret = errors.New("inline secrets are refused: use \"env:VARIABLE\" or \"file:/path\"")

// check validates the reference's syntax.
func (s Secret) check() error {
	kind, ref, ok := strings.Cut(string(s), ":")
	switch {
	case !ok:
		return ErrInlineSecret
	case kind == "env":
		if !envName.MatchString(ref) {
			return errors.New("env: needs a variable name")
		}
	case kind == "file":
		if ref == "" {
			return errors.New("file: needs a path")
		}
	default:
		return ErrInlineSecret
	}
	return nil
}

// UnmarshalJSON accepts only a well-formed reference.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New("a secret reference must be a string")
	}
	if err := Secret(v).check(); err != nil {
		return err
	}
	*s = Secret(v)
	return nil
}

// Resolve returns the secret's value, reading the environment variable or
// file now (so rotated secrets are picked up). baseDir resolves relative
// file paths. Errors name the reference, never the value.
func (s Secret) Resolve(baseDir string) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	kind, ref, _ := strings.Cut(string(s), ":")
	if kind == "env" {
		v, ok := os.LookupEnv(ref)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", ref)
		}
		return v, nil
	}
	path := expandHome(ref)
	if !filepath.IsAbs(path) && baseDir != "" {
		path = filepath.Join(baseDir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return "", fmt.Errorf("secret file %s: read failed", path)
	}
	if len(b) > maxFile {
		return "", fmt.Errorf("secret file %s is too large", path)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}

// Duration is a JSON duration string such as "60s" or "5m".
type Duration time.Duration

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration must be a string such as "60s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// DefaultPath returns the default profiles file,
// $XDG_CONFIG_HOME/lapis/profiles.json (or ~/.config/lapis/profiles.json).
func DefaultPath() (string, error) {
	dir, err := ConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "profiles.json"), nil
}

// ConfigDir returns $XDG_CONFIG_HOME/lapis (or ~/.config/lapis).
func ConfigDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "lapis"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find the configuration directory: set XDG_CONFIG_HOME or HOME")
	}
	return filepath.Join(home, ".config", "lapis"), nil
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// Load reads and validates the profiles file at path ("" = DefaultPath).
func Load(path string) (*Config, error) {
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.setDir(filepath.Dir(path))
	return cfg, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("profiles file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("profiles file %s: read failed", path)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("profiles file %s is too large", path)
	}
	return b, nil
}

// Parse decodes and validates the content of a profiles file. Relative
// file: and ca_file paths of a parsed (not loaded) Config are relative to
// the working directory.
func Parse(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		return nil, jsonError(err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// jsonError rewords decoding errors without quoting file content.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("%s: wrong type (%s)", typ.Field, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF):
		return errors.New("empty file")
	}
	return err
}

// dir is where relative paths in a loaded file are resolved.
func (c *Config) setDir(dir string) {
	for _, p := range c.Profiles {
		p.dir = dir
	}
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validate() error {
	if len(c.Profiles) == 0 {
		return errors.New("no profiles")
	}
	for _, name := range c.Names() {
		p := c.Profiles[name]
		if !profileName.MatchString(name) {
			return fmt.Errorf("profile name %q: use letters, digits, '.', '_' and '-'", name)
		}
		if p == nil {
			return fmt.Errorf("profile %s: empty", name)
		}
		p.Name = name
		if err := p.Validate(); err != nil {
			return fmt.Errorf("profile %s: %w", name, err)
		}
	}
	if c.Default != "" && c.Profiles[c.Default] == nil {
		return fmt.Errorf("default profile %q does not exist", c.Default)
	}
	return nil
}

// Names returns the profile names, sorted.
func (c *Config) Names() []string {
	return slices.Sorted(maps.Keys(c.Profiles))
}

// Get returns the named profile; "" means the default profile (or the only
// one).
func (c *Config) Get(name string) (*Profile, error) {
	if name == "" {
		name = c.Default
		if name == "" && len(c.Profiles) == 1 {
			name = c.Names()[0]
		}
		if name == "" {
			return nil, errors.New("no profile named and no default profile")
		}
	}
	p := c.Profiles[name]
	if p == nil {
		return nil, fmt.Errorf("no profile %q", name)
	}
	return p, nil
}

// Validate checks a profile's fields (syntax only: secrets are resolved
// when a client is built).
func (p *Profile) Validate() error {
	if err := CheckBaseURL(p.BaseURL, p.Auth.Method != MethodNone && p.Auth.Method != "", p.AllowHTTP); err != nil {
		return err
	}
	if err := p.Auth.validate(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	switch p.TLS.Mode {
	case "", TLSSystem, TLSInsecureSkipVerify:
		if p.TLS.CAFile != "" {
			return errors.New("tls: ca_file needs mode \"ca_file\"")
		}
	case TLSCAFile:
		if p.TLS.CAFile == "" {
			return errors.New("tls: mode ca_file needs ca_file")
		}
	default:
		return fmt.Errorf("tls: unknown mode %q (system, ca_file or insecure_skip_verify_dangerous)", p.TLS.Mode)
	}
	return nil
}

// CheckBaseURL validates a FHIR base URL: absolute http(s), no query, no
// fragment, no user info; with credentials, plain http only to a loopback
// host unless allowHTTP.
func CheckBaseURL(raw string, credentials, allowHTTP bool) error {
	if raw == "" {
		return errors.New("base_url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("base_url must be an absolute http(s) URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("base_url must not carry user info, a query or a fragment")
	}
	if u.Scheme == "http" && credentials && !allowHTTP && !isLoopback(u.Hostname()) {
		return errors.New("refusing to send credentials over plain http to a non-loopback host (use https)")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *Auth) validate() error {
	set := map[string]bool{"username": a.Username != "", "client_id": a.ClientID != "",
		"api_key": !a.APIKey.IsZero(), "password": !a.Password.IsZero(),
		"client_secret": !a.ClientSecret.IsZero(), "private_key": !a.PrivateKey.IsZero()}
	// needs are the fields the method requires; optional the secret it
	// may carry besides them.
	var needs []string
	var optional string
	switch a.Method {
	case "", MethodNone:
	case MethodAPIKey:
		needs = []string{"api_key"}
	case MethodBasic:
		needs = []string{"username", "password"}
	case MethodClientCredentials:
		needs = []string{"client_id", "client_secret"}
	case MethodBackendServices:
		needs = []string{"client_id", "private_key"}
	case MethodLogin:
		needs, optional = []string{"client_id"}, "client_secret"
	default:
		return fmt.Errorf("unknown method %q (none, apikey, basic, client_credentials, backend_services, login)", a.Method)
	}
	for _, f := range needs {
		if !set[f] {
			return fmt.Errorf("method %s needs %s", a.Method, f)
		}
	}
	if a.Method == MethodBackendServices {
		switch a.Alg {
		case "", "RS384", "ES384":
		default:
			return fmt.Errorf("alg %q: use RS384 or ES384", a.Alg)
		}
	}
	for _, f := range []string{"api_key", "password", "client_secret", "private_key"} {
		if set[f] && f != optional && !slices.Contains(needs, f) {
			return fmt.Errorf("%s is not used by method %s", f, a.methodName())
		}
	}
	if a.TokenURL != "" {
		if u, err := url.Parse(a.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("token_url must be an absolute http(s) URL")
		}
	}
	if a.RedirectPort < 0 || a.RedirectPort > 65535 {
		return errors.New("redirect_port must be 0-65535")
	}
	return nil
}

func (a *Auth) methodName() string {
	if a.Method == "" {
		return MethodNone
	}
	return a.Method
}

// ScopeList returns the scopes split on spaces.
func (a *Auth) ScopeList() []string {
	var out []string
	for _, s := range a.Scopes {
		out = append(out, strings.Fields(s)...)
	}
	return out
}
