package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

func userOf(a *authdb.Account) api.User {
	return api.User{Username: a.Username, Subject: a.Subject, FHIRUser: a.FHIRUser, CreatedAt: a.CreatedAt.UTC()}
}

// CreateUser creates a login (see oauth.CreateAccount for the rules on
// username, password and FHIR user).
func (s *Service) CreateUser(ctx context.Context, req api.UserRequest) (*api.User, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	if s.recs != nil && !req.Force && oauth.ValidateAccount(req.Username, req.Password, req.FHIRUser) == nil {
		if err := missingRecord(oauth.CheckFHIRUser(ctx, s.recs, req.FHIRUser), "login"); err != nil {
			return nil, err
		}
	}
	cr := &creator{Store: s.st}
	acct, err := oauth.CreateAccount(ctx, cr, req.Username, req.Password, req.FHIRUser)
	switch {
	case errors.Is(cr.err, authdb.ErrExists):
		return nil, &ConflictError{Reason: fmt.Sprintf("the username %q is taken", oauth.NormalizeUsername(req.Username))}
	case cr.err != nil:
		return nil, cr.err
	case err != nil:
		return nil, invalid("", err.Error())
	}
	if err := s.done(ctx, a, change{action: "create_user", targets: []string{acct.Subject},
		attrs: []slog.Attr{slog.String("username", acct.Username), slog.String("subject", acct.Subject)}}); err != nil {
		return nil, err
	}
	out := userOf(acct)
	return &out, nil
}

// Users lists the logins by username.
func (s *Service) Users(ctx context.Context) ([]api.User, error) {
	accts, err := s.st.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	return convert(accts, userOf), nil
}

// account returns the login named username (case-insensitive).
func (s *Service) account(ctx context.Context, username string) (*authdb.Account, error) {
	acct, err := s.st.AccountByUsername(ctx, oauth.NormalizeUsername(username))
	if err != nil {
		return nil, notFound(err, "user")
	}
	return acct, nil
}

// User returns the login named username.
func (s *Service) User(ctx context.Context, username string) (*api.User, error) {
	acct, err := s.account(ctx, username)
	if err != nil {
		return nil, err
	}
	out := userOf(acct)
	return &out, nil
}

// DeleteUser deletes the login named username, ends its sessions and
// revokes every grant it gave.
func (s *Service) DeleteUser(ctx context.Context, username string) error {
	a, err := s.actor(ctx)
	if err != nil {
		return err
	}
	acct, err := s.account(ctx, username)
	if err != nil {
		return err
	}
	if err := s.st.DeleteAccount(ctx, acct.Username); err != nil {
		return notFound(err, "user")
	}
	n, err := s.st.RevokeGrants(ctx, authdb.GrantFilter{Subject: acct.Subject}, s.now())
	if err != nil {
		return err
	}
	return s.done(ctx, a, change{action: "delete_user", targets: []string{acct.Subject},
		attrs: []slog.Attr{slog.String("username", acct.Username), slog.String("subject", acct.Subject), slog.Int("grants_revoked", n)}})
}

// grantFilter resolves a username to its subject.
func (s *Service) grantFilter(ctx context.Context, clientID, username string) (authdb.GrantFilter, error) {
	f := authdb.GrantFilter{ClientID: clientID}
	if username != "" {
		acct, err := s.account(ctx, username)
		if err != nil {
			return f, err
		}
		f.Subject = acct.Subject
	}
	return f, nil
}

// grantOf is the API form of a grant.
func grantOf(g *authdb.GrantSummary) api.Grant {
	return api.Grant{ClientID: g.ClientID, ClientName: g.ClientName, Subject: g.Subject, Username: g.Username,
		Scopes: nonNil(g.Scopes), Families: g.Families, CreatedAt: g.CreatedAt, LastUsedAt: g.LastUsedAt, ExpiresAt: g.ExpiresAt}
}

// Grants lists the live grants matching f, one per (app, user).
func (s *Service) Grants(ctx context.Context, f api.GrantFilter) ([]api.Grant, error) {
	gf, err := s.grantFilter(ctx, f.ClientID, f.Username)
	if err != nil {
		return nil, err
	}
	gs, err := s.st.Grants(ctx, gf, s.now())
	if err != nil {
		return nil, err
	}
	return convert(gs, grantOf), nil
}

// RevokeGrants revokes the grants of the app req.ClientID for one user,
// or for every user when req.Username is empty: refresh tokens are
// deleted and access tokens stop verifying at once.
func (s *Service) RevokeGrants(ctx context.Context, req api.RevokeRequest) (*api.Revoked, error) {
	a, err := s.actor(ctx)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.ClientID) == "" {
		return nil, invalid("client_id", "is required")
	}
	f, err := s.grantFilter(ctx, req.ClientID, req.Username)
	if err != nil {
		return nil, err
	}
	n, err := s.st.RevokeGrants(ctx, f, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.done(ctx, a, change{action: "revoke_grants", targets: []string{req.ClientID, f.Subject},
		attrs: []slog.Attr{slog.String("client_id", req.ClientID), slog.String("subject", f.Subject), slog.Int("revoked", n)}}); err != nil {
		return nil, err
	}
	return &api.Revoked{Revoked: n}, nil
}
