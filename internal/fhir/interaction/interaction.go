// Package interaction says what a FHIR request is — its kind, resource
// type, ids and the patients it targets. The FHIR API routes a request
// first (ServeMux patterns) and builds its Interaction once from the
// matched route and its path values (FromRoute); the stages that run
// after routing (rate limiting, audit, search time budget, request log
// and metrics) read it from the request context. Parse classifies what no
// route matched (a refused request, a Bundle entry's URL) by the same
// rules. Outcome is the other direction: what the FHIR service did, for
// the audit trail.
package interaction

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Kind is the kind of a FHIR interaction: a FHIR restful-interaction code
// where there is one.
type Kind string

// The kinds of FHIR interaction.
const (
	Unknown       Kind = ""              // no FHIR interaction has this shape (the handler answers 404 or 405)
	Read          Kind = "read"          // GET Type/id
	VRead         Kind = "vread"         // GET Type/id/_history/vid
	Update        Kind = "update"        // PUT Type/id, PUT Type?criteria (Conditional)
	Patch         Kind = "patch"         // PATCH Type/id, PATCH Type?criteria (Conditional)
	Delete        Kind = "delete"        // DELETE Type/id, DELETE Type?criteria (Conditional)
	Create        Kind = "create"        // POST Type
	SearchType    Kind = "search-type"   // GET Type, POST Type/_search, compartment searches of a type
	SearchSystem  Kind = "search-system" // GET base, POST _search, compartment searches of all types (*)
	HistoryInst   Kind = "history-instance"
	HistoryType   Kind = "history-type"
	HistorySystem Kind = "history-system"
	Batch         Kind = "batch"        // POST base: a batch or transaction Bundle (the body says which; see Outcome.BundleType)
	Operation     Kind = "operation"    // a $operation (Patient/{id}/$everything among them)
	Capabilities  Kind = "capabilities" // GET metadata
)

// MaxPatients bounds how many distinct patients one request is taken to
// target (a search may name several with commas).
const MaxPatients = 10

// Interaction is what a FHIR request is.
type Interaction struct {
	// FHIR is false for requests outside the FHIR base path, and for the
	// authorization server's paths under it (auth/, .well-known/).
	FHIR bool
	Kind Kind
	// Method is the HTTP method.
	Method string
	// Type is the resource type the interaction is about: the searched
	// type of a compartment search, "" for system-level interactions.
	Type string
	// ID and VID are the resource id and version of the path.
	ID, VID string
	// Operation is the $operation name ("$everything").
	Operation string
	// Compartment and CompartmentID name the compartment of a compartment
	// search (Patient, p1).
	Compartment, CompartmentID string
	// Conditional marks update, patch and delete by criteria (Type?…).
	Conditional bool
	// Pattern is the ServeMux pattern of the matched route
	// ("GET /fhir/{type}/{id}"), "" when no route matched.
	Pattern string
	// Params are the query parameters and, once ReadForm ran, those of a
	// form-encoded POST _search body.
	Params url.Values
	// Patients are the ids of the patients the request targets, at most
	// MaxPatients, in order of appearance (see targetPatients).
	Patients []string

	formRead bool
	// trailing marks an unrouted path with segments after its $operation.
	trailing bool
}

// Search reports whether the interaction is a search (type, system or
// compartment) or Patient $everything, which returns resources as a
// search does.
func (ix *Interaction) Search() bool {
	return ix.Kind == SearchType || ix.Kind == SearchSystem || ix.Everything()
}

// History reports whether the interaction is a history interaction.
func (ix *Interaction) History() bool {
	return ix.Kind == HistoryInst || ix.Kind == HistoryType || ix.Kind == HistorySystem
}

// Everything reports whether the interaction is Patient/{id}/$everything.
func (ix *Interaction) Everything() bool {
	return ix.Kind == Operation && ix.Operation == "$everything" && ix.Type == "Patient" && ix.ID != "" && !ix.trailing
}

// Write reports whether the interaction may change data: creates,
// updates, patches, deletes, Bundles, operations other than GET/HEAD and
// $everything, and unknown shapes sent with a method other than GET or
// HEAD.
func (ix *Interaction) Write() bool {
	switch ix.Kind {
	case Create, Update, Patch, Delete, Batch:
		return true
	case Operation:
		return !ix.Everything() && !safe(ix.Method)
	case Unknown:
		return !safe(ix.Method)
	}
	return false
}

