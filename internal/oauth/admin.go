package oauth

import (
	"context"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// ScopeAdmin is the scope of the admin API (package adminapi). It is a
// system/ scope, so it is granted only by the client_credentials grant,
// and only to a confidential or backend client registered with it (public
// clients cannot register system/ scopes, and /authorize never grants
// system/ scopes to a user):
//
//	lapis client create --name admin --type confidential --scope system/lapis.admin
//
// A client_credentials request without a scope gets every system/ scope the
// client registered, this one included; keep admin clients separate from
// data clients.
const ScopeAdmin = "system/lapis.admin"

// AdminStore is the storage of the admin API and the apps page (package
// authorize), implemented by *authdb.DB. The apps page uses it when the
// server's Config.Clients implements it (Open configures the database,
// which does); otherwise the page answers 503.
type AdminStore interface {
	ClientStore
	ClientCreator
	AccountCreator
	Clients(ctx context.Context) ([]authdb.Client, error)
	DeleteClient(ctx context.Context, id string) error
	Accounts(ctx context.Context) ([]authdb.Account, error)
	AccountByUsername(ctx context.Context, username string) (*authdb.Account, error)
	AccountBySubject(ctx context.Context, subject string) (*authdb.Account, error)
	DeleteAccount(ctx context.Context, username string) error
	Grants(ctx context.Context, f authdb.GrantFilter, now time.Time) ([]authdb.GrantSummary, error)
	RevokeGrants(ctx context.Context, f authdb.GrantFilter, now time.Time) (int, error)
}
