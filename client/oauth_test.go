package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tokenServer is a stand-in OAuth token endpoint that issues numbered
// tokens and records the requests.
type tokenServer struct {
	srv       *httptest.Server
	requests  atomic.Int32
	expiresIn int
	// gate, when set, holds every token request until it is closed (and
	// arrived is told each time one is held).
	gate    chan struct{}
	arrived chan struct{}
	mu      sync.Mutex
	forms   []url.Values
	basic   []string // "id:secret" from Basic auth
	issued  []string
	refresh string // current valid refresh token (refresh grant)
	check   func(r *http.Request, form url.Values) (int, string)
}

const (
	testClientID = "reporting-app"
	testSecret   = "s3cr3t-client-secret-value"
)

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{expiresIn: 3600, refresh: "refresh-0"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if ts.gate != nil {
			select {
			case ts.arrived <- struct{}{}:
			default:
			}
			<-ts.gate
		}
		_ = r.ParseForm()
		ts.mu.Lock()
		ts.forms = append(ts.forms, r.PostForm)
		if u, p, ok := r.BasicAuth(); ok {
			ts.basic = append(ts.basic, u+":"+p)
		}
		check := ts.check
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			if status, code := check(r, r.PostForm); status != 0 {
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"error":%q,"error_description":"refused by the test server"}`, code)
				return
			}
		}
		resp := map[string]any{"access_token": fmt.Sprintf("access-token-%d", n), "token_type": "bearer", "expires_in": ts.expiresIn, "scope": r.PostForm.Get("scope")}
		if r.PostForm.Get("grant_type") == "refresh_token" {
			ts.mu.Lock()
			if r.PostForm.Get("refresh_token") != ts.refresh {
				ts.mu.Unlock()
				w.WriteHeader(400)
				w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			ts.refresh = fmt.Sprintf("refresh-%d", n)
			resp["refresh_token"] = ts.refresh
			ts.mu.Unlock()
		}
		ts.mu.Lock()
		ts.issued = append(ts.issued, resp["access_token"].(string))
		ts.mu.Unlock()
		json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_endpoint":%q,"authorization_endpoint":%q,"capabilities":["client-confidential-symmetric"]}`,
			"http://"+r.Host+"/token", "http://"+r.Host+"/authorize")
	})
	ts.srv = httptest.NewServer(mux)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) url() string { return ts.srv.URL + "/token" }

// tokenFHIR is a FHIR server that accepts the tokens in valid (nil: any
// issued one).
func tokenFHIR(t *testing.T, ts *tokenServer, accept func(tok string) bool) (*fakeFHIR, string) {
	f := newFakeFHIR()
	f.auth = func(r *http.Request) bool {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return false
		}
		ts.mu.Lock()
		known := false
		for _, i := range ts.issued {
			known = known || i == tok
		}
		ts.mu.Unlock()
		return known && (accept == nil || accept(tok))
	}
	_, base := f.start(t)
	return f, base
}

func TestTokenReusedUntilMargin(t *testing.T) {
	ts := newTokenServer(t)
	ts.expiresIn = 300
	_, base := tokenFHIR(t, ts, nil)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret, Margin: 60 * time.Second})
	auth.now = clock
	c := newTestClient(t, base, WithAuth(auth))
	ctx := context.Background()
	read := func() {
		t.Helper()
		if _, err := c.Capabilities(ctx); err != nil {
			t.Fatal(err)
		}
	}
	read()
	read()
	advance(200 * time.Second) // 100 s left > margin
	read()
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("token requests = %d, want 1 (reuse)", n)
	}
	advance(41 * time.Second) // 59 s left < margin
	read()
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("token requests = %d, want 2 (renewed within margin)", n)
	}
	read()
	if n := ts.requests.Load(); n != 2 || auth.TokenRequests() != 2 {
		t.Fatalf("token requests = %d", n)
	}
}

