package bulk

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

// retryAfter is the Retry-After of a running job's status (seconds) and of
// a kick-off over the per-client cap.
const (
	retryAfterStatus = "1"
	retryAfterCap    = "30"
)

// writeError answers err as an OperationOutcome (an unexpected error as a
// 500 that reveals nothing).
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		s.log.ErrorContext(r.Context(), "export: internal error", "method", r.Method, "err", err.Error())
		oe = resource.InternalError()
	}
	writeJSON(w, "application/fhir+json", oe.Status, oe.JSON())
}

func writeJSON(w http.ResponseWriter, ctype string, status int, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	w.Write(body)
}

// owner names the credential a job belongs to: how it authenticated, the
// client (or API key), the user and the patient in context. "" without
// authentication (--dev-no-auth).
func owner(p *principal.Principal) string {
	if p == nil {
		return ""
	}
	return strings.Join([]string{p.Method, p.ClientID, p.Subject, p.Patient}, "\x1f")
}

// hasSystemScope reports whether p holds a system/ data scope.
func hasSystemScope(p *principal.Principal) bool {
	for _, sc := range p.Scopes {
		if strings.HasPrefix(sc, "system/") && !strings.HasPrefix(sc, "system/lapis.") {
			return true
		}
	}
	return false
}

// respondAsync reports whether the Prefer headers of h ask for
// respond-async (RFC 7240: preferences separated by commas, in one or
// several headers, each perhaps with parameters after ';'; names are
// case-insensitive).
func respondAsync(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, pref := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(pref, ";")
			name, _, _ = strings.Cut(name, "=")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// kickOff answers a kick-off request of level.
func (s *Service) kickOff(level string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.startJob(w, r, level); err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Service) startJob(w http.ResponseWriter, r *http.Request, level string) error {
	ctx := r.Context()
	if !respondAsync(r.Header) {
		return outcome.BadRequest("$export needs the header Prefer: respond-async")
	}
	if a := r.Header.Get("Accept"); a != "" && !strings.Contains(a, "application/fhir+json") && !strings.Contains(a, "application/json") && !strings.Contains(a, "*/*") {
		return outcome.New(http.StatusNotAcceptable, "not-supported", "$export answers application/fhir+json")
	}
	p := principal.FromContext(ctx)
	if p != nil && level != levelPatient && !hasSystemScope(p) {
		return outcome.New(http.StatusForbidden, "forbidden", "system and Group exports need system/ scopes (a Backend Services token or a system API key)")
	}
	if p != nil && level == levelPatient && p.Patient == "" && !hasSystemScope(p) {
		if _, ok := p.PatientUser(); !ok {
			return outcome.New(http.StatusForbidden, "forbidden", "Patient/$export needs system/ scopes or a patient-bound credential")
		}
	}
	params, err := kickOffParams(r)
	if err != nil {
		return err
	}
	var group []string
	if level == levelGroup {
		if group, err = s.groupPatients(ctx, r.PathValue("id")); err != nil {
			return err
		}
		if len(group) == 0 {
			return outcome.BadRequest("Group/%s has no Patient members", r.PathValue("id"))
		}
	}
	txTime := s.now().UTC().Truncate(time.Millisecond)
	pl, err := s.buildPlan(ctx, level, params, group, txTime)
	if err != nil {
		return err
	}
	reqURL := s.base + strings.TrimPrefix(r.URL.Path, s.prefix)
	if r.URL.RawQuery != "" {
		reqURL += "?" + r.URL.RawQuery
	}
	jb := &job{ID: newID(), Owner: owner(p), RequestURL: reqURL, TransactionTime: txTime}
	if p == nil {
		p = &principal.Principal{}
	}
	if jb.Principal, err = json.Marshal(p); err != nil {
		return err
	}
	if jb.Request, err = json.Marshal(pl); err != nil {
		return err
	}
	ok, err := s.jobs.insert(ctx, jb, s.now(), s.cfg.MaxJobsPerClient)
	if err != nil {
		return err
	}
	if !ok {
		w.Header().Set("Retry-After", retryAfterCap)
		return outcome.New(http.StatusTooManyRequests, "throttled", "this client already has %d exports running; wait for one to finish or cancel one", s.cfg.MaxJobsPerClient)
	}
	s.notify()
	s.record(ctx, p, "bulk export accepted", "job="+jb.ID, false, 0)
	w.Header().Set("Content-Location", s.base+"/$export-status/"+jb.ID)
	writeJSON(w, "application/fhir+json", http.StatusAccepted, outcome.Info("export job accepted"))
	return nil
}

// ownJob returns the job of the request's {job}, or an error: 404 when
// there is none (cancelled, expired), 403 when another credential started
// it.
func (s *Service) ownJob(r *http.Request) (*job, error) {
	id := r.PathValue("job")
	jb, err := s.jobs.get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if jb == nil {
		return nil, outcome.NotFound("there is no export job %s (it was cancelled, or its files expired)", id)
	}
	if jb.Owner != owner(principal.FromContext(r.Context())) {
		return nil, outcome.New(http.StatusForbidden, "forbidden", "this export job was started by another client")
	}
	return jb, nil
}

// manifest is the completion manifest of a job.
type manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []manifestFile `json:"output"`
	Error               []manifestFile `json:"error"`
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count"`
}

