// Package resource is the FHIR domain service of Lapis: every RESTful
// interaction (create, read, vread, update, patch, delete, history, search,
// batch and transaction, and their conditional forms) as a method,
// independent of HTTP.
//
// The Service decodes and validates resource JSON, assigns ids, versions and
// meta.lastUpdated, extracts the search index, and writes through a
// store.Store in one store transaction per interaction (one for a whole
// transaction Bundle). Every client-facing failure is an *outcome.Error
// carrying the HTTP status and OperationOutcome issues; store errors never
// reach clients (they become a generic 500 and an internal log line).
//
// Access control plugs in through the Access interface; see its
// documentation.
package resource

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/fhirid"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
)

// Validator checks a resource's structure; *validate.Validator implements it.
type Validator interface {
	Validate(resource map[string]any) []validate.Issue
}

// ContextValidator is a Validator whose checks may depend on the request
// (a write may ask for stricter profile validation; *profile.Checker
// implements it). The service calls ValidateContext, with the write's
// context, instead of Validate when its Validator has it.
type ContextValidator interface {
	Validator
	ValidateContext(ctx context.Context, resource map[string]any) []validate.Issue
}

// Indexer extracts the search index of a resource; *extract.Extractor
// implements it.
type Indexer interface {
	Extract(resource map[string]any) (store.Index, error)
}

// SearchParser turns search parameters into store queries; *search.Parser
// implements it.
type SearchParser interface {
	Parse(resourceType string, params url.Values, strict bool) (*search.Request, error)
	ParseConditional(resourceType, rawQuery string) (*search.Request, error)
}

// Config holds the collaborators of a Service.
type Config struct {
	// Store persists resources (required).
	Store store.Store
	// Registry holds the FHIR R4 definitions (required).
	Registry *definitions.Registry
	// Validator, Indexer and Parser are required.
	Validator Validator
	Indexer   Indexer
	Parser    SearchParser
	// BaseURL is the FHIR base URL ("http://host/fhir", no trailing slash),
	// used for fullUrl and paging links (required).
	BaseURL string
	// Access is the access-control seam; nil means AllowAll.
	Access Access
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now (tests override it).
	Now func() time.Time
	// MaxBundleEntries bounds the entries of a batch or transaction: a
	// Bundle with more is refused with 413 before any entry runs (0 means
	// no limit beyond the HTTP body size limit).
	MaxBundleEntries int
	// MaxResponseBytes bounds the size of every Bundle the service renders
	// (0 means no limit), so that no request makes the server hold a
	// response that grows with an input (batch entries, _count, _include,
	// history pages):
	//   - a search or history page over it is refused with 413
	//     (too-costly);
	//   - a transaction whose response would exceed it is refused with
	//     413 and writes nothing;
	//   - in a batch, a GET entry whose result does not fit in what is
	//     left gets a 413 entry outcome and the later GET entries do not
	//     run; write entries still run (they are independent), but a
	//     representation that does not fit is left out with a warning.
	MaxResponseBytes int64
	// DefaultHistoryCount and MaxHistoryCount bound history pages (0 means
	// 50 and 1000).
	DefaultHistoryCount, MaxHistoryCount int
	// HistoryTotalLimit bounds the count behind a type or system history
	// Bundle's total (0 means 10,000): past it the Bundle has no total
	// (R4 Bundle.total is optional), and the count costs no more however
	// many versions the server holds. _count=0 (the total alone) counts all.
	HistoryTotalLimit int
}

// Service implements the FHIR interactions. It is safe for concurrent use.
type Service struct {
	st         store.Store
	reg        *definitions.Registry
	val        Validator
	idx        Indexer
	parser     SearchParser
	base       string
	access     Access
	log        *slog.Logger
	now        func() time.Time
	maxEntries int
	maxResp    int64 // MaxResponseBytes; math.MaxInt64 when unlimited
	defHistory int
	maxHistory int
	// histTotal is HistoryTotalLimit.
	histTotal int
	// compParams are the Patient compartment parameters per type (R4
	// CompartmentDefinition/patient).
	compParams map[string][]string
	// recordParams are compParams and the patient-linked types' parameters
	// (Registry.PatientRecord): what makes a resource one patient's data.
	recordParams map[string][]string
	// recordTypes are recordParams' types, sorted.
	recordTypes []string
}

