package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/principal"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/resource"
)

// userCmd manages the logins of patients and practitioners: in the local
// database (a running server sees changes at once) or on a remote server
// (see admincmd.go).
type userCmd struct {
	Create userCreateCmd `cmd:"" help:"Create a login linked to a FHIR Patient or Practitioner."`
	List   userListCmd   `cmd:"" help:"List logins."`
	Delete userDeleteCmd `cmd:"" help:"Delete a login (and end its sessions)."`
}

type userCreateCmd struct {
	adminFlags
	Username      string `name:"username" required:"" help:"Login name (case-insensitive)." placeholder:"NAME"`
	PasswordStdin bool   `name:"password-stdin" required:"" help:"Read the password from the first line of standard input (never from the command line)."`
	FHIRUser      string `name:"fhir-user" required:"" help:"The user's FHIR resource: Patient/ID or Practitioner/ID." placeholder:"TYPE/ID"`
	JSON          bool   `name:"json" help:"Print one JSON object {\"username\",\"subject\",\"fhir_user\"}."`
}

// userJSON is the output of user create and of each demo login.
type userJSON struct {
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
	Subject  string `json:"subject"`
	FHIRUser string `json:"fhir_user"`
}

// readPassword reads the first line of r (at most 1 KiB).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, 1024), 1024).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}

func (c *userCreateCmd) Run(e *env) error {
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		u, err := b.CreateUser(ctx, adminclient.UserRequest{Username: c.Username, Password: pw, FHIRUser: c.FHIRUser})
		if err != nil {
			return err
		}
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(userJSON{Username: u.Username, Subject: u.Subject, FHIRUser: u.FHIRUser})
		}
		fmt.Fprintf(e.stdout, "created user %s (%s), subject %s\n", u.Username, u.FHIRUser, u.Subject)
		return nil
	})
}

type userListCmd struct {
	adminFlags
	JSON bool `name:"json" help:"Print a JSON array."`
}

// userListJSON is one login in user list --json.
type userListJSON struct {
	Subject   string    `json:"subject"`
	Username  string    `json:"username"`
	FHIRUser  string    `json:"fhir_user"`
	CreatedAt time.Time `json:"created_at"`
}

func (c *userListCmd) Run(e *env) error {
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		users, err := b.Users(ctx)
		if err != nil {
			return err
		}
		if c.JSON {
			out := make([]userListJSON, 0, len(users))
			for _, u := range users {
				out = append(out, userListJSON{Subject: u.Subject, Username: u.Username, FHIRUser: u.FHIRUser, CreatedAt: u.CreatedAt})
			}
			return json.NewEncoder(e.stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tFHIR_USER\tSUBJECT")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.FHIRUser, u.Subject)
		}
		return tw.Flush()
	})
}

type userDeleteCmd struct {
	adminFlags
	Username string `arg:"" name:"USERNAME" help:"Login name."`
}

func (c *userDeleteCmd) Run(e *env) error {
	name := oauth.NormalizeUsername(c.Username)
	return c.run(e, func(ctx context.Context, b adminBackend) error {
		if err := b.DeleteUser(ctx, name); err != nil {
			return notFound(err, "user", name)
		}
		fmt.Fprintf(e.stdout, "deleted user %s\n", name)
		return nil
	})
}

// demoCmd creates demo logins: a practitioner and the first N patients of
// the FHIR store, with random passwords printed once.
type demoCmd struct {
	dbFlags
	Users          int    `name:"users" default:"5" help:"Number of patients (the first found in the FHIR store) to create logins for."`
	PractitionerID string `name:"practitioner-id" help:"Link the practitioner login to this existing Practitioner (default: create a Practitioner resource)." placeholder:"ID"`
}

// demoJSON is the output of lapis demo.
type demoJSON struct {
	Practitioner userJSON   `json:"practitioner"`
	Patients     []userJSON `json:"patients"`
}

