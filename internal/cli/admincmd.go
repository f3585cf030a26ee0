package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lapis-health/lapis/client"
	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/client/profile"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/database"
)

// The admin commands (client, user, grants, apikey) act on the local
// database by default, through the admin service (package admin): the
// change, then its audit record, appended to the audit trail before the
// command reports success. With --server URL, --profile NAME or
// LAPIS_PROFILE they act on a remote Lapis through its admin API
// ([base]/auth/admin/, package client/admin), with a token of the
// client_credentials grant carrying system/lapis.admin, where the same
// service runs. Each command has one implementation for both modes, over
// adminBackend, and prints the same output (text or --json) in both.

// adminBackend is what the admin commands act on: *admin.Service (local)
// and *adminclient.Client (remote) have these methods.
type adminBackend interface {
	CreateClient(ctx context.Context, req adminclient.ClientRequest) (*adminclient.Registered, error)
	Clients(ctx context.Context, f adminclient.ClientFilter) ([]adminclient.OAuthClient, error)
	DeleteClient(ctx context.Context, id string) error
	ClientNetwork(ctx context.Context, id string) (*adminclient.Network, error)
	SetClientNetwork(ctx context.Context, id string, req adminclient.NetworkRequest) (*adminclient.Network, error)
	SetClientRateLimit(ctx context.Context, id string, req adminclient.RateLimit) (*adminclient.RateLimit, error)
	CreateUser(ctx context.Context, req adminclient.UserRequest) (*adminclient.User, error)
	Users(ctx context.Context) ([]adminclient.User, error)
	DeleteUser(ctx context.Context, username string) error
	Grants(ctx context.Context, f adminclient.GrantFilter) ([]adminclient.Grant, error)
	RevokeGrants(ctx context.Context, req adminclient.RevokeRequest) (*adminclient.Revoked, error)
	CreateAPIKey(ctx context.Context, req adminclient.APIKeyRequest) (*adminclient.NewAPIKey, error)
	APIKeys(ctx context.Context, f adminclient.APIKeyFilter) ([]adminclient.APIKey, error)
	RevokeAPIKey(ctx context.Context, id string) error
	RotateAPIKey(ctx context.Context, id string, req adminclient.RotateRequest) (*adminclient.NewAPIKey, error)
	SetAPIKeyRateLimit(ctx context.Context, id string, req adminclient.RateLimit) (*adminclient.RateLimit, error)
	RotateClientSecret(ctx context.Context, id string, overlap time.Duration) (*adminclient.NewSecret, error)
	SuspendClient(ctx context.Context, id, reason string) (*adminclient.OAuthClient, error)
	ResumeClient(ctx context.Context, id string) (*adminclient.OAuthClient, error)
	SuspendAPIKey(ctx context.Context, id, reason string) (*adminclient.APIKey, error)
	ResumeAPIKey(ctx context.Context, id string) (*adminclient.APIKey, error)
}

var (
	_ adminBackend = (*admin.Service)(nil)
	_ adminBackend = (*adminclient.Client)(nil)
)

// adminFlags select the target of an admin command: the local database
// (dbFlags) or a remote server (remoteFlags).
type adminFlags struct {
	dbFlags
	remoteFlags
}

// run runs fn on the backend the flags name and closes it. Refusals of
// the service are worded with the command's flags.
func (f *adminFlags) run(e *env, fn func(ctx context.Context, b adminBackend) error) error {
	if f.remote() {
		c, err := adminClient(e, &f.remoteFlags, f.dbFlags)
		if err != nil {
			return err
		}
		return fn(e.ctx, c)
	}
	return localAdmin(e, f.dbFlags, func(ctx context.Context, s *admin.Service) error { return fn(ctx, s) })
}

// localAdmin runs fn with the admin service on the local database, acting
// as the command's user (admin.CommandActor).
func localAdmin(e *env, f dbFlags, fn func(ctx context.Context, s *admin.Service) error) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	// One database handle for the command: the authorization store, the
	// command's audit chain and, when asked, the FHIR store.
	h, err := app.OpenDB(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	db, err := authdb.New(e.ctx, h)
	if err != nil {
		return err
	}
	defer db.Close()
	rec := &commandAudit{cfg: cfg, h: h}
	recs := &storeRecords{e: e, f: f, h: h}
	defer recs.close()
	s := admin.New(admin.Config{Store: db, Audit: rec, Logger: newLogger(e, "warn"), Records: recs})
	return flagWording(fn(admin.WithActor(e.ctx, admin.CommandActor()), s))
}

