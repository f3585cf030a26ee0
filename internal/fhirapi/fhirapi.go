// Package fhirapi is the FHIR R4 RESTful HTTP API of Lapis (R4 http.html):
// routing on net/http ServeMux patterns, content negotiation (JSON only),
// request limits, conditional headers (If-Match, If-None-Match,
// If-Modified-Since, If-None-Exist), Prefer handling, _summary/_elements,
// _pretty, OperationOutcome errors for every failure, and the generated
// CapabilityStatement. The FHIR semantics live in package resource; this
// package only translates HTTP to service calls and results to responses.
//
// Routes (relative to the path of Config.BaseURL, e.g. /fhir):
//
//	GET    /metadata                       capabilities (no authentication, CORS *)
//	GET    /servicebaseurls                service base URL Bundle (Config.ServiceBaseURLs; no authentication, CORS *)
//	POST   /                               batch / transaction
//	GET    /  ?_type=...                   system search; POST /_search likewise
//	GET    /_history                       system history
//	GET    /{type}                         search (POST /{type}/_search with a form body)
//	POST   /{type}                         create (If-None-Exist: conditional create)
//	PUT    /{type}?criteria                conditional update
//	PATCH  /{type}?criteria                conditional patch
//	DELETE /{type}?criteria                conditional delete
//	GET    /{type}/_history                type history
//	GET    /{type}/{id}                    read
//	PUT    /{type}/{id}                    update (create with the client id)
//	PATCH  /{type}/{id}                    JSON Patch
//	DELETE /{type}/{id}                    delete
//	GET    /{type}/{id}/_history           instance history
//	GET    /{type}/{id}/_history/{vid}     vread
//	GET    /Patient/{id}/{type}            compartment search (POST …/{type}/_search likewise; {type} may be *)
//	GET    /Patient/{id}/$everything       Patient $everything (POST with a Parameters body likewise)
//	GET    /Patient/$everything            400: the type-level form is not supported
//
// A request is routed first: the ServeMux matches its pattern, the
// interaction (package interaction) is built once from the matched route
// and its path values and put in the request context, and only then do
// the stages of Config.Middleware run (authentication, gateway policies,
// rate limits, audit — all of them can read r.Pattern and the
// interaction), then the route's handler. Every route except /metadata
// and /servicebaseurls (public documents) runs the stages; a request no route matches runs them too before it is
// answered 404 or 405. Adding an operation is one Handle call.
package fhirapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/fhir/profile"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/resource"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 16 << 20

// MaxURLBytes bounds the request target (path and query) of a FHIR
// request: a longer one is a 414 OperationOutcome pointing to POST
// [type]/_search. It is three quarters of the listener's header limit
// (server.DefaultMaxHeaderBytes, 64 KiB), leaving the rest to the other
// headers, so a URL between the two is answered by Lapis; beyond that
// limit net/http answers 431 in plain text before any handler runs.
const MaxURLBytes = 48 << 10

// Config configures the HTTP API.
type Config struct {
	// BaseURL is the public FHIR base URL ("http://127.0.0.1:8080/fhir");
	// its path is the route prefix and it is used in Location headers.
	BaseURL string
	// MaxBodyBytes limits request bodies (0 = DefaultMaxBodyBytes); larger
	// bodies are answered with 413.
	MaxBodyBytes int64
	// SoftwareName and SoftwareVersion appear in the CapabilityStatement.
	SoftwareName    string
	SoftwareVersion string
	// Middleware, if set, wraps every FHIR route except /metadata, after
	// routing: the stages find r.Pattern set and the request's
	// interaction.Interaction in its context. It may reject requests (it
	// should answer with an OperationOutcome) or put the caller's identity
	// into the request context for the resource.Access implementation.
	Middleware func(http.Handler) http.Handler
	// SearchTimeout, when positive, is the time budget of a search or
	// history request (its context's deadline); the handler answers a
	// search cut off by it with an OperationOutcome (503, "timeout").
	SearchTimeout time.Duration
	// CapabilityHook, if set, may modify the generated CapabilityStatement
	// (as a JSON object) once, when it is first served, e.g. to add
	// rest[0].security with the SMART oauth-uris extension.
	CapabilityHook func(capability map[string]any)
	// ServiceBaseURLs, if set, is the service base URL Bundle (JSON)
	// served at /servicebaseurls without authentication (HTI-1
	// §170.404(b)(2), package servicebase).
	ServiceBaseURLs []byte
	// USCoreVersion, if set, is the US Core version ("6.1.0", "7.0.0")
	// the CapabilityStatement claims: instantiates us-core-server, the
	// US Core profiles, search parameters and combinations.
	USCoreVersion string
	// Logger receives internal errors and panics; nil = slog.Default().
	Logger *slog.Logger
}