func (c *demoCmd) Run(e *env) error {
	if c.Users < 0 || c.Users > 1000 {
		return errors.New("--users must be between 0 and 1000")
	}
	a, _, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	return localAdmin(e, c.dbFlags, func(ctx context.Context, s *admin.Service) error { return c.demo(ctx, e, a, s) })
}

func (c *demoCmd) demo(ctx context.Context, e *env, a *app.App, s *admin.Service) error {
	fp := FHIRPatients{Service: a.Service}

	prID := c.PractitionerID
	if prID != "" {
		if _, err := a.Service.Read(ctx, "Practitioner", prID); err != nil {
			return fmt.Errorf("practitioner %q: %w", prID, err)
		}
	} else {
		res, err := a.Service.Create(ctx, "Practitioner", []byte(`{"resourceType":"Practitioner","active":true,"name":[{"use":"official","family":"Demo","given":["Dana"],"prefix":["Dr."]}]}`), "")
		if err != nil {
			return fmt.Errorf("creating the demo Practitioner: %w", err)
		}
		prID = res.Resource.ID
	}
	var out demoJSON
	var err error
	if out.Practitioner, err = demoLogin(ctx, s, "dr.demo", "Practitioner/"+prID); err != nil {
		return err
	}
	out.Patients = []userJSON{}
	if c.Users > 0 {
		pts, err := fp.SearchPatients(ctx, "", c.Users)
		if err != nil {
			return err
		}
		for _, p := range pts {
			u, err := demoLogin(ctx, s, demoUsername(p.Name), "Patient/"+p.ID)
			if err != nil {
				return err
			}
			out.Patients = append(out.Patients, u)
		}
	}
	return json.NewEncoder(e.stdout).Encode(out)
}

var nonUsername = regexp.MustCompile(`[^a-z0-9]+`)

// demoUsername derives a login name from a patient's name ("Abdul Koepp"
// -> "abdul.koepp").
func demoUsername(name string) string {
	f := strings.Fields(strings.ToLower(name))
	for i := range f {
		f[i] = nonUsername.ReplaceAllString(f[i], "")
	}
	u := strings.Trim(strings.Join(f, "."), ".")
	u = regexp.MustCompile(`\.+`).ReplaceAllString(u, ".")
	if len(u) > 48 {
		u = u[:48]
	}
	if u == "" {
		u = "patient"
	}
	return u
}

// demoLogin creates a login with a random password, adding a random
// suffix when the name is taken.
func demoLogin(ctx context.Context, s *admin.Service, name, fhirUser string) (userJSON, error) {
	pwb := make([]byte, 12)
	_, _ = rand.Read(pwb)
	pw := base64.RawURLEncoding.EncodeToString(pwb)
	try := name
	for range 5 {
		u, err := s.CreateUser(ctx, adminclient.UserRequest{Username: try, Password: pw, FHIRUser: fhirUser})
		if err == nil {
			return userJSON{Username: u.Username, Password: pw, Subject: u.Subject, FHIRUser: u.FHIRUser}, nil
		}
		if !errors.Is(err, adminclient.ErrConflict) {
			return userJSON{}, err
		}
		sfx := make([]byte, 2)
		_, _ = rand.Read(sfx)
		try = name + "-" + hex.EncodeToString(sfx)
	}
	return userJSON{}, fmt.Errorf("could not find a free username for %s", name)
}

// FHIRPatients implements oauth.PatientLister over the resource service:
// wire it as oauth.Options.Patients in lapis serve.
type FHIRPatients struct {
	Service *resource.Service
}

