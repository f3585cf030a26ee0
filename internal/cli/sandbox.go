package cli

import (
	"fmt"
	"os"

	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/sandbox"
)

type sandboxCmd struct {
	Load  sandboxLoadCmd  `cmd:"" help:"Load the sandbox dataset (or the given transaction Bundles) into the sandbox environment."`
	Reset sandboxResetCmd `cmd:"" help:"Wipe the sandbox environment: its FHIR data, clients, API keys, logins, tokens and signing keys (the audit trail is kept)."`
}

// sandboxFlags are the database flags of the sandbox commands, which
// always act on the sandbox environment.
type sandboxFlags struct {
	DataDir         string `name:"data-dir" env:"LAPIS_DATA_DIR" help:"Directory for the embedded database (default ~/.local/share/lapis)." placeholder:"DIR"`
	Database        string `name:"database" env:"LAPIS_DATABASE_URL" help:"Production database URL (the sandbox's default follows it)." placeholder:"URL"`
	SandboxDatabase string `name:"sandbox-database" env:"LAPIS_SANDBOX_DATABASE_URL" help:"Database URL of the sandbox environment." placeholder:"URL"`
	BaseURL         string `name:"base-url" env:"LAPIS_BASE_URL" help:"Public base URL of the server." placeholder:"URL"`
	KEKFile         string `name:"kek-file" env:"LAPIS_KEK_FILE" help:"Key-encryption-key file (default DATA-DIR/auth-kek), as lapis serve has it." placeholder:"FILE"`
}

func (f sandboxFlags) db() dbFlags {
	return dbFlags{DataDir: f.DataDir, Database: f.Database, SandboxDatabase: f.SandboxDatabase, BaseURL: f.BaseURL, Env: config.EnvSandbox}
}

// config is the sandbox environment's configuration.
func (f sandboxFlags) config() (config.Config, error) {
	cfg, err := f.db().config()
	if err != nil {
		return cfg, err
	}
	if f.KEKFile != "" {
		cfg.Auth.KEKFile = f.KEKFile
	}
	cfg.Auth.KEK = os.Getenv("LAPIS_KEK")
	return cfg, nil
}

type sandboxResetCmd struct {
	sandboxFlags
}

func (c *sandboxResetCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if err := resetSandbox(e, cfg); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "sandbox reset")
	return nil
}

func resetSandbox(e *env, cfg config.Config) error {
	h, err := app.OpenDB(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	return sandbox.Reset(e.ctx, h, sandbox.ResetOptions{KEKFile: cfg.Auth.KEKFile, KEK: cfg.Auth.KEK})
}

type sandboxLoadCmd struct {
	sandboxFlags
	Reset bool     `name:"reset" help:"Reset the sandbox first (lapis sandbox reset)."`
	Files []string `arg:"" optional:"" name:"bundle" help:"Transaction or batch Bundle files to load instead of the built-in sandbox dataset." type:"existingfile"`
}

func (c *sandboxLoadCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var ds sandbox.Dataset
	if len(c.Files) == 0 {
		if ds, err = sandbox.Builtin(); err != nil {
			return err
		}
	}
	for _, name := range c.Files {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		ds.Bundles = append(ds.Bundles, b)
	}
	if c.Reset {
		if err := resetSandbox(e, cfg); err != nil {
			return err
		}
	}
	h, err := app.OpenDB(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	a, err := app.OpenWith(e.ctx, cfg, newLogger(e, "warn"), app.Options{DB: h})
	if err != nil {
		return err
	}
	defer a.Close()
	adb, err := authdb.New(e.ctx, h)
	if err != nil {
		return err
	}
	defer adb.Close()
	adm := admin.New(admin.Config{Store: adb, Audit: &commandAudit{cfg: cfg, h: h}, Logger: newLogger(e, "warn"), Records: app.Patients{Service: a.Service}})
	sum, err := sandbox.Load(admin.WithActor(e.ctx, admin.CommandActor()), a.Service, adm, ds)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "sandbox loaded: %d bundles, %d entries, %d logins created (%d existed)\n", sum.Bundles, sum.Entries, sum.Logins, sum.Existing)
	if sum.AppClientID != "" {
		fmt.Fprintf(e.stdout, "sandbox test app (public, PKCE): client_id %s\n", sum.AppClientID)
	}
	return nil
}
