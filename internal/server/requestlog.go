package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/metrics"
)

// HeaderRequestID carries the request id, echoed on every response.
const HeaderRequestID = "X-Request-ID"

// RequestID returns the id of the request ctx belongs to ("" outside the
// server).
func RequestID(ctx context.Context) string { return httpx.RequestID(ctx) }

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
// request with method, route (the class and pattern the router that
// matched the request named with httpx.SetRoute; never the query string
// or ids), status, duration, client id and request id. Volume: 5xx are logged at
// warn, 4xx and requests slower than slow at info, the rest at debug; the
// audit trail, not this log, is the record of every interaction.
func requestLog(log *slog.Logger, m *metrics.Metrics, slow time.Duration, next http.Handler) http.Handler {
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
		ctx, ri := httpx.NewContext(r.Context(), id)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route, ok := ri.Route()
			if !ok {
				route = httpx.Route{Class: "other", Pattern: "/{other}"}
			}
			d := time.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					status = http.StatusInternalServerError
				}
				done(route.Class, r.Method, status, d)
				panic(v)
			}
			done(route.Class, r.Method, status, d)
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
			log.LogAttrs(ctx, level, "request",
				slog.String("method", httpx.Method(r.Method)),
				slog.String("route", route.Pattern),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.String("client_id", ri.ClientID()),
				slog.String("request_id", id))
		}()
		next.ServeHTTP(sw, r)
	})
}