// searchEntries runs a search and returns the resources of its matches.
func (f FHIRPatients) searchEntries(ctx context.Context, typ string, params url.Values) ([]map[string]any, error) {
	res, err := f.Service.Search(internalCaller(ctx), typ, params, false)
	if err != nil {
		return nil, err
	}
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(res.Body, &b); err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, e := range b.Entry {
		if e.Search.Mode == "match" && e.Resource != nil {
			out = append(out, e.Resource)
		}
	}
	return out, nil
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// patientSummary condenses a Patient resource.
func patientSummary(p map[string]any) oauth.PatientSummary {
	ps := oauth.PatientSummary{ID: str(p, "id"), BirthDate: str(p, "birthDate"), Gender: str(p, "gender")}
	if names, _ := p["name"].([]any); len(names) > 0 {
		n, _ := names[0].(map[string]any)
		if t := str(n, "text"); t != "" {
			ps.Name = t
		} else {
			var parts []string
			if g, _ := n["given"].([]any); len(g) > 0 {
				for _, x := range g {
					if s, ok := x.(string); ok {
						parts = append(parts, s)
					}
				}
			}
			if f := str(n, "family"); f != "" {
				parts = append(parts, f)
			}
			ps.Name = strings.Join(parts, " ")
		}
	}
	if ps.Name == "" {
		ps.Name = "Patient/" + ps.ID
	}
	return ps
}

// SearchPatients implements oauth.PatientLister.
func (f FHIRPatients) SearchPatients(ctx context.Context, name string, limit int) ([]oauth.PatientSummary, error) {
	q := url.Values{"_count": {strconv.Itoa(limit)}}
	if name = strings.TrimSpace(name); name != "" {
		q.Set("name", name)
	}
	rs, err := f.searchEntries(ctx, "Patient", q)
	if err != nil {
		return nil, err
	}
	out := make([]oauth.PatientSummary, 0, len(rs))
	for _, r := range rs {
		out = append(out, patientSummary(r))
	}
	return out, nil
}

// Patient implements oauth.PatientLister.
func (f FHIRPatients) Patient(ctx context.Context, id string) (*oauth.PatientSummary, error) {
	if !resource.ValidID(id) {
		return nil, nil
	}
	res, err := f.Service.Read(internalCaller(ctx), "Patient", id)
	var oe *outcome.Error
	if errors.As(err, &oe) && (oe.Status == http.StatusNotFound || oe.Status == http.StatusGone) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(res.Body, &m); err != nil {
		return nil, err
	}
	ps := patientSummary(m)
	return &ps, nil
}

// Encounters implements oauth.PatientLister.
func (f FHIRPatients) Encounters(ctx context.Context, patientID string, limit int) ([]oauth.EncounterSummary, error) {
	rs, err := f.searchEntries(ctx, "Encounter", url.Values{"patient": {patientID}, "_sort": {"-date"}, "_count": {strconv.Itoa(limit)}})
	if err != nil {
		return nil, err
	}
	out := make([]oauth.EncounterSummary, 0, len(rs))
	for _, r := range rs {
		label := ""
		if p, _ := r["period"].(map[string]any); p != nil {
			label = str(p, "start")
		}
		if ts, _ := r["type"].([]any); len(ts) > 0 {
			t, _ := ts[0].(map[string]any)
			txt := str(t, "text")
			if cs, _ := t["coding"].([]any); txt == "" && len(cs) > 0 {
				c, _ := cs[0].(map[string]any)
				txt = str(c, "display")
			}
			if txt != "" {
				label = strings.TrimSpace(label + " " + txt)
			}
		}
		if label == "" {
			label = "Encounter/" + str(r, "id")
		}
		out = append(out, oauth.EncounterSummary{ID: str(r, "id"), Label: label})
	}
	return out, nil
}

// internalCaller marks ctx as the authorization server itself looking up
// patients and encounters for its pickers (the user has already been
// authenticated by it): read and search on those two types only.
func internalCaller(ctx context.Context) context.Context {
	return principal.NewContext(ctx, &principal.Principal{
		Method:   "internal",
		ClientID: "lapis-authorization-server",
		Scopes:   []string{"system/Patient.rs", "system/Encounter.rs"},
	})
}
