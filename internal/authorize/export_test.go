package authorize

import (
	"context"

	"github.com/lapis-health/lapis/internal/oauth"
)

// SetCodeIssuer replaces IssueCode for the tests (captures the Grant).
func (s *Pages) SetCodeIssuer(f func(context.Context, *oauth.Grant) (string, error)) {
	s.codeIssuer = f
}
