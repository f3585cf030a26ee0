package review_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/review"
	"github.com/lapis-health/lapis/internal/testutil/auditrec"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

var app = api.ClientRequest{Name: "Acme Health", Type: "confidential", RedirectURIs: []string{"https://acme.example/cb"},
	Scopes: []string{"launch/patient openid fhirUser patient/*.rs"}, Owner: "org:o1"}

func TestRequests(t *testing.T) {
	dbtest.Both(t, func(t *testing.T, h *database.DB) {
		ctx := context.Background()
		now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		ev := &auditrec.Recorder{}
		var decided []string
		st, err := review.New(ctx, h, review.Config{Audit: ev, SLA: 5 * 24 * time.Hour, Now: func() time.Time { return now },
			Logger: slog.New(slog.DiscardHandler), OnDecision: func(_ context.Context, r *review.Request) error {
				decided = append(decided, r.Status+" "+r.ID)
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := review.New(ctx, h, review.Config{}); err != nil { // migrations are idempotent
			t.Fatal(err)
		}
		var ie *review.InvalidError
		if _, err := st.Submit(ctx, review.Request{OrgID: "o1", App: app}); !errors.As(err, &ie) || ie.Field != "requested_by" {
			t.Fatalf("submit without requester: %v", err)
		}
		r1, err := st.Submit(ctx, review.Request{OrgID: "o1", RequestedBy: "dev-1", App: app, SandboxClientID: "sbx-1"})
		if err != nil {
			t.Fatal(err)
		}
		if r1.Status != review.Pending || !r1.DueAt.Equal(now.Add(5*24*time.Hour)) || !strings.HasPrefix(r1.ID, "par_") {
			t.Fatalf("submitted: %+v", r1)
		}
		now = now.Add(time.Hour)
		r2, err := st.Submit(ctx, review.Request{OrgID: "o2", RequestedBy: "dev-2", App: app})
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, r1.ID)
		if err != nil || got.App.Name != "Acme Health" || got.SandboxClientID != "sbx-1" || got.App.Scopes[0] != app.Scopes[0] {
			t.Fatalf("get: %+v %v", got, err)
		}
		if _, err := st.Get(ctx, "par_nope"); !errors.Is(err, review.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
		if l, _ := st.List(ctx, review.Filter{OrgID: "o2"}); len(l) != 1 || l[0].ID != r2.ID {
			t.Fatalf("org filter: %+v", l)
		}
		if q, _ := st.Pending(ctx); len(q) != 2 || q[0].ID != r1.ID {
			t.Fatalf("queue: %+v", q)
		}
		if _, err := st.List(ctx, review.Filter{Status: "bogus"}); !errors.As(err, &ie) {
			t.Fatalf("bad status filter: %v", err)
		}
		if !r1.Overdue(now.Add(6 * 24 * time.Hour)) {
			t.Fatal("not overdue after the SLA")
		}

		// Decline needs a reason.
		for _, reason := range []string{"", "   "} {
			if _, err := st.Decline(ctx, r2.ID, "op-1", reason); !errors.As(err, &ie) || ie.Field != "reason" {
				t.Fatalf("decline with reason %q: %v", reason, err)
			}
		}
		d, err := st.Decline(ctx, r2.ID, "op-1", "The privacy policy link is missing.")
		if err != nil || d.Status != review.Declined || d.Reason != "The privacy policy link is missing." || d.DecidedBy != "op-1" || d.DecidedAt.IsZero() {
			t.Fatalf("decline: %+v %v", d, err)
		}
		if _, err := st.Decline(ctx, r2.ID, "op-2", "again"); !errors.Is(err, review.ErrDecided) {
			t.Fatalf("second decline: %v", err)
		}
		create := func(context.Context, api.ClientRequest) (string, string, error) { return "c", "s", nil }
		if _, _, err := st.Approve(ctx, r2.ID, "op-1", create); !errors.Is(err, review.ErrDecided) {
			t.Fatalf("approving a declined request: %v", err)
		}

		// A failed creation leaves the request pending.
		boom := errors.New("boom")
		if _, _, err := st.Approve(ctx, r1.ID, "op-1", func(context.Context, api.ClientRequest) (string, string, error) { return "", "", boom }); !errors.Is(err, boom) {
			t.Fatalf("failed create: %v", err)
		}
		if g, _ := st.Get(ctx, r1.ID); g.Status != review.Pending || g.DecidedBy != "" {
			t.Fatalf("after a failed create: %+v", g)
		}

		// Concurrent approvals create one client.
		var calls atomic.Int32
		var wg sync.WaitGroup
		var okCount, decidedCount atomic.Int32
		secrets := make(chan string, 8)
		for range 8 {
			wg.Go(func() {
				r, secret, err := st.Approve(ctx, r1.ID, "op-2", func(_ context.Context, a api.ClientRequest) (string, string, error) {
					calls.Add(1)
					if a.Name != "Acme Health" {
						return "", "", errors.New("wrong app")
					}
					return "prod-client-1", "prod-secret", nil
				})
				switch {
				case err == nil && r.Status == review.Approved && r.ProductionClientID == "prod-client-1":
					okCount.Add(1)
					secrets <- secret
				case errors.Is(err, review.ErrDecided):
					decidedCount.Add(1)
				default:
					t.Errorf("approve: %+v %v", r, err)
				}
			})
		}
		wg.Wait()
		if calls.Load() != 1 || okCount.Load() != 1 || decidedCount.Load() != 7 || <-secrets != "prod-secret" {
			t.Fatalf("concurrent approvals: %d creations, %d approved, %d refused", calls.Load(), okCount.Load(), decidedCount.Load())
		}
		if g, _ := st.Get(ctx, r1.ID); g.Status != review.Approved || g.ProductionClientID != "prod-client-1" || g.DecidedBy != "op-2" {
			t.Fatalf("approved: %+v", g)
		}
		if l, _ := st.List(ctx, review.Filter{Status: review.Approved}); len(l) != 1 {
			t.Fatalf("approved list: %+v", l)
		}
		if q, _ := st.Pending(ctx); len(q) != 0 {
			t.Fatalf("queue after decisions: %+v", q)
		}
		// Audit: two submissions, one decline, one approval; no free text.
		descs := ev.Descriptions()
		if len(descs) != 4 || !strings.HasPrefix(descs[2], "review decline "+r2.ID) || !strings.HasPrefix(descs[3], "review approve "+r1.ID) ||
			!strings.Contains(descs[3], "prod-client-1") {
			t.Fatalf("audit: %q", descs)
		}
		for _, d := range descs {
			if strings.Contains(d, "privacy") {
				t.Fatalf("reason in the audit description: %q", d)
			}
		}
		if len(decided) != 2 {
			t.Fatalf("decision hook: %v", decided)
		}
	})
}