// New returns a Service. It fails if a required collaborator is missing.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Validator == nil || cfg.Indexer == nil || cfg.Parser == nil {
		return nil, errors.New("resource: Store, Registry, Validator, Indexer and Parser are required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("resource: BaseURL is required")
	}
	s := &Service{
		st: cfg.Store, reg: cfg.Registry, val: cfg.Validator, idx: cfg.Indexer, parser: cfg.Parser,
		base: strings.TrimSuffix(cfg.BaseURL, "/"), access: cfg.Access, log: cfg.Logger, now: cfg.Now,
		maxEntries: cfg.MaxBundleEntries, defHistory: cfg.DefaultHistoryCount, maxHistory: cfg.MaxHistoryCount,
		histTotal: cfg.HistoryTotalLimit,
	}
	if s.histTotal <= 0 {
		s.histTotal = 10000
	}
	if s.access == nil {
		s.access = AllowAll{}
	}
	s.compParams = map[string][]string{}
	s.recordParams = map[string][]string{}
	for _, t := range s.reg.ResourceTypes() {
		if ps := s.reg.PatientCompartment(t); len(ps) > 0 {
			s.compParams[t] = ps
		}
		if ps := s.reg.PatientRecord(t); len(ps) > 0 {
			s.recordParams[t] = ps
			s.recordTypes = append(s.recordTypes, t)
		}
	}
	sort.Strings(s.recordTypes)
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.maxResp = cfg.MaxResponseBytes
	if s.maxResp <= 0 {
		s.maxResp = math.MaxInt64
	}
	if s.defHistory <= 0 {
		s.defHistory = 50
	}
	if s.maxHistory <= 0 {
		s.maxHistory = 1000
	}
	if s.defHistory > s.maxHistory {
		s.defHistory = s.maxHistory
	}
	return s, nil
}

// BaseURL returns the FHIR base URL the service renders links with.
func (s *Service) BaseURL() string { return s.base }

// Analyze refreshes the query planner's statistics when the store can
// (store.Analyzer), after a bulk load.
func (s *Service) Analyze(ctx context.Context) error {
	if an, ok := s.st.(store.Analyzer); ok {
		return an.Analyze(ctx)
	}
	return nil
}

// Registry returns the definitions registry.
func (s *Service) Registry() *definitions.Registry { return s.reg }

// Result is the outcome of a successful interaction.
type Result struct {
	// Status is the HTTP status: 200, 201 or 204.
	Status int
	// Resource is the resource version read or written (for a delete, the
	// delete marker; nil when a delete found nothing to delete, and for
	// Bundle results).
	Resource *store.Resource
	// Body is the response payload: the resource JSON (Resource.Body), a
	// Bundle, or nil (delete).
	Body []byte
	// Issues are informational/warning issues about a successful
	// interaction (e.g. "nothing to delete"), for Prefer:
	// return=OperationOutcome.
	Issues []outcome.Issue
	// Returned counts the resources a Bundle result returns as read (see
	// interaction.Outcome.Returned).
	Returned int
	// Written are the versions a batch or transaction wrote.
	Written []*store.Resource
	// Unchanged is set when an update or patch left the content as it
	// was: no version was written and Resource is the current one.
	Unchanged bool
}

// ValidID reports whether s is a valid FHIR resource id. "." and "..",
// which the id grammar allows, are refused: as URL path segments they are
// dot-segments that address a different resource (RFC 3986 §5.2.4).
// The grammar ([A-Za-z0-9\-.]{1,64}) is checked by fhirid.Valid: a
// byte loop instead of a regular expression on every request.
func ValidID(s string) bool { return fhirid.Valid(s) && s != "." && s != ".." }