func safe(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// Parse says what r is when no route matched it (a path the FHIR API
// refuses, a Bundle entry's URL): by the shape of its path below base,
// the path of the FHIR base URL ("/fhir", or "" at the root). Form bodies
// are not read (see ReadForm).
func Parse(base string, r *http.Request) *Interaction {
	ix := &Interaction{Method: r.Method}
	base = strings.TrimSuffix(base, "/")
	rest, ok := strings.CutPrefix(r.URL.Path, base)
	if !ok || (rest != "" && rest[0] != '/') {
		return ix
	}
	var segs []string
	for s := range strings.SplitSeq(rest, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	if len(segs) > 0 && (segs[0] == "auth" || segs[0] == ".well-known") {
		return ix
	}
	ix.FHIR = true
	ix.Params = r.URL.Query()
	ix.classify(segs)
	ix.Patients = targetPatients(ix, ix.Params)
	return ix
}

// FromRoute is the Interaction of r as its route serves it: kind is the
// route's, and the path values of its pattern (r.Pattern) name the rest —
// type, id, vid, and comp and cid for a compartment search (a type of "*"
// searches all types). An operation route names its $operation in the
// pattern. A path value that is a reserved name ("_x", "$op") names no
// type or id: such a request is classified as no route matched it (see
// Parse), base being the path of the FHIR base URL.
func FromRoute(base string, kind Kind, r *http.Request) *Interaction {
	typ, id, vid, comp, cid := r.PathValue("type"), r.PathValue("id"), r.PathValue("vid"), r.PathValue("comp"), r.PathValue("cid")
	for _, v := range [...]string{typ, id, vid, comp, cid} {
		if v != "" && !plain(v) {
			return Parse(base, r)
		}
	}
	if typ == "" && id != "" {
		// A literal type before {id} ("/Patient/{id}/$everything").
		if j := strings.Index(r.Pattern, "/{id}"); j >= 0 {
			typ = r.Pattern[strings.LastIndexByte(r.Pattern[:j], '/')+1 : j]
		}
	}
	ix := &Interaction{FHIR: true, Kind: kind, Method: r.Method, Type: typ, ID: id, VID: vid, Pattern: r.Pattern}
	if comp != "" {
		ix.Compartment, ix.CompartmentID = comp, cid
		if typ == "*" {
			ix.Kind, ix.Type = SearchSystem, ""
		}
	}
	if i := strings.LastIndex(r.Pattern, "/$"); i >= 0 {
		ix.Operation = r.Pattern[i+1:]
		if j := strings.IndexByte(ix.Operation, '/'); j >= 0 { // "$export-status/{job}"
			ix.Operation = ix.Operation[:j]
		}
	}
	switch kind {
	case Update, Patch, Delete:
		ix.Conditional = id == ""
	}
	ix.Params = r.URL.Query()
	ix.Patients = targetPatients(ix, ix.Params)
	return ix
}

func plain(s string) bool { return !strings.HasPrefix(s, "_") && !strings.HasPrefix(s, "$") }

// classify sets Kind, Type, ID, VID, Operation and the compartment from
// the method and the path segments below the base.
func (ix *Interaction) classify(segs []string) {
	method := ix.Method
	get := safe(method)
	if len(segs) > 0 && plain(segs[0]) {
		ix.Type = segs[0]
	}
	if len(segs) > 1 && plain(segs[1]) {
		ix.ID = segs[1]
	}
	for i, s := range segs {
		if strings.HasPrefix(s, "$") {
			ix.Kind, ix.Operation, ix.trailing = Operation, s, i < len(segs)-1
			return
		}
	}
	byMethod := func() Kind {
		switch method {
		case http.MethodGet, http.MethodHead:
			return Read
		case http.MethodPut:
			return Update
		case http.MethodPatch:
			return Patch
		case http.MethodDelete:
			return Delete
		}
		return Unknown
	}
	switch len(segs) {
	case 0:
		switch {
		case get:
			ix.Kind = SearchSystem
		case method == http.MethodPost:
			ix.Kind = Batch
		}
	case 1:
		switch {
		case segs[0] == "_history":
			ix.Kind = HistorySystem
		case segs[0] == "_search":
			ix.Kind = SearchSystem
		case segs[0] == "metadata" && get:
			ix.Kind, ix.Type = Capabilities, ""
		case ix.Type == "":
		case get:
			ix.Kind = SearchType
		case method == http.MethodPost:
			ix.Kind = Create
		default:
			ix.Kind = byMethod()
			ix.Conditional = ix.Kind != Unknown
		}
	case 2:
		switch {
		case segs[1] == "_history":
			ix.Kind = HistoryType
		case segs[1] == "_search":
			ix.Kind = SearchType
		case ix.ID != "":
			ix.Kind = byMethod()
		}
	case 3:
		switch {
		case segs[2] == "_history":
			ix.Kind = HistoryInst
		case get:
			ix.compartment(segs)
		}
	case 4:
		switch {
		case segs[2] == "_history":
			ix.Kind, ix.VID = VRead, segs[3]
		case segs[3] == "_search":
			ix.compartment(segs)
		}
	}
}

// compartment makes ix the search of segs[2] in the compartment
// segs[0]/segs[1].
func (ix *Interaction) compartment(segs []string) {
	ix.Compartment, ix.CompartmentID = segs[0], segs[1]
	ix.Kind, ix.Type, ix.ID = SearchType, segs[2], ""
	if ix.Type == "*" {
		ix.Kind, ix.Type = SearchSystem, ""
	}
}

// ReadForm adds the parameters of a form-encoded POST search body (up to
// limit bytes; a larger body is left to the handler, which refuses it) to
// Params and Patients, and puts the body back for the handler. It reads
// the body once per request, whichever stage calls it first.
func (ix *Interaction) ReadForm(r *http.Request, limit int64) {
	if ix.formRead || !ix.FHIR || r.Method != http.MethodPost || !ix.Search() || ix.Everything() {
		return
	}
	ix.formRead = true
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return
	}
	body, whole := PeekBody(r, limit)
	if !whole {
		return
	}
	form, _ := url.ParseQuery(string(body))
	if len(form) == 0 {
		return
	}
	if ix.Params == nil {
		ix.Params = url.Values{}
	}
	for k, v := range form {
		ix.Params[k] = append(ix.Params[k], v...)
	}
	ix.Patients = targetPatients(ix, ix.Params)
}

// PeekBody reads up to limit bytes of r's body and puts them back in
// front of the rest, so the handler reads the body unchanged. It returns
// the bytes read and whether that was the whole body.
func PeekBody(r *http.Request, limit int64) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	whole := err == nil && int64(len(b)) <= limit
	rest := r.Body
	r.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(b), rest), Closer: rest}
	if err != nil {
		return nil, false
	}
	return b, whole
}

