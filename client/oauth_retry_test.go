package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// tokenThrottler is a token endpoint that answers the first n requests
// with status and Retry-After ra, then a token; it records the
// client_assertion / client_id of each request.
func tokenThrottler(t *testing.T, n int32, status int, ra string) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= n {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"too many requests"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"tok","token_type":"Bearer","expires_in":300}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func recordOAuthSleeps(o *OAuth) *[]time.Duration { return recordWaits(&o.sleep) }

// TestTokenRetryAfter: a token endpoint answering 429 (or 503) with
// Retry-After is asked again after that wait, within the retry policy;
// beyond it, or past MaxWait, the caller gets the OAuthError with its
// RetryAfter.
func TestTokenRetryAfter(t *testing.T) {
	srv, hits := tokenThrottler(t, 2, http.StatusTooManyRequests, "3")
	o := ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits := recordOAuthSleeps(o)
	tok, err := o.Token(context.Background())
	if err != nil || tok.AccessToken != "tok" {
		t.Fatalf("token after two 429s: %+v %v", tok, err)
	}
	if hits.Load() != 3 || len(*waits) != 2 || (*waits)[0] != 3*time.Second || (*waits)[1] != 3*time.Second {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}

	// 503 without Retry-After: exponential backoff, bounded by MaxWait.
	srv, hits = tokenThrottler(t, 1, http.StatusServiceUnavailable, "")
	o = ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits = recordOAuthSleeps(o)
	if _, err := o.Token(context.Background()); err != nil || hits.Load() != 2 || len(*waits) != 1 || (*waits)[0] < 500*time.Millisecond || (*waits)[0] > DefaultMaxWait {
		t.Fatalf("503 backoff: %v hits %d waits %v", err, hits.Load(), *waits)
	}

	// The Client's policy applies to its OAuth: no retries.
	srv, hits = tokenThrottler(t, 1, http.StatusTooManyRequests, "1")
	o = ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits = recordOAuthSleeps(o)
	if _, err := New("https://fhir.example/fhir", WithAuth(o), WithRetry(RetryPolicy{MaxRetries: 0})); err != nil {
		t.Fatal(err)
	}
	_, err = o.Token(context.Background())
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusTooManyRequests || oe.RetryAfter != time.Second || hits.Load() != 1 || len(*waits) != 0 {
		t.Fatalf("no retries: %v hits %d waits %v", err, hits.Load(), *waits)
	}

	// Asked to wait longer than MaxWait: the error, at once.
	srv, hits = tokenThrottler(t, 1, http.StatusTooManyRequests, "3600")
	o = ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits = recordOAuthSleeps(o)
	if _, err := o.Token(context.Background()); !errors.As(err, &oe) || oe.RetryAfter != time.Hour || hits.Load() != 1 || len(*waits) != 0 {
		t.Fatalf("long Retry-After: %v hits %d waits %v", err, hits.Load(), *waits)
	}

	// Other errors are not retried.
	srv, hits = tokenThrottler(t, 5, http.StatusBadRequest, "1")
	o = ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits = recordOAuthSleeps(o)
	if _, err := o.Token(context.Background()); !errors.As(err, &oe) || oe.StatusCode != 400 || oe.RetryAfter != 0 || hits.Load() != 1 || len(*waits) != 0 {
		t.Fatalf("400: %v hits %d waits %v", err, hits.Load(), *waits)
	}
}

// TestFHIRRequestTokenThrottled: a FHIR request whose token request is
// throttled once succeeds after the token endpoint's Retry-After.
func TestFHIRRequestTokenThrottled(t *testing.T) {
	tsrv, hits := tokenThrottler(t, 1, http.StatusTooManyRequests, "2")
	fsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"Patient","id":"p1"}`))
	}))
	t.Cleanup(fsrv.Close)
	o := ClientCredentials(ClientCredentialsConfig{TokenURL: tsrv.URL, ClientID: testClientID, ClientSecret: testSecret})
	waits := recordOAuthSleeps(o)
	c := newTestClient(t, fsrv.URL, WithAuth(o))
	if r, err := c.Read(context.Background(), "Patient", "p1"); err != nil || r.ID != "p1" {
		t.Fatalf("read: %+v %v", r, err)
	}
	if hits.Load() != 2 || len(*waits) != 1 || (*waits)[0] != 2*time.Second {
		t.Fatalf("hits %d waits %v", hits.Load(), *waits)
	}
}