// ParseVersion parses a version id as this server writes them: a positive
// decimal integer without sign or leading zeros. ok is false otherwise.
func ParseVersion(s string) (int64, bool) {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// NewID returns a new random server-assigned id: a lowercase RFC 4122
// version 4 UUID (36 characters, a valid FHIR id).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ETag renders a version as a weak ETag: W/"3".
func ETag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// ParseETag parses a version from an ETag / If-Match value: W/"3", "3"
// (or a bare 3). It returns an error for anything else.
func ParseETag(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "W/")
	t = strings.TrimPrefix(t, "w/")
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		t = t[1 : len(t)-1]
	}
	v, ok := ParseVersion(t)
	if !ok {
		return 0, fmt.Errorf("invalid version ETag %q (expected W/\"<version>\")", s)
	}
	return v, nil
}

// ---------------------------------------------------------------------------
// JSON

// DecodeJSON decodes a JSON object with exact numbers (json.Number) and
// rejects trailing data. A leading UTF-8 byte order mark is ignored. Beyond
// JSON syntax it rejects what encoding/json would silently accept or
// repair: invalid UTF-8, duplicate object members, escaped NUL characters,
// unpaired surrogate escapes, and nesting deeper than MaxJSONDepth. Errors
// are 400 outcomes naming the position.
func DecodeJSON(body []byte) (map[string]any, error) {
	body = stripBOM(body)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, outcome.New(http.StatusBadRequest, "structure", "the request body is empty; a JSON resource was expected")
	}
	var v any
	err := checkJSON(body, func() error {
		var err error
		v, err = decodeValue(body)
		return err
	}, "the body")
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, outcome.New(http.StatusBadRequest, "structure", "the body must be a JSON object (a FHIR resource), not %s", jsonKind(v))
	}
	return m, nil
}

// decodeStored decodes a stored resource body (written by this server, so
// already checked).
func decodeStored(body []byte) (map[string]any, error) {
	v, err := decodeValue(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("stored body is %s, not an object", jsonKind(v))
	}
	return m, nil
}

// decodeValue decodes one JSON value with exact numbers and no trailing
// data.
func decodeValue(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, outcome.New(http.StatusBadRequest, "structure", "the body is not valid JSON: %s", jsonErrorText(body, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := lineCol(body, int(dec.InputOffset()))
		return nil, outcome.New(http.StatusBadRequest, "structure", "the body is not valid JSON: unexpected data after the top-level value at line %d, column %d", line, col)
	}
	return v, nil
}

// jsonKind names the JSON type of a decoded value for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	}
	return "an unexpected value"
}

// jsonErrorText describes a decoding error with its line and column.
func jsonErrorText(body []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		// Offset counts the bytes read up to and including the offending one.
		line, col := lineCol(body, int(se.Offset)-1)
		return fmt.Sprintf("%s at line %d, column %d (byte offset %d)", se.Error(), line, col, se.Offset-1)
	case errors.As(err, &te):
		line, col := lineCol(body, int(te.Offset))
		return fmt.Sprintf("unexpected %s at line %d, column %d", te.Value, line, col)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		line, col := lineCol(body, len(body))
		return fmt.Sprintf("unexpected end of JSON input at line %d, column %d", line, col)
	default:
		return "malformed JSON"
	}
}

