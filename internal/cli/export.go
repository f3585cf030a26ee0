package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/client"
)

// exportStateFile is the state file "lapis export" keeps in --out, so a
// second run resumes the same job and the downloads.
const exportStateFile = ".lapis-export.json"

type exportCmd struct {
	connFlags
	Out        string   `name:"out" required:"" help:"Directory for the NDJSON files and the state file (re-running with the same --out resumes)." placeholder:"DIR"`
	Type       []string `name:"type" help:"Resource types to export (_type; repeatable or comma-separated)." placeholder:"TYPE"`
	Since      string   `name:"since" help:"Only resources changed after this instant (_since), RFC 3339 or YYYY-MM-DD." placeholder:"TIME"`
	TypeFilter []string `name:"type-filter" help:"_typeFilter query, e.g. Observation?category=laboratory (repeatable)." placeholder:"QUERY"`
	Level      string   `name:"level" default:"system" enum:"system,patient,group" help:"system ([base]/$export), patient (Patient/$export) or group (Group/ID/$export)."`
	Group      string   `name:"group" help:"Group id (with --level group)." placeholder:"ID"`
	NoProgress bool     `name:"no-progress" help:"Do not draw progress on a terminal."`
}

// exportState is the content of the state file.
type exportState struct {
	// FHIRBase and Request identify the export; a different one in the
	// same directory is refused.
	FHIRBase  string                 `json:"fhir_base"`
	Request   exportRequestKey       `json:"request"`
	StatusURL string                 `json:"status_url"`
	StartedAt time.Time              `json:"started_at"`
	Manifest  *client.ExportManifest `json:"manifest,omitempty"`
	Done      bool                   `json:"done,omitempty"`
}

// exportRequestKey is the comparable form of the request flags.
type exportRequestKey struct {
	Level       string   `json:"level"`
	Group       string   `json:"group,omitempty"`
	Types       []string `json:"types,omitempty"`
	Since       string   `json:"since,omitempty"`
	TypeFilters []string `json:"type_filters,omitempty"`
}

func (k exportRequestKey) equal(o exportRequestKey) bool {
	return k.Level == o.Level && k.Group == o.Group && slices.Equal(k.Types, o.Types) && k.Since == o.Since && slices.Equal(k.TypeFilters, o.TypeFilters)
}

// exportSummary is what "lapis export" prints on stdout when done.
type exportSummary struct {
	Out             string        `json:"out"`
	StatusURL       string        `json:"status_url"`
	TransactionTime time.Time     `json:"transaction_time,omitzero"`
	Files           []summaryFile `json:"files"`
	Errors          []summaryFile `json:"errors,omitempty"`
}

type summaryFile struct {
	Type  string `json:"type"`
	File  string `json:"file"`
	Count int    `json:"count,omitempty"`
}

func (c *exportCmd) request() (client.ExportRequest, exportRequestKey, error) {
	var types []string
	for _, t := range c.Type {
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if !refType.MatchString(s) {
					return client.ExportRequest{}, exportRequestKey{}, usagef("--type %q is not a resource type", s)
				}
				types = append(types, s)
			}
		}
	}
	req := client.ExportRequest{Level: c.Level, Types: types, TypeFilters: c.TypeFilter}
	key := exportRequestKey{Level: c.Level, Types: types, Since: c.Since, TypeFilters: c.TypeFilter}
	switch {
	case c.Level == "group" && !refID.MatchString(c.Group):
		return req, key, usagef("--level group needs --group ID")
	case c.Level != "group" && c.Group != "":
		return req, key, usagef("--group needs --level group")
	}
	req.GroupID, key.Group = c.Group, c.Group
	if c.Since != "" {
		t, err := time.Parse(time.RFC3339, c.Since)
		if err != nil {
			if t, err = time.Parse(time.DateOnly, c.Since); err != nil {
				return req, key, usagef("--since %q: use RFC 3339 (2024-01-02T15:04:05Z) or YYYY-MM-DD", c.Since)
			}
		}
		req.Since = t
	}
	return req, key, nil
}

