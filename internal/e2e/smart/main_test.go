// Package smart runs the real lapis binary over HTTP and drives the SMART
// App Launch flows end to end: standalone and EHR launch through the
// authorization pages (a headless Chromium for one, plain HTTP forms for
// the others), the token endpoint, OpenID Connect, refresh, introspection,
// revocation and the negative cases of conformance.md §2.5. Everything is
// set up through the public CLI only.
package smart

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	// The binary under test is built from cmd/lapis; importing its code
	// makes go test's result cache notice when it changes.
	_ "github.com/lapis-health/lapis/internal/cli"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { lapistest.Main(m) }

// syntheaFiles returns the n smallest Synthea bundles of ../shared/data/synthea.
func syntheaFiles(t *testing.T, n int) []string {
	t.Helper()
	files := lapistest.SyntheaFiles(t)
	if len(files) < n {
		t.Skipf("need %d Synthea bundles, found %d", n, len(files))
	}
	size := map[string]int64{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size[f] = st.Size()
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if size[files[i]] != size[files[j]] {
			return size[files[i]] < size[files[j]]
		}
		return files[i] < files[j]
	})
	return files[:n]
}

// dialects are the databases the flows run on.
func dialects() []struct {
	name string
	db   func(t *testing.T) string
} {
	return []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return pgtest.New(t) }},
	}
}

// app is a tiny client application: it records what arrives at its
// redirect URI (/cb) and its EHR launch URI (/launch).
type app struct {
	srv *httptest.Server
	mu  sync.Mutex
	cb  []url.Values
	lch []url.Values
}

func newApp(t *testing.T) *app {
	a := &app{}
	mux := http.NewServeMux()
	mux.HandleFunc("/cb", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.cb = append(a.cb, r.URL.Query())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>app</title><p id="done">callback received</p>`)
	})
	mux.HandleFunc("/launch", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.lch = append(a.lch, r.URL.Query())
		a.mu.Unlock()
		fmt.Fprint(w, "launch received")
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) redirectURI() string { return a.srv.URL + "/cb" }
func (a *app) launchURI() string   { return a.srv.URL + "/launch" }

// lastCallback is the query of the last request to the redirect URI.
func (a *app) lastCallback() url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cb) == 0 {
		return nil
	}
	return a.cb[len(a.cb)-1]
}

func (a *app) callbacks() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cb)
}

func (a *app) lastLaunch() url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.lch) == 0 {
		return nil
	}
	return a.lch[len(a.lch)-1]
}

// instance is a running lapis server set up through the CLI.
type instance struct {
	*lapistest.Server
	t       *testing.T
	dataDir string
	dbURL   string
	host    string // http://127.0.0.1:PORT
	base    string // FHIR base = issuer
}

// cli runs `lapis SUB... --data-dir D --database DB ARGS...` with stdin,
// failing the test on a non-zero exit.
func (in *instance) cli(stdin string, sub []string, args ...string) string {
	in.t.Helper()
	all := append(append([]string{}, sub...), "--data-dir", in.dataDir, "--database", in.dbURL)
	all = append(all, args...)
	r := lapistest.Run(in.t, nil, stdin, all...)
	if r.Code != 0 {
		in.t.Fatalf("lapis %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(sub, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// cliJSON runs a --json command and decodes its one JSON object.
func (in *instance) cliJSON(stdin string, v any, sub []string, args ...string) {
	in.t.Helper()
	out := in.cli(stdin, sub, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		in.t.Fatalf("lapis %s --json: %v: %q", strings.Join(sub, " "), err, out)
	}
}

// start imports two Synthea bundles and starts lapis serve.
func start(t *testing.T, dbURL string) *instance {
	t.Helper()
	in := &instance{t: t, dataDir: t.TempDir(), dbURL: dbURL}
	in.cli("", []string{"import"}, syntheaFiles(t, 2)...)
	in.Server = lapistest.Start(t, lapistest.Options{DataDir: in.dataDir, Database: dbURL})
	in.host, in.base = in.Origin, in.Base
	return in
}

// clientOut is the output of lapis client create --json.
type clientOut struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// userOut is the output of lapis user create --json and of each demo login.
type userOut struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Subject  string `json:"subject"`
	FHIRUser string `json:"fhir_user"`
}

type demoOut struct {
	Practitioner userOut   `json:"practitioner"`
	Patients     []userOut `json:"patients"`
}

// fixture is a server with clients and logins made through the CLI.
type fixture struct {
	*instance
	// fhir reads the FHIR API with a system/*.rs API key (for test set-up
	// and checks that are not about the token under test).
	fhir         *http.Client
	app          *app
	public       clientOut // public SMART app (standalone and EHR launch)
	confidential clientOut // confidential SMART app with a launch URI (EHR launch)
	system       clientOut // confidential client_credentials client
	// rs is a resource server registered with system/lapis.introspect: it
	// may introspect every client's tokens (others see only their own).
	rs           clientOut
	patientID    string
	patientUser  userOut // created with user create --password-stdin
	practitioner userOut // from lapis demo
}

const patientScopes = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs patient/Condition.rs"

func setup(t *testing.T, dbURL string) *fixture {
	t.Helper()
	in := start(t, dbURL)
	f := &fixture{instance: in, app: newApp(t)}
	in.cliJSON("", &f.public, []string{"client", "create"},
		"--name", "Public test app", "--type", "public",
		"--redirect-uri", f.app.redirectURI(),
		"--scope", "launch launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs")
	in.cliJSON("", &f.confidential, []string{"client", "create"},
		"--name", "EHR test app", "--type", "confidential",
		"--redirect-uri", f.app.redirectURI(), "--launch-uri", f.app.launchURI(),
		"--scope", "launch openid fhirUser offline_access patient/*.rs user/*.rs")
	in.cliJSON("", &f.system, []string{"client", "create"},
		"--name", "Reporting", "--type", "confidential",
		"--scope", "system/Patient.rs system/Observation.rs")
	in.cliJSON("", &f.rs, []string{"client", "create"},
		"--name", "Resource server", "--type", "confidential", "--scope", "system/lapis.introspect")
	if f.public.ClientID == "" || f.public.ClientSecret != "" || f.confidential.ClientSecret == "" || f.system.ClientSecret == "" || f.rs.ClientSecret == "" {
		t.Fatalf("client create output: %+v %+v %+v %+v", f.public, f.confidential, f.system, f.rs)
	}
	// A patient of the imported data, found over the FHIR API.
	var bundle struct {
		Entry []struct {
			Resource struct {
				ID string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	var key struct{ Key string }
	in.cliJSON("", &key, []string{"apikey", "create"}, "--name", "e2e reader", "--scope", "system/*.rs")
	f.fhir = &http.Client{Transport: apiKeyTransport{key.Key}}
	getJSON(t, f.fhir, in.base+"/Patient?_count=1&_sort=_id", &bundle)
	if len(bundle.Entry) == 0 {
		t.Fatal("no Patient after import")
	}
	f.patientID = bundle.Entry[0].Resource.ID
	pw := "correct horse battery staple"
	in.cliJSON(pw+"\n", &f.patientUser, []string{"user", "create"},
		"--username", "Pat.Ient", "--password-stdin", "--fhir-user", "Patient/"+f.patientID)
	f.patientUser.Password = pw
	if f.patientUser.Username != "pat.ient" || f.patientUser.FHIRUser != "Patient/"+f.patientID || f.patientUser.Subject == "" {
		t.Fatalf("user create output: %+v", f.patientUser)
	}
	var demo demoOut
	if err := json.Unmarshal([]byte(in.cli("", []string{"demo"}, "--users", "1")), &demo); err != nil {
		t.Fatalf("lapis demo output: %v", err)
	}
	f.practitioner = demo.Practitioner
	if !strings.HasPrefix(f.practitioner.FHIRUser, "Practitioner/") || f.practitioner.Password == "" {
		t.Fatalf("demo practitioner: %+v", f.practitioner)
	}
	return f
}

func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// pkce is an RFC 7636 verifier and its S256 challenge; the verifier is two
// UUID-like values joined by "-" as Inferno sends it.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := randHex(16) + "-" + randHex(16)
	sum := sha256.Sum256([]byte(v))
	return pkce{v, base64.RawURLEncoding.EncodeToString(sum[:])}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// authorizeURL builds an authorization request.
func (f *fixture) authorizeURL(clientID, scope, state string, p pkce, extra ...string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {f.app.redirectURI()},
		"scope":                 {scope},
		"state":                 {state},
		"aud":                   {f.base},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			q.Del(extra[i])
		} else {
			q.Set(extra[i], extra[i+1])
		}
	}
	return f.base + "/auth/authorize?" + q.Encode()
}

// browser is a cookie-jar HTTP client that fills in the HTML forms.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T, follow bool) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &browser{t: t, c: c}
}

// page is a fetched response.
type page struct {
	status int
	url    *url.URL
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return &page{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: string(raw)}
}

func (b *browser) get(u string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	inputRE = regexp.MustCompile(`<input\s[^>]*>`)
	attrRE  = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
	actRE   = regexp.MustCompile(`<form method="(get|post)" action="([^"]*)"`)
)

