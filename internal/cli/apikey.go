package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/audit"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// apikeyCmd manages API keys. It writes straight to the database; a
// running server reads keys on every request, so revocation and rotation
// take effect at once.
type apikeyCmd struct {
	Create apikeyCreateCmd `cmd:"" help:"Create an API key; prints the key once (it is stored only as a hash)."`
	List   apikeyListCmd   `cmd:"" help:"List API keys (prefix, scopes, created, last used; never the key)."`
	Revoke apikeyRevokeCmd `cmd:"" help:"Revoke an API key at once."`
	Rotate apikeyRotateCmd `cmd:"" help:"Replace an API key by a new one; the old key stays valid for --grace."`
}

// apikeyJSON is the output of create and rotate --json.
type apikeyJSON struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Patient   string    `json:"patient,omitempty"`
	AllowIPs  []string  `json:"allow_ips,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Rotate only: the replaced key and the end of its grace period.
	Replaces      string    `json:"replaces,omitempty"`
	OldValidUntil time.Time `json:"old_valid_until,omitzero"`
}

type apikeyCreateCmd struct {
	dbFlags
	Name    string        `name:"name" required:"" help:"Label of the key (who or what uses it)."`
	Scope   []string      `name:"scope" required:"" sep:"none" help:"SMART scopes, space-separated (repeatable): system/... or patient/... (with --patient)." placeholder:"SCOPES"`
	Patient string        `name:"patient" help:"Patient id that patient/ scopes are bound to." placeholder:"ID"`
	Expires time.Duration `name:"expires" help:"Lifetime, e.g. 720h (default: no expiry)." placeholder:"DURATION"`
	AllowIP []string      `name:"allow-ip" sep:"none" help:"Accept the key only from these addresses (CIDR, IPv4 or IPv6; repeatable)." placeholder:"CIDR"`
	JSON    bool          `name:"json" help:"Print one JSON object {\"key\",\"id\",\"prefix\",\"name\",\"scopes\",...}."`
	Force   bool          `name:"force" help:"Create the key even if the --patient does not exist (yet)."`
}

func (c *apikeyCreateCmd) Run(e *env) error {
	name := strings.TrimSpace(c.Name)
	if name == "" {
		return errors.New("--name must not be empty")
	}
	var scopes []string
	for _, s := range c.Scope {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if err := apikey.CheckScopes(scopes, c.Patient); err != nil {
		return err
	}
	ips, err := apikey.ParseAllowList(c.AllowIP)
	if err != nil {
		return err
	}
	if c.Expires < 0 {
		return errors.New("--expires must be positive")
	}
	if c.Patient != "" && !c.Force {
		if err := checkRecord(e, c.dbFlags, func(rc oauth.RecordChecker) error { return oauth.CheckPatient(e.ctx, rc, c.Patient) }, "key"); err != nil {
			return err
		}
	}
	key, prefix, hash, err := apikey.New()
	if err != nil {
		return err
	}
	id, err := apikey.NewID()
	if err != nil {
		return err
	}
	now := time.Now()
	k := &authdb.APIKey{ID: id, Name: name, Hash: hash, Prefix: prefix, Scopes: scopes, Patient: c.Patient, AllowIPs: ips, CreatedAt: now}
	if c.Expires > 0 {
		k.ExpiresAt = now.Add(c.Expires)
	}
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.CreateAPIKey(e.ctx, k); err != nil {
		return err
	}
	if err := recordAdminEvent(e, c.dbFlags, audit.Event{Kind: audit.KindAPIKeyCreated, Description: "cli apikey create " + id,
		Entities: []audit.Entity{{Type: "Basic", ID: id, Role: "apikey"}}}); err != nil {
		return fmt.Errorf("api key %s created, but its audit record failed (revoke it and retry): %w", id, err)
	}
	return printKey(e, c.JSON, key, k, "", time.Time{})
}

func printKey(e *env, asJSON bool, key string, k *authdb.APIKey, replaces string, oldUntil time.Time) error {
	out := apikeyJSON{Key: key, ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scopes: k.Scopes, Patient: k.Patient, AllowIPs: k.AllowIPs,
		ExpiresAt: k.ExpiresAt.UTC().Truncate(time.Second), Replaces: replaces, OldValidUntil: oldUntil.UTC().Truncate(time.Second)}
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(out)
	}
	fmt.Fprintf(e.stdout, "id: %s\nkey: %s\n", k.ID, key)
	if replaces != "" {
		fmt.Fprintf(e.stdout, "replaces: %s (valid until %s)\n", replaces, oldUntil.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(e.stdout, "(the key is shown only now; it is stored hashed)")
	return nil
}

type apikeyListCmd struct {
	dbFlags
	JSON bool `name:"json" help:"Print a JSON array."`
}

func (c *apikeyListCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	ks, err := db.APIKeys(e.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(ks)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tSCOPES\tPATIENT\tSTATUS\tCREATED\tLAST_USED")
	for _, k := range ks {
		status := "active"
		switch {
		case !k.RevokedAt.IsZero():
			status = "revoked"
		case !k.Valid(now):
			status = "expired"
		case k.ReplacedBy != "":
			status = "rotated (until " + k.ExpiresAt.Format(time.RFC3339) + ")"
		}
		used := "never"
		if !k.LastUsedAt.IsZero() {
			used = k.LastUsedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, strings.Join(k.Scopes, " "), k.Patient, status,
			k.CreatedAt.Format(time.RFC3339), used)
	}
	return tw.Flush()
}

type apikeyRevokeCmd struct {
	dbFlags
	ID   string `arg:"" name:"ID" help:"Key id (ak_...)."`
	JSON bool   `name:"json" help:"Print one JSON object {\"id\",\"revoked\"}."`
}

func (c *apikeyRevokeCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.RevokeAPIKey(e.ctx, c.ID, time.Now()); errors.Is(err, authdb.ErrNotFound) {
		return fmt.Errorf("no api key %q", c.ID)
	} else if err != nil {
		return err
	}
	if err := recordAdminEvent(e, c.dbFlags, audit.Event{Kind: audit.KindAPIKeyRevoked, Description: "cli apikey revoke",
		Entities: []audit.Entity{{Type: "Basic", ID: c.ID, Role: "apikey"}}}); err != nil {
		return fmt.Errorf("api key revoked, but its audit record failed: %w", err)
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"id": c.ID, "revoked": true})
	}
	fmt.Fprintf(e.stdout, "revoked api key %s\n", c.ID)
	return nil
}

type apikeyRotateCmd struct {
	dbFlags
	ID    string        `arg:"" name:"ID" help:"Key id (ak_...)."`
	Grace time.Duration `name:"grace" default:"24h" help:"How long the old key stays valid (0 ends it at once)." placeholder:"DURATION"`
	JSON  bool          `name:"json" help:"Print one JSON object {\"key\",\"id\",\"prefix\",\"name\",\"scopes\",\"replaces\",\"old_valid_until\",...}."`
}

func (c *apikeyRotateCmd) Run(e *env) error {
	if c.Grace < 0 {
		return errors.New("--grace must not be negative")
	}
	key, prefix, hash, err := apikey.New()
	if err != nil {
		return err
	}
	id, err := apikey.NewID()
	if err != nil {
		return err
	}
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now()
	next := &authdb.APIKey{ID: id, Hash: hash, Prefix: prefix, CreatedAt: now}
	switch err := db.RotateAPIKey(e.ctx, c.ID, next, now.Add(c.Grace), now); {
	case errors.Is(err, authdb.ErrNotFound):
		return fmt.Errorf("no api key %q", c.ID)
	case errors.Is(err, authdb.ErrAPIKeyRotated):
		return fmt.Errorf("api key %q was already rotated, or is revoked or expired", c.ID)
	case err != nil:
		return err
	}
	old, err := db.APIKey(e.ctx, c.ID)
	if err != nil {
		return err
	}
	if err := recordAdminEvent(e, c.dbFlags, audit.Event{Kind: audit.KindAPIKeyRotated, Description: "cli apikey rotate " + id,
		Entities: []audit.Entity{{Type: "Basic", ID: c.ID, Role: "apikey"}, {Type: "Basic", ID: id, Role: "apikey"}}}); err != nil {
		return fmt.Errorf("api key rotated to %s, but its audit record failed (revoke it and retry): %w", id, err)
	}
	return printKey(e, c.JSON, key, next, c.ID, old.ExpiresAt)
}