func (c *exportCmd) Run(e *env) error {
	req, key, err := c.request()
	if err != nil {
		return err
	}
	cl, err := c.newClient(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o700); err != nil {
		return err
	}
	statePath := filepath.Join(c.Out, exportStateFile)
	st, err := loadExportState(statePath)
	if err != nil {
		return err
	}
	var job *client.ExportJob
	switch {
	case st == nil:
		job, err = cl.Export(e.ctx, req)
		if err != nil {
			return err
		}
		st = &exportState{FHIRBase: cl.BaseURL(), Request: key, StatusURL: job.URL, StartedAt: time.Now().UTC().Truncate(time.Second)}
		if err := saveExportState(statePath, st); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "lapis: export started; re-run the same command to resume (state in %s)\n", statePath)
	case st.FHIRBase != cl.BaseURL() || !st.Request.equal(key):
		return usagef("%s holds a different export (%s); use another --out or remove %s", c.Out, st.FHIRBase, exportStateFile)
	default:
		if job, err = client.ResumeExport(cl, st.StatusURL); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "lapis: resuming the export started %s\n", st.StartedAt.Format(time.RFC3339))
	}
	bar := newProgress(e, c.NoProgress)
	if st.Manifest == nil {
		m, err := job.Wait(e.ctx, func(s client.ExportStatus) { bar.status("export in progress " + s.Progress) })
		if err != nil {
			bar.done()
			if client.IsNotFound(err) || client.IsGone(err) {
				return fmt.Errorf("the export job is gone (expired or cancelled): remove %s to start a new one", statePath)
			}
			return err
		}
		st.Manifest = m
		if err := saveExportState(statePath, st); err != nil {
			return err
		}
	}
	err = job.DownloadAll(e.ctx, st.Manifest, c.Out, func(f client.ExportOutput, done, size int64) { bar.file(f.Type, done, size) })
	bar.done()
	if err != nil {
		return err
	}
	st.Done = true
	if err := saveExportState(statePath, st); err != nil {
		return err
	}
	sum := exportSummary{Out: c.Out, StatusURL: st.StatusURL, TransactionTime: st.Manifest.TransactionTime, Files: []summaryFile{}}
	for _, o := range st.Manifest.Output {
		sum.Files = append(sum.Files, summaryFile{Type: o.Type, File: client.OutputFileName(o), Count: o.Count})
	}
	for _, o := range st.Manifest.Error {
		sum.Errors = append(sum.Errors, summaryFile{Type: o.Type, File: client.OutputFileName(o), Count: o.Count})
	}
	return json.NewEncoder(e.stdout).Encode(sum)
}

func loadExportState(path string) (*exportState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st exportState
	if err := json.Unmarshal(b, &st); err != nil || st.StatusURL == "" {
		return nil, fmt.Errorf("%s is damaged: remove it to start a new export", path)
	}
	return &st, nil
}

// saveExportState writes the state atomically (0600: the status URL lets
// an authorized client fetch the data).
func saveExportState(path string, st *exportState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// progress draws one status line on a terminal's stderr; elsewhere it is
// silent.
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
	drew bool
}

func newProgress(e *env, off bool) *progress {
	p := &progress{w: e.stderr}
	if f, ok := e.stderr.(*os.File); ok && !off {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) line(s string, force bool) {
	if !p.on || (!force && time.Since(p.last) < 100*time.Millisecond) {
		return
	}
	p.last = time.Now()
	if len(s) > 78 {
		s = s[:78]
	}
	fmt.Fprintf(p.w, "\r\033[K%s", s)
	p.drew = true
}

func (p *progress) status(s string) { p.line(s, true) }

func (p *progress) file(typ string, done, total int64) {
	if total <= 0 {
		p.line(fmt.Sprintf("%-20s %s", typ, byteSize(done)), done == total)
		return
	}
	const width = 30
	n := int(done * width / total)
	p.line(fmt.Sprintf("%-20s [%s%s] %3d%% %s / %s", typ, strings.Repeat("=", n), strings.Repeat(" ", width-n), done*100/total,
		byteSize(done), byteSize(total)), done == total)
}

func (p *progress) done() {
	if p.drew {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
