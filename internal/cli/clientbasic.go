package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
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

func (c *clientBasicEnableCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	cl, err := db.Client(e.ctx, c.ID)
	if errors.Is(err, authdb.ErrNotFound) {
		return fmt.Errorf("no client %q", c.ID)
	}
	if err != nil {
		return err
	}
	if cl.Type != authdb.Confidential {
		return fmt.Errorf("client %q is %s: only confidential clients (with a secret) can use Basic", c.ID, cl.Type)
	}
	if err := db.EnableBasic(e.ctx, c.ID, time.Now()); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(clientBasicJSON{ClientID: c.ID, Basic: true})
	}
	fmt.Fprintf(e.stdout, "basic auth enabled for client %s\n", c.ID)
	return nil
}

type clientBasicDisableCmd struct {
	dbFlags
	ID   string `arg:"" name:"CLIENT_ID" help:"Client id."`
	JSON bool   `name:"json" help:"Print one JSON object {\"client_id\",\"basic\"}."`
}

func (c *clientBasicDisableCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.DisableBasic(e.ctx, c.ID); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(clientBasicJSON{ClientID: c.ID, Basic: false})
	}
	fmt.Fprintf(e.stdout, "basic auth disabled for client %s\n", c.ID)
	return nil
}