// API is the FHIR API handler.
type API struct {
	cfg       Config
	svc       *resource.Service
	reg       *definitions.Registry
	base      string // BaseURL without trailing slash
	prefix    string // path of BaseURL without trailing slash ("" or "/fhir")
	maxBody   int64
	mux       *http.ServeMux
	unrouted  *route // what no route matches: 404 or 405 after the stages
	protected http.Handler
	capJSON   func() []byte // the CapabilityStatement, made on first use
	log       *slog.Logger
}

// New returns the FHIR API handler with the routes of the FHIR RESTful
// API. Mount it at the path of cfg.BaseURL (or at "/"): requests outside
// that path are answered 404.
func New(cfg Config, svc *resource.Service, reg *definitions.Registry) *API {
	a := &API{cfg: cfg, svc: svc, reg: reg, log: cfg.Logger, maxBody: cfg.MaxBodyBytes}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.maxBody <= 0 {
		a.maxBody = DefaultMaxBodyBytes
	}
	a.base = strings.TrimSuffix(cfg.BaseURL, "/")
	if u, err := url.Parse(a.base); err == nil {
		a.prefix = strings.TrimSuffix(u.Path, "/")
	}
	// Made when first asked for: most API values (one per test in the
	// in-process tests) never serve it, and it costs a walk of every
	// search parameter and a large marshal.
	a.capJSON = sync.OnceValue(a.capabilityStatement)
	var h http.Handler = http.HandlerFunc(a.dispatch)
	if cfg.Middleware != nil {
		h = cfg.Middleware(h)
	}
	a.protected = h
	a.mux = http.NewServeMux()
	a.unrouted = &route{a: a, kind: interaction.Unknown, h: a.notFound}
	a.mux.Handle("/", a.unrouted)
	a.routes()
	return a
}

// HandlerFunc is a FHIR route's handler: an error it returns is answered
// as an OperationOutcome.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// Handle adds the route pattern, a ServeMux pattern with a method and a
// path relative to the FHIR base ("GET /$export", "POST
// /Group/{id}/$export"), serving interactions of kind with h behind the
// stages of Config.Middleware. Path values named type, id, vid (and comp,
// cid for a compartment) name the interaction's resource (see
// interaction.FromRoute). Call it before serving.
func (a *API) Handle(kind interaction.Kind, pattern string, h HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	a.mux.Handle(method+" "+a.prefix+path, &route{a: a, kind: kind, h: h})
}

// Route returns h as a route of kind behind the stages, for a pattern
// registered on another ServeMux: URLs below the FHIR base outside FHIR's
// REST grammar, which its patterns would conflict with ("GET
// /fhir/$export-status/{job}" against "GET /fhir/{type}/_history"). h
// negotiates its own media types (a Bulk Data file is NDJSON).
func (a *API) Route(kind interaction.Kind, h HandlerFunc) http.Handler {
	return &route{a: a, kind: kind, h: h, own: true}
}

// routes adds the RESTful routes of R4 http.html.
func (a *API) routes() {
	if a.prefix != "" { // the base without its trailing slash
		a.mux.Handle("GET "+a.prefix, &route{a: a, kind: interaction.SearchSystem, h: a.searchSystem})
		a.mux.Handle("POST "+a.prefix, &route{a: a, kind: interaction.Batch, h: a.bundle})
	}
	a.Handle(interaction.SearchSystem, "GET /{$}", a.searchSystem)
	a.Handle(interaction.Batch, "POST /{$}", a.bundle)
	a.Handle(interaction.SearchSystem, "POST /_search", a.searchSystem)
	a.Handle(interaction.HistorySystem, "GET /_history", a.historySystem)
	a.Handle(interaction.SearchType, "GET /{type}", a.searchType)
	a.Handle(interaction.Create, "POST /{type}", a.create)
	a.Handle(interaction.Update, "PUT /{type}", a.conditionalUpdate)
	a.Handle(interaction.Patch, "PATCH /{type}", a.conditionalPatch)
	a.Handle(interaction.Delete, "DELETE /{type}", a.conditionalDelete)
	a.Handle(interaction.SearchType, "POST /{type}/_search", a.searchType)
	a.Handle(interaction.HistoryType, "GET /{type}/_history", a.historyType)
	a.Handle(interaction.Read, "GET /{type}/{id}", a.read)
	a.Handle(interaction.Update, "PUT /{type}/{id}", a.update)
	a.Handle(interaction.Patch, "PATCH /{type}/{id}", a.patch)
	a.Handle(interaction.Delete, "DELETE /{type}/{id}", a.delete)
	a.Handle(interaction.HistoryInst, "GET /{type}/{id}/_history", a.historyInstance)
	a.Handle(interaction.VRead, "GET /{type}/{id}/_history/{vid}", a.vread)
	a.Handle(interaction.SearchType, "GET /{comp}/{cid}/{type}", a.searchCompartment)
	a.Handle(interaction.SearchType, "POST /{comp}/{cid}/{type}/_search", a.searchCompartment)
	a.Handle(interaction.Operation, "GET /Patient/{id}/$everything", a.everything)
	a.Handle(interaction.Operation, "POST /Patient/{id}/$everything", a.everything)
	a.Handle(interaction.Operation, "GET /Patient/$everything", everyPatient)
	a.Handle(interaction.Operation, "POST /Patient/$everything", everyPatient)
}

