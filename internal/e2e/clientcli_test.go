package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// cliRun is one run of the client-side CLI with extra environment and
// standard input; XDG_CONFIG_HOME points at a private directory.
type cliRun struct {
	t      *testing.T
	config string
	env    []string
}

func newCLI(t *testing.T, env ...string) *cliRun {
	return &cliRun{t: t, config: t.TempDir(), env: env}
}

func (c *cliRun) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(lapistest.Binary(c.t), args...)
	cmd.Env = append(append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "LAPIS_PROFILE=", "LAPIS_DATA_DIR=", "LAPIS_DATABASE_URL="), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("running lapis: %v", err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c *cliRun) ok(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("lapis %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs a command that must exit with code and print one line
// "lapis: ..." on stderr; it returns that line.
func (c *cliRun) fails(code int, args ...string) string {
	c.t.Helper()
	out, errOut, got := c.run("", args...)
	if got != code {
		c.t.Fatalf("lapis %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), got, code, out, errOut)
	}
	if !strings.HasPrefix(errOut, "lapis: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		c.t.Fatalf("lapis %s: stderr is not one line: %q", strings.Join(args, " "), errOut)
	}
	return errOut
}

// clientOut is the output of "lapis client create --json".
type clientOut struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// createClient runs lapis client create --name name with args and --json,
// and returns the client it printed.
func (in *instance) createClient(t *testing.T, name string, args ...string) clientOut {
	t.Helper()
	out, errOut, code := in.lapis(append(append([]string{"client", "create", "--name", name}, args...), "--json")...)
	if code != 0 {
		t.Fatalf("client %q: %s", name, errOut)
	}
	var c clientOut
	decodeJSON(t, out, &c)
	return c
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output %q: %v", s, err)
	}
}

func TestClientCLI(t *testing.T) {
	t.Parallel()
	for name, db := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			in := start(t, db(t))
			t.Run("fhir", func(t *testing.T) { testClientCLIFHIR(t, in) })
			t.Run("admin", func(t *testing.T) { testClientCLIAdmin(t, in) })
			t.Run("profile", func(t *testing.T) { testClientCLIProfile(t, in) })
		})
	}
}

