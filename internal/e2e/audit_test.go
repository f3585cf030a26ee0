package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

type auditServer struct {
	*instance
	stream string
}

// startAudited starts lapis serve at debug level with the audit stream in
// a file.
func startAudited(t *testing.T, dbURL string) *auditServer {
	t.Helper()
	dir := t.TempDir()
	stream := filepath.Join(dir, "audit.jsonl")
	in := serve(t, lapistest.Options{DataDir: dir, Database: dbURL,
		Args: []string{"--log-level", "debug", "--audit-stream", stream, "--alert-auth-failures", "2"}})
	return &auditServer{instance: in, stream: stream}
}

// cli runs a lapis command on the server's database and decodes its JSON.
func (s *auditServer) cli(t *testing.T, stdin string, v any, args ...string) {
	t.Helper()
	out := s.MustCLI(t, stdin, args...)
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("lapis %v output %q: %v", args, out, err)
		}
	}
}

// secrets collects every credential the test uses.
type secrets struct{ list []string }

func (s *secrets) add(t *testing.T, v ...string) {
	for _, x := range v {
		if len(x) < 8 {
			t.Fatalf("secret %q too short to search for", x)
		}
		s.list = append(s.list, x)
	}
}

func form(t *testing.T, c *http.Client, u string, f url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)"`)
var scopeRE = regexp.MustCompile(`<input[^>]*name="scope"[^>]*value="([^"]*)"`)

func hiddenInputs(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
	}
	return v
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	forDialects(t, testAuditTrail)
}

