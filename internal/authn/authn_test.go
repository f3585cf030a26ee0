package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/testutil/authtest"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/logbuf"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

const issuer = "https://lapis.example/fhir"

// countingStore counts API key lookups (to prove bad checksums cost none).
type countingStore struct {
	*authdb.DB
	lookups atomic.Int32
}

func (c *countingStore) APIKeyByHash(ctx context.Context, h []byte) (*authdb.APIKey, error) {
	c.lookups.Add(1)
	return c.DB.APIKeyByHash(ctx, h)
}

type env struct {
	t      testing.TB
	db     *authdb.DB
	km     *keys.Manager
	store  *countingStore
	srv    *httptest.Server
	h      http.Handler
	offset atomic.Int64 // the middleware's clock runs this far ahead
	logs   *logbuf.Buffer
}

func newEnv(t testing.TB, dialect string) *env {
	t.Helper()
	db, km, _ := authtest.Stores(t, dialect)
	e := &env{t: t, db: db, km: km, store: &countingStore{DB: db}, logs: &logbuf.Buffer{}}
	v := oauth.NewVerifier(oauth.VerifierConfig{Issuer: issuer, Audience: issuer, Keys: km, Revocations: db})
	mw := authn.New(authn.Config{Verifier: v, APIKeys: e.store, Basic: db,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }})
	e.h = mw(http.HandlerFunc(echo))
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// echo answers the Principal as JSON.
func echo(w http.ResponseWriter, r *http.Request) {
	p := principal.FromContext(r.Context())
	if p == nil {
		http.Error(w, "no principal", 500)
		return
	}
	_ = json.NewEncoder(w).Encode(p)
}

// dialects runs f as a subtest (or sub-benchmark) on an env of each
// dialect.
func dialects[T dbtest.Runner[T]](t T, f func(t T, e *env)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t T) { f(t, newEnv(t, d)) })
	}
}

// token signs an access token with the server's key; mod edits the claims.
func (e *env) token(mod func(c *oauth.AccessClaims)) (string, *oauth.AccessClaims) {
	now := time.Now()
	c := &oauth.AccessClaims{Issuer: issuer, Audience: issuer, Subject: "sub-1", ClientID: "app", Scope: "patient/*.rs openid",
		Patient: "p1", FHIRUser: issuer + "/Practitioner/pr1", IssuedAt: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: "jti-" + now.Format("150405.000000000")}
	if mod != nil {
		mod(c)
	}
	b, _ := json.Marshal(c)
	tok, err := e.km.Sign(context.Background(), keys.AccessTokenAlg, oauth.AccessTokenType, b)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok, c
}

// apiKey creates a key directly in the store.
func (e *env) apiKey(k authdb.APIKey) string {
	key, prefix, h, err := apikey.New()
	if err != nil {
		e.t.Fatal(err)
	}
	if k.ID == "" {
		k.ID, _ = apikey.NewID()
	}
	if k.Name == "" {
		k.Name = "test"
	}
	if k.Scopes == nil {
		k.Scopes = []string{"system/*.rs"}
	}
	k.Hash, k.Prefix = h, prefix
	if err := e.db.CreateAPIKey(context.Background(), &k); err != nil {
		e.t.Fatal(err)
	}
	return key
}

type result struct {
	status int
	hdr    http.Header
	body   []byte
	p      principal.Principal
}

