// Package bulk is the Bulk Data Access 2.0 $export server of Lapis
// (http://hl7.org/fhir/uv/bulkdata/export.html): kick-off at [base]/$export,
// [base]/Patient/$export and [base]/Group/{id}/$export (GET, or POST with a
// Parameters body), a durable job table that survives restarts and is
// shared by every instance on one database (workers hold a lease they
// renew; an expired lease lets another worker take the job over and
// rewrite its files), the status and manifest at [base]/$export-status/{job}
// (DELETE cancels), and the NDJSON files at [base]/$export-file/{job}/{file}
// (kept in a folder or an S3-compatible bucket, always served by Lapis).
//
// Every export runs as the credential that started it: the resources come
// from resource.Service.Each under that principal, so the access filters
// of its scopes (types, granular categories, patient compartment) are
// pushed into the SQL exactly as for a search, and _typeFilter queries
// run on the same search engine (an unsupported parameter is a 400 at
// kick-off, never ignored). Status, cancel and downloads are answered only
// to the same credential, behind the same authentication middleware as
// the FHIR API (a revoked credential gets 401 at once). A running job
// re-checks its credential every few seconds (Config.Active): once it is
// revoked the job stops, its files are removed and it is recorded as
// failed (status: 403 with an OperationOutcome).
package bulk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

// Canonical URLs of the Bulk Data operations and CapabilityStatement.
const (
	DefinitionExport        = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	DefinitionPatientExport = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	DefinitionGroupExport   = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
	CapabilityBulkData      = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
)

// Config configures the export service.
type Config struct {
	// DB is the process's database handle: the job table lives beside
	// the FHIR store (the SQLite file or the PostgreSQL database).
	DB *database.DB
	// Dir holds the output files (required unless S3 is set).
	Dir string
	// S3, when set, keeps the output files in an S3-compatible bucket
	// instead of Dir.
	S3 *S3
	// BaseURL is the public FHIR base URL (status and file URLs).
	BaseURL string
	// Service runs the searches; Audit records completions (nil: none).
	Service *resource.Service
	Audit   audit.Sink
	// Workers is how many jobs this instance runs at once (0: none; the
	// jobs it accepts are run by other instances).
	Workers int
	// MaxJobsPerClient, Expire, Lease and MaxFileBytes: see
	// config.Export. Zero values take the defaults of Open.
	MaxJobsPerClient int
	Expire, Lease    time.Duration
	MaxFileBytes     int64
	// Rate bounds the resources per second one job writes, to spare the
	// database for other clients (0: no bound).
	Rate int
	// Poll is how often an idle worker looks for work queued by another
	// instance (default: a second, or Lease/3 when shorter).
	Poll time.Duration
	// Active re-checks a running job's credential (the principal that
	// started it): false when it was revoked since, and the job then
	// fails with its files removed. Nil: no re-check.
	Active func(ctx context.Context, p *principal.Principal) (bool, error)
	// CheckEvery is how often a running job re-checks its credential
	// (default: two seconds, or Lease/3 when shorter).
	CheckEvery time.Duration
	Logger     *slog.Logger
}

// Service is the export service: its HTTP handlers (Mount) and the
// workers of this instance (started by Open, stopped by Close).
type Service struct {
	cfg    Config
	svc    *resource.Service
	jobs   *jobs
	out    files  // the output files
	base   string // BaseURL without trailing slash
	prefix string // its path
	log    *slog.Logger
	sink   audit.Sink
	worker string // this instance's worker id (lease owner)
	wake   chan struct{}
	stop   context.CancelFunc
	wg     sync.WaitGroup
	now    func() time.Time
}

// Open opens the job table (applying its migrations), creates the output
// folder and starts the workers and the expiry sweep. The caller must
// Close the Service.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if (cfg.Dir == "" && cfg.S3 == nil) || cfg.Service == nil {
		return nil, errors.New("bulk: Config.Dir (or S3) and Config.Service are required")
	}
	cfg.Workers = max(cfg.Workers, 0)
	if cfg.Expire <= 0 {
		cfg.Expire = 24 * time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = 256 << 20
	}
	if cfg.Poll <= 0 {
		cfg.Poll = min(time.Second, cfg.Lease/3)
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = min(2*time.Second, cfg.Lease/3)
	}
	var fs files = dirFiles{dir: cfg.Dir}
	if cfg.S3 != nil {
		s3, err := openS3(ctx, *cfg.S3)
		if err != nil {
			return nil, err
		}
		fs = s3
	} else if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	j, err := openJobs(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, svc: cfg.Service, jobs: j, out: fs, log: cfg.Logger, sink: cfg.Audit,
		worker: newID()[:16], wake: make(chan struct{}, max(cfg.Workers, 1)), now: time.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.sink == nil {
		s.sink = audit.Discard{}
	}
	s.base = strings.TrimSuffix(cfg.BaseURL, "/")
	if u, err := url.Parse(s.base); err == nil {
		s.prefix = strings.TrimSuffix(u.Path, "/")
	}
	// Export jobs are background work: their searches never hold a
	// connection a request waits for.
	bg, cancel := context.WithCancel(database.Background(context.WithoutCancel(ctx)))
	s.stop = cancel
	for range cfg.Workers {
		s.wg.Go(func() { s.work(bg) })
	}
	s.wg.Go(func() { s.sweep(bg) })
	return s, nil
}

