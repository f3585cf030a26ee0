package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNilSafe(t *testing.T) {
	var m *Metrics
	m.Refused("x")
	m.RateLimitChecked("client", true)
	m.RateLimitBackendFailure(true)
	m.AuditQueued(1)
	m.AuditWritten(1, time.Second)
	m.AuditQueueDepth(1)
	m.AuditCopyLag(time.Second)
	m.ForEnv("sandbox").AuditQueued(1)
	m.AlertSent("r", true)
	m.RequestStarted()("fhir.read", "GET", 200, time.Millisecond)
	m.CertificateLoaded(time.Now())
	m.CertificateReload(false)
}

func TestExposition(t *testing.T) {
	m := New()
	done := m.RequestStarted()
	mid := scrape(t, m)
	if !strings.Contains(mid, "lapis_http_requests_in_flight 1") {
		t.Fatal("in-flight not counted")
	}
	done("fhir.search-type", "BREW", 429, 3*time.Millisecond)
	m.Refused("ip_allowlist")
	m.CertificateLoaded(time.Unix(2000000000, 0))
	m.CertificateReload(true)
	body := scrape(t, m)
	for _, want := range []string{
		`lapis_http_requests_total{method="OTHER",route="fhir.search-type",status="429"} 1`,
		`lapis_http_request_duration_seconds_bucket{method="OTHER",route="fhir.search-type",le="0.005"} 1`,
		`lapis_http_requests_in_flight 0`,
		`lapis_refusals_total{reason="ip_allowlist"} 1`,
		`lapis_tls_certificate_expiry_timestamp_seconds 2e+09`,
		`lapis_tls_certificate_reloads_total{result="ok"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// TestAuditByEnv checks that each environment's audit trail has its own
// series: the sandbox's recorder must not overwrite production's gauges.
func TestAuditByEnv(t *testing.T) {
	m := New()
	m.ForEnv("").AuditCopyLag(90 * time.Second)
	m.ForEnv("sandbox").AuditCopyLag(0)
	m.ForEnv("production").AuditWritten(3, time.Second)
	m.ForEnv("sandbox").AuditQueued(2)
	body := scrape(t, m)
	for _, want := range []string{
		`lapis_audit_copy_lag_seconds{env="production"} 90`,
		`lapis_audit_copy_lag_seconds{env="sandbox"} 0`,
		`lapis_audit_records_written_total{env="production"} 3`,
		`lapis_audit_lag_seconds{env="production"} 1`,
		`lapis_audit_records_queued_total{env="sandbox"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// TestRequestSeriesRemembered: the request series are looked up once and
// then reused; every request still counts in its own series, through the
// environments' copies (ForEnv) as well.
func TestRequestSeriesRemembered(t *testing.T) {
	m := New()
	sb := m.ForEnv("sandbox")
	for range 3 {
		m.RequestStarted()("fhir.read", "GET", 200, time.Millisecond)
	}
	sb.RequestStarted()("fhir.read", "GET", 200, time.Millisecond)
	sb.RequestStarted()("fhir.read", "GET", 404, time.Millisecond)
	m.RequestStarted()("fhir.read", "HEAD", 200, time.Millisecond)
	body := scrape(t, m)
	for _, want := range []string{
		`lapis_http_requests_total{method="GET",route="fhir.read",status="200"} 4`,
		`lapis_http_requests_total{method="GET",route="fhir.read",status="404"} 1`,
		`lapis_http_requests_total{method="HEAD",route="fhir.read",status="200"} 1`,
		`lapis_http_request_duration_seconds_count{method="GET",route="fhir.read"} 5`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
