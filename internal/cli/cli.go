// Package cli is the lapis command line: it parses flags and environment
// variables into a config.Config and runs the chosen command. Every command
// exits 0 on success and otherwise prints one line "lapis: <error>" on
// stderr and exits non-zero.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
)

// Version is the Lapis version reported by "lapis version" and the
// CapabilityStatement.
const Version = app.Version

// dbFlags are the flags every command that opens the database shares.
type dbFlags struct {
	DataDir  string `name:"data-dir" env:"LAPIS_DATA_DIR" help:"Directory for the embedded database (default ~/.local/share/lapis)." placeholder:"DIR"`
	Database string `name:"database" env:"LAPIS_DATABASE_URL" help:"Database URL: postgres://... for PostgreSQL, sqlite:PATH, or empty for the embedded SQLite database in --data-dir." placeholder:"URL"`
	BaseURL  string `name:"base-url" env:"LAPIS_BASE_URL" help:"Public base URL of the server (the FHIR base is BASE/fhir); default http://ADDR." placeholder:"URL"`
	// SandboxDatabase is the sandbox environment's database.
	SandboxDatabase string `name:"sandbox-database" env:"LAPIS_SANDBOX_DATABASE_URL" help:"Database URL of the sandbox environment (default: SQLite in DATA-DIR/sandbox with an SQLite production, the schema lapis_sandbox of the production database with PostgreSQL)." placeholder:"URL"`
	// Env is the environment an admin command acts on.
	Env string `name:"env" default:"production" enum:"production,sandbox" help:"Environment whose database the command acts on: production or sandbox."`
}

func (f dbFlags) apply(c *config.Config) {
	if f.DataDir != "" {
		c.Database.DataDir = f.DataDir
	}
	c.Database.URL = f.Database
	c.Server.BaseURL = f.BaseURL
	c.Sandbox.DatabaseURL = f.SandboxDatabase
}

// config is the normalized configuration of an admin command: the
// environment --env names.
func (f dbFlags) config() (config.Config, error) {
	cfg := config.Defaults()
	f.apply(&cfg)
	if err := cfg.Normalize(false); err != nil {
		return cfg, err
	}
	if f.Env == config.EnvSandbox {
		cfg = cfg.SandboxConfig()
	}
	return cfg, nil
}

// openApp opens the FHIR store and service for an admin command (no access
// control: admin commands act on the database directly).
func openApp(e *env, f dbFlags) (*app.App, config.Config, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, cfg, err
	}
	a, err := app.Open(e.ctx, cfg, newLogger(e, "warn"))
	return a, cfg, err
}

type grammar struct {
	Serve           serveCmd           `cmd:"" help:"Run the FHIR server."`
	Import          importCmd          `cmd:"" help:"Import transaction, batch and collection Bundles and NDJSON files."`
	Reindex         reindexCmd         `cmd:"" help:"Recompute the search index of stored resources (after an upgrade changes extraction)."`
	USCore          uscoreCmd          `cmd:"" name:"uscore" help:"US Core reports: the Must Support coverage of the database (lapis uscore coverage)."`
	Client          clientCmd          `cmd:"" help:"Manage OAuth clients (local database, or a remote server with --server/--profile)."`
	Keys            keysCmd            `cmd:"" help:"Manage the authorization server's signing keys."`
	User            userCmd            `cmd:"" help:"Manage patient and practitioner logins (local database, or a remote server with --server/--profile)."`
	Grants          grantsCmd          `cmd:"" help:"List and revoke the access users gave apps (local database, or a remote server with --server/--profile)."`
	Apikey          apikeyCmd          `cmd:"" name:"apikey" help:"Manage API keys for server-to-server access to the FHIR API (local database, or a remote server with --server/--profile)."`
	Sandbox         sandboxCmd         `cmd:"" help:"Load or reset the sandbox environment's database (also while a server runs)."`
	Demo            demoCmd            `cmd:"" help:"Create demo logins: a practitioner and the first N patients (passwords printed once)."`
	Audit           auditCmd           `cmd:"" help:"Verify the tamper-evident audit trail."`
	Portal          portalCmd          `cmd:"" help:"Manage the developer portal (lapis portal operator add EMAIL)."`
	ServiceBaseURLs serviceBaseURLsCmd `cmd:"" name:"servicebaseurls" help:"Print and check the service base URL Bundle published at [base]/servicebaseurls."`
	Login           loginCmd           `cmd:"" group:"Client" help:"Log in to a SMART server in the browser (PKCE) and store the tokens for the profile."`
	Token           tokenCmd           `cmd:"" group:"Client" help:"Print a valid access token of a profile or server, refreshing it if needed."`
	Get             getCmd             `cmd:"" group:"Client" help:"Read a resource from a FHIR server: TYPE/ID[/_history/VERSION]."`
	Search          searchCmd          `cmd:"" group:"Client" help:"Search a FHIR server: TYPE [PARAM=VALUE...]."`
	Create          createCmd          `cmd:"" group:"Client" help:"Create a resource on a FHIR server from a JSON file or stdin."`
	Update          updateCmd          `cmd:"" group:"Client" help:"Replace a resource on a FHIR server from a JSON file or stdin."`
	Delete          deleteCmd          `cmd:"" group:"Client" help:"Delete a resource on a FHIR server."`
	Export          exportCmd          `cmd:"" group:"Client" help:"Run a Bulk Data $export and download its files (resumable)."`
	Transaction     transactionCmd     `cmd:"" group:"Client" help:"Send transaction or batch Bundles (e.g. Synthea files) to a FHIR server's base URL."`
	Group           groupCmd           `cmd:"" group:"Client" help:"Make a Group of patients (a cohort for Group/ID/$export) on a FHIR server."`
	Version         versionCmd         `cmd:"" help:"Print the version."`
}

// env carries the process streams to commands.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Main runs the lapis command line with args (without the program name)
// and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := takeParser(stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "lapis: %v\n", err)
		return 2
	}
	defer p.release()
	kctx, err := p.k.Parse(args)
	if p.exit >= 0 { // --help
		return p.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "lapis: %s\n", oneLine(err))
		return 2
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if err := kctx.Run(e); err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		fmt.Fprintf(stderr, "lapis: %s%s\n", oneLine(err), hint(err))
		return exitCode(err)
	}
	return 0
}

// hint says what to do about an error the user can act on: a refused
// refresh token (invalid_grant: the stored login was revoked or expired)
// needs a new "lapis login".
func hint(err error) string {
	var oe *client.OAuthError
	if errors.As(err, &oe) && oe.Code == "invalid_grant" {
		return `; run "lapis login" again`
	}
	return ""
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	_, err := fmt.Fprintf(e.stdout, "lapis %s\n", Version)
	return err
}
