package plantest_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
	"github.com/lapis-health/lapis/internal/store/sqlite"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

const base = "http://localhost/fhir"

// bundles is how many Synthea transaction bundles the tests post.
const bundles = 12

type opener func(t *testing.T) store.Store

func dialects(t *testing.T) map[string]opener {
	dir := t.TempDir()
	var pgURL string
	return map[string]opener{
		"sqlite": func(t *testing.T) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(dir, "lapis.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgres": func(t *testing.T) store.Store {
			if pgURL == "" {
				pgURL = pgtest.New(t)
			}
			s, err := postgres.Open(context.Background(), pgURL)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func service(t *testing.T, reg *definitions.Registry, st store.Store) *resource.Service {
	t.Helper()
	ex, err := extract.New(reg, base)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := resource.New(resource.Config{Store: st, Registry: reg, Validator: validate.New(reg), Indexer: ex,
		Parser: search.NewParser(reg, base, 1000, 50), BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// searches are the reference searches of one patient.
func searches(pid string) []struct{ typ, query string } {
	return []struct{ typ, query string }{
		{"Patient", "_id=" + pid + "&_revinclude=Observation:patient"},
		{"Observation", "patient=" + pid + "&category=laboratory&date=ge2015-01-01"},
		{"Observation", "subject=Patient/" + pid + "&code=http://loinc.org|8302-2"},
	}
}

// plans runs the reference searches and returns the plan of every
// statement they run, and how many resources each returned.
func plans(t *testing.T, svc *resource.Service, pid string) []string {
	t.Helper()
	var out []string
	for _, s := range searches(pid) {
		v, err := url.ParseQuery(s.query)
		if err != nil {
			t.Fatal(err)
		}
		p := &sqlgen.Plans{}
		start := time.Now()
		res, err := svc.Search(sqlgen.WithExplain(context.Background(), p), s.typ, v, true)
		if err != nil {
			t.Fatalf("%s?%s: %v", s.typ, s.query, err)
		}
		var b struct {
			Entry []json.RawMessage `json:"entry"`
		}
		_ = json.Unmarshal(res.JSON(), &b)
		t.Logf("%s?%s: %d entries, %v (with EXPLAIN)", s.typ, s.query, len(b.Entry), time.Since(start))
		out = append(out, s.typ+"?"+s.query+"\n"+normalizePlan(strings.Join(p.Steps(), "\n--\n")))
	}
	return out
}

// TestPlansAfterGrowth fills an empty store through service transactions
// (the path of POSTed Bundles) and checks that the reference searches run
// with the plans they get on the same data after the store is reopened and
// its statistics refreshed, on every dialect.
func TestPlansAfterGrowth(t *testing.T) {
	files := shareddata.Glob(t, "*.json", "data", "synthea")
	if len(files) > bundles {
		files = files[:bundles]
	}
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			svc := service(t, reg, st)
			// Search before and while data arrives, so every pooled
			// connection has planned these shapes on an empty or small
			// database.
			pid := "none"
			plans(t, svc, pid)
			for i, f := range files {
				body, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Bundle(context.Background(), body, resource.ReturnMinimal); err != nil {
					t.Fatalf("%s: %v", filepath.Base(f), err)
				}
				if i == 0 {
					pid = firstPatient(t, svc)
				}
				for range 4 {
					checkFixed(t, plans(t, svc, pid))
				}
			}
			// The last refresh the growth triggered runs in the background.
			if w, ok := st.(store.StatsWaiter); ok {
				w.WaitStats()
			}
			grown := plans(t, svc, pid)
			checkFixed(t, grown)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open(t)
			defer st.Close()
			if an, ok := st.(store.Analyzer); ok {
				if err := an.Analyze(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			fresh := plans(t, service(t, reg, st), pid)
			for i := range grown {
				if grown[i] != fresh[i] {
					t.Errorf("plan after growth differs from the plan on fresh statistics:\n--- grown\n%s\n--- fresh\n%s", grown[i], fresh[i])
				}
			}
		})
	}
}

func firstPatient(t *testing.T, svc *resource.Service) string {
	t.Helper()
	res, err := svc.Search(context.Background(), "Patient", url.Values{"_count": {"1"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(res.JSON(), &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("no patient: %v", err)
	}
	return b.Entry[0].Resource.ID
}

// checkFixed checks the plans of the shapes whose SQL fixes the plan
// whatever the statistics say: _revinclude goes from the page's rids
// through the reference target index.
func checkFixed(t *testing.T, plans []string) {
	t.Helper()
	steps := strings.Split(plans[0], "\n--\n")
	if len(steps) < 3 || !strings.Contains(steps[2], "idx_reference_target") || strings.Contains(steps[2], "idx_reference_url") {
		t.Fatalf("_revinclude not driven by the reference target index:\n%s", plans[0])
	}
}

// rowLookupRE matches SQLite's two equivalent ways to fetch one resources
// row by rid: the table's integer primary key or the covering index whose
// key is rid. They cost the same single probe, and SQLite picks either on
// ties, so the comparison treats them as one step.
var rowLookupRE = regexp.MustCompile(`SEARCH (\w+) USING (INTEGER PRIMARY KEY \(rowid=\?\)|COVERING INDEX resources_live \(rid=\?\))`)

// normalizePlan rewrites equivalent single-row lookups to one form.
func normalizePlan(plan string) string {
	return rowLookupRE.ReplaceAllString(plan, "SEARCH $1 BY rid")
}
