package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/webhook"
)

// TestEndpointsBounded: an organisation has at most MaxEndpoints
// endpoints (each event fans out to all of them); other organisations
// are not affected, and deleting one makes room.
func TestEndpointsBounded(t *testing.T) {
	dbtest.Both(t, func(t *testing.T, h *database.DB) {
		ctx := context.Background()
		s := open(t, h, webhook.Config{KEK: kek(t)})
		var first string
		for i := range webhook.MaxEndpoints {
			ep, _, err := s.CreateEndpoint(ctx, "o1", fmt.Sprintf("https://hooks.example/%d", i), nil)
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = ep.ID
			}
		}
		var ie *webhook.InvalidError
		if _, _, err := s.CreateEndpoint(ctx, "o1", "https://hooks.example/more", nil); !errors.As(err, &ie) {
			t.Fatalf("over the bound: %v", err)
		}
		if _, _, err := s.CreateEndpoint(ctx, "o2", "https://hooks.example/other", nil); err != nil {
			t.Fatalf("another org: %v", err)
		}
		if err := s.DeleteEndpoint(ctx, "o1", first); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateEndpoint(ctx, "o1", "https://hooks.example/more", nil); err != nil {
			t.Fatalf("after a delete: %v", err)
		}
	})
}
