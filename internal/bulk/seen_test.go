package bulk

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestNamesOther checks which resources of a compartment export may be
// found again in another of the plan's patients' compartments (and so
// go through the seen table).
func TestNamesOther(t *testing.T) {
	plan := map[string]struct{}{"p1": {}, "p2": {}, "p3.x": {}}
	for _, c := range []struct {
		typ, id, body, patient string
		want                   bool
	}{
		{"Observation", "o1", `{"subject":{"reference":"Patient/p1"}}`, "p1", false},
		{"Observation", "o1", `{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}`, "p1", true},
		{"Observation", "o1", `{"subject":{"reference":"http://x/fhir/Patient/p2/_history/3"}}`, "p1", true},
		{"Observation", "o1", `{"subject":{"reference":"Patient/p3.x"}}`, "p1", true},
		// Not a plan patient, or a longer id that starts like one.
		{"Observation", "o1", `{"subject":{"reference":"Patient/p9"},"note":[{"text":"Patient/p22"}]}`, "p1", false},
		// A Patient is in its own compartment and in those it links to.
		{"Patient", "p2", `{"link":[{"other":{"reference":"Patient/p1"}}]}`, "p1", true},
		{"Patient", "p2", `{"link":[{"other":{"reference":"Patient/p1"}}]}`, "p2", true},
		{"Patient", "p1", `{"name":[{"family":"One"}]}`, "p1", false},
	} {
		r := &store.Resource{Type: c.typ, ID: c.id, Body: []byte(c.body)}
		if got := namesOther(c.typ, r, c.patient, plan); got != c.want {
			t.Errorf("namesOther(%s/%s %s, in %s) = %v, want %v", c.typ, c.id, c.body, c.patient, got, c.want)
		}
	}
}

// TestDedup checks the seen table on both dialects: a key is new once per
// attempt, batches larger than one statement and than a dedup batch keep
// the order found, and an ended or taken-over attempt leaves no rows.
func TestDedup(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			j := testJobs(t, dialect)
			var written []string
			d := &dedup{seen: &seen{j: j, job: "j1", attempt: 1}, write: func(id string, _ []byte) error {
				written = append(written, id)
				return nil
			}}
			// 2,500 resources, each found twice (once in a later batch),
			// and the first ten a third time within a batch.
			var want []string
			for i := range 2500 {
				want = append(want, fmt.Sprintf("o%d", i))
			}
			for round := range 2 {
				for i, id := range want {
					if err := d.add(ctx, "Observation/"+id, []byte("{}")); err != nil {
						t.Fatal(err)
					}
					if round == 0 && i < 10 {
						if err := d.add(ctx, "Observation/"+id, []byte("{}")); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if err := d.flush(ctx); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(written, want) {
				t.Errorf("written %d resources (first %v), want each of %d once, in order", len(written), written[:min(5, len(written))], len(want))
			}
			// Another attempt starts afresh; the first one's rows go.
			fresh, err := (&seen{j: j, job: "j1", attempt: 2}).add(ctx, []string{"Observation/o1"})
			if err != nil || !fresh["Observation/o1"] {
				t.Errorf("attempt 2: %v %v", fresh, err)
			}
			if err := j.clearSeen(ctx, "j1", 2); err != nil {
				t.Fatal(err)
			}
			if err := j.dropSeen(ctx, "j1", 2); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := j.r.QueryRowContext(ctx, "SELECT count(*) FROM export_seen").Scan(&n); err != nil || n != 0 {
				t.Errorf("rows left: %d %v", n, err)
			}
		})
	}
}

// testJobs opens the export jobs' tables on a fresh database of dialect
// (closed when t ends).
func testJobs(t *testing.T, dialect string) *jobs {
	t.Helper()
	ctx := context.Background()
	o := database.Options{DataDir: t.TempDir()}
	if dialect == "postgres" {
		o.URL = pgtest.New(t)
	}
	h, err := database.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	j, err := openJobs(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
