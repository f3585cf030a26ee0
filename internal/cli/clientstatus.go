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
	return changeStatus(e, &c.adminFlags, c.JSON, "suspended", "client", c.ID, func(ctx context.Context, b adminBackend) (*adminclient.OAuthClient, error) {
		return b.SuspendClient(ctx, c.ID, c.Reason)
	})
}

type clientResumeCmd struct {
	adminFlags
	ID     string `arg:"" name:"ID" help:"Client id."`
	Reason string `name:"reason" help:"Ignored; accepted for symmetry with suspend." hidden:""`
	JSON   bool   `name:"json" help:"Print the client as a JSON object."`
}

func (c *clientResumeCmd) Run(e *env) error {
	return changeStatus(e, &c.adminFlags, c.JSON, "resumed", "client", c.ID, func(ctx context.Context, b adminBackend) (*adminclient.OAuthClient, error) {
		return b.ResumeClient(ctx, c.ID)
	})
}

type apikeySuspendCmd struct {
	adminFlags
	ID     string `arg:"" name:"ID" help:"Key id (ak_...)."`
	Reason string `name:"reason" required:"" help:"Why the key is suspended (kept with it)." placeholder:"TEXT"`
	JSON   bool   `name:"json" help:"Print the key as a JSON object."`
}

func (c *apikeySuspendCmd) Run(e *env) error {
	return changeStatus(e, &c.adminFlags, c.JSON, "suspended", "api key", c.ID, func(ctx context.Context, b adminBackend) (*adminclient.APIKey, error) {
		return b.SuspendAPIKey(ctx, c.ID, c.Reason)
	})
}

type apikeyResumeCmd struct {
	adminFlags
	ID   string `arg:"" name:"ID" help:"Key id (ak_...)."`
	JSON bool   `name:"json" help:"Print the key as a JSON object."`
}

func (c *apikeyResumeCmd) Run(e *env) error {
	return changeStatus(e, &c.adminFlags, c.JSON, "resumed", "api key", c.ID, func(ctx context.Context, b adminBackend) (*adminclient.APIKey, error) {
		return b.ResumeAPIKey(ctx, c.ID)
	})
}

// changeStatus suspends or resumes (done: "suspended" or "resumed") the
// client or API key (kind) id with change, and prints the result as JSON
// or the line "DONE KIND ID"; an unknown id is "no KIND".
func changeStatus[T any](e *env, f *adminFlags, asJSON bool, done, kind, id string, change func(context.Context, adminBackend) (T, error)) error {
	return f.run(e, func(ctx context.Context, b adminBackend) error {
		v, err := change(ctx, b)
		if err != nil {
			return notFound(err, kind, id)
		}
		if asJSON {
			return json.NewEncoder(e.stdout).Encode(v)
		}
		_, err = fmt.Fprintln(e.stdout, done+" "+kind+" "+id)
		return err
	})
}