// route is one FHIR route: what it serves and its handler.
type route struct {
	a    *API
	kind interaction.Kind
	h    HandlerFunc
	own  bool // h negotiates its own media types (Route)
}

type routeKey struct{}

// ServeHTTP runs once the ServeMux has matched the route (r.Pattern is
// set): the interaction is built here, once, and the stages run with it.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := rt.a
	var ix *interaction.Interaction
	if rt == a.unrouted {
		ix = interaction.Parse(a.prefix, r)
	} else {
		ix = interaction.FromRoute(a.prefix, rt.kind, r)
	}
	httpx.SetRoute(r.Context(), routeClass(ix), a.routePath(r.Pattern, ix))
	ctx := context.WithValue(interaction.NewContext(r.Context(), ix), routeKey{}, rt)
	if d := a.cfg.SearchTimeout; d > 0 && (ix.Search() || ix.History()) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	a.protected.ServeHTTP(w, r.WithContext(ctx))
}

// routeClass is the metric label of an interaction: "fhir." and its kind
// ("fhir.read", "fhir.conditional-update", "fhir.search-compartment").
func routeClass(ix *interaction.Interaction) string {
	switch {
	case ix.Method == http.MethodOptions:
		return "fhir.options"
	case ix.Kind == interaction.Unknown:
		return "fhir.other"
	case ix.Kind == interaction.Capabilities:
		return "fhir.metadata"
	case ix.Compartment != "":
		return "fhir.search-compartment"
	case ix.Conditional:
		if c, ok := conditionalClasses[ix.Kind]; ok {
			return c
		}
		return "fhir.conditional-" + string(ix.Kind)
	}
	if c, ok := routeClasses[ix.Kind]; ok {
		return c
	}
	return "fhir." + string(ix.Kind)
}

// routeClasses and conditionalClasses are routeClass's labels of the
// interaction kinds, made once rather than on every request.
var routeClasses, conditionalClasses = func() (plain, cond map[interaction.Kind]string) {
	plain, cond = map[interaction.Kind]string{}, map[interaction.Kind]string{}
	for _, k := range []interaction.Kind{interaction.Read, interaction.VRead, interaction.Update, interaction.Patch, interaction.Delete,
		interaction.Create, interaction.SearchType, interaction.SearchSystem, interaction.HistoryInst, interaction.HistoryType,
		interaction.HistorySystem, interaction.Batch, interaction.Operation, interaction.Capabilities} {
		plain[k], cond[k] = "fhir."+string(k), "fhir.conditional-"+string(k)
	}
	return plain, cond
}()

// routePath is the path of a route pattern for the request log, with the
// resource type in place of {type} when it is one ("/fhir/Patient/{id}");
// what no route matched is prefix/{path}.
func (a *API) routePath(pattern string, ix *interaction.Interaction) string {
	if pattern == "" || pattern == "/" {
		return a.prefix + "/{path}"
	}
	p := httpx.PatternPath(pattern)
	if ix.Type != "" && a.reg.IsResourceType(ix.Type) {
		p = strings.Replace(p, "{type}", ix.Type, 1)
	}
	return p
}

