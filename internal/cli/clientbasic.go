package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lapis-health/lapis/internal/admin"
)

// clientBasicCmd turns HTTP Basic on the FHIR API on or off per client
// (off by default). It writes straight to the database: a running server
// sees the change at once.
type clientBasicCmd struct {
	Enable  clientBasicEnableCmd  `cmd:"" help:"Let a confidential client authenticate to the FHIR API with HTTP Basic (client id + secret), with its registered scopes."`
	Disable clientBasicDisableCmd `cmd:"" help:"Stop accepting HTTP Basic from a client."`
}

type clientBasicEnableCmd struct {
	dbFlags
	ID   string `arg:"" name:"CLIENT_ID" help:"Client id."`
	JSON bool   `name:"json" help:"Print one JSON object {\"client_id\",\"basic\"}."`
}

type clientBasicJSON struct {
	ClientID string `json:"client_id"`
	Basic    bool   `json:"basic"`
}

func (c *clientBasicEnableCmd) Run(e *env) error { return setBasic(e, c.dbFlags, c.ID, true, c.JSON) }

type clientBasicDisableCmd struct {
	dbFlags
	ID   string `arg:"" name:"CLIENT_ID" help:"Client id."`
	JSON bool   `name:"json" help:"Print one JSON object {\"client_id\",\"basic\"}."`
}

func (c *clientBasicDisableCmd) Run(e *env) error { return setBasic(e, c.dbFlags, c.ID, false, c.JSON) }

func setBasic(e *env, f dbFlags, id string, on, asJSON bool) error {
	return localAdmin(e, f, func(ctx context.Context, s *admin.Service) error {
		if err := s.SetClientBasic(ctx, id, on); err != nil {
			return notFound(err, "client", id)
		}
		if asJSON {
			return json.NewEncoder(e.stdout).Encode(clientBasicJSON{ClientID: id, Basic: on})
		}
		state := "disabled"
		if on {
			state = "enabled"
		}
		fmt.Fprintf(e.stdout, "basic auth %s for client %s\n", state, id)
		return nil
	})
}