// testClientCLIFHIR drives get/search/create/update/delete with an API key
// from the environment.
func testClientCLIFHIR(t *testing.T, in *instance) {
	c := newCLI(t, "E2E_KEY="+in.apiKey, "E2E_BAD_KEY=lapis_bogus")
	srv := []string{"--server", in.base, "--api-key-env", "E2E_KEY"}
	file := filepath.Join(t.TempDir(), "patient.json")
	os.WriteFile(file, []byte(`{"resourceType":"Patient","name":[{"family":"Clientcli","given":["Ada"]}],"gender":"female"}`), 0o600)

	var created struct {
		ID   string
		Meta struct{ VersionID string }
		Name []struct{ Family string }
	}
	decodeJSON(t, c.ok("", append([]string{"create", file}, srv...)...), &created)
	if created.ID == "" || created.Meta.VersionID != "1" || created.Name[0].Family != "Clientcli" {
		t.Fatalf("created %+v", created)
	}
	ref := "Patient/" + created.ID

	var got map[string]any
	decodeJSON(t, c.ok("", append([]string{"get", ref}, srv...)...), &got)
	if got["id"] != created.ID || got["gender"] != "female" {
		t.Fatalf("get %v", got)
	}
	decodeJSON(t, c.ok("", append([]string{"get", ref + "/_history/1"}, srv...)...), &got)

	// update from stdin, with optimistic locking
	body := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":"Clientcli","given":["Ada"]}],"gender":"female","active":true}`, created.ID)
	decodeJSON(t, c.ok(body, append([]string{"update", ref, "-", "--if-match", "1"}, srv...)...), &got)
	if got["active"] != true || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Fatalf("update %v", got)
	}
	out, errOut, code := c.run(body, append([]string{"update", ref, "-", "--if-match", "1"}, srv...)...)
	if code != 1 || out != "" || !strings.Contains(errOut, "412") {
		t.Fatalf("stale if-match: exit %d %q %q", code, out, errOut)
	}

	// search: one page as a Bundle, and every page as NDJSON
	var bundle struct {
		ResourceType string
		Entry        []struct{ Resource map[string]any }
	}
	decodeJSON(t, c.ok("", append([]string{"search", "Patient", "family=clientcli"}, srv...)...), &bundle)
	if bundle.ResourceType != "Bundle" || len(bundle.Entry) != 1 || bundle.Entry[0].Resource["id"] != created.ID {
		t.Fatalf("search %+v", bundle)
	}
	for range 3 {
		c.ok("", append([]string{"create", file}, srv...)...)
	}
	nd := c.ok("", append([]string{"search", "Patient", "family=clientcli", "_count=2", "--all", "--ndjson"}, srv...)...)
	if lines := strings.Split(strings.TrimSpace(nd), "\n"); len(lines) != 4 {
		t.Fatalf("--all --ndjson over 2 pages: %d lines: %s", len(lines), nd)
	}
	decodeJSON(t, c.ok("", append([]string{"search", "Patient", "family=clientcli", "_count=2", "--all"}, srv...)...), &bundle)
	if len(bundle.Entry) != 4 {
		t.Fatalf("--all Bundle: %d entries", len(bundle.Entry))
	}

	// delete, then the resource is gone (exit 4)
	if out := c.ok("", append([]string{"delete", ref}, srv...)...); out != "" {
		t.Errorf("delete printed %q", out)
	}
	c.fails(4, append([]string{"get", ref}, srv...)...)
	c.fails(4, append([]string{"get", "Patient/does-not-exist"}, srv...)...)

	// failures: bad credentials 3, usage 2; no secret in messages
	msg := c.fails(3, "get", ref, "--server", in.base, "--api-key-env", "E2E_BAD_KEY")
	if strings.Contains(msg, "lapis_bogus") {
		t.Errorf("error reveals the key: %s", msg)
	}
	c.fails(3, "search", "Patient", "--server", in.base) // no credentials
	c.fails(1, "get", ref, "--server", in.base, "--api-key-env", "E2E_UNSET_VAR")
	c.fails(2, append([]string{"get", "Patient"}, srv...)...)
	c.fails(2, append([]string{"search", "Patient", "novalue"}, srv...)...)
	c.fails(2, "get", ref, "--server", in.base, "--api-key-env", in.apiKey) // a value, not a variable name
	c.fails(2, "get", ref)                                                  // no server, no profile
	if _, _, code := c.run("", "get", ref, "--bogus"); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	c.fails(2, append([]string{"create", "-"}, srv...)...) // empty stdin is not JSON
}

