package landing

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLanding: the page links the FHIR base, the CapabilityStatement, the
// SMART configuration and the sign-in pages by path, loads nothing from
// elsewhere, and its CSP admits exactly its inline style.
func TestLanding(t *testing.T) {
	h := Handler("https://ehr.example/fhir/", Options{Sandbox: "https://ehr.example/sandbox/fhir", Portal: "https://ehr.example/portal/"})
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	body := rr.Body.String()
	if rr.Code != 200 || rr.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %s", rr.Code, rr.Header().Get("Content-Type"))
	}
	for _, want := range []string{`href="/fhir/metadata"`, `href="/fhir/.well-known/smart-configuration"`, `href="/fhir"`,
		`href="/fhir/auth/apps"`, `href="/fhir/auth/launch"`, `https://ehr.example/fhir<`, `href="/portal/"`, `href="/sandbox/fhir/metadata"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Nothing external or active: no scripts, no src, no link elements,
	// no URL with a scheme other than the displayed base.
	lower := strings.ToLower(body)
	for _, bad := range []string{"<script", " src=", "<link", "@import", "url(", "<iframe", "<form", "<img"} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if regexp.MustCompile(`\son[a-z]+\s*=`).MatchString(lower) {
		t.Error("page has an event handler attribute")
	}
	if n := strings.Count(lower, "https://"); n != 1 {
		t.Errorf("%d absolute URLs in the page", n)
	}
	csp := rr.Header().Get("Content-Security-Policy")
	m := regexp.MustCompile(`(?s)<style>(.*)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no style element")
	}
	sum := sha256.Sum256([]byte(m[1]))
	wantCSP := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if csp != wantCSP {
		t.Errorf("CSP %q, want %q", csp, wantCSP)
	}
	// HEAD: headers only.
	rr = httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("HEAD", "/", nil))
	if rr.Code != 200 || rr.Body.Len() != 0 || rr.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %s", rr.Code, rr.Body.Len(), rr.Header().Get("Content-Length"))
	}
}

// TestLandingRootBase: a FHIR base at the root of the host keeps usable
// links.
func TestLandingRootBase(t *testing.T) {
	rr := httptest.NewRecorder()
	Handler("http://127.0.0.1:8080", Options{}).ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rr.Body.String()
	if !strings.Contains(body, `href="/metadata"`) || !strings.Contains(body, `href="/"`) || strings.Contains(body, `href=""`) {
		t.Errorf("links of a root base: %s", body)
	}
}