func TestShortLivedTokensAreStillReused(t *testing.T) {
	ts := newTokenServer(t)
	ts.expiresIn = 30 // shorter than the 60 s margin
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})
	now := time.Now()
	auth.now = func() time.Time { return now }
	for i := 0; i < 5; i++ {
		if _, err := auth.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
	now = now.Add(16 * time.Second) // past half the lifetime
	auth.Token(context.Background())
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

// holdTokens makes ts hold token requests until release is called (at
// the latest when the test ends).
func holdTokens(t *testing.T, ts *tokenServer) (release func()) {
	ts.gate, ts.arrived = make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	release = func() { once.Do(func() { close(ts.gate) }) }
	t.Cleanup(release)
	return release
}

// countClockReads makes auth's clock call tick (with the number of reads
// so far) on every read: Token reads it once per caller, under the lock
// that decides whether the caller starts a token request or waits for the
// one in flight, and a token request reads it twice before it is sent.
func countClockReads(auth *OAuth, tick func(n int64)) {
	var n atomic.Int64
	auth.now = func() time.Time {
		tick(n.Add(1))
		return time.Now()
	}
}

func TestConcurrentRequestsShareOneTokenRequest(t *testing.T) {
	ts := newTokenServer(t)
	release := holdTokens(t, ts)
	f, base := tokenFHIR(t, ts, nil)
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})
	// The token request is held until all 100 callers have decided (and
	// the request was sent): none can have been served a token yet.
	const callers = 100
	countClockReads(auth, func(n int64) {
		if n == callers+2 {
			release()
		}
	})
	c := newTestClient(t, base, WithAuth(auth))
	failures := concurrentCapabilities(c, callers)
	if n := ts.requests.Load(); n != 1 || failures != 0 || len(f.requests) != 100 {
		t.Fatalf("token requests = %d, failures = %d, FHIR requests = %d", n, failures, len(f.requests))
	}
}

func TestWaitingCallerCancelDoesNotBreakSharedFetch(t *testing.T) {
	ts := newTokenServer(t)
	release := holdTokens(t, ts)
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})
	second := make(chan struct{})
	countClockReads(auth, func(n int64) {
		if n == 4 { // first caller, its token request (2), second caller
			close(second)
		}
	})
	// The first caller gives up while its token request is held.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ts.arrived
		cancel()
	}()
	if _, err := auth.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	// A second caller joins the same request, which then completes.
	type result struct {
		tok *Token
		err error
	}
	got := make(chan result, 1)
	go func() {
		tok, err := auth.Token(context.Background())
		got <- result{tok, err}
	}()
	<-second
	release()
	r := <-got
	if r.err != nil || r.tok.AccessToken != "access-token-1" || ts.requests.Load() != 1 {
		t.Fatalf("tok %v err %v requests %d", r.tok, r.err, ts.requests.Load())
	}
}

func TestUnauthorizedOnceGetsNewTokenAndRetries(t *testing.T) {
	ts := newTokenServer(t)
	// The server revoked the first token early.
	f, base := tokenFHIR(t, ts, func(tok string) bool { return tok != "access-token-1" })
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})
	c := newTestClient(t, base, WithAuth(auth))
	r, err := c.Create(context.Background(), json.RawMessage(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ts.requests.Load() != 2 || len(f.requests) != 2 || r.ID == "" {
		t.Fatalf("token requests %d, FHIR requests %v", ts.requests.Load(), f.requests)
	}
	// The new token is cached.
	if _, err := c.Read(context.Background(), "Patient", r.ID); err != nil || ts.requests.Load() != 2 {
		t.Fatalf("read: %v, token requests %d", err, ts.requests.Load())
	}
}

func TestUnauthorizedTwiceIsErrUnauthorized(t *testing.T) {
	ts := newTokenServer(t)
	f, base := tokenFHIR(t, ts, func(string) bool { return false })
	c := newTestClient(t, base, WithAuth(ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})))
	_, err := c.Read(context.Background(), "Patient", "p1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	if ts.requests.Load() != 2 || len(f.requests) != 2 {
		t.Fatalf("token requests %d, FHIR requests %d; want exactly one retry", ts.requests.Load(), len(f.requests))
	}
	msg := fmt.Sprintf("%v %+v %#v", err, err, err)
	if strings.Contains(msg, "access-token") || strings.Contains(msg, testSecret) || !strings.Contains(msg, "401") {
		t.Fatalf("error text: %s", msg)
	}
}