func lineCol(b []byte, off int) (int, int) {
	if off > len(b) {
		off = len(b)
	}
	if off < 0 {
		off = 0
	}
	line, col := 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// MarshalResource renders a resource map as compact JSON with
// "resourceType", "id" and "meta" first and the other members in sorted
// order, without HTML escaping.
func MarshalResource(m map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	write := func(k string, v any) error {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		return encodeValue(&buf, v)
	}
	lead := []string{"resourceType", "id", "meta"}
	for _, k := range lead {
		if v, ok := m[k]; ok {
			if err := write(k, v); err != nil {
				return nil, err
			}
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "resourceType" && k != "id" && k != "meta" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := write(k, m[k]); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func encodeValue(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	// Encoder appends a newline.
	buf.Truncate(buf.Len() - 1)
	return nil
}

// marshalJSON encodes any value without HTML escaping.
func marshalJSON(v any) []byte {
	var buf bytes.Buffer
	if err := encodeValue(&buf, v); err != nil {
		return []byte("null")
	}
	return buf.Bytes()
}

// ---------------------------------------------------------------------------
// Errors

// internal converts an error into the error returned to callers: outcome
// errors pass through, store errors are mapped, anything else is logged and
// becomes a generic 500.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *outcome.Error
	if errors.As(err, &oe) {
		return oe
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return outcome.New(http.StatusConflict, "conflict", "the resource was modified concurrently; retry the request")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errHidden):
		return outcome.NotFound("resource not found")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return outcome.New(http.StatusServiceUnavailable, "timeout", "the request was cancelled or timed out")
	}
	s.log.ErrorContext(ctx, "internal error", "op", op, "err", err.Error())
	return InternalError()
}

// InternalError is the generic 500 outcome shown to clients.
func InternalError() *outcome.Error {
	return outcome.New(http.StatusInternalServerError, "exception", "an internal error occurred; the server log has details")
}

func preconditionFailed(format string, args ...any) *outcome.Error {
	return outcome.New(http.StatusPreconditionFailed, "conflict", format, args...)
}

func gone(typ, id string) *outcome.Error {
	return outcome.New(http.StatusGone, "deleted", "%s/%s has been deleted", typ, id)
}

func notFound(typ, id string) *outcome.Error {
	return outcome.NotFound("%s/%s is not known", typ, id)
}

// checkType validates a resource type from a URL.
func (s *Service) checkType(typ string) error {
	if !s.reg.IsResourceType(typ) {
		return outcome.NotFound("unknown resource type %q", typ)
	}
	return nil
}

func checkID(id string) error {
	if !ValidID(id) {
		return outcome.BadRequest("invalid resource id %q (expected 1-64 characters of A-Z, a-z, 0-9, '-' and '.')", id)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Writing versions

// timestamp returns the lastUpdated for a new version: now at millisecond
// precision, never before the previous version's.
func (s *Service) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Millisecond)
}

// decodeForType decodes a request body and checks its resourceType.
func (s *Service) decodeForType(body []byte, typ string) (map[string]any, error) {
	res, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	if err := s.checkBodyType(res, typ); err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) checkBodyType(res map[string]any, typ string) error {
	rt, ok := res["resourceType"].(string)
	if !ok || rt == "" {
		return outcome.New(http.StatusBadRequest, "required", "the resource has no resourceType").At("resourceType")
	}
	if typ != "" && rt != typ {
		return outcome.New(http.StatusBadRequest, "invalid", "the resource type %q does not match the URL type %q", rt, typ).At("resourceType")
	}
	if !s.reg.IsResourceType(rt) {
		return outcome.New(http.StatusBadRequest, "not-supported", "unknown resource type %q", rt).At("resourceType")
	}
	return nil
}

// writeVersion stamps res as the next version of typ/id after cur (nil if
// the resource does not exist), validates and indexes it, and stores it.
func (s *Service) writeVersion(ctx context.Context, tx store.Tx, typ, id string, cur *store.Resource, res map[string]any, method string, now time.Time) (*store.Resource, error) {
	w, err := s.prepareVersion(ctx, typ, id, cur, res, method, now)
	if err != nil {
		return nil, err
	}
	return s.putVersion(ctx, tx, w)
}

// prepareVersion turns res into the next version after cur (nil for a new
// resource): it sets id and meta, validates, extracts the search index and
// renders the body. It touches no database, so callers may run it
// concurrently for independent resources.
func (s *Service) prepareVersion(ctx context.Context, typ, id string, cur *store.Resource, res map[string]any, method string, now time.Time) (*store.Write, error) {
	version := int64(1)
	if cur != nil {
		version = cur.VersionID + 1
		if cur.LastUpdated.After(now) {
			now = cur.LastUpdated
		}
	}
	res["resourceType"] = typ
	res["id"] = id
	meta, ok := res["meta"].(map[string]any)
	if !ok {
		if _, present := res["meta"]; present {
			return nil, outcome.New(http.StatusBadRequest, "structure", "meta must be a JSON object").At(typ + ".meta")
		}
		meta = map[string]any{}
		res["meta"] = meta
	}
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = fhirtime.FormatInstant(now)
	if err := s.validate(ctx, res); err != nil {
		return nil, err
	}
	if err := storableBundle(typ, res); err != nil {
		return nil, err
	}
	index, err := s.idx.Extract(res)
	if err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) {
			return nil, oe
		}
		if errors.Is(err, store.ErrTooManyIndexRows) {
			return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly",
				"the resource has more searchable values than one resource may have (%d index rows); split it into several resources", store.MaxIndexRows)
		}
		return nil, outcome.New(http.StatusUnprocessableEntity, "processing", "the resource could not be indexed: %s", err.Error())
	}
	body, err := MarshalResource(res)
	if err != nil {
		return nil, fmt.Errorf("marshal resource: %w", err)
	}
	return &store.Write{Type: typ, ID: id, Version: version, LastUpdated: now, Method: method, Body: body, Index: index}, nil
}

