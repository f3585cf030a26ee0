package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	adminclient "github.com/lapis-health/lapis/client/admin"
)

type clientRotateSecretCmd struct {
	adminFlags
	ID      string        `arg:"" name:"ID" help:"Client id (a confidential client)."`
	Overlap time.Duration `name:"overlap" default:"24h" help:"How long the old secret keeps working (0 ends it at once)." placeholder:"DURATION"`
	JSON    bool          `name:"json" help:"Print one JSON object {\"client_id\",\"client_secret\",\"old_valid_until\"}."`
}

func (c *clientRotateSecretCmd) Run(e *env) error {
	if c.Overlap < 0 {
		return usagef("--overlap must not be negative")
	}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		out, err := b.RotateClientSecret(ctx, c.ID, c.Overlap)
		switch {
		case errors.Is(err, adminclient.ErrConflict):
			return fmt.Errorf("client %q is not confidential: it has no secret to rotate", c.ID)
		case err != nil:
			return notFound(err, "client", c.ID)
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(out)
		}
		fmt.Fprintf(e.stdout, "client_id: %s\nclient_secret: %s\n(the secret is shown only now; it is stored hashed)\nold secret valid until: %s\n",
			out.ClientID, out.ClientSecret, out.OldValidUntil.Format(time.RFC3339))
		return nil
	})
}

type clientSuspendCmd struct {
	adminFlags
	ID     string `arg:"" name:"ID" help:"Client id."`
	Reason string `name:"reason" required:"" help:"Why the client is suspended (kept with it)." placeholder:"TEXT"`
	JSON   bool   `name:"json" help:"Print the client as a JSON object."`
}

func (c *clientSuspendCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		cl, err := b.SuspendClient(ctx, c.ID, c.Reason)
		if err != nil {
			return notFound(err, "client", c.ID)
		}
		return printStatus(e, c.JSON, cl, "suspended client "+c.ID)
	})
}

type clientResumeCmd struct {
	adminFlags
	ID     string `arg:"" name:"ID" help:"Client id."`
	Reason string `name:"reason" help:"Ignored; accepted for symmetry with suspend." hidden:""`
	JSON   bool   `name:"json" help:"Print the client as a JSON object."`
}

func (c *clientResumeCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		cl, err := b.ResumeClient(ctx, c.ID)
		if err != nil {
			return notFound(err, "client", c.ID)
		}
		return printStatus(e, c.JSON, cl, "resumed client "+c.ID)
	})
}

type apikeySuspendCmd struct {
	adminFlags
	ID     string `arg:"" name:"ID" help:"Key id (ak_...)."`
	Reason string `name:"reason" required:"" help:"Why the key is suspended (kept with it)." placeholder:"TEXT"`
	JSON   bool   `name:"json" help:"Print the key as a JSON object."`
}

func (c *apikeySuspendCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		k, err := b.SuspendAPIKey(ctx, c.ID, c.Reason)
		if err != nil {
			return notFound(err, "api key", c.ID)
		}
		return printStatus(e, c.JSON, k, "suspended api key "+c.ID)
	})
}

type apikeyResumeCmd struct {
	adminFlags
	ID   string `arg:"" name:"ID" help:"Key id (ak_...)."`
	JSON bool   `name:"json" help:"Print the key as a JSON object."`
}

func (c *apikeyResumeCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		k, err := b.ResumeAPIKey(ctx, c.ID)
		if err != nil {
			return notFound(err, "api key", c.ID)
		}
		return printStatus(e, c.JSON, k, "resumed api key "+c.ID)
	})
}

// printStatus prints v as JSON, or the line text.
func printStatus(e *env, asJSON bool, v any, text string) error {
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(v)
	}
	_, err := fmt.Fprintln(e.stdout, text)
	return err
}