func TestConcurrentUnauthorizedCauseOneRenewal(t *testing.T) {
	ts := newTokenServer(t)
	_, base := tokenFHIR(t, ts, func(tok string) bool { return tok != "access-token-1" })
	c := newTestClient(t, base, WithAuth(ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})))
	// Warm the cache with token 1 (refused later).
	auth := c.auth.(*OAuth)
	if _, err := auth.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	failures := concurrentCapabilities(c, 50)
	if n := ts.requests.Load(); n != 2 || failures != 0 {
		t.Fatalf("token requests = %d (want 2), failures %d", n, failures)
	}
}

func TestStaticCredentialsRetriedOnceThenUnauthorized(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		writeOutcome(w, 401, "login", "unknown API key")
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, WithAuth(APIKey("lapis_key_very_secret")))
	_, err := c.Read(context.Background(), "Patient", "1")
	if !errors.Is(err, ErrUnauthorized) || hits.Load() != 2 || strings.Contains(err.Error(), "very_secret") {
		t.Fatalf("err %v hits %d", err, hits.Load())
	}
	// Without credentials a 401 is not retried.
	hits.Store(0)
	c2 := newTestClient(t, srv.URL)
	if _, err := c2.Read(context.Background(), "Patient", "1"); !errors.Is(err, ErrUnauthorized) || hits.Load() != 1 {
		t.Fatalf("err %v hits %d", err, hits.Load())
	}
}

func TestClientAuthStyles(t *testing.T) {
	ts := newTokenServer(t)
	ctx := context.Background()
	basic := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: "id with space", ClientSecret: "p@ss:word", Scopes: []string{"system/Patient.rs", "system/Observation.rs"}})
	if _, err := basic.Token(ctx); err != nil {
		t.Fatal(err)
	}
	post := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret, AuthStyle: AuthStylePost})
	tok, err := post.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	// RFC 6749 §2.3.1: the parts are form-urlencoded inside Basic.
	if len(ts.basic) != 1 || ts.basic[0] != "id+with+space:p%40ss%3Aword" {
		t.Fatalf("basic = %q", ts.basic)
	}
	f0, f1 := ts.forms[0], ts.forms[1]
	if f0.Get("grant_type") != "client_credentials" || f0.Get("scope") != "system/Patient.rs system/Observation.rs" || f0.Has("client_secret") {
		t.Fatalf("basic form = %v", f0)
	}
	if f1.Get("client_id") != testClientID || f1.Get("client_secret") != testSecret {
		t.Fatalf("post form = %v", f1)
	}
	if tok.TokenType != "Bearer" || tok.ExpiresAt.IsZero() {
		t.Fatalf("token = %v", tok)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	ts := newTokenServer(t)
	ts.check = func(*http.Request, url.Values) (int, string) { return 401, "invalid_client" }
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret})
	_, err := auth.Token(context.Background())
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_client" || !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), testSecret) {
		t.Fatalf("err = %v", err)
	}
	// The failure is not cached as a token: the next call asks again.
	ts.check = nil
	if _, err := auth.Token(context.Background()); err != nil || ts.requests.Load() != 2 {
		t.Fatalf("after recovery: %v, %d requests", err, ts.requests.Load())
	}

	bad := []string{`{"token_type":"bearer"}`, `{"access_token":"x","token_type":"mac"}`, `{"access_token":"x","expires_in":-5}`, `not json`}
	for _, body := range bad {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(body))
		}))
		a := ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: "a", ClientSecret: "b"})
		if _, err := a.Token(context.Background()); err == nil {
			t.Errorf("token response %s accepted", body)
		}
		srv.Close()
	}
}