func (e *env) do(hdrs ...string) result {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/Patient/1", nil)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Add(hdrs[i], hdrs[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, hdr: resp.Header, body: b}
	if r.status == 200 {
		if err := json.Unmarshal(b, &r.p); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// want401 checks a rejection: status, challenge error and an
// OperationOutcome body that says nothing internal.
func want401(t *testing.T, r result, errParam string) {
	t.Helper()
	if r.status != 401 {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	ch := r.hdr.Values("WWW-Authenticate")
	if len(ch) == 0 || !strings.HasPrefix(ch[0], `Bearer realm="lapis"`) {
		t.Fatalf("challenge %q", ch)
	}
	if errParam == "" && strings.Contains(ch[0], "error=") || errParam != "" && !strings.Contains(ch[0], `error="`+errParam+`"`) {
		t.Fatalf("challenge %q, want error %q", ch[0], errParam)
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Severity, Code, Diagnostics string }
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "login" {
		t.Fatalf("body %s", r.body)
	}
	if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("content type %q", ct)
	}
	// Every invalid credential gets the same body, whatever the reason.
	if errParam == "invalid_token" && oo.Issue[0].Diagnostics != "The credential is invalid, expired or revoked" {
		t.Fatalf("diagnostics %q", oo.Issue[0].Diagnostics)
	}
}

func basicHdr(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func TestMissingAndMalformed(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		r := e.do()
		want401(t, r, "")
		if len(r.hdr.Values("WWW-Authenticate")) != 1 {
			t.Fatalf("basic challenge offered while no client has basic: %q", r.hdr.Values("WWW-Authenticate"))
		}
		key := e.apiKey(authdb.APIKey{})
		tok, _ := e.token(nil)
		for name, h := range map[string][]string{
			"bearer without token": {"Authorization", "Bearer"},
			"bearer blank":         {"Authorization", "Bearer   "},
			"unknown scheme":       {"Authorization", "Digest username=x"},
			"basic not base64":     {"Authorization", "Basic !!!"},
			"basic without colon":  {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("abc"))},
			"two credentials":      {"Authorization", "Bearer " + tok, "X-API-Key", key},
			"two authorizations":   {"Authorization", "Bearer " + tok, "Authorization", "Bearer " + tok},
		} {
			t.Run(name, func(t *testing.T) { want401(t, e.do(h...), "invalid_request") })
		}
	})
}

