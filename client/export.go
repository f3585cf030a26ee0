package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ExportRequest describes a FHIR Bulk Data 2.0 $export kick-off.
type ExportRequest struct {
	// Level is "system" ([base]/$export, the default), "patient"
	// ([base]/Patient/$export) or "group" ([base]/Group/GroupID/$export).
	Level string
	// GroupID is the Group's id for the group level.
	GroupID string
	// Types limits the export to these resource types (_type).
	Types []string
	// Since exports only resources changed after this time (_since).
	Since time.Time
	// TypeFilters are _typeFilter search queries, e.g.
	// "Observation?category=laboratory".
	TypeFilters []string
	// Elements limits the elements returned (_elements).
	Elements []string
	// OutputFormat is _outputFormat; empty means the server's default,
	// application/fhir+ndjson.
	OutputFormat string
}

// ExportJob is a running export. Its URL (the status URL from
// Content-Location) is all that is needed to pick the job up again later,
// with ResumeExport. Its methods may be called from several goroutines,
// e.g. to download files in parallel.
type ExportJob struct {
	// URL is the job's status URL.
	URL string

	c        *Client
	u        *url.URL
	mu       sync.Mutex
	manifest *ExportManifest
}

// maxPollWait bounds a single wait between status polls.
const maxPollWait = 10 * time.Minute

func (j *ExportJob) setManifest(m *ExportManifest, onlyIfNone bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !onlyIfNone || j.manifest == nil {
		j.manifest = m
	}
}

// ExportStatus is the answer of one status request.
type ExportStatus struct {
	// Complete is true when the export finished; Manifest is then set.
	Complete bool
	// Progress is the server's X-Progress text while in progress.
	Progress string
	// RetryAfter is the wait the server asked for before the next poll,
	// zero if it did not say.
	RetryAfter time.Duration
	// Manifest is the completion manifest.
	Manifest *ExportManifest
}

// ExportManifest is the Bulk Data completion manifest.
type ExportManifest struct {
	// TransactionTime is the server time the export reflects; use it as
	// the next export's Since.
	TransactionTime time.Time `json:"transactionTime"`
	// Request is the kick-off URL.
	Request string `json:"request"`
	// RequiresAccessToken says whether downloading the files needs the
	// access token; the client sends it only to the server's own origin.
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []ExportOutput `json:"output"`
	// Error lists files of OperationOutcomes about problems in the export.
	Error []ExportOutput `json:"error"`
	// Deleted lists files of deleted resources (with _since).
	Deleted []ExportOutput `json:"deleted,omitempty"`
}

// ExportOutput is one file of an export.
type ExportOutput struct {
	// Type is the resource type of the file's resources.
	Type string `json:"type"`
	// URL is where the file is downloaded from.
	URL string `json:"url"`
	// Count is the number of resources, when the server says.
	Count int `json:"count,omitempty"`
}

// Export kicks off a Bulk Data export (GET .../$export with Prefer:
// respond-async) and returns the job once the server accepted it (202
// with Content-Location).
func (c *Client) Export(ctx context.Context, req ExportRequest) (*ExportJob, error) {
	var segs []string
	switch req.Level {
	case "", "system":
	case "patient":
		segs = []string{"Patient"}
	case "group":
		if err := checkID("group id", req.GroupID); err != nil {
			return nil, err
		}
		segs = []string{"Group", req.GroupID}
	default:
		return nil, fmt.Errorf("fhir client: export level %q is not system, patient or group", truncate(req.Level, 32))
	}
	segs = append(segs, "$export")
	q := url.Values{}
	for _, t := range req.Types {
		if err := checkType(t); err != nil {
			return nil, err
		}
	}
	if len(req.Types) > 0 {
		q.Set("_type", strings.Join(req.Types, ","))
	}
	if !req.Since.IsZero() {
		q.Set("_since", req.Since.Format(time.RFC3339))
	}
	for _, f := range req.TypeFilters {
		q.Add("_typeFilter", f)
	}
	if len(req.Elements) > 0 {
		q.Set("_elements", strings.Join(req.Elements, ","))
	}
	if req.OutputFormat != "" {
		q.Set("_outputFormat", req.OutputFormat)
	}
	r := &request{method: http.MethodGet, url: c.path(q, segs...), auth: true,
		hdr: http.Header{"Accept": {fhirJSON}, "Prefer": {"respond-async"}}}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		if resp.StatusCode >= 400 {
			return nil, c.errorFrom(r, resp)
		}
		drain(resp)
		return nil, fmt.Errorf("fhir client: $export answered %d, want 202 Accepted", resp.StatusCode)
	}
	drain(resp)
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return nil, errors.New("fhir client: $export answered 202 without Content-Location")
	}
	return ResumeExport(c, loc)
}

