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
	"text/tabwriter"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
)

// userCmd manages the accounts of patients and practitioners. It writes
// straight to the database, so a running server sees changes at once.
type userCmd struct {
	Create userCreateCmd `cmd:"" help:"Create a login linked to a FHIR Patient or Practitioner."`
	List   userListCmd   `cmd:"" help:"List logins."`
	Delete userDeleteCmd `cmd:"" help:"Delete a login (and end its sessions)."`
}

type userCreateCmd struct {
	dbFlags
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
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	a, err := oauth.CreateAccount(e.ctx, db, c.Username, pw, c.FHIRUser)
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(userJSON{Username: a.Username, Subject: a.Subject, FHIRUser: a.FHIRUser})
	}
	fmt.Fprintf(e.stdout, "created user %s (%s), subject %s\n", a.Username, a.FHIRUser, a.Subject)
	return nil
}

type userListCmd struct {
	dbFlags
	JSON bool `name:"json" help:"Print a JSON array."`
}

func (c *userListCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	accts, err := db.Accounts(e.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		if accts == nil {
			accts = []authdb.Account{}
		}
		return json.NewEncoder(e.stdout).Encode(accts)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tFHIR_USER\tSUBJECT")
	for _, a := range accts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Username, a.FHIRUser, a.Subject)
	}
	return tw.Flush()
}

type userDeleteCmd struct {
	dbFlags
	Username string `arg:"" name:"USERNAME" help:"Login name."`
}

func (c *userDeleteCmd) Run(e *env) error {
	db, _, err := openAuthDB(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer db.Close()
	name := oauth.NormalizeUsername(c.Username)
	if err := db.DeleteAccount(e.ctx, name); errors.Is(err, authdb.ErrNotFound) {
		return fmt.Errorf("no user %q", name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted user %s\n", name)
	return nil
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
	a, cfg, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	db, err := authdb.Open(e.ctx, cfg.Database.URL, cfg.Database.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	fp := app.Patients{Service: a.Service}

	prID := c.PractitionerID
	if prID != "" {
		if _, err := a.Service.Read(e.ctx, "Practitioner", prID); err != nil {
			return fmt.Errorf("practitioner %q: %w", prID, err)
		}
	} else {
		res, err := a.Service.Create(e.ctx, "Practitioner", []byte(`{"resourceType":"Practitioner","active":true,"name":[{"use":"official","family":"Demo","given":["Dana"],"prefix":["Dr."]}]}`), "")
		if err != nil {
			return fmt.Errorf("creating the demo Practitioner: %w", err)
		}
		prID = res.Resource.ID
	}
	var out demoJSON
	if out.Practitioner, err = demoLogin(e.ctx, db, "dr.demo", "Practitioner/"+prID); err != nil {
		return err
	}
	out.Patients = []userJSON{}
	if c.Users > 0 {
		pts, err := fp.SearchPatients(e.ctx, "", c.Users)
		if err != nil {
			return err
		}
		for _, p := range pts {
			u, err := demoLogin(e.ctx, db, demoUsername(p.Name), "Patient/"+p.ID)
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
func demoLogin(ctx context.Context, db *authdb.DB, name, fhirUser string) (userJSON, error) {
	pwb := make([]byte, 12)
	_, _ = rand.Read(pwb)
	pw := base64.RawURLEncoding.EncodeToString(pwb)
	try := name
	for range 5 {
		a, err := oauth.CreateAccount(ctx, db, try, pw, fhirUser)
		if err == nil {
			return userJSON{Username: a.Username, Password: pw, Subject: a.Subject, FHIRUser: a.FHIRUser}, nil
		}
		if !strings.Contains(err.Error(), "is taken") {
			return userJSON{}, err
		}
		sfx := make([]byte, 2)
		_, _ = rand.Read(sfx)
		try = name + "-" + hex.EncodeToString(sfx)
	}
	return userJSON{}, fmt.Errorf("could not find a free username for %s", name)
}