// storableBundle refuses to store a Bundle of type transaction or batch: it
// is a request for the base URL (R4 http.html#transaction), and stored as
// a resource none of its entries would be written.
func storableBundle(typ string, res map[string]any) error {
	if typ != "Bundle" {
		return nil
	}
	switch t, _ := res["type"].(string); t {
	case "transaction", "batch":
		return outcome.New(http.StatusBadRequest, "not-supported",
			"a Bundle of type %s is not stored as a resource: POST it to the base URL to process its entries", t).At("Bundle.type")
	}
	return nil
}

// putVersion stores a prepared version and checks it stays visible to the
// caller.
func (s *Service) putVersion(ctx context.Context, tx store.Tx, w *store.Write) (*store.Resource, error) {
	if err := tx.Put(ctx, w); err != nil {
		return nil, err
	}
	if err := s.checkWrittenVisible(ctx, tx, w.Type, w.ID); err != nil {
		return nil, err
	}
	return &store.Resource{Type: w.Type, ID: w.ID, VersionID: w.Version, LastUpdated: w.LastUpdated, Body: w.Body, Method: w.Method}, nil
}

// writeDelete stores a delete marker after cur.
func (s *Service) writeDelete(ctx context.Context, tx store.Tx, cur *store.Resource, now time.Time) (*store.Resource, error) {
	if cur.LastUpdated.After(now) {
		now = cur.LastUpdated
	}
	w := &store.Write{Type: cur.Type, ID: cur.ID, Version: cur.VersionID + 1, LastUpdated: now, Deleted: true, Method: http.MethodDelete}
	if err := tx.Put(ctx, w); err != nil {
		return nil, err
	}
	return &store.Resource{Type: cur.Type, ID: cur.ID, VersionID: w.Version, LastUpdated: now, Deleted: true, Method: http.MethodDelete}, nil
}

// validate runs validation (with the write's context when the Validator
// takes it); error-severity issues become a 400.
func (s *Service) validate(ctx context.Context, res map[string]any) error {
	var issues []validate.Issue
	if cv, ok := s.val.(ContextValidator); ok {
		issues = cv.ValidateContext(ctx, res)
	} else {
		issues = s.val.Validate(res)
	}
	var out []outcome.Issue
	for _, is := range issues {
		sev := is.Severity
		if sev == "" {
			sev = "error"
		}
		if sev != "error" && sev != "fatal" {
			continue
		}
		code := is.Code
		if code == "" {
			code = "invalid"
		}
		oi := outcome.Issue{Severity: sev, Code: code, Diagnostics: is.Message}
		if is.Expression != "" {
			oi.Expression = []string{is.Expression}
		}
		out = append(out, oi)
	}
	if len(out) == 0 {
		return nil
	}
	return &outcome.Error{Status: http.StatusBadRequest, Issues: out}
}