// ResumeExport returns the export job whose status URL is statusURL, to
// poll, download or cancel a job started earlier (perhaps by another
// process). The URL must be on c's origin.
func ResumeExport(c *Client, statusURL string) (*ExportJob, error) {
	u, err := url.Parse(statusURL)
	if err != nil || !u.IsAbs() {
		return nil, errors.New("fhir client: export status URL must be absolute")
	}
	if !c.sameOrigin(u) {
		return nil, errors.New("fhir client: export status URL is not on the server's origin")
	}
	return &ExportJob{URL: u.String(), c: c, u: u}, nil
}

// Poll asks the status URL once. In progress (202) it returns the
// X-Progress text and Retry-After; complete (200) the manifest; a failed
// job is an *Error with the server's OperationOutcome.
func (j *ExportJob) Poll(ctx context.Context) (*ExportStatus, error) {
	r := &request{method: http.MethodGet, url: j.u, auth: true, hdr: http.Header{"Accept": {"application/json"}}}
	resp, err := j.c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusAccepted:
		drain(resp)
		st := &ExportStatus{Progress: truncate(resp.Header.Get("X-Progress"), 200)}
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), j.c.now()); ok {
			st.RetryAfter = d
		}
		return st, nil
	case resp.StatusCode == http.StatusOK:
		body, err := readBody(resp)
		if err != nil {
			return nil, err
		}
		var m ExportManifest
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, errors.New("fhir client: invalid export manifest")
		}
		j.setManifest(&m, false)
		return &ExportStatus{Complete: true, Manifest: &m}, nil
	case resp.StatusCode >= 400:
		return nil, j.c.errorFrom(r, resp)
	default:
		drain(resp)
		return nil, fmt.Errorf("fhir client: export status answered %d", resp.StatusCode)
	}
}

