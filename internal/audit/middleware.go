package audit

import (
	"bytes"
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
)

// Committer is the recorder as the HTTP stage uses it: Record for reads,
// Commit (wait until durable) for writes.
type Committer interface {
	Sink
	Commit(ctx context.Context, e Event) error
}

// StageConfig configures the FHIR audit stage.
type StageConfig struct {
	// Recorder receives the events (required).
	Recorder Committer
}

// Stage returns the FHIR API stage that records every interaction and
// refuses writes to AuditEvent. It runs after routing (it reads the
// request's interaction.Interaction from the context; a request without
// one is recorded by its method alone) and belongs closest to the
// handler, after authentication and the gateway policies. Reads are recorded
// asynchronously after the response is streamed; writes (create, update,
// patch, delete, transaction, batch, operations) are buffered and released
// only after their record is durable — or answered 500 when it cannot be.
func Stage(cfg StageConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ix := interaction.FromContext(r.Context())
			if ix == nil {
				ix = &interaction.Interaction{Method: r.Method}
			}
			if ix.Search() {
				ix.ReadForm(r, maxFormBytes)
			}
			c := classify(ix)
			e := Event{Kind: KindREST, Action: c.Action, Interaction: c.Interaction, Address: httpx.ClientAddr(r), UserAgent: truncate(r.UserAgent(), 256),
				Route: RouteShape(r)}
			if p := principal.FromContext(r.Context()); p != nil {
				e.ClientID, e.Subject, e.FHIRUser, e.Method, e.CredentialID, e.Patient = p.ClientID, p.Subject, p.FHIRUser, p.Method, p.TokenID, p.Patient
			}
			if c.Type == "AuditEvent" && c.Write {
				e.Status, e.Outcome, e.Description = http.StatusMethodNotAllowed, OutcomeMinor, "AuditEvent is read-only"
				e.Entities = c.entities("", "")
				_ = cfg.Recorder.Commit(r.Context(), e)
				outcome.Write(w, outcome.New(http.StatusMethodNotAllowed, "not-supported", "AuditEvent resources are written by the server only"))
				return
			}
			// The handler tells what it did (no parsing of the response).
			o := &interaction.Outcome{}
			r = r.WithContext(interaction.NewOutcomeContext(r.Context(), o))
			if !c.Write {
				rw := &readWriter{ResponseWriter: w}
				next.ServeHTTP(rw, r)
				fillEvent(&e, &c, rw.status(), o)
				e.Latency, e.Cause = time.Since(start), string(httpx.Refusal(r.Context()))
				cfg.Recorder.Record(r.Context(), e)
				return
			}
			bw := &bufferWriter{header: http.Header{}}
			next.ServeHTTP(bw, r)
			if c.Interaction == "transaction" && o.BundleType != "" {
				c.Interaction = o.BundleType
			}
			e.Interaction = c.Interaction
			if c.Interaction == "transaction" || c.Interaction == "batch" {
				for _, w := range o.Written[:min(len(o.Written), maxBundleEntities)] {
					e.Entities = append(e.Entities, Entity{Type: w.Type, ID: w.ID, Version: w.Version, Role: "domain"})
				}
			}
			fillEvent(&e, &c, bw.status(), o)
			e.Latency, e.Cause = time.Since(start), string(httpx.Refusal(r.Context()))
			if err := cfg.Recorder.Commit(r.Context(), e); err != nil {
				outcome.Write(w, outcome.New(http.StatusInternalServerError, "exception", "the audit trail is unavailable: the outcome of this request is unknown, read the resource before retrying"))
				return
			}
			dst := w.Header()
			for k, v := range bw.header {
				dst[k] = v
			}
			w.WriteHeader(bw.status())
			w.Write(bw.body.Bytes())
		})
	}
}

// RouteShape is the shape of r's route for the activity of its client:
// its method and the matched route pattern ("GET /fhir/Observation",
// "GET /fhir/Patient/{id}"), with "?…" when it had query parameters —
// never an id or a parameter value.
func RouteShape(r *http.Request) string {
	path := ""
	if rt, ok := httpx.RouteOf(r.Context()); ok {
		path = rt.Pattern
	} else if r.Pattern != "" {
		path = httpx.PatternPath(r.Pattern)
	}
	if path == "" {
		path = "/{path}"
	}
	s := r.Method + " " + path
	if r.URL != nil && r.URL.RawQuery != "" {
		s += "?…"
	}
	return truncate(s, 200)
}

// maxBundleEntities bounds the entities listed for one Bundle.
const maxBundleEntities = 100

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// fillEvent completes e from the response status and what the handler
// reported in o.
func fillEvent(e *Event, c *Classified, status int, o *interaction.Outcome) {
	e.Status = status
	switch {
	case status < 400:
		e.Outcome = OutcomeSuccess
	case status < 500:
		e.Outcome = OutcomeMinor
	default:
		e.Outcome = OutcomeSerious
	}
	id, version := c.ID, ""
	if res := o.Resource; status < 400 && res.Type == c.Type && validID(res.ID) && (id == "" || id == res.ID) {
		id = res.ID
		if validID(res.Version) {
			version = res.Version
		}
	}
	if c.VersionID != "" {
		version = c.VersionID
	}
	if o.Unchanged && status < 400 {
		// The version named is the current one, written before: say so,
		// or the record would read as this request having written it.
		e.Description = "unchanged: no version written"
	}
	e.Entities = append(e.Entities, c.entities(id, version)...)
	if e.Patient == "" {
		e.Patient = c.Patient
		if e.Patient == "" && c.Type == "Patient" && id != "" && status < 400 {
			e.Patient = id
		}
	}
	if status < 400 {
		switch {
		case c.Search || c.History || c.Interaction == "transaction" || c.Interaction == "batch":
			e.Returned = o.Returned
		case c.Action == "R":
			e.Returned = 1
		}
	}
}