// input is an HTML input element.
type input struct {
	typ, name, value string
	checked          bool
}

// inputs scrapes the input elements of a page.
func (p *page) inputs() []input {
	var out []input
	for _, el := range inputRE.FindAllString(p.body, -1) {
		var in input
		for _, m := range attrRE.FindAllStringSubmatch(strings.TrimPrefix(el, "<input"), -1) {
			v := html.UnescapeString(m[2])
			switch m[1] {
			case "type":
				in.typ = v
			case "name":
				in.name = v
			case "value":
				in.value = v
			case "checked":
				in.checked = true
			}
		}
		out = append(out, in)
	}
	return out
}

// hidden returns the value of the first hidden input called name.
func (p *page) hidden(t *testing.T, name string) string {
	t.Helper()
	for _, in := range p.inputs() {
		if in.typ == "hidden" && in.name == name {
			return in.value
		}
	}
	t.Fatalf("no hidden input %q on page %s (%d):\n%s", name, p.url, p.status, p.body)
	return ""
}

// values lists the values of the inputs called name (checked only if
// checkedOnly).
func (p *page) values(name string, checkedOnly bool) []string {
	var out []string
	for _, in := range p.inputs() {
		if in.name == name && (!checkedOnly || in.checked) {
			out = append(out, in.value)
		}
	}
	return out
}

// expectPage fails unless the page has the status and contains marker.
func (p *page) expect(t *testing.T, status int, marker string) *page {
	t.Helper()
	if p.status != status || !strings.Contains(p.body, marker) {
		t.Fatalf("%s: status %d (want %d), marker %q missing?\n%s", p.url, p.status, status, marker, truncate(p.body))
	}
	return p
}

func truncate(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "..."
	}
	return s
}

// apiKeyTransport adds an API key to every request.
type apiKeyTransport struct{ key string }

func (a apiKeyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-API-Key", a.key)
	return http.DefaultTransport.RoundTrip(r)
}
