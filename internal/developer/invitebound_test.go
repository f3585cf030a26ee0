package developer

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/testclock"
)

// TestOpenInvitationsBounded: an organisation has at most
// MaxOpenInvitations open invitations, so an owner cannot make the portal
// mail any number of addresses; expired ones do not count.
func TestOpenInvitationsBounded(t *testing.T) {
	dialects(t, func(t *testing.T, s *Service, c *testclock.Clock) {
		ctx := context.Background()
		own := signUp(t, s, "owner@example.org")
		org := mustOrg(t, s, own.ID)
		for i := range MaxOpenInvitations {
			if _, err := s.Invite(ctx, own.ID, org.ID, fmt.Sprintf("x%d@example.org", i), RoleDeveloper); err != nil {
				t.Fatal(err)
			}
		}
		var ie *InvalidError
		if _, err := s.Invite(ctx, own.ID, org.ID, "one-more@example.org", RoleDeveloper); !errors.As(err, &ie) {
			t.Fatalf("over the bound: %v", err)
		}
		c.Add(InviteTTL + 1)
		if _, err := s.Invite(ctx, own.ID, org.ID, "one-more@example.org", RoleDeveloper); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
	})
}
