package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSignupDoesNotRevealAccounts: signing up with an address that has an
// account answers exactly as a new sign-up (status and text, page and
// API); the owner of the address is mailed a notice instead of a link.
func TestSignupDoesNotRevealAccounts(t *testing.T) {
	e := newEnv(t, nil)
	body := map[string]string{"email": "taken@example.org", "password": "correct horse battery", "name": "T"}
	st1, out1, _ := e.api("POST", "/portal/api/signup", "", body)
	if st1 != 201 {
		t.Fatalf("first sign-up: %d %v", st1, out1)
	}
	before := len(e.mail.Messages())
	st2, out2, _ := e.api("POST", "/portal/api/signup", "", body)
	if st2 != st1 || out2["status"] != out1["status"] || out2["email"] != out1["email"] || out2["error"] != nil {
		t.Fatalf("existing address told apart: %d %v vs %d %v", st2, out2, st1, out1)
	}
	if len(e.mail.Messages()) != before+1 {
		t.Fatalf("no notice mailed to the existing account")
	}
	m, _ := e.mail.Last("taken@example.org")
	if strings.Contains(m.Body, "token=") || !strings.Contains(m.Body, "already") {
		t.Fatalf("notice: %q", m.Body)
	}

	// The page: the same "Check your email" answer.
	c := e.browser()
	signup := func(email string) (int, string) {
		_, _, csrf := e.get(c, "/portal/signup")
		res, b := e.post(c, "/portal/signup", url.Values{"csrf": {csrf}, "email": {email}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
		return res.StatusCode, strings.ReplaceAll(b, email, "EMAIL")
	}
	stNew, _ := signup("fresh@example.org")
	stOld, bOld := signup("taken@example.org")
	if stNew != http.StatusOK || stOld != stNew || !strings.Contains(bOld, "Check your email") || strings.Contains(bOld, "exists") {
		t.Fatalf("page tells an existing address apart: %d vs %d\n%s", stOld, stNew, bOld)
	}
}
