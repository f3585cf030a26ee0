package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/netpolicy"
)

// netRules checks and canonicalises the --allow-ip and --cors-origin
// values of a client.
func netRules(allowIPs, origins []string) (authdb.ClientNetRules, error) {
	r, err := netpolicy.ClientRulesFrom("", allowIPs, origins)
	if err != nil {
		return r, fmt.Errorf("client network rules: %w", err)
	}
	return r, nil
}

// setNetRules stores the rules of a client just created; if that fails
// the client is deleted again, so that no client exists without the
// restrictions it was created with.
func setNetRules(e *env, db *authdb.DB, clientID string, r authdb.ClientNetRules) error {
	if len(r.AllowIPs) == 0 && len(r.CORSOrigins) == 0 {
		return nil
	}
	r.ClientID = clientID
	if err := db.SetClientNetRules(e.ctx, r); err != nil {
		if derr := db.DeleteClient(e.ctx, clientID); derr != nil {
			return fmt.Errorf("storing the network rules failed (%w) and the client %s could not be removed: %v", err, clientID, derr)
		}
		return fmt.Errorf("storing the network rules failed; the client was not created: %w", err)
	}
	return nil
}

// clientNetworkCmd shows or replaces a client's network rules. Running
// servers enforce a change within a few seconds.
type clientNetworkCmd struct {
	dbFlags
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
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	cur, err := db.ClientNetRulesFor(e.ctx, c.ID)
	if errors.Is(err, authdb.ErrNotFound) {
		return fmt.Errorf("no client %q", c.ID)
	} else if err != nil {
		return err
	}
	if change {
		next := authdb.ClientNetRules{}
		if !c.Clear {
			// Each flag given replaces its list; the other list is kept.
			allow, origins := cur.AllowIPs, cur.CORSOrigins
			if len(c.AllowIP) > 0 {
				allow = c.AllowIP
			}
			if len(c.CORSOrigin) > 0 {
				origins = c.CORSOrigin
			}
			if next, err = netRules(allow, origins); err != nil {
				return err
			}
		}
		next.ClientID = c.ID
		if err := db.SetClientNetRules(e.ctx, next); errors.Is(err, authdb.ErrNotFound) {
			return fmt.Errorf("no client %q", c.ID)
		} else if err != nil {
			return err
		}
		cur = next
	}
	if c.JSON {
		if cur.AllowIPs == nil {
			cur.AllowIPs = []string{}
		}
		if cur.CORSOrigins == nil {
			cur.CORSOrigins = []string{}
		}
		return json.NewEncoder(e.stdout).Encode(struct {
			ClientID    string   `json:"client_id"`
			AllowIPs    []string `json:"allow_ips"`
			CORSOrigins []string `json:"cors_origins"`
		}{c.ID, cur.AllowIPs, cur.CORSOrigins})
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
}
