// Package metrics holds the Prometheus instruments of one Lapis process
// (requests, latencies, refusals by reason, rate-limit state, audit lag)
// in a registry of its own, and serves them at /metrics. Every method is
// safe on a nil *Metrics, so packages can take an optional observer.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of instruments of one process.
type Metrics struct {
	reg           *prometheus.Registry
	refused       *prometheus.CounterVec
	rlChecked     *prometheus.CounterVec
	rlBackendFail *prometheus.CounterVec
	auditQueued   prometheus.Counter
	auditWritten  prometheus.Counter
	auditLag      prometheus.Gauge
	auditQueue    prometheus.Gauge
	alertsSent    *prometheus.CounterVec
}

// New creates the instruments in a fresh registry (with the Go runtime and
// process collectors).
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_refusals_total", Help: "Requests refused by a gateway policy, by reason."}, []string{"reason"})
	m.rlChecked = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_ratelimit_checks_total", Help: "Rate-limit decisions by scope (client, patient, ip) and result."}, []string{"scope", "result"})
	m.rlBackendFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_ratelimit_backend_failures_total", Help: "Rate-limit checks the shared backend (Redis) could not answer, by the configured failure mode."}, []string{"mode"})
	m.auditQueued = prometheus.NewCounter(prometheus.CounterOpts{Name: "lapis_audit_records_queued_total", Help: "Audit records queued."})
	m.auditWritten = prometheus.NewCounter(prometheus.CounterOpts{Name: "lapis_audit_records_written_total", Help: "Audit records durably written."})
	m.auditLag = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lapis_audit_lag_seconds", Help: "Age of the oldest audit record of the last written batch when it was written."})
	m.auditQueue = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lapis_audit_queue_depth", Help: "Audit records waiting to be written."})
	m.alertsSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lapis_alerts_total", Help: "Alerts raised, by rule and delivery result."}, []string{"rule", "result"})
	m.reg.MustRegister(m.refused, m.rlChecked, m.rlBackendFail, m.auditQueued, m.auditWritten, m.auditLag, m.auditQueue, m.alertsSent)
	return m
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
	r := "allowed"
	if !allowed {
		r = "limited"
	}
	m.rlChecked.WithLabelValues(scope, r).Inc()
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
	m.auditQueued.Add(float64(n))
}

// AuditWritten records a written batch of n records and its lag (age of
// its oldest record).
func (m *Metrics) AuditWritten(n int, lag time.Duration) {
	if m == nil {
		return
	}
	m.auditWritten.Add(float64(n))
	m.auditLag.Set(lag.Seconds())
}

// AuditQueueDepth records how many audit records wait to be written.
func (m *Metrics) AuditQueueDepth(n int) {
	if m == nil {
		return
	}
	m.auditQueue.Set(float64(n))
}

// AlertSent counts an alert raised by rule and whether its delivery
// succeeded.
func (m *Metrics) AlertSent(rule string, ok bool) {
	if m == nil {
		return
	}
	r := "delivered"
	if !ok {
		r = "failed"
	}
	m.alertsSent.WithLabelValues(rule, r).Inc()
}