// dispatch runs after the stages: the checks of every route, then the
// route's handler.
func (a *API) dispatch(w http.ResponseWriter, r *http.Request) {
	rt, _ := r.Context().Value(routeKey{}).(*route)
	if rt == nil {
		rt = a.unrouted
	}
	if err := checkPath(r); err != nil {
		a.writeError(w, r, err)
		return
	}
	if !rt.own {
		if err := negotiate(r); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	r, err := withValidationMode(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := rt.h(w, r); err != nil {
		a.writeError(w, r, err)
	}
}

// withValidationMode puts the profile validation mode a write asks for
// (header profile.Header) into its context for the resource service's
// validator; a value it does not know is a 400. Reads ignore the header.
func withValidationMode(r *http.Request) (*http.Request, error) {
	v := r.Header.Get(profile.Header)
	if v == "" || (r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch) {
		return r, nil
	}
	mode, err := profile.ParseMode(v)
	if err != nil {
		return r, outcome.New(http.StatusBadRequest, "value", "%s", err.Error())
	}
	return r.WithContext(profile.WithMode(r.Context(), mode)), nil
}

// ServeHTTP is the outermost handler: panic recovery, a URL longer than
// MaxURLBytes (414), /metadata (outside the stages), paths no route may see (not canonical, a reserved name
// with a method it does not take), and every other request routed.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.ErrorContext(r.Context(), "panic in FHIR handler", "method", r.Method, "panic", fmt.Sprint(v))
			if !tw.wrote {
				a.writeError(tw, r, resource.InternalError())
			}
		}
	}()
	if n := urlBytes(r); n > MaxURLBytes {
		httpx.SetRoute(r.Context(), "fhir.other", a.prefix)
		a.writeError(tw, r, outcome.New(http.StatusRequestURITooLong, "too-long",
			"the URL is %d bytes, more than the %d this server accepts; send long search criteria in the body of POST [type]/_search", n, MaxURLBytes))
		return
	}
	if r.URL.Path == a.prefix+"/metadata" {
		httpx.SetRoute(r.Context(), "fhir.metadata", r.URL.Path)
		a.public(tw, r, a.capJSON())
		return
	}
	if r.URL.Path == a.prefix+"/servicebaseurls" && a.cfg.ServiceBaseURLs != nil {
		httpx.SetRoute(r.Context(), "fhir.servicebaseurls", r.URL.Path)
		a.public(tw, r, a.cfg.ServiceBaseURLs)
		return
	}
	if checkPath(r) != nil || a.reservedRefused(r) {
		// ServeMux would redirect a path that is not canonical, and
		// {type} or {id} would capture a reserved name.
		a.unrouted.ServeHTTP(tw, r)
		return
	}
	a.mux.ServeHTTP(tw, r)
}

// urlBytes is the length of r's request target as sent (path and query).
func urlBytes(r *http.Request) int {
	if r.RequestURI != "" {
		return len(r.RequestURI)
	}
	return len(r.URL.RequestURI())
}

// notFound answers what no route serves: 405 with Allow when the path has
// routes for other methods, else 404.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) error {
	allow := a.reserved(r)
	if allow == nil {
		allow = a.allowed(r)
	}
	if len(allow) > 0 {
		return outcome.MethodNotAllowed(w.Header(), r.Method, allow)
	}
	return outcome.New(http.StatusNotFound, "not-found", "no FHIR interaction is defined for %s %s", r.Method, r.URL.Path)
}

// reservedRefused reports whether r's path ends in a reserved name its
// method does not take.
func (a *API) reservedRefused(r *http.Request) bool {
	allow := a.reserved(r)
	return allow != nil && !slices.Contains(allow, r.Method)
}

// checkPath refuses request paths that are not in canonical form: empty
// segments ("//") and dot-segments ("." and "..", also percent-encoded).
// ServeMux would answer them with a redirect to a different URL, and a
// dot-segment is never a usable FHIR id or type.
func checkPath(r *http.Request) error {
	p := r.URL.EscapedPath()
	if p == "" || p == "/" {
		return nil
	}
	// Segment by segment, without splitting the path into a new slice;
	// only a segment with a percent sign needs decoding.
	rest := strings.TrimPrefix(p, "/")
	for {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" {
			if !more {
				return nil // trailing slash
			}
			return outcome.BadRequest("the URL path %q has an empty segment", outcome.Truncate(p, 200))
		}
		d := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if d, err = url.PathUnescape(seg); err != nil {
				return outcome.BadRequest("the URL path %q has an invalid percent-encoding", outcome.Truncate(p, 200))
			}
		}
		if d == "." || d == ".." {
			return outcome.BadRequest("the URL path %q has a dot-segment (%q); use the canonical URL", outcome.Truncate(p, 200), d)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// reserved returns the methods allowed on the paths whose last segment is
// a reserved name (_history, _search) that the {type} and {id} patterns
// would otherwise capture; nil for other paths.
func (a *API) reserved(r *http.Request) []string {
	rest, ok := strings.CutPrefix(r.URL.Path, a.prefix+"/")
	if !ok {
		return nil
	}
	// At most two segments; the last one decides.
	if strings.Count(rest, "/") > 1 {
		return nil
	}
	switch rest[strings.LastIndexByte(rest, '/')+1:] {
	case "_history":
		return []string{http.MethodGet, http.MethodHead}
	case "_search":
		return []string{http.MethodPost}
	}
	return nil
}

// allowed lists the methods with a route for r's path.
func (a *API) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		c := r.Clone(r.Context())
		c.Method = m
		if h, _ := a.mux.Handler(c); h != http.Handler(a.unrouted) {
			out = append(out, m)
		}
	}
	return out
}

