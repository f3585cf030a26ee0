package oauth

import (
	"context"
	"errors"
	"strings"
)

// RecordChecker reports whether a FHIR resource exists (stored and not
// deleted): the Patient or Practitioner a login is linked to, the patient
// an API key is bound to. app.Patients implements it over
// the resource service; the admin API uses Config.Patients when it
// implements RecordChecker.
type RecordChecker interface {
	RecordExists(ctx context.Context, typ, id string) (bool, error)
}

// MissingRecordError is returned by CheckFHIRUser and CheckPatient for a
// resource that does not exist.
type MissingRecordError struct {
	// Reference is the missing resource, "Patient/ID".
	Reference string
}

// Error implements error.
func (e *MissingRecordError) Error() string { return e.Reference + " does not exist" }

// CheckFHIRUser returns a *MissingRecordError if the FHIR user of a login
// ("Patient/ID" or "Practitioner/ID") does not exist. A malformed value is
// left to ValidateAccount (nil here).
func CheckFHIRUser(ctx context.Context, rc RecordChecker, fhirUser string) error {
	if !fhirUserRE.MatchString(fhirUser) {
		return nil
	}
	typ, id, _ := strings.Cut(fhirUser, "/")
	return checkRecord(ctx, rc, typ, id)
}

// CheckPatient returns a *MissingRecordError if Patient/id does not exist.
func CheckPatient(ctx context.Context, rc RecordChecker, id string) error {
	return checkRecord(ctx, rc, "Patient", id)
}

func checkRecord(ctx context.Context, rc RecordChecker, typ, id string) error {
	ok, err := rc.RecordExists(ctx, typ, id)
	if err != nil {
		return err
	}
	if !ok {
		return &MissingRecordError{Reference: typ + "/" + id}
	}
	return nil
}

// records returns the record checker of the admin API: Config.Patients
// when it implements RecordChecker (lapis serve wires the FHIR store),
// else nil (no check).
func (s *Server) records() RecordChecker {
	rc, _ := s.cfg.Patients.(RecordChecker)
	return rc
}

// adminCheckFHIRUser is CheckFHIRUser for the admin API: skipped with
// force or without a record checker; a missing record is a 400 that says
// how to override.
func (s *Server) adminCheckFHIRUser(ctx context.Context, force bool, fhirUser string) error {
	if rc := s.records(); rc != nil && !force {
		return adminMissing(CheckFHIRUser(ctx, rc, fhirUser), "login")
	}
	return nil
}

// adminCheckPatient is CheckPatient for the admin API, as
// adminCheckFHIRUser.
func (s *Server) adminCheckPatient(ctx context.Context, force bool, id string) error {
	if rc := s.records(); rc != nil && !force && id != "" {
		return adminMissing(CheckPatient(ctx, rc, id), "key")
	}
	return nil
}

func adminMissing(err error, what string) error {
	var me *MissingRecordError
	if errors.As(err, &me) {
		return errInvalidRequest(me.Error() + " (set force, lapis --force, to create the " + what + " anyway)")
	}
	return err
}
