package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	adminclient "github.com/lapis-health/lapis/client/admin"
)

// clientNetworkCmd shows or replaces a client's network rules. Running
// servers enforce a change within a few seconds.
type clientNetworkCmd struct {
	adminFlags
	ID         string   `arg:"" name:"ID" help:"Client id."`
	AllowIP    []string `name:"allow-ip" help:"Only accept the client's tokens from this CIDR or address (repeatable; replaces the list)." placeholder:"CIDR"`
	CORSOrigin []string `name:"cors-origin" help:"Browser origin allowed to call the FHIR API with the client's tokens (repeatable; replaces the list)." placeholder:"URL"`
	Clear      bool     `name:"clear" help:"Remove every rule: any address, no browser origin."`
	JSON       bool     `name:"json" help:"Print the rules as one JSON object."`
}

func (c *clientNetworkCmd) Run(e *env) error {
	change := c.Clear || len(c.AllowIP) > 0 || len(c.CORSOrigin) > 0
	if c.Clear && (len(c.AllowIP) > 0 || len(c.CORSOrigin) > 0) {
		return errors.New("--clear cannot be combined with --allow-ip or --cors-origin")
	}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		cur, err := b.ClientNetwork(ctx, c.ID)
		if err != nil {
			return notFound(err, "client", c.ID)
		}
		if change {
			next := adminclient.NetworkRequest{}
			if !c.Clear {
				// Each flag given replaces its list; the other list is kept.
				next = adminclient.NetworkRequest{AllowIPs: cur.AllowIPs, CORSOrigins: cur.CORSOrigins}
				if len(c.AllowIP) > 0 {
					next.AllowIPs = c.AllowIP
				}
				if len(c.CORSOrigin) > 0 {
					next.CORSOrigins = c.CORSOrigin
				}
			}
			if cur, err = b.SetClientNetwork(ctx, c.ID, next); err != nil {
				return notFound(err, "client", c.ID)
			}
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(struct {
				ClientID    string   `json:"client_id"`
				AllowIPs    []string `json:"allow_ips"`
				CORSOrigins []string `json:"cors_origins"`
			}{c.ID, nonNil(cur.AllowIPs), nonNil(cur.CORSOrigins)})
		}
		allow := "any"
		if len(cur.AllowIPs) > 0 {
			allow = strings.Join(cur.AllowIPs, " ")
		}
		origins := "none"
		if len(cur.CORSOrigins) > 0 {
			origins = strings.Join(cur.CORSOrigins, " ")
		}
		fmt.Fprintf(e.stdout, "client %s\nallow-ip: %s\ncors-origin: %s\n", c.ID, allow, origins)
		return nil
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