// statusCode is the first status code a handler sets (0 until it sets
// one).
type statusCode int

// set notes code unless a status is already set.
func (s *statusCode) set(code int) {
	if *s == 0 {
		*s = statusCode(code)
	}
}

// status returns the status set, 200 when none was (what net/http sends).
func (s statusCode) status() int {
	if s == 0 {
		return http.StatusOK
	}
	return int(s)
}

// readWriter passes the response through, noting the status.
type readWriter struct {
	http.ResponseWriter
	statusCode
}

func (w *readWriter) WriteHeader(code int) {
	w.set(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *readWriter) Write(p []byte) (int, error) {
	w.set(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// Flush passes flushes through (streamed Bundles).
func (w *readWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *readWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferWriter holds a write's response until its record is durable.
type bufferWriter struct {
	statusCode
	header http.Header
	body   bytes.Buffer
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(code int) { w.set(code) }

func (w *bufferWriter) Write(p []byte) (int, error) {
	w.set(http.StatusOK)
	return w.body.Write(p)
}

// Classified is what a request is, from its method, path and query.
type Classified struct {
	Interaction string // FHIR restful-interaction code
	Action      string // C, R, U, D, E
	Type, ID    string
	VersionID   string
	Write       bool // changes data: the response waits for the record
	Search      bool
	History     bool
	Query       string // sanitized "Type?query" for searches
	Patient     string // patient targeted by the path or the parameters
}

// maxFormBytes bounds the form body of a POST search read for the audit
// record (a larger one is recorded without its parameters).
const maxFormBytes = 1 << 20

// classify labels ix for the audit trail.
func classify(ix *interaction.Interaction) Classified {
	c := Classified{Interaction: string(ix.Kind), Type: ix.Type, ID: ix.ID, VersionID: ix.VID,
		Write: ix.Write(), Search: ix.Search(), History: ix.History()}
	switch ix.Kind {
	case interaction.Read, interaction.VRead, interaction.Capabilities,
		interaction.HistoryInst, interaction.HistoryType, interaction.HistorySystem:
		c.Action = "R"
	case interaction.Create:
		c.Action = "C"
	case interaction.Update, interaction.Patch:
		c.Action = "U"
	case interaction.Delete:
		c.Action = "D"
	case interaction.Batch:
		// Batch or transaction: the Bundle's type says (see Stage).
		c.Interaction, c.Action = "transaction", "E"
	case interaction.Unknown:
		// A shape no interaction has (the handler refuses it): labelled
		// by its method.
		switch ix.Method {
		case http.MethodGet, http.MethodHead:
			c.Interaction, c.Action = "read", "R"
		case http.MethodPost:
			c.Interaction, c.Action = "create", "C"
		case http.MethodPut:
			c.Interaction, c.Action = "update", "U"
		case http.MethodPatch:
			c.Interaction, c.Action = "patch", "U"
		case http.MethodDelete:
			c.Interaction, c.Action = "delete", "D"
		default:
			c.Interaction, c.Action = "operation", "E"
		}
	default: // searches and operations
		c.Action = "E"
	}
	// The path searched when it is not the type: a compartment search
	// or $everything.
	queryPath := ""
	switch {
	case ix.Everything():
		queryPath = "Patient/" + ix.ID + "/" + ix.Operation
	case ix.Compartment != "":
		queryPath = ix.Compartment + "/" + ix.CompartmentID + "/" + cmp.Or(ix.Type, "*")
	}
	if len(ix.Params) == 0 {
		c.Query = queryPath
	} else if queryPath != "" {
		c.Query = queryPath + "?" + SanitizeQuery(ix.Params)
	} else {
		c.Query = c.Type + "?" + SanitizeQuery(ix.Params)
	}
	if len(ix.Patients) > 0 {
		c.Patient = ix.Patients[0]
	}
	return c
}

func (c *Classified) entities(id, version string) []Entity {
	var out []Entity
	if c.Type != "" && id != "" {
		out = append(out, Entity{Type: c.Type, ID: id, Version: version, Role: "domain"})
	}
	if c.Query != "" && c.Query != c.Type+"?" {
		out = append(out, Entity{Role: "query", Query: c.Query})
	}
	return out
}

// redacted replaces the value of a parameter that could carry a
// credential.
const redacted = "[redacted]"

// credentialParam reports whether a query parameter name could carry a
// credential: OAuth and API-key parameter names, and anything that looks
// like a token, secret, password, key or assertion.
func credentialParam(name string) bool {
	n := strings.ToLower(name)
	if i := strings.IndexByte(n, ':'); i >= 0 {
		n = n[:i]
	}
	switch n {
	case "code", "key", "state", "nonce", "session", "sid", "auth", "authorization", "client_secret", "code_verifier":
		return true
	}
	for _, s := range []string{"token", "secret", "password", "passwd", "pwd", "assertion", "apikey", "api_key", "api-key", "credential", "bearer"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// SanitizeQuery encodes the parameters in a stable order with the value
// of every credential-like parameter replaced by "[redacted]" and long
// values shortened.
func SanitizeQuery(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if len(k) > 128 {
			continue
		}
		for _, val := range v[k] {
			if b.Len() > 4096 {
				b.WriteString("&_truncated=true")
				return b.String()
			}
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			if credentialParam(k) {
				b.WriteString(redacted)
				continue
			}
			b.WriteString(url.QueryEscape(truncate(val, 512)))
		}
	}
	return b.String()
}
