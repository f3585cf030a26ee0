package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/client/profile"
	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// The admin commands (client, user, apikey, grants) act on the local database by
// default. With --server URL, --profile NAME or LAPIS_PROFILE they act on a
// remote Lapis through its admin API ([base]/auth/admin/), with a token of
// the client_credentials grant carrying system/lapis.admin, and print the
// same output (text or --json) as in local mode. The types below wrap the
// local commands with the remote flags; their Run picks the mode. The
// wrappers list every subcommand of clientCmd, userCmd, apikeyCmd and grantsCmd
// (TestAdminWrappersComplete fails when one is missing); subcommands the
// admin API has no endpoint for are the local ones, unchanged.

// maxAdminAnswer bounds an admin API answer.
const maxAdminAnswer = 16 << 20

// admin is a connection to a remote admin API.
type admin struct {
	c *client.Client
}

// adminClient connects to the admin API named by f. Local flags (a data
// directory or database URL) alongside are refused: the target must be
// unambiguous.
func adminClient(e *env, f *remoteFlags, db dbFlags) (*admin, error) {
	if db.DataDir != "" || db.Database != "" {
		return nil, usagef("give --server/--profile (remote admin API) or --data-dir/--database (local database), not both (check LAPIS_PROFILE, LAPIS_DATA_DIR and LAPIS_DATABASE_URL)")
	}
	p, err := f.resolve(false)
	if err != nil {
		return nil, err
	}
	switch p.Auth.Method {
	case profile.MethodClientCredentials, profile.MethodBackendServices:
	default:
		return nil, usagef("the admin API needs a client_credentials or backend_services client registered with scope %s (--client-id and --client-secret-env, or such a profile)", oauth.ScopeAdmin)
	}
	p.Auth.Scopes = []string{oauth.ScopeAdmin}
	if err := p.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	c, err := withTokenCache(p).Client(e.ctx, client.WithUserAgent(userAgent()), client.WithLogger(cliLogger(e)))
	if err != nil {
		return nil, err
	}
	return &admin{c: c}, nil
}

// adminError is an error answer of the admin API (RFC 6749 §5.2 shape).
type adminError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *adminError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Code, e.Description)
	}
	return fmt.Sprintf("admin API: %d %s", e.Status, http.StatusText(e.Status))
}

// call sends one admin API request (body marshalled as JSON when not nil)
// and decodes a 2xx answer into out (when not nil).
func (a *admin) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	hdr := http.Header{"Accept": {"application/json"}}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(ctx, method, strings.TrimPrefix(oauth.PathAdmin, "/")+path, rd, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ae := &adminError{Status: resp.StatusCode}
		_ = json.Unmarshal(b, ae)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %v", client.ErrUnauthorized, ae)
		case http.StatusForbidden:
			return &client.Error{StatusCode: resp.StatusCode, Method: method, Path: oauth.PathAdmin + path}
		}
		return ae
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return errors.New("admin API: the answer is not the expected JSON")
	}
	return nil
}

// isNotFound reports a 404 of the admin API.
func isNotFound(err error) bool {
	var ae *adminError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// readFileLimited reads a small input file (at most 1 MiB).
func readFileLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s: larger than 1 MiB", name)
	}
	return b, nil
}

// --- clients ---

// clientsCmd is "lapis client": clientCmd with a remote mode.
type clientsCmd struct {
	Create  clientCreateRemote `cmd:"" help:"Register a client; prints its id (and, for confidential clients, its secret, shown only once)."`
	List    clientListRemote   `cmd:"" help:"List registered clients."`
	Delete  clientDeleteRemote `cmd:"" help:"Delete a client."`
	Basic   clientBasicCmd     `cmd:"" help:"Allow or forbid HTTP Basic (client id + secret) on the FHIR API for a confidential client (local database only)."`
	Network clientNetworkCmd   `cmd:"" help:"Show or replace a client's network rules (IP allow-list, CORS origins; local database only)."`
}

type clientCreateRemote struct {
	clientCreateCmd
	remoteFlags
}

func (c *clientCreateRemote) Run(e *env) error {
	if !c.remote() {
		return c.clientCreateCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	req := oauth.AdminClientRequest{Name: c.Name, Type: c.Type, RedirectURIs: c.RedirectURI, LaunchURI: c.LaunchURI, Scopes: c.Scope, JWKSURI: c.JWKSURI}
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
	var out oauth.Registered
	if err := a.call(e.ctx, http.MethodPost, "clients", req, &out); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(&out)
	}
	fmt.Fprintf(e.stdout, "client_id: %s\n", out.ClientID)
	if out.ClientSecret != "" {
		fmt.Fprintf(e.stdout, "client_secret: %s\n(the secret is shown only now; it is stored hashed)\n", out.ClientSecret)
	}
	return nil
}

type clientListRemote struct {
	clientListCmd
	remoteFlags
}

