package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/client/profile"
)

// loginTimeout bounds how long "lapis login" waits for the browser.
const loginTimeout = 5 * time.Minute

type loginCmd struct {
	connFlags
	RedirectPort int    `name:"redirect-port" help:"Loopback port of the redirect http://127.0.0.1:PORT/callback (default: the profile's, else a free port; Lapis accepts any port on a registered http://127.0.0.1/callback, other servers may need the exact URI registered)." placeholder:"PORT"`
	NoBrowser    bool   `name:"no-browser" help:"Only print the URL to open (do not start a browser)."`
	Launch       string `name:"launch" help:"EHR launch parameter." placeholder:"VALUE"`
	JSON         bool   `name:"json" help:"Print one JSON object {\"profile\",\"expires_at\",\"scope\",\"patient\",\"refresh_token\":true/false} (never the tokens)."`
}

// loginTarget returns the profile to log in with and its token cache key.
func (c *loginCmd) loginTarget() (*profile.Profile, error) {
	p, err := c.profile()
	if err != nil {
		return nil, err
	}
	if p.Auth.Method != profile.MethodLogin {
		if c.Server != "" {
			return nil, usagef("lapis login needs --client-id (without --client-secret-env) with --server")
		}
		return nil, usagef("profile %s uses auth method %q; lapis login needs method \"login\"", p.Name, p.Auth.Method)
	}
	return p, nil
}

func (c *loginCmd) Run(e *env) error {
	p, err := c.loginTarget()
	if err != nil {
		return err
	}
	if c.RedirectPort < 0 || c.RedirectPort > 65535 {
		return usagef("--redirect-port must be 0-65535")
	}
	port := p.Auth.RedirectPort
	if c.RedirectPort != 0 {
		port = c.RedirectPort
	}
	secret, err := p.ClientSecret()
	if err != nil {
		return err
	}
	hc, err := p.HTTPClient()
	if err != nil {
		return err
	}
	scopes := p.Auth.ScopeList()
	if len(scopes) == 0 {
		scopes = []string{"openid", "fhirUser", "offline_access", "patient/*.rs"}
	}
	ctx, cancel := context.WithTimeout(e.ctx, loginTimeout)
	defer cancel()
	login := &client.PKCELogin{FHIRBase: p.BaseURL, ClientID: p.Auth.ClientID, ClientSecret: secret, Scopes: scopes,
		RedirectPort: port, Launch: c.Launch, HTTPClient: hc, Logger: cliLogger(e),
		OpenBrowser: func(u string) error { return c.openBrowser(e, u) }}
	tok, err := login.Run(ctx)
	if err != nil {
		return err
	}
	cache, err := profile.DefaultTokenCache()
	if err != nil {
		return err
	}
	st := profile.FromToken(tok, p.BaseURL, p.Auth.TokenURL, p.Auth.ClientID)
	if err := cache.Save(p.Name, st); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(struct {
			Profile   string    `json:"profile"`
			ExpiresAt time.Time `json:"expires_at,omitzero"`
			Scope     string    `json:"scope,omitempty"`
			Patient   string    `json:"patient,omitempty"`
			Refresh   bool      `json:"refresh_token"`
		}{p.Name, st.ExpiresAt.UTC(), st.Scope, st.Patient, st.RefreshToken != ""})
	}
	fmt.Fprintf(e.stdout, "logged in to %s (scope %q); tokens stored for %s\n", p.BaseURL, st.Scope, p.Name)
	return nil
}

// openBrowser prints the URL and starts $BROWSER (or the desktop's opener)
// with it unless --no-browser.
func (c *loginCmd) openBrowser(e *env, u string) error {
	fmt.Fprintf(e.stderr, "Open this URL in a browser to log in:\n  %s\n", u)
	if c.NoBrowser {
		return nil
	}
	var cmd *exec.Cmd
	switch b := strings.TrimSpace(os.Getenv("BROWSER")); {
	case b != "":
		cmd = exec.Command(b, u)
	case runtime.GOOS == "darwin":
		cmd = exec.Command("open", u)
	case runtime.GOOS == "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil // the URL is printed; the user opens it by hand
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