type readCloser struct {
	io.Reader
	io.Closer
}

// targetPatients returns the ids of the patients ix targets, one rule for
// every stage: the Patient/{id} of the path (instance interactions,
// compartments, $everything), _id of a Patient search, and the search
// parameters whose value names a patient — patient (an id or a Patient
// reference), subject and beneficiary (a Patient reference), and any of
// them with the :Patient modifier (an id or a reference). Comma-separated
// values name several patients. Other modifiers (:missing, :not,
// :identifier…) and chains name no patient. At most MaxPatients distinct
// valid ids, in order of appearance.
func targetPatients(ix *Interaction, params url.Values) []string {
	var ids []string
	add := func(id string) {
		if !ValidID(id) || slices.Contains(ids, id) || len(ids) >= MaxPatients {
			return
		}
		ids = append(ids, id)
	}
	switch {
	case ix.Compartment == "Patient":
		add(ix.CompartmentID)
	case ix.Type == "Patient" && ix.ID != "":
		add(ix.ID)
	}
	if ix.Type == "Patient" && ix.Compartment == "" {
		for _, v := range params["_id"] {
			for id := range strings.SplitSeq(v, ",") {
				add(id)
			}
		}
	}
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names) // a stable order: params is a map
	for _, name := range names {
		base, mod, hasMod := strings.Cut(name, ":")
		if base != "patient" && base != "subject" && base != "beneficiary" || hasMod && mod != "Patient" {
			continue
		}
		bare := base == "patient" || hasMod
		for _, v := range params[name] {
			for ref := range strings.SplitSeq(v, ",") {
				if id, ok := patientRef(ref, bare); ok {
					add(id)
				}
			}
		}
	}
	return ids
}

// patientRef extracts the id of "Patient/ID", "…/Patient/ID" (an
// absolute reference) or, when bare is true, "ID".
func patientRef(ref string, bare bool) (string, bool) {
	ref = strings.TrimSpace(ref)
	if i := strings.LastIndex(ref, "Patient/"); i >= 0 && (i == 0 || ref[i-1] == '/') {
		id := ref[i+len("Patient/"):]
		if j := strings.IndexByte(id, '/'); j >= 0 { // Patient/ID/_history/V
			id = id[:j]
		}
		return id, true
	}
	if bare && !strings.ContainsAny(ref, "/:|") {
		return ref, true
	}
	return "", false
}

// ValidID reports whether s is a possible FHIR id: [A-Za-z0-9\-\.]{1,64}.
func ValidID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

type ctxKey struct{}

// NewContext returns ctx carrying ix.
func NewContext(ctx context.Context, ix *Interaction) context.Context {
	return context.WithValue(ctx, ctxKey{}, ix)
}

// FromContext returns the Interaction in ctx, nil when there is none.
func FromContext(ctx context.Context) *Interaction {
	ix, _ := ctx.Value(ctxKey{}).(*Interaction)
	return ix
}