// testClientCLIAdmin drives the admin commands through the admin API and
// checks they print what the local commands print.
func testClientCLIAdmin(t *testing.T, in *instance) {
	adm := in.createClient(t, "e2e admin", "--type", "confidential", "--scope", "system/lapis.admin")
	c := newCLI(t, "E2E_ADMIN_SECRET="+adm.ClientSecret)
	remote := []string{"--server", in.base, "--client-id", adm.ClientID, "--client-secret-env", "E2E_ADMIN_SECRET"}

	// apikey create through the API, then use the key
	var key struct {
		Key, ID, Prefix, Name string
		Scopes                []string
	}
	decodeJSON(t, c.ok("", append([]string{"apikey", "create", "--name", "remote key", "--scope", "system/Patient.rs", "--json"}, remote...)...), &key)
	if key.Key == "" || key.ID == "" || key.Name != "remote key" || strings.Join(key.Scopes, " ") != "system/Patient.rs" {
		t.Fatalf("remote apikey create: %+v", key)
	}
	user := newCLI(t, "E2E_NEW_KEY="+key.Key)
	user.ok("", "search", "Patient", "--server", in.base, "--api-key-env", "E2E_NEW_KEY")
	pf := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(pf, []byte(`{"resourceType":"Patient"}`), 0o600)
	user.fails(3, "create", pf, "--server", in.base, "--api-key-env", "E2E_NEW_KEY") // read-only key: 403

	// list: same keys as the local command
	var remoteKeys, localKeys []map[string]any
	decodeJSON(t, c.ok("", append([]string{"apikey", "list", "--json"}, remote...)...), &remoteKeys)
	lo, _, _ := in.lapis("apikey", "list", "--json")
	decodeJSON(t, lo, &localKeys)
	if len(remoteKeys) != len(localKeys) || len(remoteKeys) < 2 {
		t.Fatalf("apikey list: remote %d keys, local %d", len(remoteKeys), len(localKeys))
	}
	for i := range remoteKeys {
		if remoteKeys[i]["id"] != localKeys[i]["id"] || remoteKeys[i]["key"] != nil || remoteKeys[i]["status"] != nil {
			t.Fatalf("apikey list entry %d: remote %v local %v", i, remoteKeys[i], localKeys[i])
		}
	}
	// rotate and revoke
	var rot struct{ Key, ID, Replaces string }
	decodeJSON(t, c.ok("", append([]string{"apikey", "rotate", key.ID, "--grace", "0s", "--json"}, remote...)...), &rot)
	if rot.Replaces != key.ID || rot.Key == "" || rot.ID == key.ID {
		t.Fatalf("rotate %+v", rot)
	}
	var rev map[string]any
	decodeJSON(t, c.ok("", append([]string{"apikey", "revoke", rot.ID, "--json"}, remote...)...), &rev)
	if rev["id"] != rot.ID || rev["revoked"] != true {
		t.Fatalf("revoke %v", rev)
	}
	if msg := c.fails(1, append([]string{"apikey", "revoke", "ak_nope"}, remote...)...); !strings.Contains(msg, `no api key "ak_nope"`) {
		t.Errorf("revoke unknown: %s", msg)
	}

	// users and clients: the remote --json output is byte for byte the local one
	var u struct{ Username, Subject string }
	decodeJSON(t, c.ok("correct horse battery\n", append([]string{"user", "create", "--username", "Remote.User", "--password-stdin", "--fhir-user", "Patient/123", "--force", "--json"}, remote...)...), &u)
	if u.Username != "remote.user" || u.Subject == "" {
		t.Fatalf("user create %+v", u)
	}
	for _, cmd := range [][]string{{"user", "list", "--json"}, {"client", "list", "--json"}, {"user", "list"}, {"client", "list"},
		{"grants", "list", "--json"}, {"grants", "list", "--client", adm.ClientID}, {"grants", "revoke", "--client", adm.ClientID, "--json"}} {
		local, errOut, code := in.lapis(cmd...)
		if code != 0 {
			t.Fatalf("local %v: %s", cmd, errOut)
		}
		if got := c.ok("", append(cmd, remote...)...); got != local {
			t.Errorf("%v: remote output differs from local\nremote %s\nlocal  %s", cmd, got, local)
		}
	}
	if got := c.ok("", append([]string{"user", "delete", "remote.user"}, remote...)...); got != "deleted user remote.user\n" {
		t.Errorf("user delete: %q", got)
	}
	var cl clientOut
	decodeJSON(t, c.ok("", append([]string{"client", "create", "--name", "made remotely", "--type", "confidential", "--scope", "system/*.rs", "--owner", "dev:e2e", "--json"}, remote...)...), &cl)
	if cl.ClientID == "" || cl.ClientSecret == "" {
		t.Fatalf("client create %+v", cl)
	}
	// network rules and owners: remote and local print the same
	got := c.ok("", append([]string{"client", "network", cl.ClientID, "--allow-ip", "192.0.2.0/24", "--json"}, remote...)...)
	for _, cmd := range [][]string{{"client", "network", cl.ClientID, "--json"}, {"client", "network", cl.ClientID}, {"client", "list", "--owner", "dev:e2e", "--json"}} {
		local, errOut, code := in.lapis(cmd...)
		if code != 0 {
			t.Fatalf("local %v: %s", cmd, errOut)
		}
		if remoteOut := c.ok("", append(cmd, remote...)...); remoteOut != local {
			t.Errorf("%v: remote output differs from local\nremote %s\nlocal  %s", cmd, remoteOut, local)
		}
		if cmd[1] == "network" && cmd[len(cmd)-1] == "--json" && local != got {
			t.Errorf("client network after the remote change: %s, the change printed %s", local, got)
		}
		if cmd[1] == "list" && (strings.Count(local, `"client_id"`) != 1 || !strings.Contains(local, `"owner":"dev:e2e"`)) {
			t.Errorf("client list --owner: %s", local)
		}
	}
	if got := c.ok("", append([]string{"client", "delete", cl.ClientID}, remote...)...); got != "deleted client "+cl.ClientID+"\n" {
		t.Errorf("client delete: %q", got)
	}

	// refusals: a wrong secret (3), a client without the admin scope (3),
	// remote and local flags together (2)
	bad := newCLI(t, "E2E_ADMIN_SECRET=wrong")
	bad.fails(3, append([]string{"apikey", "list"}, remote...)...)
	c.fails(2, append([]string{"apikey", "list", "--data-dir", t.TempDir()}, remote...)...)
	na := in.createClient(t, "not admin", "--type", "confidential", "--scope", "system/*.rs")
	nc := newCLI(t, "E2E_NA_SECRET="+na.ClientSecret)
	nc.fails(3, "apikey", "list", "--server", in.base, "--client-id", na.ClientID, "--client-secret-env", "E2E_NA_SECRET")
}

