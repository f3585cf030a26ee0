package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/testutil/httpcall"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestServerBasePath starts a whole server (as lapis serve builds it)
// whose base URL has a path, http://ADDR/lapis, on both dialects: the
// FHIR API, the discovery documents and the authorization endpoints are
// under /lapis/fhir and carry it in every URL they publish; a token from
// client_credentials reads a resource there; the request log, the metrics
// and the audit trail understand the routes; the health endpoints and
// /metrics stay at the root and nothing is served at /fhir.
func TestServerBasePath(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ln, root, cfg := listenConfig(t)
			cfg.Server.BaseURL = root + "/lapis"
			var pgURL string
			if dialect == "postgres" {
				// One handle per process, its pools sized by the URL.
				pgURL = pgtest.New(t)
				cfg.Database.URL = withParam(pgURL, "pool_max_conns", "2")
			}
			cfg.Audit.Stream = "stdout"
			if err := cfg.Normalize(true); err != nil {
				t.Fatal(err)
			}
			fhirBase := root + "/lapis/fhir"
			ctx := context.Background()
			stream := &logbuf.Buffer{}
			srv, err := NewServer(ctx, cfg, slog.New(slog.DiscardHandler), stream)
			if err != nil {
				t.Fatal(err)
			}
			shutdown := serveBackground(t, srv, ln)

			// Discovery: the CapabilityStatement and the SMART
			// configuration name the FHIR base with its path.
			var capStmt struct {
				Implementation struct{ URL string }
				Rest           []struct {
					Security struct {
						Extension []struct {
							URL       string
							Extension []struct {
								URL      string
								ValueURI string
							}
						}
					}
				}
			}
			getJSON(t, fhirBase+"/metadata", "", 200, &capStmt)
			if capStmt.Implementation.URL != fhirBase {
				t.Errorf("CapabilityStatement implementation.url %q, want %q", capStmt.Implementation.URL, fhirBase)
			}
			uris := map[string]string{}
			for _, r := range capStmt.Rest {
				for _, e := range r.Security.Extension {
					for _, u := range e.Extension {
						uris[u.URL] = u.ValueURI
					}
				}
			}
			if uris["token"] != fhirBase+"/auth/token" {
				t.Errorf("CapabilityStatement oauth-uris %v", uris)
			}
			var smart map[string]any
			getJSON(t, fhirBase+"/.well-known/smart-configuration", "", 200, &smart)
			for k, want := range map[string]string{"issuer": fhirBase, "token_endpoint": fhirBase + "/auth/token",
				"authorization_endpoint": fhirBase + "/auth/authorize", "jwks_uri": fhirBase + "/auth/jwks"} {
				if smart[k] != want {
					t.Errorf("smart-configuration %s = %v, want %s", k, smart[k], want)
				}
			}
			var jwks map[string]any
			getJSON(t, fhirBase+"/auth/jwks", "", 200, &jwks)

			// A token from client_credentials at the token endpoint under
			// the path.
			db, err := authdb.Open(ctx, cfg.Database.URL, cfg.Database.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := oauth.RegisterClient(ctx, db, oauth.Registration{Name: "cc", Type: authdb.Confidential, Scopes: []string{"system/*.cruds"}})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			tok := clientToken(t, fhirBase, cc, "system/*.cruds")

			// An authenticated create, read and search under the path.
			req, _ := http.NewRequest("POST", fhirBase+"/Patient", strings.NewReader(`{"resourceType":"Patient","name":[{"family":"Base"}]}`))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Authorization", "Bearer "+tok)
			var created struct{ ID string }
			do(t, req, 201, &created)
			id := created.ID
			getJSON(t, fhirBase+"/Patient/"+id, "", 401, nil)
			var pt map[string]any
			getJSON(t, fhirBase+"/Patient/"+id, tok, 200, &pt)
			if pt["id"] != id {
				t.Fatalf("read %v", pt)
			}
			var bundle struct {
				Link  []struct{ Relation, URL string }
				Entry []struct{ FullURL string }
			}
			getJSON(t, fhirBase+"/Patient?family=Base", tok, 200, &bundle)
			if len(bundle.Entry) != 1 || bundle.Entry[0].FullURL != fhirBase+"/Patient/"+id || len(bundle.Link) == 0 || !strings.HasPrefix(bundle.Link[0].URL, fhirBase+"/Patient?") {
				t.Fatalf("search %+v", bundle)
			}

			// Nothing at /fhir; health and metrics at the root.
			for _, p := range []string{"/fhir/metadata", "/fhir/.well-known/smart-configuration", "/lapis/metadata"} {
				getJSON(t, root+p, "", 404, nil)
			}
			for _, p := range []string{"/healthz", "/readyz"} {
				getJSON(t, root+p, "", 200, nil)
			}
			resp, err := http.Get(root + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{`route="fhir.read"`, `route="auth.token"`, `route="fhir.metadata"`, `route="auth.discovery"`} {
				if !strings.Contains(string(m), want) {
					t.Errorf("metrics: no %s", want)
				}
			}

			// The sandbox beside production, under the base path too.
			getJSON(t, root+"/lapis/sandbox/fhir/metadata", "", 200, nil)

			// One database handle per environment: on PostgreSQL the
			// store, the authorization server and the audit trail hold at
			// most the URL's two connections (below 4, background work
			// shares the requests' pool); the sandbox (its own schema of
			// the same database) as many.
			if dialect == "postgres" {
				if n := backendConns(t, pgURL); n > 8 {
					t.Errorf("%d connections to the database, want at most 8", n)
				}
			}

			// The audit trail classified the read under the path (the
			// stream is complete once the recorder has closed).
			shutdown()
			var found bool
			for line := range strings.Lines(stream.String()) {
				if strings.Contains(line, `"Patient/`+id+`"`) && strings.Contains(line, `"code":"read"`) {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit record of the read of Patient/%s in the stream:\n%s", id, stream.String())
			}
		})
	}
}

// getJSON GETs u (with a bearer token when tok is set), checks the status
// and decodes the body into v (when v is not nil).
func getJSON(t *testing.T, u, tok string, status int, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	do(t, req, status, v)
}

func do(t *testing.T, req *http.Request, status int, v any) {
	t.Helper()
	r := httpcall.Do(t, req)
	if r.Status != status {
		t.Fatalf("%s %s: %d, want %d: %s", req.Method, req.URL, r.Status, status, r.Raw)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.Raw), v); err != nil {
			t.Fatalf("%s %s: %v: %s", req.Method, req.URL, err, r.Raw)
		}
	}
}

// clientToken gets an access token for scope from the token endpoint
// under fhirBase with the client credentials grant of cc.
func clientToken(t *testing.T, fhirBase string, cc *oauth.Registered, scope string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", fhirBase+"/auth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cc.ClientID, cc.ClientSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	do(t, req, 200, &tok)
	if tok.AccessToken == "" {
		t.Fatal("no access token")
	}
	return tok.AccessToken
}

func TestPatientsIsAPatientLister(t *testing.T) {
	var _ oauth.PatientLister = Patients{}
}

// withParam adds the query parameter k=v to the URL u.
func withParam(u, k, v string) string {
	p, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

// backendConns counts the other connections to the database of u.
func backendConns(t *testing.T, u string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
