package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// grantsCmd lists and revokes the access users gave apps. It acts on the
// database directly: a revocation takes effect on a running server at
// once (refresh tokens are deleted; access tokens join the revocation list
// the server checks on every request).
type grantsCmd struct {
	List   grantsListCmd   `cmd:"" help:"List live grants: which apps hold tokens for which users."`
	Revoke grantsRevokeCmd `cmd:"" help:"Revoke an app's grants for one user, or for every user when --user is not given."`
}

type grantsListCmd struct {
	dbFlags
	User   string `name:"user" help:"Only this user's grants." placeholder:"USERNAME"`
	Client string `name:"client" help:"Only this client's grants." placeholder:"CLIENT_ID"`
	JSON   bool   `name:"json" help:"Print a JSON array."`
}

// subjectOf returns the subject of username ("" for no username).
func subjectOf(e *env, db *authdb.DB, username string) (string, error) {
	if username == "" {
		return "", nil
	}
	name := oauth.NormalizeUsername(username)
	a, err := db.AccountByUsername(e.ctx, name)
	if errors.Is(err, authdb.ErrNotFound) {
		return "", fmt.Errorf("no user %q", name)
	}
	if err != nil {
		return "", err
	}
	return a.Subject, nil
}

func (c *grantsListCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := subjectOf(e, db, c.User)
	if err != nil {
		return err
	}
	gs, err := db.Grants(e.ctx, authdb.GrantFilter{ClientID: c.Client, Subject: sub}, time.Now())
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(gs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tCLIENT\tUSER\tSCOPES\tLAST_USED")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.ClientID, g.ClientName, g.Username, strings.Join(g.Scopes, " "), g.LastUsedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

type grantsRevokeCmd struct {
	dbFlags
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
	if strings.TrimSpace(c.Client) == "" {
		return errors.New("--client is required")
	}
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := subjectOf(e, db, c.User)
	if err != nil {
		return err
	}
	n, err := db.RevokeGrants(e.ctx, authdb.GrantFilter{ClientID: c.Client, Subject: sub}, time.Now())
	if err != nil {
		return err
	}
	out := grantsRevokeJSON{ClientID: c.Client, Revoked: n}
	if c.User != "" {
		out.Username = oauth.NormalizeUsername(c.User)
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(out)
	}
	who := "every user"
	if out.Username != "" {
		who = out.Username
	}
	fmt.Fprintf(e.stdout, "revoked %d grant(s) of client %s for %s\n", n, c.Client, who)
	return nil
}
