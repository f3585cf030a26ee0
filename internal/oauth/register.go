package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
	"github.com/lapis-health/lapis/internal/randtoken"
)

// Registration is a client registration request (from the CLI or, later,
// the admin API).
type Registration struct {
	Name         string
	Type         string // authdb.Public, authdb.Confidential or authdb.Backend
	RedirectURIs []string
	LaunchURI    string
	Scopes       []string
	// JWKS is a JSON Web Key Set document (backend clients).
	JWKS []byte
	// JWKSURI is a JWKS URL (backend clients).
	JWKSURI string
}

// ClientCreator stores new clients.
type ClientCreator interface {
	CreateClient(ctx context.Context, c *authdb.Client) error
}

// Registered is the result of a registration: the secret is returned only
// here, once, and only for confidential clients.
type Registered struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// RegisterClient validates reg, generates the client id (a UUID) and, for
// a confidential client, a 256-bit secret stored only as its SHA-256.
func RegisterClient(ctx context.Context, store ClientCreator, reg Registration) (*Registered, error) {
	c := &authdb.Client{ID: uuid.NewString(), Name: strings.TrimSpace(reg.Name), Type: reg.Type, LaunchURI: reg.LaunchURI}
	if c.Name == "" {
		return nil, errors.New("a client name is required")
	}
	switch reg.Type {
	case authdb.Public, authdb.Confidential, authdb.Backend:
	default:
		return nil, fmt.Errorf("client type must be public, confidential or backend")
	}
	for _, u := range reg.RedirectURIs {
		if err := checkURI(u, false); err != nil {
			return nil, fmt.Errorf("redirect URI %q: %w", u, err)
		}
		c.RedirectURIs = append(c.RedirectURIs, u)
	}
	if reg.Type == authdb.Public && len(c.RedirectURIs) == 0 {
		return nil, errors.New("a public client needs at least one redirect URI")
	}
	if reg.LaunchURI != "" {
		if err := checkURI(reg.LaunchURI, true); err != nil {
			return nil, fmt.Errorf("launch URI: %w", err)
		}
	}
	for _, f := range reg.Scopes {
		for _, sc := range strings.Fields(f) {
			if strings.HasPrefix(sc, "system/") && reg.Type == authdb.Public {
				return nil, errors.New("public clients cannot have system/ scopes")
			}
			c.Scopes = append(c.Scopes, sc)
		}
	}
	if len(c.Scopes) == 0 {
		return nil, errors.New("at least one scope is required")
	}
	hasJWKS := len(reg.JWKS) > 0 || reg.JWKSURI != ""
	if reg.Type != authdb.Backend && hasJWKS {
		return nil, errors.New("only backend clients have a JWKS")
	}
	if reg.Type == authdb.Backend {
		switch {
		case len(reg.JWKS) > 0 && reg.JWKSURI != "":
			return nil, errors.New("give either a JWKS file or a JWKS URI, not both")
		case len(reg.JWKS) > 0:
			set, err := jwksfetch.Parse(reg.JWKS)
			if err != nil || len(set.Keys) == 0 {
				return nil, errors.New("the JWKS holds no usable public key")
			}
			b, err := json.Marshal(set)
			if err != nil {
				return nil, err
			}
			c.JWKS = string(b)
		case reg.JWKSURI != "":
			if err := checkURI(reg.JWKSURI, true); err != nil {
				return nil, fmt.Errorf("JWKS URI: %w", err)
			}
			c.JWKSURI = reg.JWKSURI
		default:
			return nil, errors.New("a backend client needs a JWKS file or a JWKS URI")
		}
	}
	out := &Registered{ClientID: c.ID}
	if reg.Type == authdb.Confidential {
		out.ClientSecret = randtoken.New()
		c.SecretHash = HashSecret(out.ClientSecret)
	}
	if err := store.CreateClient(ctx, c); err != nil {
		return nil, err
	}
	return out, nil
}

// checkURI accepts an absolute URI without a fragment (http(s) only when
// web is set).
func checkURI(s string, web bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Fragment != "" || strings.ContainsAny(s, " \t\r\n") {
		return errors.New("must be an absolute URI without a fragment")
	}
	if (web || u.Scheme == "http" || u.Scheme == "https") && ((u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		return errors.New("must be an absolute http(s) URL")
	}
	if !portOK(u) {
		return errors.New("the port must be a number from 1 to 65535")
	}
	return nil
}

// portOK reports whether u's port, if it has one, is a decimal number from
// 1 to 65535 without leading zeros (url.Parse lets 0, 99999, 08080 and an
// empty port after the colon through).
func portOK(u *url.URL) bool {
	p := u.Port()
	if p == "" {
		return !strings.HasSuffix(u.Host, ":")
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}