// testClientCLIProfile uses a profiles file with client_credentials, and
// lapis token.
func testClientCLIProfile(t *testing.T, in *instance) {
	cl := in.createClient(t, "e2e data", "--type", "confidential", "--scope", "system/Patient.rs system/Observation.rs")
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(cl.ClientSecret+"\n"), 0o600)
	c := newCLI(t, "E2E_DATA_SECRET="+cl.ClientSecret)
	dir := filepath.Join(c.config, "lapis")
	os.MkdirAll(dir, 0o700)
	profiles := fmt.Sprintf(`{
  "default": "env",
  "profiles": {
    "env":  {"base_url": %q, "auth": {"method": "client_credentials", "client_id": %q, "client_secret": "env:E2E_DATA_SECRET", "scopes": ["system/Patient.rs"]}},
    "file": {"base_url": %q, "auth": {"method": "client_credentials", "client_id": %q, "client_secret": "file:%s"}},
    "bad":  {"base_url": %q, "auth": {"method": "client_credentials", "client_id": %q, "client_secret": "env:E2E_UNSET"}}
  }
}`, in.base, cl.ClientID, in.base, cl.ClientID, secretFile, in.base, cl.ClientID)
	os.WriteFile(filepath.Join(dir, "profiles.json"), []byte(profiles), 0o600)

	c.ok("", "search", "Patient", "_count=1")                      // the default profile
	c.ok("", "search", "Patient", "_count=1", "--profile", "file") // secret from a file
	c.env = append(c.env, "LAPIS_PROFILE=file")
	c.ok("", "search", "Observation", "_count=1") // LAPIS_PROFILE; this profile asks for all registered scopes
	c.env = c.env[:len(c.env)-1]
	pf := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(pf, []byte(`{"resourceType":"Patient"}`), 0o600)
	c.fails(3, "create", pf, "--profile", "env") // the token has no write scope: 403
	msg := c.fails(1, "search", "Patient", "--profile", "bad")
	if !strings.Contains(msg, "E2E_UNSET") {
		t.Errorf("unset secret variable: %s", msg)
	}
	c.fails(1, "search", "Patient", "--profile", "nope")

	// lapis token: a token the FHIR API accepts, with the profile's scope
	tok := strings.TrimSpace(c.ok("", "token"))
	req, _ := http.NewRequest("GET", in.base+"/Patient?_count=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token from lapis token: status %d", resp.StatusCode)
	}
	if again := strings.TrimSpace(c.ok("", "token")); again != tok {
		t.Error("a second run did not reuse the cached token")
	}
	var tj struct {
		AccessToken  string `json:"access_token"`
		Scope        string `json:"scope"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	decodeJSON(t, c.ok("", "token", "--json", "--profile", "env"), &tj)
	if tj.AccessToken == "" || tj.ExpiresIn <= 0 || tj.Scope != "system/Patient.rs" || tj.RefreshToken != "" {
		t.Fatalf("token --json: %+v", tj)
	}
	// HTTP Basic with a confidential client's id and secret, once enabled
	c.fails(3, "search", "Patient", "--server", in.base, "--basic-user", cl.ClientID, "--basic-password-env", "E2E_DATA_SECRET")
	if _, errOut, code := in.lapis("client", "basic", "enable", cl.ClientID); code != 0 {
		t.Fatalf("basic enable: %s", errOut)
	}
	c.ok("", "search", "Patient", "_count=1", "--server", in.base, "--basic-user", cl.ClientID, "--basic-password-env", "E2E_DATA_SECRET")

	// SMART Backend Services: a profile with a private key file (ES384)
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "backend.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-384","x":%q,"y":%q,"kid":"e2e-1","alg":"ES384","use":"sig"}]}`,
		b64(key.PublicKey.X.FillBytes(make([]byte, 48))), b64(key.PublicKey.Y.FillBytes(make([]byte, 48))))
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwksFile, []byte(jwks), 0o600)
	be := in.createClient(t, "e2e backend", "--type", "backend", "--scope", "system/Patient.rs", "--jwks-file", jwksFile)
	os.WriteFile(filepath.Join(dir, "profiles.json"), []byte(fmt.Sprintf(`{"profiles": {"backend": {"base_url": %q,
	  "auth": {"method": "backend_services", "client_id": %q, "private_key": "file:%s", "key_id": "e2e-1", "scopes": ["system/Patient.rs"]}}}}`,
		in.base, be.ClientID, keyFile)), 0o600)
	c.ok("", "search", "Patient", "_count=1") // the only profile
	decodeJSON(t, c.ok("", "token", "--json"), &tj)
	if tj.Scope != "system/Patient.rs" || tj.ExpiresIn <= 0 {
		t.Fatalf("backend token: %+v", tj)
	}

	// an API key has no OAuth token (usage error)
	k := newCLI(t, "E2E_KEY="+in.apiKey)
	k.fails(2, "token", "--server", in.base, "--api-key-env", "E2E_KEY")
	// a broken profiles file is reported, and no secret echoed
	os.WriteFile(filepath.Join(dir, "profiles.json"), []byte(`{"profiles":{"x":{"base_url":"`+in.base+`","auth":{"method":"apikey","api_key":"`+in.apiKey+`"}}}}`), 0o600)
	if msg := c.fails(1, "search", "Patient"); strings.Contains(msg, in.apiKey) || !strings.Contains(msg, "inline secrets are refused") {
		t.Errorf("inline secret: %s", msg)
	}
}

