package admin

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/oauth"
)

// creator passes the creations of oauth.RegisterClient and
// oauth.CreateAccount to the store with the owner set, and remembers the
// store's error, telling storage failures (internal) from validation
// errors (the caller's).
type creator struct {
	Store
	owner     string
	rateLimit authdb.RateLimit
	err       error
}

func (c *creator) CreateClient(ctx context.Context, cl *authdb.Client) error {
	cl.Owner, cl.RateLimit = c.owner, c.rateLimit
	c.err = c.Store.CreateClient(ctx, cl)
	return c.err
}

func (c *creator) CreateAccount(ctx context.Context, a *authdb.Account) error {
	c.err = c.Store.CreateAccount(ctx, a)
	return c.err
}

func oauthClient(c *authdb.Client) api.OAuthClient {
	out := api.OAuthClient{ID: c.ID, Name: c.Name, Type: c.Type, RedirectURIs: nonNil(c.RedirectURIs), LaunchURI: c.LaunchURI,
		Scopes: nonNil(c.Scopes), JWKS: c.JWKS, JWKSURI: c.JWKSURI, CreatedAt: c.CreatedAt.UTC(), Owner: c.Owner,
		RateLimit: rateLimitOf(c.RateLimit), SuspendedAt: c.SuspendedAt.UTC(), SuspendReason: c.SuspendReason}
	if c.Type == authdb.Confidential && !c.PrevSecretUntil.IsZero() && time.Now().Before(c.PrevSecretUntil) {
		out.PrevSecretUntil = c.PrevSecretUntil.UTC()
	}
	return out
}

