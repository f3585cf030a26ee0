package webhook_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
	"github.com/lapis-health/lapis/internal/testutil/testclock"
	"github.com/lapis-health/lapis/internal/webhook"
)

func kek(t *testing.T) cipher.AEAD {
	b, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// open opens the webhook service on h with cfg (its Logger discarding
// when unset), failing t when that fails.
func open(t *testing.T, h *database.DB, cfg webhook.Config) *webhook.Service {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := webhook.New(context.Background(), h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerify(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"app.approved"}`)
	sig, err := webhook.Sign(secret, "msg_1", now, body)
	if err != nil || !strings.HasPrefix(sig, "v1,") {
		t.Fatalf("sign: %q %v", sig, err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, "msg_1")
	h.Set(webhook.HeaderTimestamp, "1700000000")
	h.Set(webhook.HeaderSignature, "v1,bm90IHRoaXM= "+sig) // several signatures: one must match
	if err := webhook.Verify(secret, h, body, 0, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	tamper := map[string]func() (string, http.Header, []byte, time.Time){
		"body": func() (string, http.Header, []byte, time.Time) {
			return secret, h, []byte(`{"type":"app.declined"}`), now
		},
		"id": func() (string, http.Header, []byte, time.Time) {
			h2 := h.Clone()
			h2.Set(webhook.HeaderID, "msg_2")
			return secret, h2, body, now
		},
		"timestamp": func() (string, http.Header, []byte, time.Time) {
			h2 := h.Clone()
			h2.Set(webhook.HeaderTimestamp, "1700000001")
			return secret, h2, body, now
		},
		"secret": func() (string, http.Header, []byte, time.Time) {
			return "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", h, body, now
		},
		"too old": func() (string, http.Header, []byte, time.Time) { return secret, h, body, now.Add(10 * time.Minute) },
		"no signature": func() (string, http.Header, []byte, time.Time) {
			h2 := h.Clone()
			h2.Del(webhook.HeaderSignature)
			return secret, h2, body, now
		},
	}
	for name, f := range tamper {
		s, hh, b, at := f()
		if err := webhook.Verify(s, hh, b, 0, at); err == nil {
			t.Errorf("%s tampered: verified", name)
		}
	}
}

func TestEndpoints(t *testing.T) {
	dbtest.Both(t, func(t *testing.T, h *database.DB) {
		ctx := context.Background()
		s := open(t, h, webhook.Config{KEK: kek(t)})
		var ie *webhook.InvalidError
		for _, u := range []string{"http://hooks.example/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x", "https://169.254.169.254/latest",
			"https://localhost/x", "ftp://hooks.example/x", "/relative", "https://user:pw@hooks.example/x"} {
			if _, _, err := s.CreateEndpoint(ctx, "o1", u, nil); !errors.As(err, &ie) || ie.Field != "url" {
				t.Errorf("%s accepted: %v", u, err)
			}
		}
		if _, _, err := s.CreateEndpoint(ctx, "o1", "https://hooks.example/x", []string{"app.exploded"}); !errors.As(err, &ie) || ie.Field != "events" {
			t.Fatalf("unknown event: %v", err)
		}
		ep, secret, err := s.CreateEndpoint(ctx, "o1", "https://hooks.example/x", nil)
		if err != nil || !strings.HasPrefix(secret, "whsec_") || len(ep.Events) != 4 {
			t.Fatalf("create: %+v %v", ep, err)
		}
		// The secret is sealed at rest.
		var enc string
		if err := h.Reader.QueryRowContext(ctx, h.Rebind("SELECT secret_enc FROM webhook_endpoint WHERE id = ?"), ep.ID).Scan(&enc); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(enc, "gcm:") || strings.Contains(enc, strings.TrimPrefix(secret, "whsec_")) {
			t.Fatalf("secret stored as %q", enc)
		}
		if l, _ := s.Endpoints(ctx, "o2"); len(l) != 0 {
			t.Fatalf("another org sees %+v", l)
		}
		if err := s.DeleteEndpoint(ctx, "o2", ep.ID); !errors.Is(err, webhook.ErrNotFound) {
			t.Fatalf("another org deleted the endpoint: %v", err)
		}
		if err := s.DeleteEndpoint(ctx, "o1", ep.ID); err != nil {
			t.Fatal(err)
		}
		if l, _ := s.Endpoints(ctx, "o1"); len(l) != 0 {
			t.Fatalf("after delete: %+v", l)
		}
	})
}

// receiver is a test endpoint that verifies each delivery and answers
// the statuses queued in answers (then 200).
// endpoint serves rc on a test server (closed when t ends) and registers
// its URL followed by path with s as an endpoint of organisation o1 for
// events (nil: all); rc checks signatures with the endpoint's secret.
func (rc *receiver) endpoint(t *testing.T, s *webhook.Service, path string, events []string) *webhook.Endpoint {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	ep, secret, err := s.CreateEndpoint(context.Background(), "o1", srv.URL+path, events)
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.secret = secret
	rc.mu.Unlock()
	return ep
}

type receiver struct {
	mu       sync.Mutex
	secret   string
	answers  []int
	got      []map[string]any
	bad      int
	attempts atomic.Int32
	now      func() time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.attempts.Add(1)
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := webhook.Verify(rc.secret, r.Header, body, 0, rc.now()); err != nil {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := http.StatusOK
	if len(rc.answers) > 0 {
		status, rc.answers = rc.answers[0], rc.answers[1:]
	}
	if status == http.StatusOK {
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		rc.got = append(rc.got, m)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(strings.Repeat("x", 200<<10))) // a large answer is read only in part
}

// TestDeliveryRetries: an event is signed, retried after a 500 with
// exponential backoff (on an injected clock), and delivered once.
func TestDeliveryRetries(t *testing.T) {
	dbtest.Both(t, func(t *testing.T, h *database.DB) {
		ctx := context.Background()
		clk := testclock.New(time.Now())
		s := open(t, h, webhook.Config{AllowPrivate: true, Now: clk.Now, Backoff: time.Minute, MaxBackoff: 10 * time.Minute, MaxAttempts: 5})
		rc := &receiver{answers: []int{500, 503}, now: clk.Now}
		ep := rc.endpoint(t, s, "/hook", []string{webhook.AppApproved, webhook.AppSuspended})
		if n, err := s.Enqueue(ctx, "o1", webhook.AppDeclined, map[string]string{"request_id": "par_1"}); err != nil || n != 0 {
			t.Fatalf("unsubscribed event queued: %d %v", n, err)
		}
		if n, err := s.Enqueue(ctx, "o2", webhook.AppApproved, map[string]string{}); err != nil || n != 0 {
			t.Fatalf("another org's event queued: %d %v", n, err)
		}
		if _, err := s.Enqueue(ctx, "o1", "app.exploded", nil); err == nil {
			t.Fatal("unknown event queued")
		}
		if n, err := s.Enqueue(ctx, "o1", webhook.AppApproved, map[string]string{"request_id": "par_1", "client_id": "c-1"}); err != nil || n != 1 {
			t.Fatalf("enqueue: %d %v", n, err)
		}
		pass := func(want int) {
			t.Helper()
			n, err := s.DeliverDue(ctx)
			if err != nil || n != want {
				t.Fatalf("pass: delivered %d (%v), want %d", n, err, want)
			}
		}
		pass(0) // 500
		ds, _ := s.Deliveries(ctx, "o1", ep.ID)
		if len(ds) != 1 || ds[0].Attempts != 1 || ds[0].LastStatus != 500 || ds[0].Status != webhook.StatusPending ||
			!ds[0].NextAttempt.Equal(clk.Now().Add(time.Minute).Truncate(time.Second)) {
			t.Fatalf("after a 500: %+v", ds)
		}
		pass(0) // not due yet: no attempt
		if rc.attempts.Load() != 1 {
			t.Fatalf("attempted before its backoff: %d", rc.attempts.Load())
		}
		clk.Add(time.Minute)
		pass(0) // 503; next wait is doubled
		ds, _ = s.Deliveries(ctx, "o1", ep.ID)
		if ds[0].Attempts != 2 || !ds[0].NextAttempt.Equal(clk.Now().Add(2*time.Minute).Truncate(time.Second)) {
			t.Fatalf("after a 503: %+v", ds[0])
		}
		clk.Add(2 * time.Minute)
		pass(1)
		pass(0)
		ds, _ = s.Deliveries(ctx, "o1", ep.ID)
		if ds[0].Status != webhook.StatusDelivered || ds[0].Attempts != 3 || ds[0].DeliveredAt.IsZero() {
			t.Fatalf("delivered: %+v", ds[0])
		}
		if rc.bad != 0 || len(rc.got) != 1 || rc.got[0]["type"] != "app.approved" || rc.got[0]["data"].(map[string]any)["client_id"] != "c-1" {
			t.Fatalf("received: bad %d, %+v", rc.bad, rc.got)
		}
		if other, _ := s.Deliveries(ctx, "o2", ep.ID); len(other) != 0 {
			t.Fatalf("another org sees deliveries: %+v", other)
		}
		if s.Backoff(1) != time.Minute || s.Backoff(3) != 4*time.Minute || s.Backoff(10) != 10*time.Minute {
			t.Fatalf("backoff: %v %v %v", s.Backoff(1), s.Backoff(3), s.Backoff(10))
		}

		// A receiver that keeps failing: failed after MaxAttempts.
		rc.mu.Lock()
		rc.answers = []int{500, 500, 500, 500, 500}
		rc.mu.Unlock()
		if _, err := s.Enqueue(ctx, "o1", webhook.AppSuspended, map[string]string{"client_id": "c-1"}); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			pass(0)
			clk.Add(time.Hour)
		}
		ds, _ = s.Deliveries(ctx, "o1", ep.ID)
		if ds[0].Event != webhook.AppSuspended || ds[0].Status != webhook.StatusFailed || ds[0].Attempts != 5 {
			t.Fatalf("failing receiver: %+v", ds[0])
		}
	})
}

// TestWorker: the worker started by Start delivers what Enqueue queues
// and stops on Close.
func TestWorker(t *testing.T) {
	ctx := context.Background()
	h := dbtest.Open(t, "sqlite")
	s := open(t, h, webhook.Config{AllowPrivate: true, PollInterval: time.Hour})
	rc := &receiver{now: time.Now}
	ep := rc.endpoint(t, s, "", nil)
	s.Start()
	if _, err := s.Enqueue(ctx, "o1", webhook.AppResumed, map[string]string{"client_id": "c-9"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Minute, "the worker delivers", func() bool {
		ds, _ := s.Deliveries(ctx, "o1", ep.ID)
		return len(ds) == 1 && ds[0].Status == webhook.StatusDelivered
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSSRFRefusedAtDelivery: an endpoint stored while private addresses
// were allowed is not delivered to by a service that refuses them.
func TestSSRFRefusedAtDelivery(t *testing.T) {
	ctx := context.Background()
	h := dbtest.Open(t, "sqlite")
	loose := open(t, h, webhook.Config{AllowPrivate: true})
	rc := &receiver{now: time.Now}
	ep := rc.endpoint(t, loose, "", nil)
	strict := open(t, h, webhook.Config{})
	if _, err := strict.Enqueue(ctx, "o1", webhook.AppApproved, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if n, err := strict.DeliverDue(ctx); err != nil || n != 0 {
		t.Fatalf("delivered %d %v", n, err)
	}
	if rc.attempts.Load() != 0 {
		t.Fatal("a loopback endpoint was contacted")
	}
	ds, _ := strict.Deliveries(ctx, "o1", ep.ID)
	if len(ds) != 1 || ds[0].Attempts != 1 || ds[0].LastError == "" {
		t.Fatalf("refused delivery: %+v", ds)
	}
}