func testAuditTrail(t *testing.T, dbURL string) {
	s := startAudited(t, dbURL)
	var sec secrets
	var key struct{ Key, ID string }
	s.cli(t, "", &key, "apikey", "create", "--name", "writer", "--scope", "system/*.cruds", "--json")
	sec.add(t, key.Key)
	s.apiKey = key.Key

	// FHIR interactions with an API key (one with a credential in the query).
	p := s.do("POST", "/Patient", patient("Audited")).expect(t, 201)
	pid := str(p.body, "id")
	obs := map[string]any{"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "x"}, "subject": map[string]any{"reference": "Patient/" + pid}}
	s.do("POST", "/Observation", obs).expect(t, 201)
	s.do("GET", "/Patient/"+pid, nil).expect(t, 200)
	s.do("GET", "/Observation?patient="+pid+"&api_key="+url.QueryEscape(key.Key)+"&access_token="+url.QueryEscape(key.Key), nil).expect(t, 200)
	s.do("PUT", "/Patient/"+pid, map[string]any{"resourceType": "Patient", "id": pid, "active": true}).expect(t, 200)
	s.do("POST", "/Patient/_search", "name=audited&password="+url.QueryEscape(key.Key), "Content-Type", "application/x-www-form-urlencoded").expect(t, 200)

	// Writes wait for their record: the chain holds it when 201 arrives.
	adb, err := audit.OpenDB(context.Background(), dbURL, s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	created := s.do("POST", "/Patient", patient("Waited")).expect(t, 201)
	if !chainHas(t, adb, "Patient/"+str(created.body, "id")+"/_history/1") {
		t.Fatal("a create was acknowledged before its audit record was written")
	}

	// Client credentials with a secret, Basic, revocation.
	var cc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	s.cli(t, "", &cc, "client", "create", "--name", "cc", "--type", "confidential", "--scope", "system/*.rs", "--json")
	sec.add(t, cc.ClientSecret)
	st, tok := form(t, nil, s.base+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, cc.ClientID, cc.ClientSecret)
	if st != 200 {
		t.Fatalf("client_credentials: %d %v", st, tok)
	}
	ccTok := str(tok, "access_token")
	sec.add(t, ccTok)
	s.do("GET", "/Patient/"+pid, nil, "X-API-Key", "", "Authorization", "Bearer "+ccTok).expect(t, 200)
	// A non-admin credential sees no AuditEvent anywhere.
	s.do("GET", "/AuditEvent", nil, "X-API-Key", "", "Authorization", "Bearer "+ccTok).expect(t, 403).outcome(t)
	wrong := "WRONG-secret-" + randomHex(t)
	sec.add(t, wrong)
	if st, _ := form(t, nil, s.base+"/auth/token", url.Values{"grant_type": {"client_credentials"}}, cc.ClientID, wrong); st != 401 {
		t.Fatalf("wrong secret: %d", st)
	}
	s.cli(t, "", nil, "client", "basic", "enable", cc.ClientID, "--json")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(cc.ClientID+":"+cc.ClientSecret))
	s.do("GET", "/Patient/"+pid, nil, "X-API-Key", "", "Authorization", basic).expect(t, 200)
	if st, _ := form(t, nil, s.base+"/auth/revoke", url.Values{"token": {ccTok}}, cc.ClientID, cc.ClientSecret); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	// The revocation reaches the token cache (through the revocation log).
	poll.Until(t, 10*time.Second, "revoked token refused", func() bool {
		return s.do("GET", "/Patient/"+pid, nil, "X-API-Key", "", "Authorization", "Bearer "+ccTok).status == 401
	})
	bogus := "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJvZ3Vz"
	sec.add(t, strings.TrimPrefix(bogus, "Bearer "))
	s.do("GET", "/Patient/"+pid, nil, "X-API-Key", "", "Authorization", bogus).expect(t, 401)

	// Authorization code + PKCE, refresh, revoke, failed login.
	password := "correct horse " + randomHex(t)
	sec.add(t, password)
	s.cli(t, password+"\n", nil, "user", "create", "--username", "alice", "--password-stdin", "--fhir-user", "Patient/"+pid, "--json")
	var app struct {
		ClientID string `json:"client_id"`
	}
	redirect := "http://127.0.0.1:9/cb"
	s.cli(t, "", &app, "client", "create", "--name", "app", "--type", "public", "--redirect-uri", redirect,
		"--scope", patientAppScopes, "--json")
	q, verifier := pkceAuthorization(t, s.base, app.ClientID, redirect)
	sec.add(t, verifier)
	jar, _ := cookiejar.New(nil)
	br := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	loginPage := getPage(t, br, s.base+"/auth/authorize?"+q.Encode())
	f := hiddenInputs(loginPage)
	badPW := "WRONG-password-" + randomHex(t)
	sec.add(t, badPW)
	f.Set("username", "alice")
	f.Set("password", badPW)
	postPage(t, br, s.base+"/auth/login", f)
	f.Set("password", password)
	consent := postPage(t, br, s.base+"/auth/login", f)
	code := approve(t, br, s.base+"/auth/consent", consent)
	sec.add(t, code)
	st, tok = form(t, nil, s.base+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {app.ClientID}, "code_verifier": {verifier}}, "", "")
	if st != 200 {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	userTok, refresh := str(tok, "access_token"), str(tok, "refresh_token")
	sec.add(t, userTok, refresh, str(tok, "id_token"))
	s.do("GET", "/Patient/"+pid, nil, "X-API-Key", "", "Authorization", "Bearer "+userTok).expect(t, 200)
	st, tok = form(t, nil, s.base+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {app.ClientID}}, "", "")
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, tok)
	}
	sec.add(t, str(tok, "access_token"), str(tok, "refresh_token"))
	if st, _ := form(t, nil, s.base+"/auth/revoke", url.Values{"token": {str(tok, "refresh_token")}, "client_id": {app.ClientID}}, "", ""); st != 200 {
		t.Fatalf("revoke refresh: %d", st)
	}

	// API keys: rotate and revoke through the CLI; create, use, rotate and
	// revoke through the admin API.
	var rot struct{ Key, ID string }
	s.cli(t, "", &rot, "apikey", "rotate", key.ID, "--grace", "0s", "--json")
	sec.add(t, rot.Key)
	s.apiKey = rot.Key
	s.do("GET", "/Patient/"+pid, nil).expect(t, 200)
	var admin struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	s.cli(t, "", &admin, "client", "create", "--name", "admin", "--type", "confidential", "--scope", "system/lapis.admin", "--json")
	sec.add(t, admin.ClientSecret)
	st, tok = form(t, nil, s.base+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/lapis.admin"}}, admin.ClientID, admin.ClientSecret)
	if st != 200 {
		t.Fatalf("admin token: %d %v", st, tok)
	}
	adminTok := str(tok, "access_token")
	sec.add(t, adminTok)
	asAdmin := []string{"X-API-Key", "", "Authorization", "Bearer " + adminTok}
	k3 := s.do("POST", s.base+"/auth/admin/apikeys", map[string]any{"name": "via-admin", "scopes": []string{"system/Patient.rs"}}, append(asAdmin, "Content-Type", "application/json")...).expect(t, 201)
	sec.add(t, str(k3.body, "key"))
	s.do("GET", "/Patient/"+pid, nil, "X-API-Key", str(k3.body, "key")).expect(t, 200)
	k4 := s.do("POST", s.base+"/auth/admin/apikeys/"+str(k3.body, "id")+"/rotate", map[string]any{"grace": "0s"}, append(asAdmin, "Content-Type", "application/json")...)
	if k4.status != 201 {
		t.Fatalf("admin rotate: %d %s", k4.status, k4.raw)
	}
	sec.add(t, str(k4.body, "key"))
	s.do("DELETE", s.base+"/auth/admin/apikeys/"+str(k4.body, "id"), nil, asAdmin...)

	// A refused scanner: a network refusal in the trail, and an alert.
	if r := s.do("GET", "/Patient/"+pid, nil, "User-Agent", "sqlmap/1.8"); r.status != 403 {
		t.Errorf("scanner user agent: %d", r.status)
	}

	// Admin-only, read-only AuditEvents.
	s.do("GET", "/AuditEvent", nil).expect(t, 403).outcome(t)
	for _, q := range []string{"/Patient?_id=" + pid + "&_revinclude=AuditEvent:patient", "/Patient?_id=" + pid + "&_revinclude=AuditEvent:entity",
		"/Patient?_has:AuditEvent:patient:action=R", "/?_type=AuditEvent", "/_history?_count=500"} {
		b := s.do("GET", q, nil).expect(t, 200)
		if bytes.Contains(b.raw, []byte(`"resourceType":"AuditEvent"`)) {
			t.Errorf("%s: a non-admin saw an AuditEvent", q)
		}
	}
	// Reads are audited asynchronously: wait for their AuditEvents.
	var all *response
	poll.Try(10*time.Second, func() bool {
		all = s.do("GET", "/AuditEvent?patient="+pid+"&subtype=read&_count=100", nil, asAdmin...).expect(t, 200)
		n, _ := all.body["total"].(float64)
		return n >= 2
	})
	es := ids(t, all.body, "match")
	if len(es) < 2 {
		t.Fatalf("admin search by patient found %d reads", len(es))
	}
	one := s.do("GET", "/"+es[0], nil, asAdmin...).expect(t, 200)
	for _, want := range []string{`"code":"rest"`, `"action":"R"`, `"reference":"Patient/` + pid + `"`, `"address":"127.0.0.1"`, `"code":"110153"`} {
		if !bytes.Contains(one.raw, []byte(want)) {
			t.Errorf("AuditEvent lacks %s: %s", want, one.raw)
		}
	}
	for _, q := range []string{"action=C", "type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest", "outcome=0", "address=127.0.0.1",
		"entity-role=24", "date=ge2020-01-01", "subtype=http://dicom.nema.org/resources/ontology/DCM|110122", "entity=Patient/" + pid} {
		b := s.do("GET", "/AuditEvent?_summary=count&"+q, nil, asAdmin...).expect(t, 200)
		if n, _ := b.body["total"].(float64); n < 1 {
			t.Errorf("AuditEvent?%s: total %v", q, b.body["total"])
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		path := "/" + es[0]
		if m == "POST" {
			path = "/AuditEvent"
		}
		r := s.do(m, path, one.body, asAdmin...)
		if r.status != 405 {
			t.Errorf("admin %s %s: %d", m, path, r.status)
		}
		r.outcome(t)
	}
	tx := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{map[string]any{"resource": map[string]any{"resourceType": "AuditEvent"},
		"request": map[string]any{"method": "POST", "url": "AuditEvent"}}}}
	if r := s.do("POST", "", tx); r.status < 400 {
		t.Errorf("transaction creating an AuditEvent: %d", r.status)
	}

	// The audit series on /metrics (an alert counted in shared windows,
	// on PostgreSQL, comes within their flush: a second).
	var m []byte
	poll.Until(t, 30*time.Second, "the auth_failures alert on /metrics", func() bool {
		resp, err := http.Get(strings.TrimSuffix(s.base, "/fhir") + "/metrics")
		if err != nil {
			return false
		}
		m, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return bytes.Contains(m, []byte(`lapis_alerts_total{result="delivered",rule="auth_failures"}`))
	})
	for _, series := range []string{"lapis_audit_records_written_total", "lapis_audit_records_queued_total", "lapis_audit_queue_depth", "lapis_audit_lag_seconds", "lapis_audit_copy_lag_seconds"} {
		if !bytes.Contains(m, []byte(series)) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if !bytes.Contains(m, []byte(`lapis_audit_records_written_total{env="production"} `)) || bytes.Contains(m, []byte(`lapis_audit_records_written_total{env="production"} 0`+"\n")) {
		t.Error("no audit record counted as written")
	}

	// Dump every AuditEvent (as the admin) before stopping.
	var dump bytes.Buffer
	next := s.base + "/AuditEvent?_count=500"
	for next != "" {
		b := s.do("GET", next, nil, asAdmin...).expect(t, 200)
		dump.Write(b.raw)
		next = link(b.body, "next")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stream, err := os.ReadFile(s.stream)
	if err != nil {
		t.Fatal(err)
	}
	logs := s.Logs()
	if !strings.Contains(logs, `"level":"DEBUG"`) && !strings.Contains(logs, "audit chain head") {
		t.Log("note: no debug lines were logged")
	}
	for _, x := range sec.list {
		for name, hay := range map[string]string{"logs": logs, "stream": string(stream), "AuditEvents": dump.String()} {
			if strings.Contains(hay, x) || strings.Contains(hay, url.QueryEscape(x)) || strings.Contains(hay, base64.StdEncoding.EncodeToString([]byte(x))) {
				t.Errorf("a secret (%.6s…) appears in the %s", x, name)
			}
		}
	}
	t.Logf("searched %d secrets in %d bytes of logs, %d of stream, %d of AuditEvents: no hits", len(sec.list), len(logs), len(stream), dump.Len())
	for _, kind := range []string{"login.failure", "login", "consent", "token.issued", "token.refreshed", "token.revoked", "token.failure",
		"authn.failure", "apikey.created", "apikey.rotated", "apikey.revoked", "apikey.used", "network.refused"} {
		if !bytes.Contains(stream, []byte(`"code":"`+kind+`"`)) {
			t.Errorf("no %s event in the audit stream", kind)
		}
	}
	for _, rule := range []string{audit.RuleAuthFailures, audit.RuleRefused} {
		if !strings.Contains(logs, `"msg":"audit alert","rule":"`+rule+`"`) {
			t.Errorf("no %s alert logged", rule)
		}
	}

	// Verify, then tamper and verify again.
	out, errOut, codeRC := s.lapis("audit", "verify", "--json", "--anchors", s.stream)
	var rep audit.Report
	if codeRC != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Records < 20 {
		t.Fatalf("verify: %d %s %s", codeRC, out, errOut)
	}
	headsOut, errOut, codeRC := s.lapis("audit", "heads")
	headsFile := filepath.Join(s.dataDir, "heads.jsonl")
	if codeRC != 0 || os.WriteFile(headsFile, []byte(headsOut), 0o600) != nil {
		t.Fatalf("audit heads: %d %s", codeRC, errOut)
	}
	rows, err := adb.Page(context.Background(), firstChain(t, adb), 0, 10)
	if err != nil || len(rows) < 10 {
		t.Fatalf("rows: %v %v", len(rows), err)
	}
	ch := rows[0].Chain
	sqlExec := func(q string, args ...any) {
		if adb.Postgres() {
			n := 0
			q = regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return fmt.Sprintf("$%d", n) })
		}
		if _, err := adb.SQL().Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	sqlExec("UPDATE audit_record SET body = ? WHERE chain_id = ? AND seq = 2", bytes.Replace(rows[1].Body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1), ch)
	sqlExec("DELETE FROM audit_record WHERE chain_id = ? AND seq = 5", ch)
	sqlExec("UPDATE audit_record SET seq = -1 WHERE chain_id = ? AND seq = 7", ch)
	sqlExec("UPDATE audit_record SET seq = 7 WHERE chain_id = ? AND seq = 8", ch)
	sqlExec("UPDATE audit_record SET seq = 8 WHERE chain_id = ? AND seq = -1", ch)
	heads, err := adb.Heads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for _, h := range heads {
		if h.Chain == ch {
			last = h.Seq
		}
	}
	sqlExec("DELETE FROM audit_record WHERE chain_id = ? AND seq = ?", ch, last)
	out, _, codeRC = s.lapis("audit", "verify", "--json", "--anchors", headsFile)
	rep = audit.Report{}
	if codeRC == 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.OK {
		t.Fatalf("verify after tampering: exit %d %s", codeRC, out)
	}
	found := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Chain == ch {
			found[fmt.Sprintf("%s@%d", f.Kind, f.Seq)] = true
		}
	}
	for _, want := range []string{"modified@2", "deleted@5", "reordered@7", "reordered@8", fmt.Sprintf("truncated@%d", last)} {
		if !found[want] {
			t.Errorf("verify did not report %s: %s", want, out)
		}
	}
	text, _, _ := s.lapis("audit", "verify")
	if !strings.Contains(text, "FAILED") || !strings.Contains(text, "reordered: "+ch+" seq 7") {
		t.Errorf("text report: %s", text)
	}
}

