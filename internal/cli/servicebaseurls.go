package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/servicebase"
)

// serviceBaseURLsCmd prints and checks the service base URL Bundle
// (conformance.md §6).
type serviceBaseURLsCmd struct {
	Print serviceBaseURLsPrintCmd `cmd:"" help:"Print the service base URL Bundle built from --file (as GET [base]/servicebaseurls serves it)."`
	Check serviceBaseURLsCheckCmd `cmd:"" help:"Check a service base URL Bundle (from --file, or published at --url) against every publication rule; exit status 1 on an error."`
}

// sbuSource is where the Bundle comes from.
type sbuSource struct {
	File    string `name:"file" env:"LAPIS_SERVICE_BASE_URLS" help:"The organisations file of serve --service-base-urls (default: this server's base alone)." placeholder:"FILE"`
	BaseURL string `name:"base-url" env:"LAPIS_BASE_URL" default:"http://127.0.0.1:8080" help:"Public base URL of the server (the FHIR base is BASE/fhir)." placeholder:"URL"`
}

func (s sbuSource) bundle() ([]byte, error) {
	cfg := config.Defaults()
	cfg.Server.BaseURL = s.BaseURL
	if err := cfg.Normalize(false); err != nil {
		return nil, err
	}
	return servicebase.BundleFor(s.File, "Lapis", cfg.FHIRBase(), time.Now())
}

type serviceBaseURLsPrintCmd struct {
	sbuSource
}

func (c *serviceBaseURLsPrintCmd) Run(e *env) error {
	b, err := c.bundle()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

type serviceBaseURLsCheckCmd struct {
	sbuSource
	URL   string `name:"url" help:"Check the Bundle published at this URL (GET without credentials) instead of --file." placeholder:"URL"`
	Fetch bool   `name:"fetch" help:"Also GET each Endpoint's /metadata without credentials (200 and a CapabilityStatement required)."`
	JSON  bool   `name:"json" help:"Print the result as one JSON object on stdout."`
}

// sbuClient fetches without credentials and bounds time and size.
var sbuClient = &http.Client{Timeout: 30 * time.Second}

// sbuGet GETs url with the Accept header of the service-base-url test kit.
func sbuGet(url string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json, application/fhir+json")
	resp, err := sbuClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, b, err
}

func (c *serviceBaseURLsCheckCmd) Run(e *env) error {
	var body []byte
	var problems []servicebase.Problem
	if c.URL != "" {
		status, b, err := sbuGet(c.URL)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			problems = append(problems, servicebase.Problem{Severity: servicebase.Error, Rule: "retrieval", Message: fmt.Sprintf("GET %s without credentials: status %d, want 200", c.URL, status)})
		}
		body = b
	} else {
		b, err := c.bundle()
		if err != nil {
			return err
		}
		body = b
	}
	reg, err := definitions.Load()
	if err != nil {
		return err
	}
	var fetch servicebase.Fetcher
	if c.Fetch {
		fetch = sbuGet
	}
	problems = append(problems, servicebase.Check(body, validate.New(reg), fetch)...)
	n := servicebase.Errors(problems)
	if c.JSON {
		if problems == nil {
			problems = []servicebase.Problem{}
		}
		if err := json.NewEncoder(e.stdout).Encode(map[string]any{"errors": n, "problems": problems}); err != nil {
			return err
		}
	} else {
		var sb strings.Builder
		for _, p := range problems {
			sb.WriteString(p.String() + "\n")
		}
		fmt.Fprintf(&sb, "%d errors, %d warnings or notes\n", n, len(problems)-n)
		if _, err := io.WriteString(e.stdout, sb.String()); err != nil {
			return err
		}
	}
	if n > 0 {
		return errors.New("the service base URL Bundle breaks the publication rules")
	}
	return nil
}