// commandAudit is the audit sink of a local admin command: a chain of its
// own in the audit table, appended directly (audit.Direct), opened on the
// first event so that reads touch nothing. One command uses it at a time.
type commandAudit struct {
	cfg config.Config
	h   *database.DB
	d   *audit.Direct
}

// Commit implements admin.Auditor.
func (a *commandAudit) Commit(ctx context.Context, ev audit.Event) error {
	if a.d == nil {
		db, err := audit.NewDB(ctx, a.h)
		if err != nil {
			return err
		}
		a.d = audit.NewDirect(db, a.cfg.FHIRBase())
	}
	return a.d.Commit(ctx, ev)
}

// fieldFlags are the command-line names of the request fields the
// service refuses.
var fieldFlags = map[string]string{
	"name": "--name", "owner": "--owner", "expires_in": "--expires", "grace": "--grace", "client_id": "--client",
	"rate_limit": "--rate-limit",
}

// flagWording rewords a refusal of the service with the flag at fault.
func flagWording(err error) error {
	var ie *admin.InvalidError
	if errors.As(err, &ie) && fieldFlags[ie.Field] != "" {
		return errors.New(fieldFlags[ie.Field] + " " + ie.Reason)
	}
	return err
}

// adminClient connects to the admin API named by f. Local flags (a data
// directory or database URL) alongside are refused: the target must be
// unambiguous.
func adminClient(e *env, f *remoteFlags, db dbFlags) (*adminclient.Client, error) {
	if db.Env == config.EnvSandbox {
		return nil, usagef("--env sandbox acts on the local database; for a remote server give the sandbox's base in --server (BASE/sandbox/fhir)")
	}
	if db.DataDir != "" || db.Database != "" {
		return nil, usagef("give --server/--profile (remote admin API) or --data-dir/--database (local database), not both (check LAPIS_PROFILE, LAPIS_DATA_DIR and LAPIS_DATABASE_URL)")
	}
	p, err := f.resolve(false)
	if err != nil {
		return nil, err
	}
	switch p.Auth.Method {
	case profile.MethodClientCredentials, profile.MethodBackendServices:
	default:
		return nil, usagef("the admin API needs a client_credentials or backend_services client registered with scope %s (--client-id and --client-secret-env, or such a profile)", adminclient.Scope)
	}
	p.Auth.Scopes = []string{adminclient.Scope}
	if err := p.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	c, err := withTokenCache(p).Client(e.ctx, client.WithUserAgent(userAgent()), client.WithLogger(cliLogger(e)))
	if err != nil {
		return nil, err
	}
	return adminclient.New(c), nil
}

// printTable prints a list as aligned columns: the tab-separated header,
// then the cells of each item.
func printTable[T any](w io.Writer, header string, items []T, cells func(T) []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, strings.Join(cells(it), "\t"))
	}
	return tw.Flush()
}

// notFound rewords "not found" as the commands say it: no client "x".
func notFound(err error, what, id string) error {
	if errors.Is(err, adminclient.ErrNotFound) {
		return fmt.Errorf("no %s %q", what, id)
	}
	return err
}

// readFileLimited reads a small input file (at most 1 MiB).
func readFileLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s: larger than 1 MiB", name)
	}
	return b, nil
}

// storeRecords is the record checker of the local admin commands: it
// opens the FHIR store of the command's database on its first use only
// (a command given --force, or not naming a resource, never opens it).
type storeRecords struct {
	e   *env
	f   dbFlags
	h   *database.DB // the command's database handle
	app *app.App
}

// RecordExists implements oauth.RecordChecker.
func (r *storeRecords) RecordExists(ctx context.Context, typ, id string) (bool, error) {
	if r.app == nil {
		cfg, err := r.f.config()
		if err != nil {
			return false, err
		}
		a, err := app.OpenWith(ctx, cfg, newLogger(r.e, "warn"), app.Options{DB: r.h})
		if err != nil {
			return false, err
		}
		r.app = a
	}
	return app.Patients{Service: r.app.Service}.RecordExists(ctx, typ, id)
}

func (r *storeRecords) close() {
	if r.app != nil {
		r.app.Close()
	}
}