func chainHas(t *testing.T, db *audit.DB, ref string) bool {
	t.Helper()
	chains, err := db.Chains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		for after := int64(0); ; {
			rows, err := db.Page(context.Background(), ch, after, 500)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				break
			}
			for _, r := range rows {
				if bytes.Contains(r.Body, []byte(`"reference":"`+ref+`"`)) {
					return true
				}
			}
			after = rows[len(rows)-1].Seq
		}
	}
	return false
}

// firstChain is the server's chain (the CLI commands made their own).
func firstChain(t *testing.T, db *audit.DB) string {
	t.Helper()
	chains, err := db.Chains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	best, n := "", 0
	for _, ch := range chains {
		rows, _ := db.Page(context.Background(), ch, 0, 1000)
		if len(rows) > n {
			best, n = ch, len(rows)
		}
	}
	return best
}

func randomHex(t *testing.T) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(t.Name()+time.Now().String())))[:16]
}

// approve approves every scope of the consent page with br (which must
// not follow the redirect to the app) at consentURL and returns the
// authorization code of the redirect.
func approve(t *testing.T, br *http.Client, consentURL, consent string) string {
	t.Helper()
	cf := hiddenInputs(consent)
	cf.Set("decision", "approve")
	for _, m := range scopeRE.FindAllStringSubmatch(consent, -1) {
		cf.Add("scope", m[1])
	}
	req, _ := http.NewRequest("POST", consentURL, strings.NewReader(cf.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := br.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("consent at %s answered %d, Location %q:\n%s", consentURL, resp.StatusCode, resp.Header.Get("Location"), truncate([]byte(consent)))
	}
	return code
}

// patientAppScopes are the scopes of the public app whose authorization
// code flow the tests run.
const patientAppScopes = "launch/patient openid fhirUser offline_access patient/*.rs"

// pkceAuthorization returns the query of an authorization request (PKCE,
// S256) of the public app clientID for the FHIR base aud, redirecting to
// redirect, with patientAppScopes, and the code verifier that redeems its
// code.
func pkceAuthorization(t *testing.T, aud, clientID, redirect string) (q url.Values, verifier string) {
	verifier = "verifier-" + randomHex(t) + randomHex(t) + randomHex(t)
	sum := sha256.Sum256([]byte(verifier))
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"scope": {patientAppScopes}, "state": {"st-12345678"}, "aud": {aud},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}, verifier
}

func getPage(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return doPage(t, c, req)
}

func postPage(t *testing.T, c *http.Client, u string, f url.Values) string {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return doPage(t, c, req)
}

// doPage sends req with c and returns the body of its response.
func doPage(t *testing.T, c *http.Client, req *http.Request) string {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