// trackingWriter records whether the response has started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// ---------------------------------------------------------------------------
// Responses

// writeBody writes a JSON body with the FHIR content type, indented when
// _pretty=true.
func (a *API) writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	if r.URL.RawQuery != "" && len(body) > 0 {
		if q, _ := resource.ParseQuery(r.URL.RawQuery); q.Get("_pretty") == "true" {
			var buf bytes.Buffer
			if err := json.Indent(&buf, body, "", "  "); err == nil {
				body = buf.Bytes()
			}
		}
	}
	// Canonical keys assigned directly (what Header.Set does, without its
	// key check and with one allocation for both values).
	h := w.Header()
	v := make([]string, 2)
	v[0], v[1] = contentType, strconv.Itoa(len(body))
	h["Content-Type"], h["Content-Length"] = v[0:1:1], v[1:2:2]
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeSearch answers a search with the searchset Bundle of its page.
func (a *API) writeSearch(w http.ResponseWriter, r *http.Request, p *resource.SearchPage) {
	a.writeBody(w, r, http.StatusOK, p.JSON())
}

// writeError renders err as an OperationOutcome. Errors that are not
// *outcome.Error are logged and become a generic 500.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		a.log.ErrorContext(r.Context(), "internal error in FHIR handler", "method", r.Method, "err", err.Error())
		oe = resource.InternalError()
	}
	if oe.Status >= 500 && oe.Status != http.StatusServiceUnavailable {
		a.log.WarnContext(r.Context(), "FHIR request failed", "method", r.Method, "status", oe.Status)
	}
	a.writeBody(w, r, oe.Status, oe.JSON())
}

// setVersionHeaders sets ETag and Last-Modified for a resource version.
func setVersionHeaders(w http.ResponseWriter, res *resource.Result) {
	if res.Resource == nil {
		return
	}
	var etag string
	if v := res.Resource.VersionID; v >= 0 && v < int64(len(smallETags)) {
		etag = smallETags[v]
	} else {
		etag = resource.ETag(v)
	}
	var buf [len(http.TimeFormat) + 4]byte
	v := make([]string, 2)
	v[0], v[1] = etag, string(res.Resource.LastUpdated.UTC().AppendFormat(buf[:0], http.TimeFormat))
	h := w.Header()
	h["Etag"], h["Last-Modified"] = v[0:1:1], v[1:2:2]
}

// smallETags are the ETags of the first versions, made once.
var smallETags = func() (t [64]string) {
	for i := range t {
		t[i] = resource.ETag(int64(i))
	}
	return t
}()

func (a *API) versionURL(res *resource.Result) string {
	r := res.Resource
	return a.base + "/" + r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
}

// writeWrite renders the result of a create, update or patch honouring
// Prefer: return.
func (a *API) writeWrite(w http.ResponseWriter, r *http.Request, res *resource.Result) {
	note(r, res)
	setVersionHeaders(w, res)
	if res.Resource != nil {
		if res.Status == http.StatusCreated {
			w.Header().Set("Location", a.versionURL(res))
		} else {
			w.Header().Set("Content-Location", a.versionURL(res))
		}
	}
	switch parsePrefer(r).ret {
	case resource.ReturnMinimal:
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(res.Status)
	case resource.ReturnOutcome:
		issues := res.Issues
		if len(issues) == 0 {
			msg := "the interaction succeeded"
			if res.Resource != nil {
				msg = fmt.Sprintf("%s/%s version %d", res.Resource.Type, res.Resource.ID, res.Resource.VersionID)
				switch res.Status {
				case http.StatusCreated:
					msg += " was created"
				default:
					msg += " is current"
				}
			}
			issues = []outcome.Issue{{Severity: "information", Code: "informational", Diagnostics: msg}}
		}
		a.writeBody(w, r, res.Status, marshal(outcome.Resource(issues)))
	default:
		a.writeBody(w, r, res.Status, res.Body)
	}
}

func marshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// ---------------------------------------------------------------------------
// Handlers