// convert returns f of each element of xs, in order; never nil, so that
// an empty list is [] in JSON.
func convert[T, U any](xs []T, f func(*T) U) []U {
	out := make([]U, 0, len(xs))
	for i := range xs {
		out = append(out, f(&xs[i]))
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// clientRules checks and canonicalises a client's network rules.
func clientRules(id string, allowIPs, origins []string) (authdb.ClientNetRules, error) {
	r, err := netpolicy.ClientRulesFrom(id, allowIPs, origins)
	if err != nil {
		return authdb.ClientNetRules{}, invalid("", "client network rules: "+err.Error())
	}
	return authdb.ClientNetRules(r), nil
}

// CreateClient registers a client (see oauth.RegisterClient for the
// rules) with its network rules and owner, and returns its id and, for a
// confidential client, its secret (shown only here). No client exists
// without the network rules it was created with.
func (s *Service) CreateClient(ctx context.Context, req api.ClientRequest) (*api.Registered, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkOwner(req.Owner); err != nil {
		return nil, err
	}
	rules, err := clientRules("", req.AllowIPs, req.CORSOrigins)
	if err != nil {
		return nil, err
	}
	rl, err := checkRateLimit(req.RateLimit)
	if err != nil {
		return nil, err
	}
	reg := oauth.Registration{Name: req.Name, Type: req.Type, RedirectURIs: req.RedirectURIs, LaunchURI: req.LaunchURI,
		Scopes: req.Scopes, JWKSURI: req.JWKSURI}
	if len(req.JWKS) > 0 && string(req.JWKS) != "null" {
		reg.JWKS = req.JWKS
	}
	cr := &creator{Store: s.st, owner: req.Owner, rateLimit: rl}
	out, err := oauth.RegisterClient(ctx, cr, reg)
	switch {
	case err != nil && cr.err != nil:
		return nil, cr.err
	case err != nil:
		return nil, invalid("", err.Error())
	}
	if len(rules.AllowIPs) > 0 || len(rules.CORSOrigins) > 0 {
		rules.ClientID = out.ClientID
		if err := s.st.SetClientNetRules(ctx, rules); err != nil {
			if derr := s.st.DeleteClient(ctx, out.ClientID); derr != nil {
				return nil, fmt.Errorf("storing the network rules failed (%w) and the client %s could not be removed: %v", err, out.ClientID, derr)
			}
			return nil, fmt.Errorf("storing the network rules failed; the client was not created: %w", err)
		}
	}
	attrs := []slog.Attr{slog.String("client_id", out.ClientID), slog.String("type", req.Type)}
	if req.Owner != "" {
		attrs = append(attrs, slog.String("owner", req.Owner))
	}
	if !rl.IsZero() {
		attrs = append(attrs, rateLimitAttrs(rl)...)
	}
	if err := s.done(ctx, a, change{action: "create_client", targets: []string{out.ClientID}, attrs: attrs}); err != nil {
		return nil, err
	}
	return &api.Registered{ClientID: out.ClientID, ClientSecret: out.ClientSecret}, nil
}

// Clients lists the clients matching f, oldest first.
func (s *Service) Clients(ctx context.Context, f api.ClientFilter) ([]api.OAuthClient, error) {
	cs, err := s.st.ClientsBy(ctx, authdb.ClientFilter{Owner: f.Owner})
	if err != nil {
		return nil, err
	}
	return convert(cs, oauthClient), nil
}

// OAuthClient returns the client id.
func (s *Service) OAuthClient(ctx context.Context, id string) (*api.OAuthClient, error) {
	c, err := s.st.Client(ctx, id)
	if err != nil {
		return nil, notFound(err, "client")
	}
	out := oauthClient(c)
	return &out, nil
}

// DeleteClient deletes the client id and revokes every grant users gave
// it (its tokens stop verifying at once).
func (s *Service) DeleteClient(ctx context.Context, id string) error {
	a, err := s.actor(ctx)
	if err != nil {
		return err
	}
	if err := s.st.DeleteClient(ctx, id); err != nil {
		return notFound(err, "client")
	}
	n, err := s.st.RevokeGrants(ctx, authdb.GrantFilter{ClientID: id}, s.now())
	if err != nil {
		return err
	}
	return s.done(ctx, a, change{action: "delete_client", targets: []string{id},
		attrs: []slog.Attr{slog.String("client_id", id), slog.Int("grants_revoked", n)}})
}

func network(r authdb.ClientNetRules) *api.Network {
	return &api.Network{ClientID: r.ClientID, AllowIPs: nonNil(r.AllowIPs), CORSOrigins: nonNil(r.CORSOrigins)}
}

// ClientNetwork returns the network rules of the client id.
func (s *Service) ClientNetwork(ctx context.Context, id string) (*api.Network, error) {
	r, err := s.st.ClientNetRulesFor(ctx, id)
	if err != nil {
		return nil, notFound(err, "client")
	}
	return network(r), nil
}

// SetClientNetwork replaces both lists of network rules of the client id
// (empty lists remove them); running servers enforce them within seconds.
func (s *Service) SetClientNetwork(ctx context.Context, id string, req api.NetworkRequest) (*api.Network, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	rules, err := clientRules(id, req.AllowIPs, req.CORSOrigins)
	if err != nil {
		return nil, err
	}
	if err := s.st.SetClientNetRules(ctx, rules); err != nil {
		return nil, notFound(err, "client")
	}
	if err := s.done(ctx, a, change{action: "set_client_network", targets: []string{id},
		attrs: []slog.Attr{slog.String("client_id", id), slog.Int("allow_ips", len(rules.AllowIPs)), slog.Int("cors_origins", len(rules.CORSOrigins))}}); err != nil {
		return nil, err
	}
	return network(rules), nil
}

// SetClientBasic lets a confidential client authenticate to the FHIR API
// with HTTP Basic (on), or stops it (off; idempotent, also for a client
// that no longer exists).
func (s *Service) SetClientBasic(ctx context.Context, id string, on bool) error {
	a, err := s.actor(ctx)
	if err != nil {
		return err
	}
	action := "disable_basic"
	if on {
		action = "enable_basic"
		c, err := s.st.Client(ctx, id)
		if err != nil {
			return notFound(err, "client")
		}
		if c.Type != authdb.Confidential {
			return invalid("", fmt.Sprintf("client %q is %s: only confidential clients (with a secret) can use Basic", id, c.Type))
		}
		err = s.st.EnableBasic(ctx, id, s.now())
		if err != nil {
			return notFound(err, "client")
		}
	} else if err := s.st.DisableBasic(ctx, id); err != nil {
		return err
	}
	return s.done(ctx, a, change{action: action, targets: []string{id}, attrs: []slog.Attr{slog.String("client_id", id)}})
}