// formPage is a fetched HTML page of the authorization server.
type formPage struct {
	status int
	url    *url.URL
	body   string
}

var (
	formInputRE = regexp.MustCompile(`<input\s[^>]*>`)
	formAttrRE  = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
)

// inputs returns the (type, name, value) of the page's input elements.
func (p *formPage) inputs() [][3]string {
	var out [][3]string
	for _, el := range formInputRE.FindAllString(p.body, -1) {
		var in [3]string
		for _, m := range formAttrRE.FindAllStringSubmatch(strings.TrimPrefix(el, "<input"), -1) {
			switch v := html.UnescapeString(m[2]); m[1] {
			case "type":
				in[0] = v
			case "name":
				in[1] = v
			case "value":
				in[2] = v
			}
		}
		out = append(out, in)
	}
	return out
}

func (p *formPage) hidden(t *testing.T, name string) string {
	t.Helper()
	for _, in := range p.inputs() {
		if in[0] == "hidden" && in[1] == name {
			return in[2]
		}
	}
	t.Fatalf("no hidden input %q on %s (%d): %.500s", name, p.url, p.status, p.body)
	return ""
}

// fakeBrowser is a cookie-keeping HTTP client that fills in the login and
// consent forms like a user would.
type fakeBrowser struct {
	t *testing.T
	c *http.Client
}

func (b *fakeBrowser) do(method, u string, form url.Values) *formPage {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return &formPage{status: resp.StatusCode, url: resp.Request.URL, body: string(raw)}
}