func TestBearer(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		tok, c := e.token(nil)
		r := e.do("Authorization", "Bearer "+tok)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		want := principal.Principal{Method: "bearer", ClientID: "app", Subject: "sub-1", FHIRUser: "Practitioner/pr1", Scopes: []string{"patient/*.rs", "openid"}, Patient: "p1", TokenID: c.ID}
		if got, _ := json.Marshal(r.p); string(got) != string(must(json.Marshal(want))) {
			t.Fatalf("principal %s", got)
		}
		if r := e.do("Authorization", "bearer "+tok); r.status != 200 {
			t.Fatalf("scheme is case-insensitive: %d", r.status)
		}
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		sig[10] ^= 'A' ^ 'B'
		if sig[10] == parts[2][10] {
			sig[10] = 'C'
		}
		badSig := parts[0] + "." + parts[1] + "." + string(sig)
		expired, _ := e.token(func(c *oauth.AccessClaims) { c.Expiry = time.Now().Add(-time.Minute).Unix() })
		notYet, _ := e.token(func(c *oauth.AccessClaims) { c.NotBefore = time.Now().Add(time.Hour).Unix() })
		wrongAud, _ := e.token(func(c *oauth.AccessClaims) { c.Audience = "https://elsewhere/fhir" })
		wrongIss, _ := e.token(func(c *oauth.AccessClaims) { c.Issuer = "https://evil.example/fhir" })
		revoked, rc := e.token(func(c *oauth.AccessClaims) { c.ID = "to-revoke" })
		if r := e.do("Authorization", "Bearer "+revoked); r.status != 200 {
			t.Fatalf("before revocation: %d", r.status)
		}
		if err := e.db.RevokeToken(context.Background(), rc.ID, time.Unix(rc.Expiry, 0)); err != nil {
			t.Fatal(err)
		}
		for name, tk := range map[string]string{
			"bad signature": badSig, "expired": expired, "not yet valid": notYet, "wrong audience": wrongAud,
			"wrong issuer": wrongIss, "revoked (cached before)": revoked, "garbage": "abc.def.ghi", "not a jwt": "hello",
		} {
			t.Run(name, func(t *testing.T) { want401(t, e.do("Authorization", "Bearer "+tk), "invalid_token") })
		}
		if strings.Contains(e.logs.String(), tok[len(tok)-20:]) || strings.Contains(e.logs.String(), parts[2][:20]) {
			t.Fatal("token logged")
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestAPIKeys(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		key := e.apiKey(authdb.APIKey{ID: "ak_pat", Scopes: []string{"patient/Observation.rs"}, Patient: "p9"})
		for _, h := range [][]string{{"Authorization", "Bearer " + key}, {"X-API-Key", key}} {
			r := e.do(h...)
			if r.status != 200 || r.p.Method != "apikey" || r.p.ClientID != "ak_pat" || r.p.TokenID != "ak_pat" || r.p.Patient != "p9" ||
				len(r.p.Scopes) != 1 || r.p.Scopes[0] != "patient/Observation.rs" || r.p.Subject != "" {
				t.Fatalf("%s: %d %+v", h[0], r.status, r.p)
			}
		}
		poll.Until(t, time.Minute, "last used not recorded", func() bool {
			k, _ := e.db.APIKey(ctx, "ak_pat")
			return k != nil && !k.LastUsedAt.IsZero()
		})

		// Format and checksum are checked before any lookup.
		n := e.store.lookups.Load()
		typo := []byte(key)
		typo[20] = map[bool]byte{true: 'a', false: 'b'}[typo[20] != 'a']
		for name, k := range map[string]string{"bad checksum": string(typo), "short": key[:30], "bad chars": key[:20] + "-" + key[21:]} {
			t.Run(name, func(t *testing.T) {
				want401(t, e.do("X-API-Key", k), "invalid_token")
				want401(t, e.do("Authorization", "Bearer "+k), "invalid_token")
			})
		}
		if e.store.lookups.Load() != n {
			t.Fatal("malformed key caused a database lookup")
		}
		unknown, _, _, _ := apikey.New()
		want401(t, e.do("X-API-Key", unknown), "invalid_token")

		revoked := e.apiKey(authdb.APIKey{ID: "ak_rev"})
		if r := e.do("X-API-Key", revoked); r.status != 200 {
			t.Fatal(r.status)
		}
		if err := e.db.RevokeAPIKey(ctx, "ak_rev", time.Now()); err != nil {
			t.Fatal(err)
		}
		want401(t, e.do("X-API-Key", revoked), "invalid_token") // at once: no cache

		expired := e.apiKey(authdb.APIKey{ExpiresAt: time.Now().Add(-time.Second)})
		want401(t, e.do("X-API-Key", expired), "invalid_token")

		// IP allow-list, against the loopback test client.
		if r := e.do("X-API-Key", e.apiKey(authdb.APIKey{AllowIPs: []string{"10.0.0.0/8", "127.0.0.0/8"}})); r.status != 200 {
			t.Fatalf("allowed address refused: %d", r.status)
		}
		want401(t, e.do("X-API-Key", e.apiKey(authdb.APIKey{AllowIPs: []string{"10.0.0.0/8", "2001:db8::/32"}})), "invalid_token")

		// Rotation: both keys work during the grace period, then only the new one.
		old := e.apiKey(authdb.APIKey{ID: "ak_old", Name: "etl"})
		newKey, prefix, h, _ := apikey.New()
		if err := e.db.RotateAPIKey(ctx, "ak_old", &authdb.APIKey{ID: "ak_new", Hash: h, Prefix: prefix}, time.Now().Add(time.Hour), time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{old, newKey} {
			if r := e.do("X-API-Key", k); r.status != 200 {
				t.Fatalf("during grace: %d", r.status)
			}
		}
		e.offset.Store(int64(time.Hour + time.Second))
		want401(t, e.do("X-API-Key", old), "invalid_token")
		if r := e.do("X-API-Key", newKey); r.status != 200 || r.p.ClientID != "ak_new" {
			t.Fatalf("after grace: %d %+v", r.status, r.p)
		}
		e.offset.Store(0)

		logs := e.logs.String()
		for _, k := range []string{key, revoked, old, newKey, unknown} {
			if strings.Contains(logs, k[6:30]) {
				t.Fatal("key logged")
			}
		}
	})
}

func TestBasic(t *testing.T) {
	dialects(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		secret := "s3cret-s3cret-s3cret-s3cret-s3cret-s3cret-x"
		for _, c := range []*authdb.Client{
			{ID: "legacy", Name: "legacy", Type: authdb.Confidential, SecretHash: oauth.HashSecret(secret), Scopes: []string{"system/Patient.rs", "system/Observation.rs"}},
			{ID: "other", Name: "other", Type: authdb.Confidential, SecretHash: oauth.HashSecret(secret), Scopes: []string{"system/*.rs"}},
			{ID: "pub", Name: "pub", Type: authdb.Public, Scopes: []string{"patient/*.rs"}},
		} {
			if err := e.db.CreateClient(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		// Off by default.
		want401(t, e.do("Authorization", basicHdr("legacy", secret)), "invalid_token")
		if err := e.db.EnableBasic(ctx, "legacy", time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.db.EnableBasic(ctx, "pub", time.Now()); err != nil {
			t.Fatal(err)
		}
		r := e.do("Authorization", basicHdr("legacy", secret))
		if r.status != 200 || r.p.Method != "basic" || r.p.ClientID != "legacy" || len(r.p.Scopes) != 2 || r.p.Patient != "" {
			t.Fatalf("%d %+v %s", r.status, r.p, r.body)
		}
		// The Basic challenge appears once a client has Basic (probe cached ≤ 5 s).
		e.offset.Store(int64(6 * time.Second))
		if ch := e.do().hdr.Values("WWW-Authenticate"); len(ch) != 2 || ch[1] != `Basic realm="lapis"` {
			t.Fatalf("challenges %q", ch)
		}
		want401(t, e.do("Authorization", basicHdr("other", secret)), "invalid_token") // not enabled
		want401(t, e.do("Authorization", basicHdr("pub", "x")), "invalid_token")      // public client
		want401(t, e.do("Authorization", basicHdr("nobody", secret)), "invalid_token")
		want401(t, e.do("Authorization", basicHdr("legacy", secret+"x")), "invalid_token")

		// Lockout per client id: after 10 failures the right secret fails too.
		if err := e.db.ClearLoginFailures(ctx, "basic:ip:127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		for range 9 {
			want401(t, e.do("Authorization", basicHdr("legacy", "wrong")), "invalid_token")
		}
		if err := e.db.ClearLoginFailures(ctx, "basic:ip:127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		want401(t, e.do("Authorization", basicHdr("legacy", secret)), "invalid_token")
		if err := e.db.ClearLoginFailures(ctx, "basic:ip:127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		// 10 failures (9 + the one before) lock the client out.
		want401(t, e.do("Authorization", basicHdr("legacy", secret)), "invalid_token")
		// The window passes.
		e.offset.Store(int64(16 * time.Minute))
		if r := e.do("Authorization", basicHdr("legacy", secret)); r.status != 200 {
			t.Fatalf("after the window: %d", r.status)
		}

		// Lockout per address: failures spread over client ids.
		for i := range 10 {
			want401(t, e.do("Authorization", basicHdr("guess"+string(rune('a'+i)), "x")), "invalid_token")
		}
		want401(t, e.do("Authorization", basicHdr("legacy", secret)), "invalid_token")
		if strings.Contains(e.logs.String(), secret) {
			t.Fatal("secret logged")
		}
	})
}

// failingStore fails every lookup, as a database that is down.
type failingStore struct{ *authdb.DB }

func (failingStore) APIKeyByHash(context.Context, []byte) (*authdb.APIKey, error) {
	return nil, errors.New("pq: connection refused at 10.1.2.3")
}

func TestInfrastructureError(t *testing.T) {
	h := authn.New(authn.Config{APIKeys: failingStore{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})(http.HandlerFunc(echo))
	key, _, _, _ := apikey.New()
	req := httptest.NewRequest("GET", "/Patient", nil)
	req.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 503 || strings.Contains(w.Body.String(), "10.1.2.3") || !strings.Contains(w.Body.String(), "OperationOutcome") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestKeyFormatAndScopes(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, prefix, h, err := apikey.New()
		if err != nil || len(k) != apikey.Len || !apikey.ValidFormat(k) || !strings.HasPrefix(k, prefix) || len(h) != 32 ||
			!apikey.Pattern.MatchString("leaked: "+k+" here") || seen[k] {
			t.Fatalf("%q %q %v", k, prefix, err)
		}
		seen[k] = true
		// Every single-character typo is caught by the checksum.
		for i := len(apikey.Prefix); i < len(k); i += 7 {
			b := []byte(k)
			b[i] = map[bool]byte{true: 'Z', false: 'Y'}[b[i] != 'Z']
			if apikey.ValidFormat(string(b)) {
				t.Fatalf("typo at %d accepted", i)
			}
		}
	}
	for _, c := range []struct {
		scopes  []string
		patient string
		ok      bool
	}{
		{[]string{"system/*.rs"}, "", true},
		{[]string{"system/Patient.read", "system/Observation.cruds"}, "", true},
		{[]string{"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}, "p1", true},
		{[]string{"patient/*.read"}, "", false},
		{[]string{"system/*.rs"}, "p1", false},
		{[]string{"system/*.rs", "patient/*.rs"}, "p1", false},
		{[]string{"user/*.rs"}, "", false},
		{[]string{"openid"}, "", false},
		{[]string{"system/*.sr"}, "", false},
		{nil, "", false},
		{[]string{"patient/*.rs"}, "bad id!", false},
	} {
		if err := apikey.CheckScopes(c.scopes, c.patient); (err == nil) != c.ok {
			t.Errorf("%v %q: %v", c.scopes, c.patient, err)
		}
	}
	got, err := apikey.ParseAllowList([]string{"10.1.2.3/8,::1", "2001:db8::1/32"})
	if err != nil || strings.Join(got, " ") != "10.0.0.0/8 ::1/128 2001:db8::/32" {
		t.Fatal(got, err)
	}
	if _, err := apikey.ParseAllowList([]string{"nope"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

// blockingTouch holds every last-used write until release is closed.
type blockingTouch struct {
	*countingStore
	started chan string
	release chan struct{}
}

func (b *blockingTouch) TouchAPIKeyFrom(ctx context.Context, id string, at time.Time, addr string, min time.Duration) error {
	b.started <- id
	select {
	case <-b.release:
	case <-time.After(time.Minute): // a write on the request path: let the test see it
	}
	return b.countingStore.TouchAPIKeyFrom(ctx, id, at, addr, min)
}

// TestTouchOffRequestPath holds the last-used write of an API key (as a
// database write lock held by another writer would) and checks that the
// request is answered meanwhile; the use is recorded once the write goes
// through.
func TestTouchOffRequestPath(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	key := e.apiKey(authdb.APIKey{ID: "ak_touch"})
	bt := &blockingTouch{countingStore: e.store, started: make(chan string, 1), release: make(chan struct{})}
	h := authn.New(authn.Config{APIKeys: bt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})(http.HandlerFunc(echo))
	req := httptest.NewRequest("GET", "/Patient", nil)
	req.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req) // returns while the write is held
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if id := <-bt.started; id != "ak_touch" {
		t.Fatalf("touched %q", id)
	}
	if k, _ := e.db.APIKey(ctx, "ak_touch"); !k.LastUsedAt.IsZero() {
		t.Fatal("recorded before the write was released")
	}
	close(bt.release)
	poll.Until(t, time.Minute, "last used not recorded", func() bool {
		k, _ := e.db.APIKey(ctx, "ak_touch")
		return k != nil && !k.LastUsedAt.IsZero()
	})
}
