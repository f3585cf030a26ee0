package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/client/profile"
)

type tokenCmd struct {
	connFlags
	JSON bool `name:"json" help:"Print one JSON object {\"access_token\",\"token_type\",\"expires_at\",\"expires_in\",\"scope\",\"patient\"} (never the refresh token)."`
}

// tokenJSON is the output of "lapis token --json".
type tokenJSON struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	ExpiresIn   int64     `json:"expires_in,omitempty"`
	Scope       string    `json:"scope,omitempty"`
	Patient     string    `json:"patient,omitempty"`
}

func (c *tokenCmd) Run(e *env) error {
	p, err := c.profile()
	if err != nil {
		return err
	}
	a, err := p.Authenticator(e.ctx)
	if err != nil {
		return err
	}
	ts, ok := a.(client.TokenSource)
	if !ok {
		method := p.Auth.Method
		if method == "" {
			method = profile.MethodNone
		}
		return usagef("the connection uses auth method %q, which has no OAuth token (use client_credentials, backend_services or login)", method)
	}
	tok, err := ts.Token(e.ctx)
	if err != nil {
		return err
	}
	if !c.JSON {
		_, err := fmt.Fprintln(e.stdout, tok.AccessToken)
		return err
	}
	out := tokenJSON{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope, Patient: tok.Patient}
	if out.TokenType == "" {
		out.TokenType = "Bearer"
	}
	if !tok.ExpiresAt.IsZero() {
		out.ExpiresAt = tok.ExpiresAt.UTC().Truncate(time.Second)
		out.ExpiresIn = max(int64(time.Until(tok.ExpiresAt)/time.Second), 0)
	}
	return json.NewEncoder(e.stdout).Encode(out)
}