func (s *Service) status(w http.ResponseWriter, r *http.Request) {
	jb, err := s.ownJob(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch jb.State {
	case stateQueued, stateRunning:
		prog := jb.Progress
		if prog == "" {
			prog = jb.State
		}
		if len(prog) > 99 {
			prog = prog[:99]
		}
		w.Header().Set("Retry-After", retryAfterStatus)
		w.Header().Set("X-Progress", prog)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var res result
	if err := json.Unmarshal(jb.Manifest, &res); err != nil {
		s.writeError(w, r, err)
		return
	}
	if jb.State == stateFailed {
		code, kind := http.StatusInternalServerError, "exception"
		if res.Status == http.StatusForbidden {
			code, kind = res.Status, "forbidden"
		}
		s.writeError(w, r, outcome.New(code, kind, "%s", res.Message))
		return
	}
	m := manifest{TransactionTime: fhirtime.FormatInstant(jb.TransactionTime), Request: jb.RequestURL, RequiresAccessToken: true,
		Output: s.files(jb.ID, res.Output), Error: s.files(jb.ID, res.Error)}
	b, err := json.Marshal(m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Expires", jb.Expires.UTC().Format(http.TimeFormat))
	writeJSON(w, "application/json", http.StatusOK, b)
}

func (s *Service) files(id string, outs []output) []manifestFile {
	fs := make([]manifestFile, 0, len(outs))
	for _, o := range outs {
		fs = append(fs, manifestFile{Type: o.Type, URL: s.base + "/$export-file/" + id + "/" + o.File, Count: o.Count})
	}
	return fs
}

func (s *Service) cancel(w http.ResponseWriter, r *http.Request) {
	jb, err := s.ownJob(r)
	if err == nil {
		_, err = s.jobs.remove(r.Context(), jb.ID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A worker still writing stops at its next lease renewal and removes
	// what it wrote since; the sweep removes anything left.
	s.out.removeAll(r.Context(), jobDir(jb.ID, 0))
	s.record(r.Context(), principal.FromContext(r.Context()), "bulk export cancelled", "job="+jb.ID, false, 0)
	writeJSON(w, "application/fhir+json", http.StatusAccepted, outcome.Info("export job cancelled"))
}

func (s *Service) download(w http.ResponseWriter, r *http.Request) {
	jb, err := s.ownJob(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("file")
	var res result
	if jb.State == stateDone {
		err = json.Unmarshal(jb.Manifest, &res)
	}
	listed := false
	for _, o := range append(res.Output, res.Error...) {
		listed = listed || o.File == name
	}
	if err != nil || !listed {
		s.writeError(w, r, outcome.NotFound("export job %s has no file %s", jb.ID, name))
		return
	}
	f, err := s.out.open(r.Context(), jobDir(jb.ID, res.Attempt)+"/"+name)
	if errors.Is(err, os.ErrNotExist) {
		s.writeError(w, r, outcome.NotFound("the file %s is gone (the job expired)", name))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	returned := 0
	for _, o := range res.Output {
		if o.File == name {
			returned = int(o.Count)
		}
	}
	s.record(r.Context(), principal.FromContext(r.Context()), "bulk export file downloaded", "job="+jb.ID+"&file="+name, false, returned)
	// A large file outlasts the server's write timeout: allow ten minutes
	// plus a second per MB (where the writers in between let us).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(10*time.Minute + time.Duration(f.size()>>20)*time.Second))
	ow := &outcomeErrors{ResponseWriter: w}
	http.ServeContent(ow, r, "", f.modTime(), f)
	ow.finish()
}

// outcomeErrors is the ResponseWriter http.ServeContent writes a file to:
// an error it answers (416 for a Range the file cannot satisfy, 412 for a
// failed precondition) goes out as an OperationOutcome with its status and
// net/http's text as diagnostics, instead of a text/plain line.
type outcomeErrors struct {
	http.ResponseWriter
	status int          // the error status, 0 while none
	text   bytes.Buffer // net/http's text of the error
}

func (o *outcomeErrors) WriteHeader(code int) {
	if code < http.StatusBadRequest {
		o.ResponseWriter.WriteHeader(code)
		return
	}
	o.status = code
}

func (o *outcomeErrors) Write(p []byte) (int, error) {
	if o.status != 0 {
		return o.text.Write(p)
	}
	return o.ResponseWriter.Write(p)
}

// ReadFrom passes the file's bytes to the underlying writer through
// io.Copy, which uses its io.ReaderFrom where it has one.
func (o *outcomeErrors) ReadFrom(r io.Reader) (int64, error) {
	if o.status != 0 {
		return o.text.ReadFrom(r)
	}
	return io.Copy(o.ResponseWriter, r)
}

// Unwrap gives http.ResponseController the underlying writer.
func (o *outcomeErrors) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// finish writes the OperationOutcome of an error http.ServeContent
// answered.
func (o *outcomeErrors) finish() {
	if o.status == 0 {
		return
	}
	kind := "processing"
	if o.status == http.StatusRequestedRangeNotSatisfiable {
		kind = "invalid"
	}
	text := strings.TrimSpace(o.text.String())
	switch {
	case text != "":
	case o.status == http.StatusPreconditionFailed:
		// net/http answers a failed precondition with no text.
		text = "a precondition of the request (If-Match, If-Unmodified-Since) does not hold for the file"
	default:
		text = http.StatusText(o.status)
	}
	o.Header().Set("Cache-Control", "no-store")
	oe := outcome.New(o.status, kind, "%s", text)
	writeJSON(o.ResponseWriter, "application/fhir+json", oe.Status, oe.JSON())
}
