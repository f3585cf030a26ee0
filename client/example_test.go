package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/lapis-health/lapis/client"
)

// demoServer stands in for a FHIR server with an OAuth token endpoint, so
// the examples run; real code points New at its server's FHIR base URL.
func demoServer() (srv *httptest.Server, tokenRequests *atomic.Int32) {
	tokenRequests = new(atomic.Int32)
	mux := http.NewServeMux()
	fhir := func(w http.ResponseWriter, status int, v string) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		w.Write([]byte(v))
	}
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			fhir(w, 401, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}`)
			return false
		}
		return true
	}
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_endpoint":"http://%s/token","authorization_endpoint":"http://%s/authorize"}`, r.Host, r.Host)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		n := tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"demo-token-%d","token_type":"Bearer","expires_in":3600,"scope":%q}`, n, r.FormValue("scope"))
	})
	mux.HandleFunc("GET /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		switch id := r.PathValue("id"); id {
		case "example":
			fhir(w, 200, `{"resourceType":"Patient","id":"example","meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05Z"},"name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25"}`)
		case "gone":
			fhir(w, 410, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"deleted","diagnostics":"Patient/gone was deleted"}]}`)
		default:
			fhir(w, 404, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Patient/`+id+` is not known"}]}`)
		}
	})
	mux.HandleFunc("GET /fhir/Observation", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		page := r.URL.Query().Get("page")
		next := ""
		if page == "" {
			next = `,"link":[{"relation":"next","url":"http://` + r.Host + `/fhir/Observation?page=2"}]`
		}
		fhir(w, 200, `{"resourceType":"Bundle","type":"searchset","total":3`+next+`,"entry":[`+
			map[string]string{"": `{"resource":{"resourceType":"Observation","id":"bp-1"}},{"resource":{"resourceType":"Observation","id":"bp-2"}}`,
				"2": `{"resource":{"resourceType":"Observation","id":"bp-3"}}`}[page]+`]}`)
	})
	mux.HandleFunc("GET /fhir/$export", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		w.Header().Set("Content-Location", "http://"+r.Host+"/jobs/1")
		w.WriteHeader(http.StatusAccepted)
	})
	var polls atomic.Int32
	mux.HandleFunc("GET /jobs/1", func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) == 1 {
			w.Header().Set("X-Progress", "exporting Patient")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"transactionTime":"2026-01-02T03:04:05Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":"http://%s/files/p.ndjson","count":2}],"error":[]}`, r.Host)
	})
	mux.HandleFunc("DELETE /jobs/1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	mux.HandleFunc("GET /files/p.ndjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		w.Write([]byte("{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n"))
	})
	return httptest.NewServer(mux), tokenRequests
}

// The quick start: an API key from the environment, a read, and typed
// errors.
func Example() {
	srv, _ := demoServer()
	defer srv.Close()
	os.Setenv("LAPIS_API_KEY", "demo-key") // set outside the program in real use
	ctx := context.Background()

	c, err := client.New(srv.URL+"/fhir", client.WithAuth(client.APIKey(os.Getenv("LAPIS_API_KEY"))))
	if err != nil {
		log.Fatal(err)
	}
	p, err := c.Read(ctx, "Patient", "example")
	if err != nil {
		log.Fatal(err)
	}
	var patient struct {
		Name []struct {
			Family string   `json:"family"`
			Given  []string `json:"given"`
		} `json:"name"`
	}
	if err := p.Decode(&patient); err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Reference(), "version", p.VersionID, patient.Name[0].Given[0], patient.Name[0].Family)

	_, err = c.Read(ctx, "Patient", "gone")
	fmt.Println("gone:", client.IsGone(err))
	// Output:
	// Patient/example version 3 Peter Chalmers
	// gone: true
}

// Typed errors carry the server's OperationOutcome.
func ExampleError() {
	srv, _ := demoServer()
	defer srv.Close()
	c, _ := client.New(srv.URL+"/fhir", client.WithAuth(client.APIKey("demo-key")))

	_, err := c.Read(context.Background(), "Patient", "unknown")
	var fe *client.Error
	if errors.As(err, &fe) {
		fmt.Println(fe.StatusCode, client.IsNotFound(err))
		fmt.Println(fe.Outcome.Issues[0].Code+":", fe.Outcome.Issues[0].Diagnostics)
	}
	// Output:
	// 404 true
	// not-found: Patient/unknown is not known
}

// Search follows the Bundles' next links, page after page.
func ExampleClient_Search() {
	srv, _ := demoServer()
	defer srv.Close()
	c, _ := client.New(srv.URL+"/fhir", client.WithAuth(client.APIKey("demo-key")))
	ctx := context.Background()

	it := c.Search(ctx, "Observation", url.Values{"patient": {"example"}, "code": {"http://loinc.org|85354-9"}})
	for it.Next(ctx) {
		fmt.Println(it.Resource().Reference())
	}
	if err := it.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("pages:", it.Pages())
	// Output:
	// Observation/bp-1
	// Observation/bp-2
	// Observation/bp-3
	// pages: 2
}

// SearchAll is the same walk as a range-over-func iterator.
func ExampleClient_SearchAll() {
	srv, _ := demoServer()
	defer srv.Close()
	c, _ := client.New(srv.URL+"/fhir", client.WithAuth(client.APIKey("demo-key")))

	n := 0
	for r, err := range c.SearchAll(context.Background(), "Observation", nil) {
		if err != nil {
			log.Fatal(err)
		}
		_ = r
		n++
	}
	fmt.Println(n, "observations")
	// Output: 3 observations
}

// Client credentials: the token is fetched once and reused by every
// request until shortly before it expires; a 401 gets a new one.
func ExampleClientCredentials() {
	srv, tokenRequests := demoServer()
	defer srv.Close()

	auth := client.ClientCredentials(client.ClientCredentialsConfig{
		FHIRBase:     srv.URL + "/fhir", // the token endpoint is discovered
		ClientID:     "reporting",
		ClientSecret: "demo-secret", // os.Getenv("LAPIS_CLIENT_SECRET") in real use
		Scopes:       []string{"system/Patient.rs"},
	})
	c, err := client.New(srv.URL+"/fhir", client.WithAuth(auth))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Read(context.Background(), "Patient", "example"); err != nil {
			log.Fatal(err)
		}
	}
	tok, _ := auth.Token(context.Background())
	fmt.Println("token requests:", tokenRequests.Load())
	fmt.Println(tok.Scope)
	fmt.Println(strings.Contains(fmt.Sprint(tok), "demo-token")) // printing a Token redacts it
	// Output:
	// token requests: 1
	// system/Patient.rs
	// false
}

// BackendServices signs a fresh private_key_jwt assertion for every token
// request with the client's registered key.
func ExampleBackendServices() {
	keyPEM, err := os.ReadFile("/run/secrets/lapis-backend-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	auth := client.BackendServices(client.BackendServicesConfig{
		FHIRBase: "https://fhir.example.org/fhir",
		ClientID: "nightly-export",
		KeyPEM:   keyPEM,
		KeyID:    "key-2026-01",
		Alg:      "RS384",
		Scopes:   []string{"system/*.rs"},
	})
	c, err := client.New("https://fhir.example.org/fhir", client.WithAuth(auth))
	if err != nil {
		log.Fatal(err)
	}
	_ = c
}

// A command-line login with PKCE; keep the tokens fresh afterwards with
// RefreshToken, storing each rotated refresh token.
func ExamplePKCELogin() {
	ctx := context.Background()
	login := &client.PKCELogin{
		FHIRBase: "https://fhir.example.org/fhir",
		ClientID: "my-cli",
		Scopes:   []string{"openid", "fhirUser", "offline_access", "patient/*.rs", "launch/patient"},
		OpenBrowser: func(u string) error {
			fmt.Println("Open this URL to sign in:", u)
			return nil
		},
	}
	tok, err := login.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	auth := client.RefreshToken(client.RefreshConfig{
		FHIRBase: login.FHIRBase,
		ClientID: login.ClientID,
		Initial:  tok,
		OnRotate: func(t client.Token) {
			b, _ := json.Marshal(t)
			_ = os.WriteFile(filepath.Join(os.Getenv("HOME"), ".lapis-token.json"), b, 0o600)
		},
	})
	c, _ := client.New(login.FHIRBase, client.WithAuth(auth))
	_, _ = c.Read(ctx, "Patient", tok.Patient)
}

// A Bulk Data export: kick off, wait with progress, download, clean up.
func ExampleClient_Export() {
	srv, _ := demoServer()
	defer srv.Close()
	c, _ := client.New(srv.URL+"/fhir", client.WithAuth(client.APIKey("demo-key")))
	ctx := context.Background()

	job, err := c.Export(ctx, client.ExportRequest{Types: []string{"Patient"}})
	if err != nil {
		log.Fatal(err)
	}
	// job.URL can be saved to resume later with client.ResumeExport.
	m, err := job.Wait(ctx, func(s client.ExportStatus) { fmt.Println("progress:", s.Progress) })
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "export")
	defer os.RemoveAll(dir)
	for _, out := range m.Output {
		if err := job.Download(ctx, out, dir, nil); err != nil {
			log.Fatal(err) // run again to resume
		}
		b, _ := os.ReadFile(filepath.Join(dir, client.OutputFileName(out)))
		fmt.Println(out.Type, out.Count, "resources,", strings.Count(string(b), "\n"), "lines")
	}
	if err := job.Cancel(ctx); err != nil { // tell the server the files can go
		log.Fatal(err)
	}
	// Output:
	// progress: exporting Patient
	// Patient 2 resources, 2 lines
}
