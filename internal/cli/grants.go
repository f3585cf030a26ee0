package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/oauth"
)

// grantsCmd lists and revokes the access users gave apps, in the local
// database or on a remote server (see admincmd.go). A revocation takes
// effect on a running server at once (refresh tokens are deleted; access
// tokens join the revocation list the server checks on every request).
type grantsCmd struct {
	List   grantsListCmd   `cmd:"" help:"List live grants: which apps hold tokens for which users."`
	Revoke grantsRevokeCmd `cmd:"" help:"Revoke an app's grants for one user, or for every user when --user is not given."`
}

type grantsListCmd struct {
	adminFlags
	User   string `name:"user" help:"Only this user's grants." placeholder:"USERNAME"`
	Client string `name:"client" help:"Only this client's grants." placeholder:"CLIENT_ID"`
	JSON   bool   `name:"json" help:"Print a JSON array."`
}

func (c *grantsListCmd) Run(e *env) error {
	user := oauth.NormalizeUsername(c.User)
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		gs, err := b.Grants(ctx, adminclient.GrantFilter{ClientID: c.Client, Username: user})
		if err != nil {
			return notFound(err, "user", user)
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(gs)
		}
		return printTable(e.stdout, "CLIENT_ID\tCLIENT\tUSER\tSCOPES\tLAST_USED", gs, func(g adminclient.Grant) []string {
			return []string{g.ClientID, g.ClientName, g.Username, strings.Join(g.Scopes, " "), g.LastUsedAt.Format(time.RFC3339)}
		})
	})
}

type grantsRevokeCmd struct {
	adminFlags
	Client string `name:"client" required:"" help:"The client whose grants are revoked." placeholder:"CLIENT_ID"`
	User   string `name:"user" help:"Only this user's grants (default: every user's)." placeholder:"USERNAME"`
	JSON   bool   `name:"json" help:"Print one JSON object {\"client_id\",\"username\",\"revoked\"}."`
}

// grantsRevokeJSON is the output of grants revoke --json.
type grantsRevokeJSON struct {
	ClientID string `json:"client_id"`
	Username string `json:"username,omitempty"`
	Revoked  int    `json:"revoked"`
}

func (c *grantsRevokeCmd) Run(e *env) error {
	out := grantsRevokeJSON{ClientID: c.Client, Username: oauth.NormalizeUsername(c.User)}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		res, err := b.RevokeGrants(ctx, adminclient.RevokeRequest{ClientID: c.Client, Username: out.Username})
		if err != nil {
			return notFound(err, "user", out.Username)
		}
		out.Revoked = res.Revoked
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(out)
		}
		who := "every user"
		if out.Username != "" {
			who = out.Username
		}
		fmt.Fprintf(e.stdout, "revoked %d grant(s) of client %s for %s\n", out.Revoked, c.Client, who)
		return nil
	})
}