func TestConfigErrorsReportedByNew(t *testing.T) {
	cases := []Auth{
		ClientCredentials(ClientCredentialsConfig{TokenURL: "https://x/token", ClientID: "a"}),
		ClientCredentials(ClientCredentialsConfig{ClientID: "a", ClientSecret: "b"}),
		RefreshToken(RefreshConfig{TokenURL: "https://x/token", ClientID: "a"}),
		BackendServices(BackendServicesConfig{TokenURL: "https://x/token", ClientID: "a"}),
	}
	for i, a := range cases {
		if _, err := New("https://x/fhir", WithAuth(a)); err == nil {
			t.Errorf("case %d: New accepted %v", i, a)
		}
	}
}

func TestDiscoveryFindsTokenEndpoint(t *testing.T) {
	ts := newTokenServer(t)
	auth := ClientCredentials(ClientCredentialsConfig{FHIRBase: ts.srv.URL + "/fhir", ClientID: testClientID, ClientSecret: testSecret})
	tok, err := auth.Token(context.Background())
	if err != nil || tok.AccessToken != "access-token-1" {
		t.Fatalf("%v %v", tok, err)
	}
	cfg, err := Discover(context.Background(), ts.srv.URL+"/fhir/", nil)
	if err != nil || cfg.TokenEndpoint != ts.url() || cfg.Capabilities[0] != "client-confidential-symmetric" {
		t.Fatalf("%+v %v", cfg, err)
	}
	if _, err := Discover(context.Background(), ts.srv.URL+"/nothing", nil); err == nil {
		t.Fatal("discovery of a 404 succeeded")
	}
	if _, err := Discover(context.Background(), "not a url", nil); err == nil {
		t.Fatal("discovery of a bad URL succeeded")
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	ts := newTokenServer(t)
	ts.expiresIn = 300
	var rotated []string
	auth := RefreshToken(RefreshConfig{TokenURL: ts.url(), ClientID: "cli", RefreshToken: "refresh-0",
		OnRotate: func(t Token) { rotated = append(rotated, t.RefreshToken) }})
	now := time.Now()
	auth.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := auth.Token(ctx); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if _, err := auth.Token(ctx); err != nil { // cached
			t.Fatal(err)
		}
		now = now.Add(250 * time.Second) // within the margin: refresh next time
	}
	if strings.Join(rotated, ",") != "refresh-1,refresh-2,refresh-3" {
		t.Fatalf("rotated = %v", rotated)
	}
	ts.mu.Lock()
	f := ts.forms[2]
	ts.mu.Unlock()
	if f.Get("refresh_token") != "refresh-2" || f.Get("client_id") != "cli" || f.Get("grant_type") != "refresh_token" {
		t.Fatalf("third refresh form = %v", f)
	}

	// An initial token is used until it nears expiry.
	ts2 := newTokenServer(t)
	init := &Token{AccessToken: "held", RefreshToken: "refresh-0", ExpiresAt: time.Now().Add(time.Hour)}
	a2 := RefreshToken(RefreshConfig{TokenURL: ts2.url(), ClientID: "cli", Initial: init})
	if tok, err := a2.Token(ctx); err != nil || tok.AccessToken != "held" || ts2.requests.Load() != 0 {
		t.Fatalf("initial: %v %v", tok, err)
	}
	// A refused refresh token is ErrUnauthorized.
	a3 := RefreshToken(RefreshConfig{TokenURL: ts2.url(), ClientID: "cli", RefreshToken: "stolen-or-old"})
	if _, err := a3.Token(ctx); !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "stolen") {
		t.Fatalf("bad refresh: %v", err)
	}
}

