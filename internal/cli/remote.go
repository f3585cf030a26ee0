package cli

// The client-side commands (get, search, create, update, delete, token,
// login, export, and the admin commands in remote mode) talk to a server
// over HTTP through the SDK in package client. The connection comes from a
// profile (--profile, LAPIS_PROFILE or the profiles file's default) or from
// --server with authentication flags whose secrets are read from
// environment variables, never from the command line.
//
// Exit codes of these commands: 0 success; 1 any other error; 2 usage
// (bad flags or arguments); 3 authentication or authorization failed
// (401/403, any token endpoint error, no stored login); 4 not found or gone (404/410);
// 130 interrupted.

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/lapis-health/lapis/client"
	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/client/profile"
)

// Exit codes of the client-side commands (see the file comment).
const (
	exitError    = 1
	exitUsage    = 2
	exitAuth     = 3
	exitNotFound = 4
)

// usageError is a bad argument detected after parsing; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// exitCode maps a command's error to the process exit code.
func exitCode(err error) int {
	var ue *usageError
	var ce *client.Error
	var oe *client.OAuthError
	var ae *adminclient.Error
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, client.ErrUnauthorized), errors.As(err, &oe), errors.Is(err, profile.ErrNoToken):
		return exitAuth
	case errors.As(err, &ce) && ce.StatusCode == http.StatusForbidden, errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden:
		return exitAuth
	case client.IsNotFound(err) || client.IsGone(err):
		return exitNotFound
	}
	return exitError
}

// remoteFlags select a server: a profile, or --server with a client id
// and secret. The admin commands embed them (their remote mode); the FHIR
// commands embed connFlags, which adds the other authentication methods.
type remoteFlags struct {
	Server          string `name:"server" help:"FHIR base URL of a remote Lapis or FHIR server, e.g. https://host/fhir (instead of a profile)." placeholder:"URL" group:"Connection"`
	Profile         string `name:"profile" env:"LAPIS_PROFILE" help:"Connection profile from the profiles file." placeholder:"NAME" group:"Connection"`
	ProfilesFile    string `name:"profiles-file" env:"LAPIS_PROFILES_FILE" help:"Profiles file (default $XDG_CONFIG_HOME/lapis/profiles.json)." placeholder:"FILE" group:"Connection"`
	ClientID        string `name:"client-id" help:"OAuth client id (with --server): client_credentials with --client-secret-env, else the tokens of \"lapis login\"." placeholder:"ID" group:"Connection"`
	ClientSecretEnv string `name:"client-secret-env" help:"Environment variable holding the OAuth client secret." placeholder:"VAR" group:"Connection"`
	TokenURL        string `name:"token-url" help:"OAuth token endpoint (default: SMART discovery)." placeholder:"URL" group:"Connection"`
	CAFile          string `name:"ca-file" help:"PEM bundle of the CAs to trust instead of the system store." placeholder:"FILE" group:"Connection"`
	InsecureTLS     bool   `name:"insecure-skip-verify-dangerous" help:"Do not verify the server's certificate (throwaway test servers only)." group:"Connection"`
}

// connFlags are the connection flags of the FHIR commands.
type connFlags struct {
	remoteFlags
	APIKeyEnv        string   `name:"api-key-env" help:"Environment variable holding an API key (sent as a bearer token)." placeholder:"VAR" group:"Connection"`
	BasicUser        string   `name:"basic-user" help:"HTTP Basic user name (with --basic-password-env)." placeholder:"USER" group:"Connection"`
	BasicPasswordEnv string   `name:"basic-password-env" help:"Environment variable holding the HTTP Basic password." placeholder:"VAR" group:"Connection"`
	Scope            []string `name:"scope" help:"OAuth scopes to request, space-separated (repeatable; overrides the profile's)." placeholder:"SCOPES" group:"Connection"`
}

// remote reports whether a server or profile was named.
func (f *remoteFlags) remote() bool { return f.Server != "" || f.Profile != "" }

var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func envRef(flag, name string) (profile.Secret, error) {
	if !envVarName.MatchString(name) || len(name) > 48 {
		// Never echo it: it may be the secret itself.
		return "", usagef("%s takes the name of an environment variable, not its value", flag)
	}
	return profile.Secret("env:" + name), nil
}