func (a *API) read(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if strings.HasPrefix(id, "$") {
		if err := a.checkType(r); err != nil {
			return err
		}
		return outcome.New(http.StatusBadRequest, "not-supported", "the operation %s is not supported on the type %s", outcome.Truncate(id, 100), typ)
	}
	summary, elements, err := subsetParams(r)
	if err != nil {
		return err
	}
	res, err := a.svc.Read(r.Context(), typ, id)
	if err != nil {
		return err
	}
	return a.writeRead(w, r, res, summary, elements)
}

func (a *API) vread(w http.ResponseWriter, r *http.Request) error {
	typ, id, vid := r.PathValue("type"), r.PathValue("id"), r.PathValue("vid")
	summary, elements, err := subsetParams(r)
	if err != nil {
		return err
	}
	v, ok := resource.ParseVersion(vid)
	if !ok {
		if !resource.ValidID(vid) {
			return outcome.BadRequest("invalid version id %q", vid)
		}
		return outcome.NotFound("%s/%s has no version %q", typ, id, vid)
	}
	res, err := a.svc.VRead(r.Context(), typ, id, v)
	if err != nil {
		return err
	}
	return a.writeRead(w, r, res, summary, elements)
}

// writeRead answers a read/vread, honouring If-None-Match,
// If-Modified-Since, _summary and _elements.
func (a *API) writeRead(w http.ResponseWriter, r *http.Request, res *resource.Result, summary string, elements []string) error {
	note(r, res)
	setVersionHeaders(w, res)
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				w.WriteHeader(http.StatusNotModified)
				return nil
			}
			if v, err := resource.ParseETag(tag); err == nil && v == res.Resource.VersionID {
				w.WriteHeader(http.StatusNotModified)
				return nil
			}
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !res.Resource.LastUpdated.Truncate(time.Second).After(t) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
	}
	body, err := resource.Subset(a.reg, res.Body, summary, elements)
	if err != nil {
		return err
	}
	a.writeBody(w, r, http.StatusOK, body)
	return nil
}

// subsetParams reads _summary and _elements for read interactions.
func subsetParams(r *http.Request) (string, []string, error) {
	if r.URL.RawQuery == "" {
		return "", nil, nil
	}
	q, err := queryParams(r)
	if err != nil {
		return "", nil, err
	}
	summary := q.Get("_summary")
	if !resource.ValidSummary(summary) {
		return "", nil, outcome.BadRequest("invalid _summary %q (expected true, text, data, count or false)", summary)
	}
	var elements []string
	for _, v := range q["_elements"] {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elements = append(elements, e)
			}
		}
	}
	if err := resource.CheckElements(elements); err != nil {
		return "", nil, err
	}
	return summary, elements, nil
}

func (a *API) create(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	if r.URL.RawQuery != "" {
		q, err := criteria(r)
		if err != nil {
			return err
		}
		if q != "" {
			return outcome.BadRequest("create does not take search parameters; use the If-None-Exist header for a conditional create")
		}
	}
	if err := requireJSONBody(r); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	res, err := a.svc.Create(r.Context(), typ, body, r.Header.Get("If-None-Exist"))
	if err != nil {
		return err
	}
	a.writeWrite(w, r, res)
	return nil
}

func (a *API) update(w http.ResponseWriter, r *http.Request) error {
	return a.bodyWrite(w, r, requireJSONBody, r.PathValue("id"), a.svc.Update)
}

func (a *API) conditionalUpdate(w http.ResponseWriter, r *http.Request) error {
	return a.conditionalBodyWrite(w, r, "PUT", "update", requireJSONBody, a.svc.ConditionalUpdate)
}

// writeOp is an update or a patch of the service: of the resource of
// type typ with the id key, or of the one matching the criteria key
// (conditional).
type writeOp func(ctx context.Context, typ, key string, body []byte, ifMatch string) (*resource.Result, error)

// bodyWrite checks the request's Content-Type, reads the body and answers
// with the result of the write run makes of it on the URL's type and key,
// with the request's If-Match.
func (a *API) bodyWrite(w http.ResponseWriter, r *http.Request, check func(*http.Request) error, key string, run writeOp) error {
	if err := check(r); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	res, err := run(r.Context(), r.PathValue("type"), key, body, ifMatch(r))
	if err != nil {
		return err
	}
	a.writeWrite(w, r, res)
	return nil
}

// conditionalBodyWrite is bodyWrite for conditional interactions on a type
// ([type]?criteria): the criteria are required.
func (a *API) conditionalBodyWrite(w http.ResponseWriter, r *http.Request, method, what string, check func(*http.Request) error, run writeOp) error {
	q, err := a.requiredCriteria(r, fmt.Sprintf("%s to a resource type needs search criteria (conditional %s) or an id in the URL", method, what))
	if err != nil {
		return err
	}
	return a.bodyWrite(w, r, check, q, run)
}

