package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	adminclient "github.com/lapis-health/lapis/client/admin"
)

// apikeyCmd manages API keys, in the local database or on a remote server
// (see admincmd.go). A running server reads keys on every request, so
// revocation and rotation take effect at once.
type apikeyCmd struct {
	Create apikeyCreateCmd `cmd:"" help:"Create an API key; prints the key once (it is stored only as a hash)."`
	List   apikeyListCmd   `cmd:"" help:"List API keys (prefix, scopes, created, last used; never the key)."`
	Revoke apikeyRevokeCmd `cmd:"" help:"Revoke an API key at once."`
	Rotate apikeyRotateCmd `cmd:"" help:"Replace an API key by a new one; the old key stays valid for --grace."`
	// Suspend and Resume: clientstatus.go.
	Suspend apikeySuspendCmd `cmd:"" help:"Suspend an API key: it is refused at once."`
	Resume  apikeyResumeCmd  `cmd:"" help:"Lift an API key's suspension."`
	Update  apikeyUpdateCmd  `cmd:"" help:"Change an API key's own rate limit on the FHIR API; running servers apply it within a second."`
}

type apikeyCreateCmd struct {
	adminFlags
	Name    string        `name:"name" required:"" help:"Label of the key (who or what uses it)."`
	Scope   []string      `name:"scope" required:"" sep:"none" help:"SMART scopes, space-separated (repeatable): system/... or patient/... (with --patient)." placeholder:"SCOPES"`
	Patient string        `name:"patient" help:"Patient id that patient/ scopes are bound to." placeholder:"ID"`
	Expires time.Duration `name:"expires" help:"Lifetime, e.g. 720h (default: no expiry)." placeholder:"DURATION"`
	AllowIP []string      `name:"allow-ip" sep:"none" help:"Accept the key only from these addresses (CIDR, IPv4 or IPv6; repeatable)." placeholder:"CIDR"`
	Owner   string        `name:"owner" help:"Who manages the key, e.g. admin or a developer account id (optional)." placeholder:"OWNER"`
	rateLimitFlag
	JSON  bool `name:"json" help:"Print one JSON object {\"key\",\"id\",\"prefix\",\"name\",\"scopes\",...}."`
	Force bool `name:"force" help:"Create the key even if the --patient does not exist (yet)."`
}

func (c *apikeyCreateCmd) Run(e *env) error {
	req := adminclient.APIKeyRequest{Name: c.Name, Scopes: c.Scope, Patient: c.Patient, AllowIPs: c.AllowIP, Owner: c.Owner, Force: c.Force, RateLimit: c.rateLimit()}
	if c.Expires != 0 { // 0: no expiry; negative: refused
		d := adminclient.Duration(c.Expires)
		req.ExpiresIn = &d
	}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		k, err := b.CreateAPIKey(ctx, req)
		if err != nil {
			return err
		}
		return printKey(e, c.JSON, k)
	})
}

// printKey prints a created or rotated key (shown only now).
func printKey(e *env, asJSON bool, k *adminclient.NewAPIKey) error {
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(k)
	}
	fmt.Fprintf(e.stdout, "id: %s\nkey: %s\n", k.ID, k.Key)
	if k.Replaces != "" {
		fmt.Fprintf(e.stdout, "replaces: %s (valid until %s)\n", k.Replaces, k.OldValidUntil.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(e.stdout, "(the key is shown only now; it is stored hashed)")
	return nil
}

type apikeyListCmd struct {
	adminFlags
	Owner string `name:"owner" help:"Only the keys of this owner." placeholder:"OWNER"`
	JSON  bool   `name:"json" help:"Print a JSON array."`
}

func (c *apikeyListCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		ks, err := b.APIKeys(ctx, adminclient.APIKeyFilter{Owner: c.Owner})
		if err != nil {
			return err
		}
		if c.JSON {
			stored := make([]adminclient.APIKey, len(ks))
			for i, k := range ks {
				k.Status = "" // what is stored, not a view of it
				stored[i] = k
			}
			return json.NewEncoder(e.stdout).Encode(stored)
		}
		return printTable(e.stdout, "ID\tPREFIX\tNAME\tSCOPES\tPATIENT\tSTATUS\tCREATED\tLAST_USED\tRATE_LIMIT", ks, func(k adminclient.APIKey) []string {
			status := k.Status
			if status == adminclient.StatusRotated {
				status = "rotated (until " + k.ExpiresAt.Format(time.RFC3339) + ")"
			}
			used := "never"
			if !k.LastUsedAt.IsZero() {
				used = k.LastUsedAt.Format(time.RFC3339)
			}
			return []string{k.ID, k.Prefix + "…", k.Name, strings.Join(k.Scopes, " "), k.Patient, status,
				k.CreatedAt.Format(time.RFC3339), used, rateLimitText(k.RateLimit)}
		})
	})
}

type apikeyRevokeCmd struct {
	adminFlags
	ID   string `arg:"" name:"ID" help:"Key id (ak_...)."`
	JSON bool   `name:"json" help:"Print one JSON object {\"id\",\"revoked\"}."`
}

func (c *apikeyRevokeCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		if err := b.RevokeAPIKey(ctx, c.ID); err != nil {
			return notFound(err, "api key", c.ID)
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(map[string]any{"id": c.ID, "revoked": true})
		}
		fmt.Fprintf(e.stdout, "revoked api key %s\n", c.ID)
		return nil
	})
}

type apikeyRotateCmd struct {
	adminFlags
	ID    string        `arg:"" name:"ID" help:"Key id (ak_...)."`
	Grace time.Duration `name:"grace" default:"24h" help:"How long the old key stays valid (0 ends it at once)." placeholder:"DURATION"`
	JSON  bool          `name:"json" help:"Print one JSON object {\"key\",\"id\",\"prefix\",\"name\",\"scopes\",\"replaces\",\"old_valid_until\",...}."`
}

func (c *apikeyRotateCmd) Run(e *env) error {
	grace := adminclient.Duration(c.Grace)
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		k, err := b.RotateAPIKey(ctx, c.ID, adminclient.RotateRequest{Grace: &grace})
		switch {
		case errors.Is(err, adminclient.ErrConflict):
			return fmt.Errorf("api key %q was already rotated, or is revoked, expired or suspended", c.ID)
		case err != nil:
			return notFound(err, "api key", c.ID)
		}
		return printKey(e, c.JSON, k)
	})
}
