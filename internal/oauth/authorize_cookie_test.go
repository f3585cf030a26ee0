package oauth

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSecureSessionCookie(t *testing.T) {
	s := &Server{cfg: Config{Issuer: "https://ehr.example/fhir"}, now: time.Now}
	s.initPages()
	w := httptest.NewRecorder()
	s.setSessionCookie(w, "tok", time.Now().Add(time.Hour))
	c := w.Header().Get("Set-Cookie")
	for _, want := range []string{"__Host-lapis_session=tok", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(c, want) {
			t.Errorf("cookie %q lacks %q", c, want)
		}
	}
	if strings.Contains(c, "Domain") {
		t.Errorf("cookie has a Domain: %q", c)
	}
	if got := redirectTo("https://a/cb?x=1", url.Values{"state": {"a b"}}); got != "https://a/cb?x=1&state=a+b" {
		t.Error(got)
	}
}
