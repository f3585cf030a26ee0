// Package metrics holds the Prometheus instruments of one Lapis process
// (requests by route class, method and status; latencies; requests in
// flight; refusals by reason; rate-limit state; audit lag; the TLS
// certificate) in a registry of its own, and serves them at /metrics. Every method is
// safe on a nil *Metrics, so packages can take an optional observer.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lapis-health/lapis/internal/httpx"
)

// Metrics is the set of instruments of one process.
type Metrics struct {
	reg           *prometheus.Registry
	refused       *prometheus.CounterVec
	rlChecked     *prometheus.CounterVec
	rlBackendFail *prometheus.CounterVec
	auditQueued   *prometheus.CounterVec
	auditWritten  *prometheus.CounterVec
	auditLag      *prometheus.GaugeVec
	auditQueue    *prometheus.GaugeVec
	auditCopyLag  *prometheus.GaugeVec
	// audit is the audit series of one environment (ForEnv), bound to its
	// label once: the recorder updates them on every record.
	audit       auditSeries
	alertsSent  *prometheus.CounterVec
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	certExpiry  prometheus.Gauge
	certReloads *prometheus.CounterVec
	// series holds the request series already looked up (shared by the
	// copies ForEnv makes).
	series *requestSeries
}

// requestSeries remembers the request counter and latency histogram of
// each route class, method and status seen, so that a request does not
// look its labels up in both vectors again (two label hashes, a status
// formatted, on every request). The label values are fixed words and
// status codes: the set is as bounded as the series themselves.
type requestSeries struct {
	mu sync.RWMutex
	m  map[seriesKey]requestSeriesPair
}

type seriesKey struct {
	route, method string
	status        int
}

type requestSeriesPair struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// auditSeries are the audit instruments with one environment's label.
type auditSeries struct {
	queued, written     prometheus.Counter
	lag, queue, copyLag prometheus.Gauge
}

// bindAudit returns the audit series of environment env.
func (m *Metrics) bindAudit(env string) auditSeries {
	return auditSeries{queued: m.auditQueued.WithLabelValues(env), written: m.auditWritten.WithLabelValues(env),
		lag: m.auditLag.WithLabelValues(env), queue: m.auditQueue.WithLabelValues(env), copyLag: m.auditCopyLag.WithLabelValues(env)}
}

// New creates the instruments in a fresh registry (with the Go runtime and
// process collectors).
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_refusals_total", Help: "Requests refused by a gateway policy, by reason."}, []string{"reason"})
	m.rlChecked = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_ratelimit_checks_total", Help: "Rate-limit decisions by scope (client, patient, ip) and result."}, []string{"scope", "result"})
	m.rlBackendFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_ratelimit_backend_failures_total", Help: "Rate-limit checks the shared backend (Redis) could not answer, by the configured failure mode."}, []string{"mode"})
	env := []string{"env"}
	m.auditQueued = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_audit_records_queued_total", Help: "Audit records queued, by environment."}, env)
	m.auditWritten = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_audit_records_written_total", Help: "Audit records durably written, by environment."}, env)
	m.auditLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lapis_audit_lag_seconds", Help: "Age of the oldest audit record of the last written batch when it was written, by environment."}, env)
	m.auditQueue = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lapis_audit_queue_depth", Help: "Audit records waiting to be written, by environment."}, env)
	m.auditCopyLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lapis_audit_copy_lag_seconds", Help: "Age of the oldest audit record not yet searchable as an AuditEvent (0: the copy has caught up), by environment."}, env)
	m.alertsSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_alerts_total", Help: "Alerts raised, by rule and delivery result."}, []string{"rule", "result"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_http_requests_total", Help: "HTTP requests by route class, method and status code."}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lapis_http_request_duration_seconds", Help: "HTTP request latency by route class and method, until the handler returns.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "method"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lapis_http_requests_in_flight", Help: "HTTP requests being served."})
	m.certExpiry = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lapis_tls_certificate_expiry_timestamp_seconds", Help: "NotAfter of the TLS certificate being served (Unix time)."})
	m.certReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_tls_certificate_reloads_total", Help: "TLS certificate reloads after the files changed, by result."}, []string{"result"})
	m.reg.MustRegister(m.refused, m.rlChecked, m.rlBackendFail, m.auditQueued, m.auditWritten, m.auditLag, m.auditQueue, m.auditCopyLag, m.alertsSent,
		m.requests, m.latency, m.inFlight, m.certExpiry, m.certReloads)
	m.audit = m.bindAudit("production")
	m.series = &requestSeries{m: map[seriesKey]requestSeriesPair{}}
	return m
}