// requiredCriteria returns the search criteria of a conditional
// interaction on a type ([type]?criteria), once the type is known; none
// is a 400 that says so (missing).
func (a *API) requiredCriteria(r *http.Request, missing string) (string, error) {
	if err := a.checkType(r); err != nil {
		return "", err
	}
	q, err := criteria(r)
	if err != nil {
		return "", err
	}
	if q == "" {
		return "", outcome.BadRequest("%s", missing)
	}
	return q, nil
}

// checkType refuses an unknown resource type in the URL (404) before the
// rest of the request is looked at.
func (a *API) checkType(r *http.Request) error {
	if typ := r.PathValue("type"); !a.reg.IsResourceType(typ) {
		return outcome.NotFound("unknown resource type %q", outcome.Truncate(typ, 100))
	}
	return nil
}

// requirePatchBody checks the Content-Type of a PATCH body.
func requirePatchBody(r *http.Request) error {
	mt, err := bodyMediaType(r)
	if err != nil {
		return err
	}
	switch {
	case mt == mtJSONPatch:
		return nil
	case isXML(mt):
		return outcome.New(http.StatusUnsupportedMediaType, "not-supported", "XML patches are not supported; send a JSON Patch (application/json-patch+json)")
	case isJSONType(mt):
		return outcome.New(http.StatusUnsupportedMediaType, "not-supported", "FHIRPath Patch (Parameters) is not supported; send a JSON Patch (application/json-patch+json)")
	default:
		return outcome.New(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %q is not supported for PATCH; send application/json-patch+json", mt)
	}
}

func (a *API) patch(w http.ResponseWriter, r *http.Request) error {
	return a.bodyWrite(w, r, requirePatchBody, r.PathValue("id"), a.svc.Patch)
}

func (a *API) conditionalPatch(w http.ResponseWriter, r *http.Request) error {
	return a.conditionalBodyWrite(w, r, "PATCH", "patch", requirePatchBody, a.svc.ConditionalPatch)
}

// ifMatch is the request's If-Match, its header lines joined into one
// list (RFC 9110 §5.3).
func ifMatch(r *http.Request) string {
	return strings.Join(r.Header.Values("If-Match"), ", ")
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) error {
	res, err := a.svc.Delete(r.Context(), r.PathValue("type"), r.PathValue("id"), ifMatch(r))
	if err != nil {
		return err
	}
	a.writeDelete(w, r, res)
	return nil
}

func (a *API) conditionalDelete(w http.ResponseWriter, r *http.Request) error {
	q, err := a.requiredCriteria(r, "DELETE of a resource type needs search criteria (conditional delete) or an id in the URL")
	if err != nil {
		return err
	}
	res, err := a.svc.ConditionalDelete(r.Context(), r.PathValue("type"), q)
	if err != nil {
		return err
	}
	a.writeDelete(w, r, res)
	return nil
}

// writeDelete answers a delete: 204 without a body, or 200 with an
// OperationOutcome when Prefer: return=OperationOutcome (or
// representation, since a deleted resource has no representation).
func (a *API) writeDelete(w http.ResponseWriter, r *http.Request, res *resource.Result) {
	note(r, res)
	if res.Resource != nil {
		w.Header().Set("ETag", resource.ETag(res.Resource.VersionID))
	}
	prefer := r.Header.Get("Prefer") != "" && parsePrefer(r).ret == resource.ReturnOutcome
	if !prefer {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	issues := res.Issues
	if len(issues) == 0 {
		issues = []outcome.Issue{{Severity: "information", Code: "informational", Diagnostics: "deleted"}}
	}
	a.writeBody(w, r, http.StatusOK, marshal(outcome.Resource(issues)))
}

// searchParams collects the parameters of a search: the query string and,
// for POST _search, the form body.
func (a *API) searchParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	params, err := queryParams(r)
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodPost {
		mt, err := bodyMediaType(r)
		if err != nil {
			return nil, err
		}
		body, err := a.readBody(w, r)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if mt != mtForm {
				return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "POST _search expects an application/x-www-form-urlencoded body")
			}
			form, err := url.ParseQuery(string(body))
			if err != nil {
				return nil, outcome.BadRequest("the form body is malformed: %s", err.Error())
			}
			for k, vs := range form {
				params[k] = append(params[k], vs...)
			}
		} else if mt != "" && mt != mtForm {
			return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "POST _search expects an application/x-www-form-urlencoded body")
		}
	}
	params.Del("_format")
	params.Del("_pretty")
	return params, nil
}

