package bulk

import (
	"context"
	"testing"
)

// TestJobUnstorableID checks that a status or file URL whose job id holds
// NUL or invalid UTF-8 ($export-status/%00) names no job: on PostgreSQL,
// which refuses such text in a statement, the lookup failed (a 500).
func TestJobUnstorableID(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			j := testJobs(t, dialect)
			for _, id := range []string{"\x00", "a\xffb", "0123456789abcdef0123456789abcdef"} {
				if jb, err := j.get(ctx, id); jb != nil || err != nil {
					t.Errorf("get(%q) = %v, %v; want no job", id, jb, err)
				}
			}
		})
	}
}
