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
	"regexp"
	"strings"
	"time"

	adminclient "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/app"

	"github.com/lapis-health/lapis/internal/oauth"
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
	Force         bool   `name:"force" help:"Create the login even if the --fhir-user resource does not exist (yet)."`
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
		u, err := b.CreateUser(ctx, adminclient.UserRequest{Username: c.Username, Password: pw, FHIRUser: c.FHIRUser, Force: c.Force})
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
		return printTable(e.stdout, "USERNAME\tFHIR_USER\tSUBJECT", users, func(u adminclient.User) []string {
			return []string{u.Username, u.FHIRUser, u.Subject}
		})
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
	fp := app.Patients{Service: a.Service}

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
