package cli

import (
	"errors"
	"fmt"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/developer"
)

// portalFlags are the developer portal's flags of lapis serve.
type portalFlags struct {
	Portal   bool   `name:"portal" env:"LAPIS_PORTAL" default:"true" negatable:"" help:"Serve the developer portal at BASE/portal/ (sign-up, apps, keys)."`
	SMTPURL  string `name:"smtp-url" env:"LAPIS_SMTP_URL" help:"SMTP server of the portal's emails: smtp://USER:PASS@HOST:PORT[?tls=mandatory|opportunistic|none] or smtps://... (default: development mode, which writes the emails' links to the log)." placeholder:"URL"`
	SMTPFrom string `name:"smtp-from" env:"LAPIS_SMTP_FROM" help:"Sender address of the portal's emails (required with --smtp-url)." placeholder:"ADDRESS"`
}

func (f portalFlags) apply(c *config.Config) {
	c.Portal = config.Portal{Enabled: f.Portal, SMTPURL: f.SMTPURL, SMTPFrom: f.SMTPFrom}
}

// portalCmd manages the developer portal.
type portalCmd struct {
	Operator portalOperatorCmd `cmd:"" help:"Manage the portal's operators (developer accounts that administer the portal)."`
}

type portalOperatorCmd struct {
	Add    portalOperatorAddCmd    `cmd:"" help:"Make an existing developer account a portal operator."`
	Remove portalOperatorRemoveCmd `cmd:"" help:"Take the operator flag from a developer account."`
}

type portalOperatorAddCmd struct{ portalOperatorSetCmd }

func (c *portalOperatorAddCmd) Run(e *env) error { return c.set(e, true) }

type portalOperatorRemoveCmd struct{ portalOperatorSetCmd }

func (c *portalOperatorRemoveCmd) Run(e *env) error { return c.set(e, false) }

type portalOperatorSetCmd struct {
	dbFlags
	Email string `arg:"" help:"The developer account's email address." placeholder:"EMAIL"`
}

func (c *portalOperatorSetCmd) set(e *env, on bool) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	h, err := database.Open(e.ctx, database.Options{URL: cfg.Database.URL, DataDir: cfg.Database.DataDir})
	if err != nil {
		return err
	}
	defer h.Close()
	svc, err := developer.New(e.ctx, h, developer.Options{})
	if err != nil {
		return err
	}
	email := developer.NormalizeEmail(c.Email)
	if err := svc.SetOperator(e.ctx, email, on); errors.Is(err, developer.ErrNotFound) {
		return fmt.Errorf("no developer account with the address %s (sign up at BASE/portal/signup first)", email)
	} else if err != nil {
		return err
	}
	if on {
		fmt.Fprintf(e.stdout, "%s is a portal operator\n", email)
	} else {
		fmt.Fprintf(e.stdout, "%s is no longer a portal operator\n", email)
	}
	return nil
}
