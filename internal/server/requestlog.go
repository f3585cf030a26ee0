package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/metrics"
)

// HeaderRequestID carries the request id, echoed on every response.
const HeaderRequestID = "X-Request-ID"

// requestInfo is what the request log learns from inner stages.
type requestInfo struct {
	id       string
	clientID atomic.Pointer[string]
}

type requestInfoKey struct{}

// RequestID returns the id of the request ctx belongs to ("" outside the
// server).
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// SetClientID tells the request log which client (OAuth client id or API
// key id) made the request; stages after authentication call it.
func SetClientID(ctx context.Context, clientID string) {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		ri.clientID.Store(&clientID)
	}
}

// validRequestID accepts 1–128 characters of [A-Za-z0-9._:-]: enough for
// UUIDs and the ids of common proxies, nothing that could forge log
// structure.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status code.
func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes a flush through (streamed responses).
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		if s.status == 0 {
			s.status = http.StatusOK
		}
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// requestLog is the outermost handler: X-Request-ID (the caller's when
// valid, else a new random one), the request metrics, and one log line per
// request with method, route pattern (never the query string or ids),
// status, duration, client id and request id. Volume: 5xx are logged at
// warn, 4xx and requests slower than slow at info, the rest at debug; the
// audit trail, not this log, is the record of every interaction.
func requestLog(base string, log *slog.Logger, m *metrics.Metrics, slow time.Duration, next http.Handler) http.Handler {
	if slow <= 0 {
		slow = time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		done := m.RequestStarted()
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
			r.Header.Set(HeaderRequestID, id)
		}
		w.Header().Set(HeaderRequestID, id)
		ri := &requestInfo{id: id}
		sw := &statusWriter{ResponseWriter: w}
		// The request is understood here, once, for every later stage.
		_, r = interaction.Of(base, r)
		class, pattern := Route(base, r)
		defer func() {
			d := time.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					status = http.StatusInternalServerError
				}
				done(class, r.Method, status, d)
				panic(v)
			}
			done(class, r.Method, status, d)
			level := slog.LevelDebug
			switch {
			case status >= 500:
				level = slog.LevelWarn
			case status >= 400 || d >= slow:
				level = slog.LevelInfo
			}
			ctx := r.Context()
			if !log.Enabled(ctx, level) {
				return
			}
			var clientID string
			if p := ri.clientID.Load(); p != nil {
				clientID = *p
			}
			log.LogAttrs(ctx, level, "request",
				slog.String("method", methodName(r.Method)),
				slog.String("route", pattern),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.String("client_id", clientID),
				slog.String("request_id", id))
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri)))
	})
}

func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// authPages are the authorization endpoints under BASE/auth/ (a fixed
// set, so that metric labels stay bounded).
var authPages = map[string]bool{
	"authorize": true, "token": true, "introspect": true, "revoke": true, "jwks": true, "login": true,
	"consent": true, "select-patient": true, "launch": true, "logout": true, "apps": true,
	"smart-style.json": true, "admin": true, "userinfo": true,
}

// Route classifies r for metrics and logs, base being the path of the
// FHIR base URL ("/fhir"): class is a fixed word (e.g. "fhir.read",
// "fhir.search-type", "auth.token", "healthz", "other") and pattern the
// route with ids replaced ("/fhir/Patient/{id}"); neither carries the
// query string or an id.
func Route(base string, r *http.Request) (class, pattern string) {
	p := r.URL.Path
	switch p {
	case "/healthz", "/readyz", "/metrics":
		return p[1:], p
	}
	rest, ok := strings.CutPrefix(p, base)
	if !ok || (rest != "" && rest[0] != '/') {
		return "other", "/{other}"
	}
	rest = strings.TrimPrefix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if r.Method == http.MethodOptions {
		return "fhir.options", base + "/{path}"
	}
	segs := strings.Split(rest, "/")
	switch {
	case segs[0] == ".well-known":
		return "auth.discovery", base + "/.well-known/{document}"
	case segs[0] == "auth":
		if len(segs) > 1 && authPages[segs[1]] {
			if segs[1] == "admin" {
				return "auth.admin", base + "/auth/admin/{path}"
			}
			return "auth." + strings.TrimSuffix(segs[1], ".json"), base + "/auth/" + segs[1]
		}
		return "auth.other", base + "/auth/{other}"
	}
	ix, _ := interaction.Of(base, r)
	typ := "{type}"
	if isTypeName(ix.Type) {
		typ = ix.Type
	}
	tbase := base + "/" + typ
	switch ix.Kind {
	case interaction.Batch:
		return "fhir.batch", base
	case interaction.Capabilities:
		return "fhir.metadata", base + "/metadata"
	case interaction.SearchSystem, interaction.SearchType:
		switch {
		case ix.Compartment != "":
			return "fhir.search-compartment", base + "/{compartment}/{id}/{type}"
		case len(ix.Segments) == 0:
			return "fhir.search-system", base
		case ix.Kind == interaction.SearchSystem:
			return "fhir.search-system", base + "/_search"
		case len(ix.Segments) == 2:
			return "fhir.search-type", tbase + "/_search"
		}
		return "fhir.search-type", tbase
	case interaction.HistorySystem:
		return "fhir.history-system", base + "/_history"
	case interaction.HistoryType:
		return "fhir.history-type", tbase + "/_history"
	case interaction.HistoryInst:
		return "fhir.history-instance", tbase + "/{id}/_history"
	case interaction.VRead:
		return "fhir.vread", tbase + "/{id}/_history/{vid}"
	case interaction.Create:
		return "fhir.create", tbase
	case interaction.Read, interaction.Update, interaction.Patch, interaction.Delete:
		if ix.Conditional {
			return "fhir.conditional-" + string(ix.Kind), tbase
		}
		return "fhir." + string(ix.Kind), tbase + "/{id}"
	}
	return "fhir.other", base + "/{path}"
}

// isTypeName reports whether s looks like a FHIR resource type name
// (capitalised letters, bounded), so it can appear in a log pattern.
func isTypeName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// isSearch reports whether r is a FHIR search or history request (the
// requests under the search time budget) of the FHIR base path base.
func isSearch(base string, r *http.Request) bool {
	ix, _ := interaction.Of(base, r)
	return ix.Search() || ix.History()
}

// SearchTimeout returns a stage that gives FHIR searches and history
// requests (GET, and POST _search) under the FHIR base path base a
// deadline of d; the FHIR layer answers a search cut off by it with an
// OperationOutcome (503, "timeout"). d <= 0: no stage.
func SearchTimeout(base string, d time.Duration) func(http.Handler) http.Handler {
	if d <= 0 {
		return nil
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isSearch(base, r) {
				next.ServeHTTP(w, r)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