func (c *clientListRemote) Run(e *env) error {
	if !c.remote() {
		return c.clientListCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	var out struct {
		Clients []authdb.Client `json:"clients"`
	}
	if err := a.call(e.ctx, http.MethodGet, "clients", nil, &out); err != nil {
		return err
	}
	if c.JSON {
		if out.Clients == nil {
			out.Clients = []authdb.Client{}
		}
		return json.NewEncoder(e.stdout).Encode(out.Clients)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tTYPE\tNAME\tSCOPES")
	for _, cl := range out.Clients {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cl.ID, cl.Type, cl.Name, strings.Join(cl.Scopes, " "))
	}
	return tw.Flush()
}

type clientDeleteRemote struct {
	clientDeleteCmd
	remoteFlags
}

func (c *clientDeleteRemote) Run(e *env) error {
	if !c.remote() {
		return c.clientDeleteCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	if err := a.call(e.ctx, http.MethodDelete, "clients/"+url.PathEscape(c.ID), nil, nil); isNotFound(err) {
		return fmt.Errorf("no client %q", c.ID)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted client %s\n", c.ID)
	return nil
}

// --- users ---

// usersCmd is "lapis user": userCmd with a remote mode.
type usersCmd struct {
	Create userCreateRemote `cmd:"" help:"Create a login linked to a FHIR Patient or Practitioner."`
	List   userListRemote   `cmd:"" help:"List logins."`
	Delete userDeleteRemote `cmd:"" help:"Delete a login (and end its sessions)."`
}

type userCreateRemote struct {
	userCreateCmd
	remoteFlags
}

func (c *userCreateRemote) Run(e *env) error {
	if !c.remote() {
		return c.userCreateCmd.Run(e)
	}
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	var out oauth.AdminUser
	if err := a.call(e.ctx, http.MethodPost, "users", oauth.AdminUserRequest{Username: c.Username, Password: pw, FHIRUser: c.FHIRUser, Force: c.Force}, &out); err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(userJSON{Username: out.Username, Subject: out.Subject, FHIRUser: out.FHIRUser})
	}
	fmt.Fprintf(e.stdout, "created user %s (%s), subject %s\n", out.Username, out.FHIRUser, out.Subject)
	return nil
}

type userListRemote struct {
	userListCmd
	remoteFlags
}

func (c *userListRemote) Run(e *env) error {
	if !c.remote() {
		return c.userListCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	var out struct {
		Users []authdb.Account `json:"users"`
	}
	if err := a.call(e.ctx, http.MethodGet, "users", nil, &out); err != nil {
		return err
	}
	if c.JSON {
		if out.Users == nil {
			out.Users = []authdb.Account{}
		}
		return json.NewEncoder(e.stdout).Encode(out.Users)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tFHIR_USER\tSUBJECT")
	for _, u := range out.Users {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.FHIRUser, u.Subject)
	}
	return tw.Flush()
}

type userDeleteRemote struct {
	userDeleteCmd
	remoteFlags
}

func (c *userDeleteRemote) Run(e *env) error {
	if !c.remote() {
		return c.userDeleteCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	name := oauth.NormalizeUsername(c.Username)
	if err := a.call(e.ctx, http.MethodDelete, "users/"+url.PathEscape(name), nil, nil); isNotFound(err) {
		return fmt.Errorf("no user %q", name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted user %s\n", name)
	return nil
}

// --- API keys ---

// apikeysCmd is "lapis apikey": apikeyCmd with a remote mode.
type apikeysCmd struct {
	Create apikeyCreateRemote `cmd:"" help:"Create an API key; prints the key once (it is stored only as a hash)."`
	List   apikeyListRemote   `cmd:"" help:"List API keys (prefix, scopes, created, last used; never the key)."`
	Revoke apikeyRevokeRemote `cmd:"" help:"Revoke an API key at once."`
	Rotate apikeyRotateRemote `cmd:"" help:"Replace an API key by a new one; the old key stays valid for --grace."`
}

type apikeyCreateRemote struct {
	apikeyCreateCmd
	remoteFlags
}

func (c *apikeyCreateRemote) Run(e *env) error {
	if !c.remote() {
		return c.apikeyCreateCmd.Run(e)
	}
	// The same checks as local mode, before any request.
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("--name must not be empty")
	}
	var scopes []string
	for _, s := range c.Scope {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if err := apikey.CheckScopes(scopes, c.Patient); err != nil {
		return err
	}
	if _, err := apikey.ParseAllowList(c.AllowIP); err != nil {
		return err
	}
	if c.Expires < 0 {
		return errors.New("--expires must be positive")
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	req := oauth.AdminAPIKeyRequest{Name: c.Name, Scopes: scopes, Patient: c.Patient, AllowIPs: c.AllowIP, Force: c.Force}
	if c.Expires > 0 {
		d := oauth.AdminDuration(c.Expires)
		req.ExpiresIn = &d
	}
	var out apikeyJSON
	if err := a.call(e.ctx, http.MethodPost, "apikeys", adminAPIKeyBody(req), &out); err != nil {
		return err
	}
	return printRemoteKey(e, c.JSON, &out)
}

// adminAPIKeyBody is the JSON of an AdminAPIKeyRequest (AdminDuration has
// no MarshalJSON: it is sent as a duration string).
func adminAPIKeyBody(r oauth.AdminAPIKeyRequest) map[string]any {
	m := map[string]any{"name": r.Name, "scopes": r.Scopes}
	if r.Patient != "" {
		m["patient"] = r.Patient
	}
	if len(r.AllowIPs) > 0 {
		m["allow_ips"] = r.AllowIPs
	}
	if r.ExpiresIn != nil {
		m["expires_in"] = time.Duration(*r.ExpiresIn).String()
	}
	if r.Force {
		m["force"] = true
	}
	return m
}

// printRemoteKey prints a created or rotated key as printKey does.
func printRemoteKey(e *env, asJSON bool, k *apikeyJSON) error {
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

type apikeyListRemote struct {
	apikeyListCmd
	remoteFlags
}

func (c *apikeyListRemote) Run(e *env) error {
	if !c.remote() {
		return c.apikeyListCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	var out struct {
		APIKeys []authdb.APIKey `json:"apikeys"`
	}
	if err := a.call(e.ctx, http.MethodGet, "apikeys", nil, &out); err != nil {
		return err
	}
	if c.JSON {
		if out.APIKeys == nil {
			out.APIKeys = []authdb.APIKey{}
		}
		return json.NewEncoder(e.stdout).Encode(out.APIKeys)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tSCOPES\tPATIENT\tSTATUS\tCREATED\tLAST_USED")
	for _, k := range out.APIKeys {
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

type apikeyRevokeRemote struct {
	apikeyRevokeCmd
	remoteFlags
}

func (c *apikeyRevokeRemote) Run(e *env) error {
	if !c.remote() {
		return c.apikeyRevokeCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	if err := a.call(e.ctx, http.MethodDelete, "apikeys/"+url.PathEscape(c.ID), nil, nil); isNotFound(err) {
		return fmt.Errorf("no api key %q", c.ID)
	} else if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"id": c.ID, "revoked": true})
	}
	fmt.Fprintf(e.stdout, "revoked api key %s\n", c.ID)
	return nil
}

type apikeyRotateRemote struct {
	apikeyRotateCmd
	remoteFlags
}

func (c *apikeyRotateRemote) Run(e *env) error {
	if !c.remote() {
		return c.apikeyRotateCmd.Run(e)
	}
	if c.Grace < 0 {
		return errors.New("--grace must not be negative")
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	var out apikeyJSON
	err = a.call(e.ctx, http.MethodPost, "apikeys/"+url.PathEscape(c.ID)+"/rotate", map[string]string{"grace": c.Grace.String()}, &out)
	var ae *adminError
	switch {
	case isNotFound(err):
		return fmt.Errorf("no api key %q", c.ID)
	case errors.As(err, &ae) && ae.Status == http.StatusConflict:
		return fmt.Errorf("api key %q was already rotated, or is revoked or expired", c.ID)
	case err != nil:
		return err
	}
	return printRemoteKey(e, c.JSON, &out)
}

// --- grants ---

// grantsCmds is "lapis grants": grantsCmd with a remote mode.
type grantsCmds struct {
	List   grantsListRemote   `cmd:"" help:"List live grants: which apps hold tokens for which users."`
	Revoke grantsRevokeRemote `cmd:"" help:"Revoke an app's grants for one user, or for every user when --user is not given."`
}

type grantsListRemote struct {
	grantsListCmd
	remoteFlags
}

func (c *grantsListRemote) Run(e *env) error {
	if !c.remote() {
		return c.grantsListCmd.Run(e)
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	q := url.Values{}
	if c.Client != "" {
		q.Set("client_id", c.Client)
	}
	if c.User != "" {
		q.Set("username", oauth.NormalizeUsername(c.User))
	}
	path := "grants"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Grants []authdb.GrantSummary `json:"grants"`
	}
	if err := a.call(e.ctx, http.MethodGet, path, nil, &out); isNotFound(err) {
		return fmt.Errorf("no user %q", oauth.NormalizeUsername(c.User))
	} else if err != nil {
		return err
	}
	gs := out.Grants
	if gs == nil {
		gs = []authdb.GrantSummary{}
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

type grantsRevokeRemote struct {
	grantsRevokeCmd
	remoteFlags
}

func (c *grantsRevokeRemote) Run(e *env) error {
	if !c.remote() {
		return c.grantsRevokeCmd.Run(e)
	}
	if strings.TrimSpace(c.Client) == "" {
		return errors.New("--client is required")
	}
	a, err := adminClient(e, &c.remoteFlags, c.dbFlags)
	if err != nil {
		return err
	}
	out := grantsRevokeJSON{ClientID: c.Client}
	if c.User != "" {
		out.Username = oauth.NormalizeUsername(c.User)
	}
	var res oauth.AdminRevokeResponse
	if err := a.call(e.ctx, http.MethodPost, "grants/revoke", oauth.AdminRevokeRequest{ClientID: c.Client, Username: out.Username}, &res); isNotFound(err) {
		return fmt.Errorf("no user %q", out.Username)
	} else if err != nil {
		return err
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
}