// profile returns the connection the flags name: an ad-hoc profile for
// --server, or the named (or default) profile of the profiles file.
func (f *connFlags) profile() (*profile.Profile, error) {
	p, err := f.remoteFlags.resolve(f.APIKeyEnv != "" || f.BasicUser != "" || f.BasicPasswordEnv != "")
	if err != nil {
		return nil, err
	}
	if f.Server != "" {
		switch {
		case f.APIKeyEnv != "" && (f.BasicUser != "" || f.ClientID != ""), f.BasicUser != "" && f.ClientID != "":
			return nil, usagef("give one of --api-key-env, --basic-user or --client-id")
		case f.APIKeyEnv != "":
			ref, err := envRef("--api-key-env", f.APIKeyEnv)
			if err != nil {
				return nil, err
			}
			p.Auth = profile.Auth{Method: profile.MethodAPIKey, APIKey: ref}
		case f.BasicUser != "":
			if f.BasicPasswordEnv == "" {
				return nil, usagef("--basic-user needs --basic-password-env")
			}
			ref, err := envRef("--basic-password-env", f.BasicPasswordEnv)
			if err != nil {
				return nil, err
			}
			p.Auth = profile.Auth{Method: profile.MethodBasic, Username: f.BasicUser, Password: ref}
		case f.BasicPasswordEnv != "":
			return nil, usagef("--basic-password-env needs --basic-user")
		}
	}
	if len(f.Scope) > 0 {
		p.Auth.Scopes = f.Scope
	}
	if err := p.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	return withTokenCache(p), nil
}

// withTokenCache lets short CLI runs share OAuth access tokens through
// the 0600 token cache (seed 003: reuse a token until it nears expiry).
func withTokenCache(p *profile.Profile) *profile.Profile {
	if c, err := profile.DefaultTokenCache(); err == nil {
		p.TokenCache = c
	}
	return p
}

// resolve builds the profile from --server and the OAuth flags, or loads
// the named profile. otherAuth says whether authentication flags the
// caller handles were given (they need --server).
func (f *remoteFlags) resolve(otherAuth bool) (*profile.Profile, error) {
	tls := profile.TLS{}
	switch {
	case f.CAFile != "" && f.InsecureTLS:
		return nil, usagef("give --ca-file or --insecure-skip-verify-dangerous, not both")
	case f.CAFile != "":
		abs, err := filepath.Abs(f.CAFile) // relative to the working directory, not the profiles file
		if err != nil {
			return nil, err
		}
		tls = profile.TLS{Mode: profile.TLSCAFile, CAFile: abs}
	case f.InsecureTLS:
		tls = profile.TLS{Mode: profile.TLSInsecureSkipVerify}
	}
	if f.Server == "" {
		if otherAuth || f.ClientID != "" || f.ClientSecretEnv != "" || f.TokenURL != "" {
			return nil, usagef("authentication flags need --server (a profile carries its own authentication)")
		}
		cfg, err := profile.Load(f.ProfilesFile)
		if err != nil {
			if f.Profile == "" && errors.Is(err, os.ErrNotExist) {
				return nil, usagef("no server: give --server URL or --profile NAME (%v)", err)
			}
			return nil, err
		}
		p, err := cfg.Get(f.Profile)
		if err != nil {
			return nil, err
		}
		cp := *p
		if tls.Mode != "" {
			cp.TLS = tls
		}
		return &cp, nil
	}
	if f.Profile != "" && !f.profileFromEnv() {
		return nil, usagef("give --server or --profile, not both")
	}
	p := &profile.Profile{Name: "server", BaseURL: strings.TrimRight(f.Server, "/"), TLS: tls}
	switch {
	case f.ClientID != "" && f.ClientSecretEnv != "":
		ref, err := envRef("--client-secret-env", f.ClientSecretEnv)
		if err != nil {
			return nil, err
		}
		p.Auth = profile.Auth{Method: profile.MethodClientCredentials, ClientID: f.ClientID, ClientSecret: ref, TokenURL: f.TokenURL}
	case f.ClientID != "":
		p.Name = profile.ServerKey(p.BaseURL, f.ClientID)
		p.Auth = profile.Auth{Method: profile.MethodLogin, ClientID: f.ClientID, TokenURL: f.TokenURL}
	case f.ClientSecretEnv != "":
		return nil, usagef("--client-secret-env needs --client-id")
	}
	return p, nil
}

// profileFromEnv reports whether --profile came from LAPIS_PROFILE (which
// --server then overrides).
func (f *remoteFlags) profileFromEnv() bool {
	return f.Profile != "" && os.Getenv("LAPIS_PROFILE") == f.Profile
}

// userAgent identifies the CLI to servers.
func userAgent() string { return "lapis-cli/" + Version }

// newClient returns an SDK client for the flags' connection.
func (f *connFlags) newClient(e *env) (*client.Client, error) {
	p, err := f.profile()
	if err != nil {
		return nil, err
	}
	return p.Client(e.ctx, client.WithUserAgent(userAgent()), client.WithLogger(cliLogger(e)))
}

// cliLogger logs the SDK's warnings (e.g. disabled certificate checks) as
// text lines on stderr; it never receives credentials.
func cliLogger(e *env) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
