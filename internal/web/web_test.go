package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSecureSessionCookie: over https the session cookie is
// __Host-lapis_session: Secure, HttpOnly, SameSite=Lax, Path=/ and no
// Domain.
func TestSecureSessionCookie(t *testing.T) {
	m := &Sessions{Secure: true, Now: time.Now}
	w := httptest.NewRecorder()
	m.SetCookie(w, "tok", time.Now().Add(time.Hour))
	c := w.Header().Get("Set-Cookie")
	for _, want := range []string{"__Host-lapis_session=tok", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(c, want) {
			t.Errorf("cookie %q lacks %q", c, want)
		}
	}
	if strings.Contains(c, "Domain") {
		t.Errorf("cookie has a Domain: %q", c)
	}
	if got := (&Sessions{}).CookieName(); got != "lapis_session" {
		t.Errorf("plain http cookie name %q", got)
	}
}

// TestRedirectTo: parameters are appended to the URI's own query.
func TestRedirectTo(t *testing.T) {
	if got := RedirectTo("https://a/cb?x=1", url.Values{"state": {"a b"}}); got != "https://a/cb?x=1&state=a+b" {
		t.Error(got)
	}
	if got := RedirectTo("https://a/cb", url.Values{"code": {"c"}}); got != "https://a/cb?code=c" {
		t.Error(got)
	}
}

// TestCheckCSRF: the form's token must equal the session's; no session
// or an empty token never passes.
func TestCheckCSRF(t *testing.T) {
	sess := &Session{}
	sess.CSRF = "abc"
	for _, c := range []struct {
		sess *Session
		form string
		want bool
	}{{sess, "csrf=abc", true}, {sess, "csrf=abd", false}, {sess, "", false}, {nil, "csrf=abc", false}, {&Session{}, "csrf=", false}} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := ParseForm(httptest.NewRecorder(), r); err != nil {
			t.Fatal(err)
		}
		if got := CheckCSRF(c.sess, r); got != c.want {
			t.Errorf("CheckCSRF(%v, %q) = %v", c.sess != nil, c.form, got)
		}
	}
}