// Close stops the workers (a job being run stays claimed until its lease
// expires, then any instance resumes it).
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
}

// Mount registers the export routes, with ServeMux patterns relative to
// the FHIR base: the kick-off operations through op (the FHIR API's
// routes), the status and file URLs through job (patterns that FHIR's REST
// grammar would conflict with). Both run the FHIR API's authentication and
// policy stages before the handler.
func (s *Service) Mount(op, job func(pattern string, h http.HandlerFunc)) {
	for _, m := range []string{"GET ", "POST "} {
		op(m+"/$export", s.kickOff(levelSystem))
		op(m+"/Patient/$export", s.kickOff(levelPatient))
		op(m+"/Group/{id}/$export", s.kickOff(levelGroup))
	}
	job("GET /$export-status/{job}", s.status)
	job("DELETE /$export-status/{job}", s.cancel)
	job("GET /$export-file/{job}/{file}", s.download)
	// The other methods get 405 with the methods a URL serves, rather
	// than whatever FHIR's REST grammar makes of them (an update of a
	// resource type "$export" that does not exist). HEAD too on a
	// kick-off, which the GET pattern would otherwise take (and which
	// reached the POST parsing: 400 "the body must be a FHIR Parameters
	// resource"): a kick-off starts a job, which a HEAD must not.
	// OPTIONS too: without a pattern of its own, ServeMux's automatic 405
	// would list every method registered here, the refused ones included.
	for _, m := range []string{"HEAD ", "PUT ", "PATCH ", "DELETE ", "OPTIONS "} {
		op(m+"/$export", notAllowed(http.MethodGet, http.MethodPost))
		op(m+"/Patient/$export", notAllowed(http.MethodGet, http.MethodPost))
		op(m+"/Group/{id}/$export", notAllowed(http.MethodGet, http.MethodPost))
	}
	for _, m := range []string{"POST ", "PUT ", "PATCH ", "OPTIONS "} {
		job(m+"/$export-status/{job}", notAllowed(http.MethodGet, http.MethodDelete))
		job(m+"/$export-file/{job}/{file}", notAllowed(http.MethodGet, http.MethodHead))
	}
	job("DELETE /$export-file/{job}/{file}", notAllowed(http.MethodGet, http.MethodHead))
}

// notAllowed answers 405 naming allow, the methods the URL serves.
func notAllowed(allow ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		outcome.Write(w, outcome.MethodNotAllowed(w.Header(), r.Method, allow))
	}
}

// Capability adds the export operations and the Bulk Data
// CapabilityStatement to a generated CapabilityStatement (a
// fhirapi.Config.CapabilityHook).
func Capability(cs map[string]any) {
	inst, _ := cs["instantiates"].([]any)
	cs["instantiates"] = append(inst, CapabilityBulkData)
	rests, _ := cs["rest"].([]any)
	if len(rests) == 0 {
		return
	}
	rest, _ := rests[0].(map[string]any)
	if rest == nil {
		return
	}
	op := func(def string) map[string]any { return map[string]any{"name": "export", "definition": def} }
	ops, _ := rest["operation"].([]any)
	rest["operation"] = append(ops, op(DefinitionExport))
	resources, _ := rest["resource"].([]any)
	for _, r := range resources {
		m, _ := r.(map[string]any)
		var def string
		switch m["type"] {
		case "Patient":
			def = DefinitionPatientExport
		case "Group":
			def = DefinitionGroupExport
		default:
			continue
		}
		ops, _ := m["operation"].([]any)
		m["operation"] = append(ops, op(def))
	}
}

// newID returns 32 random hex digits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jobDir is the folder of a job's files (a name prefix in s.files);
// attempt > 0 names the folder of one attempt inside it.
func jobDir(id string, attempt int64) string {
	d := id
	if attempt > 0 {
		d += "/a" + itoa(attempt)
	}
	return d
}