// browserLogin runs "lapis login ARGS… --json" with a $BROWSER that hands
// the authorization URL to the test (through a named pipe), logs the user
// in and approves every scope like a person would, and returns the
// command's stdout.
func browserLogin(t *testing.T, in *instance, c *cliRun, username, password string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "url")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "browser.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" > \""+fifo+"\"\n"), 0o700)
	// Opened read-write, the pipe never blocks the open and always has a
	// writer: a read waits for the browser's line.
	pipe, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	urls := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pipe).ReadString('\n')
		urls <- strings.TrimSpace(line)
	}()

	var stdout bytes.Buffer
	stderr := &lapistest.Logs{} // read while lapis login still writes to it
	cmd := exec.Command(lapistest.Binary(t), append(append([]string{"login"}, args...), "--json")...)
	cmd.Env = append(append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "LAPIS_PROFILE="), append(c.env, "BROWSER="+script)...)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	var authURL string
	select {
	case authURL = <-urls:
	case <-exited:
		t.Fatalf("lapis login ended (%v) without starting the browser; stderr %s", waitErr, stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("the browser was not started; stderr %s", stderr.String())
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("aud") != in.base ||
		redirect.Scheme != "http" || redirect.Hostname() != "127.0.0.1" || redirect.Port() == "" || redirect.Path != "/callback" {
		t.Fatalf("authorization URL %s", authURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, ok := stderr.WaitLine(ctx, exited, 0, authURL); !ok {
		t.Errorf("the URL is not printed for the user: %s", stderr.String())
	}

	jar, _ := cookiejar.New(nil)
	b := &fakeBrowser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	login := b.do("GET", authURL, nil)
	if login.status != 200 || !strings.Contains(login.body, `action="/fhir/auth/login"`) {
		t.Fatalf("login page: %d %.300s", login.status, login.body)
	}
	origin := in.base[:strings.Index(in.base, "/fhir")]
	consent := b.do("POST", origin+"/fhir/auth/login", url.Values{"csrf": {login.hidden(t, "csrf")}, "req": {login.hidden(t, "req")},
		"next": {login.hidden(t, "next")}, "username": {username}, "password": {password}})
	if !strings.Contains(consent.body, `action="/fhir/auth/consent"`) {
		t.Fatalf("consent page: %d %.500s", consent.status, consent.body)
	}
	var scopes []string
	for _, in := range consent.inputs() {
		if in[1] == "scope" {
			scopes = append(scopes, in[2])
		}
	}
	end := b.do("POST", origin+"/fhir/auth/consent", url.Values{"csrf": {consent.hidden(t, "csrf")}, "req": {consent.hidden(t, "req")},
		"decision": {"approve"}, "scope": scopes})
	if end.url.Host != redirect.Host {
		t.Fatalf("consent ended at %s (%d), not at the CLI's redirect %s", end.url, end.status, redirect)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("lapis login: %v: %s", waitErr, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("lapis login did not finish")
	}
	if strings.Contains(stdout.String()+stderr.String(), "eyJ") {
		t.Errorf("login printed a token")
	}
	return stdout.String()
}

// TestClientCLILogin runs "lapis login" with a $BROWSER that hands the
// authorization URL to the test, which logs a patient in and approves; the
// CLI receives the code on its loopback redirect, stores the tokens, and
// later commands use and refresh them.
func TestClientCLILogin(t *testing.T) {
	t.Parallel()
	in := start(t, "")
	var pat struct{ ID string }
	decodeJSON(t, string(in.do("POST", "/Patient", patient("Loginpatient")).expect(t, 201).raw), &pat)

	c := newCLI(t)
	local := []string{"--data-dir", in.dataDir, "--database", in.dbURL}
	c.ok("a long passphrase\n", append([]string{"user", "create", "--username", "pat", "--password-stdin", "--fhir-user", "Patient/" + pat.ID}, local...)...)
	// A native app's loopback redirect: any port (RFC 8252 §7.3); the CLI
	// listens on a free one.
	var app clientOut
	decodeJSON(t, c.ok("", append([]string{"client", "create", "--name", "lapis cli", "--type", "public", "--redirect-uri", "http://127.0.0.1/callback",
		"--scope", "openid fhirUser offline_access patient/*.rs", "--json"}, local...)...), &app)
	// --redirect-port and a profile's redirect_port choose the port: shown
	// on a port held here, which the login cannot listen on.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port
	busy := func(args ...string) {
		t.Helper()
		_, errOut, code := c.run("", append(append([]string{"login"}, args...), "--no-browser")...)
		if code == 0 || !strings.Contains(errOut, "redirect port") || !strings.Contains(errOut, fmt.Sprintf("127.0.0.1:%d", heldPort)) {
			t.Fatalf("login on a busy redirect port: exit %d %q", code, errOut)
		}
	}
	busy("--server", in.base, "--client-id", app.ClientID, "--redirect-port", fmt.Sprint(heldPort))

	out := browserLogin(t, in, c, "pat", "a long passphrase", "--server", in.base, "--client-id", app.ClientID,
		"--scope", "openid fhirUser offline_access patient/*.rs")
	var res struct {
		Scope   string
		Patient string
		Refresh bool `json:"refresh_token"`
	}
	decodeJSON(t, out, &res)
	if res.Patient != pat.ID || !res.Refresh || !strings.Contains(res.Scope, "patient/") {
		t.Fatalf("login result %s", out)
	}

	// The stored tokens serve later commands (0600 file).
	conn := []string{"--server", in.base, "--client-id", app.ClientID}
	var got map[string]any
	decodeJSON(t, c.ok("", append([]string{"get", "Patient/" + pat.ID}, conn...)...), &got)
	if got["id"] != pat.ID {
		t.Fatalf("get with the login: %v", got)
	}
	files, _ := filepath.Glob(filepath.Join(c.config, "lapis", "tokens", "*.json"))
	if len(files) != 1 {
		t.Fatalf("token files %v", files)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	tok1 := strings.TrimSpace(c.ok("", append([]string{"token"}, conn...)...))

	// An expired access token is refreshed (and the rotated refresh token
	// saved): make the stored one look expired.
	var stored map[string]any
	raw, _ := os.ReadFile(files[0])
	json.Unmarshal(raw, &stored)
	oldRefresh := stored["refresh_token"]
	stored["expires_at"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	raw, _ = json.Marshal(stored)
	os.WriteFile(files[0], raw, 0o600)
	tok2 := strings.TrimSpace(c.ok("", append([]string{"token"}, conn...)...))
	if tok2 == "" || tok2 == tok1 {
		t.Fatal("expired token was not refreshed")
	}
	raw, _ = os.ReadFile(files[0])
	json.Unmarshal(raw, &stored)
	if stored["refresh_token"] == oldRefresh || stored["access_token"] != tok2 {
		t.Error("the rotated refresh token was not saved")
	}
	decodeJSON(t, c.ok("", append([]string{"get", "Patient/" + pat.ID}, conn...)...), &got)
	// Another patient's data stays out of reach of this login (the server
	// answers 404, not revealing that it exists).
	var other struct{ ID string }
	decodeJSON(t, string(in.do("POST", "/Patient", patient("Otherpatient")).expect(t, 201).raw), &other)
	c.fails(4, append([]string{"get", "Patient/" + other.ID}, conn...)...)

	// The same through a profile of method login (tokens stored under its name).
	os.MkdirAll(filepath.Join(c.config, "lapis"), 0o700)
	os.WriteFile(filepath.Join(c.config, "lapis", "profiles.json"), []byte(fmt.Sprintf(`{"profiles": {"me": {"base_url": %q,
	  "auth": {"method": "login", "client_id": %q, "scopes": ["openid", "fhirUser", "offline_access", "patient/*.rs"]}},
	  "busy": {"base_url": %q, "auth": {"method": "login", "client_id": %q, "redirect_port": %d}}}}`,
		in.base, app.ClientID, in.base, app.ClientID, heldPort)), 0o600)
	busy("--profile", "busy")
	c.fails(3, "get", "Patient/"+pat.ID, "--profile", "me") // not logged in yet
	decodeJSON(t, browserLogin(t, in, c, "pat", "a long passphrase", "--profile", "me"), &res)
	if res.Patient != pat.ID {
		t.Fatalf("profile login %+v", res)
	}
	decodeJSON(t, c.ok("", "get", "Patient/"+pat.ID, "--profile", "me"), &got)
	if _, err := os.Stat(filepath.Join(c.config, "lapis", "tokens", "me.json")); err != nil {
		t.Errorf("profile token file: %v", err)
	}
}
