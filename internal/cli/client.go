package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/oauth/keys"
)

// clientCmd manages OAuth clients: in the local database (a running
// server sees changes at once) or on a remote server (see admincmd.go).
type clientCmd struct {
	Create  clientCreateCmd  `cmd:"" help:"Register a client; prints its id (and, for confidential clients, its secret, shown only once)."`
	List    clientListCmd    `cmd:"" help:"List registered clients."`
	Delete  clientDeleteCmd  `cmd:"" help:"Delete a client (and revoke the access users gave it)."`
	Basic   clientBasicCmd   `cmd:"" help:"Allow or forbid HTTP Basic (client id + secret) on the FHIR API for a confidential client (local database only)."`
	Network clientNetworkCmd `cmd:"" help:"Show or replace a client's network rules (IP allow-list, CORS origins)."`
	Update  clientUpdateCmd  `cmd:"" help:"Change a client's own rate limit on the FHIR API; running servers apply it within a second."`
	// RotateSecret, Suspend and Resume: clientstatus.go.
	RotateSecret clientRotateSecretCmd `cmd:"" name:"rotate-secret" help:"Give a confidential client a new secret (shown only once); the old one keeps working for --overlap."`
	Suspend      clientSuspendCmd      `cmd:"" help:"Suspend a client: it gets no tokens and its tokens stop working on every instance at once."`
	Resume       clientResumeCmd       `cmd:"" help:"Lift a client's suspension."`
}

type clientCreateCmd struct {
	adminFlags
	Name        string   `name:"name" required:"" help:"Display name."`
	Type        string   `name:"type" required:"" enum:"public,confidential,backend" help:"public, confidential (secret) or backend (private_key_jwt)."`
	RedirectURI []string `name:"redirect-uri" help:"Exact redirect URI (repeatable)." placeholder:"URI"`
	LaunchURI   string   `name:"launch-uri" help:"EHR launch URL of the app." placeholder:"URI"`
	Scope       []string `name:"scope" required:"" help:"Allowed scopes, space-separated (repeatable)." placeholder:"SCOPES"`
	JWKSFile    string   `name:"jwks-file" help:"JWKS file with the backend client's public keys." type:"existingfile" xor:"jwks" placeholder:"FILE"`
	JWKSURI     string   `name:"jwks-uri" help:"URL of the backend client's JWKS." xor:"jwks" placeholder:"URL"`
	AllowIP     []string `name:"allow-ip" help:"Only accept the client's tokens from this CIDR or address (repeatable; default anywhere)." placeholder:"CIDR"`
	CORSOrigin  []string `name:"cors-origin" help:"Browser origin allowed to call the FHIR API with the client's tokens (repeatable)." placeholder:"URL"`
	Owner       string   `name:"owner" help:"Who manages the client, e.g. admin or a developer account id (optional)." placeholder:"OWNER"`
	rateLimitFlag
	JSON bool `name:"json" help:"Print one JSON object {\"client_id\",\"client_secret\"}."`
}

// openAuthDB opens the authorization store named by the shared flags.
func openAuthDB(e *env, f dbFlags) (*authdb.DB, config.Config, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, cfg, err
	}
	db, err := authdb.Open(e.ctx, cfg.Database.URL, cfg.Database.DataDir)
	return db, cfg, err
}

func (c *clientCreateCmd) Run(e *env) error {
	req := adminclient.ClientRequest{Name: c.Name, Type: c.Type, RedirectURIs: c.RedirectURI, LaunchURI: c.LaunchURI, Scopes: c.Scope, JWKSURI: c.JWKSURI,
		AllowIPs: c.AllowIP, CORSOrigins: c.CORSOrigin, Owner: c.Owner, RateLimit: c.rateLimit()}
	if c.JWKSFile != "" {
		b, err := readFileLimited(c.JWKSFile)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return usagef("%s: not valid JSON", c.JWKSFile)
		}
		req.JWKS = b
	}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		out, err := b.CreateClient(ctx, req)
		if err != nil {
			return err
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(out)
		}
		fmt.Fprintf(e.stdout, "client_id: %s\n", out.ClientID)
		if out.ClientSecret != "" {
			fmt.Fprintf(e.stdout, "client_secret: %s\n(the secret is shown only now; it is stored hashed)\n", out.ClientSecret)
		}
		return nil
	})
}

type clientListCmd struct {
	adminFlags
	Owner string `name:"owner" help:"Only the clients of this owner." placeholder:"OWNER"`
	JSON  bool   `name:"json" help:"Print a JSON array."`
}

func (c *clientListCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		clients, err := b.Clients(ctx, adminclient.ClientFilter{Owner: c.Owner})
		if err != nil {
			return err
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(clients)
		}
		return printTable(e.stdout, "CLIENT_ID\tTYPE\tNAME\tSCOPES\tRATE_LIMIT", clients, func(cl adminclient.OAuthClient) []string {
			return []string{cl.ID, cl.Type, cl.Name, strings.Join(cl.Scopes, " "), rateLimitText(cl.RateLimit)}
		})
	})
}

type clientDeleteCmd struct {
	adminFlags
	ID string `arg:"" name:"ID" help:"Client id."`
}

func (c *clientDeleteCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		if err := b.DeleteClient(ctx, c.ID); err != nil {
			return notFound(err, "client", c.ID)
		}
		fmt.Fprintf(e.stdout, "deleted client %s\n", c.ID)
		return nil
	})
}

// keysCmd manages the authorization server's signing keys.
type keysCmd struct {
	Rotate keysRotateCmd `cmd:"" help:"Generate new signing keys; old public keys stay published until their tokens expire."`
}

type keysRotateCmd struct {
	dbFlags
	KEKFile string `name:"kek-file" env:"LAPIS_KEK_FILE" help:"Key-encryption-key file (default DATA-DIR/auth-kek)." placeholder:"FILE"`
}

func (c *keysRotateCmd) Run(e *env) error {
	db, cfg, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	kek := c.KEKFile
	if kek == "" {
		kek = cfg.Auth.KEKFile // the sandbox's: production's file
	}
	if kek == "" {
		kek = filepath.Join(cfg.Database.DataDir, keys.KEKFile)
	}
	m, err := keys.Open(e.ctx, db, keys.Options{KEKFile: kek, KEK: os.Getenv("LAPIS_KEK")})
	if err != nil {
		return err
	}
	if err := m.Rotate(e.ctx); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "signing keys rotated")
	return nil
}