// ---------------------------------------------------------------------------
// Access helpers

type reader interface {
	Read(ctx context.Context, typ, id string) (*store.Resource, error)
	Search(ctx context.Context, q *store.Query) (*store.SearchResult, error)
}

// filter returns the access filter for reads, or for writes when write
// is set.
func (s *Service) filter(ctx context.Context, write bool) *store.AccessFilter {
	if write {
		if wf, ok := s.access.(WriteFilterer); ok {
			return wf.WriteFilter(ctx)
		}
	}
	return s.access.Filter(ctx)
}

// visible reports whether typ/id is inside the access filter f.
func (s *Service) visible(ctx context.Context, r reader, typ, id string, f *store.AccessFilter) (bool, error) {
	if f == nil || unrestricted(f, typ) {
		return true, nil
	}
	idv := id
	q := &store.Query{
		Type:   typ,
		Where:  []store.Clause{{Any: []store.Predicate{{Param: "_id", ID: &idv}}}},
		Count:  1,
		Total:  store.TotalNone,
		Filter: f,
	}
	res, err := r.Search(ctx, q)
	if err != nil {
		return false, err
	}
	return len(res.Matches) > 0, nil
}

// unrestricted reports whether f lets every resource of typ through (a
// filter that only hides other types), so no visibility query is needed.
func unrestricted(f *store.AccessFilter, typ string) bool {
	if f.Types == nil {
		return f.Compartment == nil
	}
	rs := f.RulesFor(typ)
	return len(rs) == 1 && !rs[0].Compartment && len(rs[0].Where) == 0
}

// checkWrittenVisible rolls back a write whose result is outside the
// access filter.
func (s *Service) checkWrittenVisible(ctx context.Context, tx store.Tx, typ, id string) error {
	f := s.filter(ctx, true)
	if f == nil {
		return nil
	}
	ok, err := s.visible(ctx, tx, typ, id, f)
	if err != nil {
		return err
	}
	if !ok {
		httpx.SetRefusal(ctx, httpx.CauseCompartment)
		return outcome.New(http.StatusForbidden, "forbidden", "the resource would be outside the data you are allowed to write")
	}
	return nil
}

// current reads the current version of typ/id inside tx. It returns nil
// (and no error) when the resource does not exist, and errHidden when it is
// outside the access filter (the write filter when write is set).
func (s *Service) current(ctx context.Context, r reader, typ, id string, write bool) (*store.Resource, error) {
	cur, err := r.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if f := s.filter(ctx, write); f != nil {
		if cur.Deleted {
			if unrestricted(f, typ) {
				return cur, nil // the type is visible whole: 410, not 404
			}
			return nil, errHidden
		}
		ok, err := s.visible(ctx, r, typ, id, f)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errHidden
		}
	}
	return cur, nil
}

// errHidden marks a resource that exists but is outside the access filter.
var errHidden = errors.New("resource outside the access filter")

// writeHidden is the answer to a write of typ/id, which exists outside the
// write filter: 403 when the caller may read it (a patient's scopes read
// a Practitioner or an Organization whole but never change it), else 404,
// as a read would answer.
func (s *Service) writeHidden(ctx context.Context, r reader, typ, id string) error {
	if cur, err := s.current(ctx, r, typ, id, false); err == nil && cur != nil && !cur.Deleted {
		httpx.SetRefusal(ctx, httpx.CauseCompartment)
		return outcome.New(http.StatusForbidden, "forbidden", "%s/%s may be read but not changed with your access", typ, id)
	}
	return notFound(typ, id)
}

// update runs fn in a store transaction, retrying on ErrConflict when retry
// is set (read-modify-write without a client-supplied version).
func (s *Service) update(ctx context.Context, retry bool, fn func(tx store.Tx) error) error {
	attempts := 1
	if retry {
		attempts = 4
	}
	var err error
	for i := 0; i < attempts; i++ {
		err = s.st.Update(ctx, fn)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return err
}