// Wait polls until the export completes and returns its manifest, calling
// progress (if not nil) after each in-progress answer. It waits as long as
// Retry-After asks (at most 10 minutes at a time) and backs off from 1 s
// to 30 s when the server does not say; it returns when ctx ends.
func (j *ExportJob) Wait(ctx context.Context, progress func(ExportStatus)) (*ExportManifest, error) {
	backoff := time.Second
	for {
		st, err := j.Poll(ctx)
		if err != nil {
			return nil, err
		}
		if st.Complete {
			return st.Manifest, nil
		}
		if progress != nil {
			progress(*st)
		}
		wait := st.RetryAfter
		if wait <= 0 {
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		}
		wait = min(wait, maxPollWait)
		if err := j.c.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// Manifest returns the manifest from the last completed Poll or Wait, nil
// before.
func (j *ExportJob) Manifest() *ExportManifest {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.manifest
}

// Cancel deletes the job (DELETE on the status URL): the server stops it,
// or removes its files after you downloaded them.
func (j *ExportJob) Cancel(ctx context.Context) error {
	r := &request{method: http.MethodDelete, url: j.u, auth: true}
	resp, err := j.c.send(ctx, r)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return j.c.errorFrom(r, resp)
	}
	drain(resp)
	return nil
}

// safeName keeps file names to a harmless alphabet.
var safeName = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// OutputFileName is the file name Download stores out under: the type, a
// short hash of the URL (several files may have one type) and .ndjson.
func OutputFileName(out ExportOutput) string {
	sum := sha256.Sum256([]byte(out.URL))
	typ := safeName.ReplaceAllString(out.Type, "")
	if typ == "" {
		typ = "output"
	}
	return typ + "-" + hex.EncodeToString(sum[:6]) + ".ndjson"
}

// Download fetches one output file into dir as OutputFileName(out),
// calling progress (if not nil) with bytes done and the total (-1 if
// unknown). It is resumable: a completed file is skipped, and a partial
// download (the .part file) continues with a Range request when the
// server supports it, or starts over when it does not. The access token
// is sent only when the file is on the server's origin; a file elsewhere
// that requires the token is refused.
func (j *ExportJob) Download(ctx context.Context, out ExportOutput, dir string, progress func(done, total int64)) error {
	u, err := url.Parse(out.URL)
	if err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("fhir client: export output URL must be an absolute http(s) URL")
	}
	same := j.c.sameOrigin(u)
	m := j.Manifest()
	needToken := m == nil || m.RequiresAccessToken
	if needToken && !same {
		return errors.New("fhir client: export output needs the access token but is not on the server's origin; refusing to send the token")
	}
	final := filepath.Join(dir, OutputFileName(out))
	part := final + ".part"
	if st, err := os.Stat(final); err == nil {
		if progress != nil {
			progress(st.Size(), st.Size())
		}
		return nil
	}
	var have int64
	if st, err := os.Stat(part); err == nil {
		have = st.Size()
	}
	hdr := http.Header{"Accept": {"application/fhir+ndjson"}}
	if have > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	r := &request{method: http.MethodGet, url: u, auth: same, hdr: hdr}
	resp, err := j.c.send(ctx, r)
	if err != nil {
		return err
	}
	flags := os.O_CREATE | os.O_WRONLY
	var total int64 = -1
	switch resp.StatusCode {
	case http.StatusOK:
		flags |= os.O_TRUNC
		have = 0
		if resp.ContentLength >= 0 {
			total = resp.ContentLength
		}
	case http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			drain(resp)
			return errors.New("fhir client: server answered the resume request with an unexpected Content-Range")
		}
		flags |= os.O_APPEND
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		// The .part file is already complete (or corrupt): start over.
		drain(resp)
		if err := os.Remove(part); err != nil {
			return fmt.Errorf("fhir client: removing partial download: %w", err)
		}
		return j.Download(ctx, out, dir, progress)
	default:
		if resp.StatusCode >= 400 {
			return j.c.errorFrom(r, resp)
		}
		drain(resp)
		return fmt.Errorf("fhir client: export download answered %d", resp.StatusCode)
	}
	defer resp.Body.Close()
	f, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return fmt.Errorf("fhir client: %w", err)
	}
	done := have
	if progress != nil {
		progress(done, total)
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return fmt.Errorf("fhir client: writing %s: %w", filepath.Base(part), err)
			}
			done += int64(n)
			if progress != nil {
				progress(done, total)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("fhir client: download interrupted after %d bytes (resumable): %w", done, rerr)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fhir client: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fhir client: %w", err)
	}
	if total >= 0 && done != total {
		return fmt.Errorf("fhir client: download incomplete: %d of %d bytes (resumable)", done, total)
	}
	return os.Rename(part, final)
}

// DownloadAll downloads every output, error and deleted file of the manifest
// into dir, resumably; progress gets the running totals over all files.
func (j *ExportJob) DownloadAll(ctx context.Context, m *ExportManifest, dir string, progress func(file ExportOutput, done, total int64)) error {
	if m == nil {
		return errors.New("fhir client: no manifest")
	}
	j.setManifest(m, true)
	files := append(append(append([]ExportOutput(nil), m.Output...), m.Error...), m.Deleted...)
	for _, out := range files {
		var p func(done, total int64)
		if progress != nil {
			p = func(done, total int64) { progress(out, done, total) }
		}
		if err := j.Download(ctx, out, dir, p); err != nil {
			return err
		}
	}
	return nil
}

// parseContentRange reads "bytes START-END/SIZE" (SIZE may be *, -1).
func parseContentRange(v string) (start, size int64, ok bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}