// TestSecretsNeverInErrorsOrLogs drives every credential kind through
// successes and failures with debug logging and searches all error texts
// and the log output for the secrets.
func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	const (
		apiKey   = "APIKEY-9f8e7d6c5b4a"
		password = "PASSWORD-1a2b3c4d"
		bearer   = "BEARER-abcdef123456"
	)
	ts := newTokenServer(t)
	var logs logBuffer
	logger := logs.logger()
	var texts []string
	record := func(v ...any) {
		for _, x := range v {
			texts = append(texts, fmt.Sprintf("%v|%+v|%#v|%s", x, x, x, x))
		}
	}
	ctx := context.Background()

	// FHIR server that refuses everything, and one that accepts issued tokens.
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, 401, "login", "no")
	}))
	defer refuse.Close()
	_, okBase := tokenFHIR(t, ts, nil)

	auths := []Auth{
		APIKey(apiKey), APIKeyHeader("X-API-Key", apiKey), Basic("user", password), BearerToken(bearer),
		ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret, Logger: logger}),
		RefreshToken(RefreshConfig{TokenURL: ts.url(), ClientID: "cli", RefreshToken: "refresh-0", Logger: logger}),
	}
	for _, a := range auths {
		record(a)
		for _, base := range []string{refuse.URL + "/fhir", okBase} {
			c := newTestClient(t, base, WithAuth(a), WithLogger(logger))
			_, err := c.Read(ctx, "Patient", "p1")
			record(err)
			_, err = c.SearchPage(ctx, "Patient", url.Values{"name": {"secret-patient-name"}})
			record(err)
		}
	}
	// Token endpoint failure with the secret in the form.
	ts.check = func(*http.Request, url.Values) (int, string) { return 400, "invalid_client" }
	cc := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret, Logger: logger})
	_, err := cc.Token(ctx)
	record(err, cc)
	ts.check = nil
	tok, err := ClientCredentials(ClientCredentialsConfig{TokenURL: ts.url(), ClientID: testClientID, ClientSecret: testSecret, Logger: logger}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok.RefreshToken, tok.IDToken = "REFRESH-xyz-secret", "IDTOKEN-xyz-secret"
	record(tok, *tok)
	logger.Info("token", slog.Any("tok", tok), slog.Any("val", *tok))
	// Transport error on an unreachable host.
	c := newTestClient(t, "http://127.0.0.1:1/fhir", WithAuth(APIKey(apiKey)), WithLogger(logger))
	_, err = c.SearchPage(ctx, "Patient", url.Values{"name": {"secret-patient-name"}})
	record(err)

	all := strings.Join(texts, "\n") + "\n" + logs.String()
	secrets := []string{apiKey, password, bearer, testSecret, "access-token-", "refresh-0", "refresh-1", "REFRESH-xyz", "IDTOKEN-xyz",
		"secret-patient-name", "dXNlcjpQQVNTV09SRC"} // base64 of user:PASSWORD
	for _, s := range secrets {
		if strings.Contains(all, s) {
			i := strings.Index(all, s)
			t.Errorf("secret %q leaked: …%s…", s, all[max(0, i-80):min(len(all), i+40)])
		}
	}
	if !strings.Contains(logs.String(), "fhir request") {
		t.Fatalf("nothing was logged; the test proves nothing:\n%s", logs.String())
	}
}

func TestLogsCarryRoutesNotIdentifiers(t *testing.T) {
	f := newFakeFHIR()
	_, base := f.start(t)
	var logs logBuffer
	c := newTestClient(t, base, WithLogger(logs.logger()))
	ctx := context.Background()
	c.Read(ctx, "Patient", "pid-777")
	c.VRead(ctx, "Patient", "pid-777", "3")
	c.SearchPage(ctx, "Patient", url.Values{"identifier": {"mrn|123456"}})
	out := logs.String()
	for _, s := range []string{"pid-777", "123456", "identifier"} {
		if strings.Contains(out, s) {
			t.Errorf("log holds %q:\n%s", s, out)
		}
	}
	for _, s := range []string{`"route":"Patient/{id}"`, `"route":"Patient/{id}/_history/{id}"`, `"route":"Patient"`} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %s:\n%s", s, out)
		}
	}
}

// concurrentCapabilities makes n Capabilities calls at once on c and
// returns how many of them failed.
func concurrentCapabilities(c *Client, n int) int32 {
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Capabilities(context.Background()); err != nil {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	return failures.Load()
}
