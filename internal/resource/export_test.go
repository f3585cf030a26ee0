package resource

import (
	"context"

	"github.com/lapis-health/lapis/internal/store"
)

// ReindexPage exposes reindexPage to the external tests (a page read
// before a concurrent write).
func (s *Service) ReindexPage(ctx context.Context, rs []store.Resource) error {
	return s.reindexPage(ctx, rs)
}