// ForEnv returns the instruments with the audit series labelled env
// (a process's production environment and its sandbox each have an audit
// trail); the other series are the process's, shared. "" is
// "production". Safe on nil.
func (m *Metrics) ForEnv(env string) *Metrics {
	if m == nil {
		return nil
	}
	if env == "" {
		env = "production"
	}
	c := *m
	c.audit = m.bindAudit(env)
	return &c
}

// Registry is the registry the instruments live in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Refused counts a request refused by a policy; reason is a fixed word
// such as "ratelimit", "ip_allowlist", "user_agent", "cors" or "authn".
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// RateLimitChecked counts a rate-limit decision for a scope ("client",
// "patient", "ip").
func (m *Metrics) RateLimitChecked(scope string, allowed bool) {
	if m == nil {
		return
	}
	m.rlChecked.WithLabelValues(scope, label(allowed, "allowed", "limited")).Inc()
}

// RateLimitBackendFailure counts a check the shared backend could not
// answer; failOpen says whether the request was admitted anyway.
func (m *Metrics) RateLimitBackendFailure(failOpen bool) {
	if m == nil {
		return
	}
	mode := "closed"
	if failOpen {
		mode = "open"
	}
	m.rlBackendFail.WithLabelValues(mode).Inc()
}

// AuditQueued counts records handed to the audit writer.
func (m *Metrics) AuditQueued(n int) {
	if m == nil {
		return
	}
	m.audit.queued.Add(float64(n))
}

// AuditWritten records a written batch of n records and its lag (age of
// its oldest record).
func (m *Metrics) AuditWritten(n int, lag time.Duration) {
	if m == nil {
		return
	}
	m.audit.written.Add(float64(n))
	m.audit.lag.Set(lag.Seconds())
}

// AuditCopyLag records how far searchable AuditEvents are behind the
// chain: the age of the oldest record not yet copied (0 when none is).
func (m *Metrics) AuditCopyLag(lag time.Duration) {
	if m == nil {
		return
	}
	m.audit.copyLag.Set(lag.Seconds())
}

// AuditQueueDepth records how many audit records wait to be written.
func (m *Metrics) AuditQueueDepth(n int) {
	if m == nil {
		return
	}
	m.audit.queue.Set(float64(n))
}

// AlertSent counts an alert raised by rule and whether its delivery
// succeeded.
func (m *Metrics) AlertSent(rule string, ok bool) {
	if m == nil {
		return
	}
	m.alertsSent.WithLabelValues(rule, label(ok, "delivered", "failed")).Inc()
}

// RequestStarted counts a request in flight; call the returned function
// when it ends with its route class (a fixed word such as "fhir.read",
// never a raw path), status code and duration.
func (m *Metrics) RequestStarted() func(route, method string, status int, d time.Duration) {
	if m == nil {
		return func(string, string, int, time.Duration) {}
	}
	m.inFlight.Inc()
	return func(route, method string, status int, d time.Duration) {
		m.inFlight.Dec()
		s := m.requestSeries(route, httpx.Method(method), status)
		s.count.Inc()
		s.latency.Observe(d.Seconds())
	}
}

// requestSeries returns the request series of route, meth and status,
// looked up in the vectors the first time only.
func (m *Metrics) requestSeries(route, meth string, status int) requestSeriesPair {
	k := seriesKey{route, meth, status}
	m.series.mu.RLock()
	s, ok := m.series.m[k]
	m.series.mu.RUnlock()
	if ok {
		return s
	}
	s = requestSeriesPair{count: m.requests.WithLabelValues(route, meth, strconv.Itoa(status)), latency: m.latency.WithLabelValues(route, meth)}
	m.series.mu.Lock()
	m.series.m[k] = s
	m.series.mu.Unlock()
	return s
}

// CertificateLoaded records the NotAfter of the certificate now served.
func (m *Metrics) CertificateLoaded(notAfter time.Time) {
	if m == nil {
		return
	}
	m.certExpiry.Set(float64(notAfter.Unix()))
}

// CertificateReload counts a reload attempt of changed certificate files.
func (m *Metrics) CertificateReload(ok bool) {
	if m == nil {
		return
	}
	m.certReloads.WithLabelValues(label(ok, "ok", "failed")).Inc()
}

// label is the label value of a two-way result: yes when ok, no otherwise.
func label(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}