func (a *API) searchType(w http.ResponseWriter, r *http.Request) error {
	return a.search(w, r, func(params url.Values) (*resource.SearchPage, error) {
		return a.svc.Search(r.Context(), r.PathValue("type"), params, parsePrefer(r).strict)
	})
}

func (a *API) searchSystem(w http.ResponseWriter, r *http.Request) error {
	return a.search(w, r, func(params url.Values) (*resource.SearchPage, error) {
		return a.svc.Search(r.Context(), "", params, parsePrefer(r).strict)
	})
}

// search reads a search's parameters and answers with the page run
// makes of them.
func (a *API) search(w http.ResponseWriter, r *http.Request, run func(url.Values) (*resource.SearchPage, error)) error {
	params, err := a.searchParams(w, r)
	if err != nil {
		return err
	}
	return a.answerPage(w, r, params, run)
}

// answerPage answers with the searchset of the page run makes of params.
func (a *API) answerPage(w http.ResponseWriter, r *http.Request, params url.Values, run func(url.Values) (*resource.SearchPage, error)) error {
	p, err := run(params)
	if err != nil {
		return err
	}
	notePage(r, p)
	a.writeSearch(w, r, p)
	return nil
}

// searchCompartment serves a compartment search, [base]/Patient/{id}/{type}.
func (a *API) searchCompartment(w http.ResponseWriter, r *http.Request) error {
	comp, id, typ := r.PathValue("comp"), r.PathValue("cid"), r.PathValue("type")
	if strings.HasPrefix(typ, "$") {
		return outcome.New(http.StatusNotFound, "not-supported", "the operation %s is not supported on %s", outcome.Truncate(typ, 100), outcome.Truncate(comp, 100))
	}
	return a.search(w, r, func(params url.Values) (*resource.SearchPage, error) {
		return a.svc.SearchCompartment(r.Context(), comp, id, typ, params, parsePrefer(r).strict)
	})
}

// everyPatient answers the type-level Patient/$everything (R4
// patient-operation-everything: the records of all patients) with a 400:
// it is not supported, unbounded as it is. One patient's record is
// Patient/[id]/$everything; many patients' the Bulk Data export.
func everyPatient(http.ResponseWriter, *http.Request) error {
	return outcome.New(http.StatusBadRequest, "not-supported",
		"the type-level Patient/$everything (all patients' records) is not supported: use Patient/[id]/$everything for one patient, or the Bulk Data export Patient/$export for many")
}

// everything serves Patient/{id}/$everything: GET with query parameters,
// POST with a Parameters body.
func (a *API) everything(w http.ResponseWriter, r *http.Request) error {
	params, err := queryParams(r)
	if err != nil {
		return err
	}
	params.Del("_format")
	params.Del("_pretty")
	if r.Method == http.MethodPost {
		body, err := a.readBody(w, r)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := requireJSONBody(r); err != nil {
				return err
			}
			bp, err := resource.EverythingParameters(body)
			if err != nil {
				return err
			}
			for k, vs := range bp {
				params[k] = append(params[k], vs...)
			}
		}
	}
	return a.answerPage(w, r, params, func(params url.Values) (*resource.SearchPage, error) {
		return a.svc.Everything(r.Context(), r.PathValue("id"), params)
	})
}

func (a *API) history(w http.ResponseWriter, r *http.Request, typ, id string) error {
	params, err := queryParams(r)
	if err != nil {
		return err
	}
	params.Del("_format")
	params.Del("_pretty")
	p, err := a.svc.History(r.Context(), typ, id, params, parsePrefer(r).strict)
	if err != nil {
		return err
	}
	noteReturned(r, p.Returned())
	a.writeBody(w, r, http.StatusOK, p.JSON())
	return nil
}

func (a *API) historySystem(w http.ResponseWriter, r *http.Request) error {
	return a.history(w, r, "", "")
}

func (a *API) historyType(w http.ResponseWriter, r *http.Request) error {
	return a.history(w, r, r.PathValue("type"), "")
}

func (a *API) historyInstance(w http.ResponseWriter, r *http.Request) error {
	return a.history(w, r, r.PathValue("type"), r.PathValue("id"))
}

func (a *API) bundle(w http.ResponseWriter, r *http.Request) error {
	if err := requireJSONBody(r); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	res, err := a.svc.Bundle(r.Context(), body, parsePrefer(r).ret)
	if err != nil {
		return err
	}
	note(r, res)
	a.writeBody(w, r, res.Status, res.Body)
	return nil
}
